"""End-to-end fixtures: the real `tollgate` binary on local ports, real wasm plugins from
target/plugins, mock providers, and the real database (SQLite file, or a fresh PostgreSQL
database per run, dropped afterwards)."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from mock_provider import MockProvider  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TOLLGATE_BIN", ROOT / "target" / "debug" / "tollgate"))
PLUGINS = ROOT / "target" / "plugins"
TEST_PLUGINS = ROOT / "target" / "test-plugins"
PG_URL = os.environ.get("TOLLGATE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


class Gateway:
    def __init__(self, tmp: Path, db: str, mocks: dict, ca_file: Path):
        self.tmp = tmp
        self.port = free_port()
        self.admin_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.mocks = mocks
        self.plugin_dir = tmp / "plugins"
        shutil.copytree(PLUGINS, self.plugin_dir, ignore=shutil.ignore_patterns(".*"))
        self.pg_db = None
        if db == "postgres":
            self.pg_db = f"tollgate_e2e_{secrets.token_hex(4)}"
            subprocess.run(["psql", PG_URL, "-qc", f"CREATE DATABASE {self.pg_db}"], check=True, capture_output=True)
            self.db_url = PG_URL.rsplit("/", 1)[0] + "/" + self.pg_db
        else:
            self.db_url = f"sqlite://{tmp}/data/tollgate.db"
        providers = []
        for name, m in mocks.items():
            flavour = "anthropic" if m.flavour == "anthropic" else "openai"
            providers.append(f"""
[providers.{name}]
base_url = "{m.base_url}"
api_key_env = "MOCK_{flavour.upper()}_KEY"
transform = "provider-{flavour}"
auth = "{'x-api-key' if flavour == 'anthropic' else 'bearer'}"
{f'ca_file = "{ca_file}"' if m.scheme == "https" else ""}
""")
        models = {
            "gpt-mock": ["openai_ok"],
            "claude-mock": ["anthropic_ok"],
            "fallback-429": ["fail_429", "openai_ok"],
            "fallback-500": ["fail_500", "openai_ok"],
            "always-429": ["fail_429"],
            "cut-openai": ["openai_cut"],
            "cut-anthropic": ["anthropic_cut"],
            "tls-mock": ["openai_tls"],
            "drip-mock": ["openai_drip"],
        }
        model_text = ""
        for name, routes in models.items():
            r = ", ".join(f'{{ provider = "{p}", model = "{name}-upstream", input_per_mtok = 1.0, output_per_mtok = 2.0 }}' for p in routes)
            model_text += f'\n[[models]]\nname = "{name}"\nroutes = [{r}]\n'
        self.config = tmp / "tollgate.toml"
        self.config.write_text(f"""
[server]
listen = "127.0.0.1:{self.port}"
admin_listen = "127.0.0.1:{self.admin_port}"
data_dir = "{tmp}/data"
grace_period_seconds = 0
[database]
url = "{self.db_url}"
usage_flush_ms = 50
[plugins]
dir = "{self.plugin_dir}"
[limits]
max_body_bytes = 65536
upstream_timeout_ms = 10000
{''.join(providers)}
{model_text}
""")
        self.env = {**os.environ, "MOCK_OPENAI_KEY": "sk-mock-openai", "MOCK_ANTHROPIC_KEY": "sk-mock-anthropic",
                    "RUST_LOG": "info", "TOLLGATE_KEY_SECRET": "e2e-secret"}
        self.log = open(tmp / "gateway.log", "w")
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
        return round(float(self.cli("credits", "balance", "--org", org).lstrip("$")) * 1e6)

    def admin(self, path):
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5).read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if self.pg_db:
            subprocess.run(["psql", PG_URL, "-qc", f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)"], capture_output=True)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def gw(request, tmp_path_factory, test_ca):
    db = request.param
    if db == "postgres" and PG_URL == "skip":
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is required under CI")
        pytest.skip("PostgreSQL suite SKIPPED: no server (set TOLLGATE_TEST_POSTGRES)")
    assert BINARY.exists(), f"{BINARY} missing: build with cargo build -p tollgate"
    assert (PLUGINS / "auth-apikey.wasm").exists(), "run scripts/build-plugins first"
    ca_file, server_cert = test_ca
    mocks = {
        "openai_ok": MockProvider("openai"),
        "anthropic_ok": MockProvider("anthropic"),
        "fail_429": MockProvider("openai", "status:429"),
        "fail_500": MockProvider("openai", "status:500"),
        "openai_cut": MockProvider("openai", "cut:2"),
        "anthropic_cut": MockProvider("anthropic", "cut:2"),
        "openai_tls": MockProvider("openai", tls_cert=server_cert),
        "openai_drip": MockProvider("openai", "drip:100"),
    }
    g = Gateway(tmp_path_factory.mktemp(f"gw-{db}"), db, mocks, ca_file)
    g.db = db
    g.org = g.cli("orgs", "create", "acme")
    g.key = g.cli("keys", "create", "--org", g.org)
    g.cli("credits", "add", "--org", g.org, "--usd", "10")
    g.broke_org = g.cli("orgs", "create", "broke")
    g.broke_key = g.cli("keys", "create", "--org", g.broke_org)
    yield g
    g.stop()
    for m in mocks.values():
        m.stop()
