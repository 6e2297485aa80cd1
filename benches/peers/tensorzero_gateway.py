"""Starts TensorZero's HTTP gateway (embedded in the PyPI package) with a config file, prints
its base URL, and serves until killed. No ClickHouse, PostgreSQL or Valkey: inference only."""
import sys
import time

import tensorzero

gateway = tensorzero._start_http_gateway(
    config_file=sys.argv[1], clickhouse_url=None, postgres_url=None, valkey_url=None, async_setup=False
)
print(gateway.base_url, flush=True)
while True:
    time.sleep(3600)
