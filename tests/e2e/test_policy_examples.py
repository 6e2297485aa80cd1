"""The worked routing examples in policies/examples/ (issue 11), loaded into a running gateway
as an operator would (the policy written after start: hot reload), and the dry run
`tollgate policy simulate` over the traffic they produced:

- eu-residency: an org listed is served only by providers in an allowed region, even when a
  cheaper, earlier one exists; with none left, 403 `data_residency` in the client's format,
  naming each provider and its region; other orgs are routed as before;
- cheapest-under-latency: the cheapest provider first until its measured latency passes the
  ceiling, then the faster one;
- simulate: a candidate policy ("cheapest" for the residency model) replayed over the recorded
  requests: which would move, and the cost difference, matching what was recorded.
SQLite only: the examples are plugins and policy files, the database plays no part."""

import json
import subprocess
import time
import urllib.request

import openai
import pytest

from conftest import BINARY, ROOT, Gateway, require_db, with_orgs
from helpers import client
from mock_provider import MockProvider

MESSAGES = [{"role": "user", "content": "hi"}]


def served(mock, before):
    return len(mock.requests) - before


@pytest.fixture(scope="module")
def ex(tmp_path_factory, test_ca, plugin_cache):
    require_db("sqlite")
    ca_file, _ = test_ca
    tmp = tmp_path_factory.mktemp("examples")
    eu, us, slow, fast = (MockProvider("openai"), MockProvider("openai"),
                          MockProvider("openai", "slow:300"), MockProvider("openai"))
    providers = "".join(f"""
[providers.{n}]
base_url = "{m.base_url}"
api_key_env = "MOCK_OPENAI_KEY"
transform = "provider-openai"
""" for n, m in {"eu": eu, "us": us, "slow": slow, "fast": fast}.items())
    models = """
[[models]]
name = "res"
routes = [{ provider = "us", input_per_mtok = 1, output_per_mtok = 1 }, { provider = "eu", input_per_mtok = 2, output_per_mtok = 2 }]

[[models]]
name = "us-only"
routes = [{ provider = "us", input_per_mtok = 1, output_per_mtok = 1 }]

[[models]]
name = "lat"
routes = [{ provider = "slow", input_per_mtok = 1, output_per_mtok = 1 }, { provider = "fast", input_per_mtok = 5, output_per_mtok = 5 }]
"""
    pdir = tmp / "policies"
    pdir.mkdir()
    g = with_orgs(Gateway(tmp, "sqlite", {"openai_ok": MockProvider("openai")}, ca_file, cache_dir=plugin_cache,
                          extra_toml=f'\n[policy]\ndir = "{pdir}"\ndebounce_ms = 50\n' + providers + models))
    g.eu, g.us, g.slow, g.fast, g.pdir = eu, us, slow, fast, pdir
    g.other_org = g.cli("orgs", "create", "elsewhere")
    g.other_key = g.cli("keys", "create", "--org", g.other_org)
    g.cli("credits", "add", "--org", g.other_org, "--usd", "5")
    # The shipped examples, with this gateway's org and providers put in (as their comments say).
    text = (ROOT / "policies/examples/eu-residency.toml").read_text()
    text = text.replace('orgs = ["org_eu_customer"]', f'orgs = ["{g.org}"]')
    text = text.replace('regions = { mistral = "eu", "openai-eu" = "eu", openai = "us", anthropic = "us" }',
                        'regions = { eu = "eu", us = "us" }')
    assert f'"{g.org}"' in text and 'eu = "eu"' in text
    (pdir / "10-eu.toml").write_text(text)
    text = (ROOT / "policies/examples/cheapest-under-latency.toml").read_text()
    text = text.replace('models = ["gpt-*"]', 'models = ["lat"]').replace("max_latency_ms = 800", "max_latency_ms = 100")
    (pdir / "20-latency.toml").write_text(text)
    deadline = time.time() + 10
    while time.time() < deadline:
        status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{g.admin_port}/admin/policy", timeout=5).read())
        if len(status["routes"]) == 2:
            break
        time.sleep(0.05)
    assert [r["routing_plugin"] for r in status["routes"]] == ["eu-residency", "cheapest-under-latency"], status
    yield g
    g.stop()
    for m in [eu, us, slow, fast, *g.mocks.values()]:
        m.stop()


def test_eu_residency_keeps_an_orgs_requests_in_the_eu(ex):
    before_eu, before_us = len(ex.eu.requests), len(ex.us.requests)
    for _ in range(3):
        client(ex).chat.completions.create(model="res", messages=MESSAGES)
    assert (served(ex.eu, before_eu), served(ex.us, before_us)) == (3, 0)
    # another org: the route does not match; the catalog order (us first) applies
    client(ex, key=ex.other_key).chat.completions.create(model="res", messages=MESSAGES)
    assert served(ex.us, before_us) == 1


def test_eu_residency_refuses_when_no_eu_provider_is_left(ex):
    before = len(ex.us.requests)
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(ex).chat.completions.create(model="us-only", messages=MESSAGES)
    assert e.value.code == "data_residency"
    assert "us (region us)" in e.value.message
    assert served(ex.us, before) == 0


def test_cheapest_under_latency_leaves_the_cheap_provider_once_it_is_slow(ex):
    # (the other org: the residency route, first in the policy, matches only the listed org)
    c = client(ex, key=ex.other_key)
    for _ in range(2):  # the cheap one first, measured at ~300 ms (over the 100 ms ceiling)
        c.chat.completions.create(model="lat", messages=MESSAGES)
    before_slow, before_fast = len(ex.slow.requests), len(ex.fast.requests)
    for _ in range(3):
        c.chat.completions.create(model="lat", messages=MESSAGES)
    assert (served(ex.slow, before_slow), served(ex.fast, before_fast)) == (0, 3)


def test_simulate_replays_recorded_usage_through_a_candidate_policy(ex, tmp_path):
    # every earlier request of `res` is recorded: 3 by eu (the listed org), 1 by us
    deadline = time.time() + 5
    while time.time() < deadline and sum(1 for e in ex.usage() if e["model"] == "res") < 4:
        time.sleep(0.05)
    (tmp_path / "p.toml").write_text('[[routes]]\nname = "cheap"\nmodels = ["res"]\nstrategy = "cheapest"\n')
    out = subprocess.run([str(BINARY), "--config", str(ex.config), "policy", "simulate", "--policy", str(tmp_path),
                          "--since", "1h", "--json"], env=ex.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    res = report["models"]["res"]
    assert res["actual_providers"] == {"eu": 3, "us": 1}
    assert res["simulated_providers"] == {"us": 4} and res["changed"] == 3
    recorded = sum(e["cost_micros"] for e in ex.usage() if e["model"] == "res")
    assert res["actual_cost_micros"] == recorded
    # us costs half of eu per token: the three eu requests would have cost half
    eu_cost = sum(e["cost_micros"] for e in ex.usage() if e["model"] == "res" and e["provider"] == "eu")
    assert res["simulated_cost_micros"] == recorded - eu_cost // 2
    # the table form says the same in words
    out = subprocess.run([str(BINARY), "--config", str(ex.config), "policy", "simulate", "--policy", str(tmp_path),
                          "--since", "1h"], env=ex.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "would go to another provider first" in out.stdout, out.stderr
    bad = subprocess.run([str(BINARY), "--config", str(ex.config), "policy", "simulate", "--policy", str(tmp_path),
                          "--since", "yesterday"], env=ex.env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--since" in bad.stderr
