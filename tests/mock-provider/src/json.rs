//! A small JSON value type that keeps object keys in the order they are written, and the `j!` macro
//! to build it. The providers send keys in a fixed order (`id`, `object`, `created`, ...), and
//! `serde_json::Value` sorts keys unless the workspace-wide `preserve_order` feature is on, which
//! other crates (canonical policy JSON) must not get. This module only builds and serialises values.

use std::borrow::Cow;

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// An ordered JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum J {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An unsigned integer.
    U(u64),
    /// A float.
    F(f64),
    /// A string.
    S(Cow<'static, str>),
    /// An array.
    A(Vec<J>),
    /// An object, keys in insertion order.
    O(Vec<(Cow<'static, str>, J)>),
    /// A `serde_json::Value` embedded as is (echoed request fields).
    V(Value),
}

impl J {
    /// Compact serialisation.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Compact serialisation as a string.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Pretty serialisation with two-space indentation (Google's style).
    pub fn to_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Adds or replaces a key of an object (no-op on other values).
    pub fn set(&mut self, key: &'static str, value: impl Into<J>) {
        if let J::O(fields) = self {
            let value = value.into();
            match fields.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => fields.push((Cow::Borrowed(key), value)),
            }
        }
    }

    /// Removes a key of an object (no-op on other values or a missing key).
    pub fn remove(&mut self, key: &str) {
        if let J::O(fields) = self {
            fields.retain(|(k, _)| k != key);
        }
    }
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::U(n) => s.serialize_u64(*n),
            J::F(f) => s.serialize_f64(*f),
            J::S(v) => s.serialize_str(v),
            J::A(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            J::O(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k.as_ref(), v)?;
                }
                map.end()
            }
            J::V(v) => v.serialize(s),
        }
    }
}

impl From<&'static str> for J {
    fn from(v: &'static str) -> Self {
        J::S(Cow::Borrowed(v))
    }
}
impl From<String> for J {
    fn from(v: String) -> Self {
        J::S(Cow::Owned(v))
    }
}
impl From<&String> for J {
    fn from(v: &String) -> Self {
        J::S(Cow::Owned(v.clone()))
    }
}
impl From<bool> for J {
    fn from(v: bool) -> Self {
        J::Bool(v)
    }
}
impl From<u64> for J {
    fn from(v: u64) -> Self {
        J::U(v)
    }
}
impl From<u32> for J {
    fn from(v: u32) -> Self {
        J::U(u64::from(v))
    }
}
impl From<u16> for J {
    fn from(v: u16) -> Self {
        J::U(u64::from(v))
    }
}
impl From<usize> for J {
    fn from(v: usize) -> Self {
        J::U(v as u64)
    }
}
impl From<f32> for J {
    fn from(v: f32) -> Self {
        J::F(f64::from(v))
    }
}
impl From<f64> for J {
    fn from(v: f64) -> Self {
        J::F(v)
    }
}
impl From<Vec<J>> for J {
    fn from(v: Vec<J>) -> Self {
        J::A(v)
    }
}
impl From<Value> for J {
    fn from(v: Value) -> Self {
        J::V(v)
    }
}
impl From<&Value> for J {
    fn from(v: &Value) -> Self {
        J::V(v.clone())
    }
}
impl<T: Into<J>> From<Option<T>> for J {
    fn from(v: Option<T>) -> Self {
        v.map_or(J::Null, Into::into)
    }
}

/// Builds a [`J`] with `json!`-like syntax; keys must be string literals, and a value that is more
/// than one token (a call, an operation) must be wrapped in parentheses.
#[macro_export]
macro_rules! j {
    (null) => { $crate::json::J::Null };
    ([ $($e:tt),* $(,)? ]) => { $crate::json::J::A(vec![ $( $crate::j!($e) ),* ]) };
    ({ $($k:literal : $v:tt),* $(,)? }) => {
        $crate::json::J::O(vec![ $( (::std::borrow::Cow::Borrowed($k), $crate::j!($v)) ),* ])
    };
    ($e:expr) => { $crate::json::J::from($e) };
}

#[cfg(test)]
mod tests {

    #[test]
    fn keeps_key_order() {
        let id = String::from("x");
        let n = 3u64;
        let mut v = j!({"id": id, "object": "chat", "n": (n + 1), "a": [1u64, null, {"z": true, "b": false}]});
        assert_eq!(
            v.to_text(),
            r#"{"id":"x","object":"chat","n":4,"a":[1,null,{"z":true,"b":false}]}"#
        );
        v.set("object", "other");
        v.set("new", 1u64);
        assert_eq!(
            v.to_text(),
            r#"{"id":"x","object":"other","n":4,"a":[1,null,{"z":true,"b":false}],"new":1}"#
        );
    }
}
