"""Retention modes, end to end (issue 10): a unique marker sent in a request — chat, streamed
chat, Messages, Responses — is stored under `retain-all` and appears nowhere under
`metadata-only` and `zero`: not in the database (SQLite: the raw file with its WAL; PostgreSQL:
a full `pg_dump`), not in the data directory, not in the gateway's log, not in `/metrics`. Stored
content is gone once the clock passes the retention period and the purge runs; stored client
IPs are gone after their period. Under `zero` no usage row is written at all, only the ledger's
charge. On SQLite and PostgreSQL."""

import json
import secrets
import subprocess
import time
import urllib.request

import pytest

from gateway_proc import BINARY
from helpers import EXPECTED, anthropic_client, client, http

DAY_MS = 86_400_000
# The metadata plugin keeps client IPs here (it does not by default), so their period shows.
GATEWAY_OPTIONS = {"extra_toml": "[plugins.settings.retention-metadata-only]\nconfig = { keep_client_ip = true }\n"}


def new_org(gw, mode, **retention):
    """An org in retention `mode` with a key and 10 USD of credits: (org, key)."""
    org = gw.cli("orgs", "create", f"ret-{mode}-{secrets.token_hex(3)}")
    key = gw.cli("keys", "create", "--org", org)
    gw.cli("credits", "add", "--org", org, "--usd", "10")
    args = ["orgs", "retention", org, "--mode", mode]
    for flag, value in retention.items():
        args += [f"--{flag.replace('_', '-')}", str(value).lower()]
    gw.cli(*args)
    return org, key


def send_everything(gw, key, marker):
    """The marker through every client API (non-streamed and streamed chat, Messages,
    Responses); returns the request ids."""
    ids = []
    oai = client(gw, key)
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-mock", messages=[{"role": "user", "content": f"chat {marker}"}])
    assert raw.parse().choices[0].message.content == EXPECTED
    ids.append(raw.headers["x-request-id"])
    with oai.chat.completions.with_streaming_response.create(
            model="gpt-mock", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"stream {marker}"}]) as resp:
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
        ids.append(resp.headers["x-request-id"])
    assert text == EXPECTED
    msg = anthropic_client(gw, key).messages.with_raw_response.create(
        model="gpt-mock", max_tokens=64, messages=[{"role": "user", "content": f"messages {marker}"}])
    assert msg.parse().content[0].text == EXPECTED
    ids.append(msg.headers["x-request-id"])
    # `store` left at its default (true): the conversation state is kept for its TTL (never
    # under zero) but sealed at rest, so the marker is not in the database in any mode.
    resp = oai.responses.with_raw_response.create(model="gpt-mock", input=f"responses {marker}")
    assert resp.parse().output_text == EXPECTED
    ids.append(resp.headers["x-request-id"])
    return ids


def settle(gw):
    """Waits until the usage writer has flushed (its interval is 50 ms in these tests)."""
    time.sleep(0.5)


def everywhere(gw):
    """Every byte the gateway keeps: database (raw SQLite files, or a pg_dump), the data
    directory's other files, its log, its /metrics."""
    blobs = {}
    data = gw.tmp / "data"
    for path in data.rglob("*"):
        if path.is_file() and "plugin-cache" not in path.parts:
            blobs[str(path)] = path.read_bytes()
    if gw.pg_db:
        dump = subprocess.run(["pg_dump", "--data-only", gw.db_url], check=True, capture_output=True)
        blobs["pg_dump"] = dump.stdout
    blobs["log"] = gw.log_text().encode()
    blobs["metrics"] = urllib.request.urlopen(f"http://127.0.0.1:{gw.admin_port}/metrics", timeout=5).read()
    return blobs


def where(gw, marker):
    return sorted(name for name, blob in everywhere(gw).items() if marker.encode() in blob)


@pytest.mark.parametrize("mode", ["metadata-only", "zero"])
def test_content_appears_nowhere(gw, mode):
    org, key = new_org(gw, mode)
    marker = f"MARKER-{secrets.token_hex(8)}"
    ids = send_everything(gw, key, marker)
    settle(gw)
    assert where(gw, marker) == [], f"the marker of a {mode} org was kept"
    rows = gw.sql(f"SELECT request_id FROM usage_events WHERE org_id = '{org}'")
    if mode == "metadata-only":
        assert sorted(r[0] for r in rows) == sorted(ids), "one usage row per request"
    else:
        assert rows == [], "zero retention keeps no request log"
        # ... but billing keeps its record: one charge per request, naming it.
        charged = gw.sql(f"SELECT request_id FROM credit_ledger WHERE org_id = '{org}' AND kind = 'charge'")
        assert sorted(r[0] for r in charged) == sorted(ids)
    assert gw.sql(f"SELECT COUNT(*) FROM request_content WHERE org_id = '{org}'") == [["0"]]


def test_stored_responses_state_is_sealed_and_still_continues(gw):
    _, key = new_org(gw, "metadata-only")
    marker = f"MARKER-{secrets.token_hex(8)}"
    oai = client(gw, key)
    first = oai.responses.create(model="gpt-mock", input=f"remember {marker}")
    assert first.store is True
    settle(gw)
    assert where(gw, marker) == [], "conversation state in clear text"
    assert oai.responses.retrieve(first.id).id == first.id
    second = oai.responses.create(model="gpt-mock", input="and now?", previous_response_id=first.id)
    assert second.output_text == EXPECTED


def test_zero_keeps_no_responses_state(gw):
    _, key = new_org(gw, "zero")
    marker = f"MARKER-{secrets.token_hex(8)}"
    first = client(gw, key).responses.create(model="gpt-mock", input=f"remember {marker}")
    assert first.store is False, "zero retention answers store: false"
    settle(gw)
    assert where(gw, marker) == []
    status, raw, _ = http(gw, "POST", "/v1/responses", {"model": "gpt-mock", "input": "again",
                                                         "previous_response_id": first.id}, key=key)
    assert status == 400, raw
    error = json.loads(raw)["error"]
    assert error["param"] == "previous_response_id" and "zero" in error["message"]


def test_retain_all_stores_content_until_the_purge(gw):
    org, key = new_org(gw, "retain-all", days=7)
    marker = f"MARKER-{secrets.token_hex(8)}"
    ids = send_everything(gw, key, marker)
    settle(gw)
    # (Flags computed in SQL: psql's text output cannot carry the bodies' newlines.)
    rows = gw.sql(f"SELECT request_id, CASE WHEN request_body LIKE '%{marker}%' THEN 1 ELSE 0 END, "
                  f"CASE WHEN response_body LIKE '%Hello%' THEN 1 ELSE 0 END, "
                  f"CASE WHEN response_body LIKE 'data: %' THEN 1 ELSE 0 END "
                  f"FROM request_content WHERE org_id = '{org}'")
    stored = {r[0]: r[1:] for r in rows}
    assert sorted(stored) == sorted(ids), "content of every request is stored"
    for rid, (has_marker, has_answer, _) in stored.items():
        assert has_marker == "1", f"{rid}: the request body is stored"
        assert has_answer == "1", f"{rid}: the answer is stored (a stream's text split in events)"
    # The streamed answer is kept as the client received it: the event stream.
    assert [flags[2] for flags in stored.values()].count("1") == 1
    assert where(gw, marker), "retain-all keeps the marker"

    # Before the period: the purge keeps it; after: gone from the database and its files.
    now = int(time.time() * 1000)
    gw.cli("purge", "--now", str(now + 6 * DAY_MS))
    assert len(gw.sql(f"SELECT request_id FROM request_content WHERE org_id = '{org}'")) == len(ids)
    gw.cli("purge", "--now", str(now + 7 * DAY_MS + 60_000))
    assert gw.sql(f"SELECT COUNT(*) FROM request_content WHERE org_id = '{org}'") == [["0"]]
    assert gw.sql(f"SELECT COUNT(*) FROM usage_events WHERE org_id = '{org}'") == [["0"]], \
        "request logs are kept for the org's period, then purged"
    leftovers = [w for w in where(gw, marker) if w not in ("log",)]
    assert leftovers == [], f"the marker outlived the purge in {leftovers}"


def test_periods_of_rows_and_client_ips(gw):
    # Request logs are kept for the org's period (30 days by default); a client IP for the
    # org's IP period (here 1 day; never past 30), then nulled by the purge while the row stays.
    org, key = new_org(gw, "metadata-only", ip_days=1)
    client(gw, key).chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "hi"}])
    settle(gw)
    query = f"SELECT client_ip, ip_expires_at, created_at, expires_at FROM usage_events WHERE org_id = '{org}'"
    [(ip, ip_expires, created, expires)] = gw.sql(query)
    assert ip == "127.0.0.1"
    assert int(expires) - int(created) == 30 * DAY_MS, "request logs kept 30 days by default"
    assert int(ip_expires) - int(created) == DAY_MS
    gw.cli("purge", "--now", str(int(created) + DAY_MS - 1000))
    assert gw.sql(query)[0][0] == "127.0.0.1", "purged before its period"
    gw.cli("purge", "--now", str(int(created) + DAY_MS))
    [(ip, _, _, _)] = gw.sql(query)
    assert ip == "", "the client IP outlived its period"
    # An IP period above 30 days is refused: IPs are never kept longer.
    out = subprocess.run([str(BINARY), "--config", str(gw.config), "orgs", "retention", org, "--ip-days", "45"],
                         env=gw.env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0


def test_a_key_chooses_its_mode_only_where_the_org_allows(gw):
    org, key = new_org(gw, "metadata-only")
    key_id = key_ref(gw, org)
    refused = subprocess.run([str(BINARY), "--config", str(gw.config), "keys", "update", key_id,
                              "--retention-mode", "retain-all"], env=gw.env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode != 0, refused.stdout
    assert "override" in (refused.stderr + refused.stdout).lower()
    gw.cli("orgs", "retention", org, "--key-override", "true")
    gw.cli("keys", "update", key_id, "--retention-mode", "retain-all")
    # A change made by another process reaches a SQLite gateway's key cache within the
    # record's 2 s trust bound (PostgreSQL: NOTIFY, at once).
    time.sleep(2.2)
    marker = f"MARKER-{secrets.token_hex(8)}"
    client(gw, key).chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": marker}])
    settle(gw)
    rows = gw.sql(f"SELECT request_body FROM request_content WHERE org_id = '{org}'")
    assert len(rows) == 1 and marker in rows[0][0]


def key_ref(gw, org):
    """The id of the org's only key."""
    rows = gw.sql(f"SELECT id FROM api_keys WHERE org_id = '{org}'")
    assert len(rows) == 1
    return rows[0][0]
