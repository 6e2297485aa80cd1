//! Server-sent events: an incremental parser for upstream streams (bytes arrive in arbitrary
//! pieces) and the encoder for what goes to the client. Framing follows the HTML living
//! standard: lines end with LF, CRLF or CR; a blank line ends an event; `data:` lines join
//! with LF; lines starting with `:` are comments.

use bytes::{BufMut, BytesMut};

/// A parsed event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

/// Feeds bytes in, takes complete events out.
#[derive(Default)]
pub struct Parser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    /// Skip a LF that follows a CR split across two chunks.
    skip_lf: bool,
}

/// Largest event the parser accepts; a stream sending a bigger one is cut (it is broken or
/// hostile).
pub const MAX_EVENT_BYTES: usize = 8 << 20;

#[derive(Debug, thiserror::Error)]
#[error("server-sent event larger than {MAX_EVENT_BYTES} bytes")]
pub struct EventTooLarge;

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes and returns the events they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, EventTooLarge> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.skip_lf {
            self.skip_lf = false;
            if rest.first() == Some(&b'\n') {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, tail) = rest.split_at(pos);
            let is_cr = tail[0] == b'\r';
            rest = &tail[1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.skip_lf = true,
                    _ => {}
                }
            }
            if self.buf.is_empty() {
                self.line(line, &mut out);
            } else {
                self.buf.extend_from_slice(line);
                let full = std::mem::take(&mut self.buf);
                self.line(&full, &mut out);
            }
        }
        self.buf.extend_from_slice(rest);
        let pending = self.buf.len() + self.data.as_ref().map_or(0, String::len);
        if pending > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(out)
    }

    /// Whether bytes of an unfinished event are buffered (a stream ending here was cut).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.data.is_some()
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Event>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(Event {
                    event: self.event.take(),
                    data,
                });
            }
            self.event = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "event" => self.event = Some(value.to_string()),
            _ => {} // id, retry: not needed by the gateway
        }
    }
}

/// Encodes an event for the client. Line breaks of any kind (LF, CRLF, CR) in `data` become
/// separate `data:` lines, and an event name cannot carry one, so nothing a plugin or an
/// upstream writes can frame a second event or field.
pub fn encode(out: &mut BytesMut, event: Option<&str>, data: &str) {
    if let Some(name) = event {
        out.put_slice(b"event: ");
        for part in name.split(['\r', '\n']) {
            out.put_slice(part.as_bytes());
        }
        out.put_u8(b'\n');
    }
    let mut rest = data;
    loop {
        out.put_slice(b"data: ");
        match rest.find(['\r', '\n']) {
            Some(i) => {
                out.put_slice(&rest.as_bytes()[..i]);
                out.put_u8(b'\n');
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                out.put_slice(rest.as_bytes());
                out.put_u8(b'\n');
                break;
            }
        }
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere() {
        let stream = b"event: a\r\ndata: {\"x\":1}\r\n\r\n: comment\n\ndata: line1\ndata: line2\n\ndata: [DONE]\r\r";
        for split in 0..stream.len() {
            let mut p = Parser::new();
            let mut events = p.feed(&stream[..split]).unwrap();
            events.extend(p.feed(&stream[split..]).unwrap());
            assert_eq!(
                events,
                vec![
                    Event {
                        event: Some("a".into()),
                        data: "{\"x\":1}".into()
                    },
                    Event {
                        event: None,
                        data: "line1\nline2".into()
                    },
                    Event {
                        event: None,
                        data: "[DONE]".into()
                    },
                ],
                "split at {split}"
            );
            assert!(!p.has_partial());
        }
    }

    #[test]
    fn partial_event_is_detected_and_encoding_round_trips() {
        let mut p = Parser::new();
        assert!(p.feed(b"data: {\"a\"").unwrap().is_empty());
        assert!(p.has_partial());
        let mut out = BytesMut::new();
        encode(&mut out, Some("message_start"), "a\nb");
        assert_eq!(&out[..], b"event: message_start\ndata: a\ndata: b\n\n");
        let events = Parser::new().feed(&out).unwrap();
        assert_eq!(events[0].data, "a\nb");
    }

    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes in arbitrary pieces never panic, and what a stream yields does not
        /// depend on how it was split.
        #[test]
        fn arbitrary_bytes_parse_the_same_however_split(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cut in any::<prop::sample::Index>(),
        ) {
            let whole = Parser::new().feed(&bytes).unwrap();
            let at = cut.index(bytes.len() + 1);
            let mut p = Parser::new();
            let mut split = p.feed(&bytes[..at]).unwrap();
            split.extend(p.feed(&bytes[at..]).unwrap());
            prop_assert_eq!(whole, split);
        }

        /// Encoded events come back as they were (line breaks normalised to LF), however the
        /// bytes are split.
        #[test]
        fn encoded_events_round_trip(
            events in proptest::collection::vec(("[a-z_]{0,8}", "\\PC{0,30}|[a\r\n ]{0,6}"), 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let mut out = BytesMut::new();
            for (name, data) in &events {
                encode(&mut out, (!name.is_empty()).then_some(name.as_str()), data);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(out.len() + 1)).collect();
            points.sort_unstable();
            let mut p = Parser::new();
            let mut got = Vec::new();
            let mut from = 0;
            for at in points.into_iter().chain([out.len()]) {
                got.extend(p.feed(&out[from..at]).unwrap());
                from = at;
            }
            let want: Vec<Event> = events
                .iter()
                .map(|(name, data)| Event {
                    event: (!name.is_empty()).then(|| name.clone()),
                    data: data.replace("\r\n", "\n").replace('\r', "\n"),
                })
                .collect();
            prop_assert_eq!(got, want);
            prop_assert!(!p.has_partial());
        }
    }

    #[test]
    fn oversized_event_is_refused() {
        let mut p = Parser::new();
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert!(p.feed(b"data: ").is_ok());
        assert!(p.feed(&big).is_err());
    }
}
