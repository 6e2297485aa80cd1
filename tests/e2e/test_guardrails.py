"""The guardrail stage end to end (issue 12): `[stages] guardrails` runs the Rust guardrail
(plugins/guardrail-basic) and the Python one (test-plugins-py/guardrail-py, componentize-py)
after auth and before routing. Prompts are refused in the client's own format (OpenAI chat and
Responses, Anthropic Messages through the official SDKs), recorded and not charged, and never
reach a provider; answers carrying a secret are stopped: a complete one is replaced by the
error and not charged, a stream ends with one error event and is charged only for the text the
client received. SQLite only: the database plays no part in a guardrail's decision."""

import json
import math
import urllib.request

import anthropic
import openai
import pytest

from conftest import TEST_PLUGINS, Gateway, require_db, with_orgs
from helpers import anthropic_client, client, settled
from mock_provider import MockProvider

KEY = "AKIAABCDEFGHIJKLMNOP"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, test_ca, plugin_cache):
    require_db("sqlite")
    ca_file, _ = test_ca
    wasm = TEST_PLUGINS / "guardrail-py.wasm"
    assert wasm.exists(), f"{wasm} missing: scripts/build-plugins builds it with componentize-py"
    mocks = {
        "openai_ok": MockProvider("openai"),
        "anthropic_ok": MockProvider("anthropic"),
        "openai_leak": MockProvider("openai", "leak"),
        "anthropic_leak": MockProvider("anthropic", "leak"),
    }
    g = with_orgs(Gateway(tmp_path_factory.mktemp("guard"), "sqlite", mocks, ca_file, cache_dir=plugin_cache,
                          extra_plugins=[wasm], extra_toml="""
[stages]
guardrails = ["guardrail-basic", "guardrail-py"]
[plugins.settings.guardrail-basic]
config = { max_messages = 8, deny = ["launch codes"] }
[plugins.settings.guardrail-py]
deadline_ms = 1000
config = { max_messages = 4 }
"""))
    yield g
    g.stop()
    for m in mocks.values():
        m.stop()


def user(text):
    return [{"role": "user", "content": text}]


def upstream_count(g):
    return sum(len(m.requests) for m in g.mocks.values())


def refused_and_free(g, rid, status):
    rec = settled(g, rid)
    assert rec["status"] == status and rec["cost_micros"] == 0, rec
    return rec


def test_a_clean_prompt_passes_both_guardrails(guarded):
    r = client(guarded).chat.completions.with_raw_response.create(model="gpt-mock", messages=user("hi"))
    assert r.http_response.status_code == 200
    plugins = {p["name"]: p for p in guarded.admin("/admin/plugins")}
    assert plugins["guardrail-basic"]["active"]["stage"] == "guardrail"
    assert plugins["guardrail-py"]["active"]["stage"] == "guardrail"
    assert plugins["guardrail-py"]["calls"] >= 1 and plugins["guardrail-py"]["failures"] == 0


def test_a_secret_in_the_prompt_is_refused_in_openai_format_and_never_sent(guarded):
    before = upstream_count(guarded)
    with pytest.raises(openai.BadRequestError) as e:
        client(guarded).chat.completions.create(model="gpt-mock", messages=user(f"my key is {KEY}"))
    assert e.value.status_code == 400
    assert e.value.body["code"] == "guardrail_blocked"
    assert "AWS access key" in e.value.body["message"]
    assert upstream_count(guarded) == before, "a refused prompt must not reach a provider"
    refused_and_free(guarded, e.value.response.headers["x-request-id"], 400)


def test_a_denied_phrase_in_a_responses_input_is_refused(guarded):
    with pytest.raises(openai.BadRequestError) as e:
        client(guarded).responses.create(model="gpt-mock", input="Tell me the LAUNCH CODES")
    assert e.value.body["code"] == "guardrail_blocked"
    assert "denied phrase" in e.value.body["message"]


def test_a_secret_in_an_anthropic_system_prompt_is_refused_in_anthropic_format(guarded):
    with pytest.raises(anthropic.BadRequestError) as e:
        anthropic_client(guarded).messages.create(
            model="claude-mock", max_tokens=32, system=f"Use key {KEY}", messages=user("hi"))
    assert e.value.status_code == 400
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["message"].startswith("The prompt contains")


def test_the_python_guardrail_refuses_what_the_rust_one_lets_through(guarded):
    many = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(5)]
    with pytest.raises(openai.BadRequestError) as e:
        client(guarded).chat.completions.create(model="gpt-mock", messages=many)
    # 5 messages: within guardrail-basic's 8, over guardrail-py's 4.
    assert "at most 4 are allowed" in e.value.body["message"], e.value.body


def test_a_complete_answer_with_a_secret_is_stopped_and_not_charged(guarded):
    before = guarded.balance_micros(guarded.org)
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(guarded).chat.completions.create(model="gpt-leak", messages=user("hi"))
    assert e.value.body["code"] == "guardrail_blocked"
    assert KEY not in json.dumps(e.value.body)
    rec = refused_and_free(guarded, e.value.response.headers["x-request-id"], 403)
    assert rec["output_tokens"] > 0, "the tokens the provider produced are recorded"
    assert guarded.balance_micros(guarded.org) == before


def test_a_streamed_answer_is_stopped_before_the_secret_is_complete(guarded):
    before = guarded.balance_micros(guarded.org)
    stream = client(guarded).chat.completions.with_raw_response.create(
        model="gpt-leak", messages=user("hi"), stream=True)
    received = ""
    with pytest.raises(openai.APIError) as info:
        for chunk in stream.parse():
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
    assert "stopped" in str(info.value)
    # The key is split across two events: the first half went out, the second never did.
    assert received == "Your key is AKIAABCD"
    rec = settled(guarded, stream.headers["x-request-id"])
    assert rec["status"] == 502, rec
    # Charged for what arrived (~4 characters a token), not for the withheld piece.
    assert rec["output_tokens"] == math.ceil(len(received) / 4)
    assert guarded.balance_micros(guarded.org) == before - rec["cost_micros"]


def test_an_anthropic_stream_is_stopped_with_an_error_event(guarded):
    received = ""
    with pytest.raises(anthropic.APIStatusError) as info:
        with anthropic_client(guarded).messages.stream(
                model="claude-leak", max_tokens=32, messages=user("hi")) as s:
            for text in s.text_stream:
                received += text
    assert "stopped" in str(info.value)
    assert KEY not in received and received.startswith("Your key is")


def test_guardrail_refusals_are_counted(guarded):
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{guarded.admin_port}/metrics", timeout=5).read().decode()
    lines = [l for l in metrics.splitlines() if l.startswith("tollgate_guardrail_refused_total")]
    phases = {l.split('phase="')[1].split('"')[0] for l in lines}
    assert {"prompt", "output"} <= phases, lines
