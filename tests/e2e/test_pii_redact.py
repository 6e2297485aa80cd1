"""The example plugin pii-redact as the plugin of retention mode retain-all (issue 10): PII sent
through the gateway is stored redacted — emails, phone numbers, Luhn-valid card numbers — and
the rest of the request, and the answer, are stored intact. On SQLite and PostgreSQL."""

import time

from helpers import EXPECTED, client

GATEWAY_OPTIONS = {"extra_toml": '[retention]\nplugins = { retain-all = "pii-redact" }\n'}


def test_content_is_stored_redacted(gw):
    org = gw.cli("orgs", "create", "pii-co")
    key = gw.cli("keys", "create", "--org", org)
    gw.cli("credits", "add", "--org", org, "--usd", "1")
    gw.cli("orgs", "retention", org, "--mode", "retain-all")
    text = "I am ann.lee@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, order 4111111111111112"
    answer = client(gw, key).chat.completions.create(model="gpt-mock", max_tokens=256,
                                                     messages=[{"role": "user", "content": text}])
    assert answer.choices[0].message.content == EXPECTED
    time.sleep(0.4)
    flags = gw.sql(
        "SELECT "
        "CASE WHEN request_body LIKE '%ann.lee@example.com%' THEN 1 ELSE 0 END, "
        "CASE WHEN request_body LIKE '%7946 0958%' THEN 1 ELSE 0 END, "
        "CASE WHEN request_body LIKE '%4111 1111 1111 1111%' THEN 1 ELSE 0 END, "
        "CASE WHEN request_body LIKE '%I am [EMAIL], call [PHONE], card [CARD], order 4111111111111112%' THEN 1 ELSE 0 END, "
        "CASE WHEN request_body LIKE '%\"max_tokens\":256%' THEN 1 ELSE 0 END, "
        "CASE WHEN response_body LIKE '%Hello from the mock provider.%' THEN 1 ELSE 0 END "
        f"FROM request_content WHERE org_id = '{org}'")
    assert flags == [["0", "0", "0", "1", "1", "1"]], flags
