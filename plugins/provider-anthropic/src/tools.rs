//! OpenAI tool definitions, `tool_choice` and `response_format` -> their Anthropic forms.
//!
//! # Structured outputs (`response_format`)
//!
//! Anthropic has two documented ways to make Claude answer with JSON:
//!
//! - **JSON outputs**, `output_config: {"format": {"type": "json_schema", "schema": ...}}`:
//!   constrained decoding, generally available (no beta header; the older beta spelling was a
//!   top-level `output_format` with `anthropic-beta: structured-outputs-2025-11-13`). The answer
//!   is ordinary text, so nothing needs translating back. It only exists for recent models
//!   (Claude 4.5 and later) and accepts only a subset of JSON Schema (every object
//!   `additionalProperties: false`, no numeric or length bounds) — the same subset OpenAI's
//!   `strict: true` demands. <https://platform.claude.com/docs/en/build-with-claude/structured-outputs>
//! - **JSON mode through a forced tool**: one tool whose `input_schema` is the wanted schema,
//!   and `tool_choice` forcing it; the tool call's `input` is the answer. Works on every model
//!   and with any schema, best effort.
//!   <https://platform.claude.com/docs/en/agents-and-tools/tool-use/implement-tool-use#json-mode>
//!
//! So `json_schema` with `strict: true` (a promise the schema fits the constrained subset, and a
//! demand for a guarantee) uses JSON outputs; `strict` false/absent and `json_object` (which
//! JSON outputs cannot express: an open object is not in the subset) use the forced tool
//! [`JSON_TOOL`], whose call [`crate::response`] and [`crate::stream`] turn back into message
//! content. The plugin config `{"structured_outputs": "tool"}` sends every `json_schema`
//! through the tool (for models without JSON outputs); `"native"` sends every `json_schema`
//! that has a schema through JSON outputs.
use tollgate_plugin_sdk::serde_json::{json, Map, Value};
use tollgate_plugin_sdk::Reject;

use crate::request::cache_control;

/// The tool that carries a JSON answer. Reserved: a client tool of that name is refused, so a
/// call of it in a response is always the answer, in a stream and out of one, without state.
pub const JSON_TOOL: &str = "tollgate_json_response";

/// How `response_format: json_schema` reaches Anthropic (plugin config `structured_outputs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StructuredOutputs {
    /// `strict: true` schemas through JSON outputs, the rest through the forced tool.
    #[default]
    Auto,
    /// Every schema through JSON outputs.
    Native,
    /// Every schema through the forced tool.
    Tool,
}

impl StructuredOutputs {
    /// The mode the plugin config asks for; [`StructuredOutputs::Auto`] unless it says otherwise.
    pub fn from_config(config: &Value) -> Self {
        match config["structured_outputs"].as_str() {
            Some("native") => StructuredOutputs::Native,
            Some("tool") => StructuredOutputs::Tool,
            _ => StructuredOutputs::Auto,
        }
    }
}

/// What `response_format` asks of the request.
enum JsonAnswer {
    /// `output_config.format` with this schema.
    Native(Value),
    /// The forced [`JSON_TOOL`] with this input schema and description.
    Tool(Value, String),
}

fn json_answer(req: &Value, mode: StructuredOutputs) -> Result<Option<JsonAnswer>, Reject> {
    let format = &req["response_format"];
    if format.is_null() {
        return Ok(None);
    }
    match format["type"].as_str() {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JsonAnswer::Tool(
            json!({"type": "object"}),
            "Give your complete answer as a JSON object by calling this tool.".into(),
        ))),
        Some("json_schema") => {
            let spec = &format["json_schema"];
            if !spec.is_object() {
                return Err(Reject::bad_request(
                    "response_format json_schema needs a 'json_schema' object",
                ));
            }
            let schema = match &spec["schema"] {
                Value::Null => None,
                schema @ Value::Object(_) => Some(schema.clone()),
                _ => {
                    return Err(Reject::bad_request(
                        "response_format json_schema.schema must be an object",
                    ))
                }
            };
            let native = match mode {
                StructuredOutputs::Native => true,
                StructuredOutputs::Tool => false,
                StructuredOutputs::Auto => spec["strict"] == true,
            };
            Ok(Some(match schema {
                Some(schema) if native => JsonAnswer::Native(schema),
                schema => {
                    let mut description = format!(
                        "Give your complete answer by calling this tool; its input is the \
                         answer, a JSON document named {}.",
                        spec["name"].as_str().unwrap_or("response")
                    );
                    if let Some(more) = spec["description"].as_str() {
                        description.push(' ');
                        description.push_str(more);
                    }
                    JsonAnswer::Tool(
                        schema.unwrap_or_else(|| json!({"type": "object"})),
                        description,
                    )
                }
            }))
        }
        other => Err(Reject::bad_request(format!(
            "response_format type {other:?} is not supported by this provider"
        ))),
    }
}

/// OpenAI `tool_choice` -> Anthropic `tool_choice`.
fn tool_choice(choice: &Value) -> Option<Value> {
    match choice {
        Value::String(s) if s == "auto" => Some(json!({"type": "auto"})),
        Value::String(s) if s == "required" => Some(json!({"type": "any"})),
        Value::String(s) if s == "none" => Some(json!({"type": "none"})),
        Value::Object(o) => {
            Some(json!({"type": "tool", "name": o.get("function").map(|f| f["name"].clone())}))
        }
        _ => None,
    }
}

/// Adds `tools`, `tool_choice` and the structured-output fields of the OpenAI request `req` to
/// the Anthropic request `out`.
pub fn translate_tools(
    req: &Value,
    out: &mut Map<String, Value>,
    mode: StructuredOutputs,
) -> Result<(), Reject> {
    let mut tools = Vec::new();
    for t in req["tools"].as_array().into_iter().flatten() {
        let function = &t["function"];
        if function["name"] == JSON_TOOL {
            return Err(Reject::bad_request(format!(
                "the tool name {JSON_TOOL} is reserved by the gateway"
            )));
        }
        let schema = match &function["parameters"] {
            Value::Null => json!({"type": "object"}),
            parameters => parameters.clone(),
        };
        let mut tool = json!({"name": function["name"], "input_schema": schema});
        if let Some(description) = function["description"].as_str() {
            tool["description"] = json!(description);
        }
        // OpenRouter puts the mark on the tool, others on the function: both mean this tool.
        if let Some(cc) = cache_control(t).or_else(|| cache_control(function)) {
            tool["cache_control"] = cc.clone();
        }
        tools.push(tool);
    }
    let client_tools = !tools.is_empty();
    let mut choice = tool_choice(&req["tool_choice"]);
    match json_answer(req, mode)? {
        None => {}
        Some(JsonAnswer::Native(schema)) => {
            out.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": schema}}),
            );
        }
        Some(JsonAnswer::Tool(schema, description)) => {
            tools.push(json!({"name": JSON_TOOL, "description": description,
                "input_schema": schema}));
            // A tool the client forces still wins (its call is the answer it asked for). With
            // client tools callable, the model must call one of them or answer (`any`);
            // otherwise it must answer, once.
            if !req["tool_choice"].is_object() {
                choice = Some(if client_tools && req["tool_choice"] != "none" {
                    json!({"type": "any"})
                } else {
                    json!({"type": "tool", "name": JSON_TOOL, "disable_parallel_tool_use": true})
                });
            }
        }
    }
    if req["tools"].is_array() || !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".into(), choice);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::translate_request_value;

    fn translate(req: Value, mode: StructuredOutputs) -> Result<Value, Reject> {
        translate_request_value(&req, "claude-up", false, mode)
    }

    fn user() -> Value {
        json!([{"role": "user", "content": "hi"}])
    }

    #[test]
    fn tools_keep_their_cache_marks_and_descriptions() {
        let eph = json!({"type": "ephemeral"});
        let out = translate(
            json!({"messages": user(), "tools": [
                {"type": "function", "function": {"name": "a", "description": "A"}, "cache_control": eph},
                {"type": "function", "function": {"name": "b", "parameters": {"type": "object"},
                    "cache_control": eph}},
                {"type": "function", "function": {"name": "c"}}]}),
            StructuredOutputs::Auto,
        )
        .unwrap();
        let tools = &out["tools"];
        assert_eq!(
            tools[0],
            json!({"name": "a", "description": "A", "input_schema": {"type": "object"},
                "cache_control": eph})
        );
        assert_eq!(tools[1]["cache_control"], eph);
        assert_eq!(
            tools[2],
            json!({"name": "c", "input_schema": {"type": "object"}})
        );
    }

    #[test]
    fn strict_json_schema_uses_json_outputs() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}},
            "required": ["n"], "additionalProperties": false});
        let req = json!({"messages": user(), "response_format": {"type": "json_schema",
            "json_schema": {"name": "count", "schema": schema, "strict": true}}});
        let out = translate(req.clone(), StructuredOutputs::Auto).unwrap();
        assert_eq!(
            out["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema}})
        );
        assert!(out.get("tools").is_none() && out.get("tool_choice").is_none());
        // Configured to use the tool, even a strict schema goes through it.
        let out = translate(req, StructuredOutputs::Tool).unwrap();
        assert!(out.get("output_config").is_none());
        assert_eq!(out["tools"][0]["name"], JSON_TOOL);
        assert_eq!(out["tools"][0]["input_schema"], schema);
    }

    #[test]
    fn loose_json_schema_and_json_object_use_the_forced_tool() {
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}});
        let req = json!({"messages": user(), "response_format": {"type": "json_schema",
            "json_schema": {"name": "count", "description": "How many.", "schema": schema}}});
        let out = translate(req.clone(), StructuredOutputs::Auto).unwrap();
        assert!(out.get("output_config").is_none());
        let tool = &out["tools"][0];
        assert_eq!(tool["name"], JSON_TOOL);
        assert_eq!(tool["input_schema"], schema);
        let description = tool["description"].as_str().unwrap();
        assert!(description.contains("count") && description.ends_with("How many."));
        assert_eq!(
            out["tool_choice"],
            json!({"type": "tool", "name": JSON_TOOL, "disable_parallel_tool_use": true})
        );
        // Configured native, the loose schema goes through JSON outputs.
        let out = translate(req, StructuredOutputs::Native).unwrap();
        assert_eq!(out["output_config"]["format"]["schema"], schema);

        let out = translate(
            json!({"messages": user(), "response_format": {"type": "json_object"}}),
            StructuredOutputs::Native,
        )
        .unwrap();
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(out["tool_choice"]["name"], JSON_TOOL);
        // No schema: an open object, through the tool whatever the mode.
        let out = translate(
            json!({"messages": user(), "response_format": {"type": "json_schema",
                "json_schema": {"name": "x", "strict": true}}}),
            StructuredOutputs::Native,
        )
        .unwrap();
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
    }

    #[test]
    fn the_json_tool_sits_beside_client_tools() {
        let tools = json!([{"type": "function", "function": {"name": "search"}}]);
        let with = |choice: Value| {
            let mut req = json!({"messages": user(), "tools": tools,
                "response_format": {"type": "json_object"}});
            if !choice.is_null() {
                req["tool_choice"] = choice;
            }
            translate(req, StructuredOutputs::Auto).unwrap()
        };
        let out = with(Value::Null);
        assert_eq!(out["tools"][0]["name"], "search");
        assert_eq!(out["tools"][1]["name"], JSON_TOOL);
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
        assert_eq!(with(json!("auto"))["tool_choice"], json!({"type": "any"}));
        assert_eq!(with(json!("none"))["tool_choice"]["name"], JSON_TOOL);
        let forced = with(json!({"type": "function", "function": {"name": "search"}}));
        assert_eq!(
            forced["tool_choice"],
            json!({"type": "tool", "name": "search"})
        );
    }

    #[test]
    fn text_format_is_nothing_and_bad_formats_are_400s() {
        let out = translate(
            json!({"messages": user(), "response_format": {"type": "text"}}),
            StructuredOutputs::Auto,
        )
        .unwrap();
        assert!(out.get("tools").is_none() && out.get("output_config").is_none());
        for format in [
            json!({"type": "json_schema"}),
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}),
            json!({"type": "yaml"}),
            json!("json"),
        ] {
            let req = json!({"messages": user(), "response_format": format});
            assert_eq!(
                translate(req, StructuredOutputs::Auto).unwrap_err().status,
                400
            );
        }
        let reserved = json!({"messages": user(), "tools": [{"type": "function",
            "function": {"name": JSON_TOOL}}]});
        assert_eq!(
            translate(reserved, StructuredOutputs::Auto)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn mode_from_config() {
        let mode = |c: Value| StructuredOutputs::from_config(&c);
        assert_eq!(mode(json!({})), StructuredOutputs::Auto);
        assert_eq!(mode(Value::Null), StructuredOutputs::Auto);
        assert_eq!(
            mode(json!({"structured_outputs": "tool"})),
            StructuredOutputs::Tool
        );
        assert_eq!(
            mode(json!({"structured_outputs": "native"})),
            StructuredOutputs::Native
        );
    }
}
