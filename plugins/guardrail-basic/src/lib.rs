//! Guardrail plugin: the checks most gateways are asked for first, in one small plugin.
//!
//! Prompts (`check-prompt`) are refused with 400 `guardrail_blocked` when they have more than
//! `max_messages` messages or `max_chars` characters of text, contain a `deny` phrase
//! (case-insensitive), or carry a secret (`secrets`, on by default: API keys of the common
//! providers, AWS access keys, GitHub and Slack tokens, PEM private keys). Answers
//! (`check-output`, when `check_output` is on, the default) are stopped when their text carries
//! a secret; the last 64 characters travel in the per-stream state, so a key split across two
//! events is still caught.
//!
//! Config (JSON, `[plugins.settings.guardrail-basic] config = { ... }` or the policy's
//! `[plugins.guardrail-basic]`): `max_messages`, `max_chars` (whole numbers), `deny` (list of
//! phrases), `secrets`, `check_output` (booleans). An unknown field or a bad value refuses every
//! request with 500 `guardrail_misconfigured` naming the field: a guardrail that silently lets
//! everything through when mistyped is worse than none.

use tollgate_plugin_sdk::serde_json::Value;
use tollgate_plugin_sdk::{export_plugin, host, Guardrail, Output, Principal, Prompt, Reject};

pub struct GuardrailBasic;

const CODE: &str = "guardrail_blocked";
/// Characters of answer text carried between events (longer than any secret pattern's prefix
/// plus its minimum body).
const TAIL: usize = 64;

/// The checked config.
#[derive(Debug, PartialEq)]
struct Rules {
    max_messages: Option<u64>,
    max_chars: Option<u64>,
    deny: Vec<String>,
    secrets: bool,
    check_output: bool,
}

fn parse(config: &Value) -> Result<Rules, String> {
    let Some(map) = config.as_object() else {
        return Err("the config is not a JSON object".into());
    };
    let mut rules = Rules {
        max_messages: None,
        max_chars: None,
        deny: Vec::new(),
        secrets: true,
        check_output: true,
    };
    for (key, value) in map {
        match key.as_str() {
            "max_messages" | "max_chars" => {
                let n = value
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("`{key}` must be a whole number above 0"))?;
                if key == "max_messages" {
                    rules.max_messages = Some(n);
                } else {
                    rules.max_chars = Some(n);
                }
            }
            "deny" => {
                let list = value.as_array().ok_or("`deny` must be a list of phrases")?;
                for phrase in list {
                    match phrase.as_str() {
                        Some(p) if !p.trim().is_empty() => rules.deny.push(p.to_lowercase()),
                        _ => return Err("`deny` entries must be non-empty strings".into()),
                    }
                }
            }
            "secrets" | "check_output" => {
                let b = value
                    .as_bool()
                    .ok_or_else(|| format!("`{key}` must be true or false"))?;
                if key == "secrets" {
                    rules.secrets = b;
                } else {
                    rules.check_output = b;
                }
            }
            other => {
                return Err(format!(
                    "unknown field `{other}` (known: max_messages, max_chars, deny, secrets, \
                     check_output)"
                ))
            }
        }
    }
    Ok(rules)
}

fn rules() -> Result<Rules, Reject> {
    parse(&host::config_json()).map_err(|why| {
        Reject::new(
            500,
            "guardrail_misconfigured",
            format!("guardrail-basic: {why}"),
        )
    })
}

/// A secret's shape: a literal prefix, then at least `min` characters of `body`.
struct Shape {
    name: &'static str,
    prefix: &'static str,
    min: usize,
    body: fn(char) -> bool,
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}
fn upper_alnum(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}
fn any_char(_: char) -> bool {
    true
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "an API key (sk-...)",
        prefix: "sk-",
        min: 20,
        body: token_char,
    },
    Shape {
        name: "an AWS access key",
        prefix: "AKIA",
        min: 16,
        body: upper_alnum,
    },
    Shape {
        name: "a GitHub token",
        prefix: "ghp_",
        min: 30,
        body: token_char,
    },
    Shape {
        name: "a GitHub token",
        prefix: "github_pat_",
        min: 30,
        body: token_char,
    },
    Shape {
        name: "a Slack token",
        prefix: "xoxb-",
        min: 20,
        body: token_char,
    },
    Shape {
        name: "a Slack token",
        prefix: "xoxp-",
        min: 20,
        body: token_char,
    },
    Shape {
        name: "a Google API key",
        prefix: "AIza",
        min: 30,
        body: token_char,
    },
    Shape {
        name: "a private key",
        prefix: "-----BEGIN ",
        min: 0,
        body: any_char,
    },
];

/// The kind of the first secret in `text`, if any.
fn find_secret(text: &str) -> Option<&'static str> {
    for shape in SHAPES {
        let mut from = 0;
        while let Some(at) = text[from..].find(shape.prefix) {
            let start = from + at + shape.prefix.len();
            let rest = &text[start..];
            let found = if shape.prefix == "-----BEGIN " {
                rest.lines()
                    .next()
                    .is_some_and(|l| l.contains("PRIVATE KEY-----"))
            } else {
                rest.chars().take_while(|c| (shape.body)(*c)).count() >= shape.min
            };
            if found {
                return Some(shape.name);
            }
            from = start;
        }
    }
    None
}

impl Guardrail for GuardrailBasic {
    fn check_prompt(_who: Principal, prompt: Prompt) -> Result<(), Reject> {
        let rules = rules()?;
        let count = prompt.messages.len() as u64;
        if let Some(max) = rules.max_messages {
            if count > max {
                return Err(Reject::new(
                    400,
                    CODE,
                    format!("The prompt has {count} messages; at most {max} are allowed."),
                ));
            }
        }
        let texts = prompt
            .messages
            .iter()
            .map(|m| m.text.as_str())
            .chain(prompt.inputs.iter().map(String::as_str))
            .chain(
                prompt
                    .messages
                    .iter()
                    .flat_map(|m| m.tool_calls.iter().map(|c| c.arguments.as_str())),
            );
        let mut chars = 0u64;
        for text in texts {
            chars += text.chars().count() as u64;
            if !rules.deny.is_empty() {
                let lower = text.to_lowercase();
                if let Some(p) = rules.deny.iter().find(|p| lower.contains(p.as_str())) {
                    return Err(Reject::new(
                        400,
                        CODE,
                        format!("The prompt contains a denied phrase ({p:?})."),
                    ));
                }
            }
            if rules.secrets {
                if let Some(kind) = find_secret(text) {
                    host::counter_add("secrets_in_prompts", 1);
                    return Err(Reject::new(
                        400,
                        CODE,
                        format!("The prompt contains what looks like {kind}; remove it and retry."),
                    ));
                }
            }
        }
        if let Some(max) = rules.max_chars {
            if chars > max {
                return Err(Reject::new(
                    400,
                    CODE,
                    format!(
                        "The prompt has {chars} characters of text; at most {max} are allowed."
                    ),
                ));
            }
        }
        Ok(())
    }

    fn checks_output() -> bool {
        rules().map_or(true, |r| r.check_output && r.secrets)
    }

    fn check_output(_who: Principal, state: Vec<u8>, output: Output) -> Result<Vec<u8>, Reject> {
        let rules = rules()?;
        if !(rules.check_output && rules.secrets) {
            return Ok(Vec::new());
        }
        // The tail of the text so far, then this piece: a secret split across events is whole.
        let mut text = String::from_utf8(state).unwrap_or_default();
        text.push_str(&output.text);
        if let Some(kind) = find_secret(&text) {
            host::counter_add("secrets_in_answers", 1);
            return Err(Reject::new(
                403,
                CODE,
                format!("The answer was stopped: it contained what looks like {kind}."),
            ));
        }
        let keep = text.chars().count().saturating_sub(TAIL);
        Ok(text.chars().skip(keep).collect::<String>().into_bytes())
    }
}

export_plugin!(guardrail: GuardrailBasic);

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_plugin_sdk::serde_json::json;
    use tollgate_plugin_sdk::testing::TestHost;
    use tollgate_plugin_sdk::{ApiFormat, Message, RequestSummary};

    fn prompt(texts: &[&str]) -> Prompt {
        Prompt {
            summary: RequestSummary {
                format: ApiFormat::OpenaiChat,
                model: "m".into(),
                stream: false,
                max_tokens: None,
                has_tools: false,
                body_bytes: 0,
            },
            messages: texts
                .iter()
                .map(|t| Message {
                    role: "user".into(),
                    text: t.to_string(),
                    tool_calls: Vec::new(),
                    attachments: 0,
                })
                .collect(),
            tools: Vec::new(),
            inputs: Vec::new(),
        }
    }

    fn with_config(config: Value) {
        TestHost::install(TestHost {
            config: config.to_string(),
            ..TestHost::default()
        });
    }

    fn who() -> Principal {
        Principal::new("o", "k")
    }

    #[test]
    fn limits_and_phrases() {
        with_config(json!({"max_messages": 2, "max_chars": 10, "deny": ["Launch Codes"]}));
        assert!(GuardrailBasic::check_prompt(who(), prompt(&["hi", "there"])).is_ok());
        let r = GuardrailBasic::check_prompt(who(), prompt(&["a", "b", "c"])).unwrap_err();
        assert_eq!((r.status, r.code.as_str()), (400, CODE));
        assert!(r.message.contains("3 messages"));
        let r = GuardrailBasic::check_prompt(who(), prompt(&["0123456789ab"])).unwrap_err();
        assert!(r.message.contains("12 characters"));
        let r = GuardrailBasic::check_prompt(who(), prompt(&["the LAUNCH codes"])).unwrap_err();
        assert!(r.message.contains("denied phrase"));
    }

    #[test]
    fn secrets_in_prompts() {
        with_config(json!({}));
        for secret in [
            "key sk-abcdefghijklmnopqrstuvwxyz please",
            "AKIAABCDEFGHIJKLMNOP",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIE",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        ] {
            assert!(
                GuardrailBasic::check_prompt(who(), prompt(&[secret])).is_err(),
                "{secret}"
            );
        }
        for fine in [
            "sk-short",
            "the task is risky",
            "AKIA lower",
            "-----BEGIN CERTIFICATE-----",
        ] {
            assert!(
                GuardrailBasic::check_prompt(who(), prompt(&[fine])).is_ok(),
                "{fine}"
            );
        }
        with_config(json!({"secrets": false}));
        assert!(GuardrailBasic::check_prompt(who(), prompt(&["AKIAABCDEFGHIJKLMNOP"])).is_ok());
    }

    #[test]
    fn a_secret_split_across_events_is_caught() {
        with_config(json!({}));
        assert!(GuardrailBasic::checks_output());
        let piece = |text: &str| Output {
            text: text.into(),
            done: false,
        };
        let state =
            GuardrailBasic::check_output(who(), Vec::new(), piece("your key is AKIAABCD")).unwrap();
        assert!(state.len() <= TAIL);
        let r =
            GuardrailBasic::check_output(who(), state, piece("EFGHIJKLMNOP, keep it")).unwrap_err();
        assert_eq!(r.status, 403);
        // A long clean answer keeps only its tail.
        let long = "x".repeat(1000);
        let state = GuardrailBasic::check_output(who(), Vec::new(), piece(&long)).unwrap();
        assert_eq!(state.len(), TAIL);
    }

    #[test]
    fn bad_config_fails_closed_naming_the_field() {
        with_config(json!({"max_mesages": 3}));
        let r = GuardrailBasic::check_prompt(who(), prompt(&["hi"])).unwrap_err();
        assert_eq!(
            (r.status, r.code.as_str()),
            (500, "guardrail_misconfigured")
        );
        assert!(r.message.contains("max_mesages"), "{}", r.message);
        with_config(json!({"deny": "word"}));
        assert!(GuardrailBasic::check_prompt(who(), prompt(&["hi"])).is_err());
        with_config(json!({"check_output": "yes"}));
        assert!(GuardrailBasic::checks_output());
        with_config(json!({"check_output": false}));
        assert!(!GuardrailBasic::checks_output());
    }
}
