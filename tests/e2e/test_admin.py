"""The admin REST API against the real binary (SQLite and PostgreSQL): the OpenAPI document,
authentication, one allowed and one refused action for each role, audit rows for every
mutation (API and CLI) that cannot be changed, a key revoked through the API refused by
/v1/chat/completions within 2 s, and rotation's grace period for the old secret."""

import json
import time

import pytest

from helpers import admin_call, http

ADMIN_TOKEN = "e2e-admin-token"
GATEWAY_OPTIONS = {"env": {"TOLLGATE_ADMIN_TOKEN": ADMIN_TOKEN}}
BODY = {"model": "gpt-mock", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}
ROLES = ["owner", "admin", "developer", "restricted"]


def admin(gw, method, path, body=None, token=ADMIN_TOKEN):
    """One admin API call: (status, parsed JSON answer)."""
    return admin_call(gw, method, path, body, token)


def ok(gw, method, path, body=None, token=ADMIN_TOKEN, status=200):
    s, answer = admin(gw, method, path, body, token)
    assert s == status, (method, path, s, answer)
    return answer


@pytest.fixture(scope="module")
def team(gw):
    """A member of each role in the gateway's funded org `gw.org`: role -> (token, member id)."""
    out = {}
    for role in ROLES:
        a = ok(gw, "POST", f"/admin/orgs/{gw.org}/members", {"name": f"m-{role}", "role": role}, status=201)
        assert a["token"].startswith("tgm-") and a["member"]["role"] == role
        out[role] = (a["token"], a["member"]["id"])
    return out


def chat(gw, key):
    return http(gw, "POST", "/v1/chat/completions", BODY, key=key)[0]


def test_openapi_document_is_public_and_lists_the_routes(gw):
    doc = ok(gw, "GET", "/admin/openapi.json", token=None)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    for path, method in [("/admin/orgs", "post"), ("/admin/orgs/{org}/members", "post"),
                         ("/admin/orgs/{org}/keys/{key}/rotate", "post"), ("/admin/orgs/{org}/audit", "get"),
                         ("/admin/orgs/{org}/credits", "post"), ("/admin/plugins", "get")]:
        assert method in paths[path], (path, method)
    # Every documented GET without path parameters answers (with the operator's token).
    for path, ops in paths.items():
        if "get" in ops and "{" not in path:
            s, _ = admin(gw, "GET", path)
            assert s == 200, path


def test_callers_need_a_valid_token(gw):
    assert admin(gw, "GET", "/admin/orgs", token=None)[0] == 401
    assert admin(gw, "GET", "/admin/orgs", token="wrong")[0] == 401
    s, e = admin(gw, "GET", "/admin/orgs", token="tgm-" + "0" * 48)
    assert s == 401 and e["error"]["type"] == "authentication_error"
    # Existing admin routes keep working behind the operator token.
    assert admin(gw, "GET", "/admin/plugins", token=None)[0] == 401
    assert isinstance(ok(gw, "GET", "/admin/plugins"), list)


def refused(gw, token, role, action, method, path, body=None):
    s, e = admin(gw, method, path, body, token)
    assert s == 403, (role, method, path, s, e)
    assert e["error"]["type"] == "permission_error"
    assert role in e["error"]["message"] and action in e["error"]["message"], e


def test_each_role_is_allowed_one_thing_and_refused_another(gw, team):
    org = gw.org
    owner, admin_, dev, restricted = (team[r][0] for r in ROLES)
    # owner: changes the org's rate limits; may not grant credits (money in: operator only).
    assert ok(gw, "PATCH", f"/admin/orgs/{org}", {"concurrency_limit": 50}, owner)["concurrency_limit"] == 50
    refused(gw, owner, "owner", "credits.grant", "POST", f"/admin/orgs/{org}/credits", {"amount_micros": 1})
    # admin: adds a developer; may not change the org's limits nor make an owner.
    ok(gw, "POST", f"/admin/orgs/{org}/members", {"name": "dev-2", "role": "developer"}, admin_, status=201)
    refused(gw, admin_, "admin", "org.limits", "PATCH", f"/admin/orgs/{org}", {"rpm_limit": 1})
    refused(gw, admin_, "admin", "member.manage-owners", "POST", f"/admin/orgs/{org}/members",
            {"name": "boss", "role": "owner"})
    # developer: creates its own key (usable at once); may not read the audit log.
    created = ok(gw, "POST", f"/admin/orgs/{org}/keys", {"name": "dev-key"}, dev, status=201)
    assert created["key"]["member_id"] == team["developer"][1]
    assert chat(gw, created["secret"]) == 200
    refused(gw, dev, "developer", "audit.read", "GET", f"/admin/orgs/{org}/audit")
    # restricted: lists its keys (none); may not create one.
    assert ok(gw, "GET", f"/admin/orgs/{org}/keys", token=restricted)["data"] == []
    refused(gw, restricted, "restricted", "key.create", "POST", f"/admin/orgs/{org}/keys", {"name": "x"})
    # Another org does not exist for a member, whatever its role.
    for token in (owner, restricted):
        assert admin(gw, "GET", f"/admin/orgs/{gw.broke_org}", token=token)[0] == 404
    # Bodies are checked: an unknown field is named.
    s, e = admin(gw, "POST", f"/admin/orgs/{org}/keys", {"name": "x", "rpm": 5})
    assert s == 400 and "rpm" in e["error"]["message"]


def test_every_mutation_leaves_an_audit_row_that_cannot_be_changed(gw, team):
    org = gw.org
    owner = team["owner"][0]
    before = ok(gw, "GET", f"/admin/orgs/{org}/audit?limit=1")["data"]
    since = before[0]["id"] if before else 0
    created = ok(gw, "POST", f"/admin/orgs/{org}/keys", {"name": "audited", "rpm_limit": 100}, owner, status=201)
    kid, secret = created["key"]["id"], created["secret"]
    ok(gw, "PATCH", f"/admin/orgs/{org}/keys/{kid}", {"tpm_limit": 5000}, owner)
    ok(gw, "POST", f"/admin/orgs/{org}/keys/{kid}/disable", None, owner)
    gw.cli("keys", "enable", kid)
    rotated = ok(gw, "POST", f"/admin/orgs/{org}/keys/{kid}/rotate", {"grace_seconds": 0}, owner)
    ok(gw, "POST", f"/admin/orgs/{org}/keys/{kid}/revoke", {}, owner)
    member = ok(gw, "POST", f"/admin/orgs/{org}/members", {"name": "temp", "role": "restricted"}, owner, status=201)
    ok(gw, "PATCH", f"/admin/orgs/{org}/members/temp", {"role": "developer"}, owner)
    gw.cli("members", "remove", "--org", org, "temp")
    ok(gw, "POST", f"/admin/orgs/{org}/credits", {"amount_micros": 1000}, status=201)

    rows = [r for r in ok(gw, "GET", f"/admin/orgs/{org}/audit?limit=100", token=owner)["data"] if r["id"] > since]
    got = [(r["actor"], r["action"]) for r in reversed(rows)]
    me = f"member:{team['owner'][1]}"
    assert got == [(me, "key.create"), (me, "key.update"), (me, "key.disable"), ("cli", "key.enable"),
                   (me, "key.rotate"), (me, "key.revoke"), (me, "member.add"), (me, "member.role"),
                   ("cli", "member.remove"), ("operator", "credits.grant")], got
    assert all(r["target"] for r in rows) and all(r["at"] > 0 for r in rows)
    assert rows[-1]["target"] == kid and rows[-1]["details"]["rpm_limit"] == 100
    # No secret in the table, as stored.
    stored = json.dumps(gw.sql("SELECT actor, action, target, details FROM audit_log"))
    for s in (secret, rotated["secret"], member["token"]):
        assert s not in stored and s[4:20] not in stored
    # Append-only in the database itself.
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(Exception):
            gw.sql(statement)
    assert len(gw.sql(f"SELECT id FROM audit_log WHERE org_id = '{org}' AND id > {since}")) == len(rows)


def test_a_key_revoked_through_the_api_is_refused_within_2s(gw, team):
    org = gw.org
    created = ok(gw, "POST", f"/admin/orgs/{org}/keys", {"name": "to-revoke"}, team["admin"][0], status=201)
    key, kid = created["secret"], created["key"]["id"]
    assert chat(gw, key) == 200  # cached by the gateway now
    ok(gw, "POST", f"/admin/orgs/{org}/keys/{kid}/revoke", None, team["admin"][0])
    revoked_at = time.monotonic()
    while chat(gw, key) != 401:
        assert time.monotonic() - revoked_at < 2.0, "revoked key still accepted after 2 s"
        time.sleep(0.05)
    # Revocation is final.
    assert admin(gw, "POST", f"/admin/orgs/{org}/keys/{kid}/enable", None, team["admin"][0])[0] == 409


def test_rotation_keeps_the_old_secret_for_the_grace_period_only(gw, team):
    org, dev = gw.org, team["developer"][0]
    created = ok(gw, "POST", f"/admin/orgs/{org}/keys", {"name": "rotating"}, dev, status=201)
    old, kid = created["secret"], created["key"]["id"]
    assert chat(gw, old) == 200
    rotated = ok(gw, "POST", f"/admin/orgs/{org}/keys/{kid}/rotate", {"grace_seconds": 2}, dev)
    new = rotated["secret"]
    assert new != old and rotated["key"]["prefix"] == new[:10]
    assert chat(gw, old) == 200 and chat(gw, new) == 200
    time.sleep(2.5)
    assert chat(gw, old) == 401
    assert chat(gw, new) == 200


def test_cli_key_commands_cover_every_field(gw):
    key = gw.cli("keys", "create", "--org", gw.org, "--name", "cli-full", "--model", "gpt-mock",
                 "--provider", "openai_ok", "--api", "openai-chat", "--spend-limit", "2.5", "--period", "weekly",
                 "--rpm", "30", "--tpm", "9000", "--concurrency", "3", "--expires-in-days", "7")
    [kid] = [line.split()[0] for line in gw.cli("keys", "list", "--org", gw.org).splitlines()
             if line.split()[3:4] == ["cli-full"]]
    shown = json.loads(gw.cli("keys", "show", kid))
    assert shown["scopes"] == {"models": ["gpt-mock"], "providers": ["openai_ok"], "apis": ["openai-chat"]}
    assert (shown["spend_limit_micros"], shown["spend_period"]) == (2_500_000, "weekly")
    assert (shown["rpm_limit"], shown["tpm_limit"], shown["concurrency_limit"]) == (30, 9000, 3)
    assert abs(shown["expires_at"] - (time.time() + 7 * 86400) * 1000) < 120_000
    assert chat(gw, key) == 200
    gw.cli("keys", "update", kid, "--rpm", "31", "--unrestricted")
    shown = json.loads(gw.cli("keys", "show", kid))
    assert shown["rpm_limit"] == 31 and shown["scopes"] == {}
    new = gw.cli("keys", "rotate", kid, "--grace-seconds", "1")
    assert new.startswith("tg-") and new != key
    token = gw.cli("members", "add", "--org", gw.org, "--name", "cli-member", "--role", "developer")
    assert ok(gw, "GET", "/admin/me", token=token)["role"] == "developer"
    gw.cli("members", "role", "--org", gw.org, "cli-member", "restricted")
    assert ok(gw, "GET", "/admin/me", token=token)["role"] == "restricted"
    renewed = gw.cli("members", "token", "--org", gw.org, "cli-member")
    assert admin(gw, "GET", "/admin/me", token=token)[0] == 401
    assert ok(gw, "GET", "/admin/me", token=renewed)["member"]["name"] == "cli-member"
    gw.cli("orgs", "limits", "--org", gw.broke_org, "--rpm", "7")
    assert ok(gw, "GET", f"/admin/orgs/{gw.broke_org}")["rpm_limit"] == 7
    lines = gw.cli("audit", "list", "--org", gw.org, "--format", "json", "--limit", "5").splitlines()
    assert [json.loads(line)["action"] for line in lines][:2] == ["member.token", "member.role"]


def test_low_balance_alert_is_set_and_read_back_through_the_api_and_the_cli(gw, team):
    org, owner, admin_ = gw.org, team["owner"][0], team["admin"][0]
    path = f"/admin/orgs/{org}/alerts"
    hook = "https://billing.example.com/hook?token=e2e-hook-token"
    # Below the org's balance (10 USD): set, never sent during the test.
    body = {"threshold_usd": 1.5, "webhook": hook, "auto_top_up_usd": 20.0}
    set_ = ok(gw, "PUT", path, body, owner)
    got = ok(gw, "GET", path, token=admin_)
    assert got == set_, (got, set_)
    assert (got["enabled"], got["threshold_micros"], got["auto_top_up_micros"], got["webhook"]) == \
        (True, 1_500_000, 20_000_000, hook)
    refused(gw, team["developer"][0], "developer", "alerts.read", "GET", path)
    refused(gw, team["restricted"][0], "restricted", "alerts.write", "PUT", path, body)
    for bad in ({"threshold_usd": 1}, {"threshold_usd": -1, "webhook": hook},
                {"threshold_usd": 1, "webhook": "ftp://billing.example.com/x"}):
        s, e = admin(gw, "PUT", path, bad)
        assert s == 400, (bad, e)
    # The CLI shows it, changes one value keeping the others, and clears it (audited as cli).
    shown = gw.cli("orgs", "alert", "--org", org)
    assert "$1.500000" in shown and hook in shown and "$20.000000" in shown, shown
    gw.cli("orgs", "alert", "--org", org, "--top-up", "7")
    got = ok(gw, "GET", path)
    assert (got["threshold_micros"], got["auto_top_up_micros"], got["webhook"]) == (1_500_000, 7_000_000, hook)
    gw.cli("orgs", "alert", "--org", org, "--clear")
    got = ok(gw, "GET", path)
    assert (got["enabled"], got["threshold_micros"], got["webhook"]) == (False, 0, None)
    rows = ok(gw, "GET", f"/admin/orgs/{org}/audit?limit=3")["data"]
    assert [(r["actor"], r["action"]) for r in rows] == \
        [("cli", "alerts.write"), ("cli", "alerts.write"), (f"member:{team['owner'][1]}", "alerts.write")]
    assert rows[2]["details"]["webhook_host"] == "billing.example.com"
    assert "e2e-hook-token" not in json.dumps(gw.sql("SELECT details FROM audit_log"))
