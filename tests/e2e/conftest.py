"""End-to-end fixtures: the real `tollgate` binary on local ports, real wasm plugins from
target/plugins, mock providers, and the real database (SQLite file, or a fresh PostgreSQL
database per run, dropped afterwards)."""

import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ci import ci_on  # noqa: E402
from gateway_proc import BINARY, PG_URL, PLUGINS, ROOT, TEST_PLUGINS, free_port, stop_gateway  # noqa: E402,F401
from mock_provider import ClosedPort, MockProvider  # noqa: E402


def make_test_ca(directory: Path):
    """A throwaway CA and a certificate for localhost signed by it (openssl CLI)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=Tollgate Test CA")
    (directory / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return directory / "ca.pem", (str(directory / "server.pem"), str(directory / "server.key"))


# Models every test gateway serves: name -> routes (providers, in fallback order).
MODELS = {
    "gpt-mock": ["openai_ok"],
    "claude-mock": ["anthropic_ok"],
    "fallback-429": ["fail_429", "openai_ok"],
    "fallback-500": ["fail_500", "openai_ok"],
    "always-429": ["fail_429"],
    "cut-openai": ["openai_cut"],
    "cut-anthropic": ["anthropic_cut"],
    "tls-mock": ["openai_tls"],
    "drip-mock": ["openai_drip"],
    "fallback-timeout": ["openai_slow", "openai_ok"],
    "fallback-connect": ["closed_port", "openai_ok"],
    "tls-untrusted": ["openai_tls_untrusted"],
    "claude-error-event": ["anthropic_error_event"],
    'csv,"quoted" model': ["openai_ok"],
    # The other client APIs (test_messages.py, test_responses.py, test_embeddings.py,
    # test_models.py): an Anthropic provider serving /v1/messages natively (pass-through),
    # OpenAI providers behind translation, embeddings, a provider that reports no usage, one that
    # reports cached prompt tokens, and a model with catalog metadata on two providers.
    "claude-pass": ["anthropic_pass"],
    "gpt-tools": ["openai_tools"],
    "embed-mock": ["openai_embed"],
    "gpt-no-usage": ["openai_no_usage"],
    "gpt-cached": ["openai_cached"],
    "gpt-catalog": ["openai_ok", "openai_tools"],
    # Answers carrying an AWS-access-key-shaped string (guardrail tests, test_guardrails.py).
    "gpt-leak": ["openai_leak"],
    "claude-leak": ["anthropic_leak"],
    # A route with no price (refused under the default unpriced_models = "refuse").
    "gpt-unpriced": ["openai_ok"],
}
# Every route's price unless MODEL_SETTINGS says otherwise (USD per million tokens).
DEFAULT_ROUTE_PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
# Settings of a model beyond its routes: keys written as they are into its [[models]] table,
# and "route": keys added to (or replacing) those of each of its routes.
CATALOG_MODEL = {
    "description": "A mock chat model with catalog metadata.",
    "context_length": 128000,
    "input_modalities": ["text", "image"],
    "output_modalities": ["text"],
    "supported_parameters": ["max_tokens", "temperature", "tools", "tool_choice", "stop"],
}
MODEL_SETTINGS = {
    "claude-pass": {"route": {"cache_write_per_mtok": 1.25, "cache_read_per_mtok": 0.1}},
    "gpt-unpriced": {"route": {"input_per_mtok": 0, "output_per_mtok": 0}},
    "embed-mock": {"kind": "embedding", "context_length": 8192, "route": {"input_per_mtok": 3.0}},
    "gpt-catalog": {**CATALOG_MODEL, "route": {"input_per_mtok": 2.5, "output_per_mtok": 10.0,
                                               "cache_read_per_mtok": 1.25}},
}
# The slow mock answers after SLOW_MS; a module that tests timeouts sets a shorter per-attempt
# timeout with GATEWAY_OPTIONS = {"upstream_timeout_ms": ...}.
SLOW_MS = 4000


def standard_mocks(server_cert):
    """The mock providers behind MODELS (each started on its own loopback port)."""
    return {
        "openai_ok": MockProvider("openai"),
        "anthropic_ok": MockProvider("anthropic"),
        "fail_429": MockProvider("openai", "status:429"),
        "fail_500": MockProvider("openai", "status:500"),
        "openai_cut": MockProvider("openai", "cut:2"),
        "anthropic_cut": MockProvider("anthropic", "cut:2"),
        "openai_tls": MockProvider("openai", tls_cert=server_cert),
        "openai_drip": MockProvider("openai", "drip:100"),
        "openai_slow": MockProvider("openai", f"slow:{SLOW_MS}"),
        "closed_port": ClosedPort(),
        "openai_tls_untrusted": MockProvider("openai", tls_cert=server_cert, trusted=False),
        "anthropic_error_event": MockProvider("anthropic", "error-event:2"),
        "anthropic_pass": MockProvider("anthropic"),
        "openai_tools": MockProvider("openai"),
        "openai_embed": MockProvider("openai", formats=["openai-chat", "openai-embeddings"]),
        "openai_no_usage": MockProvider("openai", "no-usage"),
        "openai_cached": MockProvider("openai", "cached:400"),
    }


def toml_value(v):
    """A TOML literal for a str, number, bool or list of them (JSON's spelling is TOML's)."""
    assert isinstance(v, (str, int, float, bool, list)), v
    return json.dumps(v)


def route_settings(model):
    """The price keys (and any other route keys) of every route of `model`."""
    return {**DEFAULT_ROUTE_PRICE, **MODEL_SETTINGS.get(model, {}).get("route", {})}


class Gateway:
    """A `tollgate serve` process with its own config, plugin directory and database.
    `env` adds environment variables; `usage_flush_ms`, `upstream_timeout_ms` and
    `grace_period_seconds` set those settings; `extra_toml` adds whole sections; `share_db_with`
    (another Gateway) makes this one a second replica on its database; `server_settings` adds keys to `[server]` (e.g.
    `{"responses_ttl_seconds": 2}`); `cache_dir` shares compiled plugins between gateways of one
    test session. A module sets any of these for its `gw` with GATEWAY_OPTIONS.

    Providers: one per mock, named as in `mocks`; an Anthropic mock declares
    `formats = ["anthropic-messages"]` (it serves /v1/messages natively), a mock with its own
    `formats` declares those, other OpenAI mocks declare none (the default). Models: MODELS whose
    providers are all present, with MODEL_SETTINGS."""

    def __init__(self, tmp: Path, db: str, mocks: dict, ca_file: Path, env=None, usage_flush_ms=50,
                 upstream_timeout_ms=10000, cache_dir=None, grace_period_seconds=0, server_settings=None,
                 share_db_with=None, extra_toml="", extra_plugins=()):
        self.tmp = tmp
        self.db = db
        self.port = free_port()
        self.admin_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.mocks = mocks
        self.plugin_dir = tmp / "plugins"
        shutil.copytree(PLUGINS, self.plugin_dir, ignore=shutil.ignore_patterns(".*"))
        for path in extra_plugins:  # e.g. test plugins (target/test-plugins/*.wasm)
            shutil.copy(path, self.plugin_dir / Path(path).name)
        self.pg_db = None
        if share_db_with is not None:
            # A second replica: the same database (dropped by the first's stop).
            self.db_url = share_db_with.db_url
        elif db == "postgres":
            self.pg_db = f"tollgate_e2e_{secrets.token_hex(4)}"
            subprocess.run(["psql", PG_URL, "-qc", f"CREATE DATABASE {self.pg_db}"], check=True, capture_output=True)
            self.db_url = PG_URL.rsplit("/", 1)[0] + "/" + self.pg_db
        else:
            self.db_url = f"sqlite://{tmp}/data/tollgate.db"
        providers = []
        for name, m in mocks.items():
            flavour = "anthropic" if m.flavour == "anthropic" else "openai"
            formats = getattr(m, "formats", None)
            if formats is None and flavour == "anthropic":
                formats = ["anthropic-messages"]
            providers.append(f"""
[providers.{name}]
base_url = "{m.base_url}"
api_key_env = "MOCK_{flavour.upper()}_KEY"
transform = "provider-{flavour}"
auth = "{'x-api-key' if flavour == 'anthropic' else 'bearer'}"
{f'ca_file = "{ca_file}"' if m.scheme == "https" and m.trusted else ""}
{f'formats = {toml_value(formats)}' if formats is not None else ""}
""")
        model_text = ""
        for name, routes in MODELS.items():
            if not all(p in mocks for p in routes):
                continue
            upstream = json.dumps(f"{name}-upstream")
            route_keys = "".join(f", {k} = {toml_value(v)}" for k, v in route_settings(name).items())
            r = ", ".join(f'{{ provider = "{p}", model = {upstream}{route_keys} }}' for p in routes)
            extra = "".join(f"{k} = {toml_value(v)}\n" for k, v in MODEL_SETTINGS.get(name, {}).items() if k != "route")
            model_text += f'\n[[models]]\nname = {json.dumps(name)}\n{extra}routes = [{r}]\n'
        server_text = "".join(f"{k} = {toml_value(v)}\n" for k, v in (server_settings or {}).items())
        self.config = tmp / "tollgate.toml"
        self.config.write_text(f"""
[server]
listen = "127.0.0.1:{self.port}"
admin_listen = "127.0.0.1:{self.admin_port}"
data_dir = "{tmp}/data"
grace_period_seconds = {grace_period_seconds}
{server_text}[database]
url = "{self.db_url}"
usage_flush_ms = {usage_flush_ms}
[plugins]
dir = "{self.plugin_dir}"
{f'cache_dir = "{cache_dir}"' if cache_dir else ""}
[limits]
max_body_bytes = 65536
upstream_timeout_ms = {upstream_timeout_ms}
{extra_toml}
{''.join(providers)}
{model_text}
""")
        self.env = {**os.environ, "MOCK_OPENAI_KEY": "sk-mock-openai", "MOCK_ANTHROPIC_KEY": "sk-mock-anthropic",
                    "RUST_LOG": "info", "TOLLGATE_KEY_SECRET": "e2e-secret", "TOLLGATE_ADMIN_TOKEN": "",
                    **(env or {})}
        self.log = open(tmp / "gateway.log", "a")
        self.start()

    def start(self):
        tmp = self.tmp
        self.proc = subprocess.Popen([str(BINARY), "--config", str(self.config), "serve"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited:\n" + (tmp / "gateway.log").read_text())
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("gateway did not start:\n" + (tmp / "gateway.log").read_text())

    def cli(self, *args):
        out = subprocess.run([str(BINARY), "--config", str(self.config), *args], env=self.env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def usage(self):
        text = self.cli("usage", "--format", "json", "--limit", "100000")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def balance_micros(self, org):
        """The org's settled balance: once no credit hold of a request in flight (or one whose
        usage record is still queued) is outstanding, bounded at 5 s."""
        deadline = time.time() + 5
        while time.time() < deadline and self.sql(
                f"SELECT COUNT(*) FROM credit_holds WHERE org_id = '{org}'") != [["0"]]:
            time.sleep(0.05)
        return round(float(self.cli("credits", "balance", "--org", org).lstrip("$")) * 1e6)

    def admin(self, path, token=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        return json.loads(urllib.request.urlopen(req, timeout=5).read())

    def log_text(self):
        self.log.flush()
        return (self.tmp / "gateway.log").read_text()

    def sql(self, statement):
        """Runs one SQL statement on the gateway's database, behind its back; returns the rows
        (each a list of column values as text)."""
        if self.pg_db:
            out = subprocess.run(["psql", self.db_url, "-qtAF", "\t", "-c", statement], check=True,
                                 capture_output=True, text=True)
            return [line.split("\t") for line in out.stdout.splitlines() if line]
        conn = sqlite3.connect(self.db_url.removeprefix("sqlite://"), timeout=10)
        try:
            with conn:
                rows = conn.execute(statement).fetchall()
        finally:
            conn.close()
        return [["" if v is None else str(v) for v in row] for row in rows]

    def sigterm(self, timeout=15):
        """SIGTERM, then the exit status (killed after `timeout` s: a hung shutdown fails)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"gateway did not exit within {timeout} s of SIGTERM")

    def stop(self):
        stop_gateway(self.proc, self.log, self.pg_db)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def plugin_cache(tmp_path_factory):
    """Compiled plugins shared by every gateway of the session (compiling is slow in debug)."""
    return tmp_path_factory.mktemp("plugin-cache")


def require_db(db):
    if db == "postgres" and PG_URL == "skip":
        if ci_on():
            pytest.fail("PostgreSQL is required under CI")
        pytest.skip("PostgreSQL suite SKIPPED: no server (set TOLLGATE_TEST_POSTGRES)")
    assert BINARY.exists(), f"{BINARY} missing: build with cargo build -p tollgate"
    assert (PLUGINS / "auth-apikey.wasm").exists(), "run scripts/build-plugins first"


def with_orgs(g):
    """The organisations every test gateway has: `org` (key `key`, 10 USD of credits) and
    `broke_org` (key `broke_key`, no credits)."""
    g.org = g.cli("orgs", "create", "acme")
    g.key = g.cli("keys", "create", "--org", g.org)
    g.cli("credits", "add", "--org", g.org, "--usd", "10")
    g.broke_org = g.cli("orgs", "create", "broke")
    g.broke_key = g.cli("keys", "create", "--org", g.broke_org)
    return g


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gw(request, tmp_path_factory, test_ca, plugin_cache):
    db = request.param
    require_db(db)
    ca_file, server_cert = test_ca
    mocks = standard_mocks(server_cert)
    options = getattr(request.module, "GATEWAY_OPTIONS", {})
    g = with_orgs(Gateway(tmp_path_factory.mktemp(f"gw-{db}"), db, mocks, ca_file, cache_dir=plugin_cache, **options))
    yield g
    g.stop()
    for m in mocks.values():
        m.stop()
