//! The content of one request as the logging stage may see it: the body the client sent and
//! the bytes it received (the event stream's text when streamed), each capped. Captured only
//! for requests whose retention mode lets the logging plugin see content, so the default modes
//! copy nothing.

/// A request's captured content.
#[derive(Debug, Default)]
pub struct Capture {
    cap: usize,
    pub request: Vec<u8>,
    pub response: Vec<u8>,
    /// Either side was longer than the cap and was cut.
    pub truncated: bool,
}

impl Capture {
    pub fn new(cap: usize) -> Capture {
        Capture {
            cap,
            ..Capture::default()
        }
    }

    /// Records the request body (replacing any earlier one).
    pub fn request(&mut self, body: &[u8]) {
        self.request.clear();
        self.truncated |= push_capped(&mut self.request, body, self.cap);
    }

    /// Appends bytes the client received.
    pub fn response(&mut self, bytes: &[u8]) {
        self.truncated |= push_capped(&mut self.response, bytes, self.cap);
    }

    /// Forgets what was received (an attempt's answer that did not reach the client).
    pub fn reset_response(&mut self) {
        self.response.clear();
    }
}

/// Appends what fits under `cap`; true when something was cut.
fn push_capped(buf: &mut Vec<u8>, bytes: &[u8], cap: usize) -> bool {
    let room = cap.saturating_sub(buf.len());
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    bytes.len() > room
}

/// Text for storage: content is UTF-8 JSON or event-stream text; anything else is stored
/// lossily rather than refused.
pub fn as_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_side() {
        let mut c = Capture::new(4);
        c.request(b"abcdef");
        c.response(b"ab");
        assert!(!c.response.is_empty() && c.truncated);
        c.response(b"cdef");
        assert_eq!(
            (c.request.as_slice(), c.response.as_slice()),
            (&b"abcd"[..], &b"abcd"[..])
        );
        let mut c = Capture::new(10);
        c.request(b"{}");
        c.response(b"ok");
        assert!(!c.truncated);
    }
}
