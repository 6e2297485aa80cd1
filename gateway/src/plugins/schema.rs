//! The config schema a plugin declares: a subset of JSON Schema, checked by the host against
//! every config the plugin is given (config file, policy, policy routes) when either changes,
//! so a typo is an error naming plugin, field and file, not a plugin quietly using a default.
//!
//! Where a schema comes from: the component's custom section `tollgate:config-schema` (written
//! by `tools/plugin-build` from the crate's `config.schema.json`), else a `NAME.schema.json`
//! file beside `NAME.wasm`. Supported keywords are listed in [`KEYWORDS`]; a schema using any
//! other is refused at load, so a schema never checks less than it appears to.
//!
//! Hand-written rather than a JSON Schema crate: the subset plugin configs need is ~200 lines,
//! and the full validators pull in regex engines and URI resolution the gateway never uses.

use serde_json::{Map, Value};

/// The custom section a component carries its config schema in.
pub const SECTION: &str = "tollgate:config-schema";

/// Keywords the checker understands (annotations are accepted and ignored).
pub const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "items",
    "minItems",
    "maxItems",
    // annotations
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
];

/// A checked schema.
#[derive(Debug, Clone)]
pub struct ConfigSchema {
    root: Value,
}

/// Why a config does not match: the field (`sort`, `weights.openai`, `deny[2]`; empty for the
/// whole config) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl ConfigSchema {
    /// Parses and checks a schema document.
    pub fn parse(text: &[u8]) -> Result<ConfigSchema, String> {
        let root: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        check_schema(&root, "")?;
        Ok(ConfigSchema { root })
    }

    /// Checks a config (JSON text, as plugins receive it).
    pub fn check(&self, config: &str) -> Result<(), Mismatch> {
        let value: Value = serde_json::from_str(config).map_err(|e| Mismatch {
            field: String::new(),
            message: format!("not JSON: {e}"),
        })?;
        check(&self.root, &value, "")
    }
}

fn check_schema(s: &Value, at: &str) -> Result<(), String> {
    let Some(map) = s.as_object() else {
        return match s {
            Value::Bool(_) => Ok(()),
            _ => Err(format!("{}: a schema must be an object", where_(at))),
        };
    };
    for (k, v) in map {
        if !KEYWORDS.contains(&k.as_str()) {
            return Err(format!(
                "{}: keyword `{k}` is not supported (supported: {})",
                where_(at),
                KEYWORDS.join(", ")
            ));
        }
        match k.as_str() {
            "properties" => {
                let props = v
                    .as_object()
                    .ok_or_else(|| format!("{}: `properties` must be an object", where_(at)))?;
                for (name, sub) in props {
                    check_schema(sub, &join(at, name))?;
                }
            }
            "additionalProperties" | "items" => check_schema(v, &format!("{at}/{k}"))?,
            "type" => {
                let ok = |t: &Value| t.as_str().is_some_and(type_name_known);
                let valid = match v {
                    Value::Array(list) => list.iter().all(ok),
                    other => ok(other),
                };
                if !valid {
                    return Err(format!("{}: unknown `type` {v}", where_(at)));
                }
            }
            "required" | "enum" if !v.is_array() => {
                return Err(format!("{}: `{k}` must be a list", where_(at)));
            }
            "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" if !v.is_number() => {
                return Err(format!("{}: `{k}` must be a number", where_(at)));
            }
            "minLength" | "maxLength" | "minItems" | "maxItems" if !v.is_u64() => {
                return Err(format!("{}: `{k}` must be a whole number", where_(at)));
            }
            _ => {}
        }
    }
    Ok(())
}

fn where_(at: &str) -> &str {
    if at.is_empty() {
        "the schema"
    } else {
        at
    }
}

fn type_name_known(t: &str) -> bool {
    matches!(
        t,
        "object" | "array" | "string" | "integer" | "number" | "boolean" | "null"
    )
}

fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    let actual = type_of(v);
    actual == t || (t == "number" && actual == "integer")
}

fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.floor_char_boundary(60)])
    } else {
        s
    }
}

fn check(s: &Value, v: &Value, at: &str) -> Result<(), Mismatch> {
    let fail = |message: String| {
        Err(Mismatch {
            field: at.to_string(),
            message,
        })
    };
    let map: &Map<String, Value> = match s {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return fail("is not allowed".into()),
        Value::Object(m) => m,
        _ => return Ok(()),
    };
    if let Some(t) = map.get("type") {
        let types: Vec<&str> = match t {
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        if !types.iter().any(|t| is_type(v, t)) {
            return fail(format!(
                "must be {}, not {} {}",
                types.join(" or "),
                type_of(v),
                shown(v)
            ));
        }
    }
    if let Some(Value::Array(options)) = map.get("enum") {
        if !options.contains(v) {
            let list: Vec<String> = options.iter().map(shown).collect();
            return fail(format!("{} is not one of {}", shown(v), list.join(", ")));
        }
    }
    if let Some(c) = map.get("const") {
        if c != v {
            return fail(format!("must be {}", shown(c)));
        }
    }
    if let Some(n) = v.as_f64() {
        let bound = |k: &str| map.get(k).and_then(Value::as_f64);
        if let Some(min) = bound("minimum").filter(|m| n < *m) {
            return fail(format!("must be at least {min}, not {n}"));
        }
        if let Some(max) = bound("maximum").filter(|m| n > *m) {
            return fail(format!("must be at most {max}, not {n}"));
        }
        if let Some(min) = bound("exclusiveMinimum").filter(|m| n <= *m) {
            return fail(format!("must be above {min}, not {n}"));
        }
        if let Some(max) = bound("exclusiveMaximum").filter(|m| n >= *m) {
            return fail(format!("must be below {max}, not {n}"));
        }
    }
    let count = |k: &str| map.get(k).and_then(Value::as_u64);
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if let Some(min) = count("minLength").filter(|m| len < *m) {
            return fail(format!("must have at least {min} characters"));
        }
        if let Some(max) = count("maxLength").filter(|m| len > *m) {
            return fail(format!("must have at most {max} characters"));
        }
    }
    if let Some(list) = v.as_array() {
        let len = list.len() as u64;
        if let Some(min) = count("minItems").filter(|m| len < *m) {
            return fail(format!("must have at least {min} entries"));
        }
        if let Some(max) = count("maxItems").filter(|m| len > *m) {
            return fail(format!("must have at most {max} entries"));
        }
        if let Some(items) = map.get("items") {
            for (i, item) in list.iter().enumerate() {
                check(items, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = map.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = map.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    return Err(Mismatch {
                        field: join(at, name),
                        message: "is required".into(),
                    });
                }
            }
        }
        for (name, value) in obj {
            let field = join(at, name);
            match props.and_then(|p| p.get(name)) {
                Some(sub) => check(sub, value, &field)?,
                None => match map.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        let known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        return Err(Mismatch {
                            field,
                            message: format!("unknown field (known: {})", known.join(", ")),
                        });
                    }
                    Some(sub) => check(sub, value, &field)?,
                    None => {}
                },
            }
        }
    }
    Ok(())
}

/// The schema a component carries in its [`SECTION`] custom section, if it has one.
pub fn embedded(wasm: &[u8]) -> Result<Option<ConfigSchema>, String> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        // A component that does not parse fails its load elsewhere with a better message.
        let Ok(payload) = payload else {
            return Ok(None);
        };
        if let wasmparser::Payload::CustomSection(section) = payload {
            if section.name() == SECTION {
                return ConfigSchema::parse(section.data())
                    .map(Some)
                    .map_err(|e| format!("its config schema ({SECTION} section): {e}"));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> ConfigSchema {
        ConfigSchema::parse(
            br#"{
              "type": "object",
              "additionalProperties": false,
              "required": ["allow"],
              "properties": {
                "sort": {"enum": ["price", "latency"]},
                "max_attempts": {"type": "integer", "minimum": 1},
                "allow": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                "weights": {"type": "object", "additionalProperties": {"type": "number", "exclusiveMinimum": 0}}
              }
            }"#,
        )
        .unwrap()
    }

    fn err(config: &str) -> String {
        schema().check(config).unwrap_err().to_string()
    }

    #[test]
    fn good_configs_pass() {
        let s = schema();
        s.check(r#"{"allow": ["eu"]}"#).unwrap();
        s.check(r#"{"allow": ["eu"], "sort": "price", "max_attempts": 2, "weights": {"a": 0.5}}"#)
            .unwrap();
    }

    #[test]
    fn bad_configs_name_the_field() {
        assert_eq!(
            err(r#"{"allow": ["eu"], "sort": "prize"}"#),
            r#"sort: "prize" is not one of "price", "latency""#
        );
        assert_eq!(
            err(r#"{"allow": ["eu"], "srot": "price"}"#),
            "srot: unknown field (known: allow, max_attempts, sort, weights)"
        );
        assert_eq!(err(r#"{}"#), "allow: is required");
        assert_eq!(
            err(r#"{"allow": ["eu", ""]}"#),
            "allow[1]: must have at least 1 characters"
        );
        assert_eq!(
            err(r#"{"allow": ["eu"], "max_attempts": 0}"#),
            "max_attempts: must be at least 1, not 0"
        );
        assert_eq!(
            err(r#"{"allow": ["eu"], "max_attempts": "2"}"#),
            r#"max_attempts: must be integer, not string "2""#
        );
        assert_eq!(
            err(r#"{"allow": ["eu"], "weights": {"a": 0}}"#),
            "weights.a: must be above 0, not 0"
        );
        assert_eq!(err("[1]"), "must be object, not array [1]");
    }

    #[test]
    fn schemas_with_unsupported_keywords_are_refused() {
        let e = ConfigSchema::parse(br#"{"properties": {"a": {"pattern": "^x"}}}"#).unwrap_err();
        assert!(e.contains("a: keyword `pattern` is not supported"), "{e}");
        assert!(ConfigSchema::parse(br#"{"type": "strnig"}"#).is_err());
        assert!(ConfigSchema::parse(b"not json").is_err());
    }
}
