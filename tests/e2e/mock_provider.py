"""Mock LLM providers speaking OpenAI's and Anthropic's wire formats (from their public API
references), for end-to-end tests of the gateway. Loopback only.

Each server has a `behaviour`:
  "ok"              answer normally (JSON or SSE)
  "status:<code>"   answer every request with that HTTP status and a provider-shaped error
  "cut:<n>"         stream <n> content chunks, then drop the connection mid-stream
  "slow:<ms>"       wait before answering
  "drip:<ms>"       stream slowly (a chunk every <ms>); `client_gone` is set when a write fails
  "error-event:<n>" (anthropic) stream <n> text deltas, then an `event: error` (overloaded_error)
                    and end the stream, as Anthropic does when it fails mid-stream
An Anthropic request with `tools` is answered with a text block and a `tool_use` block for the
first tool (streamed as `input_json_delta` pieces), arguments TOOL_INPUT.
It records every request it received (path, headers, JSON body) in `requests`.
`ClosedPort` is a provider address where nothing listens (connect errors).
"""

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ["Hello", " from", " the", " mock", " provider", "."]
PROMPT_TOKENS = 11
COMPLETION_TOKENS = len(WORDS)
TOOL_TEXT = "Let me check."
TOOL_ID = "toolu_mock1"
TOOL_INPUT = {"city": "Paris", "unit": "celsius"}
# TOOL_INPUT as JSON, in the pieces the mock streams (split mid-token, as Anthropic does).
TOOL_JSON_PIECES = ["", '{"city": "Par', 'is", "un', 'it": "celsius"}']


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    # -- plumbing -------------------------------------------------------------------------
    def _json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_stream(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.end_headers()

    def _chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _cut(self):
        """Drop the connection without finishing the chunked body."""
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True

    # -- dispatch -------------------------------------------------------------------------
    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        srv = self.server
        srv.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        behaviour = srv.behaviour
        if behaviour.startswith("slow:"):
            time.sleep(int(behaviour.split(":")[1]) / 1000)
        if behaviour.startswith("status:"):
            status = int(behaviour.split(":")[1])
            if srv.flavour == "anthropic":
                return self._json(status, {"type": "error", "error": {"type": "overloaded_error" if status >= 500 else "rate_limit_error", "message": f"mock says {status}"}})
            return self._json(status, {"error": {"message": f"mock says {status}", "type": "server_error", "param": None, "code": None}})
        if srv.flavour == "anthropic":
            if self.path != "/v1/messages":
                return self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
            return self._anthropic(body)
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": self.path, "type": "invalid_request_error"}})
        return self._openai(body)

    # -- OpenAI chat completions ----------------------------------------------------------
    def _openai(self, body):
        model = body.get("model", "")
        created = int(time.time())
        if not body.get("stream"):
            return self._json(200, {
                "id": "chatcmpl-mock1", "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(WORDS), "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                          "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
                          "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
            })
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        self._start_stream()

        def chunk(delta, finish=None, usage=None, choices=True):
            obj = {"id": "chatcmpl-mock1", "object": "chat.completion.chunk", "created": created, "model": model,
                   "system_fingerprint": "fp_mock",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
            if include_usage:
                obj["usage"] = usage
            self._chunk("data: " + json.dumps(obj) + "\n\n")

        chunk({"role": "assistant", "content": ""})
        if self.server.behaviour.startswith("drip:"):
            delay = int(self.server.behaviour.split(":")[1]) / 1000
            try:
                for i in range(200):
                    time.sleep(delay)
                    chunk({"content": f"{i} "})
            except OSError:
                self.server.client_gone.set()
            return self._cut()
        cut = int(self.server.behaviour.split(":")[1]) if self.server.behaviour.startswith("cut:") else None
        for i, w in enumerate(WORDS):
            if cut is not None and i == cut:
                return self._cut()
            chunk({"content": w})
        chunk({}, finish="stop")
        if include_usage:
            chunk(None, usage={"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                               "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}, choices=False)
        self._chunk("data: [DONE]\n\n")
        self._end_stream()

    # -- Anthropic messages ---------------------------------------------------------------
    def _anthropic(self, body):
        if self.headers.get("anthropic-version") is None:
            return self._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version header is required"}})
        if not isinstance(body.get("max_tokens"), int):
            return self._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}})
        model = body.get("model", "")
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        tool = (body.get("tools") or [None])[0]
        if not body.get("stream"):
            if tool:
                return self._json(200, {
                    "id": "msg_mock1", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": TOOL_TEXT},
                                {"type": "tool_use", "id": TOOL_ID, "name": tool["name"], "input": TOOL_INPUT}],
                    "stop_reason": "tool_use", "stop_sequence": None, "usage": usage})
            return self._json(200, {
                "id": "msg_mock1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "".join(WORDS)}],
                "stop_reason": "end_turn", "stop_sequence": None, "usage": usage})
        self._start_stream()

        def event(name, obj):
            self._chunk(f"event: {name}\ndata: {json.dumps(obj)}\n\n")

        event("message_start", {"type": "message_start", "message": {
            "id": "msg_mock1", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}})
        event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        event("ping", {"type": "ping"})
        if tool:
            event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TOOL_TEXT}})
            event("content_block_stop", {"type": "content_block_stop", "index": 0})
            event("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": TOOL_ID, "name": tool["name"], "input": {}}})
            for piece in TOOL_JSON_PIECES:
                event("content_block_delta", {"type": "content_block_delta", "index": 1,
                                              "delta": {"type": "input_json_delta", "partial_json": piece}})
            event("content_block_stop", {"type": "content_block_stop", "index": 1})
            event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                    "usage": {"output_tokens": COMPLETION_TOKENS}})
            event("message_stop", {"type": "message_stop"})
            return self._end_stream()
        behaviour = self.server.behaviour
        cut = int(behaviour.split(":")[1]) if behaviour.startswith("cut:") else None
        error_at = int(behaviour.split(":")[1]) if behaviour.startswith("error-event:") else None
        for i, w in enumerate(WORDS):
            if cut is not None and i == cut:
                return self._cut()
            if error_at is not None and i == error_at:
                event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                return self._end_stream()
            event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": COMPLETION_TOKENS}})
        event("message_stop", {"type": "message_stop"})
        self._end_stream()


class MockProvider(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, flavour="openai", behaviour="ok", tls_cert=None, trusted=True):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.flavour = flavour
        self.behaviour = behaviour
        # For TLS mocks: whether the gateway is given the test CA (`ca_file`) for this provider.
        self.trusted = trusted
        self.requests = []
        self.client_gone = threading.Event()
        self.scheme = "http"
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls_cert)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def handle_error(self, request, client_address):
        """A client (the gateway) that went away is expected (timeouts, cut streams): quiet."""
        import sys
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ssl.SSLError)):
            super().handle_error(request, client_address)

    @property
    def base_url(self):
        host = "localhost" if self.scheme == "https" else "127.0.0.1"
        return f"{self.scheme}://{host}:{self.server_address[1]}"

    def stop(self):
        self.shutdown()
        self.server_close()


class ClosedPort:
    """A provider address where nothing listens: every connection attempt is refused."""

    flavour, scheme, trusted, behaviour = "openai", "http", True, "closed"

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.requests = []

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        pass


if __name__ == "__main__":
    import sys
    flavour = sys.argv[1] if len(sys.argv) > 1 else "openai"
    m = MockProvider(flavour)
    print(m.base_url, flush=True)
    m.thread.join()
