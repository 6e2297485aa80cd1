//! One client call, parsed for the API it came in on: what every stage needs (the summary),
//! the body each kind of provider gets (the client's own, for pass-through; the canonical
//! form, for an adapter), and the per-API state (Anthropic message id, Responses request and
//! its conversation history).
//!
//! The four client APIs differ only here and in `adapt.rs`; routing, billing, the attempt loop,
//! streaming and settlement are shared.

use bytes::Bytes;
use serde_json::Value;
use tollgate_formats::{anthropic, responses, FormatError};

use crate::api_error::{ApiError, ApiFormat};
use crate::config::{ModelKind, ValidationLimits};
use crate::plugins::bindings::RequestSummary;
use crate::validate;

/// The Responses-specific part of a call.
pub struct ResponsesCall {
    pub request: responses::ResponsesRequest,
    pub meta: responses::ResponseMeta,
    /// This turn's input as canonical messages (stored with the answer).
    pub turn_messages: Vec<Value>,
    /// Earlier turns (from `previous_response_id`), oldest first.
    pub history: Vec<Value>,
}

/// A parsed client call.
pub struct Call {
    pub format: ApiFormat,
    pub summary: RequestSummary,
    /// The body as the client sent it (what a same-format provider gets).
    pub body: Bytes,
    /// The canonical (OpenAI chat) body, for providers reached through an adapter.
    pub canonical: Option<Vec<u8>>,
    /// Client headers a same-format provider gets verbatim (`anthropic-version`, `anthropic-beta`).
    pub forward_headers: Vec<(String, String)>,
    /// The Anthropic message id (adapted answers carry it).
    pub message_id: String,
    pub responses: Option<ResponsesCall>,
    /// OpenRouter routing options the request carried (`models`, `provider`, `:nitro`, `:floor`).
    pub options: Option<crate::policy::options::RouteOptions>,
    /// `provider/model`: the provider the client pinned.
    pub pinned: Option<String>,
}

impl Call {
    /// Whether the model must be an embedding model for this API.
    pub fn wants(&self) -> ModelKind {
        if self.format == ApiFormat::OpenaiEmbeddings {
            ModelKind::Embedding
        } else {
            ModelKind::Chat
        }
    }

    /// The canonical body for providers without this format (the client's, for chat).
    pub fn canonical_body(&self) -> &[u8] {
        self.canonical.as_deref().unwrap_or(&self.body)
    }
}

impl From<FormatError> for ApiError {
    fn from(e: FormatError) -> Self {
        let err = ApiError::new(e.status, &e.code, e.message);
        match e.param {
            Some(p) => err.with_param(&p),
            None => err,
        }
    }
}

fn summary(format: ApiFormat, model: String, stream: bool, body: &[u8]) -> RequestSummary {
    RequestSummary {
        format,
        model,
        stream,
        max_tokens: None,
        has_tools: false,
        body_bytes: u32::try_from(body.len()).unwrap_or(u32::MAX),
    }
}

/// A summary for a call that failed to parse (recorded with no model).
pub fn unparsed(format: ApiFormat, body: &[u8]) -> RequestSummary {
    summary(format, String::new(), false, body)
}

fn call(format: ApiFormat, summary: RequestSummary, body: Bytes) -> Call {
    Call {
        format,
        summary,
        body,
        canonical: None,
        forward_headers: Vec::new(),
        message_id: String::new(),
        responses: None,
        options: None,
        pinned: None,
    }
}

/// `POST /v1/chat/completions`: canonical already.
pub fn chat(body: Bytes, limits: &ValidationLimits) -> Result<Call, ApiError> {
    let chat = validate::chat(&body, limits)?;
    let mut s = summary(ApiFormat::OpenaiChat, chat.model, chat.stream, &body);
    s.max_tokens = chat.max_tokens;
    s.has_tools = chat.has_tools;
    Ok(call(ApiFormat::OpenaiChat, s, body))
}

/// `POST /v1/messages`.
pub fn messages(
    body: Bytes,
    headers: &pingora_http::RequestHeader,
    message_id: String,
    limits: &ValidationLimits,
) -> Result<Call, ApiError> {
    validate::check_text(&body, limits)?;
    let req = anthropic::parse_request(&body)?;
    if req
        .max_tokens
        .is_some_and(|n| u64::from(n) > limits.max_output_tokens)
    {
        return Err(ApiError::bad_request(format!(
            "max_tokens: at most {} output tokens may be asked for.",
            limits.max_output_tokens
        ))
        .with_param("max_tokens"));
    }
    let mut s = summary(
        ApiFormat::AnthropicMessages,
        req.model.clone(),
        req.stream,
        &body,
    );
    s.max_tokens = req.max_tokens;
    s.has_tools = req.has_tools;
    let canonical = anthropic::to_canonical(&req)?;
    let mut c = call(ApiFormat::AnthropicMessages, s, body);
    c.canonical = Some(canonical);
    c.message_id = message_id;
    for name in ["anthropic-version", "anthropic-beta"] {
        for v in headers.headers.get_all(name) {
            if let Ok(v) = v.to_str() {
                c.forward_headers.push((name.to_string(), v.to_string()));
            }
        }
    }
    Ok(c)
}

/// `POST /v1/responses`: parsed now; the canonical body is built once the history is loaded
/// ([`Call::with_history`]).
pub fn responses(
    body: Bytes,
    meta: responses::ResponseMeta,
    limits: &ValidationLimits,
) -> Result<Call, ApiError> {
    validate::check_text(&body, limits)?;
    let req = responses::parse_request(&body)?;
    let mut meta = meta;
    meta.model = req.model.clone();
    if req
        .max_output_tokens
        .is_some_and(|n| u64::from(n) > limits.max_output_tokens)
    {
        return Err(ApiError::bad_request(format!(
            "max_output_tokens: at most {} output tokens may be asked for.",
            limits.max_output_tokens
        ))
        .with_param("max_output_tokens"));
    }
    let mut s = summary(
        ApiFormat::OpenaiResponses,
        req.model.clone(),
        req.stream,
        &body,
    );
    s.max_tokens = req.max_output_tokens;
    s.has_tools = req.has_tools;
    let mut c = call(ApiFormat::OpenaiResponses, s, body);
    c.responses = Some(ResponsesCall {
        request: req,
        meta,
        turn_messages: Vec::new(),
        history: Vec::new(),
    });
    Ok(c)
}

impl Call {
    /// Under retention mode `zero`: nothing of the conversation is stored (`store` answered as
    /// false), so a `previous_response_id` cannot be continued.
    pub fn without_state(&mut self) -> Result<(), ApiError> {
        if let Some(r) = self.responses.as_mut() {
            if r.request.previous_response_id.is_some() {
                return Err(ApiError::bad_request(
                    "This organization's retention mode is 'zero': conversation state is not \
                     stored, so previous_response_id cannot be used. Send the whole \
                     conversation as input instead.",
                )
                .with_param("previous_response_id"));
            }
            r.request.store = false;
        }
        Ok(())
    }

    /// Builds the Responses call's canonical body over `history` (earlier turns).
    pub fn with_history(mut self, history: Vec<Value>) -> Result<Self, ApiError> {
        if let Some(r) = self.responses.as_mut() {
            let canonical = responses::to_canonical(&r.request, &history)?;
            r.turn_messages = canonical.turn_messages;
            r.history = history;
            self.canonical = Some(canonical.body);
        }
        Ok(self)
    }
}

/// `POST /v1/embeddings` (OpenAI): `model`, `input` (a string, strings, or token arrays),
/// `encoding_format` float or base64, `dimensions`.
pub fn embeddings(body: Bytes, limits: &ValidationLimits) -> Result<Call, ApiError> {
    validate::check_text(&body, limits)?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "We could not parse the JSON body of your request: {e}"
        ))
    })?;
    let Some(obj) = v.as_object() else {
        return Err(ApiError::bad_request(
            "The request body must be a JSON object.",
        ));
    };
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(
                ApiError::bad_request("'model' must be a non-empty string.").with_param("model")
            )
        }
    };
    let input_ok = match obj.get("input") {
        Some(Value::String(_)) => true,
        Some(Value::Array(items)) => {
            !items.is_empty()
                && (items.iter().all(Value::is_string)
                    || items.iter().all(Value::is_u64)
                    || items
                        .iter()
                        .all(|i| i.as_array().is_some_and(|a| a.iter().all(Value::is_u64))))
        }
        _ => false,
    };
    if !input_ok {
        return Err(ApiError::bad_request(
            "'input' must be a string, a non-empty array of strings, or token arrays.",
        )
        .with_param("input"));
    }
    match obj.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {}
        Some(_) => {
            return Err(
                ApiError::bad_request("'encoding_format' must be 'float' or 'base64'.")
                    .with_param("encoding_format"),
            )
        }
    }
    if obj
        .get("stream")
        .is_some_and(|s| s != &Value::Bool(false) && !s.is_null())
    {
        return Err(ApiError::bad_request("Embeddings cannot be streamed.").with_param("stream"));
    }
    let s = summary(ApiFormat::OpenaiEmbeddings, model, false, &body);
    Ok(call(ApiFormat::OpenaiEmbeddings, s, body))
}
