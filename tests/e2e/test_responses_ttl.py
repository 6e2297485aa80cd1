"""Stored Responses expire: with `[server] responses_ttl_seconds = 2` a stored response can be read
for about 2 s, then it is gone (GET 404, `previous_response_id` refused) and a background task
deletes it from the database; with `responses_ttl_seconds = 0` nothing is ever stored. On SQLite
and PostgreSQL."""

import json
import time

import openai
import pytest

from conftest import Gateway, require_db, with_orgs
from helpers import EXPECTED, client, http
from mock_provider import MockProvider

TTL = 2
GATEWAY_OPTIONS = {"server_settings": {"responses_ttl_seconds": TTL}}


def response_rows(gw):
    """Rows in the gateway's tables whose name mentions responses (where it keeps their state),
    by table; {} when it has no such table."""
    if gw.pg_db:
        tables = gw.sql("SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = current_schema() AND table_name LIKE '%respons%'")
    else:
        tables = gw.sql("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%respons%'")
    return {t[0]: int(gw.sql(f'SELECT COUNT(*) FROM "{t[0]}"')[0][0]) for t in tables}


def get_status(gw, response_id):
    status, raw, _ = http(gw, "GET", f"/v1/responses/{response_id}")
    assert status in (200, 404), raw
    return status


def test_stored_response_expires_and_is_deleted(gw):
    response = client(gw).responses.create(model="gpt-mock", input="Say hello")
    created = time.monotonic()
    assert response.output_text == EXPECTED
    assert client(gw).responses.retrieve(response.id).output_text == EXPECTED
    rows = response_rows(gw)
    assert sum(rows.values()) >= 1, f"a stored response left no row in a responses table: {rows}"

    # Readable until the TTL passes, gone soon after (bounded wait).
    while get_status(gw, response.id) == 200:
        assert time.monotonic() - created < TTL + 8, "the response outlived its TTL by 8 s"
        time.sleep(0.2)
    assert time.monotonic() - created >= TTL - 0.5, "the response expired before its TTL"
    with pytest.raises(openai.NotFoundError):
        client(gw).responses.retrieve(response.id)
    status, raw, _ = http(gw, "POST", "/v1/responses",
                          {"model": "gpt-mock", "input": "Hi", "previous_response_id": response.id})
    assert status in (400, 404), raw
    assert response.id in json.loads(raw)["error"]["message"]

    # Not only hidden: the background task deletes it.
    deadline = time.monotonic() + 15
    while sum(response_rows(gw).values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sum(response_rows(gw).values()) == 0, f"expired responses still stored: {response_rows(gw)}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def no_store_gw(request, tmp_path_factory, test_ca, plugin_cache):
    require_db(request.param)
    mocks = {"openai_ok": MockProvider("openai")}
    g = with_orgs(Gateway(tmp_path_factory.mktemp(f"gw-ttl0-{request.param}"), request.param, mocks, test_ca[0],
                          cache_dir=plugin_cache, server_settings={"responses_ttl_seconds": 0}))
    yield g
    g.stop()
    mocks["openai_ok"].stop()


def test_ttl_zero_never_stores(no_store_gw):
    gw = no_store_gw
    response = client(gw).responses.create(model="gpt-mock", input="Say hello")
    assert response.output_text == EXPECTED
    assert get_status(gw, response.id) == 404
    status, raw, _ = http(gw, "POST", "/v1/responses",
                          {"model": "gpt-mock", "input": "Hi", "previous_response_id": response.id})
    assert status in (400, 404), raw
    assert sum(response_rows(gw).values()) == 0, response_rows(gw)
