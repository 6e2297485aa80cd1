"""Policy files as an operator uses them (issue 11): edited on disk under load (0 failed
requests, the new route live within a second), an invalid edit keeps the previous policy and
says why (file, line, field) in the log and in GET /admin/policy, SIGHUP reloads instead of
killing the gateway, a listener port in use is a clear error at start, and `check-config` /
`policy check` refuse what the gateway would refuse. Policy handling does not touch the
database: SQLite only."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

import openai
import pytest

from conftest import BINARY, Gateway, require_db, with_orgs
from helpers import client
from mock_provider import MockProvider

MESSAGES = [{"role": "user", "content": "hi"}]
PRICE = "input_per_mtok = 1, output_per_mtok = 1"


def policy(providers):
    return f"""
[[routes]]
name = "main"
models = ["hot"]
providers = {json.dumps(providers)}
"""


def start(tmp, test_ca, plugin_cache, watch=True, text=None):
    ca_file, _ = test_ca
    a, b = MockProvider("openai"), MockProvider("openai")
    pdir = tmp / "policies"
    pdir.mkdir(exist_ok=True)
    (pdir / "routes.toml").write_text(text if text is not None else policy(["a"]))
    extra = f"""
[policy]
dir = "{pdir}"
watch = {str(watch).lower()}
debounce_ms = 50

[providers.a]
base_url = "{a.base_url}"
api_key_env = "MOCK_OPENAI_KEY"
transform = "provider-openai"

[providers.b]
base_url = "{b.base_url}"
api_key_env = "MOCK_OPENAI_KEY"
transform = "provider-openai"

[[models]]
name = "hot"
routes = [{{ provider = "a", {PRICE} }}, {{ provider = "b", {PRICE} }}]
"""
    g = with_orgs(Gateway(tmp, "sqlite", {"openai_ok": MockProvider("openai")}, ca_file,
                          cache_dir=plugin_cache, extra_toml=extra))
    g.a, g.b, g.pdir = a, b, pdir
    return g


def write(path, text):
    """As editors and deploy tools do: a new file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def admin_policy(g):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{g.admin_port}/admin/policy", timeout=5).read())


def wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def hot(tmp_path_factory, test_ca, plugin_cache):
    require_db("sqlite")
    g = start(tmp_path_factory.mktemp("hot"), test_ca, plugin_cache)
    yield g
    g.stop()
    for m in [g.a, g.b, *g.mocks.values()]:
        m.stop()


def test_policy_edited_under_load_fails_no_request(hot):
    g = hot
    results, stop = [], threading.Event()

    def load():
        c = client(g)
        while not stop.is_set() and len(results) < 3000:
            try:
                c.chat.completions.create(model="hot", messages=MESSAGES)
                results.append(True)
            except Exception as e:  # noqa: BLE001 - any failure counts
                results.append(e)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        b_before = len(g.b.requests)
        write(g.pdir / "routes.toml", policy(["b"]))
        assert wait_for(lambda: len(g.b.requests) > b_before + 5), "the edit took effect under load"
        a_after = len(g.a.requests)
        time.sleep(0.5)
        assert len(g.a.requests) == a_after, "no request went to the old route after the reload"
        # An invalid edit: the previous policy keeps serving.
        write(g.pdir / "routes.toml", policy(["b"]) + '\n[[routes]]\nname = "x"\nproviders = ["nope"]\n')
        assert wait_for(lambda: admin_policy(g)["last_error"] is not None)
        b_mid = len(g.b.requests)
        time.sleep(0.5)
        assert len(g.b.requests) > b_mid and len(g.a.requests) == a_after
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    failures = [r for r in results if r is not True]
    assert not failures, failures[:3]
    assert len(results) > 50
    status = admin_policy(g)
    assert "routes.toml:9: routes 'x'.providers: unknown provider 'nope'" in status["last_error"], status
    assert status["failed_reloads"] >= 1 and status["routes"][0]["providers"] == ["b"]
    assert "routes.toml:9" in g.log_text()
    # fixed: the error clears and the new version is live
    write(g.pdir / "routes.toml", policy(["a"]))
    assert wait_for(lambda: admin_policy(g)["last_error"] is None and admin_policy(g)["routes"][0]["providers"] == ["a"])


def test_plugin_config_in_the_policy_reloads(hot):
    g = hot
    # route-policy's max_attempts = 1: only the first provider is attempted.
    write(g.pdir / "routes.toml", policy(["a", "b"]) + "\n[plugins.route-policy]\nconfig = { max_attempts = 1 }\n")
    assert wait_for(lambda: len(admin_policy(g)["routes"][0]["providers"]) == 2)
    g.a.behaviour = "status:500"
    try:
        b_before = len(g.b.requests)
        with pytest.raises(Exception):
            client(g).chat.completions.create(model="hot", messages=MESSAGES)
        assert len(g.b.requests) == b_before, "max_attempts = 1 from the policy's plugin config"
        write(g.pdir / "routes.toml", policy(["a", "b"]))
        assert wait_for(lambda: _served(g))
    finally:
        g.a.behaviour = "ok"
        write(g.pdir / "routes.toml", policy(["a"]))


def test_a_plugin_config_the_plugins_schema_refuses_is_an_error_naming_plugin_field_and_file(hot, tmp_path_factory):
    g = hot
    # route-policy declares its config schema (plugins/route-policy/config.schema.json).
    write(g.pdir / "routes.toml", policy(["a"]) + '\n[plugins.route-policy]\nconfig = { sort = "prize" }\n')
    assert wait_for(lambda: admin_policy(g)["last_error"] is not None)
    err = admin_policy(g)["last_error"]
    assert "routes.toml:" in err and "plugins.route-policy.config.sort" in err, err
    assert '"prize" is not one of "order", "price", "latency"' in err and "plugin 'route-policy'" in err, err
    assert _served(g), "the previous policy keeps serving"
    # `policy check` reads the schema from the plugin file, without a running gateway.
    bad = tmp_path_factory.mktemp("badschema")
    (bad / "p.toml").write_text('[[routes]]\nname = "r"\nrouting = { plugin = "route-policy", config = { srot = "price" } }\n')
    out = subprocess.run([str(BINARY), "--config", str(g.config), "policy", "check", str(bad)], env=g.env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "p.toml:3: routes 'r'.routing.config.srot: unknown field" in out.stderr, out.stderr
    write(g.pdir / "routes.toml", policy(["a"]))
    assert wait_for(lambda: admin_policy(g)["last_error"] is None)
    plugins = {p["name"]: p for p in g.admin("/admin/plugins")}
    assert plugins["route-policy"]["active"]["config_schema"] is True


def test_retention_ceiling_and_output_cap_from_the_policy(hot):
    g = hot
    write(g.pdir / "routes.toml", policy(["a"]) + "max_output_tokens = 50\n"
          + f'\n[[retention]]\norgs = ["{g.org}"]\nmode = "zero"\n')
    assert wait_for(lambda: admin_policy(g)["digest"] and _zero_applies(g))
    # zero: no usage row for the org's requests (the org's own mode is metadata-only)
    r = client(g).chat.completions.with_raw_response.create(model="hot", messages=MESSAGES)
    rid = r.headers["x-request-id"]
    time.sleep(0.5)
    assert not [e for e in g.usage() if e["request_id"] == rid]
    with pytest.raises(openai.BadRequestError) as e:
        client(g).chat.completions.create(model="hot", messages=MESSAGES, max_tokens=100)
    assert e.value.param == "max_tokens" and "'main'" in e.value.message
    write(g.pdir / "routes.toml", policy(["a"]))
    assert wait_for(lambda: not _zero_applies(g))
    r = client(g).chat.completions.with_raw_response.create(model="hot", messages=MESSAGES, max_tokens=100)
    rid = r.headers["x-request-id"]
    assert wait_for(lambda: any(e["request_id"] == rid for e in g.usage())), "recorded again"


def test_a_route_names_its_billing_plugin_and_config(hot):
    g = hot
    # billing-credits holds `default_output_tokens` for a request without max_tokens: at
    # 1 USD per million tokens, 10^10 tokens is more than the org's 10 USD.
    write(g.pdir / "routes.toml", policy(["a"])
          + 'billing = { plugin = "billing-credits", config = { default_output_tokens = 10000000000 } }\n')
    assert wait_for(lambda: admin_policy(g)["routes"][0]["billing_plugin"] == "billing-credits")
    with pytest.raises(openai.APIStatusError) as e:
        client(g).chat.completions.create(model="hot", messages=MESSAGES)
    assert e.value.status_code == 402
    client(g).chat.completions.create(model="hot", messages=MESSAGES, max_tokens=10)  # a small hold fits
    write(g.pdir / "routes.toml", policy(["a"]))
    assert wait_for(lambda: admin_policy(g)["routes"][0]["billing_plugin"] is None)
    client(g).chat.completions.create(model="hot", messages=MESSAGES)


def _zero_applies(g):
    """Whether a request of the org is left unrecorded now (the policy's ceiling is live)."""
    r = client(g).chat.completions.with_raw_response.create(model="hot", messages=MESSAGES)
    rid = r.headers["x-request-id"]
    time.sleep(0.3)
    return not any(e["request_id"] == rid for e in g.usage())


def _served(g):
    try:
        client(g).chat.completions.create(model="hot", messages=MESSAGES)
        return True
    except Exception:  # noqa: BLE001
        return False


def test_sighup_reloads_and_the_gateway_lives(tmp_path_factory, test_ca, plugin_cache):
    require_db("sqlite")
    g = start(tmp_path_factory.mktemp("hup"), test_ca, plugin_cache, watch=False)
    try:
        write(g.pdir / "routes.toml", policy(["b"]))
        time.sleep(0.5)
        before = len(g.b.requests)
        client(g).chat.completions.create(model="hot", messages=MESSAGES)
        assert len(g.b.requests) == before, "not watched: no reload without SIGHUP"
        g.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: admin_policy(g)["reloads"] == 1)
        assert g.proc.poll() is None, "SIGHUP did not end the gateway"
        client(g).chat.completions.create(model="hot", messages=MESSAGES)
        assert len(g.b.requests) == before + 1
    finally:
        g.stop()
        for m in [g.a, g.b, *g.mocks.values()]:
            m.stop()


def test_an_invalid_policy_at_start_and_a_port_in_use_are_clear_errors(hot, tmp_path_factory):
    g = hot
    bad = tmp_path_factory.mktemp("badpolicy")
    (bad / "p.toml").write_text('[[routes]]\nname = "r"\nstrategy = "prize"\n')
    config = g.config.read_text().replace(f'dir = "{g.pdir}"', f'dir = "{bad}"')
    cfg = bad / "tollgate.toml"
    cfg.write_text(config)
    out = subprocess.run([str(BINARY), "--config", str(cfg), "serve"], env=g.env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    assert "p.toml:3: routes 'r'.strategy: 'prize' is not one of" in out.stderr, out.stderr[-2000:]
    # the same check without starting anything
    out = subprocess.run([str(BINARY), "--config", str(cfg), "policy", "check", str(bad)], env=g.env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "p.toml:3" in out.stderr
    out = subprocess.run([str(BINARY), "--config", str(g.config), "policy", "check", str(g.pdir)], env=g.env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "policy OK" in out.stdout, out.stderr
    # the running gateway holds both ports: a second one exits at once, saying so
    t = time.monotonic()
    out = subprocess.run([str(BINARY), "--config", str(g.config), "serve"], env=g.env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0 and time.monotonic() - t < 20
    assert f"cannot listen on 127.0.0.1:{g.port}" in out.stderr, out.stderr[-2000:]


def test_check_config_names_a_missing_plugin(hot, tmp_path_factory):
    g = hot
    d = tmp_path_factory.mktemp("nocheck")
    cfg = d / "tollgate.toml"
    cfg.write_text(g.config.read_text().replace('transform = "provider-openai"\n', 'transform = "provider-nope"\n', 1))
    out = subprocess.run([str(BINARY), "--config", str(cfg), "check-config"], env=g.env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0 and "provider-nope" in out.stderr, out.stderr[-2000:]
    out = subprocess.run([str(BINARY), "--config", str(g.config), "check-config"], env=g.env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and "config OK" in out.stdout, out.stderr
