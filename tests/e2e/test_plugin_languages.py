"""Plugins in other languages serving real requests (issue 12): the auth stage is a Python
component (test-plugins-py/auth-apikey-py, built by scripts/build-plugins with componentize-py;
an ~18 MB component importing WASI, loaded with deny-by-default WASI), the twin of the Rust
auth-apikey plugin. Driven with the official openai SDK; SQLite only (the database plays no part
in the language of a plugin)."""

import openai
import pytest

from conftest import TEST_PLUGINS, Gateway, require_db, with_orgs
from helpers import client, settled
from mock_provider import MockProvider

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def pyauth(tmp_path_factory, test_ca, plugin_cache):
    require_db("sqlite")
    ca_file, _ = test_ca
    wasm = TEST_PLUGINS / "auth-apikey-py.wasm"
    assert wasm.exists(), f"{wasm} missing: scripts/build-plugins builds it with componentize-py"
    mocks = {"openai_ok": MockProvider("openai")}
    g = with_orgs(Gateway(tmp_path_factory.mktemp("pyauth"), "sqlite", mocks, ca_file, cache_dir=plugin_cache,
                          extra_plugins=[wasm], extra_toml="""
[stages]
auth = "auth-apikey-py"
[plugins.settings.auth-apikey-py]
deadline_ms = 1000
"""))
    yield g
    g.stop()
    for m in mocks.values():
        m.stop()


def test_a_python_auth_plugin_admits_live_keys(pyauth):
    r = client(pyauth).chat.completions.with_raw_response.create(model="gpt-mock", messages=MESSAGES)
    assert r.http_response.status_code == 200
    rec = settled(pyauth, r.headers["x-request-id"])
    assert rec["org_id"] == pyauth.org and rec["status"] == 200
    plugins = {p["name"]: p for p in pyauth.admin("/admin/plugins")}
    py = plugins["auth-apikey-py"]
    assert py["active"]["stage"] == "auth" and py["active"]["uses_wasi"] is True
    assert py["calls"] >= 1 and py["failures"] == 0


def test_a_python_auth_plugin_refuses_in_the_clients_format(pyauth):
    with pytest.raises(openai.AuthenticationError) as e:
        client(pyauth, key="tg-not-a-key").chat.completions.create(model="gpt-mock", messages=MESSAGES)
    assert e.value.status_code == 401
    assert e.value.body["code"] == "invalid_api_key"
    assert "Incorrect API key" in e.value.body["message"]


def test_many_requests_share_warm_python_instances(pyauth):
    c = client(pyauth)
    c.chat.completions.create(model="gpt-mock", messages=MESSAGES)  # warm
    before = {p["name"]: p for p in pyauth.admin("/admin/plugins")}["auth-apikey-py"]
    for _ in range(20):
        c.chat.completions.create(model="gpt-mock", messages=MESSAGES)
    py = {p["name"]: p for p in pyauth.admin("/admin/plugins")}["auth-apikey-py"]
    # 20 requests, one at a time: served by the warm instance(s), not one instance each
    assert py["instantiations"] <= 3, py
    # and every warm call ended on the proxy worker that made it (none used its 1 ms inline CPU
    # budget; a fresh CPython instance and its first call may)
    assert py["slow_lane_calls"] == before["slow_lane_calls"], (before, py)
