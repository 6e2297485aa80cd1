"""Anthropic Messages (`POST /v1/messages`) through the real gateway with the official `anthropic`
SDK (unmodified, base URL only), on SQLite and PostgreSQL.

- Routed to an Anthropic provider (`claude-pass`: `formats = ["anthropic-messages"]`) it is a
  pass-through: the body reaches the provider as the client sent it but for `model` (the
  routed upstream name) — cache_control, thinking, tool_use ids, unknown fields — and so do the
  client's `anthropic-version` / `anthropic-beta` headers; the answer comes back as the provider
  sent it.
- Routed to an OpenAI provider (`gpt-mock`, `gpt-tools`, `gpt-cached`) it is translated both
  ways, streaming tool calls included.
- Errors come in Anthropic's shape with a `request-id` header.
Every answer and every stream event is validated against schemas/anthropic (anthropic_check.py);
every request leaves exactly one usage record with the provider's exact token counts."""

import json

import anthropic
import pytest

from anthropic_check import check_stream, validate_error, validate_message
from helpers import (EXPECTED, FORMAT_MESSAGES, anthropic_client, content_text, cost_micros, direct, http,
                     parse_sse, record_format, records_since, request_id, settled)
from mock_provider import (CACHE_READ_TOKENS, CACHE_WRITE_TOKENS, COMPLETION_TOKENS, OPENAI_TOOL_ID, PROMPT_TOKENS,
                           THINKING_SIGNATURE, THINKING_TEXT, TOOL_ID, TOOL_INPUT, TOOL_TEXT)

# A 1x1 PNG.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
IMAGE_URL = "https://example.com/cat.png"
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather in a city.",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                                 "required": ["city"]}}
BETA = "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"
# An older API version than the SDK's default: proves the client's header is what reaches the
# provider (the gateway's own Anthropic plugin would send 2023-06-01).
CLIENT_VERSION = "2023-01-01"
UNKNOWN_FIELD = {"x_tollgate_e2e_unknown": {"nested": [1, 2.5, None, "s"], "flag": True}}


def pass_through_body(**extra):
    """A request using what only Anthropic has: a cached system prompt, thinking, a cached
    tool, a previous tool_use turn (with its id) and its tool_result, top_k, metadata, and a
    field no schema knows."""
    return {
        "model": "claude-pass",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "You are a weather bot.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [{**WEATHER_TOOL, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "tool_choice": {"type": "auto"},
        "top_k": 5,
        "metadata": {"user_id": "e2e-user"},
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Need the tool.", "signature": "sig-from-before"},
                {"type": "tool_use", "id": "toolu_prev_42", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_prev_42", "content": "18 degrees",
                 "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "And tomorrow?"}]},
        ],
        **UNKNOWN_FIELD,
        **extra,
    }


def post_messages(gw, body, headers=None, key=None, auth="x-api-key"):
    """POST /v1/messages as Anthropic clients do (x-api-key and anthropic-version)."""
    return http(gw, "POST", "/v1/messages", body, key=key, auth=auth,
                headers={"anthropic-version": "2023-06-01", **(headers or {})})


def assert_record(gw, rid, model, provider, stream, input=PROMPT_TOKENS, output=COMPLETION_TOKENS,
                  cache_read=0, cache_write=0):
    event = settled(gw, rid)
    assert (event["model"], event["provider"], event["status"], event["stream"]) == (model, provider, 200, stream)
    assert (event["input_tokens"], event["output_tokens"]) == (input, output), event
    assert (event["cache_read_tokens"], event["cache_write_tokens"]) == (cache_read, cache_write), event
    assert event["cost_micros"] == cost_micros(model, input, output, cache_read, cache_write), event
    assert record_format(event) == FORMAT_MESSAGES
    assert event.get("estimated") is False, f"exact usage not recorded as exact: {event}"
    return event


# -- pass-through (Anthropic provider) -------------------------------------------------------------

def test_pass_through_non_streaming_keeps_every_field(gw):
    mock = gw.mocks["anthropic_pass"]
    body = pass_through_body()
    headers = {"anthropic-version": CLIENT_VERSION, "anthropic-beta": BETA}
    status, raw, resp_headers = post_messages(gw, body, headers)
    assert status == 200, raw
    upstream = mock.requests[-1]
    assert upstream["path"] == "/v1/messages"
    # The body as the client sent it, only the model replaced.
    assert upstream["body"] == {**body, "model": "claude-pass-upstream"}
    assert upstream["headers"]["anthropic-version"] == CLIENT_VERSION
    assert upstream["headers"]["anthropic-beta"] == BETA
    # The provider's key, never the client's.
    assert upstream["headers"]["x-api-key"] == "sk-mock-anthropic"
    assert "authorization" not in upstream["headers"]
    # The answer as the provider sent it (the model name aside).
    message = json.loads(raw)
    validate_message(message)
    _, expected = direct(mock, "/v1/messages", {**body, "model": "claude-pass-upstream"}, headers)
    expected = json.loads(expected)
    assert {k: v for k, v in message.items() if k != "model"} == {k: v for k, v in expected.items() if k != "model"}
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][0] == {"type": "thinking", "thinking": THINKING_TEXT, "signature": THINKING_SIGNATURE}
    assert message["content"][2]["id"] == TOOL_ID and message["content"][2]["input"] == TOOL_INPUT
    assert message["usage"] == {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS,
                                "cache_creation_input_tokens": CACHE_WRITE_TOKENS,
                                "cache_read_input_tokens": CACHE_READ_TOKENS}
    assert_record(gw, request_id(resp_headers), "claude-pass", "anthropic_pass", False,
                  cache_read=CACHE_READ_TOKENS, cache_write=CACHE_WRITE_TOKENS)


def test_pass_through_streaming_relays_the_provider_events(gw):
    mock = gw.mocks["anthropic_pass"]
    body = pass_through_body(stream=True)
    headers = {"anthropic-beta": BETA}
    status, raw, resp_headers = post_messages(gw, body, headers)
    assert status == 200, raw
    assert resp_headers["content-type"].startswith("text/event-stream")
    upstream = mock.requests[-1]
    assert upstream["body"] == {**body, "model": "claude-pass-upstream"}
    assert upstream["headers"]["anthropic-beta"] == BETA
    events = parse_sse(raw)
    message = check_stream(events)
    # The provider's events, in order (keep-alive pings aside; the model name aside).
    _, expected = direct(mock, "/v1/messages", upstream["body"], {"anthropic-version": "2023-06-01"})

    def comparable(evs):
        out = []
        for name, data in evs:
            if name == "ping":
                continue
            if name == "message_start":
                data = {**data, "message": {k: v for k, v in data["message"].items() if k != "model"}}
            out.append((name, data))
        return out
    assert comparable(events) == comparable(parse_sse(expected))
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use"]
    assert message["content"][0]["signature"] == THINKING_SIGNATURE
    assert message["content"][2]["input"] == TOOL_INPUT
    assert_record(gw, request_id(resp_headers), "claude-pass", "anthropic_pass", True,
                  cache_read=CACHE_READ_TOKENS, cache_write=CACHE_WRITE_TOKENS)


def test_pass_through_with_the_sdk(gw):
    mock = gw.mocks["anthropic_pass"]
    params = dict(
        model="claude-pass", max_tokens=4096,
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        extra_headers={"anthropic-beta": BETA},
    )
    raw = anthropic_client(gw).messages.with_raw_response.create(**params)
    validate_message(raw.json())
    message = raw.parse()
    assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
    assert (message.content[0].thinking, message.content[0].signature) == (THINKING_TEXT, THINKING_SIGNATURE)
    assert (message.content[2].id, message.content[2].name, message.content[2].input) == (TOOL_ID, "get_weather", TOOL_INPUT)
    assert message.stop_reason == "tool_use"
    assert (message.usage.cache_creation_input_tokens, message.usage.cache_read_input_tokens) == (CACHE_WRITE_TOKENS, CACHE_READ_TOKENS)
    sent = mock.requests[-1]
    assert sent["body"]["model"] == "claude-pass-upstream"
    assert sent["body"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["headers"]["anthropic-beta"] == BETA
    # The SDK sent the gateway key as a bearer token: the provider gets its own key only.
    assert sent["headers"]["x-api-key"] == "sk-mock-anthropic" and "authorization" not in sent["headers"]
    assert_record(gw, request_id(raw.headers), "claude-pass", "anthropic_pass", False,
                  cache_read=CACHE_READ_TOKENS, cache_write=CACHE_WRITE_TOKENS)

    # Streaming, assembled by the SDK.
    with anthropic_client(gw).messages.stream(**params) as stream:
        final = stream.get_final_message()
        rid = request_id(stream.response.headers)
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].signature == THINKING_SIGNATURE
    assert final.content[1].text == TOOL_TEXT and final.content[2].input == TOOL_INPUT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert final.usage.cache_creation_input_tokens == CACHE_WRITE_TOKENS
    assert mock.requests[-1]["body"]["stream"] is True
    assert_record(gw, rid, "claude-pass", "anthropic_pass", True,
                  cache_read=CACHE_READ_TOKENS, cache_write=CACHE_WRITE_TOKENS)


def test_pass_through_plain_text_without_caching_reports_zero_cache_tokens(gw):
    message = anthropic_client(gw).messages.create(
        model="claude-pass", max_tokens=64, messages=[{"role": "user", "content": "Say hello"}])
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == EXPECTED
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert not message.usage.cache_creation_input_tokens and not message.usage.cache_read_input_tokens


# -- translated (OpenAI provider) ----------------------------------------------------------------

def test_translated_request_system_images_and_limits(gw):
    mock = gw.mocks["openai_ok"]
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model="gpt-mock", max_tokens=2048, stop_sequences=["END"],
        extra_body={"temperature": 0.5, "top_k": 5},
        thinking={"type": "enabled", "budget_tokens": 1024},
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe these."},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
        ]}])
    validate_message(raw.json())
    message = raw.parse()
    assert [(b.type, b.text) for b in message.content] == [("text", EXPECTED)]
    assert message.stop_reason == "end_turn" and message.role == "assistant"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert not message.usage.cache_read_input_tokens

    sent = mock.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-mock-openai"
    up = sent["body"]
    assert up["model"] == "gpt-mock-upstream"
    assert up["max_tokens"] == 2048 and up["temperature"] == 0.5 and up["stop"] == ["END"]
    assert not up.get("stream")
    system, user = up["messages"]
    assert system["role"] == "system" and content_text(system["content"]) == "Be terse."
    assert user["role"] == "user"
    parts = [(p["type"], p.get("text") or p["image_url"]["url"]) for p in user["content"]]
    assert parts == [("text", "Describe these."), ("image_url", f"data:image/png;base64,{PNG_B64}"),
                     ("image_url", IMAGE_URL)]
    # What OpenAI chat has no field for is dropped, not forwarded.
    for dropped in ("thinking", "top_k", "system", "stop_sequences"):
        assert dropped not in up, f"{dropped} forwarded: {up}"
    assert "cache_control" not in json.dumps(up), f"cache_control forwarded: {up}"
    assert_record(gw, request_id(raw.headers), "gpt-mock", "openai_ok", False)


def test_translated_streaming_text(gw):
    with anthropic_client(gw).messages.stream(
            model="gpt-mock", max_tokens=64, messages=[{"role": "user", "content": "Say hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        rid = request_id(stream.response.headers)
    assert text == EXPECTED
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    up = gw.mocks["openai_ok"].requests[-1]["body"]
    assert up["stream"] is True and up["stream_options"]["include_usage"] is True
    assert_record(gw, rid, "gpt-mock", "openai_ok", True)

    # On the wire: every event valid, in Anthropic's order.
    status, raw, _ = post_messages(gw, {"model": "gpt-mock", "max_tokens": 64, "stream": True,
                                        "messages": [{"role": "user", "content": "Say hello"}]})
    assert status == 200, raw
    message = check_stream(parse_sse(raw))
    assert message["content"] == [{"type": "text", "text": EXPECTED}]
    assert (message["usage"]["input_tokens"], message["usage"]["output_tokens"]) == (PROMPT_TOKENS, COMPLETION_TOKENS)


def test_translated_tool_use_then_tool_result(gw):
    mock = gw.mocks["openai_tools"]
    question = {"role": "user", "content": "Weather in Paris?"}
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model="gpt-tools", max_tokens=256, tools=[WEATHER_TOOL], tool_choice={"type": "auto"}, messages=[question])
    validate_message(raw.json())
    message = raw.parse()
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == TOOL_TEXT
    tool_use = message.content[1]
    assert (tool_use.id, tool_use.name, tool_use.input) == (OPENAI_TOOL_ID, "get_weather", TOOL_INPUT)
    assert message.stop_reason == "tool_use"
    up = mock.requests[-1]["body"]
    [tool] = up["tools"]
    assert tool["type"] == "function"
    assert {k: tool["function"][k] for k in ("name", "description", "parameters")} == {
        "name": "get_weather", "description": WEATHER_TOOL["description"], "parameters": WEATHER_TOOL["input_schema"]}
    assert up["tool_choice"] == "auto"
    assert_record(gw, request_id(raw.headers), "gpt-tools", "openai_tools", False)

    # The tool_result turn reaches the provider as an assistant tool call and a tool message.
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model="gpt-tools", max_tokens=256, tools=[WEATHER_TOOL], messages=[
            question,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": OPENAI_TOOL_ID, "content": "18 degrees"}]},
        ])
    validate_message(raw.json())
    answer = raw.parse()
    assert [(b.type, b.text) for b in answer.content] == [("text", EXPECTED)] and answer.stop_reason == "end_turn"
    user, assistant, tool_msg = mock.requests[-1]["body"]["messages"]
    assert (user["role"], content_text(user["content"])) == ("user", "Weather in Paris?")
    assert assistant["role"] == "assistant" and content_text(assistant["content"]) == TOOL_TEXT
    [call] = assistant["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == (OPENAI_TOOL_ID, "function", "get_weather")
    assert json.loads(call["function"]["arguments"]) == TOOL_INPUT
    assert (tool_msg["role"], tool_msg["tool_call_id"], content_text(tool_msg["content"])) == ("tool", OPENAI_TOOL_ID, "18 degrees")
    assert_record(gw, request_id(raw.headers), "gpt-tools", "openai_tools", False)


@pytest.mark.parametrize("choice,expected", [
    ({"type": "auto"}, "auto"),
    ({"type": "any"}, "required"),
    ({"type": "none"}, "none"),
    ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
])
def test_translated_tool_choice(gw, choice, expected):
    anthropic_client(gw).messages.create(model="gpt-tools", max_tokens=64, tools=[WEATHER_TOOL], tool_choice=choice,
                                         messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert gw.mocks["openai_tools"].requests[-1]["body"]["tool_choice"] == expected


def test_translated_disable_parallel_tool_use(gw):
    anthropic_client(gw).messages.create(
        model="gpt-tools", max_tokens=64, tools=[WEATHER_TOOL],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Weather in Paris?"}])
    up = gw.mocks["openai_tools"].requests[-1]["body"]
    assert up["tool_choice"] == "auto" and up["parallel_tool_calls"] is False


def test_translated_streaming_tool_use_reassembled_by_the_sdk(gw):
    mock = gw.mocks["openai_tools"]
    params = dict(model="gpt-tools", max_tokens=256, tools=[WEATHER_TOOL],
                  messages=[{"role": "user", "content": "Weather in Paris?"}])
    with anthropic_client(gw).messages.stream(**params) as stream:
        final = stream.get_final_message()
        rid = request_id(stream.response.headers)
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == TOOL_TEXT
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == (OPENAI_TOOL_ID, "get_weather", TOOL_INPUT)
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    up = mock.requests[-1]["body"]
    assert up["stream"] is True and up["stream_options"]["include_usage"] is True
    assert_record(gw, rid, "gpt-tools", "openai_tools", True)

    # On the wire: the tool_use block opens with its id, name and input {}, then its arguments
    # arrive as input_json_delta pieces (streamed, not buffered into one).
    body = {k: v for k, v in params.items()} | {"stream": True}
    status, raw, _ = post_messages(gw, body)
    assert status == 200, raw
    events = parse_sse(raw)
    message = check_stream(events)
    assert message["content"][1] == {"type": "tool_use", "id": OPENAI_TOOL_ID, "name": "get_weather", "input": TOOL_INPUT}
    pieces = [d["delta"]["partial_json"] for n, d in events
              if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"]
    assert len([p for p in pieces if p]) >= 2, f"tool arguments not streamed: {pieces}"
    assert json.loads("".join(pieces)) == TOOL_INPUT
    assert message["stop_reason"] == "tool_use"

    # The tool_result turn, streamed, with the result given as text blocks.
    with anthropic_client(gw).messages.stream(model="gpt-tools", max_tokens=256, tools=[WEATHER_TOOL], messages=[
            params["messages"][0],
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": OPENAI_TOOL_ID,
                                          "content": [{"type": "text", "text": "18 degrees"}]}]}]) as stream:
        answer = stream.get_final_message()
    assert [(b.type, b.text) for b in answer.content] == [("text", EXPECTED)]
    tool_msg = mock.requests[-1]["body"]["messages"][-1]
    assert (tool_msg["role"], tool_msg["tool_call_id"], content_text(tool_msg["content"])) == ("tool", OPENAI_TOOL_ID, "18 degrees")


def test_translated_cached_prompt_tokens_are_reported(gw):
    """OpenAI counts cached tokens inside prompt_tokens; Anthropic reports them apart
    (cache_read_input_tokens), input_tokens being the rest."""
    raw = anthropic_client(gw).messages.with_raw_response.create(
        model="gpt-cached", max_tokens=64, messages=[{"role": "user", "content": "Say hello"}])
    validate_message(raw.json())
    usage = raw.parse().usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (PROMPT_TOKENS, 400, COMPLETION_TOKENS)
    assert not usage.cache_creation_input_tokens
    assert_record(gw, request_id(raw.headers), "gpt-cached", "openai_cached", False, cache_read=400)

    with anthropic_client(gw).messages.stream(
            model="gpt-cached", max_tokens=64, messages=[{"role": "user", "content": "Say hello"}]) as stream:
        final = stream.get_final_message()
        rid = request_id(stream.response.headers)
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (PROMPT_TOKENS, 400)
    assert_record(gw, rid, "gpt-cached", "openai_cached", True, cache_read=400)


# -- errors -------------------------------------------------------------------------------------

def anthropic_error(status, raw, headers):
    body = json.loads(raw)
    validate_error(body)
    assert headers.get("request-id"), f"no request-id header: {headers}"
    return status, body["error"]["type"]


def test_errors_in_anthropic_shape(gw):
    before = gw.usage()
    good = {"model": "gpt-mock", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}

    # SDK exception classes, with the body in Anthropic's shape.
    with pytest.raises(anthropic.AuthenticationError) as info:
        anthropic_client(gw, key="tg-not-a-real-key").messages.create(**good)
    assert anthropic_error(401, info.value.response.content, info.value.response.headers)[1] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as info:
        anthropic_client(gw).messages.create(**{**good, "model": "no-such-model"})
    assert anthropic_error(404, info.value.response.content, info.value.response.headers)[1] == "not_found_error"
    assert "no-such-model" in info.value.message

    # Raw: no key, a malformed body, no max_tokens (on a translated and a pass-through route).
    assert anthropic_error(*post_messages(gw, good, key=False)) == (401, "authentication_error")
    assert anthropic_error(*post_messages(gw, b'{"model": "gpt-mock", "messages": [')) == (400, "invalid_request_error")
    for model in ("gpt-mock", "claude-pass"):
        upstream_before = len(gw.mocks["anthropic_pass"].requests)
        no_max = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
        status, kind = anthropic_error(*post_messages(gw, no_max))
        assert (status, kind) == (400, "invalid_request_error")
        assert len(gw.mocks["anthropic_pass"].requests) == upstream_before, "an invalid request reached the provider"

    # Unauthenticated requests leave no record; the others one each (404, 400, 400, 400), free.
    new = records_since(gw, before, 4)
    assert sorted(e["status"] for e in new) == [400, 400, 400, 404]
    assert all(e["cost_micros"] == 0 for e in new)
    assert all(record_format(e) == FORMAT_MESSAGES for e in new)


def test_provider_errors_reach_the_client_in_anthropic_shape(gw):
    """The OpenAI provider behind `always-429` answers 429: the Anthropic client gets a
    rate_limit_error, not OpenAI's error shape."""
    with pytest.raises(anthropic.RateLimitError) as info:
        anthropic_client(gw).messages.create(model="always-429", max_tokens=64,
                                             messages=[{"role": "user", "content": "Hi"}])
    assert anthropic_error(429, info.value.response.content, info.value.response.headers)[1] == "rate_limit_error"


def test_bearer_and_x_api_key_are_the_same_key(gw):
    """Anthropic clients send the key as x-api-key (or, with an auth token, as a bearer token)."""
    body = {"model": "gpt-mock", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    s1, raw1, h1 = post_messages(gw, body, auth="x-api-key")
    s2, raw2, h2 = post_messages(gw, body, auth="bearer")
    assert (s1, s2) == (200, 200), (raw1, raw2)
    e1, e2 = settled(gw, request_id(h1)), settled(gw, request_id(h2))
    assert (e1["key_id"], e1["org_id"]) == (e2["key_id"], e2["org_id"])
