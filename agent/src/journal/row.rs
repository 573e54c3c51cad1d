//! One journal row and its place in the hash chain. A row is a request's `begin` (committed before
//! the request is forwarded), its `end` (the finished record), or an `event` (a policy decision
//! that is not a request: a bundle refused or applied, the journal pruned). Its hash covers every
//! column and the previous row's hash, so editing any value, or deleting or reordering a row, breaks
//! the chain at that row. It owns the row's columns and the hash; it must not touch the database.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::{Outcome, Record};

/// The hash before the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A request about to be forwarded.
    Begin,
    /// A finished request.
    End,
    /// Something that is not a request.
    Event,
}

impl Kind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Begin => "begin",
            Kind::End => "end",
            Kind::Event => "event",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "begin" => Some(Kind::Begin),
            "end" => Some(Kind::End),
            "event" => Some(Kind::Event),
            _ => None,
        }
    }
}

/// A row before the writer gives it its place (`seq`) and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What it is.
    pub kind: Kind,
    /// The request id, or the event's id.
    pub id: String,
    /// When it was written, RFC 3339 UTC.
    pub at: String,
    /// The same instant, milliseconds since the Unix epoch (for range queries).
    pub at_ms: i64,
    /// The local user whose request it is, when known.
    pub uid: Option<u32>,
    /// Provider (requests).
    pub provider: Option<String>,
    /// Model asked for (requests).
    pub model: Option<String>,
    /// How the request ended (`end` rows), or the event's name.
    pub outcome: Option<String>,
    /// Input tokens (`end` rows with usage).
    pub input_tokens: Option<i64>,
    /// Output tokens (`end` rows with usage).
    pub output_tokens: Option<i64>,
    /// Cost in USD (`end` rows that are priced).
    pub cost_usd: Option<f64>,
    /// The whole row as JSON: the record, or the event.
    pub body: String,
}

fn outcome_name(o: Outcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn now() -> (String, i64) {
    let t = time::OffsetDateTime::now_utc();
    let ms = crate::record::unix_ms(t);
    (crate::record::format_rfc3339(t), ms)
}

impl Row {
    /// A request's row: `Begin` as it is forwarded, `End` when it has finished.
    pub fn request(kind: Kind, record: &Record) -> Row {
        let (at, at_ms) = now();
        let usage = record.usage.as_ref();
        Row {
            kind,
            id: record.id.clone(),
            at,
            at_ms,
            uid: record.uid,
            provider: Some(record.provider.clone()),
            model: record.model.clone(),
            outcome: (kind == Kind::End).then(|| outcome_name(record.outcome)),
            input_tokens: usage.map(|u| i64::try_from(u.input_tokens).unwrap_or(i64::MAX)),
            output_tokens: usage.map(|u| i64::try_from(u.output_tokens).unwrap_or(i64::MAX)),
            cost_usd: record.cost_usd,
            body: serde_json::to_string(record).unwrap_or_else(|_| "{}".into()),
        }
    }

    /// An event row: `name` (`policy_refused` …) with its details, which must hold no secret.
    pub fn event(name: &str, uid: Option<u32>, details: serde_json::Value) -> Row {
        let (at, at_ms) = now();
        let id = format!(
            "evt_{at_ms:x}_{}",
            EVENT_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let body = serde_json::json!({"event": name, "at": at, "details": details});
        Row {
            kind: Kind::Event,
            id,
            at,
            at_ms,
            uid,
            provider: None,
            model: None,
            outcome: Some(name.to_string()),
            input_tokens: None,
            output_tokens: None,
            cost_usd: None,
            body: body.to_string(),
        }
    }

    /// The row's hash at position `seq` after a row hashed `prev`: SHA-256 over every column, each
    /// written with its length so no two rows serialise alike.
    pub fn hash(&self, seq: i64, prev: &str) -> String {
        let mut h = Sha256::new();
        let mut field = |name: &str, v: Option<&str>| {
            h.update(name.as_bytes());
            match v {
                Some(v) => {
                    h.update(v.len().to_string().as_bytes());
                    h.update(b":");
                    h.update(v.as_bytes());
                }
                None => h.update(b"-"),
            }
            h.update(b";");
        };
        field("prev", Some(prev));
        field("seq", Some(&seq.to_string()));
        field("kind", Some(self.kind.as_str()));
        field("id", Some(&self.id));
        field("at", Some(&self.at));
        field("at_ms", Some(&self.at_ms.to_string()));
        field("uid", self.uid.map(|u| u.to_string()).as_deref());
        field("provider", self.provider.as_deref());
        field("model", self.model.as_deref());
        field("outcome", self.outcome.as_deref());
        field(
            "input_tokens",
            self.input_tokens.map(|t| t.to_string()).as_deref(),
        );
        field(
            "output_tokens",
            self.output_tokens.map(|t| t.to_string()).as_deref(),
        );
        // The exact bits, so a value read back from SQLite hashes as it was written.
        field(
            "cost_usd",
            self.cost_usd
                .map(|c| format!("{:016x}", c.to_bits()))
                .as_deref(),
        );
        field("body", Some(&self.body));
        hex::encode(h.finalize())
    }
}

static EVENT_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row::event(
            "policy_refused",
            Some(1000),
            serde_json::json!({"reason": "rollback"}),
        )
    }

    #[test]
    fn every_column_and_the_previous_hash_change_the_hash() {
        let r = row();
        let h = r.hash(7, GENESIS);
        assert_eq!(h.len(), 64);
        assert_eq!(h, r.hash(7, GENESIS), "deterministic");
        assert_ne!(h, r.hash(8, GENESIS));
        assert_ne!(h, r.hash(7, &"1".repeat(64)));
        let edits: [fn(&mut Row); 9] = [
            |r| r.id.push('x'),
            |r| r.at_ms += 1,
            |r| r.uid = None,
            |r| r.provider = Some("openai".into()),
            |r| r.model = Some(String::new()),
            |r| r.input_tokens = Some(0),
            |r| r.cost_usd = Some(0.0),
            |r| r.body.push(' '),
            |r| r.kind = Kind::End,
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut e = r.clone();
            edit(&mut e);
            assert_ne!(e.hash(7, GENESIS), h, "edit {i} kept the hash");
        }
        // Moving text between two fields does not collide.
        let mut a = r.clone();
        a.provider = Some("ab".into());
        a.model = Some("c".into());
        let mut b = r.clone();
        b.provider = Some("a".into());
        b.model = Some("bc".into());
        assert_ne!(a.hash(1, GENESIS), b.hash(1, GENESIS));
    }
}
