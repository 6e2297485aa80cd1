//! Request validation: what the gateway relies on, and what it must not forward blindly, is
//! checked before anything is routed or charged, with errors in the client's shape naming the
//! offending field (`param`).
//!
//! Two passes. [`scan`] walks the raw bytes once: UTF-8, nesting depth (serde_json skips
//! ignored values without a depth limit, and providers choke on 100k-deep documents) and
//! `\u` escapes that would decode to a lone surrogate (not a Unicode scalar: providers reject
//! or mangle them). Then a zero-copy peek (`RawValue`) reads just the fields checked here.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::api_error::ApiError;
use crate::config::ValidationLimits;

/// A problem [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    Utf8,
    TooDeep(usize),
    LoneSurrogate,
}

fn hex4(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b.get(..4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// One pass over a JSON document's bytes. Syntax errors are left to the parser that follows.
pub fn scan(body: &[u8], max_depth: usize) -> Result<(), ScanError> {
    std::str::from_utf8(body).map_err(|_| ScanError::Utf8)?;
    let mut depth = 0usize;
    let mut i = 0usize;
    while let Some(&c) = body.get(i) {
        match c {
            b'"' => {
                i += 1;
                while let Some(&c) = body.get(i) {
                    match c {
                        b'"' => break,
                        b'\\' if body.get(i + 1) == Some(&b'u') => {
                            let Some(cp) = hex4(body.get(i + 2..).unwrap_or_default()) else {
                                i += 2;
                                continue;
                            };
                            if (0xDC00..0xE000).contains(&cp) {
                                return Err(ScanError::LoneSurrogate);
                            }
                            if (0xD800..0xDC00).contains(&cp) {
                                let low = (body.get(i + 6..i + 8) == Some(b"\\u"))
                                    .then(|| hex4(body.get(i + 8..).unwrap_or_default()))
                                    .flatten();
                                if !low.is_some_and(|l| (0xDC00..0xE000).contains(&l)) {
                                    return Err(ScanError::LoneSurrogate);
                                }
                                i += 12;
                            } else {
                                i += 6;
                            }
                            continue;
                        }
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(ScanError::TooDeep(max_depth));
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The JSON type of a raw value, from its first byte.
fn kind(v: &RawValue) -> &'static str {
    match v.get().as_bytes().first() {
        Some(b'"') => "string",
        Some(b'[') => "array",
        Some(b'{') => "object",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

fn invalid(param: &str, message: String) -> ApiError {
    ApiError::bad_request(message).with_param(param)
}

/// An integer field within `1..=max`, or absent/null.
fn bounded_int(v: Option<&RawValue>, param: &str, max: u64) -> Result<Option<u64>, ApiError> {
    let Some(v) = v.filter(|v| kind(v) != "null") else {
        return Ok(None);
    };
    let n: u64 = v
        .get()
        .parse()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            invalid(
                param,
                format!(
                    "Invalid '{param}': expected an integer from 1 to {max}, got {}.",
                    truncate(v.get())
                ),
            )
        })?;
    Ok(Some(n))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[derive(Deserialize)]
struct ChatPeek<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow)]
    stream: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    stream_options: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessagePeek<'a> {
    #[serde(borrow)]
    role: Option<&'a RawValue>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// What the host needs from a valid chat completions request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u32>,
    pub has_tools: bool,
}

/// Checks what every client API's body must be before its own checks: UTF-8, nesting depth
/// within the limit, no lone-surrogate escapes.
pub fn check_text(body: &[u8], limits: &ValidationLimits) -> Result<(), ApiError> {
    scan(body, limits.max_json_depth).map_err(|e| match e {
        ScanError::Utf8 => ApiError::bad_request("The request body is not valid UTF-8."),
        ScanError::TooDeep(max) => ApiError::bad_request(format!(
            "The request body nests arrays and objects deeper than {max} levels."
        )),
        ScanError::LoneSurrogate => ApiError::bad_request(
            "The request body contains a \\u escape that is not a valid Unicode character \
             (a lone surrogate).",
        ),
    })
}

/// Checks an OpenAI chat completions body.
pub fn chat(body: &[u8], limits: &ValidationLimits) -> Result<Chat, ApiError> {
    check_text(body, limits)?;
    let peek: ChatPeek = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "We could not parse the JSON body of your request: {e}"
        ))
    })?;
    let model = match peek.model {
        Some(m) if kind(m) == "string" => serde_json::from_str::<String>(m.get())
            .map_err(|e| invalid("model", format!("Invalid 'model': {e}")))?,
        Some(m) => {
            return Err(invalid(
                "model",
                format!("Invalid 'model': expected a string, got {}.", kind(m)),
            ))
        }
        None => String::new(),
    };
    if model.is_empty() {
        return Err(invalid(
            "model",
            "you must provide a model parameter".into(),
        ));
    }
    if model.len() > 256 {
        return Err(invalid(
            "model",
            "Invalid 'model': longer than 256 bytes.".into(),
        ));
    }
    let Some(messages) = peek.messages else {
        return Err(invalid(
            "messages",
            "'messages' is a required property".into(),
        ));
    };
    if kind(messages) != "array" {
        return Err(invalid(
            "messages",
            format!(
                "Invalid 'messages': expected an array of message objects, got {}.",
                kind(messages)
            ),
        ));
    }
    let list: Vec<&RawValue> = serde_json::from_str(messages.get())
        .map_err(|e| invalid("messages", format!("Invalid 'messages': {e}")))?;
    if list.is_empty() {
        return Err(invalid(
            "messages",
            "Invalid 'messages': empty array. Expected at least one message.".into(),
        ));
    }
    for (i, m) in list.iter().enumerate() {
        let param = format!("messages[{i}]");
        if kind(m) != "object" {
            return Err(invalid(
                &param,
                format!("Invalid '{param}': expected an object, got {}.", kind(m)),
            ));
        }
        let msg: MessagePeek = serde_json::from_str(m.get())
            .map_err(|e| invalid(&param, format!("Invalid '{param}': {e}")))?;
        let role = msg
            .role
            .filter(|r| kind(r) == "string")
            .and_then(|r| serde_json::from_str::<&str>(r.get()).ok());
        if !role.is_some_and(|r| ROLES.contains(&r)) {
            return Err(invalid(
                &format!("{param}.role"),
                format!(
                    "Invalid '{param}.role': expected one of {}.",
                    ROLES.join(", ")
                ),
            ));
        }
        if let Some(c) = msg.content {
            if !matches!(kind(c), "string" | "array" | "null") {
                return Err(invalid(
                    &format!("{param}.content"),
                    format!(
                        "Invalid '{param}.content': expected a string or an array of content parts, got {}.",
                        kind(c)
                    ),
                ));
            }
        }
    }
    let stream = match peek.stream {
        None => false,
        Some(s) => match s.get() {
            "true" => true,
            "false" | "null" => false,
            other => {
                return Err(invalid(
                    "stream",
                    format!(
                        "Invalid 'stream': expected a boolean, got {}.",
                        truncate(other)
                    ),
                ))
            }
        },
    };
    for (param, v) in [
        ("tools", peek.tools),
        ("stream_options", peek.stream_options),
    ] {
        let want = if param == "tools" { "array" } else { "object" };
        if let Some(v) = v.filter(|v| kind(v) != "null" && kind(v) != want) {
            return Err(invalid(
                param,
                format!("Invalid '{param}': expected an {want}, got {}.", kind(v)),
            ));
        }
    }
    bounded_int(peek.n, "n", u64::from(limits.max_n))?;
    let max_tokens = bounded_int(
        peek.max_completion_tokens,
        "max_completion_tokens",
        limits.max_output_tokens,
    )?
    .or(bounded_int(
        peek.max_tokens,
        "max_tokens",
        limits.max_output_tokens,
    )?);
    Ok(Chat {
        model,
        stream,
        max_tokens: max_tokens.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        has_tools: peek.tools.is_some_and(|t| kind(t) == "array"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: ValidationLimits = ValidationLimits {
        max_n: 16,
        max_output_tokens: 1_000_000,
        max_json_depth: 64,
    };

    fn param_of(body: &str) -> Option<String> {
        chat(body.as_bytes(), &LIMITS).err().and_then(|e| e.param)
    }

    #[test]
    fn accepts_a_normal_request() {
        let c = chat(
            br#"{"model":"m","messages":[{"role":"user","content":"hi \ud83d\ude00"}],"stream":true,"max_tokens":5,"n":2,"tools":[]}"#,
            &LIMITS,
        )
        .unwrap();
        assert_eq!(
            c,
            Chat {
                model: "m".into(),
                stream: true,
                max_tokens: Some(5),
                has_tools: true
            }
        );
    }

    #[test]
    fn refuses_what_must_not_be_forwarded() {
        let cases = [
            (r#"{"model":"m","messages":"hi"}"#, "messages"),
            (r#"{"model":"m","messages":[]}"#, "messages"),
            (r#"{"model":"m","messages":["hi"]}"#, "messages[0]"),
            (
                r#"{"model":"m","messages":[{"content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"wizard"}]}"#,
                "messages[0].role",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                "messages[0].content",
            ),
            (r#"{"model":7,"messages":[{"role":"user"}]}"#, "model"),
            (r#"{"messages":[{"role":"user"}]}"#, "model"),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"n":1000}"#,
                "n",
            ),
            (r#"{"model":"m","messages":[{"role":"user"}],"n":0}"#, "n"),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":4e9}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":4000000000}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"max_completion_tokens":1.5}"#,
                "max_completion_tokens",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                "stream",
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}],"tools":{}}"#,
                "tools",
            ),
        ];
        for (body, param) in cases {
            assert_eq!(param_of(body).as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn refuses_lone_surrogates_deep_nesting_and_bad_utf8() {
        for body in [
            r#"{"model":"m","messages":[{"role":"user","content":"\ud800"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"\udc00x"}]}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"\ud800\u0041"}]}"#,
        ] {
            assert_eq!(scan(body.as_bytes(), 64), Err(ScanError::LoneSurrogate));
            assert_eq!(chat(body.as_bytes(), &LIMITS).unwrap_err().status, 400);
        }
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(scan(deep.as_bytes(), 64), Err(ScanError::TooDeep(64)));
        assert_eq!(scan(b"{\"a\":\"\xff\"}", 64), Err(ScanError::Utf8));
        // Brackets inside strings do not count.
        let text = format!("{{\"a\":\"{}\"}}", "[".repeat(1000));
        assert_eq!(scan(text.as_bytes(), 4), Ok(()));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = scan(&body, 8);
            let _ = chat(&body, &LIMITS);
        }

        #[test]
        fn never_panics_on_json_like_text(body in "[\\[\\]{}\"\\\\u0-9a-fA-FdD:, ]{0,200}") {
            let _ = scan(body.as_bytes(), 8);
            let _ = chat(body.as_bytes(), &LIMITS);
        }

        #[test]
        fn agrees_with_serde_on_valid_documents(s in "\\PC{0,40}") {
            // Any string serde_json itself writes is valid: the scan must accept it.
            let doc = serde_json::json!({"a": [s.clone(), {"b": s}]}).to_string();
            prop_assert_eq!(scan(doc.as_bytes(), 8), Ok(()));
        }
    }
}
