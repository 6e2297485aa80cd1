"""Rate limits on one gateway (counted in its memory; tests/e2e/test_replicas.py has them shared
across two through Redis): requests per minute per key and per org, tokens per minute,
requests at once — 429 with `Retry-After` and OpenAI's `x-ratelimit-*` headers, in the client's
own error shape; every refusal recorded — on SQLite and PostgreSQL."""

import json
import threading
import time

from helpers import http

CHAT = {"model": "gpt-mock", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-mock", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}


def inside_one_minute():
    """Fixed minute windows: start well inside one so a test cannot straddle two."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def test_requests_per_minute_per_key(gw):
    inside_one_minute()
    key = gw.cli("keys", "create", "--org", gw.org, "--rpm", "3")
    for i in range(3):
        status, raw, headers = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
        assert status == 200, raw
        assert headers["x-ratelimit-limit-requests"] == "3"
        assert headers["x-ratelimit-remaining-requests"] == str(2 - i)
        assert headers["x-ratelimit-reset-requests"].endswith("s")
    status, raw, headers = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
    assert status == 429, raw
    err = json.loads(raw)["error"]
    assert err["code"] == "rate_limit_exceeded" and "requests per minute" in err["message"]
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    # Anthropic clients get Anthropic's shape.
    status, raw, _ = http(gw, "POST", "/v1/messages", MESSAGES, key=key, auth="x-api-key")
    assert status == 429 and json.loads(raw)["error"]["type"] == "rate_limit_error", raw
    # Another key of the org is not limited by this one's limit.
    assert http(gw, "POST", "/v1/chat/completions", CHAT)[0] == 200


def test_org_limits_cover_all_its_keys_and_tokens_per_minute(gw):
    inside_one_minute()
    org = gw.cli("orgs", "create", f"limited-{time.time_ns()}")
    gw.cli("credits", "add", "--org", org, "--usd", "1")
    k1 = gw.cli("keys", "create", "--org", org)
    k2 = gw.cli("keys", "create", "--org", org)
    gw.cli("orgs", "limits", "--org", org, "--rpm", "2")
    # The CLI is another process: the gateway's org cache trusts a record for 2 s at most.
    time.sleep(2.2)
    assert http(gw, "POST", "/v1/chat/completions", CHAT, key=k1)[0] == 200
    assert http(gw, "POST", "/v1/chat/completions", CHAT, key=k2)[0] == 200
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=k1)
    assert status == 429 and "organization" in json.loads(raw)["error"]["message"], raw
    # Tokens per minute: each request is admitted on its estimate (~90 bytes / 4 + max_tokens 6
    # = 28) and settles at what the mock reports (17): 50 allow two, the third is refused.
    key = gw.cli("keys", "create", "--org", gw.org, "--tpm", "50")
    answered = 0
    for _ in range(4):
        status, raw, headers = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
        if status == 429:
            assert "tokens per minute" in json.loads(raw)["error"]["message"]
            assert headers["x-ratelimit-limit-tokens"] == "50"
            break
        answered += 1
    assert answered == 2, answered


def test_requests_at_once(gw):
    key = gw.cli("keys", "create", "--org", gw.org, "--concurrency", "1")
    slow = {**CHAT, "model": "drip-mock", "stream": True}
    results = []

    def stream():
        results.append(http(gw, "POST", "/v1/chat/completions", slow, key=key)[0])

    t = threading.Thread(target=stream)
    t.start()
    time.sleep(0.3)   # the drip stream is under way
    status, raw, headers = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
    assert status == 429 and "concurrent" in json.loads(raw)["error"]["message"], raw
    assert headers["retry-after"] == "1"
    t.join(30)
    assert results == [200]
    assert http(gw, "POST", "/v1/chat/completions", CHAT, key=key)[0] == 200
