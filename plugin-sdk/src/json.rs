//! Cheap JSON patching for request bodies.
//!
//! When the client and the provider speak the same format, a transform only changes a few
//! top-level fields (`model`, `stream_options`). Parsing the whole body into a tree and
//! re-serialising it would cost far more than needed, so [`patch_object`] walks the top level
//! once, copies every untouched value verbatim (nested values are validated, not rebuilt), and
//! splices in the replacements.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level fields of a JSON object, values left as raw JSON text.
pub struct TopLevel<'a> {
    pub fields: Vec<(String, &'a RawValue)>,
}

impl<'a> TopLevel<'a> {
    /// Parses `body`, which must be a JSON object.
    pub fn parse(body: &'a [u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
        let mut de = serde_json::Deserializer::from_str(text);
        let fields = (&mut de)
            .deserialize_map(FieldsVisitor)
            .map_err(|e| format!("body is not a JSON object: {e}"))?;
        de.end()
            .map_err(|e| format!("trailing data after the JSON object: {e}"))?;
        Ok(TopLevel { fields })
    }

    /// The raw value of a top-level field.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// A top-level field parsed as `T` (None when absent or of another type).
    pub fn get_as<T: serde::Deserialize<'a>>(&self, key: &str) -> Option<T> {
        self.get(key)
            .and_then(|v| serde_json::from_str(v.get()).ok())
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
            fields.push((k, v));
        }
        Ok(fields)
    }
}

/// Rewrites top-level fields of the JSON object `body`: each `(key, Some(raw_json))` replaces
/// the field in place (or is appended when absent); `(key, None)` removes it. Everything else is
/// copied byte for byte.
pub fn patch_object(body: &[u8], changes: &[(&str, Option<&str>)]) -> Result<Vec<u8>, String> {
    let top = TopLevel::parse(body)?;
    Ok(write_patched(&top, changes, body.len() + 64))
}

/// [`patch_object`] on an already parsed body.
pub fn write_patched(top: &TopLevel, changes: &[(&str, Option<&str>)], capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(b'{');
    let mut first = true;
    let mut push = |out: &mut Vec<u8>, key: &str, raw: &str| {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        // Keys came from a JSON parse (or from the caller): serialising a str cannot fail.
        out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
        out.push(b':');
        out.extend_from_slice(raw.as_bytes());
    };
    for (key, value) in &top.fields {
        match changes.iter().find(|(k, _)| k == key) {
            Some((_, Some(raw))) => push(&mut out, key, raw),
            Some((_, None)) => {}
            None => push(&mut out, key, value.get()),
        }
    }
    for (key, raw) in changes {
        if let Some(raw) = raw {
            if top.get(key).is_none() {
                push(&mut out, key, raw);
            }
        }
    }
    out.push(b'}');
    out
}

/// A Rust string as a JSON string literal.
pub fn string_literal(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn replaces_appends_removes_and_keeps_the_rest_verbatim() {
        let body = br#"{"model":"a","messages":[{"role":"user","content":"hi \"x\""}],"n":1,"temperature":0.5}"#;
        let out = patch_object(
            body,
            &[
                ("model", Some("\"b\"")),
                ("n", None),
                ("stream_options", Some(r#"{"include_usage":true}"#)),
            ],
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"model":"b","messages":[{"role":"user","content":"hi \"x\""}],"temperature":0.5,
                   "stream_options":{"include_usage":true}})
        );
        // Untouched values are byte-identical (no float reformatting).
        assert!(String::from_utf8(out)
            .unwrap()
            .contains(r#""temperature":0.5"#));
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        assert!(patch_object(b"[1,2]", &[]).is_err());
        assert!(patch_object(b"{\"a\":", &[]).is_err());
        assert!(patch_object(b"{} x", &[]).is_err());
        assert!(patch_object(b"\xff", &[]).is_err());
    }

    #[test]
    fn typed_access() {
        let top = TopLevel::parse(br#"{"stream":true,"model":"m"}"#).unwrap();
        assert_eq!(top.get_as::<bool>("stream"), Some(true));
        assert_eq!(top.get_as::<String>("model").as_deref(), Some("m"));
        assert_eq!(top.get_as::<bool>("model"), None);
    }
}
