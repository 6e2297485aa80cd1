//! The redaction itself, plain Rust without a regex engine (the component stays small): a scan
//! over the text that replaces emails, phone numbers and Luhn-valid card numbers. Patterns are
//! ASCII, so every cut falls on a character boundary and multibyte text passes unchanged.
//!
//! Chosen to leave JSON and event-stream framing alone: a number right after `:` (a JSON value
//! such as `"created":1731234567890`) is never a card or phone; a run of digits without
//! separators is never a phone; a phone needs a leading `+`, or at least two groups with the
//! last of four or more digits (dates such as 2024-05-01 and IP addresses are not phones);
//! numbers with `.` separators need three groups (so decimals such as 0.000023 are not phones).

/// Which kinds to redact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    pub email: bool,
    pub phone: bool,
    pub card: bool,
}

impl Kinds {
    pub const ALL: Kinds = Kinds {
        email: true,
        phone: true,
        card: true,
    };
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// The email around the `@` at `at`: (start, end), or None.
fn email_at(s: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut start = at;
    while start > 0 && is_local(s[start - 1]) {
        start -= 1;
    }
    let mut end = at + 1;
    while end < s.len() && is_domain(s[end]) {
        end += 1;
    }
    // No trailing dots or hyphens in the domain ("mail me at a@b.io.").
    while end > at + 1 && matches!(s[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = &s[at + 1..end];
    let tld = domain.rsplit(|&b| b == b'.').next()?;
    let ok = start < at
        && domain.contains(&b'.')
        && tld.len() >= 2
        && tld.iter().all(u8::is_ascii_alphabetic);
    ok.then_some((start, end))
}

/// Luhn check over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// A number-like run starting at `i`: digits joined by single separators (space, `-`, `.`,
/// parentheses), optionally after a `+`. Returns its end (after the last digit).
fn number_run(s: &[u8], i: usize) -> usize {
    let mut j = i;
    if s[j] == b'+' || s[j] == b'(' {
        j += 1;
    }
    let mut last_digit = i;
    // Separators since the last digit: one, or two when one is a parenthesis (`1 (415)`,
    // `(415) 555`).
    let mut seps: Vec<u8> = Vec::new();
    while j < s.len() {
        let b = s[j];
        if b.is_ascii_digit() {
            last_digit = j + 1;
            seps.clear();
        } else if matches!(b, b' ' | b'-' | b'.' | b'(' | b')') {
            seps.push(b);
            let ok = seps.len() == 1
                || (seps.len() == 2 && seps.iter().any(|c| matches!(c, b'(' | b')')));
            if !ok {
                break;
            }
        } else {
            break;
        }
        j += 1;
    }
    last_digit
}

enum Found {
    Card,
    Phone,
}

fn classify(run: &[u8], kinds: Kinds) -> Option<Found> {
    let digits: Vec<u8> = run.iter().copied().filter(u8::is_ascii_digit).collect();
    let groups: Vec<&[u8]> = run
        .split(|b| !b.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let seps_ok_for_card = run
        .iter()
        .all(|b| b.is_ascii_digit() || *b == b' ' || *b == b'-');
    if kinds.card && seps_ok_for_card && (13..=19).contains(&digits.len()) && luhn(&digits) {
        return Some(Found::Card);
    }
    if !kinds.phone || !(7..=15).contains(&digits.len()) {
        return None;
    }
    if run.first() == Some(&b'+') {
        return Some(Found::Phone);
    }
    let dots = run.contains(&b'.');
    let last = groups.last().map_or(0, |g| g.len());
    (groups.len() >= 2 && last >= 4 && (!dots || groups.len() >= 3)).then_some(Found::Phone)
}

/// `text` with the chosen kinds of personal data replaced.
pub fn redact(text: &str, kinds: Kinds) -> String {
    let s = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if kinds.email && b == b'@' {
            if let Some((start, end)) = email_at(s, i) {
                if start >= copied {
                    out.push_str(&text[copied..start]);
                    out.push_str("[EMAIL]");
                    copied = end;
                    i = end;
                    continue;
                }
            }
        }
        let starts_number = b.is_ascii_digit()
            || ((b == b'+' || b == b'(') && s.get(i + 1).is_some_and(u8::is_ascii_digit));
        let after_word =
            i > 0 && (s[i - 1].is_ascii_alphanumeric() || matches!(s[i - 1], b'.' | b'_' | b'-'));
        // A JSON number value (`"key":123` or `"key": 123`) is data, not personal data.
        let json_value = s[..i].iter().rev().find(|c| **c != b' ') == Some(&b':');
        if (kinds.card || kinds.phone) && starts_number && !after_word && !json_value {
            let end = number_run(s, i);
            let followed_by_word = s.get(end).is_some_and(|c| c.is_ascii_alphanumeric());
            if end > i && !followed_by_word {
                if let Some(found) = classify(&s[i..end], kinds) {
                    out.push_str(&text[copied..i]);
                    out.push_str(match found {
                        Found::Card => "[CARD]",
                        Found::Phone => "[PHONE]",
                    });
                    copied = end;
                }
            }
            // Skip the whole run (also when kept): a part of it is no match either.
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact(s, Kinds::ALL)
    }

    #[test]
    fn emails() {
        assert_eq!(
            r("write to ann.lee+x@mail.example.co.uk."),
            "write to [EMAIL]."
        );
        assert_eq!(r("\"a_b@c-d.io\""), "\"[EMAIL]\"");
        assert_eq!(
            r("not@mail or @handle or x@y.1"),
            "not@mail or @handle or x@y.1"
        );
    }

    #[test]
    fn cards_pass_luhn_only() {
        assert_eq!(r("card 4111 1111 1111 1111 ok"), "card [CARD] ok");
        assert_eq!(r("card 4111-1111-1111-1111"), "card [CARD]");
        assert_eq!(r("card 5500005555555559"), "card [CARD]");
        // Fails Luhn: kept.
        assert_eq!(r("order 4111111111111112"), "order 4111111111111112");
        assert!(luhn(b"79927398713") && !luhn(b"79927398710"));
    }

    #[test]
    fn phones() {
        assert_eq!(r("call +1 (415) 555-0132 now"), "call [PHONE] now");
        assert_eq!(r("call +442079460958"), "call [PHONE]");
        assert_eq!(r("call (415) 555-0132"), "call [PHONE]");
        assert_eq!(r("call 415-555-0132"), "call [PHONE]");
        assert_eq!(r("call 030 12345678"), "call [PHONE]");
        assert_eq!(r("call 415.555.0132"), "call [PHONE]");
    }

    #[test]
    fn ordinary_numbers_survive() {
        for s in [
            r#"{"created":1731234567,"max_tokens":256,"usage":{"total_tokens":17}}"#,
            r#"{"created": 1731234567890, "cost":0.000023}"#,
            "on 2024-05-01 at 12:30, ip 192.168.100.200, v1.2.3, 3.14159, id abc-1234567",
            "tokens: 1234567 and 12345678901234",
            "data: {\"id\":\"chatcmpl-4111111111111111\"}\n\n",
        ] {
            assert_eq!(r(s), s);
        }
    }

    #[test]
    fn multibyte_text_around_matches() {
        assert_eq!(
            r("écrire à zoe@exemple.fr — merci ✓"),
            "écrire à [EMAIL] — merci ✓"
        );
        assert_eq!(r("電話 +81 3-1234-5678 です"), "電話 [PHONE] です");
        assert_eq!(r("карта 4111 1111 1111 1111."), "карта [CARD].");
    }
}
