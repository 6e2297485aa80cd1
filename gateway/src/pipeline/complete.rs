//! Complete (non-streamed) responses: read the upstream body under its bounds, translate it
//! with the transform plugin, price it (`usage.cost` in the answer, as OpenRouter reports it),
//! send it.

use pingora_proxy::Session;

use super::adapt::{estimate_output, Adapting};
use super::context::Request;
use super::outcome::{Answer, AttemptError, StreamEnd, CLIENT_GONE, NO_USAGE};
use super::upstream::{AttemptFailure, UpstreamResponse};
use crate::api_error::ApiFormat;
use crate::plugins::bindings::{Charge, Price, Principal, TransformCtx, Usage};
use crate::plugins::{LoadedPlugin, Stage};

/// What an answer is priced with.
#[derive(Clone, Copy)]
pub(super) struct Pricing<'p> {
    pub who: &'p Principal,
    pub provider: &'p str,
    pub price: Price,
    pub byok: bool,
}

/// The answer with `usage.cost` (USD) added, for the OpenAI formats (OpenRouter's field; the
/// SDKs keep unknown usage fields). Anything not a JSON object with a `usage` object is left
/// as it is.
pub(super) fn with_cost(body: Vec<u8>, charge: &Charge) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    let Some(usage) = value.get_mut("usage").and_then(|u| u.as_object_mut()) else {
        return body;
    };
    usage.insert(
        "cost".into(),
        serde_json::json!(charge.amount_micros as f64 / 1e6),
    );
    serde_json::to_vec(&value).unwrap_or(body)
}

impl Request<'_> {
    /// Reads a complete upstream response, translates it and sends it. A failure to read the
    /// body, or an answer the transform cannot use, comes back as an attempt failure (nothing
    /// was sent yet, so another provider may still answer).
    pub(super) async fn complete_response(
        &self,
        session: &mut Session,
        transform: &LoadedPlugin,
        ctx: &TransformCtx,
        mut response: UpstreamResponse,
        adapting: Option<&mut Adapting<'_>>,
        pricing: Pricing<'_>,
    ) -> Result<Answer, AttemptFailure> {
        let limit = self.state.upstreams.limits.max_body_bytes;
        let body = response.read_to_end(limit).await?;
        let status = response.status;
        self.state.upstreams.release(response).await;
        let translated = self
            .timed(
                Stage::Transform,
                transform.transform_response(&self.id, ctx, status, &body),
            )
            .await;
        let out = match self.stage_result(translated) {
            Ok(out) => out,
            // The provider's answer could not be used (malformed, a provider-side error).
            Err(err) if err.status >= 500 => return Err(AttemptFailure::Refused(err)),
            Err(err) => {
                // Counted in the metrics by settlement, like every answer: not here too.
                self.respond(
                    session,
                    err.status,
                    "application/json",
                    err.body(self.format),
                )
                .await;
                return Ok(Answer {
                    status: err.status,
                    usage: NO_USAGE,
                    charge: false,
                    end: StreamEnd::Failed(AttemptError::RefusedAnswer),
                    estimated: false,
                    charged: None,
                });
            }
        };
        let mut content_type = out
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "application/json".into());
        let body = match adapting {
            Some(a) => {
                content_type = "application/json".into();
                match a.complete(out.status, &out.body, out.usage.as_ref()) {
                    Ok(body) => {
                        // Stored before the client has the answer, so it can be read and
                        // continued as soon as the client has it.
                        if let Some(finished) = &a.finished {
                            self.keep_response(a.who, a.call, finished).await;
                        }
                        body
                    }
                    // A canonical answer the adapter cannot use: as unusable as a malformed one.
                    Err(err) => return Err(AttemptFailure::Refused(err)),
                }
            }
            None => out.body,
        };
        // A guardrail that stops the answer: the client gets its error instead, and is not
        // charged for what it did not receive (the tokens are recorded).
        if (200..300).contains(&out.status) {
            if let Err(err) = self.check_answer(pricing.who, &body).await {
                let usage = out.usage.unwrap_or(NO_USAGE);
                self.respond(
                    session,
                    err.status,
                    "application/json",
                    err.body(self.format),
                )
                .await;
                return Ok(Answer {
                    status: err.status,
                    usage,
                    charge: false,
                    end: StreamEnd::Failed(AttemptError::Refused(err.code.clone())),
                    estimated: false,
                    charged: None,
                });
            }
        }
        // No usage from the provider for an answer: estimate it (output from the answer's text
        // here, input from the request at settlement) rather than give it away.
        let estimated = out.usage.is_none() && (200..300).contains(&out.status);
        let usage = match out.usage {
            Some(u) => u,
            None if estimated => Usage {
                output: estimate_output(&body),
                ..NO_USAGE
            },
            None => NO_USAGE,
        };
        // Priced before sending when the provider reported usage, so the answer can say it.
        let charged = if !estimated
            && (200..300).contains(&out.status)
            && super::outcome::usage_tokens(&usage) > 0
        {
            self.decide_charge(
                pricing.who,
                pricing.provider,
                pricing.price,
                usage,
                pricing.byok,
            )
            .await
        } else {
            None
        };
        let body = match (&charged, self.format) {
            (Some(c), ApiFormat::OpenaiChat | ApiFormat::OpenaiResponses)
                if self.state.config.usage_cost_in_responses =>
            {
                with_cost(body, c)
            }
            _ => body,
        };
        if self.respond(session, out.status, &content_type, body).await {
            Ok(Answer {
                status: out.status,
                usage,
                charge: true,
                end: StreamEnd::Complete,
                estimated,
                charged,
            })
        } else {
            // The client never received the answer: record the tokens, charge nothing.
            Ok(Answer {
                status: CLIENT_GONE,
                usage,
                charge: false,
                end: StreamEnd::ClientGone,
                estimated,
                charged: None,
            })
        }
    }
}
