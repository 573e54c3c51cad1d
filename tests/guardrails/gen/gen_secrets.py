#!/usr/bin/env python3
"""Generates the synthetic secrets corpus: realistic random credentials of well-known formats embedded in
varied contexts (positives), and ordinary code/config with no secret in it (negatives).

    python3 tests/guardrails/gen/gen_secrets.py     # rewrites corpora/secrets/generated/*.jsonl

Deterministic (fixed seed, standard library only). Every token is random: none is, or was, a real
credential. Positives carry the byte span of each secret; negatives carry `meta.kind` so the eval can
report false positives per kind (placeholder, uuid, git_sha, lockfile_hash, base64_image, ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CORPORA, char_to_byte, write_jsonl, write_text  # noqa: E402

SEED = 1337_2025
rng = random.Random(SEED)

LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = LOWER + UPPER + DIGITS
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
B32 = UPPER + "234567"
BECH32 = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L"


def r(alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def rbytes(n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def password(n: int | None = None) -> str:
    n = n or rng.randint(14, 26)
    while True:
        p = r(ALNUM + "!#%^*_-+=.", n)
        if any(c in DIGITS for c in p) and any(c in UPPER for c in p) and any(c in LOWER for c in p):
            return p


def url_password(n: int | None = None) -> str:
    n = n or rng.randint(14, 26)
    while True:
        p = r(ALNUM + "_-.~", n)
        if any(c in DIGITS for c in p) and any(c in UPPER for c in p):
            return p


WORDS = ("orbit", "falcon", "maple", "quartz", "harbor", "ember", "cedar", "delta", "summit", "nova",
         "atlas", "pixel", "lumen", "vector", "tundra", "cobalt", "willow", "zephyr", "onyx", "prairie")
USERS = ("admin", "app", "svc_billing", "deploy", "reporting", "etl", "api_user", "postgres", "root", "ci")
HOSTS = ("db.internal", "10.0.4.17", "pg-primary.prod.svc.cluster.local", "mysql.acme-corp.net",
         "localhost", "prod-db-01.eu-west-1.rds.amazonaws.com", "cache.example.io", "rabbit.local")


def word() -> str:
    return rng.choice(WORDS)


# --------------------------------------------------------------------------------- secret formats
# Each maker returns (secret, env-var name, kind of context it fits: "token", "pem", "url", "password").

def aws_key_id():
    return rng.choice(["AKIA", "AKIA", "AKIA", "ASIA"]) + r(B32, 16), "AWS_ACCESS_KEY_ID", "token"


def aws_secret_key():
    return r(B64, 40), "AWS_SECRET_ACCESS_KEY", "token"


def github_classic():
    return "ghp_" + r(ALNUM, 36), rng.choice(["GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT"]), "token"


def github_fine_grained():
    return "github_pat_" + r(ALNUM, 22) + "_" + r(ALNUM, 59), "GITHUB_TOKEN", "token"


def github_other():
    return rng.choice(["gho_", "ghs_", "ghu_", "ghr_"]) + r(ALNUM, 36), "GITHUB_TOKEN", "token"


def gitlab():
    return "glpat-" + r(URLSAFE, 20), "GITLAB_TOKEN", "token"


def openai_project():
    kind = rng.choice(["proj", "proj", "svcacct", "admin"])
    n = rng.choice([74, 58])
    return f"sk-{kind}-" + r(URLSAFE, n) + "T3BlbkFJ" + r(URLSAFE, n), "OPENAI_API_KEY", "token"


def openai_legacy():
    return "sk-" + r(ALNUM, 20) + "T3BlbkFJ" + r(ALNUM, 20), "OPENAI_API_KEY", "token"


def anthropic():
    kind = rng.choice(["api03", "api03", "api03", "admin01"])
    return f"sk-ant-{kind}-" + r(URLSAFE, 93) + "AA", "ANTHROPIC_API_KEY", "token"


def stripe():
    pre = rng.choice(["sk_live_51", "sk_live_51", "rk_live_51"])
    return pre + r(ALNUM, rng.choice([97, 97, 22])), "STRIPE_SECRET_KEY", "token"


def slack_bot():
    return f"xoxb-{r(DIGITS, 11)}-{r(DIGITS, 13)}-{r(ALNUM, 24)}", "SLACK_BOT_TOKEN", "token"


def slack_user():
    return f"xoxp-{r(DIGITS, 11)}-{r(DIGITS, 11)}-{r(DIGITS, 13)}-{r(HEX, 32)}", "SLACK_USER_TOKEN", "token"


def slack_webhook():
    return (f"https://hooks.slack.com/services/T{r(UPPER + DIGITS, 10)}/B{r(UPPER + DIGITS, 10)}/"
            f"{r(ALNUM, 24)}"), "SLACK_WEBHOOK_URL", "token"


def google_api():
    return "AIza" + r(URLSAFE, 35), rng.choice(["GOOGLE_API_KEY", "GEMINI_API_KEY", "MAPS_API_KEY"]), "token"


def google_oauth_secret():
    return "GOCSPX-" + r(URLSAFE, 28), "GOOGLE_CLIENT_SECRET", "token"


def huggingface():
    return "hf_" + r(LOWER + UPPER, 34), "HF_TOKEN", "token"


def npm():
    return "npm_" + r(ALNUM, 36), "NPM_TOKEN", "token"


def pypi():
    return "pypi-AgEIcHlwaS5vcmc" + r(URLSAFE, rng.randint(60, 120)), "PYPI_API_TOKEN", "token"


def sendgrid():
    return "SG." + r(URLSAFE, 22) + "." + r(URLSAFE, 43), "SENDGRID_API_KEY", "token"


def twilio():
    return "SK" + r(HEX, 32), "TWILIO_API_KEY", "token"


def digitalocean():
    return rng.choice(["dop_v1_", "doo_v1_"]) + r(HEX, 64), "DIGITALOCEAN_TOKEN", "token"


def discord():
    uid = str(rng.randint(10**17, 10**18 - 1)).encode()
    return (base64.b64encode(uid).decode().rstrip("=") + "." + r(URLSAFE, 6) + "." + r(URLSAFE, 38),
            "DISCORD_BOT_TOKEN", "token")


def telegram():
    return f"{rng.randint(10**8, 10**10 - 1)}:AA{r(URLSAFE, 33)}", "TELEGRAM_BOT_TOKEN", "token"


def shopify():
    return rng.choice(["shpat_", "shpss_", "shpca_"]) + r(HEX, 32), "SHOPIFY_ACCESS_TOKEN", "token"


def mailgun():
    return "key-" + r(HEX, 32), "MAILGUN_API_KEY", "token"


def age_key():
    return "AGE-SECRET-KEY-1" + r(BECH32, 58), "SOPS_AGE_KEY", "token"


def vault():
    return "hvs." + r(URLSAFE, 90), "VAULT_TOKEN", "token"


def databricks():
    return "dapi" + r(HEX, 32), "DATABRICKS_TOKEN", "token"


def linear():
    return "lin_api_" + r(ALNUM, 40), "LINEAR_API_KEY", "token"


def notion():
    if rng.random() < 0.5:
        return "ntn_" + r(DIGITS, 11) + r(ALNUM, 35), "NOTION_TOKEN", "token"
    return "secret_" + r(ALNUM, 43), "NOTION_TOKEN", "token"


def groq():
    return "gsk_" + r(ALNUM, 52), "GROQ_API_KEY", "token"


def xai():
    return "xai-" + r(ALNUM, 80), "XAI_API_KEY", "token"


def atlassian():
    return "ATATT3xFfGF0" + r(URLSAFE, 170) + "=" + r("0123456789ABCDEF", 8), "JIRA_API_TOKEN", "token"


def heroku():
    return "HRKU-AA" + r(URLSAFE, 58), "HEROKU_API_KEY", "token"


def grafana():
    return "glsa_" + r(ALNUM, 32) + "_" + r(HEX, 8), "GRAFANA_TOKEN", "token"


def postman():
    return f"PMAK-{r(HEX, 24)}-{r(HEX, 34)}", "POSTMAN_API_KEY", "token"


def doppler():
    return "dp.pt." + r(ALNUM, 43), "DOPPLER_TOKEN", "token"


def terraform_cloud():
    return f"{r(ALNUM, 14)}.atlasv1.{r(URLSAFE, 67)}", "TFE_TOKEN", "token"


def pulumi():
    return "pul-" + r(HEX, 40), "PULUMI_ACCESS_TOKEN", "token"


def supabase():
    return "sbp_" + r(HEX, 40), "SUPABASE_ACCESS_TOKEN", "token"


def replicate():
    return "r8_" + r(ALNUM, 37), "REPLICATE_API_TOKEN", "token"


def perplexity():
    return "pplx-" + r(ALNUM, 48), "PERPLEXITY_API_KEY", "token"


def newrelic():
    return "NRAK-" + r(UPPER + DIGITS, 27), "NEW_RELIC_API_KEY", "token"


def square():
    return rng.choice(["EAAA", "sq0atp-"]) + r(URLSAFE, 60 if rng.random() < 0.5 else 22), "SQUARE_ACCESS_TOKEN", "token"


def mailchimp():
    return r(HEX, 32) + f"-us{rng.randint(1, 21)}", "MAILCHIMP_API_KEY", "token"


def datadog():
    return r(HEX, 32), rng.choice(["DD_API_KEY", "DATADOG_API_KEY"]), "token"


def azure_openai():
    return r(HEX, 32), "AZURE_OPENAI_API_KEY", "token"


def cloudflare_token():
    return r(URLSAFE, 40), "CLOUDFLARE_API_TOKEN", "token"


def jwt():
    header = {"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    now = rng.randint(1_650_000_000, 1_760_000_000)
    payload = {"sub": str(rng.randint(1000, 999999)), "iat": now, "exp": now + rng.choice([900, 3600, 86400]),
               "role": rng.choice(["service_role", "authenticated", "admin", "user"]),
               "iss": rng.choice(["https://auth.example.com", "supabase", "acme-idp"])}
    sig = rbytes(32 if header["alg"] == "HS256" else 64)
    tok = ".".join([b64url(json.dumps(header, separators=(",", ":")).encode()),
                    b64url(json.dumps(payload, separators=(",", ":")).encode()), b64url(sig)])
    return tok, rng.choice(["SUPABASE_SERVICE_ROLE_KEY", "ACCESS_TOKEN", "JWT", "AUTH_TOKEN"]), "token"


def generic_password():
    return password(), rng.choice(["DB_PASSWORD", "POSTGRES_PASSWORD", "ADMIN_PASSWORD", "SMTP_PASSWORD",
                                   "REDIS_PASSWORD", "MYSQL_ROOT_PASSWORD"]), "password"


def generic_api_secret():
    return r(ALNUM, rng.choice([32, 40, 48])), rng.choice(["API_SECRET", "CLIENT_SECRET", "APP_SECRET_KEY",
                                                            "WEBHOOK_SECRET", "SESSION_SECRET"]), "token"


def pem_body(nbytes: int, prefix: bytes = b"") -> str:
    raw = base64.b64encode(prefix + rbytes(nbytes)).decode()
    return "\n".join(raw[i:i + 64] for i in range(0, len(raw), 64))


def private_key():
    kind = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY",
                       "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"])
    if kind == "OPENSSH PRIVATE KEY":
        body = pem_body(rng.randint(300, 420), b"openssh-key-v1\x00\x00\x00\x00\x04none\x00\x00\x00\x04none")
    elif kind == "EC PRIVATE KEY":
        body = pem_body(rng.randint(110, 130), b"\x30\x77\x02\x01\x01\x04\x20")
    elif kind == "RSA PRIVATE KEY":
        body = pem_body(rng.randint(600, 1200), b"\x30\x82\x04\xa4\x02\x01\x00\x02\x82\x01\x01")
    else:
        body = pem_body(rng.randint(400, 1200), b"\x30\x82\x04\xbe\x02\x01\x00\x30\x0d")
    return f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----", "PRIVATE_KEY", "pem"


def db_url():
    scheme = rng.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp", "mssql",
                         "postgresql+psycopg2"])
    user = rng.choice(USERS) if scheme != "redis" else rng.choice(["default", ""])
    pw = url_password()
    host = rng.choice(HOSTS) if scheme != "mongodb+srv" else f"cluster0.{r(LOWER + DIGITS, 5)}.mongodb.net"
    port = {"postgres": 5432, "postgresql": 5432, "postgresql+psycopg2": 5432, "mysql": 3306,
            "redis": 6379, "amqp": 5672, "mssql": 1433}.get(scheme)
    path = "/" + rng.choice(["app", "orders", "analytics", "prod", "0", "vhost"])
    hostport = host + (f":{port}" if port else "")
    # The marker spans the password only; the URL around it is context.
    return (scheme, user, pw, hostport, path), rng.choice(["DATABASE_URL", "DB_URL", "REDIS_URL", "MONGO_URI",
                                                           "BROKER_URL", "SQLALCHEMY_DATABASE_URI"]), "url"


TOKEN_MAKERS = [
    (aws_key_id, 14), (github_classic, 14), (github_fine_grained, 8), (github_other, 6), (gitlab, 8),
    (openai_project, 16), (openai_legacy, 6), (anthropic, 16), (stripe, 10), (slack_bot, 10), (slack_user, 5),
    (slack_webhook, 6), (google_api, 12), (google_oauth_secret, 6), (huggingface, 8), (npm, 8), (pypi, 6),
    (sendgrid, 8), (twilio, 6), (digitalocean, 6), (discord, 6), (telegram, 6), (shopify, 6), (mailgun, 5),
    (age_key, 5), (vault, 6), (databricks, 6), (linear, 5), (notion, 6), (groq, 6), (xai, 5), (atlassian, 5),
    (heroku, 5), (grafana, 5), (postman, 5), (doppler, 5), (terraform_cloud, 5), (pulumi, 5), (supabase, 5),
    (replicate, 5), (perplexity, 5), (newrelic, 5), (square, 5), (mailchimp, 5), (datadog, 6),
    (azure_openai, 6), (cloudflare_token, 6), (jwt, 16), (generic_password, 16), (generic_api_secret, 12),
]

# ------------------------------------------------------------------------------------------ contexts
# A context is a template with "\0S\0" where the secret goes, given the env-var name N (as {N}) and a
# lower-case variant {n}. They return a template string.

M = "\0S\0"


def ident(name: str) -> str:
    parts = name.lower().split("_")
    return parts[0] + "".join(p.title() for p in parts[1:])


FILLER_ENV = ["NODE_ENV=production", "PORT=8080", "LOG_LEVEL=info", "APP_NAME=orders-api", "REGION=eu-west-1",
              "FEATURE_FLAGS=beta_ui,fast_checkout", "TZ=UTC", "WORKERS=4", "DEBUG=false", "CACHE_TTL=300"]


def ctx_env(n):
    lines = rng.sample(FILLER_ENV, rng.randint(1, 4)) + [f"{n}={M}"]
    rng.shuffle(lines)
    return "\n".join(["# .env"] + lines) + "\n"


def ctx_env_export(n):
    return f"export {n}=\"{M}\"\n"


def ctx_shell_history(n):
    i = rng.randint(100, 900)
    cmds = ["ls -la", "cd ~/src/" + word(), "git status", "docker compose up -d", "npm run build",
            "kubectl get pods -n " + word(), "make test", "python manage.py migrate"]
    before = rng.sample(cmds, 2)
    after = rng.sample(cmds, 1)
    return "\n".join([f"  {i}  {before[0]}", f"  {i + 1}  {before[1]}", f"  {i + 2}  export {n}={M}",
                      f"  {i + 3}  {after[0]}"]) + "\n"


def ctx_curl(n):
    host = rng.choice(["api.example.com", "api.acme.io", "internal.service.local", "hooks.partner.net"])
    return (f"curl -sS -X POST https://{host}/v1/{word()} \\\n  -H \"Authorization: Bearer {M}\" \\\n"
            f"  -H 'Content-Type: application/json' \\\n  -d '{{\"limit\": {rng.randint(1, 100)}}}'")


def ctx_json(n):
    svc = word()
    return ("{\n" f'  "service": "{svc}",\n  "endpoint": "https://{svc}.example.com/api",\n'
            f'  "{ident(n)}": "{M}",\n  "timeoutMs": {rng.choice([1000, 5000, 30000])},\n  "retries": {rng.randint(0, 5)}\n' "}")


def ctx_yaml(n):
    return (f"{word()}:\n  enabled: true\n  url: https://{word()}.example.com\n"
            f"  {n.lower()}: {M}\n  timeout: {rng.randint(5, 60)}s\n")


def ctx_compose(n):
    return (f"services:\n  {word()}:\n    image: ghcr.io/acme/{word()}:1.{rng.randint(0, 9)}.{rng.randint(0, 9)}\n"
            f"    environment:\n      - LOG_LEVEL=debug\n      - {n}={M}\n    ports:\n      - \"8080:8080\"\n")


def ctx_gha(n):
    return (f"jobs:\n  deploy:\n    runs-on: ubuntu-latest\n    env:\n      {n}: {M}\n    steps:\n"
            f"      - uses: actions/checkout@v4\n      - run: ./scripts/deploy.sh\n")


def ctx_toml(n):
    return f"[{word()}]\nendpoint = \"https://{word()}.example.com\"\n{n.lower()} = \"{M}\"\nmax_retries = {rng.randint(1, 9)}\n"


def ctx_ini(n):
    return f"[{word()}]\nhost = {word()}.example.com\n{n.lower()} = {M}\n"


def ctx_python(n):
    return rng.choice([
        f"import requests\n\nAPI_KEY = \"{M}\"\n\ndef fetch(path):\n    return requests.get(\n"
        f"        f\"https://api.example.com/{{path}}\", headers={{\"Authorization\": f\"Bearer {{API_KEY}}\"}}\n    ).json()\n",
        f"import os\n\nos.environ.setdefault(\"{n}\", \"{M}\")\n",
        f"client = Client(\n    api_key='{M}',\n    timeout=30,\n)\n",
        f"settings = {{\n    \"{n.lower()}\": \"{M}\",\n    \"debug\": False,\n}}\n",
    ])


def ctx_js(n):
    return rng.choice([
        f"const client = new Client({{ apiKey: '{M}', retries: 3 }});\n",
        f"export const config = {{\n  {ident(n)}: \"{M}\",\n  region: 'us-east-1',\n}};\n",
        f"const res = await fetch(url, {{\n  headers: {{ Authorization: `Bearer {M}` }},\n}});\n",
        f"process.env.{n} = process.env.{n} || '{M}';\n",
    ])


def ctx_ts(n):
    return f"const {ident(n)}: string = \"{M}\";\nexport default {{ {ident(n)} }};\n"


def ctx_rust(n):
    return rng.choice([
        f"let client = reqwest::Client::new();\nlet resp = client\n    .get(url)\n    .bearer_auth(\"{M}\")\n    .send()\n    .await?;\n",
        f"const {n}: &str = \"{M}\";\n",
        f"std::env::set_var(\"{n}\", \"{M}\");\n",
    ])


def ctx_go(n):
    return rng.choice([
        f"package main\n\nconst {ident(n)} = \"{M}\"\n",
        f"req.Header.Set(\"Authorization\", \"Bearer {M}\")\n",
        f"os.Setenv(\"{n}\", \"{M}\")\n",
    ])


def ctx_java(n):
    return f"private static final String {n} = \"{M}\";\n"


def ctx_csharp(n):
    return f"var {ident(n)} = \"{M}\";\nservices.AddSingleton(new ApiClient({ident(n)}));\n"


def ctx_php(n):
    return f"<?php\n$config['{n.lower()}'] = '{M}';\n"


def ctx_properties(n):
    return f"app.name={word()}\napp.{n.lower().replace('_', '.')}={M}\nserver.port=8080\n"


def ctx_dockerfile(n):
    return f"FROM python:3.12-slim\nWORKDIR /app\nENV {n}={M}\nCOPY . .\nCMD [\"python\", \"main.py\"]\n"


def ctx_terraform(n):
    return f"provider \"{word()}\" {{\n  region = \"eu-west-1\"\n  token  = \"{M}\"\n}}\n"


def ctx_xml(n):
    return f"<appSettings>\n  <add key=\"{ident(n)}\" value=\"{M}\" />\n</appSettings>\n"


def ctx_log(n):
    ts = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    return rng.choice([
        f"{ts} DEBUG http.client request headers={{\"authorization\": \"Bearer {M}\", \"accept\": \"*/*\"}}\n",
        f"{ts} INFO  config loaded: {n}={M} region=us-east-1\n",
    ])


def ctx_prose(n):
    return rng.choice([
        f"Hey, my deploy keeps failing with a 401. This is the key I'm using: {M} - can you tell if it's the wrong format?",
        f"I set {n} to {M} in my environment but the SDK still says unauthorized. What am I missing?",
        f"Can you help me write a script that calls the API? My token is {M} and I need to list all projects.",
        f"Here's my config, why doesn't it work?\n\n```\n{n}={M}\n```\n",
        f"Quick question about rate limits. For context I'm authenticating with {M}, on the free tier.",
        f"Please summarise this incident note: rotated the leaked credential {M} at 14:02 UTC, no further access seen.",
    ])


def ctx_npmrc(n):
    return f"registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken={M}\n"


def ctx_git_remote(n):
    return f"git remote set-url origin https://x-access-token:{M}@github.com/acme/{word()}.git\n"


def ctx_k8s(n):
    return (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {word()}-credentials\ntype: Opaque\n"
            f"stringData:\n  {n.lower()}: \"{M}\"\n")


TOKEN_CONTEXTS = [ctx_env, ctx_env_export, ctx_shell_history, ctx_curl, ctx_json, ctx_yaml, ctx_compose, ctx_gha,
                  ctx_toml, ctx_ini, ctx_python, ctx_js, ctx_ts, ctx_rust, ctx_go, ctx_java, ctx_csharp, ctx_php,
                  ctx_properties, ctx_dockerfile, ctx_terraform, ctx_xml, ctx_log, ctx_prose, ctx_k8s]

PASSWORD_CONTEXTS = [ctx_env, ctx_env_export, ctx_json, ctx_yaml, ctx_compose, ctx_toml, ctx_ini, ctx_python,
                     ctx_js, ctx_properties, ctx_dockerfile, ctx_xml, ctx_prose, ctx_k8s, ctx_shell_history]


def pem_contexts(key: str):
    k_json = key.replace("\n", "\\n")
    c = rng.choice(["file", "gcp_json", "prose", "yaml", "python", "env"])
    if c == "file":
        return "file", f"{M}\n"
    if c == "gcp_json":
        proj = f"{word()}-{rng.randint(100000, 999999)}"
        return "gcp_json", ("{\n  \"type\": \"service_account\",\n" f"  \"project_id\": \"{proj}\",\n"
                            f"  \"private_key_id\": \"{r(HEX, 40)}\",\n  \"private_key\": \"{M}\\n\",\n"
                            f"  \"client_email\": \"deployer@{proj}.iam.gserviceaccount.com\"\n}}"), k_json
    if c == "prose":
        return "prose", f"I can't ssh into the box, this is the key I generated, is it in the right format?\n\n{M}\n\nThanks!"
    if c == "yaml":
        return "yaml", "tls:\n  key: |\n    " + M + "\n", key.replace("\n", "\n    ")
    if c == "python":
        return "python", f"PRIVATE_KEY = \"\"\"{M}\"\"\"\n"
    return "env", f"PRIVATE_KEY=\"{M}\"\n", k_json


def url_contexts(parts, n):
    scheme, user, pw, hostport, path = parts
    pre = f"{scheme}://{user}:"
    post = f"@{hostport}{path}"
    c = rng.choice(["env", "yaml", "python", "js", "prose", "json", "shell"])
    tmpl = {
        "env": f"{n}={pre}{M}{post}\n",
        "yaml": f"database:\n  url: \"{pre}{M}{post}\"\n  pool_size: {rng.randint(2, 20)}\n",
        "python": f"engine = create_engine(\"{pre}{M}{post}\", pool_pre_ping=True)\n",
        "js": f"const pool = new Pool({{ connectionString: '{pre}{M}{post}' }});\n",
        "prose": f"My app can't connect to the database, the connection string is {pre}{M}{post} - what's wrong?",
        "json": f"{{\n  \"{ident(n)}\": \"{pre}{M}{post}\"\n}}",
        "shell": f"psql \"{pre}{M}{post}\" -c 'select 1'\n",
    }[c]
    return c, tmpl


def fill(tmpl: str, secrets: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Replace each marker in turn; return text and char spans of the secrets."""
    out, spans, pos = [], [], 0
    parts = tmpl.split(M)
    assert len(parts) == len(secrets) + 1, (tmpl, len(secrets))
    for i, part in enumerate(parts):
        out.append(part)
        pos += len(part)
        if i < len(secrets):
            spans.append((pos, pos + len(secrets[i])))
            out.append(secrets[i])
            pos += len(secrets[i])
    return "".join(out), spans


def positives() -> list[dict]:
    rows = []

    def add(family, ctx, text, spans):
        b = [char_to_byte(text, a, z) for a, z in spans]
        rows.append({"id": f"gen-secret-{family}-{sum(1 for x in rows if x['meta']['family'] == family):03d}",
                     "text": text, "label": "positive",
                     "spans": [{"type": family, "start": s, "end": e} for s, e in b],
                     "meta": {"family": family, "context": ctx}})

    for maker, count in TOKEN_MAKERS:
        family = maker.__name__
        for _ in range(count):
            secret, n, kind = maker()
            ctx = rng.choice(PASSWORD_CONTEXTS if kind == "password" else TOKEN_CONTEXTS)
            if family in ("github_classic", "github_other") and rng.random() < 0.25:
                ctx = ctx_git_remote
            if family == "npm" and rng.random() < 0.5:
                ctx = ctx_npmrc
            text, spans = fill(ctx(n), [secret])
            add(family, ctx.__name__[4:], text, spans)

    # AWS credentials: key id + secret key together (both spans labelled).
    for _ in range(12):
        kid, _, _ = aws_key_id()
        sk, _, _ = aws_secret_key()
        c = rng.choice(["credentials", "env", "json", "python", "prose"])
        tmpl = {
            "credentials": f"[default]\naws_access_key_id = {M}\naws_secret_access_key = {M}\nregion = eu-central-1\n",
            "env": f"AWS_ACCESS_KEY_ID={M}\nAWS_SECRET_ACCESS_KEY={M}\nAWS_DEFAULT_REGION=us-west-2\n",
            "json": "{\n  \"accessKeyId\": \"" + M + "\",\n  \"secretAccessKey\": \"" + M + "\"\n}",
            "python": f"s3 = boto3.client(\n    's3',\n    aws_access_key_id='{M}',\n    aws_secret_access_key='{M}',\n)\n",
            "prose": f"my boto3 call gets AccessDenied, I'm using key {M} with secret {M}, region us-east-1. ideas?",
        }[c]
        text, spans = fill(tmpl, [kid, sk])
        add("aws_credentials_pair", c, text, spans)

    for _ in range(24):
        key, _, _ = private_key()
        got = pem_contexts(key)
        c, tmpl = got[0], got[1]
        secret = got[2] if len(got) > 2 else key
        text, spans = fill(tmpl, [secret])
        add("private_key", c, text, spans)

    for _ in range(24):
        parts, n, _ = db_url()
        c, tmpl = url_contexts(parts, n)
        text, spans = fill(tmpl, [parts[2]])
        add("db_url_password", c, text, spans)

    # HTTP basic auth in URLs.
    for _ in range(8):
        pw = url_password()
        user = rng.choice(USERS)
        c = rng.choice(["pip", "curl", "git"])
        tmpl = {
            "pip": f"pip install --index-url https://{user}:{M}@pypi.acme.internal/simple/ acme-tools\n",
            "curl": f"curl https://{user}:{M}@artifacts.example.com/releases/latest.tar.gz -o latest.tar.gz\n",
            "git": f"git clone https://{user}:{M}@git.example.org/platform/{word()}.git\n",
        }[c]
        text, spans = fill(tmpl, [pw])
        add("basic_auth_url", c, text, spans)
    return rows


# ----------------------------------------------------------------------------------------- negatives

def neg_python():
    f, v = rng.choice(["parse_rows", "load_config", "merge_counts", "chunked", "retry"]), rng.choice(["items", "rows", "values"])
    return rng.choice([
        f"def {f}({v}, size={rng.randint(2, 64)}):\n    \"\"\"Yield successive chunks of {v}.\"\"\"\n"
        f"    for i in range(0, len({v}), size):\n        yield {v}[i:i + size]\n",
        f"import json\nfrom pathlib import Path\n\n\ndef {f}(path: Path) -> dict:\n    with path.open() as fh:\n"
        f"        data = json.load(fh)\n    return {{k: v for k, v in data.items() if v is not None}}\n",
        f"class {word().title()}Cache:\n    def __init__(self, ttl={rng.randint(10, 600)}):\n        self.ttl = ttl\n"
        f"        self._store = {{}}\n\n    def get(self, key):\n        return self._store.get(key)\n",
        f"import logging\n\nlog = logging.getLogger(__name__)\n\n\ndef {f}(fn, attempts={rng.randint(2, 6)}):\n"
        f"    for n in range(attempts):\n        try:\n            return fn()\n        except TimeoutError:\n"
        f"            log.warning(\"attempt %d failed\", n + 1)\n    raise RuntimeError(\"gave up\")\n",
        f"import os\n\nAPI_KEY = os.environ[\"{rng.choice(['OPENAI_API_KEY', 'STRIPE_SECRET_KEY', 'GITHUB_TOKEN'])}\"]\n"
        f"TIMEOUT = int(os.getenv(\"TIMEOUT\", \"{rng.randint(5, 60)}\"))\n",
        f"@pytest.mark.parametrize(\"n,expected\", [(0, 1), (1, 1), (5, 120)])\ndef test_factorial(n, expected):\n"
        f"    assert factorial(n) == expected\n",
        f"df = pd.read_csv(\"{word()}.csv\")\nsummary = df.groupby(\"region\")[\"revenue\"].agg([\"sum\", \"mean\"])\n"
        f"print(summary.sort_values(\"sum\", ascending=False).head({rng.randint(3, 20)}))\n",
    ])


def neg_js():
    return rng.choice([
        f"export function debounce(fn, ms = {rng.randint(50, 500)}) {{\n  let t;\n  return (...args) => {{\n"
        f"    clearTimeout(t);\n    t = setTimeout(() => fn(...args), ms);\n  }};\n}}\n",
        f"const apiKey = process.env.{rng.choice(['OPENAI_API_KEY', 'ANTHROPIC_API_KEY', 'STRIPE_KEY'])};\n"
        f"if (!apiKey) throw new Error('missing API key');\n",
        f"app.get('/api/{word()}/:id', async (req, res) => {{\n  const item = await db.find(req.params.id);\n"
        f"  if (!item) return res.status(404).json({{ error: 'not found' }});\n  res.json(item);\n}});\n",
        f"import {{ useState, useEffect }} from 'react';\n\nexport function use{word().title()}(url) {{\n"
        f"  const [data, setData] = useState(null);\n  useEffect(() => {{ fetch(url).then(r => r.json()).then(setData); }}, [url]);\n"
        f"  return data;\n}}\n",
        f"const total = cart.items.reduce((sum, it) => sum + it.price * it.qty, 0);\n"
        f"console.log(`Total: ${{total.toFixed(2)}}`);\n",
    ])


def neg_rust():
    return rng.choice([
        f"fn {rng.choice(['parse_header', 'checksum', 'split_pairs'])}(input: &str) -> Option<(&str, &str)> {{\n"
        f"    let (k, v) = input.split_once('=')?;\n    Some((k.trim(), v.trim()))\n}}\n",
        f"#[derive(Debug, Clone, serde::Deserialize)]\npub struct Config {{\n    pub listen: String,\n"
        f"    pub workers: usize,\n    pub api_key: Option<String>,\n}}\n",
        f"let api_key = std::env::var(\"{rng.choice(['OPENAI_API_KEY', 'ANTHROPIC_API_KEY'])}\")\n"
        f"    .context(\"set the API key in the environment\")?;\n",
        f"#[test]\nfn rejects_empty() {{\n    assert!(parse(\"\").is_err());\n    assert_eq!(parse(\"{rng.randint(1, 999)}\").unwrap(), {rng.randint(1, 999)});\n}}\n",
        f"for (i, line) in reader.lines().enumerate() {{\n    let line = line?;\n    if line.starts_with('#') {{ continue; }}\n"
        f"    println!(\"{{}}: {{}}\", i + 1, line);\n}}\n",
    ])


def neg_go():
    return rng.choice([
        f"func handler(w http.ResponseWriter, r *http.Request) {{\n\tw.Header().Set(\"Content-Type\", \"application/json\")\n"
        f"\tjson.NewEncoder(w).Encode(map[string]int{{\"count\": {rng.randint(0, 99)}}})\n}}\n",
        f"token := os.Getenv(\"GITHUB_TOKEN\")\nif token == \"\" {{\n\tlog.Fatal(\"GITHUB_TOKEN is not set\")\n}}\n",
        f"type Server struct {{\n\tAddr    string\n\tTimeout time.Duration\n}}\n\nfunc New(addr string) *Server {{\n"
        f"\treturn &Server{{Addr: addr, Timeout: {rng.randint(1, 30)} * time.Second}}\n}}\n",
    ])


def neg_sql():
    return rng.choice([
        f"SELECT customer_id, SUM(amount) AS total\nFROM orders\nWHERE created_at >= NOW() - INTERVAL '{rng.randint(7, 90)} days'\n"
        f"GROUP BY customer_id\nORDER BY total DESC\nLIMIT {rng.randint(5, 50)};\n",
        "CREATE TABLE users (\n  id BIGSERIAL PRIMARY KEY,\n  email TEXT NOT NULL UNIQUE,\n  password_hash TEXT NOT NULL,\n"
        "  created_at TIMESTAMPTZ NOT NULL DEFAULT now()\n);\n",
    ])


def neg_shell():
    return rng.choice([
        f"#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.log; do\n  gzip -9 \"$f\"\ndone\necho \"compressed $(ls *.gz | wc -l) files\"\n",
        f"docker build -t acme/{word()}:latest .\ndocker run --rm -p 8080:8080 -e API_KEY=\"$API_KEY\" acme/{word()}:latest\n",
        f"kubectl -n {word()} rollout restart deployment/{word()}\nkubectl -n {word()} rollout status deployment/{word()} --timeout=120s\n",
    ])


PLACEHOLDERS = ["${API_KEY}", "<your-token>", "sk-...", "xxxxxxxx", "YOUR_API_KEY_HERE", "<REDACTED>", "[REDACTED]",
                "********", "{{ secrets.API_TOKEN }}", "$(cat /run/secrets/api_key)", "REPLACE_ME", "<api-key>",
                "sk-proj-...", "ghp_...", "your-secret-here", "%API_KEY%", "${{ secrets.OPENAI_API_KEY }}",
                "<paste key here>", "sk-ant-...", "TODO", "dummy", "test-token", "fake-key-for-tests",
                "${env:GITHUB_TOKEN}", "os.environ['API_KEY']"]
# Placeholders shaped like the real format (right prefix and length, no randomness).
LOOKALIKES = ["xxxx-xxxx-xxxx-xxxx", "AKIAXXXXXXXXXXXXXXXX", "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
              "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx", "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
              "sk-ant-api03-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "xoxb-000000000000-0000000000000-xxxxxxxxxxxxxxxxxxxxxxxx",
              "AIzaXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "glpat-xxxxxxxxxxxxxxxxxxxx", "hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]


def neg_placeholder(pool=None):
    ph = rng.choice(pool or PLACEHOLDERS)
    n = rng.choice(["OPENAI_API_KEY", "API_KEY", "GITHUB_TOKEN", "STRIPE_SECRET_KEY", "ANTHROPIC_API_KEY",
                    "AWS_ACCESS_KEY_ID", "DB_PASSWORD", "SLACK_BOT_TOKEN"])
    c = rng.choice([ctx_env, ctx_yaml, ctx_json, ctx_toml, ctx_compose, ctx_gha, ctx_python, ctx_js, ctx_ini, ctx_xml,
                    ctx_dockerfile, ctx_k8s])
    return fill(c(n), [ph])[0]


def neg_placeholder_lookalike():
    return neg_placeholder(LOOKALIKES)


def neg_readme():
    return rng.choice([
        "## Configuration\n\nCopy `.env.example` to `.env` and set `OPENAI_API_KEY` to your key (it starts with `sk-`).\n"
        "Never commit the real value.\n",
        "To authenticate, create a personal access token under Settings -> Developer settings and export it as "
        "`GITHUB_TOKEN`. Tokens look like `ghp_` followed by 36 characters.\n",
        "Set `ANTHROPIC_API_KEY=<your key>` before running `make eval`. The key is read at start-up only.\n",
    ])


def neg_uuid():
    u = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(3)]
    return rng.choice([
        f"{{\"request_id\": \"{u[0]}\", \"trace_id\": \"{u[1].replace('-', '')}\", \"status\": 200, \"duration_ms\": {rng.randint(3, 900)}}}",
        f"2025-03-0{rng.randint(1, 9)} 10:1{rng.randint(0, 9)}:22 INFO job {u[0]} finished (parent {u[1]})\n",
        f"resource \"azurerm_role_assignment\" \"reader\" {{\n  principal_id = \"{u[0]}\"\n  scope        = \"/subscriptions/{u[1]}\"\n}}\n",
        f"<ProjectGuid>{{{u[0].upper()}}}</ProjectGuid>\n<UserSecretsId>{u[1]}</UserSecretsId>\n",
    ])


def sha1hex() -> str:
    return hashlib.sha1(rbytes(16)).hexdigest()


def neg_git_sha():
    shas = [sha1hex() for _ in range(4)]
    return rng.choice([
        "\n".join(f"{s[:7]} {m}" for s, m in zip(shas, ["fix: handle empty body", "feat: add retry",
                                                          "chore: bump deps", "docs: readme"])) + "\n",
        f"commit {shas[0]}\nAuthor: CI Bot <ci@example.com>\nDate:   Mon Mar 3 10:12:44 2025 +0000\n\n    Release v2.{rng.randint(0, 9)}.0\n",
        f"      - uses: actions/checkout@{shas[0]} # v4.2.2\n      - uses: actions/setup-node@{shas[1]} # v4.1.0\n",
        f"[dependencies]\nfoo = {{ git = \"https://github.com/acme/foo\", rev = \"{shas[0]}\" }}\n",
        f"Merge pull request #{rng.randint(100, 9999)} from acme/feature-{word()}\n\n{shas[0]}..{shas[1]}\n",
    ])


def neg_lockfile():
    c = rng.choice(["npm", "cargo", "poetry", "gosum", "yarn", "pip"])
    name = word()
    if c == "npm":
        integ = base64.b64encode(hashlib.sha512(rbytes(8)).digest()).decode()
        return (f"    \"node_modules/{name}\": {{\n      \"version\": \"1.{rng.randint(0, 20)}.{rng.randint(0, 9)}\",\n"
                f"      \"resolved\": \"https://registry.npmjs.org/{name}/-/{name}-1.2.3.tgz\",\n"
                f"      \"integrity\": \"sha512-{integ}\"\n    }},\n")
    if c == "cargo":
        return (f"[[package]]\nname = \"{name}\"\nversion = \"0.{rng.randint(1, 30)}.{rng.randint(0, 9)}\"\n"
                f"source = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
                f"checksum = \"{hashlib.sha256(rbytes(8)).hexdigest()}\"\n")
    if c == "poetry":
        return (f"[[package]]\nname = \"{name}\"\nversion = \"2.{rng.randint(0, 9)}.1\"\nfiles = [\n"
                f"    {{file = \"{name}-2.0.1-py3-none-any.whl\", hash = \"sha256:{hashlib.sha256(rbytes(8)).hexdigest()}\"}},\n]\n")
    if c == "gosum":
        h = base64.b64encode(hashlib.sha256(rbytes(8)).digest()).decode()
        h2 = base64.b64encode(hashlib.sha256(rbytes(8)).digest()).decode()
        return f"github.com/acme/{name} v1.{rng.randint(0, 9)}.0 h1:{h}\ngithub.com/acme/{name} v1.4.0/go.mod h1:{h2}\n"
    if c == "yarn":
        return (f"{name}@^3.1.0:\n  version \"3.1.{rng.randint(0, 9)}\"\n  resolved \"https://registry.yarnpkg.com/{name}/-/{name}-3.1.2.tgz#{sha1hex()}\"\n"
                f"  integrity sha512-{base64.b64encode(hashlib.sha512(rbytes(8)).digest()).decode()}\n")
    return f"{name}==1.{rng.randint(0, 9)}.0 \\\n    --hash=sha256:{hashlib.sha256(rbytes(8)).hexdigest()} \\\n    --hash=sha256:{hashlib.sha256(rbytes(8)).hexdigest()}\n"


def neg_base64_image():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rbytes(rng.randint(60, 400))
    data = base64.b64encode(png).decode()
    return rng.choice([
        f"<img alt=\"logo\" width=\"32\" src=\"data:image/png;base64,{data}\" />\n",
        f".icon {{\n  background-image: url(\"data:image/png;base64,{data}\");\n}}\n",
        f"![chart](data:image/png;base64,{data})\n",
    ])


def neg_digest():
    d = hashlib.sha256(rbytes(8)).hexdigest()
    return rng.choice([
        f"image: docker.io/library/nginx@sha256:{d}\n",
        f"FROM python:3.12-slim@sha256:{d}\n",
        f"{d}  {word()}-linux-amd64.tar.gz\n{hashlib.sha256(rbytes(8)).hexdigest()}  {word()}-darwin-arm64.tar.gz\n",
        f"md5: {hashlib.md5(rbytes(8)).hexdigest()}\nsha1: {sha1hex()}\n",
    ])


def neg_public_key():
    c = rng.choice(["ed25519", "rsa", "pem"])
    if c == "ed25519":
        blob = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + rbytes(32)).decode()
        return f"ssh-ed25519 {blob} {rng.choice(USERS)}@{word()}-laptop\n"
    if c == "rsa":
        blob = base64.b64encode(b"\x00\x00\x00\x07ssh-rsa\x00\x00\x00\x03\x01\x00\x01\x00\x00\x01\x01" + rbytes(256)).decode()
        return f"# ~/.ssh/authorized_keys\nssh-rsa {blob} deploy@ci\n"
    return f"-----BEGIN PUBLIC KEY-----\n{pem_body(rng.randint(60, 280))}\n-----END PUBLIC KEY-----\n"


def neg_doc_example():
    return rng.choice([
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "# Example from the AWS docs\nexport AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n",
        "The value looks like `AKIAIOSFODNN7EXAMPLE`; see the IAM user guide.\n",
    ])


def neg_public_identifier():
    return rng.choice([
        f"const stripe = Stripe('pk_live_{r(ALNUM, 24)}');\n",
        f"<script async src=\"https://www.googletagmanager.com/gtag/js?id=G-{r(UPPER + DIGITS, 10)}\"></script>\n",
        f"https://www.youtube.com/watch?v={r(URLSAFE, 11)}\n",
        f"arn:aws:iam::{r(DIGITS, 12)}:role/{word()}-deployer\n",
        f"s3://acme-{word()}-{r(LOWER + DIGITS, 8)}/exports/2025/\n",
    ])


def neg_misc_config():
    return rng.choice([
        f"server:\n  port: {rng.choice([80, 443, 8080, 3000])}\n  read_timeout: 30s\nlogging:\n  level: info\n  format: json\n",
        f"[tool.ruff]\nline-length = {rng.choice([88, 100, 120])}\ntarget-version = \"py311\"\n\n[tool.pytest.ini_options]\naddopts = \"-q\"\n",
        f"{{\n  \"compilerOptions\": {{\n    \"target\": \"ES2022\",\n    \"strict\": true,\n    \"outDir\": \"dist\"\n  }}\n}}",
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {word()}\nspec:\n  replicas: {rng.randint(1, 6)}\n"
        f"  template:\n    spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/{word()}:2.{rng.randint(0, 9)}.0\n"
        f"          envFrom:\n            - secretRef:\n                name: {word()}-secrets\n",
        f".button {{\n  color: #{r(HEX, 6)};\n  background: #{r(HEX, 6)};\n  border-radius: {rng.randint(2, 12)}px;\n}}\n",
    ])


NEGATIVE_KINDS = [
    (neg_python, 50), (neg_js, 40), (neg_rust, 30), (neg_go, 20), (neg_sql, 12), (neg_shell, 18),
    (neg_placeholder, 60), (neg_placeholder_lookalike, 20), (neg_readme, 10), (neg_uuid, 25), (neg_git_sha, 25), (neg_lockfile, 30),
    (neg_base64_image, 15), (neg_digest, 15), (neg_public_key, 15), (neg_doc_example, 6),
    (neg_public_identifier, 15), (neg_misc_config, 25),
]


def negatives() -> list[dict]:
    rows, seen = [], set()
    for maker, count in NEGATIVE_KINDS:
        kind = maker.__name__[4:]
        made = 0
        tries = 0
        while made < count and tries < count * 30:
            tries += 1
            text = maker()
            if text in seen:
                continue
            seen.add(text)
            rows.append({"id": f"gen-benign-{kind}-{made:03d}", "text": text, "label": "negative", "spans": [],
                         "meta": {"kind": kind}})
            made += 1
    return rows


def main() -> None:
    pos = positives()
    neg = negatives()
    out = CORPORA / "secrets/generated"
    write_jsonl(out / "positives.jsonl", pos, encode_text=True)
    write_jsonl(out / "negatives.jsonl", neg)
    from collections import Counter
    fam = Counter(r["meta"]["family"] for r in pos)
    kinds = Counter(r["meta"]["kind"] for r in neg)
    write_text(out / "SOURCE.md", "\n".join([
        "# Generated secrets corpus", "",
        f"- Generator: `tests/guardrails/gen/gen_secrets.py` (seed {SEED}, Python standard library only)",
        "- Licence: part of Airlock (Apache-2.0, as the repository)",
        f"- `positives.jsonl`: {len(pos)} samples, label positive, each with the byte span(s) of its secret(s);",
        "  the text is stored base64-encoded (`text_b64`) so that the repository does not trip secret scanners",
        "  or push protection (the eval decodes it)",
        f"- `negatives.jsonl`: {len(neg)} samples, label negative (no secret), `meta.kind` says what they are",
        "",
        "Every token is random and follows the public shape of its format (prefix, alphabet, length, fixed",
        "infixes such as OpenAI's `T3BlbkFJ` or Anthropic's trailing `AA`); none is a real credential. Random",
        "checksums (GitHub's CRC32 tail, Luhn-like checks) are not computed, so a detector that verifies them",
        "would reject these.",
        "", "Positives per family (`meta.family`): " + ", ".join(f"{k} {v}" for k, v in sorted(fam.items())), "",
        "Contexts (`meta.context`): .env files, `export`, shell history, curl, JSON, YAML, docker-compose, GitHub",
        "Actions, TOML, INI, Python, JavaScript, TypeScript, Rust, Go, Java, C#, PHP, Java properties, Dockerfile,",
        "Terraform, XML, log lines, prose chat messages, Kubernetes Secret manifests, .npmrc, git remotes;",
        "PEM keys also inside GCP service-account JSON (escaped newlines) and YAML block scalars; database URLs",
        "label only the password.",
        "", "Negatives per kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), "",
        "`placeholder` samples put a placeholder (`${API_KEY}`, `<your-token>`, `sk-...`, `xxxxxxxx`,",
        "`AKIAXXXXXXXXXXXXXXXX`, `ghp_xxxx...`) where a secret would go. `doc_example` holds AWS's documented",
        "example key pair (`AKIAIOSFODNN7EXAMPLE`), `public_identifier` things that look random but are public",
        "(Stripe publishable keys, analytics ids, ARNs), `public_key` SSH/PEM *public* keys. The rest is",
        "ordinary code and config: UUIDs, git SHAs, lockfile hashes, image digests, base64 images.",
        "These negatives double as the \"ordinary code\" false-positive set for the PII and injection suites.",
        "",
    ]))


if __name__ == "__main__":
    main()
