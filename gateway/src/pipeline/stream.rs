//! Streamed responses: upstream SSE bytes in, client events out, one event at a time.
//!
//! The state machine ([`relay`]) knows nothing of Pingora or plugins: it reads a
//! [`BodySource`] (the upstream body), hands each framed event to an [`EventTranslator`] (the
//! transform plugin, and for non-canonical clients an adapter after it) and writes to a
//! [`ClientSink`] (the client session). That keeps its rules testable in plain Rust:
//!
//! - nothing is sent until the first client event is ready, so an upstream that stalls, breaks
//!   or is refused before that is an attempt failure and the next provider is tried;
//! - after it, a failure ends the stream with one error event in the client's format;
//! - a client that goes away stops the upstream read (dropping the upstream session cancels
//!   the work) and is charged for what it received.

use bytes::{Bytes, BytesMut};

#[cfg(test)]
use super::outcome::NO_USAGE;
use super::outcome::{cut_usage, Answer, AttemptError, StreamEnd, STREAM_FAILED};
use super::upstream::{AttemptFailure, BodyError, UpstreamResponse};
use crate::api_error::ApiError;
use crate::plugins::bindings::{SseEvent, Usage};
use crate::sse;

/// Where a stream's bytes go: the client connection (a buffer in tests).
pub trait ClientSink {
    /// Sends the response header; false when the client is gone.
    async fn start(&mut self) -> bool;
    /// Sends bytes (`end`: the last of them); false when the client is gone.
    async fn send(&mut self, bytes: Bytes, end: bool) -> bool;
}

/// Where a stream's bytes come from: the upstream response body.
pub trait BodySource {
    /// The next piece of the body, `None` at its end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError>;
}

impl BodySource for UpstreamResponse {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        UpstreamResponse::next_chunk(self).await
    }
}

/// Why a stream stopped early.
#[derive(Debug)]
pub enum StreamFault {
    /// The upstream's bytes stopped, broke or could not be framed.
    Broken(BodyError),
    /// The transform refused an event (e.g. the provider sent an error event).
    Rejected(ApiError),
    /// The transform plugin failed, with its failure class.
    Plugin(&'static str),
    /// A guardrail stopped the answer.
    Blocked(ApiError),
}

impl StreamFault {
    /// Before the first byte reached the client: an attempt failure, so the next provider
    /// is tried (or the client gets the error as a normal response).
    fn into_failure(self) -> AttemptFailure {
        match self {
            StreamFault::Broken(e) => e.into(),
            StreamFault::Rejected(err) => AttemptFailure::Refused(err),
            StreamFault::Blocked(err) => AttemptFailure::Blocked(err),
            StreamFault::Plugin(class) => AttemptFailure::Other(format!("plugin: {class}")),
        }
    }

    /// After it: the error the client is told, and what the attempt records.
    fn into_error(self) -> (ApiError, AttemptError) {
        match self {
            StreamFault::Broken(e) => {
                let message = match e {
                    BodyError::Stall | BodyError::Deadline => {
                        "The upstream provider stopped sending its answer (timed out); the stream was ended."
                    }
                    _ => "The upstream provider's stream was interrupted before it completed.",
                };
                (
                    ApiError::new(502, "upstream_stream_interrupted", message),
                    AttemptError::from(&e),
                )
            }
            StreamFault::Rejected(err) | StreamFault::Blocked(err) => {
                let class = AttemptError::Refused(err.code.clone());
                (err, class)
            }
            StreamFault::Plugin(class) => (
                ApiError::new(
                    500,
                    "plugin_error",
                    format!("The stream failed in the gateway: plugin: {class}"),
                ),
                AttemptError::Plugin(class),
            ),
        }
    }
}

/// Turns upstream events into client events: the transform plugin, possibly followed by a
/// client-format adapter.
pub trait EventTranslator {
    /// One upstream event: the client events it becomes (may be none).
    async fn event(&mut self, ev: SseEvent) -> Result<Vec<SseEvent>, StreamFault>;
    /// The upstream stream ended cleanly: the closing events.
    async fn finish(&mut self) -> Vec<SseEvent>;
    /// The stream fails after its first byte: the error event(s) in the client's format.
    fn fail(&mut self, err: &ApiError) -> Vec<SseEvent>;
    /// After [`EventTranslator::finish`], before its events are sent: whatever must be done
    /// by the time the client has the last byte (e.g. storing the conversation state).
    async fn before_close(&mut self) {}
    /// Usage reported so far.
    fn usage(&self) -> Option<Usage>;
    /// Characters of answer text produced so far (for the estimate when usage never comes).
    fn delivered_chars(&self) -> u64;

    /// The charge decided while streaming (to show `usage.cost` in the stream), valid for the
    /// usage [`EventTranslator::usage`] reports now; None when not decided or since changed.
    fn charged(&self) -> Option<crate::plugins::bindings::Charge> {
        None
    }
}

fn encode_all(out: &mut BytesMut, events: &[SseEvent]) {
    for e in events {
        sse::encode(out, e.event.as_deref(), &e.data);
    }
}

/// Frames one chunk of upstream bytes and translates its events into `out`.
async fn translate_chunk<T: EventTranslator>(
    parser: &mut sse::Parser,
    tr: &mut T,
    chunk: &[u8],
    out: &mut BytesMut,
) -> Result<(), StreamFault> {
    let events = parser
        .feed(chunk)
        .map_err(|e| StreamFault::Broken(BodyError::Io(format!("stream-invalid: {e}"))))?;
    for event in events {
        let produced = tr
            .event(SseEvent {
                event: event.event,
                data: event.data,
            })
            .await?;
        encode_all(out, &produced);
    }
    Ok(())
}

/// A stream that reached the client (or whose client left first).
#[derive(Debug, PartialEq)]
pub struct Relayed {
    pub answer: Answer,
    /// The upstream body was read to its end (its connection may be reused).
    pub upstream_done: bool,
}

/// Streams `body` to `sink` through `tr`. `Err` is a failure before the first byte reached
/// the client (nothing was sent, another provider may be tried).
pub async fn relay<S: ClientSink, B: BodySource, T: EventTranslator>(
    sink: &mut S,
    body: &mut B,
    tr: &mut T,
) -> Result<Relayed, AttemptFailure> {
    let mut parser = sse::Parser::new();
    let mut committed = false;
    let mut out = BytesMut::new();
    // Set when the stream stops early; the error event (if any) is already in `out`.
    let mut end: Option<StreamEnd> = None;
    let gone = |tr: &T, chars| Relayed {
        answer: Answer::client_gone(cut_usage(tr.usage(), chars)),
        upstream_done: false,
    };
    loop {
        let fault = match body.next_chunk().await {
            Ok(Some(chunk)) => translate_chunk(&mut parser, tr, &chunk, &mut out)
                .await
                .err(),
            Ok(None) if parser.has_partial() => {
                Some(StreamFault::Broken(BodyError::Io("stream-cut".into())))
            }
            Ok(None) => break,
            Err(e) => Some(StreamFault::Broken(e)),
        };
        if let Some(fault) = fault {
            if !committed {
                return Err(fault.into_failure());
            }
            let (err, class) = fault.into_error();
            encode_all(&mut out, &tr.fail(&err));
            end = Some(StreamEnd::Failed(class));
            break;
        }
        if out.is_empty() {
            continue;
        }
        if !committed {
            if !sink.start().await {
                return Ok(gone(tr, 0));
            }
            committed = true;
        }
        if !sink.send(out.split().freeze(), false).await {
            end = Some(StreamEnd::ClientGone);
            break;
        }
    }
    if !committed && !sink.start().await {
        return Ok(gone(tr, 0));
    }
    let (end, upstream_done) = match end {
        Some(StreamEnd::ClientGone) => (StreamEnd::ClientGone, false),
        Some(failed) => {
            let _ = sink.send(out.split().freeze(), true).await;
            (failed, false)
        }
        None => {
            encode_all(&mut out, &tr.finish().await);
            tr.before_close().await;
            let written = sink.send(out.split().freeze(), true).await;
            let end = if written {
                StreamEnd::Complete
            } else {
                StreamEnd::ClientGone
            };
            (end, true)
        }
    };
    // Charge only what the client received: a stream that did not complete has no final
    // usage, so keep what the provider reported so far (e.g. Anthropic's prompt tokens) and
    // count output from the text delivered (~4 characters a token).
    let usage = tr.usage();
    let chars = tr.delivered_chars();
    // A complete stream without usage is estimated: output from the delivered text here, input
    // from the request at settlement.
    let answer = match end {
        StreamEnd::Complete => Answer {
            status: 200,
            usage: usage.unwrap_or_else(|| cut_usage(None, chars)),
            charge: true,
            end,
            estimated: usage.is_none(),
            charged: tr.charged(),
        },
        StreamEnd::ClientGone => Answer::client_gone(cut_usage(usage, chars)),
        StreamEnd::Failed(_) => Answer {
            status: STREAM_FAILED,
            usage: cut_usage(usage, chars),
            charge: true,
            end,
            estimated: false,
            charged: None,
        },
    };
    Ok(Relayed {
        answer,
        upstream_done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Upstream body: a script of chunks and errors.
    struct Script(VecDeque<Result<Option<Bytes>, BodyError>>);
    impl Script {
        fn of(parts: &[&str]) -> Self {
            Script(
                parts
                    .iter()
                    .map(|p| Ok(Some(Bytes::copy_from_slice(p.as_bytes()))))
                    .collect(),
            )
        }
        fn then(mut self, r: Result<Option<Bytes>, BodyError>) -> Self {
            self.0.push_back(r);
            self
        }
    }
    impl BodySource for Script {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
            self.0.pop_front().unwrap_or(Ok(None))
        }
    }

    /// Client: records what it got; can refuse the header or fail after `accept` writes.
    #[derive(Default)]
    struct Client {
        started: bool,
        refuse_start: bool,
        accept: Option<usize>,
        writes: usize,
        got: Vec<u8>,
        ended: bool,
    }
    impl ClientSink for Client {
        async fn start(&mut self) -> bool {
            self.started = !self.refuse_start;
            self.started
        }
        async fn send(&mut self, bytes: Bytes, end: bool) -> bool {
            if self.accept.is_some_and(|n| self.writes >= n) {
                return false;
            }
            self.writes += 1;
            self.got.extend_from_slice(&bytes);
            self.ended |= end;
            true
        }
    }
    impl Client {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.got).into_owned()
        }
    }

    /// Translator: passes data through; `ERR` is refused, `PANIC` is a plugin failure,
    /// `{"u":N}` reports N output tokens and emits nothing.
    #[derive(Default)]
    struct Echo {
        usage: Option<Usage>,
        chars: u64,
    }
    impl EventTranslator for Echo {
        async fn event(&mut self, ev: SseEvent) -> Result<Vec<SseEvent>, StreamFault> {
            match ev.data.as_str() {
                "ERR" => Err(StreamFault::Rejected(ApiError::new(
                    529,
                    "overloaded",
                    "busy",
                ))),
                "PANIC" => Err(StreamFault::Plugin("trap")),
                d if d.starts_with("{\"u\":") => {
                    let n = d[5..d.len() - 1].parse().unwrap_or(0);
                    self.usage = Some(Usage {
                        output: n,
                        ..NO_USAGE
                    });
                    Ok(vec![])
                }
                _ => {
                    self.chars += ev.data.len() as u64;
                    Ok(vec![ev])
                }
            }
        }
        async fn finish(&mut self) -> Vec<SseEvent> {
            vec![SseEvent {
                event: None,
                data: "[DONE]".into(),
            }]
        }
        fn fail(&mut self, err: &ApiError) -> Vec<SseEvent> {
            vec![SseEvent {
                event: Some("error".into()),
                data: err.code.clone(),
            }]
        }
        fn usage(&self) -> Option<Usage> {
            self.usage
        }
        fn delivered_chars(&self) -> u64 {
            self.chars
        }
    }

    fn run(body: Script, client: &mut Client) -> Result<Relayed, AttemptFailure> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut body = body;
        rt.block_on(relay(client, &mut body, &mut Echo::default()))
    }

    #[test]
    fn complete_stream_ends_with_the_closing_events() {
        let mut c = Client::default();
        let r = run(
            Script::of(&["data: a\n\n", "data: b\n", "\n", "data: {\"u\":7}\n\n"]),
            &mut c,
        )
        .expect("answered");
        assert_eq!(c.text(), "data: a\n\ndata: b\n\ndata: [DONE]\n\n");
        assert!(c.ended);
        assert_eq!(r.answer.status, 200);
        assert_eq!(r.answer.usage.output, 7);
        assert_eq!(r.answer.end, StreamEnd::Complete);
        assert!(r.upstream_done);
    }

    #[test]
    fn nothing_is_sent_before_the_first_event_so_a_fault_there_falls_back() {
        for fault in [BodyError::Stall, BodyError::Io("reset".into())] {
            let mut c = Client::default();
            let r = run(Script::of(&[": comment\n\n"]).then(Err(fault)), &mut c);
            assert!(
                r.is_err(),
                "a fault before the first event is an attempt failure"
            );
            assert!(!c.started && c.got.is_empty());
        }
        let mut c = Client::default();
        let r = run(Script::of(&["data: ERR\n\n"]), &mut c);
        assert!(matches!(r, Err(AttemptFailure::Refused(e)) if e.status == 529));
        assert!(!c.started);
    }

    #[test]
    fn a_fault_after_the_first_byte_ends_with_one_error_event() {
        let mut c = Client::default();
        let r = run(
            Script::of(&["data: hello\n\n"]).then(Err(BodyError::Stall)),
            &mut c,
        )
        .expect("committed");
        assert_eq!(
            c.text(),
            "data: hello\n\nevent: error\ndata: upstream_stream_interrupted\n\n"
        );
        assert!(!c.text().contains("[DONE]"));
        assert_eq!(r.answer.status, STREAM_FAILED);
        assert_eq!(r.answer.end, StreamEnd::Failed(AttemptError::Stall));
        // Output charged from the delivered text: "hello" is 5 chars, 2 tokens.
        assert_eq!(r.answer.usage.output, 2);
        let mut c = Client::default();
        let r = run(Script::of(&["data: hi\n\n", "data: PANIC\n\n"]), &mut c).expect("committed");
        assert_eq!(
            r.answer.end,
            StreamEnd::Failed(AttemptError::Plugin("trap"))
        );
        let mut c = Client::default();
        let r = run(Script::of(&["data: hi\n\n", "data: ERR\n\n"]), &mut c).expect("committed");
        assert_eq!(
            r.answer.end,
            StreamEnd::Failed(AttemptError::Refused("overloaded".into()))
        );
    }

    #[test]
    fn a_fault_in_the_first_chunk_discards_its_earlier_events_and_falls_back() {
        // Events are committed a chunk at a time, so a refusal later in the first chunk still
        // leaves nothing sent: the next provider can answer in full.
        let mut c = Client::default();
        let r = run(Script::of(&["data: hi\n\ndata: PANIC\n\n"]), &mut c);
        assert!(matches!(r, Err(AttemptFailure::Other(m)) if m == "plugin: trap"));
        assert!(!c.started);
    }

    #[test]
    fn a_cut_mid_event_is_a_broken_stream() {
        let mut c = Client::default();
        let r = run(Script::of(&["data: one\n\n", "data: tw"]), &mut c).expect("committed");
        assert_eq!(r.answer.end, StreamEnd::Failed(AttemptError::StreamCut));
        assert!(!r.upstream_done);
    }

    #[test]
    fn a_client_that_leaves_is_charged_what_it_received() {
        let mut c = Client {
            accept: Some(1),
            ..Default::default()
        };
        let r = run(
            Script::of(&[
                "data: abcdefgh\n\n",
                "data: more\n\n",
                "data: {\"u\":50}\n\n",
            ]),
            &mut c,
        )
        .expect("answered");
        assert_eq!(r.answer.end, StreamEnd::ClientGone);
        assert_eq!(r.answer.status, 499);
        assert!(r.answer.charge);
        assert!(
            !r.upstream_done,
            "the upstream read stops when the client leaves"
        );
        let mut c = Client {
            refuse_start: true,
            ..Default::default()
        };
        let r = run(Script::of(&["data: x\n\n"]), &mut c).expect("answered");
        assert_eq!(r.answer.end, StreamEnd::ClientGone);
        assert_eq!(r.answer.usage.output, 0);
    }

    #[test]
    fn an_empty_stream_still_answers_and_closes() {
        let mut c = Client::default();
        let r = run(Script::of(&[]), &mut c).expect("answered");
        assert!(c.started);
        assert_eq!(c.text(), "data: [DONE]\n\n");
        assert_eq!(r.answer.end, StreamEnd::Complete);
    }
}
