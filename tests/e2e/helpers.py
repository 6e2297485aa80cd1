"""Helpers shared by the end-to-end test modules."""

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
