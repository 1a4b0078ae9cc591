//! Node ids, register fields and the rules their values must follow (DESIGN §2).
//!
//! Validation is the only gate between the outside world and the log: an op
//! whose field or value breaks these rules is refused with a [`Invalid`] that
//! names the field and the reason. Fields this version does not know are
//! accepted as they are, so a newer peer's data is kept and forwarded.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::date;

/// The largest title, in characters.
pub const MAX_TITLE_CHARS: usize = 1000;
/// The largest body, in bytes of UTF-8.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest tag name or link relation, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// The largest field name, in bytes.
pub const MAX_FIELD_BYTES: usize = 256;
/// The largest value of a field this version does not know, in bytes of JSON.
pub const MAX_UNKNOWN_VALUE_BYTES: usize = MAX_BODY_BYTES;

/// A node id: a lowercase hyphenated UUID v4.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId([u8; 36]);

impl NodeId {
    /// Parses a lowercase hyphenated UUID v4.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(
                "a node id is a lowercase UUID v4 like 6f1c0a9e-4b2d-4c1f-8a3e-5b7d9c0e1f2a",
            );
        }
        for (i, &c) in b.iter().enumerate() {
            let ok = match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
            };
            if !ok {
                return Err(
                    "a node id is a lowercase UUID v4 like 6f1c0a9e-4b2d-4c1f-8a3e-5b7d9c0e1f2a",
                );
            }
        }
        if b[14] != b'4' || !matches!(b[19], b'8' | b'9' | b'a' | b'b') {
            return Err("a node id must be a version-4 UUID");
        }
        let mut out = [0u8; 36];
        out.copy_from_slice(b);
        Ok(Self(out))
    }

    /// Builds an id from 16 random bytes, setting the version and variant bits.
    pub fn from_random_bytes(mut bytes: [u8; 16]) -> Self {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex = b"0123456789abcdef";
        let mut out = [0u8; 36];
        let mut j = 0;
        for (i, byte) in bytes.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out[j] = b'-';
                j += 1;
            }
            out[j] = hex[usize::from(byte >> 4)];
            out[j + 1] = hex[usize::from(byte & 0xf)];
            j += 2;
        }
        Self(out)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII ever enters the array.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.as_str())
    }
}

impl FromStr for NodeId {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One register name of a node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Field {
    Kind,
    Title,
    Body,
    Status,
    Priority,
    Due,
    Scheduled,
    Parent,
    Deleted,
    /// `tag:<name>`: membership in an LWW-element set.
    Tag(String),
    /// `link:<rel>:<node id>`: a typed link to another node.
    Link {
        rel: String,
        target: NodeId,
    },
    /// A field written by a newer version: kept and forwarded unchanged.
    Unknown(String),
}

/// A value or field that breaks the rules of DESIGN §2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct Invalid {
    /// The field, as written in the op (truncated when absurdly long).
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

impl Invalid {
    pub(crate) fn new(field: &str, reason: impl Into<String>) -> Self {
        let field = if field.len() > 80 {
            let mut end = 80;
            while !field.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &field[..end])
        } else {
            field.to_owned()
        };
        Self {
            field,
            reason: reason.into(),
        }
    }
}

fn valid_name(name: &str, what: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(format!("a {what} must be 1 to {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "a {what} must not contain spaces or control characters"
        ));
    }
    Ok(())
}

impl Field {
    /// Parses a field name, refusing malformed `tag:` and `link:` names.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        let known = match name {
            "kind" => Some(Field::Kind),
            "title" => Some(Field::Title),
            "body" => Some(Field::Body),
            "status" => Some(Field::Status),
            "priority" => Some(Field::Priority),
            "due" => Some(Field::Due),
            "scheduled" => Some(Field::Scheduled),
            "parent" => Some(Field::Parent),
            "deleted" => Some(Field::Deleted),
            _ => None,
        };
        if let Some(f) = known {
            return Ok(f);
        }
        if let Some(tag) = name.strip_prefix("tag:") {
            valid_name(tag, "tag name").map_err(|r| Invalid::new(name, r))?;
            return Ok(Field::Tag(tag.to_owned()));
        }
        if let Some(rest) = name.strip_prefix("link:") {
            let Some((rel, target)) = rest.rsplit_once(':') else {
                return Err(Invalid::new(
                    name,
                    "a link field is link:<relation>:<node id>",
                ));
            };
            valid_name(rel, "link relation").map_err(|r| Invalid::new(name, r))?;
            if rel.contains(':') {
                return Err(Invalid::new(name, "a link relation must not contain ':'"));
            }
            let target = NodeId::parse(target).map_err(|r| Invalid::new(name, r))?;
            return Ok(Field::Link {
                rel: rel.to_owned(),
                target,
            });
        }
        if name.is_empty() || name.len() > MAX_FIELD_BYTES {
            return Err(Invalid::new(
                name,
                format!("a field name must be 1 to {MAX_FIELD_BYTES} bytes"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new(
                name,
                "a field name must not contain control characters",
            ));
        }
        Ok(Field::Unknown(name.to_owned()))
    }

    /// Checks `value` against this field's rules.
    pub fn validate(&self, value: &Value) -> Result<(), Invalid> {
        let fail = |reason: &str| Err(Invalid::new(&self.to_string(), reason));
        match self {
            Field::Kind => match value.as_str() {
                Some("task" | "note") => Ok(()),
                _ => fail("must be \"task\" or \"note\""),
            },
            Field::Title => match value.as_str() {
                Some(s) => {
                    let n = s.chars().count();
                    if n == 0 || s.trim().is_empty() {
                        fail("must not be empty")
                    } else if n > MAX_TITLE_CHARS {
                        Err(Invalid::new(
                            "title",
                            format!("is {n} characters, more than the limit of {MAX_TITLE_CHARS}"),
                        ))
                    } else {
                        Ok(())
                    }
                }
                None => fail("must be a string"),
            },
            Field::Body => match value.as_str() {
                Some(s) if s.len() > MAX_BODY_BYTES => Err(Invalid::new(
                    "body",
                    format!("is {} bytes, more than the limit of 1 MiB", s.len()),
                )),
                Some(_) => Ok(()),
                None => fail("must be a string"),
            },
            Field::Status => match value.as_str() {
                Some("todo" | "doing" | "done" | "cancelled") => Ok(()),
                _ => fail("must be one of todo, doing, done, cancelled"),
            },
            Field::Priority => match value.as_str() {
                Some("none" | "low" | "medium" | "high") => Ok(()),
                _ => fail("must be one of none, low, medium, high"),
            },
            Field::Due | Field::Scheduled => match value {
                Value::Null => Ok(()),
                Value::String(s) => date::validate(s).map_err(|e| {
                    Invalid::new(
                        &self.to_string(),
                        format!("must be an RFC 3339 date or date-time or null ({e})"),
                    )
                }),
                _ => fail("must be an RFC 3339 date or date-time string, or null"),
            },
            Field::Parent => match value {
                Value::Null => Ok(()),
                Value::String(s) => NodeId::parse(s).map(|_| ()).or_else(fail),
                _ => fail("must be a node id or null"),
            },
            Field::Deleted | Field::Tag(_) | Field::Link { .. } => match value {
                Value::Bool(_) => Ok(()),
                _ => fail("must be true or false"),
            },
            Field::Unknown(_) => {
                // Only the size and nesting are bounded: we cannot know a newer
                // version's rules. The depth check comes first and is
                // iterative, so a deep value cannot overflow the stack below.
                if nesting_exceeds(value, MAX_UNKNOWN_VALUE_DEPTH) {
                    return fail("is nested more than 64 levels deep");
                }
                let len = serde_json::to_string(value).map_or(usize::MAX, |s| s.len());
                if len > MAX_UNKNOWN_VALUE_BYTES {
                    fail("is larger than 1 MiB")
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// The deepest nesting of arrays and objects in a value of an unknown field
/// (below serde_json's parse limit of 128, so every accepted value reads back).
pub const MAX_UNKNOWN_VALUE_DEPTH: usize = 64;

/// Whether `value` nests arrays and objects more than `max` levels deep.
fn nesting_exceeds(value: &Value, max: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > max {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Kind => f.write_str("kind"),
            Field::Title => f.write_str("title"),
            Field::Body => f.write_str("body"),
            Field::Status => f.write_str("status"),
            Field::Priority => f.write_str("priority"),
            Field::Due => f.write_str("due"),
            Field::Scheduled => f.write_str("scheduled"),
            Field::Parent => f.write_str("parent"),
            Field::Deleted => f.write_str("deleted"),
            Field::Tag(t) => write!(f, "tag:{t}"),
            Field::Link { rel, target } => write!(f, "link:{rel}:{target}"),
            Field::Unknown(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "6f1c0a9e-4b2d-4c1f-8a3e-5b7d9c0e1f2a";

    fn check(field: &str, value: Value, expected: Result<(), &str>) {
        let got = Field::parse(field).and_then(|f| f.validate(&value));
        match (got, expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(want)) => assert!(
                e.to_string().contains(want),
                "{field}={value}: {e} does not contain {want:?}"
            ),
            (got, want) => panic!("{field}={value}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn node_ids() {
        assert!(NodeId::parse(ID).is_ok());
        for bad in [
            "6F1C0A9E-4B2D-4C1F-8A3E-5B7D9C0E1F2A",
            "6f1c0a9e-4b2d-1c1f-8a3e-5b7d9c0e1f2a",
            "6f1c0a9e-4b2d-4c1f-7a3e-5b7d9c0e1f2a",
            "6f1c0a9e4b2d4c1f8a3e5b7d9c0e1f2a",
            "6f1c0a9e-4b2d-4c1f-8a3e-5b7d9c0e1f2",
            "",
        ] {
            assert!(NodeId::parse(bad).is_err(), "{bad}");
        }
        let id = NodeId::from_random_bytes([0xff; 16]);
        assert_eq!(id.as_str(), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert!(NodeId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn values() {
        check("kind", json!("task"), Ok(()));
        check("kind", json!("note"), Ok(()));
        check(
            "kind",
            json!("event"),
            Err("invalid kind: must be \"task\" or \"note\""),
        );
        check("title", json!("Buy milk"), Ok(()));
        check("title", json!(""), Err("invalid title: must not be empty"));
        check("title", json!("  "), Err("must not be empty"));
        check("title", json!("é".repeat(1000)), Ok(()));
        check(
            "title",
            json!("é".repeat(1001)),
            Err("1001 characters, more than the limit of 1000"),
        );
        check("title", json!(3), Err("must be a string"));
        check("body", json!("x".repeat(MAX_BODY_BYTES)), Ok(()));
        check(
            "body",
            json!("x".repeat(MAX_BODY_BYTES + 1)),
            Err("more than the limit of 1 MiB"),
        );
        check("status", json!("doing"), Ok(()));
        check("status", json!("DONE"), Err("todo, doing, done, cancelled"));
        check("priority", json!("high"), Ok(()));
        check("priority", json!("urgent"), Err("none, low, medium, high"));
        check("due", json!("2026-11-25"), Ok(()));
        check("due", json!("2026-11-25T10:00:00+01:00"), Ok(()));
        check("due", Value::Null, Ok(()));
        check(
            "due",
            json!("2026-02-30"),
            Err("invalid due: must be an RFC 3339 date"),
        );
        check("scheduled", json!(20261125), Err("invalid scheduled"));
        check("parent", json!(ID), Ok(()));
        check(
            "parent",
            json!("nope"),
            Err("invalid parent: a node id is a lowercase UUID v4"),
        );
        check("deleted", json!(true), Ok(()));
        check("deleted", json!("yes"), Err("must be true or false"));
        check("tag:home", json!(true), Ok(()));
        check(
            "tag:",
            json!(true),
            Err("a tag name must be 1 to 100 characters"),
        );
        check("tag:two words", json!(true), Err("must not contain spaces"));
        check(&format!("link:blocks:{ID}"), json!(false), Ok(()));
        check("link:blocks", json!(true), Err("link:<relation>:<node id>"));
        check("link:blocks:xyz", json!(true), Err("a node id is"));
        check(
            &format!("link::{ID}"),
            json!(true),
            Err("a link relation must be 1 to"),
        );
        check("colour", json!({"any": ["json", 1]}), Ok(()));
        check("", json!(1), Err("a field name must be 1 to 256 bytes"));
        check("bad\nname", json!(1), Err("control characters"));
    }

    #[test]
    fn field_names_round_trip() {
        for name in [
            "kind",
            "title",
            "tag:work",
            &format!("link:blocks:{ID}"),
            "x-future",
        ] {
            assert_eq!(Field::parse(name).unwrap().to_string(), name);
        }
    }
}
