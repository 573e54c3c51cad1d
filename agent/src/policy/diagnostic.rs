//! What is wrong with a policy, said the way an admin can act on it: the file, the line and column,
//! the key (`hosts[3].billing`), what is wrong and, for a misspelt key or value, the nearest valid
//! one. It turns the TOML parser's errors and the compiler's checks into [`Diagnostic`]s and finds
//! a key's position in the source through the parser's spanned tree. It must not decide what is
//! valid: the policy types and [`super::Policy::compile`] do.

use std::fmt;

use toml::de::{DeTable, DeValue};

/// One segment of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A table key.
    Key(String),
    /// An index into an array (of tables).
    Index(usize),
}

/// Where in the document a problem is: `hosts[3].billing`, `prices."openai/gpt-4o"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// A path from dotted plain keys (`"upstream.proxy"`); for keys with dots use [`KeyPath::key`].
    pub fn parse(dotted: &str) -> KeyPath {
        KeyPath(
            dotted
                .split('.')
                .filter(|s| !s.is_empty())
                .map(|s| Seg::Key(s.to_string()))
                .collect(),
        )
    }

    /// This path and one more key.
    pub fn key(mut self, k: impl Into<String>) -> KeyPath {
        self.0.push(Seg::Key(k.into()));
        self
    }

    /// This path and one more index.
    pub fn index(mut self, i: usize) -> KeyPath {
        self.0.push(Seg::Index(i));
        self
    }

    /// Whether the path names nothing (the whole document).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A problem in a policy, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where the policy came from: a path, "embedded default", a bundle's source.
    pub origin: String,
    /// 1-based line and column, when the policy was read from TOML text.
    pub position: Option<(usize, usize)>,
    /// The key the problem is at (empty: the whole document).
    pub key: KeyPath,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is more to say than the message does.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl Diagnostic {
    /// A problem the compiler found at `key`, located in `text` when the policy came as TOML.
    pub fn at(origin: &str, text: Option<&str>, key: KeyPath, message: String) -> Diagnostic {
        let position = text.and_then(|t| {
            let offset = locate(t, &key)?;
            Some(line_col(t, offset))
        });
        Diagnostic {
            origin: origin.to_string(),
            position,
            key,
            message,
            help: None,
        }
    }

    /// The TOML parser's or deserialiser's error, with the key it is at and, for an unknown key or
    /// value, the nearest valid one.
    pub fn from_toml(origin: &str, text: &str, e: &toml::de::Error) -> Diagnostic {
        let message = e.message().trim().to_string();
        let span = e.span();
        let position = span.as_ref().map(|s| line_col(text, s.start));
        let key = span
            .as_ref()
            .and_then(|s| key_at(text, s.start))
            .unwrap_or_default();
        let help = suggestion(&message);
        Diagnostic {
            origin: origin.to_string(),
            position,
            key,
            message,
            help,
        }
    }

    /// A deserialisation error of a policy that came as JSON (a bundle): no positions, but the
    /// same suggestions.
    pub fn from_json(origin: &str, e: &serde_json::Error) -> Diagnostic {
        let message = e.to_string();
        let help = suggestion(&message);
        Diagnostic {
            origin: origin.to_string(),
            position: None,
            key: KeyPath::default(),
            message,
            help,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A value to descend into: a table or an array (of tables).
enum Node<'a, 'i> {
    Table(&'a DeTable<'i>),
    Value(&'a DeValue<'i>),
}

impl<'a, 'i> Node<'a, 'i> {
    fn table(&self) -> Option<&'a DeTable<'i>> {
        match self {
            Node::Table(t) => Some(t),
            Node::Value(DeValue::Table(t)) => Some(t),
            Node::Value(_) => None,
        }
    }
}

/// The byte offset of `path`'s key (or, for an array element, of the element) in `text`; for a key
/// that is not there, the nearest enclosing one.
fn locate(text: &str, path: &KeyPath) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut here = Node::Table(doc.get_ref());
    let mut offset = None;
    for seg in &path.0 {
        match (seg, &here) {
            (Seg::Index(i), Node::Value(DeValue::Array(a))) => {
                let Some(item) = a.get(*i) else { break };
                offset = Some(item.span().start);
                here = Node::Value(item.get_ref());
            }
            (Seg::Key(k), node) => {
                let Some((key, value)) = node
                    .table()
                    .and_then(|t| t.iter().find(|(key, _)| key.get_ref().as_ref() == k))
                else {
                    break;
                };
                offset = Some(key.span().start);
                here = Node::Value(value.get_ref());
            }
            _ => break,
        }
    }
    offset
}

/// The deepest key whose key or value holds `offset`: the path an error at `offset` is about.
fn key_at(text: &str, offset: usize) -> Option<KeyPath> {
    let doc = DeTable::parse(text).ok()?;
    path_to(Node::Table(doc.get_ref()), None, offset, KeyPath::default()).filter(|p| !p.is_empty())
}

/// The path to `offset` inside `node` (whose own span is `span`; a table's or array element's
/// span is only its header, so every child is searched).
fn path_to(
    node: Node<'_, '_>,
    span: Option<std::ops::Range<usize>>,
    offset: usize,
    path: KeyPath,
) -> Option<KeyPath> {
    let here = span.is_some_and(|s| s.contains(&offset));
    if let Node::Value(DeValue::Array(a)) = node {
        for (i, item) in a.iter().enumerate() {
            let found = path_to(
                Node::Value(item.get_ref()),
                Some(item.span()),
                offset,
                path.clone().index(i),
            );
            if found.is_some() {
                return found;
            }
        }
        return here.then_some(path);
    }
    let Some(table) = node.table() else {
        return here.then_some(path);
    };
    for (k, v) in table.iter() {
        let child = path.clone().key(k.get_ref().as_ref());
        if k.span().contains(&offset) {
            return Some(child);
        }
        let found = path_to(Node::Value(v.get_ref()), Some(v.span()), offset, child);
        if found.is_some() {
            return found;
        }
    }
    here.then_some(path)
}

/// "did you mean `hosts`?" for serde's "unknown field `hots`, expected one of `schema`, `hosts`, …"
/// and "unknown variant …" messages.
fn suggestion(message: &str) -> Option<String> {
    let (kind, rest) = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.split_once(p).map(|(_, r)| (*p, r)))?;
    let (got, rest) = rest.split_once('`')?;
    let valid: Vec<&str> = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .collect();
    if valid.is_empty() {
        return None;
    }
    let what = if kind.contains("field") {
        "keys"
    } else {
        "values"
    };
    let best = valid
        .iter()
        .map(|v| (strsim::damerau_levenshtein(got, v), *v))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, v)| *d <= (v.len() / 3).max(2));
    let list = valid.join(", ");
    Some(match best {
        Some((_, v)) => format!("did you mean `{v}`? valid {what} here: {list}"),
        None => format!("valid {what} here: {list}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const TEXT: &str = "schema = 1\nname = \"x\"\n\n[[hosts]]\nhost = \"a.example\"\nprovider = \"openai\"\n\n[[hosts]]\nhost = \"b.example\"\nprovider = \"openai\"\nbilling = \"per_tokn\"\n\n[prices.\"openai/m\"]\ninput = 1.0\n";

    #[test]
    fn a_path_is_found_at_its_key() {
        let at = |p: KeyPath| {
            let d = Diagnostic::at("p.toml", Some(TEXT), p, "bad".into());
            d.position
        };
        assert_eq!(at(KeyPath::parse("name")), Some((2, 1)));
        assert_eq!(
            at(KeyPath::parse("hosts").index(1).key("billing")),
            Some((11, 1))
        );
        assert_eq!(at(KeyPath::parse("prices").key("openai/m")), Some((13, 9)));
        // A key that is not there: the nearest enclosing one.
        assert_eq!(
            at(KeyPath::parse("hosts").index(1).key("nope")),
            Some((8, 1))
        );
    }

    #[test]
    fn paths_print_as_admins_write_them() {
        let p = KeyPath::parse("hosts").index(3).key("billing");
        assert_eq!(p.to_string(), "hosts[3].billing");
        assert_eq!(
            KeyPath::parse("prices").key("openai/gpt-4o").to_string(),
            "prices.\"openai/gpt-4o\""
        );
    }

    #[test]
    fn a_misspelt_key_or_value_suggests_the_nearest_valid_one() {
        let m = "unknown field `hots`, expected one of `schema`, `name`, `hosts`, `upstream`";
        assert_eq!(
            suggestion(m).unwrap(),
            "did you mean `hosts`? valid keys here: schema, name, hosts, upstream"
        );
        let m = "unknown variant `per_tokn`, expected one of `per_token`, `subscription`, `local`";
        assert!(suggestion(m)
            .unwrap()
            .starts_with("did you mean `per_token`?"));
        let m = "unknown field `zzzzzzzz`, expected `a` or `b`";
        assert_eq!(suggestion(m).unwrap(), "valid keys here: a, b");
        assert_eq!(suggestion("invalid type: string, expected u32"), None);
    }

    #[test]
    fn the_key_of_a_parse_error_is_named() {
        let text = TEXT.replace("billing = \"per_tokn\"", "biling = \"per_token\"");
        assert_eq!(
            key_at(&text, text.find("biling").unwrap())
                .unwrap()
                .to_string(),
            "hosts[1].biling"
        );
        assert_eq!(
            key_at(TEXT, TEXT.find("per_tokn").unwrap())
                .unwrap()
                .to_string(),
            "hosts[1].billing"
        );
    }
}
