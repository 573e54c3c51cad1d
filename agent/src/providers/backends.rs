//! What the subscription and tool backends add to the provider wire formats: Google's Code Assist
//! envelope (`cloudcode-pa.googleapis.com/v1internal:{generateContent,streamGenerateContent,countTokens}`,
//! Gemini CLI signed in with Google: a Gemini request wrapped as `{"model", "project", "request": {…}}`,
//! each answer wrapped as `{"response": {…}, "traceId"}`, per gemini-cli's
//! `packages/core/src/code_assist/converter.ts`); Anthropic's Messages API served by an
//! OpenAI-compatible host (GitHub Copilot's `/v1/messages` for Claude models, OpenRouter's
//! `/api/v1/messages`); and sign-in tokens (`oauth`) told apart from API keys — Claude's
//! `sk-ant-oat…` tokens, and any bearer token sent to a backend paid by subscription (ChatGPT's
//! Codex backend, Copilot, Code Assist); and which of Ollama's two APIs a path speaks. It reads bytes and values it is given; it decides no policy.

use serde::Deserialize;
use serde_json::Value;

use crate::policy::{ApiKind, Billing};

/// The wire format a request to `path` speaks on a host whose rule says `api`: OpenAI-compatible
/// hosts that also serve Anthropic's Messages API (`…/v1/messages`, `…/v1/messages/count_tokens`)
/// speak Anthropic there, so those requests are read, metered and answered as Anthropic's.
pub fn api_for_path(api: ApiKind, path: &str) -> ApiKind {
    if api == ApiKind::Ollama && !path.starts_with("/api/") {
        // Ollama's OpenAI-compatible API (`/v1/...`); its native one is under /api.
        return api_for_path(ApiKind::Openai, path);
    }
    let p = path.trim_end_matches('/');
    let messages = p.ends_with("/v1/messages") || p.ends_with("/v1/messages/count_tokens");
    if api == ApiKind::Openai && messages && !p.contains("/threads/") {
        ApiKind::Anthropic
    } else {
        api
    }
}

/// The Code Assist method of a path (`/v1internal:streamGenerateContent` → `streamGenerateContent`).
pub fn code_assist_method(path: &str) -> Option<&str> {
    let last = path.trim_end_matches('/').rsplit('/').next()?;
    let (version, method) = last.split_once(':')?;
    (version.starts_with('v') && !method.is_empty()).then_some(method)
}

/// The record operation of a Code Assist method: the Gemini names for the model calls, a bounded
/// `other:` name for the rest (`loadCodeAssist`, metrics), which are not metered.
pub fn code_assist_operation(method: Option<&str>) -> String {
    match method {
        Some("generateContent") => "generate_content".into(),
        Some("streamGenerateContent") => "stream_generate_content".into(),
        Some("countTokens") => "count_tokens".into(),
        Some(m) => format!(
            "other:{}",
            m.chars()
                .filter(char::is_ascii_alphanumeric)
                .take(32)
                .collect::<String>()
        ),
        None => "other:root".into(),
    }
}

#[derive(Deserialize)]
struct InnerModel<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EnvelopePeek<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<InnerModel<'a>>,
}

/// The model a Code Assist request names: the envelope's `model` (generate), else the inner
/// request's (`countTokens` sends `{"request": {"model": "models/gemini-2.5-flash", …}}`), without
/// Gemini's `models/` prefix.
pub fn code_assist_model(body: Option<&[u8]>) -> Option<String> {
    let peek: EnvelopePeek<'_> = serde_json::from_slice(body.filter(|b| !b.is_empty())?).ok()?;
    let m = peek.model.or_else(|| peek.request.and_then(|r| r.model))?;
    let m = m.strip_prefix("models/").unwrap_or(&m);
    (!m.is_empty()).then(|| m.to_string())
}

/// The Gemini request inside a Code Assist envelope, and the JSON Pointer prefix that addresses it.
pub fn code_assist_request(body: &Value) -> Option<(&Value, &'static str)> {
    body.get("request")
        .filter(|r| r.is_object())
        .map(|r| (r, "/request"))
}

/// The Gemini document inside a Code Assist answer (`{"response": {…}, "traceId"}`); an error body
/// (`{"error": {…}}`) or a token count (`{"totalTokens"}`) is its own document.
pub fn code_assist_response(doc: &Value) -> &Value {
    doc.get("response").filter(|r| r.is_object()).unwrap_or(doc)
}

/// Whether a bearer token is a sign-in (OAuth) token rather than an API key: Claude's subscription
/// tokens (`sk-ant-oat…`, sent with an `anthropic-beta: oauth-…` flag), or any bearer token sent to a
/// backend paid by subscription, whose only credentials are sign-ins. The token is looked at for
/// its prefix only and never kept.
pub fn is_sign_in(token: &str, anthropic_beta: Option<&str>, billing: Billing) -> bool {
    token.starts_with("sk-ant-oat")
        || anthropic_beta.is_some_and(|b| {
            b.split(',')
                .any(|flag| flag.trim().to_ascii_lowercase().starts_with("oauth-"))
        })
        || billing == Billing::Subscription
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_on_an_openai_compatible_host_are_anthropic() {
        for p in [
            "/v1/messages",
            "/api/v1/messages",
            "/v1/messages/count_tokens",
        ] {
            assert_eq!(api_for_path(ApiKind::Openai, p), ApiKind::Anthropic, "{p}");
        }
        for p in [
            "/chat/completions",
            "/v1/threads/t_1/messages",
            "/responses",
        ] {
            assert_eq!(api_for_path(ApiKind::Openai, p), ApiKind::Openai, "{p}");
        }
        assert_eq!(api_for_path(ApiKind::Azure, "/v1/messages"), ApiKind::Azure);
        assert_eq!(api_for_path(ApiKind::Ollama, "/api/chat"), ApiKind::Ollama);
        assert_eq!(
            api_for_path(ApiKind::Ollama, "/v1/chat/completions"),
            ApiKind::Openai
        );
    }

    #[test]
    fn code_assist_envelopes() {
        assert_eq!(
            code_assist_method("/v1internal:streamGenerateContent"),
            Some("streamGenerateContent")
        );
        assert_eq!(code_assist_method("/v1internal"), None);
        assert_eq!(
            code_assist_operation(code_assist_method("/v1internal:loadCodeAssist")),
            "other:loadCodeAssist"
        );
        let gen = br#"{"model":"gemini-2.5-pro","project":"p-1","user_prompt_id":"u","request":{"contents":[]}}"#;
        assert_eq!(
            code_assist_model(Some(gen)).as_deref(),
            Some("gemini-2.5-pro")
        );
        let count = br#"{"request":{"model":"models/gemini-2.5-flash","contents":[]}}"#;
        assert_eq!(
            code_assist_model(Some(count)).as_deref(),
            Some("gemini-2.5-flash")
        );
        assert_eq!(code_assist_model(Some(b"{nope")), None);
        let answer = json!({"response": {"candidates": []}, "traceId": "t"});
        assert_eq!(code_assist_response(&answer), &json!({"candidates": []}));
        let err = json!({"error": {"code": 429}});
        assert_eq!(code_assist_response(&err), &err);
    }

    #[test]
    fn sign_in_tokens_are_told_from_keys() {
        assert!(is_sign_in("sk-ant-oat01-abc", None, Billing::PerToken));
        assert!(is_sign_in(
            "tok",
            Some("claude-code-20250219, oauth-2025-04-20"),
            Billing::PerToken
        ));
        assert!(is_sign_in("eyJhbGciOi", None, Billing::Subscription));
        assert!(!is_sign_in(
            "sk-ant-api03-abc",
            Some("prompt-caching-2024-07-31"),
            Billing::PerToken
        ));
        assert!(!is_sign_in("sk-proj-abc", None, Billing::Local));
    }
}
