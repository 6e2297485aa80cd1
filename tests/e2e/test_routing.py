"""Operator routing policies (issue 11), against mock providers and the real gateway:
strategies (ordered, weighted, cheapest, fastest, least errors), the circuit breaker, the
fallback matrix (429 with and without Retry-After, 500, slow first byte, a stall mid-stream,
context-length errors, content-filter refusals, error events mid-stream, the client's own 4xx),
OpenRouter's request routing options as OpenRouter documents them
(https://openrouter.ai/docs/features/provider-routing, .../model-routing for `models`, and the
`:nitro` / `:floor` shortcuts), and the route trace for a three-candidate fallback — in the
`x-tollgate-route` header and in the usage record. On SQLite and PostgreSQL."""

import json
import time

import openai
import pytest

from conftest import Gateway, require_db, with_orgs
from helpers import client, http, parse_sse
from mock_provider import MockProvider

MESSAGES = [{"role": "user", "content": "hi"}]


def price(p):
    return f"input_per_mtok = {p}, output_per_mtok = {p}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def rg(request, tmp_path_factory, test_ca, plugin_cache):
    db = request.param
    require_db(db)
    ca_file, _ = test_ca
    tmp = tmp_path_factory.mktemp(f"routing-{db}")
    m = {
        "ok_a": MockProvider("openai"), "ok_b": MockProvider("openai"), "ok_c": MockProvider("openai"),
        "r429": MockProvider("openai", "status:429"), "r429ra": MockProvider("openai", "status:429:1"),
        "r429ra2": MockProvider("openai", "status:429:1"),
        "r429long": MockProvider("openai", "status:429:60"),
        "r500": MockProvider("openai", "status:500"), "r500b": MockProvider("openai", "status:500"),
        "r500c": MockProvider("openai", "status:500"), "errs": MockProvider("openai", "status:500"),
        "slow": MockProvider("openai", "slow:3000"), "slow300": MockProvider("openai", "slow:300"),
        "stall": MockProvider("openai", "stall:2"), "ctx": MockProvider("openai", "context-length"),
        "filt": MockProvider("openai", "content-filter"), "filt2": MockProvider("openai", "content-filter"),
        "bad": MockProvider("openai", "bad-request"),
        "anth_err": MockProvider("anthropic", "error-event:2"),
    }
    providers = "".join(f"""
[providers.{name}]
base_url = "{mock.base_url}"
api_key_env = "MOCK_{mock.flavour.upper()}_KEY"
transform = "provider-{mock.flavour}"
auth = "{'x-api-key' if mock.flavour == 'anthropic' else 'bearer'}"
{'zero_retention = true' if name == 'ok_c' else ''}
{'trains_on_data = true' if name == 'ok_b' else ''}
""" for name, mock in m.items())

    def model(name, routes):
        r = ", ".join("{ provider = \"%s\", model = \"%s-%s\", %s%s }" % (p, name, p, price(pr), extra)
                      for p, pr, extra in routes)
        return f'\n[[models]]\nname = "{name}"\nroutes = [{r}]\n'

    def simple(name, providers):
        return model(name, [(p, 1, "") for p in providers])

    models = (
        simple("m-429", ["r429", "ok_a"]) + simple("m-429ra", ["r429ra", "ok_a"]) + simple("m-429ra-only", ["r429ra2"])
        + simple("m-429long", ["r429long", "ok_a"]) + simple("m-500", ["r500", "ok_a"])
        + simple("m-slow", ["slow", "ok_a"]) + simple("m-stall", ["stall", "ok_a"])
        + model("m-ctx", [("ctx", 1, ", context_length = 8192"), ("ok_b", 1, ", context_length = 4096"),
                          ("ok_c", 1, ", context_length = 200000")])
        + simple("m-filter", ["filt", "ok_a"]) + simple("m-filter-fb", ["filt2", "ok_b"])
        + simple("m-bad", ["bad", "ok_a"]) + simple("m-three", ["r500", "slow", "ok_a"])
        + simple("m-anth-err", ["anth_err"]) + simple("m-circuit", ["r500b", "ok_a"])
        + simple("m-down", ["r500"])
        + model("s-cheapest", [("ok_a", 3, ""), ("ok_b", 1, ""), ("ok_c", 2, "")])
        + simple("s-weighted", ["ok_a", "ok_b", "ok_c"])
        + simple("s-fastest", ["slow300", "ok_a"]) + simple("s-errors", ["errs", "ok_a"])
        + model("or", [("ok_c", 3, ', supported_parameters = ["max_tokens"]'), ("ok_b", 2, ""), ("ok_a", 1, "")])
        + simple("or-fail", ["r500c", "ok_a"])
    )
    policy_dir = tmp / "policies"
    policy_dir.mkdir()
    (policy_dir / "routes.toml").write_text("""
[aliases]
fast = "s-cheapest"

[[routes]]
name = "cheapest"
models = ["s-cheapest"]
strategy = "cheapest"

[[routes]]
name = "weighted"
models = ["s-weighted"]
strategy = "weighted"
weights = { ok_a = 3, ok_c = 1 }

[[routes]]
name = "fastest"
models = ["s-fastest"]
strategy = "fastest"

[[routes]]
name = "least-errors"
models = ["s-errors"]
strategy = "least-errors"

[[routes]]
name = "filter-fallback"
models = ["m-filter-fb"]
fallback_on = ["rate-limit", "server-error", "timeout", "context-length", "content-filter"]

[[routes]]
name = "three"
models = ["m-three", "m-circuit"]
trace = true

[[routes]]
name = "no-rate-limit-fallback"
models = ["m-429long"]
fallback_on = ["server-error", "timeout"]
""")
    # (inside [limits]:) first-byte and stall bounds short enough for the slow and stalling mocks
    extra = f"""first_byte_timeout_ms = 1000
stall_timeout_ms = 1000

[policy]
dir = "{policy_dir}"
debounce_ms = 50
"""
    g = with_orgs(Gateway(tmp, db, {"openai_ok": MockProvider("openai")}, ca_file, cache_dir=plugin_cache,
                          extra_toml=extra + providers + models))
    g.m = m
    g.policy_dir = policy_dir
    yield g
    g.stop()
    for mock in [*m.values(), *g.mocks.values()]:
        mock.stop()


def chat(g, model, **extra):
    return client(g).chat.completions.with_raw_response.create(model=model, messages=MESSAGES, **extra)


def served_by(g, name, before):
    return len(g.m[name].requests) - before[name]


def counts(g):
    return {k: len(v.requests) for k, v in g.m.items()}


def record(g, rid, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for e in g.usage():
            if e["request_id"] == rid:
                return e
        time.sleep(0.05)
    raise AssertionError(f"no usage record for {rid}")


# -- fallback matrix -----------------------------------------------------------------------------

def test_429_without_retry_after_moves_on(rg):
    before = counts(rg)
    r = chat(rg, "m-429")
    assert r.http_response.status_code == 200
    assert (served_by(rg, "r429", before), served_by(rg, "ok_a", before)) == (1, 1)


def test_429_with_retry_after_moves_on_at_once_and_cools_the_provider_down(rg):
    before = counts(rg)
    t = time.monotonic()
    r = chat(rg, "m-429ra")
    assert r.http_response.status_code == 200
    assert time.monotonic() - t < 0.9, "another provider was left: no wait"
    assert (served_by(rg, "r429ra", before), served_by(rg, "ok_a", before)) == (1, 1)
    # Retry-After: 1 honoured for the requests that follow: not tried while cooling down
    chat(rg, "m-429ra")
    assert (served_by(rg, "r429ra", before), served_by(rg, "ok_a", before)) == (1, 2)
    e = record(rg, chat(rg, "m-429ra").headers["x-request-id"])
    assert any(s["reason"] == "cooling-down" for s in json.loads(e["route"])["skipped"]), e["route"]


def test_429_on_the_last_provider_waits_out_a_short_retry_after_once(rg):
    time.sleep(1.1)  # past the cooldown of the test before
    before = counts(rg)
    t = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        client(rg).chat.completions.create(model="m-429ra-only", messages=MESSAGES)
    assert time.monotonic() - t >= 1.0, "Retry-After: 1 was waited out"
    assert served_by(rg, "r429ra2", before) == 2, "tried, waited, tried once more"


def test_429_with_a_long_retry_after_is_not_waited_and_a_policy_can_refuse_fallback(rg):
    before = counts(rg)
    t = time.monotonic()
    with pytest.raises(openai.RateLimitError) as e:
        client(rg).chat.completions.create(model="m-429long", messages=MESSAGES)
    assert time.monotonic() - t < 5
    assert e.value.status_code == 429
    # fallback_on has no rate-limit: the provider's 429 goes to the client; ok_a is never tried
    assert served_by(rg, "ok_a", before) == 0


def test_500_and_slow_first_byte_fall_back(rg):
    before = counts(rg)
    assert chat(rg, "m-500").http_response.status_code == 200
    t = time.monotonic()
    assert chat(rg, "m-slow").http_response.status_code == 200
    assert time.monotonic() - t < 2.9, "the 1 s first-byte bound moved on before the mock's 3 s"
    assert served_by(rg, "ok_a", before) == 2


def test_a_stall_mid_stream_ends_the_stream_with_an_error(rg):
    status, raw, _ = http(rg, "POST", "/v1/chat/completions",
                          {"model": "m-stall", "stream": True, "messages": MESSAGES})
    assert status == 200
    datas = [d for _, d in parse_sse(raw)]
    assert "[DONE]" not in datas, datas
    assert datas[-1]["error"]["type"], datas  # one error event in OpenAI's stream shape
    assert any(d.get("choices") for d in datas[:-1]), "the chunks before the stall were delivered"


def test_an_anthropic_error_event_mid_stream_is_an_error_in_the_clients_format(rg):
    stream = client(rg).chat.completions.create(model="m-anth-err", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    status, raw, _ = http(rg, "POST", "/v1/chat/completions",
                          {"model": "m-anth-err", "stream": True, "messages": MESSAGES})
    datas = [d for _, d in parse_sse(raw)]
    assert status == 200 and "[DONE]" not in datas, datas
    assert datas[-1]["error"]["code"] == "overloaded_error", datas


def test_context_length_moves_to_a_larger_context(rg):
    before = counts(rg)
    r = chat(rg, "m-ctx")
    assert r.http_response.status_code == 200
    # ctx (8192) said too long; ok_b (4096) is no larger: skipped; ok_c (200000) answers
    assert (served_by(rg, "ctx", before), served_by(rg, "ok_b", before), served_by(rg, "ok_c", before)) == (1, 0, 1)
    e = record(rg, r.headers["x-request-id"])
    errors = [a["error"] for a in json.loads(e["attempts"])]
    assert errors == ["context-length", "skipped: context-length", ""], errors


def test_content_filter_refusals_fall_back_only_where_the_policy_says(rg):
    before = counts(rg)
    with pytest.raises(openai.BadRequestError) as e:
        client(rg).chat.completions.create(model="m-filter", messages=MESSAGES)
    assert e.value.code == "content_filter"
    assert served_by(rg, "ok_a", before) == 0
    assert chat(rg, "m-filter-fb").http_response.status_code == 200
    assert served_by(rg, "ok_b", before) == 1


def test_the_clients_own_4xx_never_falls_back(rg):
    before = counts(rg)
    with pytest.raises(openai.BadRequestError) as e:
        client(rg).chat.completions.create(model="m-bad", messages=MESSAGES)
    assert e.value.param == "temperature"
    assert (served_by(rg, "bad", before), served_by(rg, "ok_a", before)) == (1, 0)


# -- route trace ---------------------------------------------------------------------------------

def test_route_trace_of_a_three_candidate_fallback(rg):
    r = chat(rg, "m-three")
    assert r.http_response.status_code == 200
    h = r.headers["x-tollgate-route"]
    assert h.startswith("route=three; strategy=ordered; tried=r500:500-status:"), h
    tried = h.split("tried=")[1].split(";")[0].split(",")
    assert [t.split(":")[0] for t in tried] == ["r500", "slow", "ok_a"]
    assert tried[1].split(":")[1] == "timeout" and tried[2].split(":")[1] == "200"
    e = record(rg, r.headers["x-request-id"])
    trace = json.loads(e["route"])
    assert trace["route"] == "three" and trace["offered"] == ["r500", "slow", "ok_a"]
    attempts = json.loads(e["attempts"])
    assert [(a["provider"], a["status"]) for a in attempts] == [("r500", 500), ("slow", 0), ("ok_a", 200)]
    assert attempts[1]["error"] == "timeout" and attempts[1]["latency_ms"] >= 900
    # not traced: no header; the record still has the trace (two candidates were offered)
    r = chat(rg, "m-500")
    assert "x-tollgate-route" not in r.headers
    trace = json.loads(record(rg, r.headers["x-request-id"])["route"])
    assert trace["route"] == "default" and trace["offered"] == ["r500", "ok_a"]
    # one candidate on the default route, nothing skipped: the attempts column says it all
    with pytest.raises(openai.InternalServerError) as e:
        client(rg).chat.completions.create(model="m-down", messages=MESSAGES)
    rec = record(rg, e.value.response.headers["x-request-id"])
    assert rec.get("route") is None and json.loads(rec["attempts"])[0]["provider"] == "r500"


def test_the_circuit_opens_after_three_failures(rg):
    before = counts(rg)
    for _ in range(3):
        assert chat(rg, "m-circuit").http_response.status_code == 200
    assert served_by(rg, "r500b", before) == 3
    r = chat(rg, "m-circuit")
    assert served_by(rg, "r500b", before) == 3, "open: not tried"
    assert "skipped=r500b:circuit-open" in r.headers["x-tollgate-route"]


# -- strategies ----------------------------------------------------------------------------------

def test_cheapest_and_aliases(rg):
    before = counts(rg)
    assert chat(rg, "s-cheapest").http_response.status_code == 200
    assert chat(rg, "fast").http_response.status_code == 200  # alias of s-cheapest
    assert served_by(rg, "ok_b", before) == 2


def test_weighted_follows_the_weights(rg):
    before = counts(rg)
    for _ in range(40):
        chat(rg, "s-weighted")
    a, b, c = (served_by(rg, n, before) for n in ("ok_a", "ok_b", "ok_c"))
    assert a + b + c == 40 and b == 0, (a, b, c)
    assert a > c > 0 and a >= 20, (a, b, c)


def test_fastest_moves_to_the_measured_faster_provider(rg):
    for _ in range(3):
        chat(rg, "s-fastest")
    before = counts(rg)
    for _ in range(4):
        chat(rg, "s-fastest")
    assert (served_by(rg, "ok_a", before), served_by(rg, "slow300", before)) == (4, 0)


def test_least_errors_avoids_the_failing_provider(rg):
    chat(rg, "s-errors")
    before = counts(rg)
    for _ in range(3):
        chat(rg, "s-errors")
    assert served_by(rg, "errs", before) == 0


# -- OpenRouter request options ------------------------------------------------------------------

def provider_opts(g, model="or", **provider):
    before = counts(g)
    r = client(g).chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, extra_body={"provider": provider} if provider else None)
    assert r.http_response.status_code == 200
    return [n for n in ("ok_a", "ok_b", "ok_c") if served_by(g, n, before)]


def test_openrouter_provider_options(rg):
    assert provider_opts(rg) == ["ok_c"]  # catalog order
    assert provider_opts(rg, order=["ok_a", "ok_b"]) == ["ok_a"]
    assert provider_opts(rg, only=["ok_b"]) == ["ok_b"]
    assert provider_opts(rg, ignore=["ok_c"]) == ["ok_b"]
    assert provider_opts(rg, sort="price") == ["ok_a"]
    assert provider_opts(rg, max_price={"prompt": 1.5}) == ["ok_a"]
    assert provider_opts(rg, zdr=True) == ["ok_c"]
    assert provider_opts(rg, data_collection="deny") == ["ok_c"]
    # ok_c's route accepts only max_tokens; the request also uses temperature
    before = counts(rg)
    client(rg).chat.completions.create(model="or", messages=MESSAGES, temperature=0.5,
                                       extra_body={"provider": {"require_parameters": True}})
    assert (served_by(rg, "ok_c", before), served_by(rg, "ok_b", before)) == (0, 1)
    # the options never reach the provider
    sent = rg.m["ok_b"].requests[-1]["body"]
    assert "provider" not in sent and "models" not in sent and sent["temperature"] == 0.5


def test_openrouter_suffixes_and_fallback_switch(rg):
    before = counts(rg)
    r = client(rg).chat.completions.with_raw_response.create(model="or:floor", messages=MESSAGES)
    assert r.http_response.status_code == 200 and served_by(rg, "ok_a", before) == 1
    assert rg.m["ok_a"].requests[-1]["body"]["model"] == "or-ok_a"
    r = client(rg).chat.completions.with_raw_response.create(model="or:nitro", messages=MESSAGES)
    assert r.http_response.status_code == 200
    assert json.loads(record(rg, r.headers["x-request-id"])["route"])["strategy"] == "throughput"
    # allow_fallbacks false: only the ordered provider, its 500 goes to the client
    with pytest.raises(openai.InternalServerError):
        client(rg).chat.completions.create(model="or-fail", messages=MESSAGES,
                                           extra_body={"provider": {"order": ["r500c"], "allow_fallbacks": False}})
    assert provider_opts(rg, model="or-fail", order=["r500c"]) == ["ok_a"]


def test_openrouter_models_fallback_list(rg):
    before = counts(rg)
    r = client(rg).chat.completions.with_raw_response.create(
        model="m-down", messages=MESSAGES, extra_body={"models": ["m-down", "s-cheapest"]})
    assert r.http_response.status_code == 200
    # m-down's provider fails; the next model's routes follow, in the request route's order
    assert (served_by(rg, "r500", before), served_by(rg, "ok_a", before)) == (1, 1)
    e = record(rg, r.headers["x-request-id"])
    assert e["cost_micros"] > 0


def test_bad_options_are_400_in_the_clients_format(rg):
    with pytest.raises(openai.BadRequestError) as e:
        client(rg).chat.completions.create(model="or", messages=MESSAGES, extra_body={"provider": {"sort": "prize"}})
    assert e.value.param == "provider.sort"
    with pytest.raises(openai.NotFoundError) as e:
        client(rg).chat.completions.create(model="or", messages=MESSAGES, extra_body={"provider": {"only": ["nope"]}})
    assert "no_provider_available" in str(e.value.code) and "provider.only" in str(e.value)
