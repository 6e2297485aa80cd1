"""Two gateway processes on one PostgreSQL database and one Redis, as replicas behind a load
balancer: a key revoked through one is refused by the other within 2 s (PostgreSQL NOTIFY into
the key caches); a requests-per-minute limit of N holds across both (Redis), not 2N; 100
concurrent requests split across both against a balance for 10 cannot overspend (reservations
in PostgreSQL), and the ledger sums exactly."""

import json
import os
import secrets
import threading
import time

import pytest

from conftest import Gateway, ci_on, require_db, standard_mocks
from helpers import http

REDIS_URL = os.environ.get("TOLLGATE_TEST_REDIS", "redis://127.0.0.1:6379")
BODY = {"model": "gpt-mock", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def pair(tmp_path_factory, test_ca, plugin_cache):
    """Replicas `a` and `b` sharing a fresh PostgreSQL database and a Redis key prefix."""
    require_db("postgres")
    if REDIS_URL == "skip":
        if ci_on():
            pytest.fail("Redis is required under CI")
        pytest.skip("replica suite SKIPPED: no Redis (set TOLLGATE_TEST_REDIS)")
    ca_file, server_cert = test_ca
    mocks = standard_mocks(server_cert)
    prefix = f"tollgate-test-{secrets.token_hex(4)}:"
    extra = f'[rate_limits]\nredis_url = "{REDIS_URL}"\nkey_prefix = "{prefix}"\n'
    a = Gateway(tmp_path_factory.mktemp("replica-a"), "postgres", mocks, ca_file, cache_dir=plugin_cache,
                extra_toml=extra)
    b = Gateway(tmp_path_factory.mktemp("replica-b"), "postgres", mocks, ca_file, cache_dir=plugin_cache,
                extra_toml=extra, share_db_with=a)
    a.org = a.cli("orgs", "create", "replicated")
    a.cli("credits", "add", "--org", a.org, "--usd", "10")
    yield a, b
    b.stop()
    a.stop()
    for m in mocks.values():
        m.stop()


def test_a_key_revoked_through_one_replica_is_refused_by_the_other_within_2s(pair):
    a, b = pair
    key = a.cli("keys", "create", "--org", a.org)
    # Both replicas have the key cached (each answered with it).
    for g in (a, b):
        status, raw, _ = http(g, "POST", "/v1/chat/completions", BODY, key=key)
        assert status == 200, raw
    prefix = key[:10]
    rows = a.sql(f"SELECT id FROM api_keys WHERE prefix = '{prefix}'")
    assert len(rows) == 1
    key_id = rows[0][0]
    a.cli("keys", "revoke", key_id)
    revoked_at = time.monotonic()
    while True:
        status, raw, _ = http(b, "POST", "/v1/chat/completions", BODY, key=key)
        elapsed = time.monotonic() - revoked_at
        if status == 401:
            break
        assert status == 200, raw
        assert elapsed < 2.0, "replica b still accepts a key revoked 2 s ago"
        time.sleep(0.02)
    print(f"replica b refused the revoked key {elapsed * 1000:.0f} ms after the revocation")
    assert json.loads(raw)["error"]["code"] == "invalid_api_key"
    assert "revoked" in json.loads(raw)["error"]["message"]


def _burst(gateways, key, n, body=BODY):
    """`n` concurrent requests, alternating between the replicas; the statuses and bodies."""
    results = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        status, raw, headers = http(gateways[i % len(gateways)], "POST", "/v1/chat/completions", body, key=key)
        with lock:
            results.append((status, raw, headers))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == n
    return results


def test_an_rpm_limit_holds_across_both_replicas(pair):
    a, b = pair
    limit = 20
    key = a.cli("keys", "create", "--org", a.org, "--rpm", str(limit))
    # Minute windows: start well inside one, so the burst cannot straddle two.
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)
    results = _burst([a, b], key, 60)
    ok = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    assert len(ok) + len(limited) == 60, [r[:2] for r in results if r[0] not in (200, 429)]
    assert len(ok) <= limit, f"{len(ok)} answered across two replicas with an RPM limit of {limit}"
    assert len(ok) >= limit - 2, f"only {len(ok)} of {limit} allowed were answered"
    for status, raw, headers in limited:
        err = json.loads(raw)["error"]
        assert err["code"] == "rate_limit_exceeded", raw
        assert int(headers["retry-after"]) >= 1
        assert headers["x-ratelimit-limit-requests"] == str(limit)
    for status, raw, headers in ok:
        assert headers["x-ratelimit-limit-requests"] == str(limit)
        assert 0 <= int(headers["x-ratelimit-remaining-requests"]) < limit


def test_credits_cannot_be_overspent_across_both_replicas(pair):
    a, b = pair
    cost = 11 * 1 + 6 * 2   # the mock's usage at 1 and 2 micro-USD per token
    org = a.cli("orgs", "create", f"burst-{time.time_ns()}")
    key = a.cli("keys", "create", "--org", org)
    grant = 10 * cost
    a.cli("credits", "add", "--org", org, "--usd", f"{grant / 1e6:.6f}")
    results = _burst([a, b], key, 100)
    answered = sum(1 for r in results if r[0] == 200)
    for status, raw, _ in results:
        if status != 200:
            assert status == 402 and json.loads(raw)["error"]["code"] == "insufficient_credits", raw
    assert 1 <= answered <= 10, f"{answered} answered with a balance for 10"
    deadline = time.time() + 10
    while time.time() < deadline:
        records = [e for e in a.usage() if e["org_id"] == org]
        if len(records) == 100:
            break
        time.sleep(0.2)
    assert len(records) == 100
    charged = sum(e["cost_micros"] for e in records)
    assert charged == answered * cost
    balance = a.balance_micros(org)
    assert balance >= 0 and charged + balance == grant
