"""Data-policy routing (issue 10): providers declare zero_retention, trains_on_data and region;
an org may require zero data retention, refuse providers that train on its data, or allow
only some regions — routing then never reaches another provider, not even as a fallback, and
when no provider is left the request is refused with 403 `data_policy` naming the policy and
each provider refused, in the client's format, and recorded. On SQLite and PostgreSQL."""

import json
import time

import anthropic
import openai
import pytest

from conftest import Gateway, require_db, with_orgs
from helpers import EXPECTED, anthropic_client, client
from mock_provider import MockProvider

PRICE = 'input_per_mtok = 1.0, output_per_mtok = 2.0'


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def pg(request, tmp_path_factory, test_ca, plugin_cache):
    """A gateway whose model `policy-mock` has two routes: first `trainer` (trains on data,
    region us), then `zdr_eu` (zero retention, region eu); `zdr-down` routes to a ZDR provider
    that fails (500), then to the trainer."""
    db = request.param
    require_db(db)
    ca_file, _ = test_ca
    mocks = {"openai_ok": MockProvider("openai")}
    trainer, zdr_eu, zdr_down = MockProvider("openai"), MockProvider("openai"), MockProvider("openai", "status:500")
    extra = f"""
[providers.trainer]
base_url = "{trainer.base_url}"
api_key_env = "MOCK_OPENAI_KEY"
transform = "provider-openai"
trains_on_data = true
region = "us"

[providers.zdr_eu]
base_url = "{zdr_eu.base_url}"
api_key_env = "MOCK_OPENAI_KEY"
transform = "provider-openai"
zero_retention = true
region = "eu"

[providers.zdr_down]
base_url = "{zdr_down.base_url}"
api_key_env = "MOCK_OPENAI_KEY"
transform = "provider-openai"
zero_retention = true
region = "eu"

[[models]]
name = "policy-mock"
routes = [{{ provider = "trainer", {PRICE} }}, {{ provider = "zdr_eu", {PRICE} }}]

[[models]]
name = "zdr-down"
routes = [{{ provider = "zdr_down", {PRICE} }}, {{ provider = "trainer", {PRICE} }}]

[[models]]
name = "trainer-only"
routes = [{{ provider = "trainer", {PRICE} }}]
"""
    g = with_orgs(Gateway(tmp_path_factory.mktemp(f"policy-{db}"), db, mocks, ca_file, cache_dir=plugin_cache,
                          extra_toml=extra))
    g.trainer, g.zdr_eu, g.zdr_down = trainer, zdr_eu, zdr_down
    yield g
    g.stop()
    for m in [*mocks.values(), trainer, zdr_eu, zdr_down]:
        m.stop()


def policy_org(gw, *flags):
    org = gw.cli("orgs", "create", f"policy-{time.monotonic_ns()}")
    key = gw.cli("keys", "create", "--org", org)
    gw.cli("credits", "add", "--org", org, "--usd", "5")
    if flags:
        gw.cli("orgs", "data-policy", org, *flags)
    return org, key


def counts(gw):
    return len(gw.trainer.requests), len(gw.zdr_eu.requests), len(gw.zdr_down.requests)


def ask(gw, key, model="policy-mock"):
    return client(gw, key).chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def test_no_policy_uses_the_first_route(pg):
    _, key = policy_org(pg)
    before = counts(pg)
    assert ask(pg, key).choices[0].message.content == EXPECTED
    assert counts(pg)[0] == before[0] + 1


@pytest.mark.parametrize("flags", [["--require-zdr", "true"], ["--deny-training", "true"], ["--regions", "eu"]])
def test_a_policy_skips_the_providers_it_refuses(pg, flags):
    _, key = policy_org(pg, *flags)
    before = counts(pg)
    for _ in range(3):
        assert ask(pg, key).choices[0].message.content == EXPECTED
    after = counts(pg)
    assert after[0] == before[0], "a refused provider was reached"
    assert after[1] == before[1] + 3


def test_no_fallback_to_a_refused_provider(pg):
    _, key = policy_org(pg, "--require-zdr", "true")
    before = counts(pg)
    with pytest.raises(openai.InternalServerError):
        ask(pg, key, "zdr-down")
    after = counts(pg)
    assert after[2] > before[2], "the allowed provider was tried"
    assert after[0] == before[0], "the refused provider was used as a fallback"


def test_nothing_left_is_a_clear_refusal_in_each_format(pg):
    org, key = policy_org(pg, "--require-zdr", "true", "--regions", "eu")
    before = counts(pg)
    with pytest.raises(openai.PermissionDeniedError) as e:
        ask(pg, key, "trainer-only")
    body = e.value.body if isinstance(e.value.body, dict) else json.loads(e.value.response.text)["error"]
    assert body["code"] == "data_policy"
    assert "data policy" in body["message"] and "trainer (" in body["message"]
    assert "zero data retention" in body["message"]
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        anthropic_client(pg, key).messages.create(model="trainer-only", max_tokens=16,
                                                  messages=[{"role": "user", "content": "hi"}])
    assert e.value.response.json()["type"] == "error"
    assert "data policy" in e.value.response.json()["error"]["message"]
    assert counts(pg) == before, "nothing reached a provider"
    time.sleep(0.3)
    statuses = pg.sql(f"SELECT status FROM usage_events WHERE org_id = '{org}'")
    assert statuses == [["403"], ["403"]], "each refusal leaves a usage record"
    import urllib.request
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{pg.admin_port}/metrics", timeout=5).read().decode()
    assert "tollgate_data_policy_refused_total 2" in metrics


def test_the_catalog_shows_each_routes_data_handling(pg):
    models = {m.id: m for m in client(pg).models.list().data}
    routes = {r["provider"]: r for r in models["policy-mock"].model_extra["providers"]}
    assert routes["trainer"]["trains_on_data"] is True and routes["trainer"]["region"] == "us"
    assert routes["zdr_eu"]["zero_data_retention"] is True and routes["zdr_eu"]["region"] == "eu"
