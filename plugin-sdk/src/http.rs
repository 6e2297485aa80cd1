//! Header helpers. Header names from the host are lower-case.

use crate::Headers;

/// The first value of a header (name compared case-insensitively).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The token of an `Authorization: Bearer <token>` header, or of `x-api-key` (Anthropic style).
pub fn bearer_token(headers: &Headers) -> Option<&str> {
    if let Some(value) = header(headers, "authorization") {
        let value = value.trim();
        let (scheme, token) = value.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() {
            return Some(token.trim());
        }
        return None;
    }
    header(headers, "x-api-key")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A `content-type: application/json` header pair.
pub fn json_content_type() -> (String, String) {
    ("content-type".to_string(), "application/json".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bearer_and_x_api_key() {
        assert_eq!(
            bearer_token(&h(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&h(&[("Authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(bearer_token(&h(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer_token(&h(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer_token(&h(&[("x-api-key", "k1")])), Some("k1"));
        assert_eq!(bearer_token(&h(&[])), None);
    }
}
