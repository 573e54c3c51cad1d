"""Governance, end to end with the real SDKs: `[models]` allows and refuses models per provider (deny
wins, globs and `re:` regexes, a provider allow list, `default = "deny"`), a refused call raises the
SDK's PermissionDeniedError naming the model and the rule, is not retried and never reaches the
provider; `blocked_hosts` refuses unsanctioned AI hosts at CONNECT."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from conftest import mock_policy, start_agent, stop

RULES = """
[models]
deny = ["gpt-4.5*", "re:^o1-pro"]
[models.anthropic]
allow = ["claude-*"]
[models.gemini]
allow = ["gemini-2.5-flash*"]
[models.mistral]
default = "deny"
[azure.deployments]
"legacy-prod" = "gpt-4.5-preview"
"""


@pytest.fixture(scope="module")
def governed(mock, tmp_path_factory):
    text = 'blocked_hosts = ["chat.example-ai.com", "*.unsanctioned.ai"]\n' + mock_policy(mock, RULES)
    a = start_agent(tmp_path_factory.mktemp("governed"), text)
    yield a
    stop(a.proc)


def received(mock, marker: str) -> list:
    return [r for r in mock.requests() if marker in (r.get("query") or "")]


def oai(agent, retries: int = 2):
    return openai.OpenAI(api_key="sk-gov", base_url=agent.base_url("openai") + "/v1", max_retries=retries,
                         http_client=httpx.Client(trust_env=False, timeout=10))


def test_openai_sdk_allowed_and_denied_models(governed, mock):
    tag = uuid.uuid4().hex[:8]
    ok = oai(governed).chat.completions.create(model="gpt-4o-mini", extra_query={"m": f"{tag}-ok"},
                                               messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content and received(mock, f"{tag}-ok")
    for model, rule in [("gpt-4.5-preview", 'models.deny[0] = "gpt-4.5*"'), ("o1-pro-2025-03-19", 'models.deny[1] = "re:^o1-pro"')]:
        marker = f"{tag}-{model}"
        with pytest.raises(openai.PermissionDeniedError) as e:
            oai(governed).chat.completions.create(model=model, extra_query={"m": marker},
                                                  messages=[{"role": "user", "content": "hi"}])
        msg = e.value.response.json()["error"]["message"]
        assert f'model "{model}"' in msg and rule in msg, msg
        assert e.value.response.json()["airlock"]["type"] == "model_blocked"
        assert e.value.response.headers["x-should-retry"] == "false"
        assert received(mock, marker) == [], "the provider saw a refused request"
        recs = [r for r in governed.records() if marker in r["path"]]
        assert len(recs) == 1, "the SDK retried a policy refusal"
        assert (recs[0]["status"], recs[0]["decided_by"], recs[0]["cost_status"]) == (403, "authorize:models", "not_billed")


def test_anthropic_sdk_provider_allow_list(governed, mock):
    tag = uuid.uuid4().hex[:8]
    client = anthropic.Anthropic(api_key="sk-ant-gov", base_url=governed.base_url("anthropic"), max_retries=2,
                                 http_client=anthropic.DefaultHttpxClient(trust_env=False))
    r = client.messages.create(model="claude-haiku-4-5", max_tokens=16, extra_query={"m": f"{tag}-ok"},
                               messages=[{"role": "user", "content": "hi"}])
    assert r.content and received(mock, f"{tag}-ok")
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        client.messages.create(model="gpt-4o", max_tokens=16, extra_query={"m": f"{tag}-no"},
                               messages=[{"role": "user", "content": "hi"}])
    body = e.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "permission_error", body
    assert "models.anthropic.allow" in body["error"]["message"] and "claude-*" in body["error"]["message"]
    assert received(mock, f"{tag}-no") == []


def test_gemini_model_in_the_url_and_default_deny(governed, mock):
    tag = uuid.uuid4().hex[:8]
    base = governed.base_url("gemini")
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with httpx.Client(trust_env=False, timeout=10) as c:
        ok = c.post(f"{base}/v1beta/models/gemini-2.5-flash:generateContent?m={tag}-ok", json=body,
                    headers={"x-goog-api-key": "AIza-gov"})
        assert ok.status_code == 200, ok.text
        no = c.post(f"{base}/v1beta/models/gemini-2.5-pro:generateContent?m={tag}-no", json=body,
                    headers={"x-goog-api-key": "AIza-gov"})
    assert no.status_code == 403
    err = no.json()["error"]
    assert err["status"] == "PERMISSION_DENIED" and "models.gemini.allow" in err["message"], err
    assert err["details"][0]["reason"] == "model_blocked"
    assert received(mock, f"{tag}-no") == []


def test_default_deny_for_one_provider(governed, mock):
    client = openai.OpenAI(api_key="sk-gov", base_url=governed.base_url("mistral") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}])
    assert 'rule models.mistral.default = "deny"' in e.value.response.json()["error"]["message"]


def test_an_azure_deployment_is_judged_by_the_model_it_serves(governed, mock):
    tag = uuid.uuid4().hex[:8]
    client = openai.AzureOpenAI(api_key="az-gov", api_version="2024-10-21", max_retries=0,
                                azure_endpoint=governed.base_url("azure/mockres"),
                                http_client=httpx.Client(trust_env=False, timeout=10))
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="legacy-prod", extra_query={"m": tag},
                                       messages=[{"role": "user", "content": "hi"}])
    msg = e.value.response.json()["error"]["message"]
    assert '"gpt-4.5-preview" (deployment "legacy-prod")' in msg, msg
    assert received(mock, tag) == []


def test_blocked_hosts_are_refused_at_connect(governed):
    for host in ("chat.example-ai.com", "app.unsanctioned.ai"):
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--proxy", governed.proxy_url,
                            "-p", f"https://{host}/"], capture_output=True, text=True, timeout=30)
        assert "403" in r.stdout + r.stderr, (host, r.stdout, r.stderr)
    # A refused request is in the journal too.
    rows = [json.loads(l) for l in governed.cli("journal", "export").stdout.splitlines() if l.strip()]
    assert any(r.get("decided_by") == "authorize:models" for r in rows)


EXAMPLES = Path(__file__).resolve().parents[2] / "policies" / "examples"


def airlock(*args) -> subprocess.CompletedProcess:
    from conftest import binary
    return subprocess.run([str(binary("airlock")), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_the_enterprise_example_passes_its_own_cases_and_a_wrong_case_fails(tmp_path):
    p = airlock("policy", "test", EXAMPLES / "tests" / "enterprise.cases.toml")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "6 of 6 cases passed" in p.stdout and p.stdout.count("ok    ") == 6, p.stdout
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(f'policy = "{EXAMPLES / "enterprise.toml"}"\n'
                     '[[case]]\nname = "someone thinks 4.5 is fine"\nprovider = "openai"\nmodel = "gpt-4.5-turbo"\nexpect = "allow"\n'
                     '[[case]]\nprovider = "openai"\nmodel = "gpt-4o"\nexpect = "allow"\nrule = "models.openai.allow[1]"\n')
    p = airlock("policy", "test", wrong)
    assert p.returncode == 1, p.stdout
    assert "FAIL  someone thinks 4.5 is fine: expected allow, got deny by models.deny[0]" in p.stdout, p.stdout
    assert "FAIL  case 2: expected allow by models.openai.allow[1], got allow by models.openai.allow[0]" in p.stdout
    assert "0 of 2 cases passed" in p.stdout


def test_explain_prints_the_decision_and_every_rule(tmp_path):
    p = airlock("policy", "explain", "--policy", EXAMPLES / "enterprise.toml", "--provider", "openai",
                "--model", "gpt-4.5-turbo", "--user", "alice")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("decision: deny (model_blocked)"), p.stdout
    assert 'models: "gpt-4.5-turbo" refused by models.deny[0] = "gpt-4.5*"' in p.stdout
    p = airlock("policy", "explain", "--policy", EXAMPLES / "enterprise.toml", "--provider", "openai",
                "--model", "o3-mini", "--user", "alice", "--app", "node", "--json")
    e = json.loads(p.stdout)
    assert (e["decision"], e["rule"]) == ("allow", "models.openai.allow[2]"), e
    trail = "\n".join(e["trail"])
    for name in ("per-person-daily", "per-person-monthly", "reasoning-models", "per-app", "per-person"):
        assert f'"{name}" counts it' in trail, trail
    assert "(user=alice)" in trail and "(app=node)" in trail
