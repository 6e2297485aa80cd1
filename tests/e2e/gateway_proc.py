"""What the end-to-end and fault suites share about running the real gateway: where the binary,
plugins and PostgreSQL are, a free loopback port, and stopping a gateway (dropping its
PostgreSQL database)."""

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TOLLGATE_BIN", ROOT / "target" / "debug" / "tollgate"))
PLUGINS = ROOT / "target" / "plugins"
TEST_PLUGINS = ROOT / "target" / "test-plugins"
PG_URL = os.environ.get("TOLLGATE_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_gateway(proc, log, pg_db):
    """Terminates the gateway (killed after 15 s), closes its log, drops its database."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    if pg_db:
        subprocess.run(["psql", PG_URL, "-qc", f"DROP DATABASE IF EXISTS {pg_db} WITH (FORCE)"],
                       capture_output=True, timeout=30)
