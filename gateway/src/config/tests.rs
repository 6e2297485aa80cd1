//! Tests of config loading and checking.

use super::*;

#[test]
fn defaults_parse_and_are_consistent() {
    let c = Config::load(None).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080");
    assert!(c.providers.contains_key("openai") && c.providers.contains_key("anthropic"));
    assert!(!c.models.is_empty());
    let anthropic = &c.providers["anthropic"];
    assert_eq!(
        (anthropic.auth, anthropic.port, anthropic.scheme_https),
        (ProviderAuth::XApiKey, 443, true)
    );
}

#[test]
fn file_overrides_and_errors_name_the_field() {
    let c = Config::from_toml(
        r#"
        [server]
        listen = "127.0.0.1:1"
        [providers.mock]
        base_url = "http://127.0.0.1:9999/v1x"
        transform = "provider-openai"
        [[models]]
        name = "m"
        routes = [{ provider = "mock", model = "up", input_per_mtok = 1.5, output_per_mtok = 2 }]
        "#,
    )
    .unwrap();
    assert_eq!(c.listen, "127.0.0.1:1");
    assert_eq!(c.providers["mock"].base_path, "/v1x");
    assert_eq!(c.models["m"][0].price.input, 1_500_000);
    let err = Config::from_toml("[server]\nlisten_typo = 1").unwrap_err();
    assert!(format!("{err:#}").contains("listen_typo"), "{err:#}");
    let err = Config::from_toml(
        "[providers.x]\nbase_url='ftp://a'\ntransform='t'\n[[models]]\nname='m'\nroutes=[]",
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("providers.x.base_url"),
        "{err:#}"
    );
}

#[test]
fn routes_without_prices_are_unpriced_unless_declared_free() {
    let text = |policy: &str| {
        format!(
            r#"
        [limits]
        {policy}
        [providers.mock]
        base_url = "http://127.0.0.1:9999/v1"
        transform = "provider-openai"
        [[models]]
        name = "nothing"
        routes = [{{ provider = "mock" }}]
        [[models]]
        name = "gift"
        routes = [{{ provider = "mock", free = true }}]
        [[models]]
        name = "cached"
        routes = [{{ provider = "mock", cache_read_per_mtok = 0.1 }}]
        "#
        )
    };
    let c = Config::from_toml(&text("")).unwrap();
    assert_eq!(c.unpriced_models, UnpricedPolicy::Refuse);
    assert!(c.models["nothing"][0].unpriced);
    assert!(!c.models["gift"][0].unpriced);
    assert!(!c.models["cached"][0].unpriced);
    let c = Config::from_toml(&text("unpriced_models = \"alert\"")).unwrap();
    assert_eq!(c.unpriced_models, UnpricedPolicy::Alert);
    let err = Config::from_toml(&text("unpriced_models = \"free\"")).unwrap_err();
    assert!(format!("{err:#}").contains("unpriced_models"), "{err:#}");
    let err = Config::from_toml(
        "[providers.m]\nbase_url='http://a'\ntransform='t'\n[[models]]\nname='x'\nroutes=[{provider='m', free=true, input_per_mtok=1}]",
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("free"), "{err:#}");
}

#[test]
fn plugin_engine_options_are_read_and_checked() {
    let c = Config::load(None).unwrap();
    assert_eq!(c.plugin_engine.epoch_tick, Duration::from_millis(2));
    assert_eq!(c.plugin_engine.inline_budget, Duration::from_millis(1));
    assert_eq!(
        (c.plugin_engine.lane.threads, c.plugin_engine.lane.nice),
        (2, 10)
    );
    let c = Config::from_toml(
        "[plugins]\nepoch_tick_ms = 5\ninline_budget_ms = 3\nslow_lane_threads = 1\n\
         slow_lane_nice = 19\noutput_lines_per_sec = 2.5",
    )
    .unwrap();
    assert_eq!(c.plugin_engine.epoch_tick, Duration::from_millis(5));
    assert_eq!(c.plugin_engine.inline_budget, Duration::from_millis(3));
    assert_eq!(
        (c.plugin_engine.lane.threads, c.plugin_engine.lane.nice),
        (1, 19)
    );
    assert_eq!(c.plugin_engine.output.lines_per_sec, 2.5);
    for (bad, field) in [
        ("epoch_tick_ms = 0", "plugins.epoch_tick_ms"),
        ("inline_budget_ms = 0", "plugins.inline_budget_ms"),
        ("slow_lane_threads = 0", "plugins.slow_lane_threads"),
        ("slow_lane_nice = 20", "plugins.slow_lane_nice"),
        (
            "output_lines_per_sec = -1.0",
            "plugins.output_lines_per_sec",
        ),
    ] {
        let err = Config::from_toml(&format!("[plugins]\n{bad}")).unwrap_err();
        assert!(format!("{err:#}").contains(field), "{bad}: {err:#}");
    }
}
