"""The policy language as admins meet it: errors that name the file, line, column and key with the
nearest valid key; the `[blocked]` section refusing hosts at CONNECT, in absolute-form and in base-URL
mode in the caller's dialect while the rest keeps working; the example policies in `policies/examples/`
and the committed JSON Schema."""

from __future__ import annotations

import json
import ssl
import subprocess

import httpx
import openai
import pytest

from conftest import DEFAULT_POLICY, ROOT, binary, mock_policy, start_agent, stop

EXAMPLES = sorted((ROOT / "policies" / "examples").glob("*.toml"))


def check(policy_path) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary("airlockd")), "--check", "--policy", str(policy_path)],
                          capture_output=True, text=True, timeout=30)


def test_a_misspelt_key_is_reported_with_file_line_column_and_the_nearest_key(tmp_path):
    bad = tmp_path / "fleet.toml"
    bad.write_text(DEFAULT_POLICY.replace('[[hosts]]\nhost = "api.anthropic.com"\nprovider = "anthropic"',
                                          '[[hosts]]\nhost = "api.anthropic.com"\nprovder = "anthropic"', 1))
    line = bad.read_text().splitlines().index('provder = "anthropic"') + 1
    p = check(bad)
    assert p.returncode != 0
    assert f"{bad}:{line}:1: hosts[1].provder: unknown field `provder`" in p.stderr, p.stderr
    assert "help: did you mean `provider`?" in p.stderr, p.stderr


def test_a_semantic_error_names_its_key_and_line(tmp_path):
    bad = tmp_path / "fleet.toml"
    bad.write_text("schema = 1\n\n[upstream]\nproxy = \"socks5://corp:1080\"\n")
    p = check(bad)
    assert p.returncode != 0
    assert f"{bad}:4:1: upstream.proxy: \"socks5://corp:1080\" must be an http:// URL" in p.stderr, p.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_the_example_policies_are_valid(example):
    p = check(example)
    assert p.returncode == 0, p.stderr
    assert "is valid" in p.stdout


def test_there_is_a_permissive_and_a_locked_down_example():
    names = {e.name for e in EXAMPLES}
    assert {"permissive.toml", "locked-down.toml"} <= names
    locked = (ROOT / "policies" / "examples" / "locked-down.toml").read_text()
    assert 'fail_mode = "closed"' in locked


def test_the_committed_schema_covers_the_sections_and_refuses_unknown_keys():
    schema = json.loads((ROOT / "policies" / "policy.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert {"hosts", "blocked", "upstream", "prices", "fail_mode"} <= set(schema["properties"])
    assert schema["$defs"]["FailMode"]["oneOf"] or schema["$defs"]["FailMode"]["enum"]


# --- [blocked] -------------------------------------------------------------------------------------

BLOCKED = """
[blocked]
hosts = ["api.mistral.ai", "*.character.ai"]
message = "use the company gateway instead"
"""


@pytest.fixture(scope="module")
def blocking_agent(mock, tmp_path_factory):
    a = start_agent(tmp_path_factory.mktemp("blocked"), mock_policy(mock, BLOCKED))
    yield a
    stop(a.proc)


def test_a_blocked_host_is_refused_at_connect_with_the_policy_message(blocking_agent):
    with httpx.Client(proxy=blocking_agent.proxy_url, trust_env=False, timeout=10,
                      verify=ssl.create_default_context(cafile=str(blocking_agent.bundle))) as c:
        with pytest.raises(httpx.ProxyError) as e:
            c.get("https://beta.character.ai/chat")
    assert "403" in str(e.value)
    r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--proxy", blocking_agent.proxy_url,
                        "-p", "https://deep.beta.character.ai/"], capture_output=True, text=True, timeout=30)
    assert "403" in r.stdout + r.stderr, (r.stdout, r.stderr)


def test_a_blocked_intercepted_host_is_refused_in_the_callers_dialect(blocking_agent):
    client = openai.OpenAI(api_key="sk-test", base_url=blocking_agent.base_url("mistral") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="mistral-small-latest", messages=[{"role": "user", "content": "hi"}])
    body = e.value.response.json()
    assert body["airlock"]["type"] == "host_blocked"
    assert body["error"]["message"] == \
        "the organisation's Airlock policy blocks api.mistral.ai: use the company gateway instead"
    assert e.value.response.headers["x-airlock-error"] == "host_blocked"
    # Absolute-form through the proxy is refused the same way.
    r = httpx.get("http://api.mistral.ai/v1/models", proxy=blocking_agent.proxy_url, trust_env=False, timeout=10)
    assert r.status_code == 403 and r.json()["airlock"]["type"] == "host_blocked"


def test_hosts_that_are_not_blocked_keep_working_and_refusals_are_counted(blocking_agent):
    before = blocking_agent.status()["refused"]["blocked_hosts"]
    client = openai.OpenAI(api_key="sk-test", base_url=blocking_agent.base_url("openai") + "/v1", max_retries=0,
                           http_client=httpx.Client(trust_env=False, timeout=10))
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content
    httpx.get("http://api.mistral.ai/v1/models", proxy=blocking_agent.proxy_url, trust_env=False, timeout=10)
    assert blocking_agent.status()["refused"]["blocked_hosts"] == before + 1
