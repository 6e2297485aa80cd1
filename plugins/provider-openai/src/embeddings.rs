//! OpenAI embeddings client, OpenAI(-compatible) provider: `POST /v1/embeddings`, passed through.
//!
//! Only `model` is patched (to the routed upstream name); `input`, `encoding_format` (float or
//! base64), `dimensions`, `user` and anything a compatible provider adds reach it byte for
//! byte. The answer — often megabytes of vectors — goes back unchanged; only its `usage` is
//! read, without building the vectors. Embeddings are never streamed.
use tollgate_plugin_sdk::serde_json::{self, json, Value};
use tollgate_plugin_sdk::{
    http, json as patch, usage, ClientResponse, Reject, TransformCtx, UpstreamRequest, Usage,
};

use crate::{error_response, UsageOnly};

/// The refusal of a streamed embeddings request (the API has no stream).
pub fn not_streamed() -> Reject {
    Reject::bad_request("embeddings requests cannot be streamed")
}

/// The client's embeddings request with `model` set and nothing else touched.
pub fn request(ctx: &TransformCtx, body: &[u8]) -> Result<UpstreamRequest, Reject> {
    if ctx.stream {
        return Err(not_streamed());
    }
    let top = patch::TopLevel::parse(body).map_err(Reject::bad_request)?;
    let model = patch::string_literal(&ctx.upstream_model);
    Ok(UpstreamRequest {
        method: "POST".into(),
        path: "/v1/embeddings".into(),
        headers: vec![http::json_content_type()],
        body: patch::write_patched(&top, &[("model", Some(&model))], body.len() + model.len()),
        stream_state: Vec::new(),
    })
}

/// The input tokens of an embeddings `usage` object (`prompt_tokens`; embeddings have no
/// output), read with the SDK's saturating rules.
fn embeddings_usage(reported: &Value) -> Usage {
    let prompt = usage::from_openai(&json!({"prompt_tokens": reported["prompt_tokens"]}));
    Usage {
        input: prompt.input,
        ..Usage::ZERO
    }
}

/// The upstream answer, unchanged, with its usage. A 2xx body must be a JSON object; errors
/// are handled as for chat (an OpenAI error passes unchanged, anything else is wrapped in one).
pub fn response(status: u16, body: Vec<u8>) -> Result<ClientResponse, Reject> {
    if !(200..300).contains(&status) {
        return Ok(error_response(status, body));
    }
    let parsed = UsageOnly::parse(&body)
        .map_err(|e| Reject::bad_upstream(format!("upstream sent invalid JSON: {e}")))?;
    let used = parsed
        .usage
        .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
        .filter(Value::is_object)
        .map(|u| embeddings_usage(&u));
    Ok(ClientResponse {
        status,
        headers: vec![http::json_content_type()],
        body,
        usage: used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OpenAiProvider;
    use tollgate_plugin_sdk::{ApiFormat, SseEvent, Transform};

    fn ctx(stream: bool) -> TransformCtx {
        TransformCtx {
            request_id: "r".into(),
            client_format: ApiFormat::OpenaiEmbeddings,
            upstream_model: "text-embedding-3-small".into(),
            stream,
        }
    }

    #[test]
    fn request_patches_only_the_model() {
        let body = br#"{"model":"embed","input":["a","b \u00e9"],"encoding_format":"base64",
            "dimensions":256,"user":"u-1","x_vendor":{"k":1.50}}"#;
        let up = OpenAiProvider::transform_request(ctx(false), body.to_vec()).unwrap();
        assert_eq!(
            (up.method.as_str(), up.path.as_str()),
            ("POST", "/v1/embeddings")
        );
        assert!(up.stream_state.is_empty());
        assert_eq!(
            String::from_utf8(up.body).unwrap(),
            r#"{"model":"text-embedding-3-small","input":["a","b \u00e9"],"encoding_format":"base64","dimensions":256,"user":"u-1","x_vendor":{"k":1.50}}"#
        );
        // No model given: one is added.
        let up = OpenAiProvider::transform_request(ctx(false), br#"{"input":"x"}"#.to_vec());
        assert_eq!(
            up.unwrap().body,
            br#"{"input":"x","model":"text-embedding-3-small"}"#.to_vec()
        );
    }

    #[test]
    fn streams_and_non_objects_are_400s() {
        let err = OpenAiProvider::transform_request(ctx(true), br#"{"input":"x"}"#.to_vec());
        assert_eq!(err.unwrap_err().status, 400);
        for bad in [&b"[1]"[..], b"{", b""] {
            let err = OpenAiProvider::transform_request(ctx(false), bad.to_vec()).unwrap_err();
            assert_eq!(err.status, 400);
        }
        let err = OpenAiProvider::transform_event(ctx(true), vec![], SseEvent::data("{}"));
        assert_eq!(err.unwrap_err().status, 400);
        let err = OpenAiProvider::end_of_stream(ctx(true), vec![]);
        assert_eq!(err.unwrap_err().status, 400);
    }

    #[test]
    fn response_passes_with_prompt_tokens_as_input() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,
            "embedding":"AAAAPwAAgD8="}],"model":"text-embedding-3-small",
            "usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let out = OpenAiProvider::transform_response(ctx(false), 200, body.to_vec()).unwrap();
        assert_eq!((out.status, &out.body), (200, &body.to_vec()));
        assert_eq!(
            out.usage,
            Some(Usage {
                input: 8,
                ..Usage::ZERO
            })
        );
        // Odd counts saturate like every other usage; no usage object, no usage.
        let odd = br#"{"data":[],"usage":{"prompt_tokens":-3,"completion_tokens":5}}"#;
        let out = OpenAiProvider::transform_response(ctx(false), 200, odd.to_vec()).unwrap();
        assert_eq!(out.usage, Some(Usage::ZERO));
        let out = OpenAiProvider::transform_response(ctx(false), 200, b"{}".to_vec()).unwrap();
        assert_eq!(out.usage, None);
        let err = OpenAiProvider::transform_response(ctx(false), 200, b"<html>".to_vec());
        assert_eq!(err.unwrap_err().status, 502);
    }

    #[test]
    fn errors_keep_their_status_and_carry_no_usage() {
        let body = br#"{"error":{"message":"too long","type":"invalid_request_error","param":"input","code":null}}"#;
        let out = OpenAiProvider::transform_response(ctx(false), 400, body.to_vec()).unwrap();
        assert_eq!(
            (out.status, &out.body, out.usage),
            (400, &body.to_vec(), None)
        );
        let out = OpenAiProvider::transform_response(ctx(false), 502, b"bad gateway".to_vec());
        let out = out.unwrap();
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!((out.status, out.usage), (502, None));
        assert_eq!(v["error"]["message"], "upstream error: bad gateway");
    }
}
