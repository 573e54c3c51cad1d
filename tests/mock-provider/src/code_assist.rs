//! Google's Code Assist backend as Gemini CLI signed in with Google uses it
//! (`cloudcode-pa.googleapis.com/v1internal:{method}`, gemini-cli `packages/core/src/code_assist/`):
//! `generateContent` and `streamGenerateContent` take a Gemini request wrapped as
//! `{"model", "project", "user_prompt_id", "request": {…}}` and answer each GenerateContentResponse
//! wrapped as `{"response": {…}, "traceId"}` (SSE with `alt=sse`); `countTokens` takes
//! `{"request": {"model": "models/…", "contents"}}` and answers `{"totalTokens"}`; `loadCodeAssist`
//! answers the user's tier (an onboarding call, not a model call). The Gemini bodies themselves come
//! from `gemini.rs`; this module only unwraps and wraps them.

use bytes::Bytes;
use http::{Method as HttpMethod, StatusCode};
use serde_json::{json, Value};

use crate::gemini;
use crate::reply::{bad_request, parse_body, Call, Reply, ReplyBody};

/// A Code Assist method the mock serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `v1internal:generateContent`
    Generate,
    /// `v1internal:streamGenerateContent`
    Stream,
    /// `v1internal:countTokens`
    CountTokens,
    /// `v1internal:loadCodeAssist`
    LoadCodeAssist,
}

/// The method for `POST /v1internal:{method}`, if the mock serves it.
pub fn route(method: &HttpMethod, path: &str) -> Option<Method> {
    if method != HttpMethod::POST {
        return None;
    }
    match path.strip_prefix("/v1internal:")? {
        "generateContent" => Some(Method::Generate),
        "streamGenerateContent" => Some(Method::Stream),
        "countTokens" => Some(Method::CountTokens),
        "loadCodeAssist" => Some(Method::LoadCodeAssist),
        _ => None,
    }
}

/// Answers a Code Assist call.
pub fn handle(method: Method, call: &Call<'_>) -> Reply {
    let envelope = match parse_body(call) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if method == Method::LoadCodeAssist {
        return google_json(&json!({
            "currentTier": {"id": "standard-tier", "name": "Gemini Code Assist"},
            "cloudaicompanionProject": "mock-project",
        }));
    }
    let Some(request) = envelope.get("request").filter(|r| r.is_object()) else {
        return bad_request(
            call,
            "Invalid JSON payload received. Missing field \"request\".",
        );
    };
    if method == Method::CountTokens {
        return google_json(&json!({"totalTokens": gemini::request_words(request)}));
    }
    let Some(model) = envelope.get("model").and_then(Value::as_str) else {
        return bad_request(
            call,
            "Invalid JSON payload received. Missing field \"model\".",
        );
    };
    let inner = Bytes::from(request.to_string());
    let inner_call = Call {
        body: &inner,
        ..*call
    };
    let trace = format!("mocktrace{}", call.id);
    let reply = gemini::generate(&inner_call, model, method == Method::Stream);
    if reply.status != StatusCode::OK {
        return reply;
    }
    wrap(reply, &trace)
}

fn google_json(v: &Value) -> Reply {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    Reply::bytes(StatusCode::OK, crate::reply::GOOGLE_JSON, Bytes::from(body))
}

/// One GenerateContentResponse in Code Assist's envelope.
fn envelope(response: Value, trace: &str) -> Value {
    json!({"response": response, "traceId": trace})
}

/// Wraps every response document of a successful Gemini reply (a JSON body, or SSE `data:` frames).
fn wrap(mut reply: Reply, trace: &str) -> Reply {
    reply.body = match reply.body {
        ReplyBody::Full(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(v) => ReplyBody::Full(Bytes::from(envelope(v, trace).to_string())),
            Err(_) => ReplyBody::Full(b),
        },
        ReplyBody::Stream {
            frames,
            error_frame,
        } => ReplyBody::Stream {
            frames: frames.into_iter().map(|f| wrap_frame(f, trace)).collect(),
            error_frame,
        },
    };
    reply
}

/// `data: {…}\r\n\r\n` → `data: {"response": {…}, "traceId"}\r\n\r\n`; anything else as it was.
fn wrap_frame(frame: Bytes, trace: &str) -> Bytes {
    let text = String::from_utf8_lossy(&frame);
    let Some(json) = text
        .strip_prefix("data: ")
        .and_then(|t| t.strip_suffix("\r\n\r\n"))
    else {
        return frame;
    };
    match serde_json::from_str::<Value>(json) {
        Ok(v) => Bytes::from(format!("data: {}\r\n\r\n", envelope(v, trace))),
        Err(_) => frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_envelopes() {
        let post = HttpMethod::POST;
        assert_eq!(
            route(&post, "/v1internal:streamGenerateContent"),
            Some(Method::Stream)
        );
        assert_eq!(
            route(&post, "/v1internal:countTokens"),
            Some(Method::CountTokens)
        );
        assert_eq!(route(&HttpMethod::GET, "/v1internal:generateContent"), None);
        assert_eq!(route(&post, "/v1beta/models/g:generateContent"), None);
        let f = wrap_frame(
            Bytes::from_static(b"data: {\"candidates\":[]}\r\n\r\n"),
            "t1",
        );
        assert_eq!(
            &f[..],
            b"data: {\"response\":{\"candidates\":[]},\"traceId\":\"t1\"}\r\n\r\n"
        );
        let other = Bytes::from_static(b": comment\n\n");
        assert_eq!(wrap_frame(other.clone(), "t"), other);
    }
}
