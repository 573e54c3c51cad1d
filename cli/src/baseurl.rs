//! The SDK base-URL variables (`airlock env --base-url`, `airlock run --base-url`): for runtimes that
//! cannot be proxied (Node before 22.21, whose `fetch` ignores `HTTPS_PROXY`; apps with compiled-in
//! roots), each SDK's own base-URL variable points at the agent's plain-HTTP base-URL prefix for its
//! provider's host, so no proxy and no CA are needed. The prefixes are the verified agent's (its policy
//! names them); a host the policy does not intercept gets no variable. Vertex AI
//! (`GOOGLE_VERTEX_BASE_URL`) is not in the default policy, and Azure's endpoint names the user's own
//! resource, so neither gets one. Pure functions: no I/O.

use std::net::SocketAddr;

use serde_json::Value;

/// `(variable, provider host, path the SDK expects after the host)`. Each SDK appends its own paths
/// to its variable: the OpenAI SDKs expect `/v1` in it, Anthropic's, Google's and Groq's do not.
const SDK_VARS: [(&str, &str, &str); 5] = [
    ("OPENAI_BASE_URL", "api.openai.com", "/v1"),
    // The older name, still read by LiteLLM, Aider and LangChain.
    ("OPENAI_API_BASE", "api.openai.com", "/v1"),
    ("ANTHROPIC_BASE_URL", "api.anthropic.com", ""),
    // @google/genai (Gemini CLI) and google-genai.
    (
        "GOOGLE_GEMINI_BASE_URL",
        "generativelanguage.googleapis.com",
        "",
    ),
    ("GROQ_BASE_URL", "api.groq.com", ""),
];

/// The base-URL variables for an agent at `addr` whose status lists `interception_hosts` as
/// `{"host", "prefix", "intercepted"}` objects.
pub fn vars(addr: SocketAddr, status: &Value) -> Vec<(String, String)> {
    let hosts = status["interception_hosts"].as_array();
    let prefix_of = |host: &str| -> Option<String> {
        hosts?
            .iter()
            .filter(|h| h["host"].as_str() == Some(host) && h["intercepted"] != false)
            .find_map(|h| h["prefix"].as_str())
            .map(|p| p.trim_matches('/').to_string())
            .filter(|p| !p.is_empty())
    };
    SDK_VARS
        .iter()
        .filter_map(|(name, host, tail)| {
            let prefix = prefix_of(host)?;
            Some((name.to_string(), format!("http://{addr}/{prefix}{tail}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get<'a>(v: &'a [(String, String)], k: &str) -> Option<&'a str> {
        v.iter().find(|(n, _)| n == k).map(|(_, x)| x.as_str())
    }

    #[test]
    fn each_sdk_gets_its_providers_prefix() {
        let status = json!({"interception_hosts": [
            {"host": "api.openai.com", "prefix": "openai", "intercepted": true},
            {"host": "api.anthropic.com", "prefix": "anthropic", "intercepted": true},
            {"host": "generativelanguage.googleapis.com", "prefix": "gemini", "intercepted": true},
            {"host": "api.groq.com", "prefix": "groq", "intercepted": true},
            {"host": "*.openai.azure.com", "prefix": "azure", "intercepted": true},
        ]});
        let v = vars("127.0.0.1:8479".parse().unwrap(), &status);
        assert_eq!(
            get(&v, "OPENAI_BASE_URL"),
            Some("http://127.0.0.1:8479/openai/v1")
        );
        assert_eq!(
            get(&v, "OPENAI_API_BASE"),
            Some("http://127.0.0.1:8479/openai/v1")
        );
        assert_eq!(
            get(&v, "ANTHROPIC_BASE_URL"),
            Some("http://127.0.0.1:8479/anthropic")
        );
        assert_eq!(
            get(&v, "GOOGLE_GEMINI_BASE_URL"),
            Some("http://127.0.0.1:8479/gemini")
        );
        assert_eq!(get(&v, "GROQ_BASE_URL"), Some("http://127.0.0.1:8479/groq"));
        assert_eq!(v.len(), SDK_VARS.len());
    }

    #[test]
    fn a_policy_with_other_prefixes_or_without_a_host_is_followed() {
        let status = json!({"interception_hosts": [
            {"host": "api.openai.com", "prefix": "/oai/", "intercepted": true},
            {"host": "api.anthropic.com", "prefix": null, "intercepted": true},
            {"host": "api.groq.com", "prefix": "groq", "intercepted": false},
        ]});
        let v = vars("127.0.0.1:9000".parse().unwrap(), &status);
        assert_eq!(
            get(&v, "OPENAI_BASE_URL"),
            Some("http://127.0.0.1:9000/oai/v1")
        );
        assert_eq!(get(&v, "ANTHROPIC_BASE_URL"), None);
        assert_eq!(get(&v, "GOOGLE_GEMINI_BASE_URL"), None);
        assert_eq!(get(&v, "GROQ_BASE_URL"), None);
    }
}
