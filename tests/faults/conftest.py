"""Fault-injection fixtures: the real `tollgate` binary (target/debug/tollgate) with small limits,
in front of a chaos provider (chaos_provider.py, in-process: its records say whether the gateway
gave up on a hung upstream) and a healthy provider in its own process for the good-traffic probe.
Runs on SQLite and, unless TOLLGATE_TEST_POSTGRES is "skip", on a fresh PostgreSQL database
(dropped afterwards; under CI=true a missing PostgreSQL fails).

Helpers on `Gateway`: its RSS (/proc/PID/status VmRSS), SDK calls that never raise, usage records
(`tollgate usage --format json`), the balance (`tollgate credits balance`) and the ledger check run
after every test. The good-traffic probe and `Scenario` are in harness.py; every scenario's
figures go to target/faults-report.json and to the terminal summary."""

import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import httpx2 as httpx
import openai
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "e2e"))
from chaos_provider import ChaosProvider  # noqa: E402
from ci import ci_on  # noqa: E402
from gateway_proc import BINARY, PG_URL, PLUGINS, ROOT, TEST_PLUGINS, free_port, stop_gateway  # noqa: E402,F401
from harness import MESSAGES, REPORT, GoodTraffic  # noqa: E402
REPORT_FILE = ROOT / "target" / "faults-report.json"


SERVER_LIMITS = dict(header_timeout_ms=1000, keepalive_timeout_ms=2000, max_connections=256,
                     max_connections_per_ip=64, max_header_bytes=32768, max_headers=100,
                     client_write_timeout_ms=2000)
LIMITS = dict(max_body_bytes=65536, connect_timeout_ms=1000, first_byte_timeout_ms=1000,
              stall_timeout_ms=500, upstream_timeout_ms=5000, body_timeout_ms=1000,
              max_upstream_body_bytes=8 << 20, max_n=16, max_output_tokens=1000000, max_json_depth=64)

# gateway model -> chaos behaviour of its only route
FAULTS = {
    "f-ok": "ok", "f-429": "status:429", "f-500": "status:500", "f-502": "status:502",
    "f-503": "status:503", "f-reset": "reset", "f-hang": "header-then-hang", "f-drip": "drip:200",
    "f-stall": "stall", "f-cut": "cut", "f-malformed-json": "malformed-json",
    "f-malformed-sse": "malformed-sse", "f-oversized-sse": "oversized-sse:16", "f-huge": "huge-body:80",
    "f-short": "short-body", "f-slow-headers": "slow-headers:3000", "f-firehose": "firehose",
    "f-big-ok": "big-ok:5", "f-trickle": "trickle:200:10",
}
# gateway model -> chaos behaviour of its first route; the second is the healthy provider
FALLBACKS = {"fb-429": "status:429", "fb-503": "status:503", "fb-reset": "reset", "fb-hang": "header-then-hang",
             "fb-slow-headers": "slow-headers:3000", "fb-malformed-json": "malformed-json", "fb-short": "short-body"}
# gateway model -> the body the chaos provider answers; the provider's transform is the hostile plugin
HOSTILE = {"h-loop": "body:loop", "h-trap": "body:trap", "h-memory": "body:memory", "h-huge": "body:huge:100000000"}


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Gateway:
    def __init__(self, tmp, db, chaos, good_url, plugin_cache):
        self.tmp, self.db, self.chaos = tmp, db, chaos
        self.port, self.admin_port = free_port(), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.plugin_dir = tmp / "plugins"
        shutil.copytree(PLUGINS, self.plugin_dir, ignore=shutil.ignore_patterns(".*"))
        shutil.copy(TEST_PLUGINS / "hostile.wasm", self.plugin_dir / "hostile.wasm")
        self.pg_db = None
        if db == "postgres":
            self.pg_db = f"tollgate_faults_{secrets.token_hex(4)}"
            subprocess.run(["psql", PG_URL, "-qc", f"CREATE DATABASE {self.pg_db}"], check=True,
                           capture_output=True, timeout=30)
            self.db_url = PG_URL.rsplit("/", 1)[0] + "/" + self.pg_db
        else:
            self.db_url = f"sqlite://{tmp}/data/tollgate.db"
        text = [f'[providers.good]\nbase_url = "{good_url}"\napi_key_env = "CHAOS_KEY"\n'
                'transform = "provider-openai"\nauth = "bearer"\n',
                '[[models]]\nname = "good"\nroutes = [{ provider = "good", input_per_mtok = 1.0, output_per_mtok = 2.0 }]\n']
        for table, transform in ((FAULTS, "provider-openai"), (FALLBACKS, "provider-openai"), (HOSTILE, "hostile")):
            for model, behaviour in table.items():
                prov = model.replace("-", "_")
                text.append(f'[providers.{prov}]\nbase_url = "{chaos.base_url}"\napi_key_env = "CHAOS_KEY"\n'
                            f'transform = "{transform}"\nauth = "bearer"\n')
                routes = [f'{{ provider = "{prov}", model = "{behaviour}", input_per_mtok = 1.0, output_per_mtok = 2.0 }}']
                if table is FALLBACKS:
                    routes.append('{ provider = "good", input_per_mtok = 1.0, output_per_mtok = 2.0 }')
                text.append(f'[[models]]\nname = "{model}"\nroutes = [{", ".join(routes)}]\n')
                if table is HOSTILE:
                    chaos.aliases[model] = behaviour
        server = "".join(f"{k} = {v}\n" for k, v in SERVER_LIMITS.items())
        limits = "".join(f"{k} = {v}\n" for k, v in LIMITS.items())
        self.config = tmp / "tollgate.toml"
        self.config.write_text(f"""
[server]
listen = "127.0.0.1:{self.port}"
admin_listen = "127.0.0.1:{self.admin_port}"
data_dir = "{tmp}/data"
grace_period_seconds = 0
{server}
[database]
url = "{self.db_url}"
usage_flush_ms = 50
[plugins]
dir = "{self.plugin_dir}"
cache_dir = "{plugin_cache}"
[plugins.settings.provider-openai]
deadline_ms = 1000  # f-big-ok's 5 MB answer takes the translation past the default 50 ms
[limits]
{limits}
""" + "\n".join(text))
        self.env = {**os.environ, "CHAOS_KEY": "sk-chaos", "RUST_LOG": "info", "TOLLGATE_KEY_SECRET": "faults-secret"}
        self.log_path = tmp / "gateway.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([str(BINARY), "--config", str(self.config), "serve"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 90
        while not self.healthy():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("gateway did not start:\n" + self.log_tail())
            time.sleep(0.1)

    # -- process ----------------------------------------------------------------------------
    def healthy(self):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health", timeout=2)
            return True
        except OSError:
            return False

    def alive(self):
        return self.proc.poll() is None and self.healthy()

    def log_tail(self, n=40):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def rss(self):
        return rss_mb(self.proc.pid)

    def rss_settled(self, bound, timeout=4.0):
        """RSS after a short settle: polled until under bound or timeout; the last reading."""
        time.sleep(0.2)
        deadline = time.monotonic() + timeout
        now = self.rss()
        while now >= bound and time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.rss()
        return now

    def stop(self):
        stop_gateway(self.proc, self.log, self.pg_db)

    # -- CLI and accounting ---------------------------------------------------------------------
    def cli(self, *args):
        out = subprocess.run([str(BINARY), "--config", str(self.config), *args], env=self.env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def usage(self):
        text = self.cli("usage", "--format", "json", "--limit", "100000")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def balance_micros(self):
        return round(float(self.cli("credits", "balance", "--org", self.org).lstrip("$")) * 1e6)

    def records(self, ids, timeout=8.0):
        """{request id: [its usage records]} once every id has one (or at timeout)."""
        ids = [i for i in ids if i]
        deadline = time.monotonic() + timeout
        while True:
            rows = self.usage()
            found = {i: [r for r in rows if r["request_id"] == i] for i in ids}
            if all(found.values()) or time.monotonic() > deadline:
                time.sleep(0.1)  # a duplicate would land in a later batch
                rows = self.usage()
                return {i: [r for r in rows if r["request_id"] == i] for i in ids}
            time.sleep(0.1)

    def record(self, request_id, timeout=8.0):
        assert request_id, "the response carried no x-request-id"
        rows = self.records([request_id], timeout)[request_id]
        assert len(rows) == 1, f"{len(rows)} usage records for {request_id}: {rows}"
        return rows[0]

    def by_model(self, model):
        return [r for r in self.usage() if r["model"] == model]

    def check_ledger(self, timeout=4.0):
        """Balance = credits granted − the usage records' costs; no request recorded twice."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.usage()
            ids = [r["request_id"] for r in rows]
            dupes = {i for i in ids if ids.count(i) > 1}
            spent = sum(r["cost_micros"] for r in rows if r["org_id"] == self.org)
            balance = self.balance_micros()
            if (not dupes and balance == self.granted - spent) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert not dupes, f"request ids recorded more than once: {sorted(dupes)[:5]}"
        assert balance == self.granted - spent, f"balance {balance} != granted {self.granted} - spent {spent}"
        return balance

    # -- requests ------------------------------------------------------------------------------
    def client(self, timeout=15.0):
        http = httpx.Client(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))
        return openai.OpenAI(base_url=self.base_url, api_key=self.key, max_retries=0, timeout=timeout,
                             http_client=http)

    def call(self, model, stream=False, timeout=15.0, messages=MESSAGES, **kw):
        """One chat completion through the SDK: status, error code, request id, text received,
        the exception (if any) and the seconds it took. Never raises."""
        out = SimpleNamespace(status=None, code=None, request_id=None, text="", error=None, elapsed=None)
        t0 = time.monotonic()
        c = self.client(timeout)
        try:
            raw = c.chat.completions.with_raw_response.create(model=model, messages=messages, stream=stream, **kw)
            out.status, out.request_id = raw.status_code, raw.headers.get("x-request-id")
            if stream:
                for chunk in raw.parse():
                    if chunk.choices:
                        out.text += chunk.choices[0].delta.content or ""
            else:
                out.text = raw.parse().choices[0].message.content
        except openai.APIStatusError as e:
            out.error, out.status, out.code = e, e.status_code, getattr(e, "code", None)
            out.request_id = e.response.headers.get("x-request-id")
        except Exception as e:  # noqa: BLE001 - stream error events, timeouts, garbage passed through
            out.error, out.code = e, getattr(e, "code", None)
        finally:
            c.close()
        out.elapsed = time.monotonic() - t0
        return out


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def good_url():
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "chaos_provider.py"), "ok"],
                            stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    url = proc.stdout.readline().strip() if ready else ""
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError("the healthy provider did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="session")
def plugin_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("plugin-cache")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gw(request, tmp_path_factory, good_url, plugin_cache):
    db = request.param
    if db == "postgres" and PG_URL == "skip":
        if ci_on():
            pytest.fail("PostgreSQL is required under CI (TOLLGATE_TEST_POSTGRES=skip)")
        pytest.skip("PostgreSQL fault suite SKIPPED: TOLLGATE_TEST_POSTGRES=skip")
    assert BINARY.exists(), f"{BINARY} missing: build with cargo build -p tollgate"
    assert (PLUGINS / "provider-openai.wasm").exists(), "run scripts/build-plugins first"
    assert (TEST_PLUGINS / "hostile.wasm").exists(), "run scripts/build-plugins first (test plugins)"
    chaos = ChaosProvider("ok")
    try:
        g = Gateway(tmp_path_factory.mktemp(f"faults-{db}"), db, chaos, good_url, plugin_cache)
    except BaseException:
        chaos.stop()
        raise
    try:
        g.org = g.cli("orgs", "create", "faults")
        g.key = g.cli("keys", "create", "--org", g.org)
        g.cli("credits", "add", "--org", g.org, "--usd", "10")
        g.granted = 10_000_000
        warm = GoodTraffic(g, pause=0)
        warm.start()
        warm.stop(30)
        assert not warm.errors, warm.errors[:3]
        time.sleep(0.5)
        g.rss_base = g.rss()
        yield g
    finally:
        g.stop()
        chaos.stop()


@pytest.fixture(autouse=True)
def ledger(request):
    """After every test: the ledger matches the usage records (on the test's gateway)."""
    yield
    if "gw" in request.fixturenames:
        request.getfixturevalue("gw").check_ledger()


def pytest_terminal_summary(terminalreporter):
    if not REPORT:
        return
    tr = terminalreporter
    tr.section("fault-injection figures (also in target/faults-report.json)")
    tr.write_line(f"{'scenario':52} {'good':>5} {'err':>4} {'p50 ms':>7} {'rss base':>8} {'peak':>7} {'after':>7}")
    for f in REPORT:
        tr.write_line(f"{f['scenario'][:52]:52} {f['good_requests']:>5} {f['good_errors']:>4} "
                      f"{f['good_p50_ms'] if f['good_p50_ms'] is not None else '-':>7} {f['rss_baseline_mb']:>8} "
                      f"{f['rss_peak_mb']:>7} {f['rss_after_mb'] if f['rss_after_mb'] is not None else '-':>7}")


def pytest_sessionfinish(session):
    if REPORT:
        REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
        REPORT_FILE.write_text(json.dumps({"binary": str(BINARY), "scenarios": REPORT}, indent=1))
