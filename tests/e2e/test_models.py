"""The model catalog (`GET /v1/models`, `GET /v1/models/{id}`) through the real gateway with the
official `openai` SDK, on SQLite and PostgreSQL: OpenAI's list and model shapes (validated
against the spec) plus OpenRouter-style metadata from the config — name, description,
context_length, architecture modalities, pricing in USD per token as decimal strings,
supported_parameters, and the providers serving the model in route order."""

import json
from decimal import Decimal

import openai
import pytest

from conftest import CATALOG_MODEL, MODELS, route_settings
from helpers import client, http
from openapi_check import validate


def catalog(gw):
    status, raw, _ = http(gw, "GET", "/v1/models")
    assert status == 200, raw
    body = json.loads(raw)
    validate("ListModelsResponse", body)
    return {m["id"]: m for m in body["data"]}


def per_token(usd_per_mtok):
    return Decimal(str(usd_per_mtok)) / Decimal(1_000_000)


def price(pricing, key):
    """A price of the catalog: a plain decimal string (as OpenRouter's), as a Decimal."""
    value = pricing[key]
    assert isinstance(value, str), f"pricing.{key} is {value!r}, not a string"
    assert "e" not in value.lower() and value.strip() == value, f"pricing.{key} {value!r} is not a plain decimal"
    return Decimal(value)


def provider_names(model):
    entries = model.get("providers", model.get("endpoints"))
    assert isinstance(entries, list), f"no providers/endpoints list: {sorted(model)}"
    return [e if isinstance(e, str) else (e.get("provider") or e.get("provider_name") or e.get("name")) for e in entries]


def test_list_has_every_configured_model(gw):
    models = catalog(gw)
    # Models whose providers this gateway has (the guardrail tests' leak models need their own).
    configured = {m for m, routes in MODELS.items() if all(p in gw.mocks for p in routes)}
    assert set(models) == configured, set(models) ^ configured
    for m in models.values():
        validate("Model", m)
        assert m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"]
        assert isinstance(m["name"], str) and m["name"]
        assert isinstance(m["supported_parameters"], list)
        arch = m["architecture"]
        assert isinstance(arch["input_modalities"], list) and isinstance(arch["output_modalities"], list)
        expected = route_settings(m["id"])
        assert price(m["pricing"], "prompt") == per_token(expected["input_per_mtok"]), m
        assert price(m["pricing"], "completion") == per_token(expected["output_per_mtok"]), m
        assert provider_names(m) == MODELS[m["id"]], m

    # The SDK reads the same list.
    ids = [m.id for m in client(gw).models.list()]
    assert sorted(ids) == sorted(models)


def test_model_metadata_from_the_config(gw):
    m = catalog(gw)["gpt-catalog"]
    assert m["description"] == CATALOG_MODEL["description"]
    assert m["context_length"] == CATALOG_MODEL["context_length"]
    assert m["architecture"]["input_modalities"] == CATALOG_MODEL["input_modalities"]
    assert m["architecture"]["output_modalities"] == CATALOG_MODEL["output_modalities"]
    assert sorted(m["supported_parameters"]) == sorted(CATALOG_MODEL["supported_parameters"])
    # 2.5 / 10 / 1.25 USD per million tokens in the config, per token here.
    assert price(m["pricing"], "prompt") == Decimal("0.0000025")
    assert price(m["pricing"], "completion") == Decimal("0.00001")
    assert price(m["pricing"], "input_cache_read") == Decimal("0.00000125")
    assert provider_names(m) == ["openai_ok", "openai_tools"]
    # Without metadata in the config: text in, text out.
    plain = catalog(gw)["gpt-mock"]
    assert plain["architecture"]["input_modalities"] == ["text"]
    assert plain["architecture"]["output_modalities"] == ["text"]
    assert price(catalog(gw)["embed-mock"]["pricing"], "prompt") == Decimal("0.000003")
    assert catalog(gw)["embed-mock"]["context_length"] == 8192


def test_retrieve(gw):
    raw = client(gw).models.with_raw_response.retrieve("gpt-catalog")
    body = json.loads(raw.content)
    validate("Model", body)
    assert body == catalog(gw)["gpt-catalog"]
    model = raw.parse()
    assert (model.id, model.object) == ("gpt-catalog", "model")
    # An id that needs percent-encoding in the path.
    odd = 'csv,"quoted" model'
    assert client(gw).models.retrieve(odd).id == odd


def test_unknown_model_is_404_in_openai_shape(gw):
    with pytest.raises(openai.NotFoundError):
        client(gw).models.retrieve("no-such-model")
    status, raw, _ = http(gw, "GET", "/v1/models/no-such-model")
    assert status == 404, raw
    err = json.loads(raw)
    validate("ErrorResponse", err)
    assert err["error"]["code"] == "model_not_found" and "no-such-model" in err["error"]["message"]


def test_the_anthropic_sdk_lists_the_same_catalog(gw):
    """`anthropic.Anthropic().models.list()` against the gateway: Anthropic's object fields and
    pagination are present alongside OpenAI's."""
    import anthropic
    claude = anthropic.Anthropic(base_url=f"http://127.0.0.1:{gw.port}", api_key=gw.key)
    page = claude.models.list()
    ids = [m.id for m in page.data]
    assert "claude-mock" in ids and "gpt-mock" in ids
    assert all(m.type == "model" and m.display_name == m.id for m in page.data)
    assert page.has_more is False
