"""End-to-end tests of what test_chat.py leaves out, on SQLite and PostgreSQL: fallback on an
upstream timeout and on a refused connection, an HTTPS upstream whose CA is not trusted, chunked
request bodies over the limit, `x-api-key` client auth, Anthropic images, tool use and in-stream
errors, `usage --format csv`, and key expiry."""

import csv
import http.client
import io
import json
import select
import socket
import time

import openai
import pytest

from conftest import SLOW_MS
from helpers import EXPECTED, MESSAGES, client, raw_post, settled
from mock_provider import TOOL_ID, TOOL_INPUT, TOOL_TEXT
from openapi_check import validate

# The slow mock (SLOW_MS) answers long after this per-attempt timeout.
UPSTREAM_TIMEOUT_MS = 1500
GATEWAY_OPTIONS = {"upstream_timeout_ms": UPSTREAM_TIMEOUT_MS}
assert SLOW_MS > 2 * UPSTREAM_TIMEOUT_MS
MAX_BODY_BYTES = 65536  # the test gateways' limit

# A 1x1 PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                   "required": ["city"]}}}


def attempts_of(event):
    return [(a["provider"], a["status"], a["error"]) for a in json.loads(event["attempts"])]


# -- fallback ---------------------------------------------------------------------------------

def test_fallback_on_upstream_timeout(gw):
    slow = gw.mocks["openai_slow"]
    started = time.time()
    resp = client(gw).chat.completions.with_raw_response.create(model="fallback-timeout", messages=MESSAGES)
    elapsed = time.time() - started
    assert resp.parse().choices[0].message.content == EXPECTED
    assert slow.requests, "the slow provider was never tried"
    # Served by the second provider once the first attempt's timeout passed, not when the slow
    # provider finally answered.
    assert UPSTREAM_TIMEOUT_MS / 1000 <= elapsed < SLOW_MS / 1000, elapsed
    event = settled(gw, resp.headers["x-request-id"])
    assert attempts_of(event) == [("openai_slow", 0, "timeout"), ("openai_ok", 200, "")]
    assert event["provider"] == "openai_ok" and event["status"] == 200


def test_fallback_on_connect_error(gw):
    resp = client(gw).chat.completions.with_raw_response.create(model="fallback-connect", messages=MESSAGES)
    assert resp.parse().choices[0].message.content == EXPECTED
    event = settled(gw, resp.headers["x-request-id"])
    assert attempts_of(event) == [("closed_port", 0, "connect"), ("openai_ok", 200, "")]
    assert event["provider"] == "openai_ok"


def test_https_upstream_with_untrusted_ca_is_refused(gw):
    """The mock's certificate is valid for localhost but signed by the test CA, which this
    provider has not been given (no ca_file): the gateway must refuse to talk to it."""
    status, body, headers = raw_post(gw, json.dumps({"model": "tls-untrusted", "messages": MESSAGES}).encode())
    assert status == 502, (status, body)
    payload = json.loads(body)
    validate("ErrorResponse", payload)
    assert gw.mocks["openai_tls_untrusted"].requests == [], "a request was sent over the untrusted connection"
    event = settled(gw, headers["x-request-id"])
    [(provider, upstream_status, error)] = attempts_of(event)
    assert (provider, upstream_status) == ("openai_tls_untrusted", 0) and error, event
    assert event["cost_micros"] == 0


# -- request bodies and client auth -----------------------------------------------------------

def post_chunked(gw, body: bytes, piece=4096, stop_at=None):
    """POST with Transfer-Encoding: chunked (no Content-Length); returns (status, body). With
    `stop_at`, the first `stop_at` body bytes go first and the rest only if the gateway has not
    answered within 5 s: a gateway that refuses as soon as the body is over its limit then has
    nothing unread when it closes (no reset racing its answer)."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)

    def send(data):
        for i in range(0, len(data), piece):
            part = data[i:i + piece]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))

    try:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: tollgate\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {gw.key}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        first = body[:stop_at] if stop_at else body
        send(first)
        if len(first) < len(body) and not select.select([sock], [], [], 5)[0]:
            send(body[len(first):])
            first = body
        if len(first) == len(body):
            sock.sendall(b"0\r\n\r\n")
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, resp.read()
    finally:
        sock.close()


def chat_body(content):
    return json.dumps({"model": "gpt-mock", "messages": [{"role": "user", "content": content}]}).encode()


def test_chunked_body_within_the_limit_is_served(gw):
    status, body = post_chunked(gw, chat_body("x" * 20000))
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == EXPECTED


def test_chunked_body_over_max_body_bytes_is_413_in_openai_shape(gw):
    upstream_before = len(gw.mocks["openai_ok"].requests)
    body = chat_body("x" * 80000)
    status, body = post_chunked(gw, body, stop_at=MAX_BODY_BYTES + 4096)
    assert status == 413, body
    validate("ErrorResponse", json.loads(body))
    assert len(gw.mocks["openai_ok"].requests) == upstream_before, "the oversized body reached the provider"


def test_x_api_key_header_authenticates(gw):
    bearer = client(gw).chat.completions.with_raw_response.create(model="gpt-mock", messages=MESSAGES)
    good = json.dumps({"model": "gpt-mock", "messages": MESSAGES}).encode()
    status, body, headers = raw_post(gw, good, key=False, headers={"x-api-key": gw.key})
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"] == EXPECTED
    # The same key (and org) as with Authorization: Bearer.
    by_header = settled(gw, headers["x-request-id"])
    by_bearer = settled(gw, bearer.headers["x-request-id"])
    assert (by_header["key_id"], by_header["org_id"]) == (by_bearer["key_id"], by_bearer["org_id"])
    status, body, _ = raw_post(gw, good, key=False, headers={"x-api-key": "tg-not-a-real-key"})
    assert status == 401, body


# -- Anthropic translation --------------------------------------------------------------------

def test_anthropic_image_data_url_becomes_an_image_block(gw):
    content = [{"type": "text", "text": "What is in this image?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]
    completion = client(gw).chat.completions.create(
        model="claude-mock", messages=[{"role": "user", "content": content}], max_tokens=64)
    assert completion.choices[0].message.content == EXPECTED
    sent = gw.mocks["anthropic_ok"].requests[-1]["body"]["messages"]
    assert sent == [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
    ]}], sent


def test_anthropic_tool_use_non_streaming(gw):
    completion = client(gw).chat.completions.create(
        model="claude-mock", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert (call.id, call.type, call.function.name) == (TOOL_ID, "function", "get_weather")
    assert json.loads(call.function.arguments) == TOOL_INPUT
    sent = gw.mocks["anthropic_ok"].requests[-1]["body"]
    assert sent["tools"] == [{"name": "get_weather", "description": "Current weather in a city.",
                              "input_schema": WEATHER_TOOL["function"]["parameters"]}]


def test_anthropic_streamed_tool_use_reaches_the_sdk_as_tool_calls(gw):
    stream = client(gw).chat.completions.create(
        model="claude-mock", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL],
        stream=True, stream_options={"include_usage": True})
    text, finish, calls, usage = "", None, {}, None
    for chunk in stream:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                # Accumulated as OpenAI's own stream helpers do: strings concatenate by index.
                call = calls.setdefault(tc.index, {"id": "", "type": "", "name": "", "arguments": ""})
                call["id"] += tc.id or ""
                call["type"] += tc.type or ""
                if tc.function:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""
    assert text == TOOL_TEXT
    assert list(calls) == [0], calls  # OpenAI numbers tool calls from 0
    assert (calls[0]["id"], calls[0]["type"], calls[0]["name"]) == (TOOL_ID, "function", "get_weather")
    assert json.loads(calls[0]["arguments"]) == TOOL_INPUT
    assert finish == "tool_calls"
    assert usage and (usage.prompt_tokens, usage.completion_tokens) == (11, 6)


def test_anthropic_in_stream_error_ends_the_client_stream_as_an_error(gw):
    """Anthropic reports a failure after the stream started as `event: error` (then ends the
    stream). The client must see an error, not a normal stream that merely stops early."""
    stream = client(gw).chat.completions.create(model="claude-error-event", messages=MESSAGES, stream=True)
    received = ""
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
    assert received == "Hello from"
    # On the wire: the text, then an error object, and no [DONE] after it.
    body = json.dumps({"model": "claude-error-event", "stream": True, "messages": MESSAGES}).encode()
    status, raw, _ = raw_post(gw, body)
    assert status == 200
    datas = [line[len("data: "):] for line in raw.decode().splitlines() if line.startswith("data: ")]
    errors = [i for i, d in enumerate(datas) if d.startswith("{") and "error" in json.loads(d)]
    assert errors, f"no error object in the stream: {datas}"
    assert "[DONE]" not in datas[errors[0]:], f"the stream ended normally after the error: {datas[errors[0]:]}"


# -- usage export and keys --------------------------------------------------------------------

def test_usage_csv_parses_and_matches_json(gw):
    # A model name with a comma and quotes must survive CSV quoting.
    for model in ['csv,"quoted" model', "gpt-mock"]:
        client(gw).chat.completions.create(model=model, messages=MESSAGES)
    time.sleep(0.3)
    records = {e["request_id"]: e for e in gw.usage()}
    rows = list(csv.DictReader(io.StringIO(gw.cli("usage", "--format", "csv", "--limit", "100000"))))
    assert len(rows) == len(records) and rows, (len(rows), len(records))
    for row in rows:
        event = records[row["request_id"]]
        for column, text in row.items():
            assert column in event, f"CSV column {column!r} is not in the JSON usage"
            expected = event[column]
            expected = str(expected).lower() if isinstance(expected, bool) else str(expected)
            assert text == expected, (column, text, expected)
    assert 'csv,"quoted" model' in {r["model"] for r in rows}


def key_id(gw, name):
    [kid] = [line.split()[0] for line in gw.cli("keys", "list", "--org", gw.org).splitlines()
             if line.split()[3:4] == [name]]
    return kid


def test_key_expiry(gw):
    key = gw.cli("keys", "create", "--org", gw.org, "--name", "expiring", "--expires-days", "1")
    kid = key_id(gw, "expiring")
    [[expires_at]] = gw.sql(f"SELECT expires_at FROM api_keys WHERE id = '{kid}'")
    assert abs(int(expires_at) - (time.time() + 86400) * 1000) < 120_000, expires_at
    assert client(gw, key).chat.completions.create(model="gpt-mock", messages=MESSAGES).choices
    # The CLI cannot create an already-expired key: move its expiry into the past in the store.
    past = int(time.time() * 1000) - 1000
    gw.sql(f"UPDATE api_keys SET expires_at = {past} WHERE id = '{kid}'")
    time.sleep(2.5)  # key records are cached for at most 2 s
    with pytest.raises(openai.AuthenticationError):
        client(gw, key).chat.completions.create(model="gpt-mock", messages=MESSAGES)

    # Expired before its first use (nothing cached).
    key = gw.cli("keys", "create", "--org", gw.org, "--name", "born-expired", "--expires-days", "1")
    gw.sql(f"UPDATE api_keys SET expires_at = {past} WHERE id = '{key_id(gw, 'born-expired')}'")
    with pytest.raises(openai.AuthenticationError):
        client(gw, key).chat.completions.create(model="gpt-mock", messages=MESSAGES)
