"""Gateways started for one test each: the admin token, and usage records flushed at shutdown."""

import json
import urllib.error
import urllib.request

import pytest

from conftest import Gateway, require_db
from helpers import EXPECTED, MESSAGES, client
from mock_provider import MockProvider

ADMIN_TOKEN = "e2e-admin-token"


@pytest.fixture
def mocks():
    m = {"openai_ok": MockProvider("openai"), "anthropic_ok": MockProvider("anthropic")}
    yield m
    for mock in m.values():
        mock.stop()


@pytest.fixture
def start_gateway(tmp_path, test_ca, plugin_cache, mocks):
    started = []

    def start(db="sqlite", **options):
        require_db(db)
        g = Gateway(tmp_path / f"gw-{len(started)}", db, mocks, test_ca[0], cache_dir=plugin_cache, **options)
        started.append(g)
        g.org = g.cli("orgs", "create", "acme")
        g.key = g.cli("keys", "create", "--org", g.org)
        g.cli("credits", "add", "--org", g.org, "--usd", "10")
        return g

    yield start
    for g in started:
        g.stop()


def admin_get(g, path, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{g.admin_port}{path}")
    if token is not None:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_admin_token_protects_the_admin_api(start_gateway):
    g = start_gateway(env={"TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN})
    status, body = admin_get(g, "/admin/plugins")
    assert status == 401, body
    assert json.loads(body)["error"]["type"] == "authentication_error"
    assert admin_get(g, "/admin/plugins", token="wrong-token")[0] == 401
    status, body = admin_get(g, "/admin/plugins", token=ADMIN_TOKEN)
    assert status == 200, body
    assert "auth-apikey" in {p["name"] for p in json.loads(body)}
    # Liveness stays open; the CLI, given the token (same env), reads the running gateway.
    assert admin_get(g, "/health")[0] == 200
    assert "from the running gateway" in g.cli("plugins", "list")


def test_admin_api_is_open_without_a_token(start_gateway):
    """The other side of the test above: the 401s come from the token, not from the path."""
    g = start_gateway(env={"TOLLGATE_ADMIN_TOKEN": ""})
    status, body = admin_get(g, "/admin/plugins")
    assert status == 200, body


@pytest.mark.parametrize("grace", [0, 1], ids=["grace0", "grace1"])
@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_usage_records_flushed_on_shutdown(start_gateway, db, grace):
    """Whatever the grace period (the default is 1 s; 0 is valid), SIGTERM must not lose usage
    records or their charges."""
    # Periodic flushes are ten minutes apart, batches 256: only the shutdown flush can write these.
    g = start_gateway(db, usage_flush_ms=600_000, grace_period_seconds=grace)
    request_ids = []
    c = client(g)
    for model, stream in [("gpt-mock", False), ("gpt-mock", True), ("claude-mock", False), ("claude-mock", True)] * 3:
        if stream:
            resp = c.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=64,
                                                               stream=True, stream_options={"include_usage": True})
            text = "".join(ch.choices[0].delta.content or "" for ch in resp.parse() if ch.choices)
        else:
            resp = c.chat.completions.with_raw_response.create(model=model, messages=MESSAGES, max_tokens=64)
            text = resp.parse().choices[0].message.content
        assert text == EXPECTED
        request_ids.append(resp.headers["x-request-id"])
    written_early = {e["request_id"] for e in g.usage()} & set(request_ids)
    assert not written_early, "records written before shutdown: the test would not prove the shutdown flush"

    code = g.sigterm()
    events = [e for e in g.usage() if e["request_id"] in request_ids]  # read from the database
    missing = set(request_ids) - {e["request_id"] for e in events}
    assert not missing, f"{len(missing)} of {len(request_ids)} usage records lost at shutdown\n" + g.log_text()[-3000:]
    assert len(events) == len(request_ids), "a usage record was written twice"
    assert all(e["status"] == 200 and e["cost_micros"] > 0 for e in events), events
    # Their charges were flushed with them.
    spent = sum(e["cost_micros"] for e in events)
    assert g.balance_micros(g.org) == 10_000_000 - spent
    assert code == 0, f"gateway exit status {code} after SIGTERM\n" + g.log_text()[-3000:]
