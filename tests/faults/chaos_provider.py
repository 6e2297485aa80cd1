"""A misbehaving OpenAI-format provider for fault-injection tests of the gateway (loopback, raw
sockets, one thread per connection, HTTP/1.1 keep-alive).

The wire format follows tests/e2e/mock_provider.py: chat completions as JSON, or as SSE
(`data: {...}\\n\\n` chunks, a usage chunk when stream_options.include_usage, `data: [DONE]`).

The behaviour of a request is, in order of precedence: the `x-chaos` request header, an alias
registered for the upstream model name, the upstream model name itself when it names a
behaviour (routes set it with `model = "drip:200"`), else the server's default behaviour.

  ok                    answer normally; a last user message "echo: X" is answered with "echo: X"
  status:<code>         that status with an OpenAI error body (429 adds Retry-After: 1)
  reset                 read the request, then close with RST (SO_LINGER 0)
  header-then-hang      200 status line and headers, then no body; hold the socket
  drip[:ms]             200 JSON body one byte every ms (default 200)
  stall                 stream: 2 content chunks then hold; JSON: headers + half the body, hold
  cut                   stream: 2 content chunks then close the socket
  malformed-json        200 `{"choices": [`
  malformed-sse         200 event stream of garbage and non-JSON data lines
  oversized-sse[:MB]    200 event stream whose first line is MB (default 16) long, no newline
  huge-body[:MB]        200 JSON body of MB (default 80) megabytes
  short-body            200 with a content-length of 10000, 1000 bytes sent, then close
  slow-headers[:ms]     sleep ms (default 3000) before answering normally
  firehose              stream content chunks as fast as the reader takes them (cap 256 MB)
  big-ok[:MB]           200 JSON completion whose content is MB (default 6) megabytes
  trickle[:ms[:n]]      stream n (default 10) content chunks, one every ms (default 200)
  body:<text>           200 application/json with exactly <text> as the body

Every request is recorded (`requests`): behaviour, model, stream flag, body, when it arrived,
bytes sent, and — for behaviours that hold the socket — whether and when the gateway closed it
(`closed` event, `t_closed`), so tests can assert that the gateway gave up on a hung upstream.

Run as a script (`python chaos_provider.py [behaviour]`) it serves in its own process and prints
its base URL: the healthy provider of the good-traffic probe runs that way, away from the GIL.
"""

import json
import socket
import struct
import sys
import threading
import time

WORDS = ["Hello", " from", " the", " mock", " provider", "."]
PROMPT_TOKENS = 11
COMPLETION_TOKENS = len(WORDS)
HOLD_LIMIT = 20.0  # seconds a held socket is kept at most
NAMES = {"ok", "status", "reset", "header-then-hang", "drip", "stall", "stall-mid-stream", "cut",
         "malformed-json", "malformed-sse", "oversized-sse", "huge-body", "short-body",
         "slow-headers", "firehose", "big-ok", "trickle", "body"}


def is_behaviour(name):
    return isinstance(name, str) and name.split(":", 1)[0] in NAMES


class Record:
    """One request the provider received."""

    def __init__(self, behaviour, headers, body):
        self.behaviour = behaviour
        self.headers = headers
        self.body = body if isinstance(body, dict) else {}
        self.model = self.body.get("model")
        self.stream = bool(self.body.get("stream"))
        self.t_received = time.monotonic()
        self.t_closed = None
        self.closed = threading.Event()  # the gateway closed the connection while we held or wrote
        self.done = threading.Event()  # the handler finished with this request
        self.bytes_sent = 0

    def text(self):
        msgs = self.body.get("messages") or []
        last = msgs[-1].get("content") if msgs and isinstance(msgs[-1], dict) else ""
        return last if isinstance(last, str) else ""

    def closed_after(self):
        return None if self.t_closed is None else self.t_closed - self.t_received


class ChaosProvider:
    def __init__(self, behaviour="ok", aliases=None, host="127.0.0.1"):
        self.behaviour = behaviour
        self.aliases = dict(aliases or {})
        self.requests = []
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(1024)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def base_url(self):
        host, port = self.sock.getsockname()
        return f"http://{host}:{port}"

    def by_model(self, model):
        return [r for r in list(self.requests) if r.model == model]

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()

    # -- connections ----------------------------------------------------------------------
    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(30)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while not self.stopping.is_set():
                got = self._read_request(conn, buf)
                if got is None:
                    return
                rec, buf = got
                self.requests.append(rec)
                try:
                    keep = self._respond(conn, rec)
                finally:
                    rec.done.set()
                if not keep:
                    return
        except (OSError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    @staticmethod
    def _recv_more(conn):
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("eof inside a chunked request body")
        return data

    def _read_request(self, conn, buf):
        while b"\r\n\r\n" not in buf:
            data = conn.recv(65536)
            if not data:
                return None
            buf += data
            if len(buf) > 1 << 20:
                return None
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in buf:
                    buf += self._recv_more(conn)
                size_line, buf = buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(buf) < size + 2:
                    buf += self._recv_more(conn)
                body, buf = body + buf[:size], buf[size + 2:]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length") or 0)
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return None
                buf += data
            body, buf = buf[:length], buf[length:]
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            parsed = None
        model = parsed.get("model") if isinstance(parsed, dict) else None
        behaviour = (headers.get("x-chaos") or self.aliases.get(model)
                     or (model if is_behaviour(model) else None) or self.behaviour)
        return Record(behaviour, headers, parsed), buf

    # -- writing --------------------------------------------------------------------------
    def _send(self, conn, rec, data):
        try:
            conn.sendall(data)
        except OSError:
            self._closed(rec)
            raise
        rec.bytes_sent += len(data)

    def _closed(self, rec):
        if rec.t_closed is None:
            rec.t_closed = time.monotonic()
            rec.closed.set()

    def _wait(self, conn, rec, seconds):
        """Sleep without writing, watching for the gateway closing the socket. True if it did."""
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end and not self.stopping.is_set():
                conn.settimeout(max(0.001, min(0.05, end - time.monotonic())))
                try:
                    if not conn.recv(65536):
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            else:
                return False
            self._closed(rec)
            return True
        finally:
            conn.settimeout(30)

    def _hold(self, conn, rec, limit=HOLD_LIMIT):
        """Keep the socket open without writing until the gateway closes it (or `limit`)."""
        self._wait(conn, rec, limit)
        return False

    def _head(self, conn, rec, status, ctype, length=None, extra=(), body=b""):
        reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error",
                  502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Status")
        lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {ctype}"]
        lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
        lines += [f"{k}: {v}" for k, v in extra]
        self._send(conn, rec, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _json(self, conn, rec, status, obj, extra=()):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self._head(conn, rec, status, "application/json", len(body), extra, body)
        return True

    def _chunk(self, conn, rec, text):
        data = text.encode() if isinstance(text, str) else text
        self._send(conn, rec, b"%x\r\n%s\r\n" % (len(data), data))

    def _completion(self, rec, content):
        return {"id": "chatcmpl-chaos", "object": "chat.completion", "created": int(time.time()),
                "model": rec.model or "", "system_fingerprint": "fp_chaos",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                          "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}}

    def _sse(self, rec, delta, finish=None, usage=None, choices=True):
        obj = {"id": "chatcmpl-chaos", "object": "chat.completion.chunk", "created": int(time.time()),
               "model": rec.model or "", "system_fingerprint": "fp_chaos",
               "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
        if (rec.body.get("stream_options") or {}).get("include_usage") is True:
            obj["usage"] = usage
        return "data: " + json.dumps(obj) + "\n\n"

    def _stream(self, conn, rec, words, delay=0.0, tail=True):
        self._head(conn, rec, 200, "text/event-stream", extra=[("cache-control", "no-cache")])
        self._chunk(conn, rec, self._sse(rec, {"role": "assistant", "content": ""}))
        for w in words:
            if delay and self._wait(conn, rec, delay):
                return False
            self._chunk(conn, rec, self._sse(rec, {"content": w}))
        if tail:
            self._chunk(conn, rec, self._sse(rec, {}, finish="stop"))
            self._chunk(conn, rec, self._sse(rec, None, choices=False, usage={
                "prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}))
            self._chunk(conn, rec, "data: [DONE]\n\n")
            self._send(conn, rec, b"0\r\n\r\n")
        return True

    # -- behaviours -----------------------------------------------------------------------
    def _respond(self, conn, rec):
        name, _, arg = rec.behaviour.partition(":")
        if name == "slow-headers":
            if self._wait(conn, rec, int(arg or 3000) / 1000):
                return False
            name = "ok"
        if name == "ok":
            text = rec.text()
            content = text if text.startswith("echo: ") else "".join(WORDS)
            if rec.stream:
                return self._stream(conn, rec, WORDS if content == "".join(WORDS) else [content])
            return self._json(conn, rec, 200, self._completion(rec, content))
        if name == "status":
            code = int(arg)
            extra = [("retry-after", "1")] if code == 429 else []
            return self._json(conn, rec, code, {"error": {"message": f"chaos says {code}", "type": "server_error",
                                                          "param": None, "code": None}}, extra)
        if name == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False  # _serve closes it: RST
        if name == "header-then-hang":
            ctype = "text/event-stream" if rec.stream else "application/json"
            self._head(conn, rec, 200, ctype, None if rec.stream else 400)
            return self._hold(conn, rec)
        if name == "drip":
            body = json.dumps(self._completion(rec, "".join(WORDS))).encode()
            self._head(conn, rec, 200, "application/json", len(body))
            for i in range(len(body)):
                if self._wait(conn, rec, int(arg or 200) / 1000):
                    return False
                self._send(conn, rec, body[i:i + 1])
            return True
        if name in ("stall", "stall-mid-stream", "cut"):
            if rec.stream:
                self._stream(conn, rec, WORDS[:2], tail=False)
                if name == "cut":
                    conn.shutdown(socket.SHUT_RDWR)
                    return False
                return self._hold(conn, rec)
            body = json.dumps(self._completion(rec, "".join(WORDS))).encode()
            self._head(conn, rec, 200, "application/json", len(body))
            self._send(conn, rec, body[:len(body) // 2])
            return self._hold(conn, rec) if name != "cut" else False
        if name == "malformed-json":
            return self._json(conn, rec, 200, b'{"choices": [')
        if name == "malformed-sse":
            self._head(conn, rec, 200, "text/event-stream")
            for junk in ["data: this is not json\n\n", 'data: {"choices": [\n\n', "garbage without a field\n\n",
                         "\x00\xff\xfe binary junk\n\n", 'data: {"choices": "nope"}\n\n', "data: [DONE]\n\n"]:
                self._chunk(conn, rec, junk.encode("latin-1"))
            self._send(conn, rec, b"0\r\n\r\n")
            return True
        if name == "oversized-sse":
            self._head(conn, rec, 200, "text/event-stream")
            self._chunk(conn, rec, b'data: {"choices":[{"index":0,"delta":{"content":"')
            block = b"x" * (1 << 20)
            try:
                for _ in range(int(arg or 16)):
                    self._chunk(conn, rec, block)
            except OSError:
                return False
            return self._hold(conn, rec)
        if name == "huge-body":
            size = int(arg or 80) << 20
            self._head(conn, rec, 200, "application/json", size)
            block = b'{"pad":"' + b"x" * ((1 << 20) - 8)
            try:
                for _ in range(size >> 20):
                    self._send(conn, rec, block)
            except OSError:
                return False
            return self._hold(conn, rec, limit=2)
        if name == "short-body":
            self._head(conn, rec, 200, "application/json", 10000)
            self._send(conn, rec, b'{"choices": [' + b" " * 987)
            return False
        if name == "firehose":
            self._head(conn, rec, 200, "text/event-stream")
            self._chunk(conn, rec, self._sse(rec, {"role": "assistant", "content": ""}))
            piece = self._sse(rec, {"content": "x" * 4000}).encode()
            try:
                end = time.monotonic() + 30
                while rec.bytes_sent < 256 << 20 and time.monotonic() < end and not self.stopping.is_set():
                    self._chunk(conn, rec, piece)
            except OSError:
                return False
            return self._hold(conn, rec, limit=5)
        if name == "big-ok":
            content = "x" * (int(arg or 6) << 20)
            try:
                return self._json(conn, rec, 200, self._completion(rec, content))
            except OSError:
                return False
        if name == "trickle":
            ms, _, n = arg.partition(":")
            return self._stream(conn, rec, [f"t{i} " for i in range(int(n or 10))], delay=int(ms or 200) / 1000)
        if name == "body":
            return self._json(conn, rec, 200, arg.encode())
        return self._json(conn, rec, 500, {"error": {"message": f"unknown behaviour {rec.behaviour}"}})


if __name__ == "__main__":
    server = ChaosProvider(sys.argv[1] if len(sys.argv) > 1 else "ok")
    print(server.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
