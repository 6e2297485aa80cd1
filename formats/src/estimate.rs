//! Input-token estimates with a real tokenizer, for answers that report no usage.
//!
//! Some providers (or a stream cut short before its usage chunk) give the gateway no token
//! counts; billing and limits still need a number, so the gateway counts the request's input
//! itself and marks the usage as estimated. Counting uses OpenAI's `o200k_base` encoding (the
//! GPT-4o / o-series / GPT-4.1 / GPT-5 vocabulary): exact for those models' text, and a close
//! estimate for other vendors' tokenizers, which is all an estimate promises.
//!
//! The vocabulary ships inside the `tiktoken-rs` crate (no download at run time) and is built
//! once, on first use, behind a [`OnceLock`]; afterwards counting is lock-free and thread-safe.
//!
//! Cost, measured on the 2-core development machine (`cargo test -p tollgate-formats --release
//! -- --ignored --nocapture tokenizer_cost`, three runs): building the encoding (the first
//! call) takes 0.15–0.25 s in a release build (0.7–0.8 s unoptimised); afterwards a 4 KB
//! English prompt (848 tokens) costs 80–120 µs per call (about 1 ms unoptimised), 1 MB of prose
//! about 20 ms, and the worst inputs found, 1 MB with no word break or of whitespace, 0.13–0.21
//! s. So the first call is worth paying at start-up ([`warm_up`]), and a gateway that estimates
//! huge bodies on the request path should bound them.
//!
//! Text is encoded with `encode_ordinary`: special-token markers such as `<|endoftext|>` in a
//! client's text count as the ordinary text they are, never as control tokens.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Tokens OpenAI documents per chat message for its framing (`<|start|>role ... <|end|>`).
const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens for a message's `name` field beyond the name's own text.
const TOKENS_PER_NAME: u64 = 1;
/// Tokens priming the reply (`<|start|>assistant<|message|>`), once per request.
const REPLY_PRIMING: u64 = 3;
/// Tokens for one image part: OpenAI's price of a `detail: low` image, the least any image
/// costs, so the estimate is a floor (a high-detail image costs 85 + 170 per 512 px tile).
pub const IMAGE_TOKENS: u64 = 85;

/// The `o200k_base` encoding, built on first use. `None` only if the vocabulary embedded in the
/// crate failed to load, which cannot happen with a good build; counting then falls back to
/// [`fallback_tokens`] rather than panicking on the request path.
fn encoding() -> Option<&'static CoreBPE> {
    static ENCODING: OnceLock<Option<CoreBPE>> = OnceLock::new();
    ENCODING
        .get_or_init(|| tiktoken_rs::o200k_base().ok())
        .as_ref()
}

/// Builds the encoding now, so the first request does not pay for it (see the module doc).
pub fn warm_up() {
    let _ = encoding();
}

/// Rough count when no tokenizer is available: about 4 bytes of English per token.
fn fallback_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

/// Longest text handed to the tokenizer at once. Its regex engine gives up on a run of about
/// a million whitespace characters, and `tiktoken-rs` unwraps that failure into a panic; a
/// client can send such a run, so long texts are counted in chunks well below that.
const CHUNK: usize = 64 * 1024;

/// Splits off the next chunk of at most [`CHUNK`] bytes. It prefers to cut just before a space
/// that follows a non-space, where the tokenizer starts a new piece (`" word"`) anyway, so the
/// count is the same as for the whole text; text with no such place (a huge word, CJK, a
/// whitespace run) is cut at a character boundary, which may shift the count by a token.
fn split_chunk(text: &str) -> (&str, &str) {
    if text.len() <= CHUNK {
        return (text, "");
    }
    let limit = text.floor_char_boundary(CHUNK);
    let bytes = text.as_bytes();
    let cut = (CHUNK / 2..limit)
        .rev()
        .find(|&i| bytes[i] == b' ' && !bytes[i - 1].is_ascii_whitespace())
        .unwrap_or(limit);
    text.split_at(cut)
}

/// Tokens of a text.
pub fn text_tokens(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    let Some(bpe) = encoding() else {
        return fallback_tokens(text);
    };
    let mut total = 0u64;
    let mut rest = text;
    while !rest.is_empty() {
        let (chunk, tail) = split_chunk(rest);
        // Chunking avoids the tokenizer's one known panic; should another input find a new
        // one, the estimate falls back to the byte heuristic instead of failing the request.
        let count = std::panic::catch_unwind(AssertUnwindSafe(|| bpe.encode_ordinary(chunk).len()))
            .map_or_else(|_| fallback_tokens(chunk), |n| n as u64);
        total = total.saturating_add(count);
        rest = tail;
    }
    total
}

/// Tokens of a JSON value written out as JSON text (tool definitions, arguments objects).
fn json_tokens(value: &Value) -> u64 {
    text_tokens(&value.to_string())
}

/// Input tokens of a canonical (OpenAI chat) request, counted as OpenAI documents it for chat:
/// per message 3 tokens of framing + the role + the content text (strings and text parts) + the
/// `name` (plus 1) + tool calls (function name and arguments) + `tool_call_id`; tool
/// definitions (`tools`, and legacy `functions`) by their JSON text; each image part a fixed
/// [`IMAGE_TOKENS`] (a floor: real image cost depends on size and detail); and 3 once for the
/// reply priming. Parts of other kinds (audio, files) count by their JSON text.
///
/// Never panics: anything that is not the expected shape counts as 0 (a body with no
/// `messages` array and no tools counts 0, without the reply priming).
pub fn canonical_input_tokens(request: &Value) -> u64 {
    let messages = request.get("messages").and_then(Value::as_array);
    let tools = request.get("tools").and_then(Value::as_array);
    let functions = request.get("functions").and_then(Value::as_array);
    if messages.is_none() && tools.is_none() && functions.is_none() {
        return 0;
    }
    let mut total = REPLY_PRIMING;
    for message in messages.into_iter().flatten() {
        total = total.saturating_add(message_tokens(message));
    }
    for tool in tools.into_iter().chain(functions).flatten() {
        total = total.saturating_add(json_tokens(tool));
    }
    total
}

/// Tokens of one chat message, framing included.
fn message_tokens(message: &Value) -> u64 {
    let mut total = TOKENS_PER_MESSAGE;
    let str_tokens = |key: &str| {
        message
            .get(key)
            .and_then(Value::as_str)
            .map_or(0, text_tokens)
    };
    total = total
        .saturating_add(str_tokens("role"))
        .saturating_add(str_tokens("tool_call_id"))
        .saturating_add(content_tokens(message.get("content")));
    if let Some(name) = message.get("name").and_then(Value::as_str) {
        total = total
            .saturating_add(text_tokens(name))
            .saturating_add(TOKENS_PER_NAME);
    }
    let calls = message.get("tool_calls").and_then(Value::as_array);
    // The legacy single `function_call` counts like one tool call.
    let legacy = message.get("function_call").map(std::slice::from_ref);
    for call in calls.map(Vec::as_slice).into_iter().chain(legacy).flatten() {
        let function = call.get("function").unwrap_or(call);
        let part = |key: &str| {
            function
                .get(key)
                .and_then(Value::as_str)
                .map_or(0, text_tokens)
        };
        total = total
            .saturating_add(part("name"))
            .saturating_add(part("arguments"));
    }
    total
}

/// Tokens of a message's `content`: a string, or an array of parts.
fn content_tokens(content: Option<&Value>) -> u64 {
    match content {
        Some(Value::String(text)) => text_tokens(text),
        Some(Value::Array(parts)) => parts.iter().map(part_tokens).fold(0, u64::saturating_add),
        _ => 0,
    }
}

/// Tokens of one content part.
fn part_tokens(part: &Value) -> u64 {
    match part.get("type").and_then(Value::as_str) {
        Some("text") | Some("input_text") | Some("output_text") => part
            .get("text")
            .and_then(Value::as_str)
            .map_or(0, text_tokens),
        Some("refusal") => part
            .get("refusal")
            .and_then(Value::as_str)
            .map_or(0, text_tokens),
        Some("image_url") | Some("input_image") => IMAGE_TOKENS,
        // A bare string part, seen from lenient clients.
        None if part.is_string() => part.as_str().map_or(0, text_tokens),
        _ => json_tokens(part),
    }
}

/// Input tokens of an embeddings request: `input` as a string, an array of strings (each
/// counted), a token array (its length), or an array of token arrays (their lengths). Anything
/// else counts 0.
pub fn embeddings_input_tokens(request: &Value) -> u64 {
    match request.get("input") {
        Some(Value::String(text)) => text_tokens(text),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text_tokens(text),
                // One element of a token array: one token.
                Value::Number(_) => 1,
                Value::Array(tokens) => tokens.len() as u64,
                _ => 0,
            })
            .fold(0, u64::saturating_add),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::time::Instant;

    #[test]
    fn known_o200k_counts() {
        // Reference token ids from OpenAI's tiktoken with o200k_base: the vocabulary is the
        // real one, not merely some BPE.
        let ids = encoding().map(|bpe| bpe.encode_ordinary("hello world"));
        assert_eq!(ids, Some(vec![24912, 2375]));
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("hello world"), 2);
        assert_eq!(text_tokens("Hello, world!"), 4);
    }

    #[test]
    fn special_token_markers_are_plain_text() {
        // encode_with_special_tokens would make this 1 token; a client's text is never control.
        assert!(text_tokens("<|endoftext|>") > 1);
    }

    #[test]
    fn chat_request_follows_the_cookbook_formula() {
        let req = json!({"model": "m", "messages": [
            {"role": "system", "content": "hello world"},
            {"role": "user", "content": [{"type": "text", "text": "hello world"}]},
        ]});
        let expected = 3 + (3 + text_tokens("system") + 2) + (3 + text_tokens("user") + 2);
        assert_eq!(canonical_input_tokens(&req), expected);
    }

    #[test]
    fn names_tool_calls_and_tool_results_count() {
        let req = json!({"messages": [
            {"role": "user", "name": "bob", "content": "hi"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{\"a\":1}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]});
        let expected = 3
            + (3 + text_tokens("user") + text_tokens("hi") + text_tokens("bob") + 1)
            + (3 + text_tokens("assistant") + text_tokens("get") + text_tokens("{\"a\":1}"))
            + (3 + text_tokens("tool") + text_tokens("c1") + text_tokens("42"));
        assert_eq!(canonical_input_tokens(&req), expected);
    }

    #[test]
    fn tools_count_by_json_and_images_by_floor() {
        let tool = json!({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}});
        let req = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
        ]}], "tools": [tool.clone()]});
        let expected = 3 + 3 + text_tokens("user") + 2 * IMAGE_TOKENS + json_tokens(&tool);
        assert_eq!(canonical_input_tokens(&req), expected);
    }

    #[test]
    fn odd_shapes_count_zero_not_panic() {
        for v in [
            json!(null),
            json!(1),
            json!("messages"),
            json!([1, 2]),
            json!({}),
            json!({"messages": 3}),
        ] {
            assert_eq!(canonical_input_tokens(&v), 0, "{v}");
            assert_eq!(embeddings_input_tokens(&v), 0, "{v}");
        }
        // Messages of the wrong shape still count their framing.
        assert_eq!(
            canonical_input_tokens(&json!({"messages": [1, {"role": 5, "content": {"a": 1}}]})),
            3 + 3 + 3
        );
    }

    #[test]
    fn embeddings_inputs() {
        assert_eq!(embeddings_input_tokens(&json!({"input": "hello world"})), 2);
        assert_eq!(
            embeddings_input_tokens(&json!({"input": ["hello world", "hello world"]})),
            4
        );
        assert_eq!(
            embeddings_input_tokens(&json!({"input": [1, 2, 3, 4, 5]})),
            5
        );
        assert_eq!(
            embeddings_input_tokens(&json!({"input": [[1, 2], [3, 4, 5]]})),
            5
        );
        assert_eq!(embeddings_input_tokens(&json!({"input": [null, {}]})), 0);
    }

    #[test]
    fn long_and_pathological_texts_are_counted() {
        // A long run of whitespace, a long word and a long digit run: the tokenizer's regex has
        // a look-ahead, so these are the inputs that could blow up; they must just count.
        let spaces = " ".repeat(200_000);
        assert!(text_tokens(&spaces) > 0);
        let word = "a".repeat(200_000);
        assert!(text_tokens(&word) > 0);
        let digits = "7".repeat(200_000);
        // Digits go in threes; each 64 KiB chunk may end on a short group, so up to one extra
        // token per chunk.
        let exact = 200_000 / 3 + 1;
        assert!((exact..=exact + 4).contains(&text_tokens(&digits)));
        let mixed = " \n\t".repeat(50_000) + "x";
        assert!(text_tokens(&mixed) > 0);
    }

    #[test]
    fn huge_whitespace_runs_do_not_panic() {
        // Unchunked, the tokenizer panics on this (regex engine "stack overflow").
        let spaces = " ".repeat(1_100_000);
        assert!(text_tokens(&spaces) > 0);
    }

    #[test]
    fn chunking_keeps_the_count_of_ordinary_text() {
        let sentence = "Tollgate counts tokens, even for a very long prompt: 12345 héllo wörld! ";
        let text = sentence.repeat(3 * CHUNK / sentence.len());
        assert!(text.len() > 2 * CHUNK);
        let whole = encoding().map(|bpe| bpe.encode_ordinary(&text).len() as u64);
        assert_eq!(Some(text_tokens(&text)), whole);
        // Every cut lands on a character boundary, whatever the text.
        let cjk = "漢字かな".repeat(CHUNK);
        assert!(text_tokens(&cjk) > 0);
    }

    #[test]
    fn concurrent_first_use_is_safe() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| text_tokens("hello world")))
            .collect();
        for h in handles {
            assert_eq!(h.join().ok(), Some(2));
        }
    }

    /// Measures what the module doc quotes. Run with
    /// `cargo test -p tollgate-formats --release -- --ignored --nocapture tokenizer_cost`.
    #[test]
    #[ignore = "timing measurement, run by hand"]
    fn tokenizer_cost() {
        let start = Instant::now();
        let fresh = tiktoken_rs::o200k_base();
        let build = start.elapsed();
        assert!(fresh.is_ok());
        warm_up();

        let sentence = "The quick brown fox jumps over the lazy dog, and then it writes a \
                        short report about the gateway's token accounting. ";
        let prompt: String = sentence.repeat(4096 / sentence.len() + 1)[..4096].to_string();
        let req = json!({"messages": [{"role": "user", "content": prompt}]});
        let rounds = 200u32;
        let start = Instant::now();
        let mut tokens = 0;
        for _ in 0..rounds {
            tokens = canonical_input_tokens(std::hint::black_box(&req));
        }
        let per_call = start.elapsed() / rounds;
        println!(
            "o200k_base: build (first call) {build:?}; 4 KB prompt ({tokens} tokens): {per_call:?} per call"
        );
        // Big inputs: 1 MB of prose, and the worst cases a client can send, 1 MB with no word
        // break and 1 MB of whitespace.
        for (label, text) in [
            ("1 MB prose", sentence.repeat((1 << 20) / sentence.len())),
            ("1 MB one word", "a".repeat(1 << 20)),
            ("1 MB spaces", " ".repeat(1 << 20)),
        ] {
            let start = Instant::now();
            let n = text_tokens(&text);
            println!("{label}: {n} tokens in {:?}", start.elapsed());
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(text in ".{0,400}") {
            let _ = text_tokens(&text);
        }

        #[test]
        fn never_panics_on_any_json(json in crate::test_support::arb_json()) {
            let _ = canonical_input_tokens(&json);
            let _ = embeddings_input_tokens(&json);
            let _ = canonical_input_tokens(&json!({"messages": [json.clone()], "tools": [json.clone()]}));
        }
    }
}
