"""BYOK end to end: an org stores its own provider key (encrypted at rest under the master key
from TOLLGATE_MASTER_KEY, set from stdin through the CLI); its requests reach the provider with
that key in the header (the gateway's never), cost no credits (an org with no credits is
served), the mode orders the org's and the gateway's keys, and the key is in no table of the
database in plaintext — on SQLite and PostgreSQL. Keys and the mode set through the admin API
take effect on the serving gateway at once, and the key is in none of its answers."""

import json
import secrets
import subprocess
import time

from conftest import BINARY
from helpers import admin_call, http

MASTER = secrets.token_hex(32)
GATEWAY_OPTIONS = {"env": {"TOLLGATE_MASTER_KEY": MASTER}}
CHAT = {"model": "gpt-mock", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}


def byok(gw, *args, stdin=None):
    out = subprocess.run([str(BINARY), "--config", str(gw.config), "byok", *args], env=gw.env,
                         input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def seen_key(mock):
    return mock.requests[-1]["headers"].get("authorization")


def wait_for_key(gw, key, expect, timeout=5):
    """The BYOK cache is short-lived: a change made by the CLI lands within its TTL."""
    deadline = time.time() + timeout
    while True:
        status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
        if status == 200 and seen_key(gw.mocks["openai_ok"]) == expect:
            return
        assert time.time() < deadline, (status, raw, seen_key(gw.mocks["openai_ok"]))
        time.sleep(0.1)


def test_byok_requests_use_the_orgs_key_and_cost_no_credits(gw):
    org = gw.cli("orgs", "create", f"byok-{time.time_ns()}")   # no credits at all
    key = gw.cli("keys", "create", "--org", org)
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
    assert status == 402, raw
    own = f"sk-org-own-{secrets.token_hex(16)}"
    byok(gw, "set", "--org", org, "--provider", "openai_ok", "--label", "team", stdin=own)
    byok(gw, "mode", "--org", org, "only")
    wait_for_key(gw, key, f"Bearer {own}")
    assert gw.balance_micros(org) == 0
    # The usage is recorded, the charge is zero.
    deadline = time.time() + 5
    while time.time() < deadline:
        records = [e for e in gw.usage() if e["org_id"] == org and e["status"] == 200]
        if records:
            break
        time.sleep(0.05)
    assert records and all(e["cost_micros"] == 0 for e in records)
    assert gw.sql(f"SELECT COUNT(*) FROM credit_ledger WHERE org_id = '{org}' AND kind = 'charge'") == [["0"]]
    listed = byok(gw, "list", "--org", org)
    assert "openai_ok" in listed and own not in listed

    # The secret is nowhere in the database in plaintext (every column of every table).
    if gw.db == "postgres":
        tables = [r[0] for r in gw.sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    else:
        tables = [r[0] for r in gw.sql("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert "provider_credentials" in tables
    for table in tables:
        for row in gw.sql(f'SELECT * FROM "{table}"'):
            assert not any(own in str(v) for v in row), f"plaintext BYOK key in table {table}"
    assert own not in gw.log_text()


def test_byok_modes_order_the_orgs_and_the_gateways_keys(gw):
    org = gw.cli("orgs", "create", f"byok-mode-{time.time_ns()}")
    gw.cli("credits", "add", "--org", org, "--usd", "1")
    key = gw.cli("keys", "create", "--org", org)
    own = f"sk-org-own-{secrets.token_hex(16)}"
    byok(gw, "set", "--org", org, "--provider", "openai_ok", stdin=own)
    byok(gw, "mode", "--org", org, "fallback")
    wait_for_key(gw, key, "Bearer sk-mock-openai")
    byok(gw, "mode", "--org", org, "prefer")
    wait_for_key(gw, key, f"Bearer {own}")
    # Without its key the org is served with the gateway's again.
    byok(gw, "remove", "--org", org, "--provider", "openai_ok")
    wait_for_key(gw, key, "Bearer sk-mock-openai")


def admin(gw, method, path, body=None, token=None):
    """One admin API call (this module's gateway has no admin token: operator calls are open)."""
    return admin_call(gw, method, path, body, token)


def test_byok_key_set_through_the_admin_api_is_used_at_once(gw):
    org = gw.cli("orgs", "create", f"byok-api-{time.time_ns()}")   # no credits at all
    key = gw.cli("keys", "create", "--org", org)
    s, m = admin(gw, "POST", f"/admin/orgs/{org}/members", {"name": "boss", "role": "owner"})
    assert s == 201, m
    owner = m["token"]
    s, m = admin(gw, "POST", f"/admin/orgs/{org}/members", {"name": "dev", "role": "developer"})
    developer = m["token"]
    # Refused for lack of credits; the gateway now holds the org as "no keys" in its cache.
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
    assert status == 402, raw

    own = f"sk-org-api-{secrets.token_hex(16)}"
    base = f"/admin/orgs/{org}/byok"
    s, e = admin(gw, "PUT", f"{base}/openai_ok", {"key": own}, developer)
    assert s == 403 and "byok.write" in e["error"]["message"], e
    s, e = admin(gw, "PUT", f"{base}/no-such-provider", {"key": own}, owner)
    assert s == 400 and "unknown provider" in e["error"]["message"], e
    s, stored = admin(gw, "PUT", f"{base}/openai_ok", {"key": own, "label": "via api"}, owner)
    assert s == 200 and stored["provider"] == "openai_ok" and stored["label"] == "via api", stored
    s, state = admin(gw, "PUT", base, {"mode": "only"}, owner)
    assert s == 200 and state["mode"] == "only", state
    assert [k["provider"] for k in state["data"]] == ["openai_ok"]

    # The serving gateway dropped the org from its cache: the next request uses the org's key.
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
    assert status == 200, raw
    assert seen_key(gw.mocks["openai_ok"]) == f"Bearer {own}"
    assert gw.balance_micros(org) == 0

    # The key is in no answer, audit row or log line.
    s, listed = admin(gw, "GET", base, token=owner)
    assert s == 200 and listed["data"][0]["id"] == stored["id"]
    for answer in (stored, state, listed, e):
        assert own not in json.dumps(answer)
    s, audit = admin(gw, "GET", f"/admin/orgs/{org}/audit?limit=10", token=owner)
    assert [r["action"] for r in audit["data"]][:2] == ["byok.write", "byok.write"], audit
    assert own not in json.dumps(gw.sql("SELECT actor, action, target, details FROM audit_log"))
    assert own not in gw.log_text()

    # Removed through the API: at once the org has no key, and no credits.
    s, _ = admin(gw, "DELETE", f"{base}/openai_ok", token=owner)
    assert s == 200
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", CHAT, key=key)
    assert status == 402, raw
