//! Errors as clients see them: the OpenAI error shape
//! (`{"error":{"message","type","param","code"}}`) or the Anthropic one
//! (`{"type":"error","error":{"type","message"}}`), with the right HTTP status.

use serde_json::json;

pub use crate::plugins::bindings::ApiFormat;

/// The WIT name of a client API (`openai-chat`, `anthropic-messages`, ...), as configs, usage
/// records and logs spell it.
pub fn format_name(f: ApiFormat) -> &'static str {
    match f {
        ApiFormat::OpenaiChat => "openai-chat",
        ApiFormat::OpenaiResponses => "openai-responses",
        ApiFormat::OpenaiEmbeddings => "openai-embeddings",
        ApiFormat::AnthropicMessages => "anthropic-messages",
        ApiFormat::Gemini => "gemini",
    }
}

/// An error to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Machine-readable code (`invalid_api_key`, `insufficient_credits`, ...).
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one (OpenAI's `param`).
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            param: None,
        }
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// The OpenAI `type` for a status.
    fn openai_type(&self) -> &'static str {
        match self.status {
            400 | 404 | 405 | 408 | 409 | 413 | 415 | 422 | 431 => "invalid_request_error",
            401 => "authentication_error",
            402 => "insufficient_quota",
            403 => "permission_error",
            429 => "rate_limit_error",
            _ => "api_error",
        }
    }

    /// The Anthropic `error.type` for a status (one table, in the formats crate).
    fn anthropic_type(&self) -> &'static str {
        tollgate_formats::anthropic::error_type(self.status)
    }

    /// The error body in the client's API shape: Anthropic's for Messages clients, OpenAI's
    /// for every OpenAI API (chat, Responses, embeddings) and anything else.
    pub fn body(&self, format: ApiFormat) -> Vec<u8> {
        let value = match format {
            ApiFormat::AnthropicMessages => json!({"type": "error", "error": {
                "type": self.anthropic_type(), "message": self.message}}),
            _ => json!({"error": {
                "message": self.message, "type": self.openai_type(), "param": self.param, "code": self.code}}),
        };
        value.to_string().into_bytes()
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "request_too_large",
            format!("Request body exceeds the {limit}-byte limit."),
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal_error", message)
    }
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, "upstream_error", message)
    }
}

impl From<&crate::plugins::bindings::Reject> for ApiError {
    fn from(r: &crate::plugins::bindings::Reject) -> Self {
        let status = if (400..=599).contains(&r.status) {
            r.status
        } else {
            500
        };
        ApiError::new(status, &r.code, r.message.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let e = ApiError::new(402, "insufficient_credits", "no money");
        let v: serde_json::Value = serde_json::from_slice(&e.body(ApiFormat::OpenaiChat)).unwrap();
        assert_eq!(v["error"]["code"], "insufficient_credits");
        assert_eq!(v["error"]["message"], "no money");
        assert!(v["error"]["param"].is_null());
        let v: serde_json::Value =
            serde_json::from_slice(&e.body(ApiFormat::AnthropicMessages)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "billing_error");
    }
}
