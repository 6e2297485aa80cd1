"""Validates what Tollgate returns on `POST /v1/messages` against JSON Schemas written from
Anthropic's public API reference (schemas/anthropic/*.json; each schema's `description` names
the page it follows): the Message object, the error shape, and each stream event type. Also
checks a whole stream's event order (`check_stream`) and rebuilds the final Message from it, as
the SDKs do.

    validate_message(obj)                 a non-streaming 200 body
    validate_error(obj)                   an error body (or a stream `error` event's data)
    validate_stream_event(name, obj)      one SSE event: its `event:` name and its JSON data
    check_stream(events) -> dict          every event validated, the order checked, the Message
"""

import functools
import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas" / "anthropic"
STREAM_EVENTS = ("message_start", "content_block_start", "content_block_delta", "content_block_stop",
                 "message_delta", "message_stop", "ping", "error")
# Which delta types may update which block type.
DELTAS_FOR_BLOCK = {
    "text": {"text_delta", "citations_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
    "server_tool_use": {"input_json_delta"},
}


@functools.lru_cache(maxsize=1)
def _registry():
    resources = []
    for path in SCHEMA_DIR.glob("*.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@functools.lru_cache(maxsize=None)
def _validator(name):
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _validate(name, instance):
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"Anthropic {name}: " + "; ".join(
        f"{list(e.path)}: {e.message}" for e in errors[:5]) + f"\n{json.dumps(instance)[:2000]}"


def validate_message(obj):
    """A complete Message (the body of a non-streaming 200 answer)."""
    _validate("message", obj)


def validate_error(obj):
    """An error body `{"type": "error", "error": {"type", "message"}}` with a documented type."""
    _validate("error", obj)


def validate_stream_event(event_name, obj):
    """One stream event: the SSE `event:` name must be a documented event type and equal the
    data's `type`, and the data must match that event's schema."""
    assert event_name in STREAM_EVENTS, f"unknown Anthropic stream event {event_name!r}: {obj}"
    assert isinstance(obj, dict) and obj.get("type") == event_name, \
        f"event {event_name!r} carries data of type {obj.get('type') if isinstance(obj, dict) else obj!r}"
    _validate(event_name, obj)


def check_stream(events):
    """`events`: [(event name, data dict)] as received. Validates every event and the protocol
    order of Anthropic's streaming docs — message_start first; per block, content_block_start,
    deltas of the block's kind, content_block_stop, blocks numbered 0, 1, … one at a time;
    then message_delta(s) and message_stop last; `ping` anywhere — and returns the Message the
    stream builds (content accumulated, tool inputs parsed, stop_reason and usage merged).
    A stream that ends with an `error` event fails here: use it only for streams expected to
    succeed."""
    assert events, "empty stream"
    for name, data in events:
        validate_stream_event(name, data)
    names = [n for n, _ in events if n != "ping"]
    assert names[0] == "message_start", f"stream starts with {names[0]}: {names}"
    assert names[-1] == "message_stop", f"stream ends with {names[-1]}: {names}"
    assert "error" not in names, f"error event in the stream: {events}"
    assert names.count("message_start") == 1 and names.count("message_stop") == 1, names
    message = json.loads(json.dumps(events[0][1]["message"]))
    open_block, partial_json, seen_delta = None, {}, False
    for name, data in events[1:]:
        if name == "ping":
            continue
        if name == "content_block_start":
            assert not seen_delta, "content block after message_delta"
            assert open_block is None, f"block {data['index']} started while {open_block} is open"
            assert data["index"] == len(message["content"]), \
                f"block index {data['index']}, expected {len(message['content'])}"
            block = dict(data["content_block"])
            if block["type"] in ("tool_use", "server_tool_use"):
                assert block["input"] == {}, f"tool_use block starts with input {block['input']}"
                partial_json[data["index"]] = ""
            message["content"].append(block)
            open_block = data["index"]
        elif name == "content_block_delta":
            assert data["index"] == open_block, f"delta for block {data['index']}, open: {open_block}"
            block = message["content"][open_block]
            delta = data["delta"]
            assert delta["type"] in DELTAS_FOR_BLOCK.get(block["type"], set()), \
                f"{delta['type']} in a {block['type']} block"
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = block.get("signature", "") + delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial_json[open_block] += delta["partial_json"]
        elif name == "content_block_stop":
            assert data["index"] == open_block, f"stop for block {data['index']}, open: {open_block}"
            block = message["content"][open_block]
            if open_block in partial_json:
                text = partial_json[open_block]
                block["input"] = json.loads(text) if text else {}
            if block["type"] == "thinking":
                assert block.get("signature"), "thinking block closed without a signature"
            open_block = None
        elif name == "message_delta":
            assert open_block is None, f"message_delta while block {open_block} is open"
            seen_delta = True
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["stop_sequence"] = data["delta"]["stop_sequence"]
            for k, v in data["usage"].items():
                if v is not None:
                    message["usage"][k] = v
        elif name == "message_stop":
            assert seen_delta, "message_stop without a message_delta"
            assert open_block is None, f"message_stop while block {open_block} is open"
    assert message["stop_reason"] is not None, "no stop_reason by the end of the stream"
    validate_message(message)
    return message

