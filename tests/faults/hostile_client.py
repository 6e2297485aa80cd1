"""Raw-socket attacks on the gateway's HTTP/1.1 listener, for the fault-injection tests: slowloris,
connection floods, oversize and too many headers, pipelining, request smuggling shapes, a client
that never reads, a body slower than the body timeout, an idle connection. Every socket operation
is bounded by a deadline; nothing here blocks without one.

Connections can be opened from any 127.0.0.0/8 source address (Linux routes all of loopback), so
a flood can come from other "clients" than the good traffic (127.0.0.1)."""

import json
import select
import selectors
import socket
import threading
import time
from collections import Counter


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:200]!r}>"


def parse_response(buf, eof=False):
    """(Response, rest of buf) when buf starts with a complete response, else None."""
    if b"\r\n\r\n" not in buf:
        return None
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, pos = b"", 0
        while True:
            end = rest.find(b"\r\n", pos)
            if end < 0:
                return None
            size = int(rest[pos:end].split(b";")[0] or b"0", 16)
            if len(rest) < end + 2 + size + 2:
                return None
            body += rest[end + 2:end + 2 + size]
            pos = end + 2 + size + 2
            if size == 0:
                return Response(status, headers, body), rest[pos:]
    if "content-length" in headers:
        n = int(headers["content-length"])
        return (Response(status, headers, rest[:n]), rest[n:]) if len(rest) >= n else None
    if status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b""), rest
    return (Response(status, headers, rest), b"") if eof else None


def chat_bytes(key, body, extra_headers=(), path="/v1/chat/completions", length=True):
    """A complete POST with a JSON body (dict or bytes) and Content-Length."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", "Host: gateway", "Content-Type: application/json"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    head += [f"{k}: {v}" for k, v in extra_headers]
    if length:
        head.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


class Conn:
    """A client socket with a receive buffer; EOF and RST both count as closed."""

    def __init__(self, port, src="127.0.0.1", timeout=5.0, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((src, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.eof = False
        self.reset = False

    def _recv(self, timeout):
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            return True
        except OSError:
            data, self.reset = b"", True
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def send(self, data):
        self.sock.settimeout(5)
        self.sock.sendall(data)

    def send_interleaved(self, data, timeout=10.0):
        """Send while reading whatever the server answers early (it may answer and close before
        it has read everything). True when all of data was sent."""
        deadline = time.monotonic() + timeout
        self.sock.setblocking(False)
        pos = 0
        try:
            while pos < len(data) and time.monotonic() < deadline and not self.eof:
                r, w, _ = select.select([self.sock], [self.sock], [], deadline - time.monotonic())
                if r:
                    self._recv(0.001)
                    self.sock.setblocking(False)
                if w:
                    try:
                        pos += self.sock.send(data[pos:pos + 65536])
                    except BlockingIOError:
                        pass
                    except OSError:
                        break
        finally:
            self.sock.setblocking(True)
        return pos >= len(data)

    def read_response(self, timeout=10.0):
        """The next complete response, or None (closed or timed out first: see eof)."""
        deadline = time.monotonic() + timeout
        while True:
            got = parse_response(self.buf, self.eof)
            if got:
                resp, self.buf = got
                return resp
            if self.eof or time.monotonic() >= deadline:
                return None
            self._recv(min(0.2, deadline - time.monotonic()))

    def closed_within(self, timeout):
        """True when the server closes the connection within timeout (bytes it sends meanwhile
        stay in buf)."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self._recv(min(0.2, deadline - time.monotonic()))
        return self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def request_id(resp):
    return resp.headers.get("x-request-id") if resp else None


# -- attacks ------------------------------------------------------------------------------
SLOW_HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
             b"X-Slowloris: " + b"a" * 200)


def slowloris(port, n=10, interval=1.0, limit=6.0, src="127.0.0.1"):
    """n connections each dripping one header byte per interval. Per connection: the response
    (or None), seconds to the response, seconds to the close (None if still open at limit)."""
    conns = [Conn(port, src) for _ in range(n)]
    out = [{"response": None, "t_response": None, "t_closed": None} for _ in conns]
    t0, pos = time.monotonic(), 0
    while time.monotonic() - t0 < limit and any(o["t_closed"] is None for o in out):
        for c, o in zip(conns, out):
            if o["t_closed"] is None and pos < len(SLOW_HEAD):
                try:
                    c.sock.send(SLOW_HEAD[pos:pos + 1])
                except OSError:
                    pass
        pos += 1
        end = time.monotonic() + interval
        while time.monotonic() < end:
            live = [c.sock for c, o in zip(conns, out) if o["t_closed"] is None]
            if not live:
                break
            ready, _, _ = select.select(live, [], [], max(0.0, end - time.monotonic()))
            for c, o in zip(conns, out):
                if c.sock in ready:
                    c._recv(0.01)
                    now = time.monotonic() - t0
                    if o["response"] is None:
                        got = parse_response(c.buf, c.eof)
                        if got:
                            o["response"], o["t_response"] = got[0], now
                    if c.eof:
                        o["t_closed"] = now
    for c in conns:
        c.close()
    return out


class Flood(threading.Thread):
    """Keeps `per_source` connections open from each source address, each having sent only a
    request line and a Host header; reopens those the gateway closes (at most `rate` a second).
    Counts what the gateway did to them."""

    def __init__(self, port, sources, per_source, rate=200):
        super().__init__(daemon=True)
        self.port, self.sources, self.per_source, self.rate = port, sources, per_source, rate
        self.stopping = threading.Event()
        self.stats = Counter()
        self.statuses = Counter()
        self.max_open = 0

    def _open(self, sel, src):
        s = socket.socket()
        try:
            s.bind((src, 0))
            s.settimeout(1)
            s.connect(("127.0.0.1", self.port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n")
            s.setblocking(False)
        except OSError:
            s.close()
            self.stats["connect_failed"] += 1
            return
        self.stats["opened"] += 1
        sel.register(s, selectors.EVENT_READ, [src, b""])

    def run(self):
        sel = selectors.DefaultSelector()
        budget, last = 0.0, time.monotonic()
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                budget = min(budget + (now - last) * self.rate, self.rate)
                last = now
                counts = Counter(key.data[0] for key in sel.get_map().values())
                for src in self.sources:
                    while counts[src] < self.per_source and budget >= 1 and not self.stopping.is_set():
                        self._open(sel, src)
                        counts[src] += 1
                        budget -= 1
                self.max_open = max(self.max_open, len(sel.get_map()))
                for key, _ in sel.select(timeout=0.05):
                    s, data = key.fileobj, key.data
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if chunk:
                        data[1] += chunk
                        continue
                    got = parse_response(data[1], eof=True) if data[1] else None
                    self.statuses[got[0].status if got else "closed-silently"] += 1
                    self.stats["closed_by_gateway"] += 1
                    sel.unregister(s)
                    s.close()
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            sel.close()

    def stop(self):
        self.stopping.set()
        self.join(timeout=10)


def header_attack(port, key, body, headers, timeout=10.0):
    """Send a request with the given extra headers while reading; (response, closed, sent_all)."""
    c = Conn(port)
    try:
        sent = c.send_interleaved(chat_bytes(key, body, headers), timeout)
        resp = c.read_response(timeout)
        return resp, c.closed_within(3), sent
    finally:
        c.close()


def pipelined(port, key, bodies, timeout=15.0):
    """All requests in one write; the responses read in order, and the connection (still open)."""
    c = Conn(port)
    c.send(b"".join(chat_bytes(key, b) for b in bodies))
    return [c.read_response(timeout) for _ in bodies], c


def smuggle(port, key, shape, outer, inner):
    """One request framed ambiguously (`shape`: cl-te, dup-cl, xchunked) with `inner`, a complete
    second request, hidden where a confused parser would see it. (first response, any further
    response, closed within 3 s)."""
    outer_b = json.dumps(outer).encode()
    inner_b = chat_bytes(key, inner)
    head = ("POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\n")
    if shape == "cl-te":
        body = b"0\r\n\r\n" + inner_b
        head += f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n"
    elif shape == "dup-cl":
        body = outer_b + inner_b
        head += f"Content-Length: {len(outer_b)}\r\nContent-Length: {len(body)}\r\n"
    elif shape == "xchunked":
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(outer_b), outer_b) + inner_b
        head += "Transfer-Encoding: xchunked\r\n"
    else:
        raise ValueError(shape)
    c = Conn(port)
    try:
        c.send_interleaved(head.encode() + b"\r\n" + body, 5)
        first = c.read_response(5)
        closed = c.closed_within(3)
        extra = parse_response(c.buf, c.eof)
        return first, (extra[0] if extra else (c.buf or None)), closed
    finally:
        c.close()


def never_read(port, key, body, rcvbuf=4096):
    """Send a request on a socket with a tiny receive buffer and never read it. The socket."""
    c = Conn(port, rcvbuf=rcvbuf)
    c.send(chat_bytes(key, body))
    return c


def slow_body(port, key, body, step=10, interval=0.2, limit=6.0):
    """Headers at once, then the body `step` bytes per `interval`. (response, seconds to the
    response, closed within 2 s after it, bytes of body sent)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    full = chat_bytes(key, data)
    head = full[:len(full) - len(data)]
    c = Conn(port)
    try:
        c.send(head)
        t0, pos = time.monotonic(), 0
        while time.monotonic() - t0 < limit and pos < len(data):
            if parse_response(c.buf, c.eof) or c.eof:
                break
            try:
                c.sock.send(data[pos:pos + step])
                pos += step
            except OSError:
                break
            c._recv(interval)
        resp = c.read_response(max(0.1, limit - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        return resp, elapsed, c.closed_within(2), pos
    finally:
        c.close()


def idle(port, limit=8.0, src="127.0.0.1"):
    """Connect and send nothing. (seconds until the server closed or None, bytes it sent)."""
    c = Conn(port, src)
    try:
        t0 = time.monotonic()
        closed = c.closed_within(limit)
        return (time.monotonic() - t0 if closed else None), c.buf
    finally:
        c.close()
