"""Deleting an org through the admin API (issue 10), end to end: the org's owner deletes it;
its keys are refused at once (PostgreSQL: NOTIFY; SQLite: within the key record's 2 s trust),
its member token no longer works, the org is 404 (a second delete too), and what is left in
the database is the anonymised usage and the ledger under a tombstone. The exhaustive
every-column check is gateway/tests/erase.rs. On SQLite and PostgreSQL."""

import time

from helpers import EXPECTED, admin_call, client, http


def test_an_owner_deletes_the_org_and_nothing_of_it_keeps_working(gw):
    org = gw.cli("orgs", "create", "doomed-co")
    key = gw.cli("keys", "create", "--org", org)
    gw.cli("credits", "add", "--org", org, "--usd", "1")
    status, owner = admin_call(gw, "POST", f"/admin/orgs/{org}/members",
                               {"name": "boss@doomed.example", "role": "owner"})
    assert status == 201, owner
    token = owner["token"]
    for _ in range(2):
        answer = client(gw, key).chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == EXPECTED
    time.sleep(0.3)
    assert gw.sql(f"SELECT COUNT(*) FROM usage_events WHERE org_id = '{org}'") == [["2"]]

    # An admin may not delete; the owner may.
    status, admin = admin_call(gw, "POST", f"/admin/orgs/{org}/members", {"name": "adm", "role": "admin"}, token)
    assert status == 201, admin
    status, body = admin_call(gw, "DELETE", f"/admin/orgs/{org}", None, admin["token"])
    assert status == 403 and "org.delete" in body["error"]["message"], body
    status, report = admin_call(gw, "DELETE", f"/admin/orgs/{org}", None, token)
    assert status == 200, report
    tombstone = report["tombstone"]
    assert tombstone.startswith("del_")
    assert (report["members"], report["api_keys"], report["usage_rows_anonymised"]) == (2, 1, 2)

    # The key is refused promptly, the member token is dead, the org is gone.
    deadline = time.time() + 3
    while True:
        status, raw, _ = http(gw, "POST", "/v1/chat/completions",
                              {"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}]}, key=key)
        if status == 401:
            break
        assert time.time() < deadline, (status, raw)
        time.sleep(0.1)
    status, _ = admin_call(gw, "GET", f"/admin/orgs/{org}", None, token)
    assert status == 401
    status, _ = admin_call(gw, "GET", f"/admin/orgs/{org}")
    assert status == 404
    status, _ = admin_call(gw, "DELETE", f"/admin/orgs/{org}")
    assert status == 404

    # Kept: the usage (anonymised) and the ledger, under the tombstone; nothing under the org.
    assert gw.sql(f"SELECT COUNT(*), MIN(key_id), MAX(client_ip) FROM usage_events WHERE org_id = '{tombstone}'") \
        in ([["2", "deleted", ""]],)
    assert int(gw.sql(f"SELECT COUNT(*) FROM credit_ledger WHERE org_id = '{tombstone}'")[0][0]) >= 3
    for table in ["usage_events", "credit_ledger", "api_keys", "members", "audit_log", "request_content"]:
        assert gw.sql(f"SELECT COUNT(*) FROM {table} WHERE org_id = '{org}'") == [["0"]], table


def test_the_cli_asks_for_confirmation(gw):
    import subprocess
    from gateway_proc import BINARY
    org = gw.cli("orgs", "create", "cautious-co")
    out = subprocess.run([str(BINARY), "--config", str(gw.config), "orgs", "delete", org], env=gw.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--yes" in out.stderr
    assert "tombstone" in gw.cli("orgs", "delete", org, "--yes")
