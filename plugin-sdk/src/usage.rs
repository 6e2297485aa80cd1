//! Usage as providers report it, mapped to [`Usage`].
//!
//! Counts saturate: a negative or non-numeric count reads as 0, one past `u64::MAX` (or a float
//! too large for it) as `u64::MAX`, and sums stop at `u64::MAX` rather than wrapping.

use serde_json::Value;

use crate::Usage;

fn field(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(next) => cur = next,
            None => return 0,
        }
    }
    count(cur)
}

/// A token count: integers as they are, non-negative floats truncated (saturating at
/// `u64::MAX`), anything else 0.
fn count(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| *f >= 0.0)
                // `as` saturates: 1e300 becomes u64::MAX, NaN cannot occur in JSON.
                .map(|f| f as u64)
        })
        .unwrap_or(0)
}

/// OpenAI chat `usage` object: `prompt_tokens` includes cached tokens, which are reported apart.
pub fn from_openai(usage: &Value) -> Usage {
    let prompt = field(usage, &["prompt_tokens"]);
    let cached = field(usage, &["prompt_tokens_details", "cached_tokens"]);
    Usage {
        input: prompt.saturating_sub(cached),
        output: field(usage, &["completion_tokens"]),
        cache_read: cached,
        cache_write: 0,
        reasoning: field(usage, &["completion_tokens_details", "reasoning_tokens"]),
    }
}

/// OpenAI chat `usage` object for a [`Usage`] (the inverse of [`from_openai`]).
pub fn to_openai(usage: &Usage) -> Value {
    let prompt = usage
        .input
        .saturating_add(usage.cache_read)
        .saturating_add(usage.cache_write);
    serde_json::json!({
        "prompt_tokens": prompt,
        "completion_tokens": usage.output,
        "total_tokens": prompt.saturating_add(usage.output),
        "prompt_tokens_details": { "cached_tokens": usage.cache_read },
        "completion_tokens_details": { "reasoning_tokens": usage.reasoning },
    })
}

/// Anthropic Messages `usage` object: `input_tokens` excludes cache reads and writes.
pub fn from_anthropic(usage: &Value) -> Usage {
    Usage {
        input: field(usage, &["input_tokens"]),
        output: field(usage, &["output_tokens"]),
        cache_read: field(usage, &["cache_read_input_tokens"]),
        cache_write: field(usage, &["cache_creation_input_tokens"]),
        reasoning: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_round_trip() {
        let u = from_openai(&json!({
            "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 30},
            "completion_tokens_details": {"reasoning_tokens": 5}
        }));
        assert_eq!(
            (u.input, u.output, u.cache_read, u.reasoning),
            (70, 20, 30, 5)
        );
        assert_eq!(to_openai(&u)["prompt_tokens"], 100);
        assert_eq!(to_openai(&u)["total_tokens"], 120);
    }

    #[test]
    fn anthropic_fields() {
        let u = from_anthropic(&json!({
            "input_tokens": 10, "output_tokens": 4,
            "cache_read_input_tokens": 2, "cache_creation_input_tokens": 3
        }));
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write),
            (10, 4, 2, 3)
        );
    }

    #[test]
    fn counts_saturate_and_never_go_negative() {
        let u = from_anthropic(&json!({
            "input_tokens": u64::MAX, "output_tokens": -5,
            "cache_read_input_tokens": 1e300, "cache_creation_input_tokens": 12.9
        }));
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write),
            (u64::MAX, 0, u64::MAX, 12)
        );
        let v = to_openai(&u);
        assert_eq!(v["prompt_tokens"], u64::MAX);
        assert_eq!(v["total_tokens"], u64::MAX);
        let past_u64: Value = serde_json::from_str(
            r#"{"prompt_tokens": 18446744073709551616, "completion_tokens": "7"}"#,
        )
        .unwrap();
        let u = from_openai(&past_u64);
        assert_eq!((u.input, u.output), (u64::MAX, 0));
    }
}
