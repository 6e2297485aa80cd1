"""Hostile WASI guests behind a running gateway, under load (issue 12): a provider's transform
is test-plugins-wasip2/hostile-wasi (built for wasm32-wasip2, so it imports WASI and gets the
deny-by-default context). Requests whose message names an attempt make it read /etc/passwd,
read its environment, open a socket, flood stdout, sleep in a WASI call, loop, or allocate past
its cap, while other clients keep sending normal requests. Each hostile request fails (or is
denied) on its own, within its bound; every normal request succeeds; the process lives.
SQLite only."""

import threading
import time

import openai
import pytest

from conftest import TEST_PLUGINS, Gateway, require_db, with_orgs
from helpers import client
from mock_provider import MockProvider

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, test_ca, plugin_cache):
    require_db("sqlite")
    ca_file, _ = test_ca
    wasm = TEST_PLUGINS / "hostile-wasi.wasm"
    assert wasm.exists(), f"{wasm} missing: scripts/build-plugins builds it (rustup's wasm32-wasip2)"
    mocks = {"openai_ok": MockProvider("openai")}
    target = MockProvider("openai")
    g = with_orgs(Gateway(tmp_path_factory.mktemp("hostile"), "sqlite", mocks, ca_file, cache_dir=plugin_cache,
                          extra_plugins=[wasm], extra_toml=f"""
[plugins.settings.hostile-wasi]
deadline_ms = 200
memory_limit_mb = 32
[providers.hostile]
base_url = "{target.base_url}"
transform = "hostile-wasi"
[[models]]
name = "hostile-mock"
routes = [{{ provider = "hostile", model = "h", input_per_mtok = 1.0, output_per_mtok = 1.0 }}]
"""))
    g.target = target
    yield g
    g.stop()
    for m in [*mocks.values(), target]:
        m.stop()


def attempt(g, what):
    """(status, code, message, seconds) of a request making the guest try `what`."""
    t = time.monotonic()
    try:
        client(g).chat.completions.create(model="hostile-mock", messages=[
            {"role": "user", "content": f"tollgate-test:wasi:{what}"}])
    except openai.APIStatusError as e:
        return e.status_code, e.body.get("code"), e.body.get("message", ""), time.monotonic() - t
    raise AssertionError(f"{what}: the hostile transform let the request through")


def test_hostile_guests_fail_alone_while_other_requests_succeed(hostile):
    g = hostile
    normal, stop = [], threading.Event()

    def load():
        c = client(g)
        while not stop.is_set():
            try:
                c.chat.completions.create(model="gpt-mock", messages=MESSAGES)
                normal.append(True)
            except Exception as e:  # noqa: BLE001 - any failure counts
                normal.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        outcomes = {}
        for what in ["passwd", "env", "socket", "stdout", "sleep", "loop", "memory"] * 2:
            outcomes[what] = attempt(g, what)
            status, code, message, seconds = outcomes[what]
            assert seconds < 5, f"{what} took {seconds:.1f} s"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    # Denied by the WASI context, answered by the guest itself:
    assert outcomes["passwd"][:2] == (400, "wasi_result") and outcomes["passwd"][2].startswith("denied"), outcomes
    assert outcomes["env"][2] == "env=0 args=0", outcomes
    assert outcomes["socket"][2].startswith("denied"), outcomes
    # Stopped by the host: the call fails, the client gets a 500 naming the plugin.
    for what in ["stdout", "sleep", "loop", "memory"]:
        status, code, message, _ = outcomes[what]
        assert (status, code) == (500, "plugin_error") and "hostile-wasi" in message, (what, outcomes[what])
    assert g.target.requests == [], "no hostile request reached its upstream"
    failures = [r for r in normal if r is not True]
    assert not failures, failures[:3]
    assert len(normal) > 20
    assert g.proc.poll() is None, "the gateway process lives"
    plugins = {p["name"]: p for p in g.admin("/admin/plugins")}
    assert plugins["hostile-wasi"]["failures"] >= 8, plugins["hostile-wasi"]
    assert "flood line" in g.log_text(), "the guest's stdout reached the log (rate-limited)"
