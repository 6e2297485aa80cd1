"""OpenAI embeddings (`POST /v1/embeddings`) through the real gateway with the official `openai`
SDK, on SQLite and PostgreSQL: float and base64 vectors, list and token inputs, `dimensions`,
validated against OpenAI's spec; billed on input tokens only; chat and embedding models kept
apart. The embedding model is `embed-mock` (`kind = "embedding"`), on a provider declaring
`formats = ["openai-chat", "openai-embeddings"]`."""

import base64
import json
import struct

import openai
import pytest

from helpers import (FORMAT_EMBEDDINGS, MESSAGES, client, cost_micros, http, record_format, records_since,
                     request_id, settled)
from mock_provider import EMBED_DIMS, embedding_for, embedding_tokens
from openapi_check import validate, validate_embeddings

MODEL, PROVIDER, UPSTREAM = "embed-mock", "openai_embed", "embed-mock-upstream"


def assert_record(gw, rid, tokens):
    event = settled(gw, rid)
    assert (event["model"], event["provider"], event["status"], event["stream"]) == (MODEL, PROVIDER, 200, False)
    assert (event["input_tokens"], event["output_tokens"]) == (tokens, 0), event
    assert (event["cache_read_tokens"], event["cache_write_tokens"], event["reasoning_tokens"]) == (0, 0, 0)
    assert event["cost_micros"] == cost_micros(MODEL, input=tokens) == tokens * 3, event  # 3 USD/Mtok in
    assert record_format(event) == FORMAT_EMBEDDINGS
    assert event.get("estimated") is False, f"exact usage not recorded as exact: {event}"
    return event


def test_float_embeddings(gw):
    before = gw.balance_micros(gw.org)
    inputs = ["The quick brown fox", "jumps"]
    raw = client(gw).embeddings.with_raw_response.create(model=MODEL, input=inputs, encoding_format="float")
    body = json.loads(raw.content)
    validate_embeddings(body, "float")
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1]
    assert [d.embedding for d in result.data] == [embedding_for(t) for t in inputs]
    assert all(len(d.embedding) == EMBED_DIMS for d in result.data)
    tokens = sum(embedding_tokens(t) for t in inputs)
    assert (result.usage.prompt_tokens, result.usage.total_tokens) == (tokens, tokens)
    sent = gw.mocks[PROVIDER].requests[-1]
    assert sent["path"] == "/v1/embeddings"
    assert sent["headers"]["authorization"] == "Bearer sk-mock-openai"
    assert sent["body"] == {"model": UPSTREAM, "input": inputs, "encoding_format": "float"}
    event = assert_record(gw, request_id(raw.headers), tokens)
    assert gw.balance_micros(gw.org) == before - event["cost_micros"]


def test_base64_embeddings_decoded_by_the_sdk(gw):
    """Without encoding_format the SDK asks for base64 and decodes it itself."""
    raw = client(gw).embeddings.with_raw_response.create(model=MODEL, input="hello world")
    assert gw.mocks[PROVIDER].requests[-1]["body"]["encoding_format"] == "base64"
    body = json.loads(raw.content)
    assert isinstance(body["data"][0]["embedding"], str), "base64 asked, floats sent"
    validate_embeddings(body, "base64")
    result = raw.parse()
    assert result.data[0].embedding == embedding_for("hello world")
    assert_record(gw, request_id(raw.headers), embedding_tokens("hello world"))


def test_base64_embeddings_raw(gw):
    status, raw, headers = http(gw, "POST", "/v1/embeddings",
                                {"model": MODEL, "input": ["a b", "c"], "encoding_format": "base64"})
    assert status == 200, raw
    body = json.loads(raw)
    decoded = validate_embeddings(body, "base64")
    for item, text in zip(decoded["data"], ["a b", "c"]):
        assert item["embedding"] == embedding_for(text)
    # Exactly the provider's bytes: little-endian float32.
    assert base64.b64decode(body["data"][1]["embedding"]) == struct.pack(f"<{EMBED_DIMS}f", *embedding_for("c"))
    assert_record(gw, request_id(headers), 3)


def test_dimensions_and_token_inputs(gw):
    result = client(gw).embeddings.create(model=MODEL, input="one two three", dimensions=3, encoding_format="float")
    assert result.data[0].embedding == embedding_for("one two three", 3)
    assert gw.mocks[PROVIDER].requests[-1]["body"]["dimensions"] == 3
    raw = client(gw).embeddings.with_raw_response.create(model=MODEL, input=[[1, 2, 3], [4, 5]], encoding_format="float")
    validate("CreateEmbeddingResponse", json.loads(raw.content))
    assert len(raw.parse().data) == 2
    assert gw.mocks[PROVIDER].requests[-1]["body"]["input"] == [[1, 2, 3], [4, 5]]
    assert_record(gw, request_id(raw.headers), 5)


def test_chat_model_on_embeddings_is_refused(gw):
    before, calls = gw.usage(), len(gw.mocks["openai_ok"].requests)
    status, raw, _ = http(gw, "POST", "/v1/embeddings", {"model": "gpt-mock", "input": "hello"})
    assert status in (400, 404), raw
    err = json.loads(raw)
    validate("ErrorResponse", err)
    assert "gpt-mock" in err["error"]["message"] and "embedding" in err["error"]["message"].lower(), err
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)):
        client(gw).embeddings.create(model="gpt-mock", input="hello")
    assert len(gw.mocks["openai_ok"].requests) == calls, "the chat provider was asked for embeddings"
    # A model whose providers do not declare embeddings is not served either (claude-mock).
    status, raw, _ = http(gw, "POST", "/v1/embeddings", {"model": "claude-mock", "input": "hello"})
    assert status in (400, 404), raw
    for e in records_since(gw, before, 3):
        assert e["cost_micros"] == 0 and e["status"] in (400, 404)


def test_embedding_model_on_chat_is_refused(gw):
    calls = len(gw.mocks[PROVIDER].requests)
    status, raw, _ = http(gw, "POST", "/v1/chat/completions", {"model": MODEL, "messages": MESSAGES})
    assert status in (400, 404), raw
    err = json.loads(raw)
    validate("ErrorResponse", err)
    assert MODEL in err["error"]["message"] and "embedding" in err["error"]["message"].lower(), err
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)):
        client(gw).chat.completions.create(model=MODEL, messages=MESSAGES)
    # Nor through the other chat APIs.
    status, raw, _ = http(gw, "POST", "/v1/responses", {"model": MODEL, "input": "hello"})
    assert status in (400, 404), raw
    status, raw, _ = http(gw, "POST", "/v1/messages", {"model": MODEL, "max_tokens": 16, "messages": MESSAGES},
                          headers={"anthropic-version": "2023-06-01"})
    assert status in (400, 404), raw
    assert len(gw.mocks[PROVIDER].requests) == calls, "the embedding model was asked to chat"


def test_embedding_errors(gw):
    for body in [b'{"model": "embed-mock", "input": ', {"model": MODEL}, {"model": MODEL, "input": 42},
                 {"model": "no-such-model", "input": "x"}]:
        status, raw, _ = http(gw, "POST", "/v1/embeddings", body)
        assert status in (400, 404), raw
        validate("ErrorResponse", json.loads(raw))
    with pytest.raises(openai.AuthenticationError):
        client(gw, key="tg-not-a-real-key").embeddings.create(model=MODEL, input="x")
    with pytest.raises(openai.APIStatusError) as info:
        client(gw, key=gw.broke_key).embeddings.create(model=MODEL, input="x")
    assert info.value.status_code == 402
