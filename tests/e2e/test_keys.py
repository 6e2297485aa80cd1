"""API keys with limits, end to end through the real binary: scopes (model, provider, client
API) refused with 403 in the client's format; a spend limit refused with 402 once reached;
disable / enable; `usage.cost` in answers (what the ledger charged), `GET /v1/key` (the key's
limit, spend and what is left, OpenRouter's shape) and `GET /v1/generation?id=` (one request of
the caller's org, nobody else's) — on SQLite and PostgreSQL."""

import json
import time

import openai

from helpers import http

CHAT = {"model": "gpt-mock", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-mock", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}
COST = 11 * 1 + 6 * 2      # the mock's usage (11 in, 6 out) at 1 and 2 USD per million tokens


def key_id(gw, key):
    rows = gw.sql(f"SELECT id FROM api_keys WHERE prefix = '{key[:10]}'")
    assert len(rows) == 1
    return rows[0][0]


def record(gw, request_id, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = [e for e in gw.usage() if e["request_id"] == request_id]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no usage record for {request_id}")


def test_answers_carry_their_cost_and_the_generation_endpoint_reports_it(gw):
    status, raw, headers = http(gw, "POST", "/v1/chat/completions", CHAT)
    assert status == 200, raw
    body = json.loads(raw)
    assert body["usage"]["cost"] == COST / 1e6
    rid = headers["x-request-id"]
    assert record(gw, rid)["cost_micros"] == COST
    status, raw, _ = http(gw, "GET", f"/v1/generation?id={rid}")
    assert status == 200, raw
    gen = json.loads(raw)["data"]
    assert gen["id"] == rid and gen["total_cost"] == COST / 1e6
    assert (gen["tokens_prompt"], gen["tokens_completion"]) == (11, 6)
    assert gen["model"] == "gpt-mock" and gen["provider_name"] == "openai_ok" and gen["streamed"] is False
    # Another org's key cannot see it; a missing id is a 400; an unknown one a 404.
    status, raw, _ = http(gw, "GET", f"/v1/generation?id={rid}", key=gw.broke_key)
    assert status == 404, raw
    status, raw, _ = http(gw, "GET", "/v1/generation")
    assert status == 400 and json.loads(raw)["error"]["param"] == "id"
    status, _, _ = http(gw, "GET", "/v1/generation?id=req_nope")
    assert status == 404
    # The official SDK keeps the field.
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.key)
    completion = client.chat.completions.create(**CHAT)
    assert completion.usage.model_extra["cost"] == COST / 1e6


def test_key_endpoint_reports_spend_against_the_limit(gw):
    key = gw.cli("keys", "create", "--org", gw.org, "--spend-limit", "0.001", "--period", "daily")
    status, raw, _ = http(gw, "GET", "/v1/key", key=key)
    assert status == 200, raw
    data = json.loads(raw)["data"]
    assert data["limit"] == 0.001 and data["usage"] == 0 and data["limit_remaining"] == 0.001
    assert data["limit_reset"] == "daily"
    for _ in range(3):
        status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
        assert status == 200, raw
    deadline = time.time() + 5
    while time.time() < deadline:
        data = json.loads(http(gw, "GET", "/v1/key", key=key)[1])["data"]
        if data["usage"] == 3 * COST / 1e6:
            break
        time.sleep(0.05)
    assert data["usage"] == 3 * COST / 1e6 and data["usage_daily"] == 3 * COST / 1e6
    assert abs(data["limit_remaining"] - (1000 - 3 * COST) / 1e6) < 1e-12
    status, _, _ = http(gw, "GET", "/v1/key", key=False)
    assert status == 401


def test_a_spend_limit_refuses_once_reached(gw):
    # Each request holds 11 input (by size) + 6 output tokens' worth; the limit covers ~2.
    key = gw.cli("keys", "create", "--org", gw.org, "--spend-limit", "0.00006")
    answered = 0
    for _ in range(10):
        status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
        if status == 200:
            answered += 1
            continue
        assert status == 402, raw
        err = json.loads(raw)["error"]
        assert err["code"] == "key_limit_exceeded" and "spend limit" in err["message"]
        break
    assert 1 <= answered <= 60 // COST, answered
    spent = sum(e["cost_micros"] for e in gw.usage() if e["key_id"] == key_id(gw, key))
    assert spent <= 60


def test_scopes_refuse_other_models_and_apis_in_the_clients_format(gw):
    key = gw.cli("keys", "create", "--org", gw.org, "--model", "gpt-mock", "--api", "openai-chat")
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
    assert status == 200, raw
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", {**CHAT, "model": "claude-mock"}, key=key)
    assert status == 403, raw
    err = json.loads(raw)["error"]
    assert err["code"] == "permission_denied" and "claude-mock" in err["message"]
    status, raw, _ = http(gw, "POST", "/v1/messages", MESSAGES, key=key, auth="x-api-key")
    assert status == 403, raw
    body = json.loads(raw)
    assert body["type"] == "error" and body["error"]["type"] == "permission_error"
    # A provider scope leaves routing only the providers it names.
    key = gw.cli("keys", "create", "--org", gw.org, "--provider", "anthropic_ok")
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
    assert status == 403 and "provider" in json.loads(raw)["error"]["message"], raw
    status, raw, _ = http(gw, "POST", "/v1/messages", MESSAGES, key=key, auth="x-api-key")
    assert status == 200, raw
    # Every refusal is still one usage record (written within the flush interval).
    kid = key_id(gw, key)
    deadline = time.time() + 5
    while not any(e["key_id"] == kid and e["status"] == 403 for e in gw.usage()):
        assert time.time() < deadline, "no usage record for the refused request"
        time.sleep(0.05)


def test_disabled_keys_are_refused_until_enabled(gw):
    key = gw.cli("keys", "create", "--org", gw.org)
    kid = key_id(gw, key)
    assert http(gw, "POST", "/v1/chat/completions", CHAT, key=key)[0] == 200
    gw.cli("keys", "disable", kid)
    # The CLI is another process: PostgreSQL's NOTIFY tells the gateway at once, on SQLite the
    # cached record is trusted for 2 s at most.
    deadline = time.time() + 3
    while True:
        status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
        if status != 200:
            break
        assert time.time() < deadline, "a disabled key is still served after 3 s"
        time.sleep(0.05)
    assert status == 401 and "disabled" in json.loads(raw)["error"]["message"], raw
    gw.cli("keys", "enable", kid)
    deadline = time.time() + 3
    while http(gw, "POST", "/v1/chat/completions", CHAT, key=key)[0] != 200:
        assert time.time() < deadline, "an enabled key is still refused after 3 s"
        time.sleep(0.05)


def test_an_unpriced_model_is_refused_not_served_free(gw):
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", {**CHAT, "model": "gpt-unpriced"})
    assert status == 403, raw
    err = json.loads(raw)["error"]
    assert err["code"] == "model_unpriced" and "unpriced_models" in err["message"]


def test_a_streamed_answer_carries_its_cost_in_the_usage_chunk(gw):
    client = openai.OpenAI(base_url=gw.base_url, api_key=gw.key)
    chunks = list(client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True}))
    with_usage = [c for c in chunks if c.usage is not None]
    assert len(with_usage) == 1
    cost = with_usage[0].usage.model_extra["cost"]
    assert cost == COST / 1e6
    assert record(gw, _last_request(gw))["cost_micros"] == COST


def _last_request(gw):
    deadline = time.time() + 5
    while time.time() < deadline:
        rows = gw.sql("SELECT request_id FROM usage_events WHERE stream = 1 ORDER BY created_at DESC LIMIT 1")
        if rows:
            return rows[0][0]
        time.sleep(0.05)
    raise AssertionError("no streamed usage record")
