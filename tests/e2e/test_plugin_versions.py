"""Plugins built for an older WIT version keep serving (issue 12): the gateway runs with every
stock stage plugin (auth, routing, both provider transforms, billing, the retention plugins)
built against the frozen `tollgate:plugin@0.1.0` (target/plugins-wit-0.1.0/, the SDK's
`wit-0-1-0` feature), called through the host's 0.1.0 adapter. Driven with the official openai
and anthropic SDKs, streaming included; usage and charges exact. SQLite only."""

import pytest

from conftest import ROOT, Gateway, require_db, with_orgs
from helpers import anthropic_client, client, cost_micros, settled
from mock_provider import COMPLETION_TOKENS, PROMPT_TOKENS, WORDS, MockProvider

OLD = ROOT / "target" / "plugins-wit-0.1.0"
STOCK = ["auth-apikey", "route-policy", "provider-openai", "provider-anthropic", "billing-credits",
         "retention-metadata-only"]


@pytest.fixture(scope="module")
def old(tmp_path_factory, test_ca, plugin_cache):
    require_db("sqlite")
    ca_file, _ = test_ca
    files = [OLD / f"{name}.wasm" for name in STOCK]
    for f in files:
        assert f.exists(), f"{f} missing: scripts/build-plugins builds it"
    mocks = {"openai_ok": MockProvider("openai"), "anthropic_ok": MockProvider("anthropic")}
    g = with_orgs(Gateway(tmp_path_factory.mktemp("wit010"), "sqlite", mocks, ca_file, cache_dir=plugin_cache,
                          extra_plugins=files))
    yield g
    g.stop()
    for m in mocks.values():
        m.stop()


def test_every_stock_stage_runs_a_0_1_0_build(old):
    plugins = {p["name"]: p for p in old.admin("/admin/plugins")}
    for name in STOCK:
        assert plugins[name]["active"]["wit_version"] == "0.1.0", plugins[name]


def test_chat_and_stream_through_0_1_0_plugins(old):
    before = old.balance_micros(old.org)
    c = client(old)
    r = c.chat.completions.with_raw_response.create(model="gpt-mock", messages=[{"role": "user", "content": "hi"}])
    assert r.parse().choices[0].message.content == "".join(WORDS)
    rec = settled(old, r.headers["x-request-id"])
    assert (rec["input_tokens"], rec["output_tokens"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert rec["cost_micros"] == cost_micros("gpt-mock", input=PROMPT_TOKENS, output=COMPLETION_TOKENS)
    s = c.chat.completions.with_raw_response.create(model="gpt-mock", messages=[{"role": "user", "content": "hi"}],
                                                    stream=True, stream_options={"include_usage": True})
    text = "".join(ch.choices[0].delta.content or "" for ch in s.parse() if ch.choices)
    assert text == "".join(WORDS)
    rec2 = settled(old, s.headers["x-request-id"])
    assert rec2["output_tokens"] == COMPLETION_TOKENS and rec2["status"] == 200
    assert old.balance_micros(old.org) == before - rec["cost_micros"] - rec2["cost_micros"]


def test_anthropic_sdk_through_the_0_1_0_anthropic_transform(old):
    with anthropic_client(old).messages.stream(model="claude-mock", max_tokens=32,
                                               messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "".join(WORDS)
    assert final.usage.output_tokens == COMPLETION_TOKENS
    # The OpenAI SDK on the Anthropic model: translated by the 0.1.0 transform.
    out = client(old).chat.completions.create(model="claude-mock", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "".join(WORDS)


def test_a_bad_key_is_refused_by_the_0_1_0_auth_plugin(old):
    import openai
    with pytest.raises(openai.AuthenticationError):
        client(old, key="tg-nope").chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "x"}])
