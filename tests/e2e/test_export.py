"""Usage export (issue 10), end to end: the admin API streams an org's usage (chunked) as
JSON Lines and as CSV — exactly the org's rows, nothing of another org, the retained content
only when asked; a member of another org is refused; `tollgate usage export` writes the same.
On SQLite and PostgreSQL."""

import csv
import io
import json
import time
import urllib.request

from helpers import admin_call, client

MODEL = 'csv,"quoted" model'  # a model name that needs CSV quoting


def org_with_usage(gw, n, mode="metadata-only"):
    org = gw.cli("orgs", "create", f"export-{time.monotonic_ns()}")
    key = gw.cli("keys", "create", "--org", org)
    gw.cli("credits", "add", "--org", org, "--usd", "5")
    gw.cli("orgs", "retention", org, "--mode", mode)
    ids = []
    for i in range(n):
        r = client(gw, key).chat.completions.with_raw_response.create(
            model=MODEL if i % 2 else "gpt-mock", messages=[{"role": "user", "content": f"line one\nline, \"two\" {i}"}])
        ids.append(r.headers["x-request-id"])
    time.sleep(0.4)
    return org, ids


def fetch(gw, path, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}{path}")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.headers, r.read().decode()


def test_export_streams_exactly_the_orgs_rows_in_both_formats(gw):
    org, ids = org_with_usage(gw, 5, mode="retain-all")
    other, other_ids = org_with_usage(gw, 2)

    status, headers, body = fetch(gw, f"/admin/orgs/{org}/usage/export?format=jsonl")
    assert status == 200 and headers["content-type"] == "application/jsonl"
    assert headers.get("transfer-encoding") == "chunked", dict(headers)
    rows = [json.loads(line) for line in body.splitlines()]
    assert [r["request_id"] for r in rows] == ids, "the org's rows, oldest first"
    assert {r["org_id"] for r in rows} == {org}
    assert not set(other_ids) & {r["request_id"] for r in rows}
    assert "request_body" not in rows[0], "content only when asked"
    assert rows[1]["model"] == MODEL and rows[0]["input_tokens"] > 0 and rows[0]["cost_usd"] > 0

    status, headers, body = fetch(gw, f"/admin/orgs/{org}/usage/export?format=csv&content=true")
    assert headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(body, newline="")))
    assert [r["request_id"] for r in table] == ids
    assert table[1]["model"] == MODEL, "quoted fields read back"
    # The stored request body (JSON with commas, quotes and escapes) survives the CSV round trip.
    assert all(json.loads(r["request_body"])["messages"][0]["content"].startswith('line one\nline, "two"')
               for r in table), table[0]["request_body"]
    assert sum(int(r["cost_micros"]) for r in table) == sum(r["cost_micros"] for r in rows)

    # A time range.
    since = rows[2]["created_at"]
    _, _, body = fetch(gw, f"/admin/orgs/{org}/usage/export?since={since}")
    assert [json.loads(line)["request_id"] for line in body.splitlines()] == \
        [r["request_id"] for r in rows if r["created_at"] >= since]

    # Members: another org's owner sees nothing of it; bad parameters are named.
    status, owner = admin_call(gw, "POST", f"/admin/orgs/{other}/members", {"name": "o", "role": "owner"})
    assert status == 201
    status, answer = admin_call(gw, "GET", f"/admin/orgs/{org}/usage/export", None, owner["token"])
    assert status == 404, answer
    status, answer = admin_call(gw, "GET", f"/admin/orgs/{other}/usage/export?format=xml", None, owner["token"])
    assert status == 400 and "format" in answer["error"]["message"]
    _, _, mine = fetch(gw, f"/admin/orgs/{other}/usage/export", owner["token"])
    assert [json.loads(line)["request_id"] for line in mine.splitlines()] == other_ids

    # The CLI writes the same export.
    cli_rows = [json.loads(line) for line in gw.cli("usage", "export", "--org", org).splitlines()]
    assert [r["request_id"] for r in cli_rows] == ids
    audit = gw.sql(f"SELECT COUNT(*) FROM audit_log WHERE org_id = '{org}' AND action = 'usage.export'")
    assert int(audit[0][0]) >= 4, "each export is audited"
