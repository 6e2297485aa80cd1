//! Checks of the parts of a translated request that map OpenAI extensions onto Anthropic:
//! system blocks, prompt-caching marks, tools and `response_format`.
use proptest::prelude::*;
use provider_anthropic::JSON_TOOL;
use tollgate_plugin_sdk::serde_json::{self, json, Value};

/// The `cache_control` of each of `items` that has one.
fn marks_of<'a>(items: impl Iterator<Item = &'a Value>) -> Vec<Value> {
    items
        .filter_map(|i| i.get("cache_control").cloned())
        .collect()
}

fn each(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The marks of a translated request, where Anthropic reads them: system blocks, content
/// blocks, tools. (Schemas and tool inputs may hold the key too, as data.)
fn out_marks(out: &Value) -> Vec<Value> {
    let mut all = marks_of(each(&out["system"]));
    all.extend(marks_of(
        each(&out["messages"]).flat_map(|m| each(&m["content"])),
    ));
    all.extend(marks_of(each(&out["tools"])));
    all
}

/// The marks of an OpenAI request: on messages, content parts, tools and functions.
fn req_marks(req: &Value) -> Vec<Value> {
    let mut all = marks_of(each(&req["messages"]));
    all.extend(marks_of(
        each(&req["messages"]).flat_map(|m| each(&m["content"])),
    ));
    all.extend(marks_of(each(&req["tools"])));
    all.extend(marks_of(each(&req["tools"]).map(|t| &t["function"])));
    all
}

/// What Anthropic requires of `system`, `tools`, `tool_choice`, `output_config` and marks.
pub fn check_extras(out: &Value) -> Result<(), TestCaseError> {
    match out.get("system") {
        None => {}
        Some(Value::String(s)) => prop_assert!(!s.is_empty()),
        Some(Value::Array(blocks)) => {
            prop_assert!(!blocks.is_empty());
            for b in blocks {
                prop_assert_eq!(&b["type"], "text");
                prop_assert!(b["text"].as_str().is_some_and(|t| !t.is_empty()));
            }
        }
        Some(other) => prop_assert!(false, "system {:?}", other),
    }
    for m in out_marks(out) {
        prop_assert!(m.is_object(), "a cache mark is an object: {:?}", m);
    }
    let tools = out["tools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for t in tools {
        prop_assert!(
            t["name"].is_string() && t["input_schema"].is_object(),
            "{:?}",
            t
        );
        prop_assert!(t.get("description").is_none_or(Value::is_string));
    }
    let json_tools = tools.iter().filter(|t| t["name"] == JSON_TOOL).count();
    prop_assert!(json_tools <= 1);
    if json_tools == 1 {
        prop_assert_eq!(
            &tools[tools.len() - 1]["name"],
            JSON_TOOL,
            "the JSON tool is last"
        );
        prop_assert!(
            out.get("output_config").is_none(),
            "one mechanism at a time"
        );
        prop_assert!(out["tool_choice"].is_object());
    }
    if let Some(config) = out.get("output_config") {
        prop_assert_eq!(&config["format"]["type"], "json_schema");
        prop_assert!(config["format"]["schema"].is_object());
    }
    Ok(())
}

/// `response_format` of the (valid) request `req` reached `out` the documented way, and no
/// cache mark was invented or lost on the way (tool marks one for one).
pub fn check_mapping(req: &Value, out: &Value) -> Result<(), TestCaseError> {
    // The translation parses the request and prints what it builds; serde_json's float parsing
    // may land one unit in the last place off, so compare with the request after the same
    // parse-print-parse the translated values went through.
    let reparse = |v: &Value| serde_json::from_str::<Value>(&v.to_string()).expect("JSON");
    let req = &reparse(&reparse(req));
    let format = &req["response_format"];
    let json_tool = out["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == JSON_TOOL));
    let spec = &format["json_schema"];
    match format["type"].as_str() {
        Some("json_object") => {
            prop_assert_eq!(
                json_tool.map(|t| &t["input_schema"]),
                Some(&json!({"type": "object"}))
            );
        }
        Some("json_schema") if spec["strict"] == true && spec["schema"].is_object() => {
            prop_assert_eq!(&out["output_config"]["format"]["schema"], &spec["schema"]);
            prop_assert!(json_tool.is_none());
        }
        Some("json_schema") => {
            let schema = if spec["schema"].is_null() {
                json!({"type": "object"})
            } else {
                spec["schema"].clone()
            };
            prop_assert_eq!(json_tool.map(|t| &t["input_schema"]), Some(&schema));
        }
        _ => prop_assert!(json_tool.is_none() && out.get("output_config").is_none()),
    }
    prop_assert_eq!(
        marks_of(each(&out["tools"])).len(),
        req_marks(&json!({"tools": req["tools"]})).len(),
        "every tool mark arrives"
    );
    let (sent, given) = (out_marks(out), req_marks(req));
    prop_assert!(sent.len() <= given.len(), "no mark is invented");
    for m in sent {
        prop_assert!(given.contains(&m));
    }
    Ok(())
}
