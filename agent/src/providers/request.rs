//! Reading request bodies: every text-bearing part of a request (system prompts, messages and their
//! content parts, tool definitions, tool-call arguments and results, Responses input items, Gemini parts),
//! each addressed by a JSON Pointer (RFC 6901) into the parsed body so a later stage can redact a span in
//! place and re-serialise valid JSON; and the one rewrite this module performs itself — asking an
//! OpenAI-style stream for usage (`stream_options.include_usage`). It decides nothing about policy.

use std::ops::Range;

use serde_json::Value;

use crate::policy::ApiKind;

/// Who or what a piece of request text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextRole {
    /// System prompt / instructions / developer message.
    System,
    /// The user's words (also embedding inputs and legacy prompts).
    User,
    /// Earlier model output sent back.
    Assistant,
    /// Tool results sent to the model.
    ToolResult,
    /// Tool-call arguments (the model's, sent back).
    ToolArguments,
    /// Tool definitions: descriptions, parameter schemas.
    ToolDefinition,
}

/// One text-bearing string in a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSpan {
    /// JSON Pointer to the string value.
    pub pointer: String,
    /// What the text is.
    pub role: TextRole,
    /// Its length in bytes (UTF-8).
    pub len: usize,
}

impl TextSpan {
    /// The text itself, from the same body.
    pub fn text<'a>(&self, body: &'a Value) -> Option<&'a str> {
        body.pointer(&self.pointer).and_then(Value::as_str)
    }
}

/// Why a redaction could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    /// The pointer does not name a string.
    #[error("{0} does not point at a string in the body")]
    NotAString(String),
    /// The range is outside the string or splits a character.
    #[error("byte range {0:?} is not a valid span of the string at {1}")]
    BadRange(Range<usize>, String),
}

/// Replaces `range` (bytes) of the string at `pointer` with `replacement`. Serialising the body afterwards
/// gives valid JSON with every other byte of meaning unchanged.
pub fn redact(
    body: &mut Value,
    pointer: &str,
    range: Range<usize>,
    replacement: &str,
) -> Result<(), RedactError> {
    let Some(Value::String(s)) = body.pointer_mut(pointer) else {
        return Err(RedactError::NotAString(pointer.to_string()));
    };
    if range.start > range.end
        || range.end > s.len()
        || !s.is_char_boundary(range.start)
        || !s.is_char_boundary(range.end)
    {
        return Err(RedactError::BadRange(range, pointer.to_string()));
    }
    s.replace_range(range, replacement);
    Ok(())
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

struct Collector {
    spans: Vec<TextSpan>,
}

impl Collector {
    fn string(&mut self, v: &Value, ptr: &str, role: TextRole) {
        if let Some(s) = v.as_str() {
            if !s.is_empty() {
                self.spans.push(TextSpan {
                    pointer: ptr.to_string(),
                    role,
                    len: s.len(),
                });
            }
        }
    }

    /// Every string leaf under `v` (object keys are not text; values are).
    /// One item of a Responses input (or a Realtime conversation item) at `ip`: a message's
    /// content, a tool call's arguments, a tool result.
    fn item(&mut self, item: &Value, ip: &str) {
        match item.get("type").and_then(Value::as_str) {
            Some("function_call_output") | Some("custom_tool_call_output") => {
                if let Some(o) = item.get("output") {
                    self.leaves(o, &format!("{ip}/output"), TextRole::ToolResult, 0);
                }
            }
            Some("function_call") => {
                if let Some(a) = item.get("arguments") {
                    self.string(a, &format!("{ip}/arguments"), TextRole::ToolArguments);
                }
            }
            _ => {
                let role = role_of(item.get("role").and_then(Value::as_str));
                if let Some(content) = item.get("content") {
                    self.content(content, &format!("{ip}/content"), role);
                }
            }
        }
    }

    fn leaves(&mut self, v: &Value, ptr: &str, role: TextRole, depth: u32) {
        if depth > 64 {
            return; // pathological nesting: stop rather than recurse without bound
        }
        match v {
            Value::String(_) => self.string(v, ptr, role),
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.leaves(x, &format!("{ptr}/{i}"), role, depth + 1);
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    self.leaves(x, &format!("{ptr}/{}", escape(k)), role, depth + 1);
                }
            }
            _ => {}
        }
    }

    /// A `content` that is a string or a list of parts with `text` (OpenAI, Anthropic).
    fn content(&mut self, v: &Value, ptr: &str, role: TextRole) {
        match v {
            Value::String(_) => self.string(v, ptr, role),
            Value::Array(parts) => {
                for (j, p) in parts.iter().enumerate() {
                    let pp = format!("{ptr}/{j}");
                    match p {
                        Value::String(_) => self.string(p, &pp, role),
                        Value::Object(_) => self.part(p, &pp, role),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// One content part / block of any provider.
    fn part(&mut self, p: &Value, pp: &str, role: TextRole) {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "tool_use" | "server_tool_use" => {
                if let Some(i) = p.get("input") {
                    self.leaves(i, &format!("{pp}/input"), TextRole::ToolArguments, 0);
                }
            }
            "tool_result" => {
                if let Some(c) = p.get("content") {
                    self.content(c, &format!("{pp}/content"), TextRole::ToolResult);
                }
            }
            "thinking" => {
                if let Some(t) = p.get("thinking") {
                    self.string(t, &format!("{pp}/thinking"), TextRole::Assistant);
                }
            }
            _ => {
                for key in ["text", "input_text", "output_text", "refusal"] {
                    if let Some(t) = p.get(key) {
                        self.string(t, &format!("{pp}/{key}"), role);
                    }
                }
            }
        }
    }

    fn tools(&mut self, body: &Value) {
        if let Some(tools) = body.get("tools") {
            self.leaves(tools, "/tools", TextRole::ToolDefinition, 0);
        }
    }
}

/// The text role of a message's `role` field, in any provider's spelling (missing means the user).
pub(super) fn role_of(role: Option<&str>) -> TextRole {
    match role.unwrap_or("user") {
        "system" | "developer" => TextRole::System,
        "assistant" | "model" => TextRole::Assistant,
        "tool" | "function" => TextRole::ToolResult,
        _ => TextRole::User,
    }
}

/// Every text-bearing string of a request to `api`'s `operation`, in body order.
pub fn texts(api: ApiKind, operation: &str, body: &Value) -> Vec<TextSpan> {
    if api == ApiKind::CodeAssist {
        // The Gemini request inside the envelope, addressed from the envelope's root.
        let Some((inner, at)) = super::backends::code_assist_request(body) else {
            return Vec::new();
        };
        let mut spans = texts(ApiKind::Gemini, operation, inner);
        for s in &mut spans {
            s.pointer.insert_str(0, at);
        }
        return spans;
    }
    if api == ApiKind::Ollama {
        return super::ollama::text_pointers(operation, body)
            .into_iter()
            .filter_map(|(pointer, role)| {
                let len = body.pointer(&pointer)?.as_str()?.len();
                Some(TextSpan { pointer, role, len })
            })
            .collect();
    }
    let mut c = Collector { spans: Vec::new() };
    match api {
        ApiKind::Openai | ApiKind::Azure => match operation {
            "responses" => {
                if let Some(v) = body.get("instructions") {
                    c.string(v, "/instructions", TextRole::System);
                }
                match body.get("input") {
                    Some(v @ Value::String(_)) => c.string(v, "/input", TextRole::User),
                    Some(Value::Array(items)) => {
                        for (i, item) in items.iter().enumerate() {
                            c.item(item, &format!("/input/{i}"));
                        }
                    }
                    _ => {}
                }
                c.tools(body);
            }
            // A Realtime client event: the conversation item it adds, the instructions a session
            // or a response is given, the items a response is asked to answer.
            "realtime" => {
                if let Some(item) = body.get("item") {
                    c.item(item, "/item");
                }
                for at in ["/session", "/response"] {
                    let Some(s) = body.pointer(at) else { continue };
                    if let Some(v) = s.get("instructions") {
                        c.string(v, &format!("{at}/instructions"), TextRole::System);
                    }
                    for (i, item) in s
                        .get("input")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        c.item(item, &format!("{at}/input/{i}"));
                    }
                }
            }
            "embeddings" | "completions" => {
                let key = if operation == "embeddings" {
                    "input"
                } else {
                    "prompt"
                };
                if let Some(v) = body.get(key) {
                    // Strings or lists of strings; token-id arrays carry no text.
                    match v {
                        Value::String(_) => c.string(v, &format!("/{key}"), TextRole::User),
                        Value::Array(a) => {
                            for (i, x) in a.iter().enumerate() {
                                c.string(x, &format!("/{key}/{i}"), TextRole::User);
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(v) = body.get("suffix") {
                    c.string(v, "/suffix", TextRole::User);
                }
            }
            _ => {
                for (i, m) in body
                    .get("messages")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let mp = format!("/messages/{i}");
                    let role = role_of(m.get("role").and_then(Value::as_str));
                    if let Some(content) = m.get("content") {
                        c.content(content, &format!("{mp}/content"), role);
                    }
                    for (k, call) in m
                        .get("tool_calls")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .enumerate()
                    {
                        if let Some(a) = call.get("function").and_then(|f| f.get("arguments")) {
                            c.string(
                                a,
                                &format!("{mp}/tool_calls/{k}/function/arguments"),
                                TextRole::ToolArguments,
                            );
                        }
                    }
                }
                c.tools(body);
            }
        },
        ApiKind::Anthropic => {
            match body.get("system") {
                Some(s @ Value::String(_)) => c.string(s, "/system", TextRole::System),
                Some(s @ Value::Array(_)) => c.content(s, "/system", TextRole::System),
                _ => {}
            }
            for (i, m) in body
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let role = role_of(m.get("role").and_then(Value::as_str));
                if let Some(content) = m.get("content") {
                    c.content(content, &format!("/messages/{i}/content"), role);
                }
            }
            c.tools(body);
        }
        ApiKind::Gemini | ApiKind::CodeAssist | ApiKind::Ollama => {
            let parts = |c: &mut Collector, content: &Value, cp: &str, role: TextRole| {
                for (j, p) in content
                    .get("parts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    let pp = format!("{cp}/parts/{j}");
                    if let Some(t) = p.get("text") {
                        c.string(t, &format!("{pp}/text"), role);
                    }
                    if let Some(a) = p.get("functionCall").and_then(|f| f.get("args")) {
                        c.leaves(
                            a,
                            &format!("{pp}/functionCall/args"),
                            TextRole::ToolArguments,
                            0,
                        );
                    }
                    if let Some(r) = p.get("functionResponse").and_then(|f| f.get("response")) {
                        c.leaves(
                            r,
                            &format!("{pp}/functionResponse/response"),
                            TextRole::ToolResult,
                            0,
                        );
                    }
                }
            };
            for key in ["systemInstruction", "system_instruction"] {
                if let Some(si) = body.get(key) {
                    parts(&mut c, si, &format!("/{key}"), TextRole::System);
                }
            }
            for (i, content) in body
                .get("contents")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let role = role_of(content.get("role").and_then(Value::as_str));
                parts(&mut c, content, &format!("/contents/{i}"), role);
            }
            if let Some(content) = body.get("content") {
                parts(&mut c, content, "/content", TextRole::User); // embedContent
            }
            for (i, r) in body
                .get("requests")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                if let Some(content) = r.get("content") {
                    parts(
                        &mut c,
                        content,
                        &format!("/requests/{i}/content"),
                        TextRole::User,
                    );
                }
            }
            c.tools(body);
        }
    }
    c.spans
}

/// Whether an OpenAI-style streaming request lacks `stream_options.include_usage: true`.
pub fn lacks_stream_usage(api: ApiKind, operation: &str, body: &Value) -> bool {
    matches!(api, ApiKind::Openai | ApiKind::Azure)
        && matches!(operation, "chat_completions" | "completions")
        && body.get("stream").and_then(Value::as_bool) == Some(true)
        && body
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            != Some(true)
}

/// Adds `stream_options.include_usage: true` to a request body, keeping every other field and the key
/// order. Returns the new body, or `None` if the body is not a JSON object.
pub fn inject_stream_usage(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    let opts = obj
        .entry("stream_options")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !opts.is_object() {
        *opts = Value::Object(serde_json::Map::new());
    }
    opts.as_object_mut()?
        .insert("include_usage".into(), Value::Bool(true));
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roles_and_texts(api: ApiKind, op: &str, body: &Value) -> Vec<(TextRole, String, String)> {
        texts(api, op, body)
            .into_iter()
            .map(|s| (s.role, s.pointer.clone(), s.text(body).unwrap().to_string()))
            .collect()
    }

    #[test]
    fn openai_chat_texts_cover_every_part() {
        let body = json!({"model":"m","messages":[
            {"role":"system","content":"sys"},
            {"role":"user","content":[{"type":"text","text":"hello"},{"type":"image_url","image_url":{"url":"data:..."}}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"q\":\"secret\"}"}}]},
            {"role":"tool","tool_call_id":"c","content":"result text"}],
         "tools":[{"type":"function","function":{"name":"f","description":"looks up","parameters":{"type":"object","properties":{"q":{"type":"string","description":"query"}}}}}]});
        let got = roles_and_texts(ApiKind::Openai, "chat_completions", &body);
        assert!(got.contains(&(TextRole::System, "/messages/0/content".into(), "sys".into())));
        assert!(got.contains(&(
            TextRole::User,
            "/messages/1/content/0/text".into(),
            "hello".into()
        )));
        assert!(got.contains(&(
            TextRole::ToolArguments,
            "/messages/2/tool_calls/0/function/arguments".into(),
            "{\"q\":\"secret\"}".into()
        )));
        assert!(got.contains(&(
            TextRole::ToolResult,
            "/messages/3/content".into(),
            "result text".into()
        )));
        assert!(got.contains(&(
            TextRole::ToolDefinition,
            "/tools/0/function/description".into(),
            "looks up".into()
        )));
        assert!(got
            .iter()
            .any(|(_, p, t)| p.ends_with("/q/description") && t == "query"));
        assert!(
            !got.iter().any(|(_, _, t)| t.starts_with("data:")),
            "image urls are not text"
        );
    }

    #[test]
    fn responses_anthropic_and_gemini_texts() {
        let r = json!({"model":"m","instructions":"be nice","input":[
            {"role":"user","content":[{"type":"input_text","text":"hi"}]},
            {"type":"function_call","call_id":"1","name":"f","arguments":"{}"},
            {"type":"function_call_output","call_id":"1","output":"42"}]});
        let got = roles_and_texts(ApiKind::Openai, "responses", &r);
        assert_eq!(
            got[0],
            (TextRole::System, "/instructions".into(), "be nice".into())
        );
        assert!(got.contains(&(
            TextRole::User,
            "/input/0/content/0/text".into(),
            "hi".into()
        )));
        assert!(got.contains(&(TextRole::ToolResult, "/input/2/output".into(), "42".into())));

        let a = json!({"model":"c","system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":"q"},
                        {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"path":"/etc/a~b"}}]},
                        {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"file"}]}]}]});
        let got = roles_and_texts(ApiKind::Anthropic, "messages", &a);
        assert!(got.contains(&(TextRole::System, "/system/0/text".into(), "sys".into())));
        assert!(got.contains(&(
            TextRole::ToolArguments,
            "/messages/1/content/0/input/path".into(),
            "/etc/a~b".into()
        )));
        assert!(got.contains(&(
            TextRole::ToolResult,
            "/messages/2/content/0/content/0/text".into(),
            "file".into()
        )));

        let g = json!({"systemInstruction":{"parts":[{"text":"brief"}]},"contents":[
            {"role":"user","parts":[{"text":"hello"}]},
            {"role":"model","parts":[{"functionCall":{"name":"f","args":{"a/b":"x"}}}]}]});
        let got = roles_and_texts(ApiKind::Gemini, "generate_content", &g);
        assert!(got.contains(&(
            TextRole::System,
            "/systemInstruction/parts/0/text".into(),
            "brief".into()
        )));
        assert!(got.contains(&(
            TextRole::ToolArguments,
            "/contents/1/parts/0/functionCall/args/a~1b".into(),
            "x".into()
        )));
    }

    #[test]
    fn code_assist_texts_are_addressed_inside_the_envelope() {
        let body = json!({"model":"gemini-2.5-pro","project":"p","request":{
            "systemInstruction":{"parts":[{"text":"be brief"}]},
            "contents":[{"role":"user","parts":[{"text":"hello"}]}]}});
        let got = roles_and_texts(ApiKind::CodeAssist, "generate_content", &body);
        assert_eq!(
            got,
            vec![
                (
                    TextRole::System,
                    "/request/systemInstruction/parts/0/text".into(),
                    "be brief".into()
                ),
                (
                    TextRole::User,
                    "/request/contents/0/parts/0/text".into(),
                    "hello".into()
                ),
            ]
        );
        assert!(texts(
            ApiKind::CodeAssist,
            "generate_content",
            &json!({"model":"m"})
        )
        .is_empty());
    }

    #[test]
    fn redaction_in_place_keeps_valid_json() {
        let mut body =
            json!({"model":"m","messages":[{"role":"user","content":"my key is sk-abc123 ok"}]});
        let span = &texts(ApiKind::Openai, "chat_completions", &body)[0];
        let text = span.text(&body).unwrap().to_string();
        let start = text.find("sk-").unwrap();
        redact(
            &mut body,
            &span.pointer.clone(),
            start..start + 9,
            "[REDACTED]",
        )
        .unwrap();
        let out = serde_json::to_string(&body).unwrap();
        assert_eq!(
            out,
            r#"{"model":"m","messages":[{"role":"user","content":"my key is [REDACTED] ok"}]}"#
        );
        assert!(matches!(
            redact(&mut body, "/model", 0..99, "x"),
            Err(RedactError::BadRange(..))
        ));
        assert!(matches!(
            redact(&mut body, "/nope", 0..1, "x"),
            Err(RedactError::NotAString(_))
        ));
        let mut u = json!({"t": "héllo"});
        assert!(
            redact(&mut u, "/t", 0..2, "x").is_err(),
            "splits a character"
        );
    }

    #[test]
    fn stream_usage_injection_keeps_everything_else() {
        let body = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}],"temperature":0.2}"#;
        let v: Value = serde_json::from_slice(body).unwrap();
        assert!(lacks_stream_usage(ApiKind::Openai, "chat_completions", &v));
        let out = inject_stream_usage(body).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}],"temperature":0.2,"stream_options":{"include_usage":true}}"#
        );
        let with_other = br#"{"stream":true,"stream_options":{"include_obfuscation":false}}"#;
        assert_eq!(
            String::from_utf8(inject_stream_usage(with_other).unwrap()).unwrap(),
            r#"{"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}"#
        );
        let asked: Value =
            serde_json::from_str(r#"{"stream":true,"stream_options":{"include_usage":true}}"#)
                .unwrap();
        assert!(!lacks_stream_usage(
            ApiKind::Openai,
            "chat_completions",
            &asked
        ));
        assert!(!lacks_stream_usage(ApiKind::Anthropic, "messages", &v));
        assert!(!lacks_stream_usage(ApiKind::Openai, "responses", &v));
        assert!(inject_stream_usage(b"[1,2]").is_none());
    }
}
