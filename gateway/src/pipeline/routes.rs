//! The client API routes, each a thin entry into `serve.rs` with its API named (errors are
//! given in that API's shape from the first byte on).

use pingora_proxy::Session;

use super::context::Request;
use super::serve::Parse;
use crate::api_error::ApiFormat;

impl Request<'_> {
    /// `POST /v1/chat/completions`.
    pub async fn chat(self, session: &mut Session) {
        self.serve(session, Parse::Chat).await
    }

    /// `POST /v1/messages` (Anthropic).
    pub async fn messages(self, session: &mut Session) {
        self.with_format(ApiFormat::AnthropicMessages)
            .serve(session, Parse::Messages)
            .await
    }

    /// `POST /v1/responses`.
    pub async fn responses(self, session: &mut Session) {
        self.with_format(ApiFormat::OpenaiResponses)
            .serve(session, Parse::Responses)
            .await
    }

    /// `POST /v1/embeddings`.
    pub async fn embeddings(self, session: &mut Session) {
        self.with_format(ApiFormat::OpenaiEmbeddings)
            .serve(session, Parse::Embeddings)
            .await
    }
}
