//! Reading JSON-RPC 2.0 messages: the one place where raw JSON becomes a
//! typed [`Call`].
//!
//! Both the unix socket and the hub's `/rpc` parse through [`parse`], and
//! every decision after it (which role a call needs, which method runs) is
//! made on the parsed [`Method`], never on raw JSON. The parser is strict
//! where a lenient one would let two readers disagree about what a request
//! is: a request must be a JSON object (an array in field order is not a
//! request), a member may appear once, the method name must match exactly,
//! `params` must be an object (named parameters) or absent, and a batch
//! holds at most [`MAX_BATCH_ITEMS`] requests and no nested batches. It
//! runs nothing and owns no socket.

use std::fmt;

use heph_core::rpc::{MAX_BATCH_ITEMS, Method, Response, RpcError, code};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One request that can run.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `None` for a notification (no reply); `Some(Value::Null)` is a
    /// request whose id is `null`, which gets a reply.
    pub id: Option<Value>,
    pub method: Method,
    /// An object, or `Null` when absent.
    pub params: Value,
}

/// One item of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A well-formed request or notification of a known method.
    Call(Call),
    /// Not runnable; its answer is already known (`None`: a notification
    /// of an unknown method, which gets no reply).
    Refused(Option<Response>),
}

/// A parsed message: one request or a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Single(Item),
    Batch(Vec<Item>),
}

impl Message {
    /// The calls that would run, in order.
    pub fn calls(&self) -> impl Iterator<Item = &Call> {
        let items: &[Item] = match self {
            Message::Single(item) => std::slice::from_ref(item),
            Message::Batch(items) => items,
        };
        items.iter().filter_map(|i| match i {
            Item::Call(c) => Some(c),
            Item::Refused(_) => None,
        })
    }
}

/// Why a whole message was refused before any of it could run.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not JSON at all.
    Parse(String),
    /// An empty batch, or one longer than [`MAX_BATCH_ITEMS`].
    Batch(String),
}

impl Refusal {
    /// The JSON-RPC reply for it.
    pub fn response(&self) -> Response {
        match self {
            Refusal::Parse(m) => Response::err(
                Value::Null,
                RpcError::new(
                    code::PARSE_ERROR,
                    format!("the request is not valid JSON: {m}"),
                ),
            ),
            Refusal::Batch(m) => {
                Response::err(Value::Null, RpcError::new(code::INVALID_REQUEST, m.clone()))
            }
        }
    }
}

/// Parses one message (a socket line or an HTTP body).
pub fn parse(bytes: &[u8]) -> Result<Message, Refusal> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = Top::deserialize(&mut de).map_err(|e| Refusal::Parse(e.to_string()))?;
    de.end().map_err(|e| Refusal::Parse(e.to_string()))?;
    match top {
        Top::Single(item) => Ok(Message::Single(item)),
        Top::Batch(items) if items.is_empty() => {
            Err(Refusal::Batch("an empty batch is not a request".into()))
        }
        Top::Batch(items) => Ok(Message::Batch(items)),
        Top::TooLong(n) => Err(Refusal::Batch(format!(
            "the batch holds {n} requests, more than the limit of {MAX_BATCH_ITEMS}; nothing of it ran, so send it in smaller batches"
        ))),
    }
}

fn invalid(id: Value, message: impl Into<String>) -> Item {
    Item::Refused(Some(Response::err(
        id,
        RpcError::new(code::INVALID_REQUEST, message),
    )))
}

/// What a message's outermost value turned out to be.
enum Top {
    Single(Item),
    Batch(Vec<Item>),
    /// A batch over the limit: only its length was kept.
    TooLong(usize),
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC request object or a batch of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        let mut items = Vec::new();
        let mut n = 0usize;
        while n < MAX_BATCH_ITEMS {
            match seq.next_element::<Slot>()? {
                Some(Slot(item)) => items.push(item),
                None => return Ok(Top::Batch(items)),
            }
            n += 1;
        }
        // Over the limit: read the rest without keeping it.
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(if n > MAX_BATCH_ITEMS {
            Top::TooLong(n)
        } else {
            Top::Batch(items)
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top, A::Error> {
        SlotVisitor
            .visit_map(map)
            .map(|Slot(item)| Top::Single(item))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top, E> {
        Ok(Top::Single(not_an_object("a boolean")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top, E> {
        Ok(Top::Single(not_an_object("a number")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top, E> {
        Ok(Top::Single(not_an_object("a number")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top, E> {
        Ok(Top::Single(not_an_object("a number")))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Top, E> {
        Ok(Top::Single(not_an_object("a string")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::Single(not_an_object("null")))
    }
}

fn not_an_object(what: &str) -> Item {
    invalid(
        Value::Null,
        format!("not a JSON-RPC 2.0 request: a request must be a JSON object, not {what}"),
    )
}

/// One request of a message; never fails for a badly shaped request (that
/// becomes [`Item::Refused`]), only for JSON that does not parse.
struct Slot(Item);

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlotVisitor)
    }
}

struct SlotVisitor;

impl<'de> Visitor<'de> for SlotVisitor {
    type Value = Slot;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC request object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Slot, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Slot(not_an_object("an array (batches do not nest)")))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Slot, E> {
        Ok(Slot(not_an_object("a boolean")))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Slot, E> {
        Ok(Slot(not_an_object("a number")))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Slot, E> {
        Ok(Slot(not_an_object("a number")))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Slot, E> {
        Ok(Slot(not_an_object("a number")))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Slot, E> {
        Ok(Slot(not_an_object("a string")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Slot, E> {
        Ok(Slot(not_an_object("null")))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slot, A::Error> {
        let (mut jsonrpc, mut id, mut method, mut params) = (None, None, None, None);
        let mut repeated: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            let slot: &mut Option<Value> = match key.as_str() {
                "jsonrpc" => &mut jsonrpc,
                "id" => &mut id,
                "method" => &mut method,
                "params" => &mut params,
                _ => {
                    // Members JSON-RPC does not define are ignored, never read.
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value: Value = map.next_value()?;
            if slot.is_some() && repeated.is_none() {
                repeated = Some(key.clone());
            }
            *slot = Some(value);
        }
        Ok(Slot(request(jsonrpc, id, method, params, repeated)))
    }
}

/// Checks the members of one request object.
fn request(
    jsonrpc: Option<Value>,
    id: Option<Value>,
    method: Option<Value>,
    params: Option<Value>,
    repeated: Option<String>,
) -> Item {
    let reply_id = match &id {
        Some(v @ (Value::Null | Value::String(_) | Value::Number(_)))
            if repeated.as_deref() != Some("id") =>
        {
            v.clone()
        }
        _ => Value::Null,
    };
    let bad = |message: String| {
        invalid(
            reply_id.clone(),
            format!("not a JSON-RPC 2.0 request: {message}"),
        )
    };
    if let Some(key) = repeated {
        return bad(format!("the member \"{key}\" appears more than once"));
    }
    if matches!(&id, Some(v) if !matches!(v, Value::Null | Value::String(_) | Value::Number(_))) {
        return bad("\"id\" must be a string, a number or null".into());
    }
    if jsonrpc.as_ref().and_then(Value::as_str) != Some("2.0") {
        return bad("\"jsonrpc\" must be \"2.0\"".into());
    }
    let name = match method {
        Some(Value::String(name)) => name,
        Some(_) => return bad("\"method\" must be a string".into()),
        None => return bad("the member \"method\" is missing".into()),
    };
    let params = match params {
        None | Some(Value::Null) => Value::Null,
        Some(p @ Value::Object(_)) => p,
        Some(Value::Array(_)) => {
            return Item::Refused(id.map(|_| {
                Response::err(
                    reply_id.clone(),
                    RpcError::new(
                        code::INVALID_PARAMS,
                        format!("{name:?} takes named params: send \"params\" as an object"),
                    ),
                )
            }));
        }
        Some(_) => return bad("\"params\" must be an object".into()),
    };
    let Some(method) = Method::parse(&name) else {
        // A notification is never answered, not even with an error.
        return Item::Refused(id.map(|_| {
            Response::err(
                reply_id.clone(),
                RpcError::new(
                    code::METHOD_NOT_FOUND,
                    format!(
                        "unknown method {:?}",
                        name.chars().take(64).collect::<String>()
                    ),
                ),
            )
        }));
    };
    Item::Call(Call { id, method, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a message parses into, in a form a table can state.
    #[derive(Debug, PartialEq)]
    enum Got {
        Call(Option<Value>, Method),
        Error(Value, i64),
        Silent,
    }

    fn items(input: &str) -> Result<Vec<Got>, Refusal> {
        let one = |i: Item| match i {
            Item::Call(c) => Got::Call(c.id, c.method),
            Item::Refused(Some(r)) => Got::Error(r.id, r.error.unwrap().code),
            Item::Refused(None) => Got::Silent,
        };
        Ok(match parse(input.as_bytes())? {
            Message::Single(i) => vec![one(i)],
            Message::Batch(v) => v.into_iter().map(one).collect(),
        })
    }

    fn check(input: &str, want: &[Got]) {
        assert_eq!(items(input).as_deref(), Ok(want), "{input}");
    }

    const INVALID: i64 = code::INVALID_REQUEST;

    #[test]
    fn well_formed_requests() {
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"node.list","params":{}}"#,
            &[Got::Call(Some(json!(1)), Method::NodeList)],
        );
        check(
            r#"{"jsonrpc":"2.0","id":"a","method":"hub.grant"}"#,
            &[Got::Call(Some(json!("a")), Method::HubGrant)],
        );
        // A notification has no id; a null id is a request answered with id null.
        check(
            r#"{"jsonrpc":"2.0","method":"sync.now"}"#,
            &[Got::Call(None, Method::SyncNow)],
        );
        check(
            r#"{"jsonrpc":"2.0","id":null,"method":"node.get","params":null}"#,
            &[Got::Call(Some(Value::Null), Method::NodeGet)],
        );
        // Members JSON-RPC does not define are ignored.
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"node.list","extra":[1,{"method":"hub.grant"}]}"#,
            &[Got::Call(Some(json!(1)), Method::NodeList)],
        );
    }

    /// The shapes that once let a reader run `hub.grant`, and their relatives.
    #[test]
    fn shapes_that_are_not_requests() {
        // An array in field order (what a derived Deserialize accepts).
        check(
            r#"[["2.0",3,"hub.grant",{"sub":"rita","role":"owner"}]]"#,
            &[Got::Error(Value::Null, INVALID)],
        );
        check(
            r#"["2.0",3,"hub.grant",{}]"#,
            &[
                Got::Error(Value::Null, INVALID),
                Got::Error(Value::Null, INVALID),
                Got::Error(Value::Null, INVALID),
                Got::Error(Value::Null, INVALID),
            ],
        );
        // Nested batches.
        check(
            r#"[[{"jsonrpc":"2.0","id":1,"method":"hub.grant"}]]"#,
            &[Got::Error(Value::Null, INVALID)],
        );
        // Scalars.
        for s in ["1", "\"hub.grant\"", "true", "null"] {
            check(s, &[Got::Error(Value::Null, INVALID)]);
        }
        // Duplicate members, whichever comes first.
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"node.list","method":"hub.grant"}"#,
            &[Got::Error(json!(1), INVALID)],
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"hub.grant","method":"node.list"}"#,
            &[Got::Error(json!(1), INVALID)],
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"node.list"}"#,
            &[Got::Error(Value::Null, INVALID)],
        );
        // Bad ids, versions, methods and params.
        check(
            r#"{"jsonrpc":"2.0","id":[1],"method":"node.list"}"#,
            &[Got::Error(Value::Null, INVALID)],
        );
        check(
            r#"{"jsonrpc":"1.0","id":1,"method":"node.list"}"#,
            &[Got::Error(json!(1), INVALID)],
        );
        check(
            r#"{"id":1,"method":"node.list"}"#,
            &[Got::Error(json!(1), INVALID)],
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":["hub.grant"]}"#,
            &[Got::Error(json!(1), INVALID)],
        );
        check(
            r#"{"jsonrpc":"2.0","id":1}"#,
            &[Got::Error(json!(1), INVALID)],
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"hub.grant","params":["rita","owner"]}"#,
            &[Got::Error(json!(1), code::INVALID_PARAMS)],
        );
        check(
            r#"{"jsonrpc":"2.0","id":1,"method":"node.list","params":"x"}"#,
            &[Got::Error(json!(1), INVALID)],
        );
    }

    #[test]
    fn method_names_are_exact() {
        for name in [
            "Hub.Grant",
            "HUB.GRANT",
            " hub.grant",
            "hub.grant ",
            "hub.grant\u{0}",
            "hub\u{2024}grant",
            "hub_grant",
        ] {
            let line = json!({"jsonrpc":"2.0","id":7,"method":name}).to_string();
            check(&line, &[Got::Error(json!(7), code::METHOD_NOT_FOUND)]);
            // As a notification, an unknown method is not answered at all.
            let line = json!({"jsonrpc":"2.0","method":name}).to_string();
            check(&line, &[Got::Silent]);
        }
        // Every known method parses from its own name, and only from it.
        for m in Method::ALL {
            assert_eq!(Method::parse(m.as_str()), Some(m));
        }
    }

    #[test]
    fn batches_are_bounded() {
        assert_eq!(
            parse(b"[]"),
            Err(Refusal::Batch("an empty batch is not a request".into()))
        );
        let one = r#"{"jsonrpc":"2.0","id":1,"method":"node.list"}"#;
        let full = format!("[{}]", vec![one; MAX_BATCH_ITEMS].join(","));
        assert_eq!(items(&full).unwrap().len(), MAX_BATCH_ITEMS);
        let over = format!("[{}]", vec![one; MAX_BATCH_ITEMS + 1].join(","));
        match parse(over.as_bytes()) {
            Err(Refusal::Batch(m)) => assert!(m.contains("holds 101 requests"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broken_json_is_a_parse_error() {
        for s in ["", "{", "[{\"jsonrpc\":\"2.0\"}", "{} {}", "{\"a\":1}x"] {
            assert!(
                matches!(parse(s.as_bytes()), Err(Refusal::Parse(_))),
                "{s:?}"
            );
        }
    }
}

/// The rule this module exists for, checked on the source tree: outside
/// this file, nothing in the daemon reads a request's method from raw JSON.
#[cfg(test)]
mod tidy {
    use std::path::Path;

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn only_the_envelope_reads_raw_method_members() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        assert!(files.len() > 20, "found only {files:?}");
        let needles = [concat!("get(\"", "method\")"), concat!("[\"", "method\"]")];
        for file in files {
            if file.ends_with("rpc/envelope.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for needle in needles {
                assert!(
                    !text.contains(needle),
                    "{} reads {needle} from raw JSON; parse with rpc::envelope and decide on the Method",
                    file.display()
                );
            }
        }
    }
}
