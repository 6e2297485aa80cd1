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
  "no-usage"        (openai) never report usage: no `usage` in the JSON answer, no usage chunk
                    and no `usage` key in any chunk, even with `stream_options.include_usage`
  "status:429:<s>"  answer 429 with `Retry-After: <s>`
  "context-length"  answer 400 with OpenAI's `context_length_exceeded` error (Anthropic: "prompt
                    is too long"), as a provider does for a prompt over its context window
  "content-filter"  answer 400 with OpenAI's `content_filter` error
  "bad-request"     answer 400 with a plain `invalid_request_error` (the client's own mistake)
  "stall:<n>"       (openai) stream <n> content chunks, then send nothing for 30 s
  "leak"            answer LEAK_WORDS instead of WORDS: an AWS-access-key-shaped string split
                    across two stream events (guardrail tests)
  "cached:<n>"      (openai) report <n> cached prompt tokens: `prompt_tokens` is
                    PROMPT_TOKENS + n (it includes cached tokens, as OpenAI counts them) and
                    `prompt_tokens_details.cached_tokens` is n

What both flavours answer:
- Chat: WORDS as text; usage PROMPT_TOKENS in, COMPLETION_TOKENS out.
- Tools, Anthropic: a request with `tools` gets a text block (TOOL_TEXT) and a `tool_use` block
  (id TOOL_ID) for the first tool, arguments TOOL_INPUT (streamed as `input_json_delta` pieces),
  stop_reason `tool_use`.
- Tools, OpenAI: a request with `tools` whose last message is not a `tool` message gets
  content TOOL_TEXT and one tool call (id OPENAI_TOOL_ID) for the first tool, arguments TOOL_INPUT
  as a JSON string, finish_reason `tool_calls`; streamed as TOOL_TEXT in `delta.content`, then
  `delta.tool_calls` (the first piece carries index, id, type and name; the arguments arrive in
  TOOL_JSON_PIECES). A request whose last message is `role: tool` gets the normal text answer.
- Thinking (Anthropic): a request with `thinking` gets a `thinking` block first (THINKING_TEXT,
  signature THINKING_SIGNATURE); streamed as `thinking_delta` pieces (THINKING_PIECES), then one
  `signature_delta`, then `content_block_stop`, as Anthropic's extended thinking docs describe.
- Prompt caching (Anthropic): a request with `cache_control` anywhere in its body reports
  `cache_creation_input_tokens` CACHE_WRITE_TOKENS and `cache_read_input_tokens`
  CACHE_READ_TOKENS (0 and 0 otherwise); `input_tokens` stays PROMPT_TOKENS (Anthropic's
  `input_tokens` excludes cached tokens).
- Embeddings (OpenAI flavour, `POST /v1/embeddings`, per OpenAI's API reference): one
  `embedding` object per input (a string, a list of strings, a token array or a list of token
  arrays), vectors from `embedding_for(text, dimensions)` (EMBED_DIMS floats unless `dimensions`
  is given; every value a multiple of 1/128, so exact in float32), as floats or, when
  `encoding_format` is "base64", as base64 of little-endian float32; usage `prompt_tokens` =
  `total_tokens` = sum of `embedding_tokens(input)`.
It records every request it received (path, headers, JSON body) in `requests`.
`ClosedPort` is a provider address where nothing listens (connect errors).
"""

import base64
import hashlib
import json
import socket
import struct
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ["Hello", " from", " the", " mock", " provider", "."]
LEAK_WORDS = ["Your", " key", " is", " AKIAABCD", "EFGHIJKLMNOP", "."]
PROMPT_TOKENS = 11
COMPLETION_TOKENS = len(WORDS)
TOOL_TEXT = "Let me check."
TOOL_ID = "toolu_mock1"
TOOL_INPUT = {"city": "Paris", "unit": "celsius"}
# TOOL_INPUT as JSON, in the pieces the mock streams (split mid-token, as Anthropic does).
TOOL_JSON_PIECES = ["", '{"city": "Par', 'is", "un', 'it": "celsius"}']
assert "".join(TOOL_JSON_PIECES) == json.dumps(TOOL_INPUT)
OPENAI_TOOL_ID = "call_mock1"
THINKING_PIECES = ["The user wants", " a friendly greeting."]
THINKING_TEXT = "".join(THINKING_PIECES)
THINKING_SIGNATURE = "EqQBCkYIARgCIkBtb2NrLXNpZ25hdHVyZQ=="
CACHE_WRITE_TOKENS = 1200
CACHE_READ_TOKENS = 800
EMBED_DIMS = 8


def words_for(behaviour):
    return LEAK_WORDS if behaviour == "leak" else WORDS


def embedding_for(text, dimensions=None):
    """The mock's embedding of one input (a string; a token array as its JSON text)."""
    n = dimensions or EMBED_DIMS
    digest, counter = b"", 0
    while len(digest) < n:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    return [(b - 128) / 128 for b in digest[:n]]


def embedding_tokens(item):
    """Tokens the mock counts for one input: words of a string, length of a token array."""
    if isinstance(item, list):
        return len(item)
    return max(1, len(item.split()))


def embedding_inputs(raw):
    """The request's `input` as a list of single inputs (strings or token arrays)."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        return [raw]
    return list(raw) if isinstance(raw, list) else None


def _has_key(node, key):
    if isinstance(node, dict):
        return key in node or any(_has_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(_has_key(v, key) for v in node)
    return False


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
        if behaviour == "context-length":
            if srv.flavour == "anthropic":
                return self._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens > 200000 maximum"}})
            return self._json(400, {"error": {"message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 250000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}})
        if behaviour == "content-filter":
            return self._json(400, {"error": {"message": "The response was filtered due to the prompt triggering content management policy.", "type": "invalid_request_error", "param": "prompt", "code": "content_filter"}})
        if behaviour == "bad-request":
            return self._json(400, {"error": {"message": "temperature: must be at most 2", "type": "invalid_request_error", "param": "temperature", "code": None}})
        if behaviour.startswith("status:"):
            status = int(behaviour.split(":")[1])
            if status == 429 and behaviour.count(":") == 2:
                data = json.dumps({"error": {"message": "mock says 429", "type": "rate_limit_error", "param": None, "code": None}}).encode()
                self.send_response(429)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("retry-after", behaviour.split(":")[2])
                self.end_headers()
                self.wfile.write(data)
                return
            if srv.flavour == "anthropic":
                return self._json(status, {"type": "error", "error": {"type": "overloaded_error" if status >= 500 else "rate_limit_error", "message": f"mock says {status}"}})
            return self._json(status, {"error": {"message": f"mock says {status}", "type": "server_error", "param": None, "code": None}})
        if srv.flavour == "anthropic":
            if self.path != "/v1/messages":
                return self._json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
            return self._anthropic(body)
        if self.path == "/v1/embeddings":
            return self._embeddings(body)
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": self.path, "type": "invalid_request_error"}})
        return self._openai(body)

    # -- OpenAI embeddings ----------------------------------------------------------------
    def _embeddings(self, body):
        def bad(message, param):
            return self._json(400, {"error": {"message": message, "type": "invalid_request_error",
                                              "param": param, "code": None}})
        if not isinstance(body, dict) or "input" not in body or not isinstance(body.get("model"), str):
            return bad("'input' and 'model' are required", "input")
        inputs = embedding_inputs(body["input"])
        if not inputs or any(not isinstance(i, (str, list)) for i in inputs):
            return bad("'input' must be a string, an array of strings or token arrays", "input")
        dimensions = body.get("dimensions")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            return bad("'encoding_format' must be 'float' or 'base64'", "encoding_format")
        data = []
        for i, item in enumerate(inputs):
            vector = embedding_for(item if isinstance(item, str) else json.dumps(item), dimensions)
            if fmt == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(embedding_tokens(i) for i in inputs)
        return self._json(200, {"object": "list", "data": data, "model": body["model"],
                                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # -- OpenAI chat completions ----------------------------------------------------------
    def _openai(self, body):
        model = body.get("model", "")
        created = int(time.time())
        behaviour = self.server.behaviour
        no_usage = behaviour == "no-usage"
        cached = int(behaviour.split(":")[1]) if behaviour.startswith("cached:") else 0
        usage = {"prompt_tokens": PROMPT_TOKENS + cached, "completion_tokens": COMPLETION_TOKENS,
                 "total_tokens": PROMPT_TOKENS + cached + COMPLETION_TOKENS,
                 "prompt_tokens_details": {"cached_tokens": cached}, "completion_tokens_details": {"reasoning_tokens": 0}}
        messages = body.get("messages") or [{}]
        tool = (body.get("tools") or [None])[0]
        if tool and messages[-1].get("role") == "tool":
            tool = None
        tool_name = tool["function"]["name"] if tool else None
        if not body.get("stream"):
            if tool:
                message = {"role": "assistant", "content": TOOL_TEXT, "refusal": None, "tool_calls": [
                    {"id": OPENAI_TOOL_ID, "type": "function",
                     "function": {"name": tool_name, "arguments": json.dumps(TOOL_INPUT)}}]}
            else:
                message = {"role": "assistant", "content": "".join(words_for(behaviour)), "refusal": None}
            answer = {
                "id": "chatcmpl-mock1", "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "fp_mock",
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if tool else "stop"}],
            }
            if not no_usage:
                answer["usage"] = usage
            return self._json(200, answer)
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True and not no_usage
        self._start_stream()

        def chunk(delta, finish=None, usage=None, choices=True):
            obj = {"id": "chatcmpl-mock1", "object": "chat.completion.chunk", "created": created, "model": model,
                   "system_fingerprint": "fp_mock",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []}
            if include_usage:
                obj["usage"] = usage
            self._chunk("data: " + json.dumps(obj) + "\n\n")

        chunk({"role": "assistant", "content": ""})
        if behaviour.startswith("drip:"):
            delay = int(behaviour.split(":")[1]) / 1000
            try:
                for i in range(200):
                    time.sleep(delay)
                    chunk({"content": f"{i} "})
            except OSError:
                self.server.client_gone.set()
            return self._cut()
        cut = int(behaviour.split(":")[1]) if behaviour.startswith("cut:") else None
        if behaviour.startswith("stall:"):
            for w in WORDS[:int(behaviour.split(":")[1])]:
                chunk({"content": w})
            time.sleep(30)
            return self._cut()
        if tool:
            chunk({"content": TOOL_TEXT})
            chunk({"tool_calls": [{"index": 0, "id": OPENAI_TOOL_ID, "type": "function",
                                   "function": {"name": tool_name, "arguments": ""}}]})
            for piece in TOOL_JSON_PIECES[1:]:
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            chunk({}, finish="tool_calls")
        else:
            for i, w in enumerate(words_for(behaviour)):
                if cut is not None and i == cut:
                    return self._cut()
                chunk({"content": w})
            chunk({}, finish="stop")
        if include_usage:
            chunk(None, usage=usage, choices=False)
        self._chunk("data: [DONE]\n\n")
        self._end_stream()

    # -- Anthropic messages ---------------------------------------------------------------
    def _anthropic(self, body):
        if self.headers.get("anthropic-version") is None:
            return self._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version header is required"}})
        if not isinstance(body, dict) or not isinstance(body.get("max_tokens"), int):
            return self._json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}})
        model = body.get("model", "")
        caching = _has_key(body, "cache_control")
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS,
                 "cache_creation_input_tokens": CACHE_WRITE_TOKENS if caching else 0,
                 "cache_read_input_tokens": CACHE_READ_TOKENS if caching else 0}
        tool = (body.get("tools") or [None])[0]
        thinking = bool(body.get("thinking")) and (body["thinking"].get("type") != "disabled")
        blocks = []
        if thinking:
            blocks.append({"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE})
        if tool:
            blocks.append({"type": "text", "text": TOOL_TEXT})
            blocks.append({"type": "tool_use", "id": TOOL_ID, "name": tool["name"], "input": TOOL_INPUT})
        else:
            blocks.append({"type": "text", "text": "".join(words_for(self.server.behaviour))})
        stop_reason = "tool_use" if tool else "end_turn"
        if not body.get("stream"):
            return self._json(200, {
                "id": "msg_mock1", "type": "message", "role": "assistant", "model": model,
                "content": blocks, "stop_reason": stop_reason, "stop_sequence": None, "usage": usage})
        self._start_stream()

        def event(name, obj):
            self._chunk(f"event: {name}\ndata: {json.dumps(obj)}\n\n")

        event("message_start", {"type": "message_start", "message": {
            "id": "msg_mock1", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}})
        behaviour = self.server.behaviour
        cut = int(behaviour.split(":")[1]) if behaviour.startswith("cut:") else None
        error_at = int(behaviour.split(":")[1]) if behaviour.startswith("error-event:") else None
        pinged = []
        for index, block in enumerate(blocks):
            def delta(d):
                if index == 0 and not pinged:
                    event("ping", {"type": "ping"})  # as Anthropic's example streams do
                    pinged.append(True)
                event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            if block["type"] == "thinking":
                event("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
                for piece in THINKING_PIECES:
                    delta({"type": "thinking_delta", "thinking": piece})
                delta({"type": "signature_delta", "signature": THINKING_SIGNATURE})
            elif block["type"] == "tool_use":
                event("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": TOOL_ID, "name": tool["name"], "input": {}}})
                for piece in TOOL_JSON_PIECES:
                    delta({"type": "input_json_delta", "partial_json": piece})
            else:
                event("content_block_start", {"type": "content_block_start", "index": index,
                                              "content_block": {"type": "text", "text": ""}})
                if tool:
                    delta({"type": "text_delta", "text": TOOL_TEXT})
                else:
                    for i, w in enumerate(words_for(self.server.behaviour)):
                        if cut is not None and i == cut:
                            return self._cut()
                        if error_at is not None and i == error_at:
                            event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                            return self._end_stream()
                        delta({"type": "text_delta", "text": w})
            event("content_block_stop", {"type": "content_block_stop", "index": index})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                "usage": {"output_tokens": COMPLETION_TOKENS}})
        event("message_stop", {"type": "message_stop"})
        self._end_stream()


class MockProvider(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, flavour="openai", behaviour="ok", tls_cert=None, trusted=True, formats=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.flavour = flavour
        self.behaviour = behaviour
        # The client formats the gateway config declares this provider serves natively
        # (`formats = [...]`); None: the conftest default for the flavour.
        self.formats = formats
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

    flavour, scheme, trusted, behaviour, formats = "openai", "http", True, "closed", None

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
