"""The new client APIs when the upstream fails mid-stream, and under a burst: an answer already
streaming ends with one error event in the client's own API (Anthropic `error` event,
Responses `response.failed`), is recorded as a broken stream (502), and a failed Responses turn
is never stored; concurrent Responses turns each keep their own state."""

import json
import threading

from helpers import http, parse_sse, request_id, settled


def stream(gw, path, body):
    status, raw, headers = http(gw, "POST", path, {**body, "stream": True})
    assert status == 200, raw
    return parse_sse(raw), request_id(headers)


def test_messages_stream_cut_after_first_byte_ends_with_an_error_event(gw):
    for model in ("cut-openai", "cut-anthropic"):  # adapted, then pass-through
        events, rid = stream(gw, "/v1/messages", {
            "model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
        names = [name for name, _ in events]
        assert names[0] == "message_start", names
        assert names[-1] == "error", names
        assert "message_stop" not in names, f"{model}: a cut stream must not look complete"
        assert events[-1][1]["type"] == "error"
        assert events[-1][1]["error"]["type"] in ("api_error", "overloaded_error")
        assert settled(gw, rid)["status"] == 502


def test_responses_stream_cut_ends_with_response_failed_and_is_not_stored(gw):
    events, rid = stream(gw, "/v1/responses", {"model": "cut-openai", "input": "hi"})
    assert events[0][1]["type"] == "response.created"
    last = events[-1][1]
    assert last["type"] == "response.failed", [e[1].get("type") for e in events]
    assert last["response"]["status"] == "failed"
    response_id = last["response"]["id"]
    assert settled(gw, rid)["status"] == 502
    status, _, _ = http(gw, "GET", f"/v1/responses/{response_id}")
    assert status == 404, "a failed turn must not be stored"


def test_concurrent_responses_keep_their_own_state(gw):
    n = 16
    ids = [None] * n
    errors = []

    def turn(i):
        try:
            status, raw, _ = http(gw, "POST", "/v1/responses",
                                  {"model": "gpt-mock", "input": f"marker-{i}"})
            assert status == 200, raw
            ids[i] = json.loads(raw)["id"]
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=turn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(set(ids)) == n
    mock = gw.mocks["openai_ok"]
    for i, rid in enumerate(ids):
        seen = len(mock.requests)
        status, raw, _ = http(gw, "POST", "/v1/responses",
                              {"model": "gpt-mock", "input": "next", "previous_response_id": rid})
        assert status == 200, raw
        sent = json.dumps(mock.requests[seen]["body"]["messages"])
        assert f"marker-{i}" in sent, "each continuation carries its own earlier turn"
        assert all(f"marker-{j}\"" not in sent for j in range(n) if j != i)
