"""OpenAI Responses (`POST /v1/responses`, `GET` / `DELETE /v1/responses/{id}`) through the real
gateway with the official `openai` SDK, on SQLite and PostgreSQL: plain and streamed answers
(every event validated against OpenAI's spec), function tools, conversations chained with
`previous_response_id` (the provider gets the whole conversation), stored responses visible to
their own organisation only, `store: false`. Expiry (`[server] responses_ttl_seconds`) is in
test_responses_ttl.py."""

import json

import openai
import pytest

from helpers import (EXPECTED, FORMAT_RESPONSES, client, content_text, cost_micros, http, parse_sse,
                     record_format, request_id, settled)
from mock_provider import COMPLETION_TOKENS, OPENAI_TOOL_ID, PROMPT_TOKENS, TOOL_INPUT, TOOL_TEXT
from openapi_check import validate, validate_response_event

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                               "required": ["city"]}}


@pytest.fixture(scope="module")
def other_key(gw):
    """A key of another organisation, with credits."""
    org = gw.cli("orgs", "create", "other-org")
    gw.cli("credits", "add", "--org", org, "--usd", "5")
    return gw.cli("keys", "create", "--org", org)


def assert_record(gw, rid, model, provider, stream, input=PROMPT_TOKENS, output=COMPLETION_TOKENS):
    event = settled(gw, rid)
    assert (event["model"], event["provider"], event["status"], event["stream"]) == (model, provider, 200, stream)
    assert (event["input_tokens"], event["output_tokens"]) == (input, output), event
    assert event["cost_micros"] == cost_micros(model, input, output), event
    assert record_format(event) == FORMAT_RESPONSES
    assert event.get("estimated") is False, f"exact usage not recorded as exact: {event}"
    return event


def upstream_conversation(mock):
    """The last chat request the provider got, as (role, text) pairs."""
    return [(m["role"], content_text(m.get("content"))) for m in mock.requests[-1]["body"]["messages"]]


def assert_usage(usage):
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (
        PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS)


# -- create -------------------------------------------------------------------------------------

def test_plain_response(gw):
    raw = client(gw).responses.with_raw_response.create(
        model="gpt-mock", input="Say hello", instructions="Be terse.", max_output_tokens=50)
    body = json.loads(raw.content)
    validate("Response", body)
    response = raw.parse()
    assert response.output_text == EXPECTED
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed"
    [item] = response.output
    assert (item.type, item.role, item.status) == ("message", "assistant", "completed")
    assert [(c.type, c.text) for c in item.content] == [("output_text", EXPECTED)]
    assert_usage(response.usage)
    assert response.store is not False and response.previous_response_id is None
    up = gw.mocks["openai_ok"].requests[-1]["body"]
    assert up["model"] == "gpt-mock-upstream" and up["max_tokens"] == 50 and not up.get("stream")
    assert upstream_conversation(gw.mocks["openai_ok"]) == [("system", "Be terse."), ("user", "Say hello")]
    assert_record(gw, request_id(raw.headers), "gpt-mock", "openai_ok", False)


def test_input_items_with_content_parts(gw):
    response = client(gw).responses.create(model="gpt-mock", input=[
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say "},
                                                        {"type": "input_text", "text": "hello"}]}])
    assert response.output_text == EXPECTED
    assert upstream_conversation(gw.mocks["openai_ok"]) == [("user", "Say hello")]


def test_anthropic_provider_behind_responses(gw):
    raw = client(gw).responses.with_raw_response.create(model="claude-mock", input="Say hello", max_output_tokens=64)
    validate("Response", json.loads(raw.content))
    response = raw.parse()
    assert response.output_text == EXPECTED
    assert_usage(response.usage)
    sent = gw.mocks["anthropic_ok"].requests[-1]
    assert sent["path"] == "/v1/messages" and sent["body"]["max_tokens"] == 64
    assert [(m["role"], content_text(m["content"])) for m in sent["body"]["messages"]] == [("user", "Say hello")]
    assert_record(gw, request_id(raw.headers), "claude-mock", "anthropic_ok", False)


def stream_events(gw, body, key=None):
    """POST /v1/responses with stream: every event validated against the spec, its SSE name
    equal to its type, sequence numbers consecutive; returns (events, request id)."""
    status, raw, headers = http(gw, "POST", "/v1/responses", {**body, "stream": True}, key=key)
    assert status == 200, raw
    assert headers["content-type"].startswith("text/event-stream")
    events = parse_sse(raw)
    if events and events[-1][1] == "[DONE]":
        events = events[:-1]
    assert all(isinstance(d, dict) for _, d in events), f"non-JSON event before the end: {events}"
    for name, data in events:
        validate_response_event(data)
        assert name == data["type"], f"SSE event {name!r} carries a {data['type']} event"
    numbers = [d["sequence_number"] for _, d in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and numbers[0] in (0, 1), numbers
    types = [d["type"] for _, d in events]
    assert types[:2] == ["response.created", "response.in_progress"], types
    assert types[-1] == "response.completed", types
    assert "error" not in types and "response.failed" not in types
    ids = {d["response"]["id"] for _, d in events if "response" in d}
    assert len(ids) == 1, ids
    return [d for _, d in events], request_id(headers)


def test_streamed_response_events(gw):
    events, rid = stream_events(gw, {"model": "gpt-mock", "input": "Say hello"})
    types = [e["type"] for e in events]
    assert types == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"] + ["response.output_text.delta"] * types.count("response.output_text.delta") + [
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     "response.completed"], types
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == EXPECTED
    assert [e["text"] for e in events if e["type"] == "response.output_text.done"] == [EXPECTED]
    item_ids = {e["item_id"] for e in events if "item_id" in e} | {e["item"]["id"] for e in events if "item" in e}
    assert len(item_ids) == 1, item_ids
    created, completed = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert completed["status"] == "completed"
    assert completed["usage"]["input_tokens"] == PROMPT_TOKENS and completed["usage"]["output_tokens"] == COMPLETION_TOKENS
    assert completed["usage"]["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS
    [item] = completed["output"]
    assert [(c["type"], c["text"]) for c in item["content"]] == [("output_text", EXPECTED)]
    up = gw.mocks["openai_ok"].requests[-1]["body"]
    assert up["stream"] is True and up["stream_options"]["include_usage"] is True
    assert_record(gw, rid, "gpt-mock", "openai_ok", True)

    # Streamed responses are stored too.
    stored = client(gw).responses.retrieve(completed["id"])
    assert stored.output_text == EXPECTED and stored.status == "completed"

    # The SDK's own stream helper assembles the same answer.
    with client(gw).responses.stream(model="gpt-mock", input="Say hello") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == EXPECTED
    assert_usage(final.usage)


def test_function_tools(gw):
    mock = gw.mocks["openai_tools"]
    raw = client(gw).responses.with_raw_response.create(model="gpt-tools", input="Weather in Paris?", tools=[WEATHER_TOOL])
    validate("Response", json.loads(raw.content))
    response = raw.parse()
    calls = [o for o in response.output if o.type == "function_call"]
    messages = [o for o in response.output if o.type == "message"]
    assert [c.type for c in messages[0].content] == ["output_text"] and response.output_text == TOOL_TEXT
    [call] = calls
    assert (call.call_id, call.name) == (OPENAI_TOOL_ID, "get_weather")
    assert json.loads(call.arguments) == TOOL_INPUT
    [tool] = mock.requests[-1]["body"]["tools"]
    assert tool["type"] == "function"
    assert {k: tool["function"][k] for k in ("name", "description", "parameters")} == {
        k: WEATHER_TOOL[k] for k in ("name", "description", "parameters")}
    assert_record(gw, request_id(raw.headers), "gpt-tools", "openai_tools", False)

    # The tool's output, chained: the provider gets the question, the call and its result.
    follow = client(gw).responses.create(
        model="gpt-tools", previous_response_id=response.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": OPENAI_TOOL_ID, "output": "18 degrees"}])
    assert follow.output_text == EXPECTED
    user, assistant, tool_msg = mock.requests[-1]["body"]["messages"]
    assert (user["role"], content_text(user["content"])) == ("user", "Weather in Paris?")
    assert assistant["role"] == "assistant"
    [tc] = assistant["tool_calls"]
    assert (tc["id"], tc["function"]["name"]) == (OPENAI_TOOL_ID, "get_weather")
    assert json.loads(tc["function"]["arguments"]) == TOOL_INPUT
    assert (tool_msg["role"], tool_msg["tool_call_id"], content_text(tool_msg["content"])) == ("tool", OPENAI_TOOL_ID, "18 degrees")


def test_streamed_function_call_events(gw):
    events, rid = stream_events(gw, {"model": "gpt-tools", "input": "Weather in Paris?", "tools": [WEATHER_TOOL]})
    added = [e["item"] for e in events if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"]
    assert len(added) == 1 and added[0]["call_id"] == OPENAI_TOOL_ID and added[0]["name"] == "get_weather"
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert len([d for d in deltas if d]) >= 2, f"arguments not streamed: {deltas}"
    assert json.loads("".join(deltas)) == TOOL_INPUT
    [done] = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert json.loads(done["arguments"]) == TOOL_INPUT
    final_calls = [o for o in events[-1]["response"]["output"] if o["type"] == "function_call"]
    assert [(c["call_id"], json.loads(c["arguments"])) for c in final_calls] == [(OPENAI_TOOL_ID, TOOL_INPUT)]
    assert_record(gw, rid, "gpt-tools", "openai_tools", True)


def test_previous_response_id_carries_the_conversation(gw):
    mock = gw.mocks["openai_ok"]
    sdk = client(gw)
    r1 = sdk.responses.create(model="gpt-mock", input="My name is Ada.", instructions="Be terse.")
    assert upstream_conversation(mock) == [("system", "Be terse."), ("user", "My name is Ada.")]
    r2 = sdk.responses.create(model="gpt-mock", input="What is my name?", previous_response_id=r1.id)
    r3 = sdk.responses.create(model="gpt-mock", input=[{"role": "user", "content": "Thanks."}], previous_response_id=r2.id)
    assert r3.output_text == EXPECTED
    assert (r2.previous_response_id, r3.previous_response_id) == (r1.id, r2.id)
    assert len({r1.id, r2.id, r3.id}) == 3
    # Turn 3: every earlier input and output, in order; instructions are not carried over from a
    # previous response (OpenAI's documented behaviour).
    assert upstream_conversation(mock) == [
        ("user", "My name is Ada."), ("assistant", EXPECTED),
        ("user", "What is my name?"), ("assistant", EXPECTED),
        ("user", "Thanks."),
    ]


def test_previous_response_id_that_does_not_exist(gw):
    calls = len(gw.mocks["openai_ok"].requests)
    status, raw, _ = http(gw, "POST", "/v1/responses",
                          {"model": "gpt-mock", "input": "Hi", "previous_response_id": "resp_does_not_exist"})
    assert status in (400, 404), raw
    body = json.loads(raw)
    validate("ErrorResponse", body)
    assert "resp_does_not_exist" in body["error"]["message"]
    assert len(gw.mocks["openai_ok"].requests) == calls, "the provider was called"


# -- stored responses -----------------------------------------------------------------------------

def test_get_and_delete_own_response_only(gw, other_key):
    sdk = client(gw)
    created = sdk.responses.create(model="gpt-mock", input="Say hello")

    status, raw, _ = http(gw, "GET", f"/v1/responses/{created.id}")
    assert status == 200, raw
    body = json.loads(raw)
    validate("Response", body)
    assert body["id"] == created.id and body["status"] == "completed"
    fetched = sdk.responses.retrieve(created.id)
    assert fetched.output_text == EXPECTED and fetched.id == created.id
    assert_usage(fetched.usage)

    # Another organisation sees nothing: not its response to read, chain from or delete.
    with pytest.raises(openai.NotFoundError):
        client(gw, other_key).responses.retrieve(created.id)
    status, raw, _ = http(gw, "DELETE", f"/v1/responses/{created.id}", key=other_key)
    assert status == 404, raw
    validate("ErrorResponse", json.loads(raw))
    status, raw, _ = http(gw, "POST", "/v1/responses", key=other_key,
                          body={"model": "gpt-mock", "input": "Hi", "previous_response_id": created.id})
    assert status in (400, 404), raw
    assert sdk.responses.retrieve(created.id).id == created.id, "another org's DELETE removed it"

    # Deleted by its owner: gone.
    status, raw, _ = http(gw, "DELETE", f"/v1/responses/{created.id}")
    assert status == 200, raw
    assert json.loads(raw) == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.delete(created.id)

    # The SDK's delete.
    second = sdk.responses.create(model="gpt-mock", input="Say hello")
    assert sdk.responses.delete(second.id) is None
    status, raw, _ = http(gw, "GET", f"/v1/responses/{second.id}")
    assert status == 404, raw
    validate("ErrorResponse", json.loads(raw))


def test_unknown_and_unauthenticated_lookups(gw):
    status, raw, _ = http(gw, "GET", "/v1/responses/resp_does_not_exist")
    assert status == 404, raw
    validate("ErrorResponse", json.loads(raw))
    created = client(gw).responses.create(model="gpt-mock", input="Say hello")
    status, raw, _ = http(gw, "GET", f"/v1/responses/{created.id}", key=False)
    assert status == 401, raw
    status, raw, _ = http(gw, "GET", f"/v1/responses/{created.id}", key="tg-not-a-real-key")
    assert status == 401, raw


def test_store_false_is_never_stored(gw):
    response = client(gw).responses.create(model="gpt-mock", input="Say hello", store=False)
    assert response.output_text == EXPECTED and response.store is False
    with pytest.raises(openai.NotFoundError):
        client(gw).responses.retrieve(response.id)
    status, raw, _ = http(gw, "POST", "/v1/responses",
                          {"model": "gpt-mock", "input": "Hi", "previous_response_id": response.id})
    assert status in (400, 404), raw
    # Streamed, the same.
    events, _ = stream_events(gw, {"model": "gpt-mock", "input": "Say hello", "store": False})
    with pytest.raises(openai.NotFoundError):
        client(gw).responses.retrieve(events[-1]["response"]["id"])


def test_errors_in_openai_shape(gw):
    for body, status in [
        (b'{"model": "gpt-mock", "input": ', 400),
        ({"model": "no-such-model", "input": "Hi"}, 404),
        ({"model": "gpt-mock", "input": 42}, 400),
    ]:
        got, raw, _ = http(gw, "POST", "/v1/responses", body)
        assert got == status, raw
        validate("ErrorResponse", json.loads(raw))
    with pytest.raises(openai.AuthenticationError):
        client(gw, key="tg-not-a-real-key").responses.create(model="gpt-mock", input="Hi")
