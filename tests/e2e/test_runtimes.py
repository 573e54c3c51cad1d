"""Runtimes that ignore the usual proxy and CA variables, under `airlock run`: a Java `HttpClient`
program with no flags of its own (JAVA_TOOL_OPTIONS and the agent's PKCS#12 trust store), the Java
trust store as keytool reads it, the warning for a Node too old to proxy `fetch`, and `--base-url`
for SDKs that read their base-URL variable (the Python SDKs, and Node 20's bare `fetch`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import coverage
from conftest import tokens

REPLY = "This is a mock reply from {model}."
SYSTEM_NODE = "/usr/bin/node"  # Debian's Node 20 on this machine kind

JAVA_CLIENT = textwrap.dedent("""
    import java.net.URI;
    import java.net.http.HttpClient;
    import java.net.http.HttpRequest;
    import java.net.http.HttpResponse;

    public class AirlockChat {
        public static void main(String[] args) throws Exception {
            HttpClient client = HttpClient.newHttpClient();
            String body = "{\\"model\\":\\"" + args[0] + "\\",\\"messages\\":[{\\"role\\":\\"user\\",\\"content\\":\\"hello from java\\"}]}";
            HttpRequest req = HttpRequest.newBuilder(URI.create("https://api.openai.com/v1/chat/completions"))
                .header("authorization", "Bearer sk-java")
                .header("content-type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build();
            HttpResponse<String> resp = client.send(req, HttpResponse.BodyHandlers.ofString());
            System.out.println("status=" + resp.statusCode());
            System.out.println("version=" + resp.version());
            System.out.println("request-id=" + resp.headers().firstValue("x-airlock-request-id").orElse(""));
            System.out.println("marker=" + System.getProperty("airlock.e2e.marker"));
            System.out.println("body=" + resp.body());
        }
    }
""")


def need(cmd: str) -> str:
    path = shutil.which(cmd)
    if not path:
        pytest.fail(f"{cmd} is not installed: the test machines have JDK 17 (openjdk-17-jdk-headless)")
    return path


@pytest.fixture(scope="module")
def java_client(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("java")
    (d / "AirlockChat.java").write_text(JAVA_CLIENT)
    env = {k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"}
    p = subprocess.run([need("javac"), "-d", str(d / "classes"), str(d / "AirlockChat.java")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    return d / "classes"


def lines(out: str) -> dict:
    return dict(l.split("=", 1) for l in out.splitlines() if "=" in l)


def test_java_httpclient_with_no_flags_reaches_the_mock_through_the_agent(agent, java_client):
    # The user's own JAVA_TOOL_OPTIONS stays in force next to Airlock's.
    p = agent.cli("run", "--", need("java"), "-cp", str(java_client), "AirlockChat", "java-chat-1",
                  env={"JAVA_TOOL_OPTIONS": "-Dairlock.e2e.marker=kept"}, check=False, timeout=120)
    assert p.returncode == 0, f"{p.stdout}\n{p.stderr}"
    out = lines(p.stdout)
    assert out["status"] == "200", p.stdout
    assert json.loads(out["body"])["choices"][0]["message"]["content"] == REPLY.format(model="java-chat-1")
    assert out["marker"] == "kept", "the user's own JAVA_TOOL_OPTIONS was dropped"
    assert "Picked up JAVA_TOOL_OPTIONS: -Dairlock.e2e.marker=kept -Dhttps.proxyHost=127.0.0.1" in p.stderr
    rec = agent.wait_record(id=out["request-id"])
    assert (rec["provider"], rec["operation"], rec["model"], rec["mode"], rec["outcome"]) == (
        "openai", "chat_completions", "java-chat-1", "proxy", "completed")
    assert tokens(rec) == (3, 7)
    version = coverage.command_version([need("java"), "-version"], r'version "([\d.]+)"')
    coverage.report("Java `java.net.http.HttpClient` (JDK)", version, "run", coverage.metered(rec))


def test_the_java_trust_store_lists_the_system_roots_and_the_device_ca(agent):
    env = agent.cli("env").stdout
    m = re.search(r"-Djavax\.net\.ssl\.trustStore=(\S+) -Djavax\.net\.ssl\.trustStoreType=PKCS12 "
                  r"-Djavax\.net\.ssl\.trustStorePassword=(\S+?)'", env)
    assert m, env
    store, password = Path(m.group(1)), m.group(2)
    assert store == agent.state_dir / "ca" / "truststore.p12"
    p = subprocess.run([need("keytool"), "-list", "-keystore", str(store), "-storetype", "PKCS12",
                        "-storepass", password], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"})
    assert p.returncode == 0, p.stdout + p.stderr
    entries = re.findall(r"^(\S+), .*, trustedCertEntry,\s*$", p.stdout, re.M)
    assert "airlock-device-ca" in entries, p.stdout
    bundle_certs = agent.bundle.read_text().count("-----BEGIN CERTIFICATE-----")
    assert len(entries) == bundle_certs > 1, p.stdout
    m = re.search(r"Your keystore contains (\d+) entr", p.stdout)
    assert m and int(m.group(1)) == bundle_certs


def test_the_java_trust_store_follows_a_ca_rotation(fresh_agent, java_client):
    a = fresh_agent()
    a.cli("ca", "rotate")
    p = a.cli("run", "--", need("java"), "-cp", str(java_client), "AirlockChat", "java-rotated-1",
              check=False, timeout=120)
    assert p.returncode == 0, f"Java no longer trusts the agent after a rotation:\n{p.stdout}\n{p.stderr}"
    assert lines(p.stdout)["status"] == "200"
    assert a.wait_record(model="java-rotated-1")["mode"] == "proxy"


def old_node() -> str:
    """The version of Debian's Node 20, which these tests need as a Node that cannot be proxied."""
    if not os.path.exists(SYSTEM_NODE):
        pytest.fail(f"{SYSTEM_NODE} is missing: the test machines have Debian's Node 20 (package nodejs)")
    version = subprocess.run([SYSTEM_NODE, "--version"], capture_output=True, text=True).stdout.strip()
    major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    if major >= 24 or (major, minor) >= (22, 21):
        pytest.fail(f"{SYSTEM_NODE} is {version}, which honours HTTPS_PROXY: these tests need a Node before 22.21")
    return version


def test_airlock_run_warns_before_starting_a_node_too_old_for_the_proxy(agent, tmp_path):
    old = old_node()
    p = agent.cli("run", "--", SYSTEM_NODE, "-e", "console.log('ran')", check=False)
    assert p.returncode == 0 and p.stdout.strip() == "ran", p.stderr
    warnings = [l for l in p.stderr.splitlines() if "warning" in l]
    assert len(warnings) == 1, p.stderr
    assert f"is Node {old}" in warnings[0] and "--base-url" in warnings[0]
    # A script whose shebang runs that node (like npx or a tool's bin) is caught too.
    tool = tmp_path / "some-tool"
    tool.write_text("#!/usr/bin/env node\nconsole.log('tool ran')\n")
    tool.chmod(0o755)
    p = agent.cli("run", "--", str(tool), check=False,
                  env={"PATH": f"{os.path.dirname(SYSTEM_NODE)}:{os.environ['PATH']}"})
    assert p.stdout.strip() == "tool ran" and "HTTPS_PROXY" in p.stderr, p.stderr
    # Node 24 honours the proxy: no warning.
    node24 = os.environ.get("AIRLOCK_TEST_NODE")
    if not node24:
        pytest.fail("AIRLOCK_TEST_NODE is not set: run the suite with scripts/test.sh, which installs Node 24")
    p = agent.cli("run", "--", node24, "-e", "console.log('ran')", check=False)
    assert p.returncode == 0 and "warning" not in p.stderr, p.stderr


def test_base_url_mode_lets_node_20_fetch_reach_the_agent(agent, tmp_path):
    old_node()
    script = tmp_path / "fetch.mjs"
    script.write_text(textwrap.dedent("""
        const r = await fetch(process.env.OPENAI_BASE_URL + "/chat/completions", {
          method: "POST",
          headers: { authorization: "Bearer sk-node20", "content-type": "application/json" },
          body: JSON.stringify({ model: "node20-base-1", messages: [{ role: "user", content: "old node here" }] }),
        });
        console.log(JSON.stringify({ status: r.status, id: r.headers.get("x-airlock-request-id"), body: await r.json() }));
    """))
    p = agent.cli("run", "--base-url", "--", SYSTEM_NODE, str(script), check=False)
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr, "base-URL mode needs no proxy, so no warning"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["status"] == 200 and out["body"]["choices"][0]["message"]["content"] == REPLY.format(model="node20-base-1")
    rec = agent.wait_record(id=out["id"])
    assert (rec["mode"], rec["host"], rec["path"]) == ("base_url", "api.openai.com", "/v1/chat/completions")
    assert tokens(rec) == (3, 7)
    version = old_node().lstrip("v")
    coverage.report("Node.js `fetch` (Node 20)", version, "base-URL", coverage.metered(rec))


SDKS_BY_ENV = textwrap.dedent("""
    import json, anthropic, openai
    from google import genai
    o = openai.OpenAI(api_key="sk-env", max_retries=0)
    a = anthropic.Anthropic(api_key="sk-ant-env", max_retries=0)
    g = genai.Client(api_key="AIza-env")
    print(json.dumps({
        "openai": o.chat.completions.create(model="env-openai-1", messages=[{"role": "user", "content": "hi"}]).choices[0].message.content,
        "anthropic": a.messages.create(model="env-claude-1", max_tokens=32, messages=[{"role": "user", "content": "hi"}]).content[0].text,
        "gemini": g.models.generate_content(model="env-gemini-1", contents="hi").text,
    }))
""")


def test_base_url_variables_send_each_sdk_to_its_prefix(agent, tmp_path):
    env = agent.cli("env", "--base-url").stdout
    for var, prefix in [("OPENAI_BASE_URL", "openai/v1"), ("OPENAI_API_BASE", "openai/v1"),
                        ("ANTHROPIC_BASE_URL", "anthropic"), ("GOOGLE_GEMINI_BASE_URL", "gemini")]:
        assert f"export {var}='http://{agent.addr}/{prefix}'" in env, env
    assert "OPENAI_BASE_URL" not in agent.cli("env").stdout
    script = tmp_path / "sdks.py"
    script.write_text(SDKS_BY_ENV)
    p = agent.cli("run", "--base-url", "--", sys.executable, str(script), check=False, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for key, model in [("openai", "env-openai-1"), ("anthropic", "env-claude-1"), ("gemini", "env-gemini-1")]:
        assert out[key] == REPLY.format(model=model)
        rec = agent.wait_record(model=model)
        assert rec["mode"] == "base_url", rec
        assert tokens(rec) == (1, 7)
