//! Ollama's native API (`/api/chat`, `/api/generate`, `/api/embed`, per Ollama's `docs/api.md`), beside
//! the OpenAI-compatible `/v1/...` it also serves: requests stream by default (`"stream": false` asks
//! for one JSON object), streams are NDJSON — one JSON object a line, `{"message": {"content"}}` or
//! `{"response"}` deltas, the last with `"done": true` and the usage as `prompt_eval_count` (input) and
//! `eval_count` (output) — and errors are `{"error": "text"}`. It reads values it is given; it decides
//! no policy.

use serde_json::Value;

use super::request::{role_of, TextRole};

/// The record operation of a native Ollama path, if it is one of the model calls.
pub fn operation(path: &str) -> Option<&'static str> {
    match path.trim_end_matches('/') {
        "/api/chat" => Some("chat"),
        "/api/generate" => Some("generate"),
        "/api/embed" | "/api/embeddings" => Some("embed"),
        _ => None,
    }
}

/// Whether a request to `operation` streams: chat and generate do unless the body says
/// `"stream": false`.
pub fn streams(operation: &str, stream: Option<bool>) -> bool {
    matches!(operation, "chat" | "generate") && stream.unwrap_or(true)
}

/// The text-bearing strings of a native request: `(pointer, role)` of each string value.
pub fn text_pointers(operation: &str, body: &Value) -> Vec<(String, TextRole)> {
    let mut out = Vec::new();
    let mut string = |v: Option<&Value>, ptr: String, role: TextRole| {
        if v.and_then(Value::as_str).is_some_and(|s| !s.is_empty()) {
            out.push((ptr, role));
        }
    };
    match operation {
        "chat" => {
            for (i, m) in body
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let role = role_of(m.get("role").and_then(Value::as_str));
                string(m.get("content"), format!("/messages/{i}/content"), role);
            }
        }
        "generate" => {
            string(body.get("system"), "/system".into(), TextRole::System);
            string(body.get("prompt"), "/prompt".into(), TextRole::User);
        }
        "embed" => match body.get("input").or_else(|| body.get("prompt")) {
            Some(Value::Array(a)) => {
                for (i, x) in a.iter().enumerate() {
                    string(Some(x), format!("/input/{i}"), TextRole::User);
                }
            }
            Some(v) => {
                let key = if body.get("input").is_some() {
                    "/input"
                } else {
                    "/prompt"
                };
                string(Some(v), key.into(), TextRole::User);
            }
            None => {}
        },
        _ => {}
    }
    out
}

/// What one native response document (a stream line or a whole answer) says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Line<'a> {
    /// The model named.
    pub model: Option<&'a str>,
    /// Answer text (`message.content` or `response`).
    pub content: Option<&'a str>,
    /// Thinking text (`message.thinking` or `thinking`).
    pub thinking: Option<&'a str>,
    /// Tool calls' arguments, as JSON text.
    pub tool_arguments: Vec<String>,
    /// `"done": true`: the last line.
    pub done: bool,
    /// `{"error": "…"}`.
    pub error: bool,
}

/// Reads one native response document.
pub fn read_line(v: &Value) -> Line<'_> {
    fn s(x: Option<&Value>) -> Option<&str> {
        x.and_then(Value::as_str).filter(|t| !t.is_empty())
    }
    let msg = v.get("message");
    Line {
        model: s(v.get("model")),
        content: s(msg.and_then(|m| m.get("content"))).or_else(|| s(v.get("response"))),
        thinking: s(msg.and_then(|m| m.get("thinking"))).or_else(|| s(v.get("thinking"))),
        tool_arguments: msg
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("function")?.get("arguments"))
            .map(Value::to_string)
            .collect(),
        done: v.get("done").and_then(Value::as_bool) == Some(true),
        error: v.get("error").is_some_and(|e| !e.is_null()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn native_paths_and_streaming_default() {
        assert_eq!(operation("/api/chat"), Some("chat"));
        assert_eq!(operation("/api/generate"), Some("generate"));
        assert_eq!(operation("/api/tags"), None);
        assert!(streams("chat", None));
        assert!(!streams("chat", Some(false)));
        assert!(!streams("embed", None));
    }

    #[test]
    fn lines_and_texts() {
        let last = json!({"model":"llama3.2","message":{"role":"assistant","content":""},"done":true,
                          "prompt_eval_count":26,"eval_count":298});
        let l = read_line(&last);
        assert!(l.done && l.content.is_none() && !l.error);
        let gen = json!({"model":"llama3.2","response":"The","done":false});
        assert_eq!(read_line(&gen).content, Some("The"));
        assert!(read_line(&json!({"error":"model 'x' not found"})).error);
        let body = json!({"model":"m","messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi"}]});
        assert_eq!(
            text_pointers("chat", &body),
            vec![
                ("/messages/0/content".to_string(), TextRole::System),
                ("/messages/1/content".to_string(), TextRole::User)
            ]
        );
        let g = json!({"model":"m","prompt":"why","system":"be brief"});
        assert_eq!(text_pointers("generate", &g).len(), 2);
    }
}
