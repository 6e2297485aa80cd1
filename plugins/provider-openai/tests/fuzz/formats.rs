//! Property tests of the embeddings pass-through (only `model` patched; answers unchanged with
//! `usage.prompt_tokens` as input; never streamed) and of the formats this provider refuses.
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use provider_openai::OpenAiProvider;
use tollgate_plugin_sdk::serde_json::{self, json, Value};
use tollgate_plugin_sdk::{json as patch, usage, ApiFormat, Transform, TransformCtx, Usage};

use crate::{arb_count, arb_json, arb_string, chunk, config};

fn ctx(format: ApiFormat, stream: bool) -> TransformCtx {
    TransformCtx {
        request_id: "r".into(),
        client_format: format,
        upstream_model: "embed-up".into(),
        stream,
    }
}

fn embeddings(stream: bool) -> TransformCtx {
    ctx(ApiFormat::OpenaiEmbeddings, stream)
}

/// An embeddings request as clients send them, with odd extras.
fn embeddings_request() -> BoxedStrategy<Value> {
    let input = prop_oneof![
        arb_string().prop_map(Value::String),
        vec(arb_string(), 0..4).prop_map(|v| json!(v)),
        vec(vec(0u32..100_000, 0..6), 0..3).prop_map(|v| json!(v)),
        arb_json(),
    ];
    (
        input,
        proptest::option::of(select(&["float", "base64"][..])),
        proptest::option::of(1u32..4096),
        proptest::option::of(arb_json()),
        vec(("[a-z_]{1,10}", arb_json()), 0..3),
        any::<f64>(),
    )
        .prop_map(|(input, encoding, dimensions, model, extra, f)| {
            let mut req: serde_json::Map<String, Value> = extra.into_iter().collect();
            req.insert("input".into(), input);
            req.insert("x_float".into(), json!(f));
            if let Some(e) = encoding {
                req.insert("encoding_format".into(), json!(e));
            }
            if let Some(d) = dimensions {
                req.insert("dimensions".into(), json!(d));
            }
            if let Some(m) = model {
                req.insert("model".into(), m);
            }
            Value::Object(req)
        })
        .boxed()
}

/// An embeddings answer with the usage a provider might (mis)report.
fn embeddings_response() -> BoxedStrategy<Value> {
    (
        arb_count(),
        proptest::option::of(arb_count()),
        vec(any::<f32>(), 0..8),
    )
        .prop_map(|(prompt, total, vector)| {
            let mut usage = json!({"prompt_tokens": prompt});
            if let Some(t) = total {
                usage["total_tokens"] = t;
            }
            json!({"object": "list", "model": "embed-up", "usage": usage,
                "data": [{"object": "embedding", "index": 0, "embedding": vector}]})
        })
        .boxed()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_embeddings_request_patches_only_model(
        req in prop_oneof![3 => embeddings_request(), 1 => arb_json()], stream in any::<bool>()
    ) {
        let text = req.to_string();
        let result = OpenAiProvider::transform_request(embeddings(stream), text.clone().into_bytes());
        let original = patch::TopLevel::parse(text.as_bytes());
        let (Ok(original), false) = (original, stream) else {
            prop_assert_eq!(result.map_err(|r| r.status).err(), Some(400));
            return Ok(());
        };
        let up = result.map_err(|r| TestCaseError::fail(format!("{r:?}")))?;
        prop_assert_eq!(up.path.as_str(), "/v1/embeddings");
        prop_assert!(up.stream_state.is_empty());
        let sent = patch::TopLevel::parse(&up.body).expect("a JSON object");
        for (key, raw) in &original.fields {
            if key != "model" {
                prop_assert_eq!(sent.get(key).map(|r| r.get()), Some(raw.get()), "{} verbatim", key);
            }
        }
        prop_assert_eq!(sent.get("model").map(|r| r.get()), Some("\"embed-up\""));
        let added = usize::from(original.get("model").is_none());
        prop_assert_eq!(sent.fields.len(), original.fields.len() + added);
    }

    #[test]
    fn fuzz_embeddings_response_is_unchanged(
        status in prop_oneof![Just(200u16), any::<u16>()],
        body in prop_oneof![
            2 => embeddings_response().prop_map(|v| v.to_string().into_bytes()),
            1 => arb_json().prop_map(|v| v.to_string().into_bytes()),
            1 => vec(any::<u8>(), 0..128),
        ],
    ) {
        let ok = (200..300).contains(&status);
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        match OpenAiProvider::transform_response(embeddings(false), status, body.clone()) {
            Ok(out) if ok => {
                prop_assert_eq!(out.status, status);
                prop_assert_eq!(&out.body, &body, "passed through unchanged");
                let reported = &parsed.expect("a 2xx answer is JSON")["usage"];
                let expected = reported.is_object().then(|| Usage {
                    input: usage::from_openai(&json!({"prompt_tokens": reported["prompt_tokens"]})).input,
                    ..Usage::ZERO
                });
                prop_assert_eq!(out.usage, expected);
            }
            Ok(out) => {
                prop_assert_eq!((out.status, out.usage), (status, None));
                let was_error = parsed.is_some_and(|v| v["error"].is_object());
                prop_assert_eq!(was_error, out.body == body, "OpenAI errors pass unchanged");
            }
            Err(r) => {
                prop_assert!(ok, "only a 2xx body is read");
                prop_assert_eq!(r.status, 502);
            }
        }
    }

    #[test]
    fn fuzz_embeddings_are_never_streamed(event in chunk(), state in vec(any::<u8>(), 0..16)) {
        let err = OpenAiProvider::transform_event(embeddings(true), state.clone(), event);
        prop_assert_eq!(err.map_err(|r| r.status).err(), Some(400));
        let err = OpenAiProvider::end_of_stream(embeddings(true), state);
        prop_assert_eq!(err.map_err(|r| r.status).err(), Some(400));
    }

    #[test]
    fn fuzz_other_formats_are_refused(
        format in select(&[ApiFormat::AnthropicMessages, ApiFormat::OpenaiResponses,
                           ApiFormat::Gemini][..]),
        stream in any::<bool>(), body in vec(any::<u8>(), 0..64), status in any::<u16>(),
        event in chunk(),
    ) {
        let c = || ctx(format, stream);
        let results = [
            OpenAiProvider::transform_request(c(), body.clone()).map(|_| ()),
            OpenAiProvider::transform_response(c(), status, body.clone()).map(|_| ()),
            OpenAiProvider::transform_event(c(), Vec::new(), event).map(|_| ()),
            OpenAiProvider::end_of_stream(c(), Vec::new()).map(|_| ()),
        ];
        for r in results {
            prop_assert_eq!(r.map_err(|r| r.status), Err(400));
        }
    }
}
