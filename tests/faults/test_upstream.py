"""A failing upstream: errors, resets, hangs, drips, stalls, malformed and oversized bodies, and a
hostile transform plugin fed by it. For each: the client gets a bounded, OpenAI-shaped answer,
the gateway gives up on the hung upstream (the chaos provider saw it close the socket), good
traffic flows meanwhile, RSS comes back, and the request has exactly one usage record charging
only what was delivered (nothing when the upstream failed before the first byte)."""

import json
import math

import openai
import pytest

from conftest import FALLBACKS, FAULTS, HOSTILE
from harness import EXPECTED, GOOD_COST, RSS_SLACK_MB, Scenario

# Test config: first_byte_timeout 1 s, stall_timeout 0.5 s, upstream_timeout 5 s,
# max_upstream_body_bytes 8 MB. SLACK covers a debug build on a busy 2-core machine.
SLACK = 2.0

# model -> (client status, error code or None, seconds the answer may take, the gateway must
# close the held upstream socket)
BEFORE_FIRST_BYTE = {
    "f-429": (429, None, SLACK, False),
    "f-500": (500, None, SLACK, False),
    "f-502": (502, None, SLACK, False),
    "f-503": (503, None, SLACK, False),
    "f-reset": (502, None, SLACK, False),
    "f-hang": (504, "upstream_timeout", 0.5 + SLACK, True),         # headers, then no body: stall
    "f-slow-headers": (504, "upstream_timeout", 1.0 + SLACK, True),  # no header: first-byte timeout
    "f-drip": (504, "upstream_timeout", 5.0 + SLACK, True),         # 1 byte / 200 ms: whole attempt
    "f-stall": (504, "upstream_timeout", 0.5 + SLACK, True),        # half a body, then nothing
    "f-malformed-json": (502, None, SLACK, False),
    "f-short": (502, None, SLACK, False),                             # content-length > bytes sent
    "f-huge": (502, None, 3.0 + SLACK, False),                        # 80 MB body
}
STREAM_BEFORE_FIRST_BYTE = ["f-429", "f-503", "f-reset", "f-hang", "f-slow-headers"]


def upstream_of(gw, model, stream):
    """The chaos provider's record of the latest request for a gateway model."""
    seen = [r for r in gw.chaos.by_model(FAULTS.get(model) or FALLBACKS.get(model)) if r.stream == stream]
    assert seen, f"the chaos provider never saw a request for {model}"
    return seen[-1]


def assert_gave_up(gw, model, stream, bound):
    up = upstream_of(gw, model, stream)
    assert up.closed.wait(bound), f"{model}: the gateway kept the hung upstream socket open past {bound:.1f}s"
    assert up.closed_after() < bound, f"{model}: upstream socket closed only after {up.closed_after():.1f}s"
    return round(up.closed_after(), 2)


def check_failed_before_first_byte(gw, out, model, stream):
    status, code, bound, closes = BEFORE_FIRST_BYTE[model]
    assert out.status == status, f"{model}: client got {out.status} ({out.error!r}), expected {status}"
    assert isinstance(out.error, openai.APIStatusError)
    if code:
        assert out.code == code, f"{model}: error code {out.code!r}, expected {code!r}"
    assert out.elapsed < bound, f"{model}: the answer took {out.elapsed:.1f}s (bound {bound:.1f}s)"
    rec = gw.record(out.request_id)
    assert rec["status"] == status, rec
    assert rec["cost_micros"] == 0, f"charged {rec['cost_micros']} for an upstream that delivered nothing"
    if closes:
        assert_gave_up(gw, model, stream, bound)


@pytest.mark.parametrize("model", list(BEFORE_FIRST_BYTE))
def test_upstream_fails_before_first_byte(gw, model):
    with Scenario(gw, f"upstream {FAULTS[model]}") as s:
        out = gw.call(model, timeout=15)
        s.figures.update(client_status=out.status, client_seconds=round(out.elapsed, 2))
    check_failed_before_first_byte(gw, out, model, False)
    if model == "f-huge":
        assert s.peak < gw.rss_base + RSS_SLACK_MB, f"peak RSS {s.peak:.0f} MB reading an 80 MB body"


@pytest.mark.parametrize("model", STREAM_BEFORE_FIRST_BYTE)
def test_stream_upstream_fails_before_first_byte(gw, model):
    with Scenario(gw, f"stream upstream {FAULTS[model]}") as s:
        out = gw.call(model, stream=True, timeout=15)
        s.figures.update(client_status=out.status, client_seconds=round(out.elapsed, 2))
    check_failed_before_first_byte(gw, out, model, True)


@pytest.mark.parametrize("model", ["f-stall", "f-cut"])
def test_stream_cut_after_first_byte_charges_what_was_delivered(gw, model):
    with Scenario(gw, f"stream {FAULTS[model]} after 2 chunks") as s:
        out = gw.call(model, stream=True, timeout=15)
        s.figures.update(client_seconds=round(out.elapsed, 2), received=out.text)
    assert out.status == 200, (out.status, out.error)
    assert isinstance(out.error, openai.APIError), f"stream did not end with an error event: {out.error!r}"
    assert out.text == "Hello from"
    if model == "f-stall":
        assert out.elapsed < 0.5 + SLACK, f"stalled stream ended after {out.elapsed:.1f}s"
        s.figures["upstream_closed_s"] = assert_gave_up(gw, model, True, 0.5 + SLACK)
    rec = gw.record(out.request_id)
    assert rec["status"] == 502, rec
    assert rec["output_tokens"] == math.ceil(len(out.text) / 4), rec
    assert rec["input_tokens"] == 0, "the provider never reported input tokens"
    assert rec["cost_micros"] == rec["output_tokens"] * 2, rec


@pytest.mark.parametrize("model", ["f-malformed-sse", "f-oversized-sse"])
def test_malformed_stream_never_reaches_the_client_as_data(gw, model):
    with Scenario(gw, f"stream upstream {FAULTS[model]}") as s:
        out = gw.call(model, stream=True, timeout=15)
        s.figures.update(client_status=out.status, client_seconds=round(out.elapsed, 2))
    assert isinstance(out.error, openai.APIError), f"garbage passed through or no error: {out.error!r}"
    assert out.text == ""
    assert out.elapsed < 3.0 + SLACK, f"took {out.elapsed:.1f}s"
    rec = gw.record(out.request_id)
    assert rec["status"] == 502, rec
    assert rec["cost_micros"] == 0, rec
    assert s.peak < gw.rss_base + RSS_SLACK_MB, f"peak RSS {s.peak:.0f} MB on a 16 MB SSE line"


@pytest.mark.parametrize("model", list(FALLBACKS))
def test_fallback_to_the_next_route_before_first_byte(gw, model):
    with Scenario(gw, f"fallback after {FALLBACKS[model]}") as s:
        out = gw.call(model, timeout=15)
        s.figures.update(client_seconds=round(out.elapsed, 2))
    assert out.error is None, f"{model}: {out.error!r}"
    assert out.text == EXPECTED
    assert out.elapsed < 1.0 + SLACK
    rec = gw.record(out.request_id)
    assert (rec["status"], rec["provider"], rec["cost_micros"]) == (200, "good", GOOD_COST), rec
    attempts = json.loads(rec["attempts"])
    assert [a["provider"] for a in attempts] == [model.replace("-", "_"), "good"], attempts


@pytest.mark.parametrize("model", ["fb-429", "fb-hang"])
def test_stream_fallback_to_the_next_route_before_first_byte(gw, model):
    with Scenario(gw, f"stream fallback after {FALLBACKS[model]}") as s:
        out = gw.call(model, stream=True, timeout=15)
        s.figures.update(client_seconds=round(out.elapsed, 2))
    assert out.error is None, f"{model}: {out.error!r}"
    assert out.text == EXPECTED
    rec = gw.record(out.request_id)
    assert (rec["status"], rec["provider"], rec["cost_micros"]) == (200, "good", GOOD_COST), rec


@pytest.mark.parametrize("model", list(HOSTILE))
def test_hostile_transform_plugin_fed_by_the_upstream(gw, model):
    """The upstream answers `loop`, `trap`, `memory` or `huge:100000000`; the provider's transform
    is test-plugins/hostile, which then spins, panics, grows its memory or returns 100 MB."""
    with Scenario(gw, f"hostile plugin {HOSTILE[model]}") as s:
        out = gw.call(model, timeout=15)
        s.figures.update(client_status=out.status, client_seconds=round(out.elapsed, 2))
    assert isinstance(out.error, openai.APIStatusError) and out.status >= 500, (out.status, out.error)
    assert out.elapsed < SLACK
    rec = gw.record(out.request_id)
    assert rec["status"] >= 500 and rec["cost_micros"] == 0, rec
