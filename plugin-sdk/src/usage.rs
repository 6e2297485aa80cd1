//! Usage as providers report it, mapped to [`Usage`].

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
    cur.as_u64().unwrap_or(0)
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
    let prompt = usage.input + usage.cache_read + usage.cache_write;
    serde_json::json!({
        "prompt_tokens": prompt,
        "completion_tokens": usage.output,
        "total_tokens": prompt + usage.output,
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
}
