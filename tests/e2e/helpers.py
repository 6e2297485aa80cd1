"""Helpers shared by the end-to-end test modules."""

import json
import time
import urllib.error
import urllib.request

import openai

MESSAGES = [{"role": "user", "content": "Say hello"}]
EXPECTED = "Hello from the mock provider."
# Every mock route is priced 1 USD/Mtok in, 2 USD/Mtok out: micro-USD per token 1 and 2.
PRICE_IN, PRICE_OUT = 1, 2


def client(gw, key=None, retries=0):
    """The official SDK pointed at the gateway; no retries, so no failure is papered over."""
    return openai.OpenAI(base_url=gw.base_url, api_key=key or gw.key, max_retries=retries, timeout=30)


def settled(gw, request_id, timeout=5.0):
    """The usage event of a request, once the batch writer stored it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = [e for e in gw.usage() if e["request_id"] == request_id]
        if events:
            assert len(events) == 1, events
            return events[0]
        time.sleep(0.1)
    raise AssertionError(f"no usage event for {request_id}")


def raw_post(gw, body: bytes, key=None, headers=None):
    """POST /v1/chat/completions; `key=False` sends no Authorization header."""
    req = urllib.request.Request(gw.base_url + "/chat/completions", data=body, method="POST")
    req.add_header("content-type", "application/json")
    if key is not False:
        req.add_header("authorization", f"Bearer {key or gw.key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


# -- shared by the other client APIs (test_messages, test_responses, test_embeddings, test_models)

# The `format`/`api` value each client API's usage records carry.
FORMAT_CHAT, FORMAT_MESSAGES = "openai-chat", "anthropic-messages"
FORMAT_RESPONSES, FORMAT_EMBEDDINGS = "openai-responses", "openai-embeddings"


def http(gw, method, path, body=None, key=None, headers=None, auth="bearer", timeout=30):
    """One raw request to the gateway's client port: `path` from the root (e.g. "/v1/messages"),
    `body` a dict (sent as JSON) or bytes; `key=False` sends no key, `auth` is "bearer" or
    "x-api-key". Returns (status, body bytes, headers with lower-case names)."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{gw.port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if key is not False:
        if auth == "bearer":
            req.add_header("authorization", f"Bearer {key or gw.key}")
        else:
            req.add_header("x-api-key", key or gw.key)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}


def admin_call(gw, method, path, body=None, token=None):
    """One call to the gateway's admin API (`token`: the operator's or a member's; None sends
    none): (status, parsed JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def direct(mock, path, body, headers=None):
    """What a mock provider answers to `body` when asked directly, without the gateway (the
    mocks are deterministic): (status, body bytes). The request is dropped from its record."""
    req = urllib.request.Request(mock.base_url + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    before = len(mock.requests)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out = r.status, r.read()
    except urllib.error.HTTPError as e:
        out = e.code, e.read()
    del mock.requests[before:]
    return out


def parse_sse(raw: bytes):
    """[(event name or None, data)] of a server-sent-events body, data parsed as JSON when it is
    JSON (else the text, e.g. "[DONE]")."""
    out = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if name is None and not data:
            continue
        text = "\n".join(data)
        try:
            out.append((name, json.loads(text)))
        except ValueError:
            out.append((name, text))
    return out


def request_id(headers):
    """The gateway's request id from response headers (`x-request-id`, or Anthropic's
    `request-id`; the same value when both are sent)."""
    headers = {k.lower(): v for k, v in dict(headers).items()}
    ids = {headers[h] for h in ("x-request-id", "request-id") if h in headers}
    assert len(ids) == 1, f"request id headers: {ids or 'none'}"
    return ids.pop()


def record_format(event):
    """The client API a usage record was made for (its `api` or `format` field)."""
    value = event.get("api", event.get("format"))
    assert value is not None, f"usage record without an api/format field: {sorted(event)}"
    return value


def cost_micros(model, input=0, output=0, cache_read=0, cache_write=0):
    """What a request on `model`'s routes costs in micro-USD, as the gateway rounds it (the
    exact sum in pico-USD, rounded up to whole micro-USD). Cache prices default to the input
    price, as in the gateway config."""
    from conftest import route_settings
    price = route_settings(model)
    per = {k: round(price[f"{k}_per_mtok"] * 1_000_000) for k in ("input", "output")}
    for k in ("cache_read", "cache_write"):
        per[k] = round(price.get(f"{k}_per_mtok", price["input_per_mtok"]) * 1_000_000)
    pico = input * per["input"] + output * per["output"] + cache_read * per["cache_read"] + cache_write * per["cache_write"]
    return -(-pico // 1_000_000)


def records_since(gw, before, count, timeout=5.0):
    """Waits until `count` usage records were added to the `before` records; returns them."""
    seen = {e["request_id"] for e in before}
    deadline = time.time() + timeout
    while True:
        new = [e for e in gw.usage() if e["request_id"] not in seen]
        if len(new) >= count or time.time() > deadline:
            break
        time.sleep(0.1)
    time.sleep(0.3)  # anything more would show now
    new = [e for e in gw.usage() if e["request_id"] not in seen]
    assert len(new) == count, f"{len(new)} new usage records, expected {count}: {new}"
    return new


def content_text(content):
    """A chat message's content as text: a string as it is, a list of text parts joined (None
    for anything else, e.g. images)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(p["text"] for p in content)
    return None


def anthropic_client(gw, key=None):
    """The official `anthropic` SDK pointed at the gateway (it appends /v1/messages); no retries."""
    import anthropic
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{gw.port}", api_key=key or gw.key, max_retries=0,
                               timeout=30)
