//! Field helpers shared by the request checks ([`super::parse_request`]) and the translation
//! ([`super::to_canonical`]): reading a field of a JSON object, and the 400 errors that name the
//! field at fault in `param` (or, for a body that is not JSON at all, none).

use serde_json::{Map, Value};

use crate::FormatError;

/// A body that is not JSON at all has no field to blame, so no `param`.
pub(super) fn body_error(message: impl Into<String>) -> FormatError {
    FormatError {
        status: 400,
        code: "invalid_request_error".into(),
        message: message.into(),
        param: None,
    }
}

pub(super) fn invalid(param: &str, message: impl AsRef<str>) -> FormatError {
    FormatError::invalid(param, format!("{param}: {}", message.as_ref()))
}

/// The field at `param` when it is present and not `null`.
pub(super) fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(super) fn require_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    param: &str,
) -> Result<&'a str, FormatError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(invalid(&format!("{param}.{key}"), "Field required")),
        Some(_) => Err(invalid(
            &format!("{param}.{key}"),
            "Input should be a valid string",
        )),
    }
}

pub(super) fn as_object<'a>(
    v: &'a Value,
    param: &str,
) -> Result<&'a Map<String, Value>, FormatError> {
    v.as_object()
        .ok_or_else(|| invalid(param, "Input should be an object"))
}

pub(super) fn unsupported(param: &str, what: &str) -> FormatError {
    invalid(
        param,
        format!("{what} is not supported for this model (its provider does not speak the Anthropic Messages API)"),
    )
}
