//! Usage as each provider reports it, and its normalisation into [`Usage`] (wire-formats.md §0, §2–§7).
//! Raw fields are collected as they appear — in a whole response or in any stream frame — keeping the last
//! non-null value of each field, then normalised once at the end with each provider's arithmetic:
//! OpenAI's cached and reasoning counts are subsets of its totals; Anthropic's `input_tokens` excludes cache
//! reads and writes; Gemini's prompt count includes cached content and its thoughts are usually separate
//! from candidates (also inside Code Assist's `response` envelope). This module reads JSON values; it never sees bytes or does I/O.

use serde_json::Value;

use crate::policy::ApiKind;
use crate::record::Usage;

/// Usage fields in provider terms, each the last non-null value seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawUsage {
    /// OpenAI `prompt_tokens` / `input_tokens`; Anthropic `input_tokens` (excludes cache); Gemini
    /// `promptTokenCount`.
    pub input: Option<u64>,
    /// Cache reads: OpenAI `cached_tokens`, Anthropic `cache_read_input_tokens`, Gemini
    /// `cachedContentTokenCount`, DeepSeek `prompt_cache_hit_tokens`.
    pub cache_read: Option<u64>,
    /// Anthropic `cache_creation_input_tokens`.
    pub cache_write: Option<u64>,
    /// Anthropic `cache_creation.ephemeral_1h_input_tokens`.
    pub cache_write_1h: Option<u64>,
    /// OpenAI `completion_tokens` / `output_tokens`; Anthropic `output_tokens`; Gemini
    /// `candidatesTokenCount`.
    pub output: Option<u64>,
    /// OpenAI `reasoning_tokens`; Gemini `thoughtsTokenCount`.
    pub reasoning: Option<u64>,
    /// Gemini `toolUsePromptTokenCount`.
    pub tool_prompt: Option<u64>,
    /// Gemini `totalTokenCount`.
    pub total: Option<u64>,
}

fn num(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn nested(v: &Value, outer: &str, key: &str) -> Option<u64> {
    v.get(outer).and_then(|o| num(o, key))
}

impl RawUsage {
    /// Whether any field was seen.
    pub fn is_empty(&self) -> bool {
        *self == RawUsage::default()
    }

    /// Overwrites fields with the non-null ones of `other`.
    pub fn merge(&mut self, other: RawUsage) {
        macro_rules! take {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        take!(
            input,
            cache_read,
            cache_write,
            cache_write_1h,
            output,
            reasoning,
            tool_prompt,
            total
        );
    }

    /// Reads a usage object in `api`'s shape (the object itself, not its parent).
    pub fn from_usage_object(api: ApiKind, u: &Value) -> RawUsage {
        if !u.is_object() {
            return RawUsage::default();
        }
        match api {
            ApiKind::Openai | ApiKind::Azure => RawUsage {
                input: num(u, "prompt_tokens").or_else(|| num(u, "input_tokens")),
                cache_read: nested(u, "prompt_tokens_details", "cached_tokens")
                    .or_else(|| nested(u, "input_tokens_details", "cached_tokens"))
                    // The Realtime API's spelling.
                    .or_else(|| nested(u, "input_token_details", "cached_tokens"))
                    .or_else(|| num(u, "prompt_cache_hit_tokens")),
                output: num(u, "completion_tokens").or_else(|| num(u, "output_tokens")),
                reasoning: nested(u, "completion_tokens_details", "reasoning_tokens")
                    .or_else(|| nested(u, "output_tokens_details", "reasoning_tokens")),
                ..RawUsage::default()
            },
            ApiKind::Anthropic => RawUsage {
                input: num(u, "input_tokens"),
                cache_read: num(u, "cache_read_input_tokens"),
                cache_write: num(u, "cache_creation_input_tokens"),
                cache_write_1h: nested(u, "cache_creation", "ephemeral_1h_input_tokens"),
                output: num(u, "output_tokens"),
                ..RawUsage::default()
            },
            // Ollama's usage sits at the top of its last line (`from_document`).
            ApiKind::Ollama => RawUsage {
                input: num(u, "prompt_eval_count"),
                output: num(u, "eval_count"),
                ..RawUsage::default()
            },
            ApiKind::Gemini | ApiKind::CodeAssist => RawUsage {
                input: num(u, "promptTokenCount"),
                cache_read: num(u, "cachedContentTokenCount"),
                output: num(u, "candidatesTokenCount"),
                reasoning: num(u, "thoughtsTokenCount"),
                tool_prompt: num(u, "toolUsePromptTokenCount"),
                total: num(u, "totalTokenCount"),
                ..RawUsage::default()
            },
        }
    }

    /// Finds and reads the usage carried by one document (a whole response or a stream frame), wherever
    /// the provider puts it: top-level `usage`, `x_groq.usage`, Responses' `response.usage`, Anthropic's
    /// `message.usage`, Gemini's `usageMetadata`.
    pub fn from_document(api: ApiKind, doc: &Value) -> RawUsage {
        let candidates: [Option<&Value>; 3] = match api {
            ApiKind::Openai | ApiKind::Azure => [
                doc.get("usage"),
                doc.get("x_groq").and_then(|g| g.get("usage")),
                doc.get("response").and_then(|r| r.get("usage")),
            ],
            ApiKind::Anthropic => [
                doc.get("usage"),
                doc.get("message").and_then(|m| m.get("usage")),
                None,
            ],
            ApiKind::Gemini => [doc.get("usageMetadata"), None, None],
            ApiKind::Ollama => [Some(doc), None, None],
            // Code Assist wraps each GenerateContentResponse: `{"response": {"usageMetadata": …}}`.
            ApiKind::CodeAssist => [
                doc.get("response").and_then(|r| r.get("usageMetadata")),
                doc.get("usageMetadata"),
                None,
            ],
        };
        let mut raw = RawUsage::default();
        for u in candidates.into_iter().flatten() {
            raw.merge(RawUsage::from_usage_object(api, u));
        }
        raw
    }

    /// Normalises to [`Usage`]; `None` if nothing was seen.
    pub fn normalise(&self, api: ApiKind) -> Option<Usage> {
        if self.is_empty() {
            return None;
        }
        let v = |x: Option<u64>| x.unwrap_or(0);
        Some(match api {
            ApiKind::Openai | ApiKind::Azure | ApiKind::Ollama => Usage {
                input_tokens: v(self.input),
                cache_read_tokens: v(self.cache_read).min(v(self.input)),
                cache_write_tokens: 0,
                cache_write_1h_tokens: 0,
                output_tokens: v(self.output),
                reasoning_tokens: v(self.reasoning).min(v(self.output)),
            },
            ApiKind::Anthropic => {
                let write = v(self.cache_write);
                Usage {
                    input_tokens: v(self.input) + v(self.cache_read) + write,
                    cache_read_tokens: v(self.cache_read),
                    cache_write_tokens: write,
                    cache_write_1h_tokens: v(self.cache_write_1h).min(write),
                    output_tokens: v(self.output),
                    reasoning_tokens: 0,
                }
            }
            ApiKind::Gemini | ApiKind::CodeAssist => {
                let (prompt, cand, thoughts, tool) = (
                    v(self.input),
                    v(self.output),
                    v(self.reasoning),
                    v(self.tool_prompt),
                );
                // Usually thoughts are billed on top of candidates; some responses fold them in, which shows
                // as prompt + candidates + tool-use prompt adding up to the total on their own.
                let folded = thoughts > 0 && self.total == Some(prompt + cand + tool);
                Usage {
                    input_tokens: prompt + tool,
                    cache_read_tokens: v(self.cache_read).min(prompt),
                    cache_write_tokens: 0,
                    cache_write_1h_tokens: 0,
                    output_tokens: if folded { cand } else { cand + thoughts },
                    reasoning_tokens: thoughts,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(api: ApiKind, doc: Value) -> Usage {
        RawUsage::from_document(api, &doc).normalise(api).unwrap()
    }

    #[test]
    fn openai_cached_and_reasoning_are_subsets() {
        let u = norm(
            ApiKind::Openai,
            json!({"usage":{"prompt_tokens":1200,"completion_tokens":300,"prompt_tokens_details":{"cached_tokens":1024},"completion_tokens_details":{"reasoning_tokens":128}}}),
        );
        assert_eq!(
            (
                u.input_tokens,
                u.cache_read_tokens,
                u.uncached_input_tokens()
            ),
            (1200, 1024, 176)
        );
        assert_eq!((u.output_tokens, u.reasoning_tokens), (300, 128));
        let r = norm(
            ApiKind::Openai,
            json!({"type":"response.completed","response":{"usage":{"input_tokens":5000,"input_tokens_details":{"cached_tokens":4096},"output_tokens":900,"output_tokens_details":{"reasoning_tokens":640}}}}),
        );
        assert_eq!(
            (
                r.input_tokens,
                r.cache_read_tokens,
                r.output_tokens,
                r.reasoning_tokens
            ),
            (5000, 4096, 900, 640)
        );
        let groq = norm(
            ApiKind::Openai,
            json!({"choices":[],"x_groq":{"usage":{"prompt_tokens":7,"completion_tokens":3}}}),
        );
        assert_eq!((groq.input_tokens, groq.output_tokens), (7, 3));
        let deepseek = norm(
            ApiKind::Openai,
            json!({"usage":{"prompt_tokens":100,"completion_tokens":3,"prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}}),
        );
        assert_eq!(deepseek.cache_read_tokens, 64);
    }

    #[test]
    fn anthropic_input_excludes_cache_so_it_is_added() {
        let u = norm(
            ApiKind::Anthropic,
            json!({"usage":{"input_tokens":12,"cache_creation_input_tokens":2000,"cache_read_input_tokens":10000,"cache_creation":{"ephemeral_5m_input_tokens":1500,"ephemeral_1h_input_tokens":500},"output_tokens":30}}),
        );
        assert_eq!(u.input_tokens, 12_012);
        assert_eq!(
            (
                u.cache_read_tokens,
                u.cache_write_tokens,
                u.cache_write_1h_tokens
            ),
            (10_000, 2000, 500)
        );
        assert_eq!(u.uncached_input_tokens(), 12);
        assert_eq!(u.output_tokens, 30);
    }

    #[test]
    fn anthropic_stream_message_delta_overwrites_message_start() {
        let mut raw = RawUsage::from_document(
            ApiKind::Anthropic,
            &json!({"type":"message_start","message":{"usage":{"input_tokens":12,"cache_read_input_tokens":100,"output_tokens":1}}}),
        );
        raw.merge(RawUsage::from_document(
            ApiKind::Anthropic,
            &json!({"type":"message_delta","usage":{"output_tokens":30}}),
        ));
        let u = raw.normalise(ApiKind::Anthropic).unwrap();
        assert_eq!(
            (u.input_tokens, u.cache_read_tokens, u.output_tokens),
            (112, 100, 30)
        );
        raw.merge(RawUsage::from_document(
            ApiKind::Anthropic,
            &json!({"type":"message_delta","usage":{"input_tokens":15,"cache_read_input_tokens":100,"output_tokens":31}}),
        ));
        assert_eq!(raw.normalise(ApiKind::Anthropic).unwrap().input_tokens, 115);
    }

    #[test]
    fn gemini_prompt_includes_cache_and_thoughts_are_output() {
        let u = norm(
            ApiKind::Gemini,
            json!({"usageMetadata":{"promptTokenCount":1200,"cachedContentTokenCount":1024,"candidatesTokenCount":40,"thoughtsTokenCount":300,"toolUsePromptTokenCount":0,"totalTokenCount":1540}}),
        );
        assert_eq!(
            (
                u.input_tokens,
                u.cache_read_tokens,
                u.uncached_input_tokens()
            ),
            (1200, 1024, 176)
        );
        assert_eq!((u.output_tokens, u.reasoning_tokens), (340, 300));
        // Thoughts already inside candidates: the parts add up to the total without them.
        let folded = norm(
            ApiKind::Gemini,
            json!({"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":50,"thoughtsTokenCount":20,"totalTokenCount":60}}),
        );
        assert_eq!((folded.output_tokens, folded.reasoning_tokens), (50, 20));
    }

    #[test]
    fn null_and_absent_usage_is_none() {
        assert_eq!(
            RawUsage::from_document(ApiKind::Openai, &json!({"usage":null}))
                .normalise(ApiKind::Openai),
            None
        );
        assert_eq!(
            RawUsage::from_document(ApiKind::Gemini, &json!({"candidates":[]}))
                .normalise(ApiKind::Gemini),
            None
        );
    }
}
