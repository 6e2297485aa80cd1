//! The policy file schema (`policies/*.toml`) and its checks. Every file of the directory is
//! read (in name order) and merged; a mistake anywhere refuses the whole set, with an error
//! naming the file, the line and the field, so a live policy is never half-applied.
//!
//! ```toml
//! [aliases]
//! fast = "gpt-4o-mini"                 # a client name for a model
//!
//! [[models]]                           # as the config file's [[models]]: added, or replacing by name
//! name = "gpt-4o-mini"
//! routes = [{ provider = "openai", input_per_mtok = 0.15, output_per_mtok = 0.60 }]
//!
//! [[routes]]                           # first match wins; unmatched requests: ordered, all fallbacks
//! name = "chat"
//! models = ["gpt-*"]                   # patterns; orgs = [...], keys = [...] narrow further
//! providers = ["openai", "backup"]     # which of the model's providers, in this order
//! strategy = "weighted"                # ordered | weighted | cheapest | fastest | least-errors
//! weights = { openai = 3, backup = 1 }
//! max_attempts = 2
//! max_output_tokens = 4096             # requests asking for more are refused (400)
//! timeout_ms = 20000
//! retry_after_max_ms = 2000
//! fallback_on = ["rate-limit", "server-error", "timeout", "context-length"]
//! trace = true
//! routing = { plugin = "route-policy", config = { sort = "price" } }
//! billing = { plugin = "billing-credits", config = { default_output_tokens = 1024 } }
//!
//! [plugins.route-policy]               # a plugin's config, reloaded with the policy
//! config = { max_attempts = 3 }
//!
//! [trace]                              # route traces for these orgs / keys (or all)
//! keys = ["key_abc"]
//!
//! [[retention]]                        # a ceiling: an org's own choice made stricter, never looser
//! orgs = ["org_abc"]
//! mode = "zero"                        # and/or days = 7
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use super::{FailureClass, Fallback, PluginChoice, Policy, Rule, Strategy};
use crate::config::schema::Model;
use crate::config::Config;

/// A policy mistake: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct PolicyError {
    pub file: String,
    /// 1-based; 0 when the mistake is not tied to a line (an unreadable file).
    pub line: usize,
    pub field: String,
    pub message: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct PolicyFile {
    aliases: BTreeMap<String, Spanned<String>>,
    models: Vec<Spanned<Model>>,
    routes: Vec<Spanned<RouteEntry>>,
    plugins: BTreeMap<String, Spanned<PluginEntry>>,
    trace: Option<TraceEntry>,
    retention: Vec<Spanned<RetentionEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionEntry {
    #[serde(default)]
    orgs: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    mode: Option<Spanned<String>>,
    days: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    name: Spanned<String>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    orgs: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    providers: Option<Vec<Spanned<String>>>,
    strategy: Option<Spanned<String>>,
    #[serde(default)]
    weights: BTreeMap<String, Spanned<u32>>,
    max_attempts: Option<Spanned<u32>>,
    max_output_tokens: Option<Spanned<u64>>,
    timeout_ms: Option<u32>,
    retry_after_max_ms: Option<u64>,
    fallback_on: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    trace: bool,
    routing: Option<Spanned<PluginEntry>>,
    billing: Option<Spanned<PluginEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginEntry {
    plugin: Option<String>,
    #[serde(default)]
    config: Option<toml::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct TraceEntry {
    all: bool,
    orgs: Vec<String>,
    keys: Vec<String>,
}

/// Reads a file's text and knows its lines.
struct Source {
    name: String,
    text: String,
}

impl Source {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        span: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError {
            file: self.name.clone(),
            line: self.line(span.span().start),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The `.toml` files of `dir`, in name order (subdirectories such as `examples/` are not read).
pub fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PolicyError {
        file: dir.display().to_string(),
        line: 0,
        field: "policy directory".into(),
        message: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// What policy loading asks of the plugins (the policy knows nothing of the plugin host).
pub trait Plugins {
    /// Whether a plugin is loaded (or, for `tollgate policy check`, built).
    fn exists(&self, name: &str) -> bool;
    /// Checks a config (JSON text) against the schema the plugin declares: `Err((field,
    /// message))`. Plugins that declare none accept any config.
    fn check_config(&self, _name: &str, _config: &str) -> Result<(), (String, String)> {
        Ok(())
    }
}

/// A closure saying which plugins exist (no schemas).
impl<F: Fn(&str) -> bool> Plugins for F {
    fn exists(&self, name: &str) -> bool {
        self(name)
    }
}

/// Reads and checks every policy file of `dir` over the config file's models and providers.
/// `plugins` says whether a plugin a route names is loaded and checks its config (None: not
/// checked).
pub fn load_dir(
    dir: &Path,
    config: &Config,
    plugins: Option<&dyn Plugins>,
) -> Result<Policy, PolicyError> {
    let mut sources = Vec::new();
    for path in policy_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|e| PolicyError {
            file: path.display().to_string(),
            line: 0,
            field: "file".into(),
            message: e.to_string(),
        })?;
        sources.push((path.display().to_string(), text));
    }
    compile(&sources, config, plugins)
}

/// Checks policy texts (`(file name, text)`, in order) into a [`Policy`].
pub fn compile(
    sources: &[(String, String)],
    config: &Config,
    plugins: Option<&dyn Plugins>,
) -> Result<Policy, PolicyError> {
    let mut policy = Policy::from_config(config);
    let mut digest = Sha256::new();
    let mut route_names: HashMap<String, String> = HashMap::new();
    let mut model_files: HashMap<String, String> = HashMap::new();
    let mut pending_aliases = Vec::new();
    for (name, text) in sources {
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(text.as_bytes());
        digest.update([0]);
        let src = Source {
            name: name.clone(),
            text: text.clone(),
        };
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError {
            file: name.clone(),
            line: e.span().map_or(0, |s| src.line(s.start)),
            field: "toml".into(),
            message: e.message().to_string(),
        })?;
        // Models: checked with the config file's own rules (prices, providers, kinds).
        for spanned in file.models {
            let model = spanned.get_ref().clone();
            let field = format!("models '{}'", model.name);
            if let Some(other) = model_files.insert(model.name.clone(), name.clone()) {
                return Err(src.err(&spanned, field, format!("also defined in {other}")));
            }
            let (routes, info) =
                crate::config::load::compile_models(&config.providers, vec![model])
                    .map_err(|e| src.err(&spanned, field.clone(), format!("{e:#}")))?;
            policy.models.extend(routes);
            policy.model_info.extend(info);
        }
        for (alias, target) in file.aliases {
            pending_aliases.push((
                src.err(&target, format!("aliases.{alias}"), ""),
                alias,
                target.into_inner(),
            ));
        }
        for spanned in file.routes {
            let rule = route(&src, &spanned, config, plugins)?;
            if let Some(other) = route_names.insert(rule.name.clone(), rule.source.clone()) {
                return Err(src.err(
                    &spanned.get_ref().name,
                    "routes.name",
                    format!("route '{}' is already defined at {other}", rule.name),
                ));
            }
            policy.rules.push(rule);
        }
        for (plugin, entry) in file.plugins {
            let field = format!("plugins.{plugin}");
            if entry.get_ref().plugin.is_some() {
                return Err(src.err(&entry, field, "`plugin` belongs in a route's `routing`; here the table is named after the plugin"));
            }
            if let Some(p) = plugins {
                if !p.exists(&plugin) {
                    return Err(src.err(&entry, field, format!("plugin '{plugin}' is not loaded")));
                }
            }
            let config = plugin_config(&src, &entry, &field, &plugin, plugins)?;
            policy.plugin_config.insert(plugin, config);
        }
        for spanned in file.retention {
            let r = spanned.get_ref();
            let mode = match &r.mode {
                None => None,
                Some(m) => Some(
                    crate::retention::RetentionMode::parse(m.get_ref()).ok_or_else(|| {
                        src.err(
                            m,
                            "retention.mode",
                            format!(
                                "'{}' is not one of retain-all, metadata-only, zero",
                                m.get_ref()
                            ),
                        )
                    })?,
                ),
            };
            let days = match &r.days {
                Some(d) if !(0..=crate::retention::MAX_RETENTION_DAYS).contains(d.get_ref()) => {
                    return Err(src.err(
                        d,
                        "retention.days",
                        format!(
                            "{} is not between 0 and {}",
                            d.get_ref(),
                            crate::retention::MAX_RETENTION_DAYS
                        ),
                    ))
                }
                Some(d) => Some(*d.get_ref()),
                None => None,
            };
            if mode.is_none() && days.is_none() {
                return Err(src.err(&spanned, "retention", "needs `mode` or `days`"));
            }
            policy.retention.push(super::RetentionRule {
                source: format!("{}:{}", src.name, src.line(spanned.span().start)),
                orgs: r.orgs.clone(),
                keys: r.keys.clone(),
                mode,
                days,
            });
        }
        if let Some(t) = file.trace {
            policy.trace.all |= t.all;
            policy.trace.orgs.extend(t.orgs);
            policy.trace.keys.extend(t.keys);
        }
    }
    // Aliases last: they may name a model any file defines, but not another alias or nothing.
    for (at, alias, target) in pending_aliases {
        let fail = |message: String| PolicyError {
            message,
            ..at.clone()
        };
        if policy.models.contains_key(&alias) {
            return Err(fail(format!(
                "'{alias}' is a model name; an alias must not hide it"
            )));
        }
        if !policy.models.contains_key(&target) {
            return Err(fail(format!("names unknown model '{target}'")));
        }
        if policy.aliases.insert(alias.clone(), target).is_some() {
            return Err(fail(format!("alias '{alias}' is defined twice")));
        }
    }
    // Routes naming providers: each must serve at least one model the route can match.
    for rule in &policy.rules {
        let Some(providers) = &rule.providers else {
            continue;
        };
        for p in providers {
            let served = policy.models.iter().any(|(m, routes)| {
                (rule.models.is_empty() || rule.models.iter().any(|g| super::glob(g, m)))
                    && routes.iter().any(|r| &r.provider == p)
            });
            if !served {
                let (file, line) = rule.source.rsplit_once(':').unwrap_or((&rule.source, "0"));
                return Err(PolicyError {
                    file: file.to_string(),
                    line: line.parse().unwrap_or(0),
                    field: format!("routes '{}'.providers", rule.name),
                    message: format!("provider '{p}' serves none of the models this route matches"),
                });
            }
        }
    }
    policy.files = sources.iter().map(|(n, _)| n.clone()).collect();
    policy.digest = hex::encode(digest.finalize());
    Ok(policy)
}

/// A plugin's config from a policy entry, as JSON, checked against the schema the plugin
/// declares (when the caller can see plugins).
fn plugin_config(
    src: &Source,
    entry: &Spanned<PluginEntry>,
    field: &str,
    plugin: &str,
    plugins: Option<&dyn Plugins>,
) -> Result<Arc<str>, PolicyError> {
    let json = match &entry.get_ref().config {
        None => serde_json::json!({}),
        Some(v) => serde_json::to_value(v)
            .map_err(|e| src.err(entry, format!("{field}.config"), e.to_string()))?,
    };
    let text = json.to_string();
    if let Some(p) = plugins {
        p.check_config(plugin, &text).map_err(|(at, message)| {
            let at = if at.is_empty() { at } else { format!(".{at}") };
            src.err(
                entry,
                format!("{field}.config{at}"),
                format!("{message} (the config schema of plugin '{plugin}')"),
            )
        })?;
    }
    Ok(Arc::from(text.as_str()))
}

fn route(
    src: &Source,
    spanned: &Spanned<RouteEntry>,
    config: &Config,
    plugins: Option<&dyn Plugins>,
) -> Result<Rule, PolicyError> {
    let r = spanned.get_ref();
    let name = r.name.get_ref().clone();
    let field = |f: &str| format!("routes '{name}'.{f}");
    if name.is_empty() {
        return Err(src.err(&r.name, "routes.name", "a route needs a name"));
    }
    let providers = match &r.providers {
        None => None,
        Some(list) => {
            let mut out = Vec::new();
            for p in list {
                if !config.providers.contains_key(p.get_ref()) {
                    return Err(src.err(
                        p,
                        field("providers"),
                        format!(
                            "unknown provider '{}' (the config file defines: {})",
                            p.get_ref(),
                            config
                                .providers
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                out.push(p.get_ref().clone());
            }
            if out.is_empty() {
                return Err(src.err(
                    spanned,
                    field("providers"),
                    "an empty list would route nothing",
                ));
            }
            Some(out)
        }
    };
    let strategy = match &r.strategy {
        None => Strategy::Ordered,
        Some(s) => Strategy::parse(s.get_ref()).ok_or_else(|| {
            src.err(
                s,
                field("strategy"),
                format!(
                    "'{}' is not one of ordered, weighted, cheapest, fastest, least-errors",
                    s.get_ref()
                ),
            )
        })?,
    };
    let mut weights = HashMap::new();
    for (p, w) in &r.weights {
        if !config.providers.contains_key(p) {
            return Err(src.err(w, field("weights"), format!("unknown provider '{p}'")));
        }
        weights.insert(p.clone(), *w.get_ref());
    }
    if strategy == Strategy::Weighted && weights.values().all(|w| *w == 0) {
        return Err(src.err(
            spanned,
            field("weights"),
            "strategy 'weighted' needs at least one weight above 0",
        ));
    }
    let max_output_tokens = match &r.max_output_tokens {
        Some(n) if *n.get_ref() == 0 => {
            return Err(src.err(n, field("max_output_tokens"), "must be at least 1"))
        }
        Some(n) => Some(*n.get_ref()),
        None => None,
    };
    let max_attempts = match &r.max_attempts {
        Some(n) if *n.get_ref() == 0 => {
            return Err(src.err(n, field("max_attempts"), "must be at least 1"))
        }
        Some(n) => Some(*n.get_ref() as usize),
        None => None,
    };
    let fallback = match &r.fallback_on {
        None => Fallback::DEFAULT,
        Some(list) => {
            let mut classes = Vec::new();
            for c in list {
                classes.push(FailureClass::parse(c.get_ref()).ok_or_else(|| {
                    src.err(c, field("fallback_on"), format!(
                        "'{}' is not one of rate-limit, server-error, timeout, context-length, content-filter",
                        c.get_ref()
                    ))
                })?);
            }
            Fallback::of(&classes)
        }
    };
    let choice = |entry: &Option<Spanned<PluginEntry>>,
                  stage: &str|
     -> Result<Option<PluginChoice>, PolicyError> {
        let Some(entry) = entry else { return Ok(None) };
        let Some(plugin) = entry.get_ref().plugin.clone() else {
            return Err(src.err(entry, field(stage), "needs `plugin = \"NAME\"`"));
        };
        if let Some(p) = plugins {
            if !p.exists(&plugin) {
                return Err(src.err(
                    entry,
                    field(&format!("{stage}.plugin")),
                    format!(
                        "{stage} plugin '{plugin}' is not loaded (is it in the plugin directory?)"
                    ),
                ));
            }
        }
        Ok(Some(PluginChoice {
            config: plugin_config(src, entry, &field(stage), &plugin, plugins)?,
            plugin,
        }))
    };
    let routing = choice(&r.routing, "routing")?;
    let billing = choice(&r.billing, "billing")?;
    Ok(Rule {
        source: format!("{}:{}", src.name, src.line(spanned.span().start)),
        name,
        models: r.models.clone(),
        orgs: r.orgs.clone(),
        keys: r.keys.clone(),
        providers,
        strategy,
        weights,
        max_attempts,
        max_output_tokens,
        timeout_ms: r.timeout_ms.unwrap_or(0),
        retry_after_max: Duration::from_millis(
            r.retry_after_max_ms
                .unwrap_or(super::DEFAULT_RETRY_AFTER_MAX_MS),
        ),
        fallback,
        trace: r.trace,
        routing,
        billing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml(
            r#"
[providers.a]
base_url = "http://127.0.0.1:1"
transform = "provider-openai"
[providers.b]
base_url = "http://127.0.0.1:2"
transform = "provider-openai"
[[models]]
name = "m"
routes = [{ provider = "a", input_per_mtok = 1, output_per_mtok = 1 }, { provider = "b", input_per_mtok = 2, output_per_mtok = 2 }]
"#,
        )
        .expect("config")
    }

    fn check(text: &str) -> Result<Policy, PolicyError> {
        compile(&[("p.toml".into(), text.into())], &config(), None)
    }

    #[test]
    fn a_full_policy_compiles() {
        let p = check(
            r#"
[aliases]
fast = "m2"

[[models]]
name = "m2"
routes = [{ provider = "b", input_per_mtok = 1, output_per_mtok = 1, context_length = 9000 }]

[[routes]]
name = "w"
models = ["m*"]
orgs = ["org_1"]
providers = ["b", "a"]
strategy = "weighted"
weights = { a = 1, b = 3 }
max_attempts = 2
fallback_on = ["rate-limit"]
trace = true
routing = { plugin = "route-policy", config = { sort = "price" } }

[plugins.route-policy]
config = { max_attempts = 3 }

[trace]
keys = ["key_1"]
"#,
        )
        .expect("compiles");
        assert_eq!(p.resolve("fast"), "m2");
        assert_eq!(p.models["m2"][0].context_length, Some(9000));
        let rule = p.rule_for("m", "org_1", "key_x");
        assert_eq!(rule.name, "w");
        assert_eq!(rule.source, "p.toml:9");
        assert_eq!(rule.strategy, Strategy::Weighted);
        assert_eq!(
            rule.routing.as_ref().map(|r| &*r.config),
            Some(r#"{"sort":"price"}"#)
        );
        assert_eq!(p.rule_for("m", "org_2", "k").name, "default");
        assert_eq!(
            p.plugin_config("route-policy").as_deref(),
            Some(r#"{"max_attempts":3}"#)
        );
        assert!(p.traced("org_9", "key_1") && !p.traced("org_9", "key_2"));
        assert_eq!(p.digest.len(), 64);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = check("[[routes]]\nname = \"r\"\nproviders = [\"a\", \"nope\"]\n").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.field.as_str()),
            ("p.toml", 3, "routes 'r'.providers")
        );
        assert!(e.message.contains("unknown provider 'nope'"), "{e}");

        let e = check("\n\n[[routes]]\nname = \"r\"\nstrategy = \"prize\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (5, "routes 'r'.strategy"));

        let e = check("[[routes]]\nname = \"r\"\nsort = \"price\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (3, "toml"));
        assert!(e.message.contains("unknown field `sort`"), "{e}");

        let e = check("[aliases]\nx = \"missing\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (2, "aliases.x"));

        let e = check("[[models]]\nname = \"q\"\nroutes = [{ provider = \"zz\" }]\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (1, "models 'q'"));
        assert!(e.message.contains("unknown provider 'zz'"), "{e}");

        let e = check("[[routes]]\nname = \"r\"\nfallback_on = [\"oops\"]\n").unwrap_err();
        assert_eq!(e.line, 3);

        let e = check("[[routes]]\nname = \"r\"\n[[routes]]\nname = \"r\"\n").unwrap_err();
        assert!(e.message.contains("already defined at p.toml:1"), "{e}");
        assert_eq!(
            e.to_string(),
            "p.toml:4: routes.name: route 'r' is already defined at p.toml:1"
        );
    }

    #[test]
    fn retention_ceilings_only_tighten() {
        use crate::retention::{Policy as Kept, RetentionMode};
        let p = check("[[retention]]\norgs = [\"o\"]\nmode = \"zero\"\n[[retention]]\ndays = 7\n")
            .unwrap();
        let base = Kept {
            mode: RetentionMode::RetainAll,
            days: 30,
            ip_days: 30,
        };
        let o = p.retention_ceiling(base, "o", "k");
        assert_eq!(
            (o.mode, o.days),
            (RetentionMode::Zero, 30),
            "first match wins"
        );
        let other = p.retention_ceiling(base, "x", "k");
        assert_eq!(
            (other.mode, other.days, other.ip_days),
            (RetentionMode::RetainAll, 7, 7)
        );
        let strict = Kept {
            mode: RetentionMode::Zero,
            days: 1,
            ip_days: 1,
        };
        let kept = p.retention_ceiling(strict, "x", "k");
        assert_eq!(
            (kept.mode, kept.days),
            (RetentionMode::Zero, 1),
            "never looser"
        );
        let e = check("\n[[retention]]\nmode = \"all\"\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (3, "retention.mode"));
        let e = check("[[retention]]\ndays = 400\n").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (2, "retention.days"));
        let e = check("[[routes]]\nname = \"r\"\nmax_output_tokens = 0\n").unwrap_err();
        assert_eq!(e.field, "routes 'r'.max_output_tokens");
    }

    #[test]
    fn plugin_configs_are_checked_against_the_plugins_schema() {
        struct WithSchema;
        impl Plugins for WithSchema {
            fn exists(&self, _: &str) -> bool {
                true
            }
            fn check_config(&self, name: &str, config: &str) -> Result<(), (String, String)> {
                let schema = crate::plugins::schema::ConfigSchema::parse(
                    br#"{"additionalProperties": false, "properties": {"sort": {"enum": ["order", "price"]}}}"#,
                )
                .expect("schema");
                match name {
                    "route-policy" => schema.check(config).map_err(|m| (m.field, m.message)),
                    _ => Ok(()),
                }
            }
        }
        let text = "[[routes]]\nname = \"r\"\nrouting = { plugin = \"route-policy\", config = { sort = \"prize\" } }\n";
        let e = compile(
            &[("p.toml".into(), text.into())],
            &config(),
            Some(&WithSchema),
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_str()),
            (3, "routes 'r'.routing.config.sort")
        );
        assert!(
            e.message
                .contains("\"prize\" is not one of \"order\", \"price\""),
            "{}",
            e.message
        );
        assert!(e.message.contains("plugin 'route-policy'"), "{}", e.message);
        let text = "[plugins.route-policy]\nconfig = { srot = \"price\" }\n";
        let e = compile(
            &[("p.toml".into(), text.into())],
            &config(),
            Some(&WithSchema),
        )
        .unwrap_err();
        assert_eq!(e.field, "plugins.route-policy.config.srot");
        let text = "[plugins.route-policy]\nconfig = { sort = \"price\" }\n";
        compile(
            &[("p.toml".into(), text.into())],
            &config(),
            Some(&WithSchema),
        )
        .expect("valid");
    }

    #[test]
    fn plugins_must_exist_when_checked() {
        let exists = |n: &str| n == "route-policy";
        let text = "[[routes]]\nname = \"r\"\nrouting = { plugin = \"eu-only\" }\n";
        let e = compile(&[("p.toml".into(), text.into())], &config(), Some(&exists)).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (3, "routes 'r'.routing.plugin"));
    }
}
