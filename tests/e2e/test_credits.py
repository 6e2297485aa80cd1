"""Credits under a burst: 100 concurrent requests from an org whose balance pays for exactly 10
never spend past it. Each request's worst-case cost is reserved in the database before it goes
upstream (and released when its usage is recorded), so at most 10 are answered, the rest get
402 in OpenAI's shape, the balance never goes below zero, and the ledger sums exactly:
charges + balance = the grant. Every request leaves one usage record."""

import json
import threading
import time

from helpers import http

PRICE_IN, PRICE_OUT = 1, 2          # micro-USD per token (1 and 2 USD per million)
COST = 11 * PRICE_IN + 6 * PRICE_OUT  # the mock's usage: 11 prompt, 6 completion tokens


def test_a_burst_cannot_spend_past_the_balance(gw):
    org = gw.cli("orgs", "create", f"burst-{time.time_ns()}")
    key = gw.cli("keys", "create", "--org", org)
    grant = 10 * COST
    gw.cli("credits", "add", "--org", org, "--usd", f"{grant / 1e6:.6f}")
    assert gw.balance_micros(org) == grant
    body = {"model": "gpt-mock", "max_tokens": 6, "messages": [{"role": "user", "content": "hi"}]}
    statuses = []
    lock = threading.Lock()
    start = threading.Barrier(100)

    def one():
        start.wait()
        status, raw, _ = http(gw, "POST", "/v1/chat/completions", body, key=key)
        if status != 200:
            err = json.loads(raw)["error"]
            assert status == 402 and err["code"] in ("insufficient_credits", "payment_required"), raw
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 100
    answered = statuses.count(200)
    assert 1 <= answered <= 10, f"{answered} answered with a balance for 10"
    # Every request is recorded; the charges and what is left add up to the grant exactly.
    deadline = time.time() + 10
    while time.time() < deadline:
        records = [e for e in gw.usage() if e["org_id"] == org]
        if len(records) == 100:
            break
        time.sleep(0.2)
    assert len(records) == 100
    charged = sum(e["cost_micros"] for e in records)
    assert charged == answered * COST
    balance = gw.balance_micros(org)
    assert balance >= 0
    assert charged + balance == grant
    held = gw.sql(f"SELECT COUNT(*) FROM credit_holds WHERE org_id = '{org}'")
    assert held == [["0"]], "every hold is released once its request is recorded"
