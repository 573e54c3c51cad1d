//! Guardrails on text that arrives in pieces: a response's content, tool-call arguments, reasoning
//! and refusal streams, each addressed by channel and index. For every stream the [`Scanner`]
//! decides how far its text is final — nothing a later byte could change lies before that point —
//! and only that much may reach the client. What it holds back is bounded by the detectors that can
//! act (redact or block) on this response, and is small where they can tell:
//!
//! - secrets hold nothing until one of their keywords (`AKIA`, `ghp_`, `-----BEGIN`, `api_key` …)
//!   arrives, and then only from that keyword until the longest match its rules can make (their
//!   regexes' bounded length, or their window) has passed, or until the rule cannot match any more;
//!   the last bytes that could be the start of a keyword (the longest keyword less one) always wait;
//! - personal data holds its longest match and the byte after it (98 bytes), custom rules theirs,
//!   prompt injection 512 bytes — only when policy redacts or blocks them in responses (by default it
//!   logs them, and they hold nothing).
//!
//! The decided part is rescanned with a little context before it; redactions found there are
//! applied to the deltas as they are released (the placeholder in the delta where the match starts,
//! the rest of the match removed from the deltas after it), and a `block` ends the stream before any
//! of its match goes out. When the response ends, each stream's whole text is scanned once more for
//! the record, so what is journaled is what a scan of the whole text finds. It must not log a value.

use std::sync::Arc;

use super::actions::{hit, merge, Context, Guard, Hit};
use super::{floor_char, Category, CategorySet, HoldState};
use crate::policy::guardrails::{Action, Direction};
use crate::providers::response::TextChannel;

/// The most text one stream keeps for inspection. Past it the stream is no longer held (nothing of it
/// is redacted any more) and the record says so.
pub const MAX_STREAM_TEXT: usize = 4 << 20;

/// Text before the first undecided byte that is rescanned with it: the byte before a match, the
/// key name before a generic secret's value.
const CONTEXT: usize = 96;

/// Which text of a response: channel and choice / block / item index.
pub type StreamKey = (TextChannel, u64);

/// Who the response is for, for the action rules' filters.
#[derive(Debug, Clone, Default)]
pub struct Who {
    /// Provider name.
    pub provider: String,
    /// Model asked for.
    pub model: Option<String>,
    /// Client executable name.
    pub app: Option<String>,
}

impl Who {
    fn cx(&self) -> Context<'_> {
        Context {
            provider: &self.provider,
            model: self.model.as_deref(),
            app: self.app.as_deref(),
        }
    }
}

/// A finding the scanner acted on.
#[derive(Debug, Clone)]
struct Decided {
    rule: Arc<str>,
    category: Category,
    start: usize,
    end: usize,
    action: Action,
}

struct Stream {
    key: StreamKey,
    text: String,
    released: usize,
    hold: HoldState,
    decided: Vec<Decided>,
    /// Over [`MAX_STREAM_TEXT`]: released as it comes.
    overflow: bool,
}

/// A `block` finding: the stream must end before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// `rule (category)` of each.
    pub rules: Vec<String>,
}

/// The JSON-Pointer-like address of a response stream in records and `allow_paths`:
/// `/content/0`, `/tool_arguments/1`, `/reasoning/0`, `/refusal/0`.
pub fn pointer(key: StreamKey) -> String {
    let channel = match key.0 {
        TextChannel::Content => "content",
        TextChannel::ToolArguments => "tool_arguments",
        TextChannel::Reasoning => "reasoning",
        TextChannel::Refusal => "refusal",
    };
    format!("/{channel}/{}", key.1)
}

/// A change to one delta's text: the byte range of the original delta and what replaces it.
pub type Edit = (std::ops::Range<usize>, String);

/// The response-side scanner of one response.
pub struct Scanner {
    guard: Arc<Guard>,
    who: Who,
    acting: CategorySet,
    bound: usize,
    streams: Vec<Stream>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("acting", &self.acting)
            .field("bound", &self.bound)
            .field("streams", &self.streams.len())
            .finish()
    }
}

impl Scanner {
    /// A scanner for a response to `who` under `guard`.
    pub fn new(guard: Arc<Guard>, who: Who) -> Scanner {
        let acting = guard.acting(Direction::Response, &who.cx());
        let bound = guard.engine().stream_bound(acting);
        Scanner {
            guard,
            who,
            acting,
            bound,
            streams: Vec::new(),
        }
    }

    /// Whether anything may be redacted or blocked (otherwise nothing is ever held).
    pub fn acts(&self) -> bool {
        !self.acting.is_empty()
    }

    /// The most text (bytes) one stream holds back before the end of the response, beyond the
    /// delta that arrived last.
    pub fn bound(&self) -> usize {
        self.bound
    }

    fn stream(&mut self, key: StreamKey) -> &mut Stream {
        let i = match self.streams.iter().position(|s| s.key == key) {
            Some(i) => i,
            None => {
                self.streams.push(Stream {
                    key,
                    text: String::new(),
                    released: 0,
                    hold: HoldState::default(),
                    decided: Vec::new(),
                    overflow: false,
                });
                self.streams.len() - 1
            }
        };
        &mut self.streams[i]
    }

    /// Appends a delta to its stream.
    pub fn push(&mut self, key: StreamKey, text: &str) {
        let s = self.stream(key);
        if s.overflow {
            return;
        }
        if s.text.len() + text.len() > MAX_STREAM_TEXT {
            s.overflow = true;
            tracing::warn!(
                stream = %pointer(key),
                "a response text is over {MAX_STREAM_TEXT} bytes; the rest of it is not inspected"
            );
            return;
        }
        s.text.push_str(text);
    }

    /// Decides as much of every stream as its text allows (`end`: all of it, the response is
    /// complete). `Err` when a finding is to be blocked.
    pub fn advance(&mut self, end: bool) -> Result<(), Blocked> {
        let mut blocked = Vec::new();
        let engine = self.guard.engine();
        let cx = self.who.cx();
        for s in &mut self.streams {
            let len = s.text.len();
            if s.overflow {
                s.released = len;
                continue;
            }
            let target = if end || self.acting.is_empty() {
                len
            } else {
                engine.hold_from(&s.text, self.acting, &mut s.hold)
            };
            if target <= s.released {
                continue;
            }
            if !self.acting.is_empty() {
                let from = floor_char(&s.text, s.released.saturating_sub(CONTEXT));
                let mut ptr: Option<String> = None;
                for f in engine.scan_only(&s.text[from..], self.acting) {
                    let (start, stop) = (from + f.start, from + f.end);
                    if start < s.released || start >= target {
                        continue;
                    }
                    if s.decided
                        .iter()
                        .any(|d| d.category == f.category && d.start < stop && start < d.end)
                    {
                        continue;
                    }
                    let ptr = ptr.get_or_insert_with(|| pointer(s.key));
                    let action = self.guard.action(
                        &f,
                        &s.text[start..stop],
                        Some(ptr),
                        Direction::Response,
                        &cx,
                    );
                    if !matches!(action, Action::Redact | Action::Block) {
                        continue;
                    }
                    if action == Action::Block {
                        let r = format!("{} ({})", f.rule, f.category.as_str());
                        if !blocked.contains(&r) {
                            blocked.push(r);
                        }
                    }
                    s.decided.push(Decided {
                        rule: f.rule.clone(),
                        category: f.category,
                        start,
                        end: stop,
                        action,
                    });
                }
            }
            s.released = target;
        }
        if blocked.is_empty() {
            Ok(())
        } else {
            Err(Blocked { rules: blocked })
        }
    }

    /// How far the stream `key` is decided (bytes of its text); text past it must wait.
    pub fn released(&self, key: StreamKey) -> usize {
        self.streams.iter().find(|s| s.key == key).map_or(0, |s| {
            if s.overflow {
                usize::MAX
            } else {
                s.released
            }
        })
    }

    /// The most undecided text any stream holds now.
    pub fn held(&self) -> usize {
        self.streams
            .iter()
            .filter(|s| !s.overflow)
            .map(|s| s.text.len() - s.released)
            .max()
            .unwrap_or(0)
    }

    /// The delta of `key` at `offset` with `text`, redacted: `None` when nothing in it changes,
    /// else the new text and the edits that make it.
    pub fn rewrite(
        &self,
        key: StreamKey,
        offset: usize,
        text: &str,
    ) -> Option<(String, Vec<Edit>)> {
        let s = self.streams.iter().find(|s| s.key == key)?;
        let end = offset + text.len();
        let mut cuts: Vec<&Decided> = s
            .decided
            .iter()
            .filter(|d| d.action == Action::Redact && d.start < end && offset < d.end)
            .collect();
        if cuts.is_empty() {
            return None;
        }
        cuts.sort_by_key(|d| d.start);
        let mut out = String::with_capacity(text.len());
        let mut edits = Vec::new();
        let mut at = offset;
        for d in cuts {
            let a = d.start.max(at);
            let b = d.end.min(end);
            if b <= a {
                continue;
            }
            out.push_str(&text[at - offset..a - offset]);
            let placeholder = if (offset..end).contains(&d.start) {
                format!("[REDACTED:{}]", d.rule)
            } else {
                String::new()
            };
            out.push_str(&placeholder);
            edits.push(((a - offset)..(b - offset), placeholder));
            at = b;
        }
        out.push_str(&text[at - offset..]);
        Some((out, edits))
    }

    /// What the record keeps: every finding a scan of each stream's whole text makes (action
    /// `off` left out), with the action that was taken — a redaction or block the stream could not
    /// apply is recorded as `log` — merged per rule and stream.
    pub fn hits(&self, key: &[u8; 32]) -> Vec<Hit> {
        let engine = self.guard.engine();
        let cx = self.who.cx();
        let mut out = Vec::new();
        for s in &self.streams {
            let ptr = pointer(s.key);
            let whole = engine.scan(&s.text);
            for f in &whole {
                let v = &s.text[f.start..f.end];
                let mut action = self
                    .guard
                    .action(f, v, Some(&ptr), Direction::Response, &cx);
                if action == Action::Off {
                    continue;
                }
                let applied = s
                    .decided
                    .iter()
                    .any(|d| d.category == f.category && d.start < f.end && f.start < d.end);
                if matches!(action, Action::Redact | Action::Block) && !applied {
                    tracing::warn!(
                        rule = %f.rule,
                        stream = %ptr,
                        "a guardrail finding was only seen in the whole response text; recorded, not applied"
                    );
                    action = Action::Log;
                }
                out.push(hit(key, f, v, Some(&ptr), Direction::Response, action));
            }
            // What the stream acted on that the whole-text scan resolved differently still happened.
            for d in &s.decided {
                if whole
                    .iter()
                    .any(|f| f.category == d.category && f.start < d.end && d.start < f.end)
                {
                    continue;
                }
                let f = super::Finding::new(&d.rule, d.category, d.start, d.end, 0);
                let v = &s.text[d.start..d.end];
                out.push(hit(key, &f, v, Some(&ptr), Direction::Response, d.action));
            }
        }
        merge(out)
    }

    /// Whether a stream outgrew [`MAX_STREAM_TEXT`].
    pub fn overflowed(&self) -> bool {
        self.streams.iter().any(|s| s.overflow)
    }
}

#[cfg(test)]
mod tests;
