"""OpenAI chat completions through the real gateway with the official `openai` SDK, on SQLite and
PostgreSQL: success paths, errors, fallback, cut streams, TLS upstreams. Hot plugin swaps are in
test_hot_reload.py; timeouts, connect errors, Anthropic tools and images, key expiry and more in
test_coverage.py; the admin token and the shutdown flush in test_lifecycle.py. Usage records:
exact ones say so, and a provider that reports no usage is charged on estimated counts."""

import json
import math
import time

import openai
import pytest

from helpers import EXPECTED, FORMAT_CHAT, MESSAGES, PRICE_IN, PRICE_OUT, client, raw_post, record_format, settled
from openapi_check import validate


def test_non_streaming_openai_provider(gw):
    before = gw.balance_micros(gw.org)
    resp = client(gw).chat.completions.with_raw_response.create(model="gpt-mock", messages=MESSAGES)
    completion = resp.parse()
    request_id = resp.headers["x-request-id"]
    assert completion.choices[0].message.content == EXPECTED
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 6
    validate("CreateChatCompletionResponse", json.loads(resp.content))
    event = settled(gw, request_id)
    assert (event["input_tokens"], event["output_tokens"], event["status"]) == (11, 6, 200)
    assert event["cost_micros"] == 11 * PRICE_IN + 6 * PRICE_OUT
    assert gw.balance_micros(gw.org) == before - event["cost_micros"]
    # The provider saw the routed model and the gateway's provider key, never the client's key.
    upstream = gw.mocks["openai_ok"].requests[-1]
    assert upstream["body"]["model"] == "gpt-mock-upstream"
    assert upstream["headers"]["authorization"] == "Bearer sk-mock-openai"


def test_streaming_openai_provider_exact_usage(gw):
    before = gw.balance_micros(gw.org)
    stream = client(gw).chat.completions.with_raw_response.create(
        model="gpt-mock", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    request_id = stream.headers["x-request-id"]
    text, usage = "", None
    for chunk in stream.parse():
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert text == EXPECTED
    assert usage and usage.completion_tokens == 6
    upstream = gw.mocks["openai_ok"].requests[-1]["body"]
    assert upstream["stream_options"]["include_usage"] is True
    event = settled(gw, request_id)
    assert event["stream"] is True and event["output_tokens"] == 6
    assert gw.balance_micros(gw.org) == before - (11 * PRICE_IN + 6 * PRICE_OUT)


def test_streaming_usage_is_exact_even_when_client_did_not_ask(gw):
    stream = client(gw).chat.completions.with_raw_response.create(model="gpt-mock", messages=MESSAGES, stream=True)
    chunks = list(stream.parse())
    assert all(c.usage is None for c in chunks), "usage chunk the client did not ask for leaked"
    assert gw.mocks["openai_ok"].requests[-1]["body"]["stream_options"]["include_usage"] is True
    event = settled(gw, stream.headers["x-request-id"])
    assert (event["input_tokens"], event["output_tokens"]) == (11, 6)


def test_anthropic_provider_translation(gw):
    resp = client(gw).chat.completions.with_raw_response.create(
        model="claude-mock", messages=[{"role": "system", "content": "Be terse."}] + MESSAGES, max_tokens=64)
    completion = resp.parse()
    assert completion.choices[0].message.content == EXPECTED
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 6
    validate("CreateChatCompletionResponse", json.loads(resp.content))
    upstream = gw.mocks["anthropic_ok"].requests[-1]
    assert upstream["path"] == "/v1/messages"
    assert upstream["headers"]["x-api-key"] == "sk-mock-anthropic"
    assert "authorization" not in upstream["headers"]
    assert upstream["body"]["system"] == "Be terse."
    assert upstream["body"]["max_tokens"] == 64
    event = settled(gw, resp.headers["x-request-id"])
    assert event["provider"] == "anthropic_ok" and event["cost_micros"] == 11 * PRICE_IN + 6 * PRICE_OUT


def test_anthropic_provider_streaming(gw):
    stream = client(gw).chat.completions.with_raw_response.create(
        model="claude-mock", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    text, usage, finish = "", None, None
    for chunk in stream.parse():
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == EXPECTED and finish == "stop"
    assert usage.prompt_tokens == 11 and usage.completion_tokens == 6
    event = settled(gw, stream.headers["x-request-id"])
    assert (event["input_tokens"], event["output_tokens"], event["stream"]) == (11, 6, True)


def error_body(status, body):
    payload = json.loads(body)
    validate("ErrorResponse", payload)
    return status, payload["error"]


def test_errors_in_openai_shape_and_nothing_charged(gw):
    before_usage = len(gw.usage())
    before_balance = gw.balance_micros(gw.org)
    good = json.dumps({"model": "gpt-mock", "messages": MESSAGES}).encode()

    status, err = error_body(*raw_post(gw, good, key=False)[:2])
    assert status == 401 and err["code"] == "invalid_api_key"
    status, err = error_body(*raw_post(gw, good, key="tg-not-a-real-key")[:2])
    assert status == 401
    status, err = error_body(*raw_post(gw, good, key=gw.broke_key)[:2])
    assert status == 402 and err["code"] == "insufficient_credits"
    status, err = error_body(*raw_post(gw, b'{"model": "gpt-mock", "messages": [')[:2])
    assert status == 400 and err["type"] == "invalid_request_error"
    big = json.dumps({"model": "gpt-mock", "messages": [{"role": "user", "content": "x" * 70000}]}).encode()
    status, err = error_body(*raw_post(gw, big)[:2])
    assert status == 413
    status, err = error_body(*raw_post(gw, json.dumps({"model": "no-such-model", "messages": MESSAGES}).encode())[:2])
    assert status == 404 and err["code"] == "model_not_found"

    # The SDK maps them to its typed errors.
    with pytest.raises(openai.AuthenticationError):
        client(gw, key="tg-wrong").chat.completions.create(model="gpt-mock", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client(gw).chat.completions.create(model="no-such-model", messages=MESSAGES)

    # Unauthenticated requests leave no record; every authenticated one leaves exactly one,
    # with its status and no cost: 402 (broke org), 400 (bad JSON), 404 twice.
    time.sleep(0.5)
    events = gw.usage()
    assert len(events) == before_usage + 4, events[:6]
    latest = sorted(events, key=lambda e: e["created_at"])[-4:]
    assert sorted(e["status"] for e in latest) == [400, 402, 404, 404]
    assert all(e["cost_micros"] == 0 for e in latest)
    assert gw.balance_micros(gw.org) == before_balance


def test_revoked_key_is_refused(gw):
    key = gw.cli("keys", "create", "--org", gw.org, "--name", "short-lived")
    assert client(gw, key).chat.completions.create(model="gpt-mock", messages=MESSAGES).choices
    key_id = [line.split()[0] for line in gw.cli("keys", "list", "--org", gw.org).splitlines()
              if "short-lived" in line][0]
    gw.cli("keys", "revoke", key_id)
    time.sleep(2.5)  # key records are cached for at most 2 s
    with pytest.raises(openai.AuthenticationError):
        client(gw, key).chat.completions.create(model="gpt-mock", messages=MESSAGES)


@pytest.mark.parametrize("model,failing,status", [("fallback-429", "fail_429", 429), ("fallback-500", "fail_500", 500)])
def test_fallback_to_second_provider(gw, model, failing, status):
    resp = client(gw).chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    assert resp.parse().choices[0].message.content == EXPECTED
    event = settled(gw, resp.headers["x-request-id"])
    attempts = json.loads(event["attempts"])
    assert [(a["provider"], a["status"]) for a in attempts] == [(failing, status), ("openai_ok", 200)]
    assert event["provider"] == "openai_ok"


def test_all_providers_failing_reports_the_last_status(gw):
    with pytest.raises(openai.RateLimitError):
        client(gw).chat.completions.create(model="always-429", messages=MESSAGES)


@pytest.mark.parametrize("model", ["cut-openai", "cut-anthropic"])
def test_stream_cut_mid_way_ends_with_error_event_and_partial_charge(gw, model):
    before = gw.balance_micros(gw.org)
    stream = client(gw).chat.completions.with_raw_response.create(model=model, messages=MESSAGES, stream=True)
    received = ""
    with pytest.raises(openai.APIError) as info:
        for chunk in stream.parse():
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
    assert "interrupted" in str(info.value)
    assert received == "Hello from"
    event = settled(gw, stream.headers["x-request-id"])
    attempts = json.loads(event["attempts"])
    assert attempts[-1]["error"] == "stream-cut"
    # Output charged for what arrived (~4 characters a token), never the full answer.
    assert event["output_tokens"] == math.ceil(len(received) / 4)
    assert event["output_tokens"] < 6
    assert gw.balance_micros(gw.org) == before - event["cost_micros"]


def test_tls_upstream_with_test_ca(gw):
    completion = client(gw).chat.completions.create(model="tls-mock", messages=MESSAGES)
    assert completion.choices[0].message.content == EXPECTED
    assert gw.mocks["openai_tls"].requests, "the TLS mock was not reached"


def test_client_disconnect_cancels_the_upstream_request(gw):
    import socket
    body = json.dumps({"model": "drip-mock", "stream": True, "messages": MESSAGES}).encode()
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {gw.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    received = b""
    while b"data:" not in received:
        chunk = sock.recv(4096)
        assert chunk, "connection closed before the stream started"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200")
    sock.close()
    # The gateway notices at its next write and drops the upstream connection; the provider's
    # next write then fails (instead of streaming 200 chunks, ~20 s, to nobody).
    assert gw.mocks["openai_drip"].client_gone.wait(5), "upstream kept streaming after the client left"


def test_models_list(gw):
    models = client(gw).models.list()
    ids = {m.id for m in models.data}
    assert {"gpt-mock", "claude-mock"} <= ids
    for m in models.data:
        validate("Model", m.model_dump())


def test_exact_usage_records_carry_format_and_estimated_false(gw):
    resp = client(gw).chat.completions.with_raw_response.create(model="gpt-mock", messages=MESSAGES)
    event = settled(gw, resp.headers["x-request-id"])
    assert record_format(event) == FORMAT_CHAT
    assert event.get("estimated") is False, event


@pytest.mark.parametrize("stream", [False, True])
def test_missing_usage_is_estimated(gw, stream):
    """The provider behind gpt-no-usage never reports usage: the gateway counts the tokens
    itself (a tokenizer: "Say hello" and "Hello from the mock provider." are a few tokens each),
    charges them, and marks the record estimated."""
    before = gw.balance_micros(gw.org)
    kwargs = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    resp = client(gw).chat.completions.with_raw_response.create(model="gpt-no-usage", messages=MESSAGES, **kwargs)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    else:
        text = resp.parse().choices[0].message.content
    assert text == EXPECTED
    event = settled(gw, resp.headers["x-request-id"])
    assert event["estimated"] is True, event
    assert (event["status"], event["stream"], event["provider"]) == (200, stream, "openai_no_usage")
    assert 1 <= event["input_tokens"] <= 40, event
    assert 1 <= event["output_tokens"] <= 12, event
    assert event["cost_micros"] == event["input_tokens"] * PRICE_IN + event["output_tokens"] * PRICE_OUT
    assert gw.balance_micros(gw.org) == before - event["cost_micros"]
    assert record_format(event) == FORMAT_CHAT
