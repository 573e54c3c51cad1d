//! Deterministic content of the mock: how request text is counted as tokens (one token per
//! whitespace-separated word), the answer text and its per-word stream chunks, mock tool-call
//! arguments and embedding vectors. Everything here is a pure function so tests can hand-compute
//! expectations; nothing here knows about HTTP or a provider's wire format.

use serde_json::{Map, Value};

/// Words in a string, as the mock counts tokens.
pub fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Words in a content value: a string, or an array of parts/blocks whose `text` fields count
/// (OpenAI `text`/`input_text` parts, Anthropic `text` blocks, Gemini `parts[].text`). Parts without
/// text (images, files, tool calls) count zero.
pub fn content_words(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::String(s)) => words(s),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p {
                Value::String(s) => words(s),
                Value::Object(o) => o.get("text").and_then(Value::as_str).map_or(0, words),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// Words in every `content` of an array of messages (OpenAI, Anthropic and Responses items).
pub fn messages_words(messages: Option<&Value>) -> u64 {
    match messages {
        Some(Value::Array(items)) => items.iter().map(|m| content_words(m.get("content"))).sum(),
        Some(Value::String(s)) => words(s),
        _ => 0,
    }
}

/// Token count of an OpenAI embeddings/completions input: a string counts its words, an array of
/// strings the sum of their words, an array of token ids its length, an array of such arrays the sum
/// of their lengths.
pub fn input_tokens(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::String(s)) => words(s),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => words(s),
                Value::Number(_) => 1,
                Value::Array(ids) => ids.len() as u64,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// The mock's answer for `model`: "This is a mock reply from <model>." cycled word by word until it has
/// exactly `n` words.
pub fn answer(model: &str, n: usize) -> String {
    let sentence = format!("This is a mock reply from {model}.");
    let base: Vec<&str> = sentence.split_whitespace().collect();
    if base.is_empty() || n == 0 {
        return String::new();
    }
    let mut out = String::with_capacity(n * 8);
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(base[i % base.len()]);
    }
    out
}

/// Default number of answer words for `model` (the words of the sentence once).
pub fn default_words(model: &str) -> usize {
    6 + model.split_whitespace().count().max(1)
}

/// The answer for a request: `requested` words (default: the sentence once), cut to `max` when the
/// request caps output tokens. Returns the text, its word count, and whether it was cut.
pub fn plan(model: &str, requested: Option<usize>, max: Option<u64>) -> (String, u64, bool) {
    let mut n = requested.unwrap_or_else(|| default_words(model));
    let mut truncated = false;
    if let Some(max) = max {
        if n as u64 > max {
            n = usize::try_from(max).unwrap_or(n);
            truncated = true;
        }
    }
    let text = answer(model, n);
    let count = words(&text);
    (text, count, truncated)
}

/// A mock call of a request's tool.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// Function name.
    pub name: String,
    /// Arguments object.
    pub args: Value,
    /// Arguments as JSON text.
    pub args_text: String,
}

impl ToolCall {
    /// A call of `name` with arguments derived from the parameters schema.
    pub fn new(name: &str, schema: Option<&Value>) -> Self {
        let args = mock_args(schema);
        let args_text = args.to_string();
        Self {
            name: name.to_owned(),
            args,
            args_text,
        }
    }

    /// The argument text split into stream fragments.
    pub fn fragments(&self) -> Vec<&str> {
        fragments(&self.args_text, ARG_FRAGMENT_CHARS)
    }

    /// Output tokens reported for the call: one per argument fragment.
    pub fn tokens(&self) -> u64 {
        self.fragments().len() as u64
    }
}

/// Splits an answer into its stream chunks: each word with the space that follows it. The chunks
/// concatenate to exactly the answer.
pub fn chunks(answer: &str) -> Vec<&str> {
    answer.split_inclusive(' ').collect()
}

/// Splits a string into fragments of at most `n` characters (tool-call argument streaming).
pub fn fragments(s: &str, n: usize) -> Vec<&str> {
    let mut out = Vec::with_capacity(s.len() / n.max(1) + 1);
    let mut start = 0;
    let mut count = 0;
    for (i, _) in s.char_indices() {
        if count == n {
            out.push(&s[start..i]);
            start = i;
            count = 0;
        }
        count += 1;
    }
    if start < s.len() || out.is_empty() {
        out.push(&s[start..]);
    }
    out
}

/// Characters per tool-call argument fragment; each fragment counts as one output token.
pub const ARG_FRAGMENT_CHARS: usize = 4;

/// Mock arguments for a function whose parameters are the JSON schema `schema`: each property gets a
/// fixed value by type (string "mock", number/integer 1, boolean true, array [], object {}).
pub fn mock_args(schema: Option<&Value>) -> Value {
    let mut out = Map::new();
    if let Some(props) = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, prop) in props {
            let ty = prop
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("string")
                .to_ascii_lowercase();
            let v = match ty.as_str() {
                "integer" | "number" => Value::from(1),
                "boolean" => Value::Bool(true),
                "array" => Value::Array(Vec::new()),
                "object" => Value::Object(Map::new()),
                "null" => Value::Null,
                _ => Value::from("mock"),
            };
            out.insert(name.clone(), v);
        }
    }
    Value::Object(out)
}

/// A deterministic unit-length embedding of `dims` values for the input `key`.
pub fn embedding(key: &[u8], dims: usize) -> Vec<f32> {
    // FNV-1a seed, then splitmix64 for the components.
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        seed ^= u64::from(*b);
        seed = seed.wrapping_mul(0x0100_0000_01b3);
    }
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = seed;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answer_cycles_and_chunks_concatenate() {
        let a = answer("gpt-4o-mini", 7);
        assert_eq!(a, "This is a mock reply from gpt-4o-mini.");
        assert_eq!(default_words("gpt-4o-mini"), 7);
        let long = answer("m", 10);
        assert_eq!(long, "This is a mock reply from m. This is a");
        assert_eq!(words(&long), 10);
        let c = chunks(&long);
        assert_eq!(c.len(), 10);
        assert_eq!(c[0], "This ");
        assert_eq!(c.concat(), long);
        assert_eq!(answer("m", 0), "");
    }

    #[test]
    fn counting_rules() {
        let msgs = json!([
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": [{"type": "text", "text": "Summarise this please"},
                                         {"type": "image_url", "image_url": {"url": "x"}}]}
        ]);
        assert_eq!(messages_words(Some(&msgs)), 6);
        assert_eq!(input_tokens(Some(&json!(["a b", "c"]))), 3);
        assert_eq!(input_tokens(Some(&json!([1, 2, 3]))), 3);
        assert_eq!(input_tokens(Some(&json!([[1, 2], [3]]))), 3);
    }

    #[test]
    fn fragments_and_args() {
        assert_eq!(fragments("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(fragments("", 4), vec![""]);
        let args = mock_args(Some(&json!({"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}}})));
        assert_eq!(args, json!({"city": "mock", "days": 1}));
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding(b"hello", 8);
        assert_eq!(a.len(), 8);
        assert_eq!(a, embedding(b"hello", 8));
        assert_ne!(a, embedding(b"world", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
