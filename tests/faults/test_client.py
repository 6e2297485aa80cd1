"""A hostile client: slowloris, idle sockets, connection floods, the per-IP cap, oversize and too
many headers, pipelining, request smuggling, a client that never reads, a body slower than the
body timeout, and request bodies built to hurt the parser. For each: the gateway stays up, good
traffic (from 127.0.0.1; the attacks mostly come from other loopback addresses) keeps flowing with
no errors and a p50 under 1 s, RSS comes back, and the ledger matches the usage records."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FAULTS
from harness import GOOD_COST, MESSAGES, Scenario
from hostile_client import (Conn, Flood, chat_bytes, header_attack, idle, never_read, pipelined,
                            request_id, slow_body, slowloris, smuggle)

SLACK = 2.0  # header_timeout 1 s, keepalive 2 s, body_timeout 1 s, client_write_timeout 2 s
OK_BODY = {"model": "f-ok", "messages": [{"role": "user", "content": "echo: attack"}]}


def error_of(resp):
    """The OpenAI-shaped error object of a response (asserts the shape)."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp
    err = resp.json()["error"]
    assert isinstance(err.get("message"), str) and err.get("type"), err
    return err


def reached_provider(gw, marker):
    return [r for r in list(gw.chaos.requests) if marker in r.text()]


def test_slowloris(gw):
    with Scenario(gw, "slowloris 20 x 1 byte/s") as s:
        results = slowloris(gw.port, n=20, interval=1.0, limit=6.0, src="127.0.0.2")
        s.figures.update(responses=sorted({r["response"].status if r["response"] else None for r in results}, key=str),
                         worst_close_s=max((r["t_closed"] or 99) for r in results))
    for r in results:
        resp = r["response"]
        assert resp is not None and resp.status == 408, f"slowloris answer: {resp!r}"
        error_of(resp)
        assert resp.headers.get("connection", "").lower() == "close"
        assert r["t_response"] < 1.0 + SLACK, f"408 after {r['t_response']:.1f}s"
        assert r["t_closed"] is not None and r["t_closed"] < 1.0 + SLACK + 1, "connection left open"


def test_idle_connections_are_closed(gw):
    """A socket that sends nothing is closed (no answer) at the keep-alive timeout; so is a kept-alive
    connection after its response."""
    with Scenario(gw, "20 silent sockets + idle keep-alive") as s:
        with ThreadPoolExecutor(20) as pool:
            silent_jobs = [pool.submit(idle, gw.port, 8, "127.0.0.3") for _ in range(20)]
            c = Conn(gw.port)
            c.send(chat_bytes(gw.key, OK_BODY))
            first = c.read_response(10)
            t0 = time.monotonic()
            closed = c.closed_within(8)
            kept_alive_s = time.monotonic() - t0
            c.close()
            silent = [j.result() for j in silent_jobs]
        s.figures.update(silent_closed_s=max(t or 99 for t, _ in silent), keepalive_closed_s=round(kept_alive_s, 2))
    for t, sent in silent:
        assert t is not None and t < 2.0 + SLACK, f"silent socket closed after {t}s"
        assert sent == b"", f"the gateway answered a silent socket: {sent[:200]!r}"
    assert first is not None and first.status == 200
    assert closed and kept_alive_s < 2.0 + SLACK, f"idle keep-alive connection open {kept_alive_s:.1f}s"
    assert len(gw.records([request_id(first)])[request_id(first)]) == 1


def test_connection_flood(gw):
    """4 sources x 100 sockets with only a request line and Host: over max_connections (256) and
    max_connections_per_ip (64); the gateway evicts them and good traffic still gets in."""
    flood = Flood(gw.port, [f"127.0.1.{i}" for i in range(1, 5)], per_source=100, rate=300)
    flood.start()
    try:
        deadline = time.monotonic() + 5
        while flood.max_open < 300 and time.monotonic() < deadline:
            time.sleep(0.1)
        with Scenario(gw, "connection flood 4 x 100", min_good=30) as s:
            time.sleep(4)
            s.figures.update(flood=dict(flood.stats), flood_statuses={str(k): v for k, v in flood.statuses.items()},
                             flood_max_open=flood.max_open)
    finally:
        flood.stop()
    assert flood.stats["opened"] >= 400, flood.stats
    assert flood.stats["closed_by_gateway"] > 0, "the gateway never closed a flood socket"


def test_per_ip_cap_when_nothing_can_be_evicted(gw):
    """64 in-flight streams from one address fill its cap: a 65th connection gets 503
    too_many_connections and a close; the 64 streams finish and are charged in full."""
    src = "127.0.2.1"
    body = {"model": "f-trickle", "stream": True, "messages": MESSAGES}
    conns = []
    with Scenario(gw, "per-IP cap with 64 in-flight streams") as s:
        try:
            for _ in range(64):
                c = Conn(gw.port, src)
                c.send(chat_bytes(gw.key, body))
                conns.append(c)
            deadline = time.monotonic() + 5
            for c in conns:
                while b"\r\n\r\n" not in c.buf and not c.eof and time.monotonic() < deadline:
                    c._recv(0.1)
            extra = Conn(gw.port, src)
            extra.send(chat_bytes(gw.key, OK_BODY))
            refused = extra.read_response(5)
            refused_closed = extra.closed_within(3)
            extra.close()
            streams = [c.read_response(15) for c in conns]
        finally:
            for c in conns:
                c.close()
        s.figures.update(extra_status=refused.status if refused else None,
                         streams_ok=sum(1 for r in streams if r and r.status == 200))
    assert refused is not None and refused.status == 503, f"65th connection: {refused!r}"
    assert error_of(refused).get("code") == "too_many_connections"
    assert refused_closed
    assert all(r is not None and r.status == 200 and b"data: [DONE]" in r.body for r in streams), \
        [r.status if r else None for r in streams]
    recs = gw.records([request_id(r) for r in streams])
    assert all(len(v) == 1 and v[0]["cost_micros"] == GOOD_COST for v in recs.values()), list(recs.values())[:2]


HEADER_ATTACKS = {
    "64KB-header": [("X-Big", "a" * 65536)],
    "1.1MB-header": [("X-Big", "a" * (1100 * 1024))],
    "300-headers": [(f"X-H{i}", "v") for i in range(300)],
}


@pytest.mark.parametrize("shape", list(HEADER_ATTACKS))
def test_oversize_headers(gw, shape):
    marker = f"echo: oversize {shape} {time.time()}"
    body = {"model": "f-ok", "messages": [{"role": "user", "content": marker}]}
    with Scenario(gw, f"oversize headers {shape} x 10") as s:
        results = [header_attack(gw.port, gw.key, body, HEADER_ATTACKS[shape]) for _ in range(10)]
        s.figures.update(statuses=[r.status if r else None for r, _, _ in results][:3])
    for resp, closed, _ in results:
        assert resp is not None and resp.status == 431, f"{shape}: {resp!r}"
        assert error_of(resp).get("code") == "request_header_too_large"
        assert closed, "connection left open after 431"
    assert not reached_provider(gw, marker)


def test_pipelined_requests_are_served_in_order(gw):
    bodies = [{"model": "f-ok", "messages": [{"role": "user", "content": f"echo: pipelined {i}"}]} for i in range(2)]
    with Scenario(gw, "pipelining 2 requests in one write"):
        resps, c = pipelined(gw.port, gw.key, bodies)
        c.close()
    assert [r.status if r else None for r in resps] == [200, 200], resps
    assert [r.json()["choices"][0]["message"]["content"] for r in resps] == ["echo: pipelined 0", "echo: pipelined 1"]
    recs = gw.records([request_id(r) for r in resps])
    assert all(len(v) == 1 and v[0]["status"] == 200 for v in recs.values()), recs


@pytest.mark.parametrize("shape", ["cl-te", "dup-cl", "xchunked"])
def test_request_smuggling_is_refused(gw, shape):
    stamp = time.time()
    outer = {"model": "f-ok", "messages": [{"role": "user", "content": f"echo: outer {shape} {stamp}"}]}
    inner = {"model": "f-ok", "messages": [{"role": "user", "content": f"echo: smuggled {shape} {stamp}"}]}
    with Scenario(gw, f"smuggling {shape}") as s:
        first, extra, closed = smuggle(gw.port, gw.key, shape, outer, inner)
        s.figures.update(status=first.status if first else None)
    assert first is not None and first.status == 400, f"{shape}: {first!r}"
    error_of(first)
    assert extra is None, f"a second response came back: {extra!r}"
    assert closed, "connection left open after a smuggling attempt"
    time.sleep(0.3)
    assert not reached_provider(gw, f"smuggled {shape} {stamp}"), "the smuggled request reached a provider"
    assert not reached_provider(gw, f"outer {shape} {stamp}"), "the ambiguous request reached a provider"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
def test_client_that_never_reads(gw, stream):
    """The gateway gives up on the client at client_write_timeout (2 s), drops the upstream, and
    records 499: charged for what was delivered (a JSON response that could not be written: 0)."""
    model = "f-firehose" if stream else "f-big-ok"
    before = {r["request_id"] for r in gw.by_model(model)}
    with Scenario(gw, f"client never reads ({model})") as s:
        c = never_read(gw.port, gw.key, {"model": model, "stream": stream, "messages": MESSAGES})
        time.sleep(0.5)
        ups = [r for r in gw.chaos.by_model(FAULTS[model]) if r.stream == stream]
        up = ups[-1] if ups else None
        # the firehose stops only when the gateway closes it; big-ok is read whole first, so the
        # client stays for longer than the write timeout (the record's latency says when the
        # gateway gave up: closing the socket ourselves would end it too)
        upstream_closed = bool(up and (up.closed if stream else up.done).wait(2.0 + SLACK + 2))
        time.sleep(0.5 if stream else 2.0 + SLACK)
        s.figures.update(upstream_sent_mb=round(up.bytes_sent / 2**20, 1) if up else None,
                         upstream_closed_s=round(up.closed_after(), 2) if up and up.closed_after() else None)
        c.close()
    assert up is not None, "the request never reached the provider"
    assert upstream_closed, "the gateway kept reading the upstream for a client that is gone"
    new, deadline = [], time.monotonic() + 10
    while not new and time.monotonic() < deadline:
        time.sleep(0.2)
        new = [r for r in gw.by_model(model) if r["request_id"] not in before]
    assert len(new) == 1, f"usage records for the unread request: {new}"
    rec = new[0]
    s.figures["gave_up_after_ms"] = rec["latency_ms"]
    assert rec["status"] == 499, rec
    assert rec["latency_ms"] < (2.0 + SLACK) * 1000, f"gave up on the client only after {rec['latency_ms']} ms"
    if stream:
        assert rec["cost_micros"] == rec["input_tokens"] + 2 * rec["output_tokens"], rec
        assert rec["output_tokens"] <= up.bytes_sent / 4, rec
    else:
        assert rec["cost_micros"] == 0, rec


def test_body_slower_than_the_body_timeout(gw):
    marker = f"echo: slow body {time.time()}"
    body = {"model": "f-ok", "messages": [{"role": "user", "content": marker + " " + "x" * 1500}]}
    with Scenario(gw, "10 bodies at 50 bytes/s") as s:
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda _: slow_body(gw.port, gw.key, body, step=10, interval=0.2, limit=8),
                                    range(10)))
        s.figures.update(statuses=sorted({r.status if r else None for r, *_ in results}, key=str),
                         worst_s=round(max(e for _, e, _, _ in results), 2))
    for resp, elapsed, closed, _ in results:
        assert resp is not None and resp.status == 408, f"slow body answer: {resp!r}"
        error_of(resp)
        assert elapsed < 1.0 + SLACK, f"408 after {elapsed:.1f}s"
        assert closed
    assert not reached_provider(gw, marker)


DEEP = b'{"model": "f-ok", "messages": [{"role": "user", "content": "echo: deep"}], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
# case -> (body, expected status, text the provider must never see)
BODIES = {
    "deep-json": (DEEP, 400, "echo: deep"),
    "n-17": ({"model": "f-ok", "n": 17, "messages": [{"role": "user", "content": "echo: n17"}]}, 400, "echo: n17"),
    "max-tokens-1e9": ({"model": "f-ok", "max_tokens": 10**9, "messages": [{"role": "user", "content": "echo: max"}]},
                       400, "echo: max"),
    "body-70KB": ({"model": "f-ok", "messages": [{"role": "user", "content": "echo: big " + "x" * 70000}]}, 413,
                  "echo: big"),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_hostile_request_bodies(gw, case):
    """Over max_json_depth (64), max_n (16), max_output_tokens (1e6; refusing or clamping both
    pass), max_body_bytes (64 KB): refused without reaching a provider, nothing charged."""
    body, status, marker = BODIES[case]
    with Scenario(gw, f"hostile body {case}") as s:
        c = Conn(gw.port)
        c.send_interleaved(chat_bytes(gw.key, body), 5)
        resp = c.read_response(5)
        c.close()
        s.figures.update(status=resp.status if resp else None)
    seen = reached_provider(gw, marker)
    if case == "max-tokens-1e9" and resp is not None and resp.status == 200:
        assert all((r.body.get("max_tokens") or 0) <= 1000000 for r in seen), "max_tokens forwarded unclamped"
    else:
        assert resp is not None and resp.status == status, f"{case}: {resp!r}"
        error_of(resp)
        assert not seen, "a refused request reached the provider"
    rid = request_id(resp)
    if rid:
        rows = gw.records([rid], timeout=1.0)[rid]
        assert len(rows) <= 1, rows
        assert resp.status == 200 or all(r["cost_micros"] == 0 for r in rows), rows
