"""Validates what Tollgate returns against OpenAI's own OpenAPI description
(../shared/specs/openai/openapi.yaml, or $TOLLGATE_OPENAI_SPEC). Without the spec, shapes are not
validated: a warning locally, a failure under CI.

    validate(schema_name, obj)        any component schema, e.g. "CreateChatCompletionResponse",
                                      "Response", "CreateEmbeddingResponse", "ListModelsResponse",
                                      "Model", "ErrorResponse"
    validate_response_event(obj)      one Responses stream event, by its `type`
    validate_embeddings(obj, fmt)     a CreateEmbeddingResponse, base64 vectors included
"""

import functools
import json
import os
import warnings
from pathlib import Path

import jsonschema
import pytest
import yaml

from ci import ci_on

_ROOT = Path(__file__).resolve().parents[2]
_CANDIDATES = [
    os.environ.get("TOLLGATE_OPENAI_SPEC", ""),
    _ROOT.parent / "shared" / "specs" / "openai" / "openapi.yaml",
    Path("/work/shared/specs/openai/openapi.yaml"),
]
SPEC = next((Path(c) for c in _CANDIDATES if c and Path(c).is_file()), None)


@functools.lru_cache(maxsize=1)
def _spec():
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(SPEC) as f:
        return yaml.load(f, Loader=loader)


def _nullable_to_json_schema(node):
    """OpenAPI 3.0 leftovers in the 3.1 document: `nullable: true` means null is allowed."""
    if isinstance(node, dict):
        node = {k: _nullable_to_json_schema(v) for k, v in node.items()}
        if node.pop("nullable", False):
            node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_nullable_to_json_schema(v) for v in node]
    return node


# Properties the spec's schemas do not let be null although its own examples (and the live API)
# send null: the `response` snapshot of `response.created` / `response.in_progress` events has
# `"usage": null` and `"user": null` in the spec's example. Both are accepted as null.
NULL_AS_IN_SPEC_EXAMPLES = [
    ("schemas", "Response", "allOf", 2, "properties", "usage"),
    ("schemas", "ModelResponseProperties", "properties", "user"),
]


def _allow_null(components, path):
    node = components
    for key in path[:-1]:
        node = node[key]
    schema = node[path[-1]]
    node[path[-1]] = {"anyOf": [schema, {"type": "null"}]}


@functools.lru_cache(maxsize=None)
def _validator(schema_name):
    components = _nullable_to_json_schema(_spec()["components"])
    for path in NULL_AS_IN_SPEC_EXAMPLES:
        _allow_null(components, path)
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    return jsonschema.Draft202012Validator(schema)


def validate(schema_name, instance):
    if SPEC is None:
        message = "OpenAI OpenAPI spec not found (set TOLLGATE_OPENAI_SPEC): response shapes NOT validated"
        if ci_on():
            pytest.fail(message + " (a failure under CI)")
        warnings.warn(message)
        return
    errors = sorted(_validator(schema_name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"{schema_name}: " + "; ".join(_describe(e) for e in errors[:5])


def _describe(error):
    """The error, and for anyOf/oneOf failures the closest branch's reason."""
    text = f"{list(error.path)}: {error.message}"
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        text += f" (closest: {list(best.absolute_path)}: {best.message})"
    return text


@functools.lru_cache(maxsize=1)
def _response_event_schemas():
    """Responses stream event `type` -> the spec's schema for it (from ResponseStreamEvent)."""
    schemas = _spec()["components"]["schemas"]
    out = {}
    for ref in schemas["ResponseStreamEvent"]["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        type_schema = schemas[name].get("properties", {}).get("type", {})
        for t in type_schema.get("enum", []) + ([type_schema["const"]] if "const" in type_schema else []):
            out[t] = name
    return out


def validate_response_event(obj):
    """One OpenAI Responses stream event, checked against the spec's schema for its `type`
    (an unknown type fails)."""
    if SPEC is None:
        return validate("ResponseStreamEvent", obj)
    assert isinstance(obj, dict) and isinstance(obj.get("type"), str), f"not a stream event: {obj!r}"
    name = _response_event_schemas().get(obj["type"])
    assert name, f"unknown Responses stream event type {obj['type']!r}"
    validate(name, obj)


def validate_embeddings(obj, encoding_format="float"):
    """A CreateEmbeddingResponse. With encoding_format "base64" each `embedding` is a base64
    string of little-endian float32 (OpenAI's API reference), which the spec's Embedding schema
    (an array) does not describe: each must decode to whole floats, and the response is then
    validated with the decoded vectors."""
    import base64
    import struct
    if encoding_format == "base64":
        obj = json.loads(json.dumps(obj))
        for item in obj.get("data") or []:
            raw = item.get("embedding")
            assert isinstance(raw, str), f"base64 requested, got {type(raw).__name__}"
            data = base64.b64decode(raw, validate=True)
            assert data and len(data) % 4 == 0, f"base64 embedding of {len(data)} bytes"
            item["embedding"] = list(struct.unpack(f"<{len(data) // 4}f", data))
    validate("CreateEmbeddingResponse", obj)
    return obj
