//! The daemon, seen from the TUI: two background threads that speak the
//! line-delimited JSON-RPC of `docs/protocol.md` over the unix socket.
//!
//! - The **worker** takes [`Call`]s from a channel, makes them one at a time
//!   on its own connection (opened on demand), and sends each answer back as
//!   an [`Action`]. A call never runs on the UI thread.
//! - The **listener** holds an `events.subscribe` connection. It is the one
//!   that decides whether the daemon is up: it sends [`Action::Connected`]
//!   once subscribed and [`Action::Disconnected`] when the socket refuses or
//!   drops it, then retries with a bounded backoff until the daemon is back.
//!
//! Both threads end when the UI drops its side of the channels.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use heph_core::rpc::{
    AuthStatus, Event, IdParams, ListResult, Notification, Request, Response, RpcError, SyncStatus,
    UpdateParams, code, method,
};
use heph_core::{Node, NodeId, Query};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::app::{Action, Call};

/// The first and the longest wait between reconnection attempts.
pub const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// How long one call may take before the connection is given up.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug)]
enum CallError {
    /// The socket could not be reached or broke.
    Io(io::Error),
    /// The daemon answered with an error.
    Rpc(RpcError),
    /// The answer was not what the protocol says.
    Protocol(String),
}

fn describe(e: &CallError, socket: &Path) -> String {
    match e {
        CallError::Io(e) => io_sentence(e, socket),
        CallError::Rpc(e) => e.message.clone(),
        CallError::Protocol(e) => format!("the daemon's answer could not be read: {e}"),
    }
}

/// One sentence for a socket failure, with the fix where there is one.
pub fn io_sentence(e: &io::Error, socket: &Path) -> String {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => format!(
            "the daemon is not running (nothing answers on {}); start it with heph daemon start",
            socket.display()
        ),
        io::ErrorKind::PermissionDenied => format!(
            "the socket {} belongs to another user; run heph-tui as its owner",
            socket.display()
        ),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => {
            "the daemon closed the connection".to_owned()
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            "the daemon did not answer within 30 s".to_owned()
        }
        _ => format!("cannot talk to the daemon on {}: {e}", socket.display()),
    }
}

/// One connection: requests out, lines in.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Conn {
    fn open(socket: &Path) -> io::Result<Self> {
        let stream = UnixStream::connect(socket)?;
        Ok(Self {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            next_id: 1,
        })
    }

    fn send(&mut self, method: &str, params: impl Serialize) -> io::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line =
            serde_json::to_string(&Request::new(id, method, params)).map_err(io::Error::other)?;
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        Ok(id)
    }

    /// One line as JSON; EOF is an error.
    fn read(&mut self) -> Result<Value, CallError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).map_err(CallError::Io)? == 0 {
            return Err(CallError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        serde_json::from_str(&line).map_err(|e| CallError::Protocol(e.to_string()))
    }

    fn call<T: DeserializeOwned>(
        &mut self,
        method: &str,
        params: impl Serialize,
    ) -> Result<T, CallError> {
        let id = self.send(method, params).map_err(CallError::Io)?;
        loop {
            let line = self.read()?;
            if line.get("id") != Some(&json!(id)) {
                continue; // not ours (an event on a subscribed connection)
            }
            let response: Response =
                serde_json::from_value(line).map_err(|e| CallError::Protocol(e.to_string()))?;
            if let Some(err) = response.error {
                return Err(CallError::Rpc(err));
            }
            let result = response.result.unwrap_or(Value::Null);
            return serde_json::from_value(result).map_err(|e| CallError::Protocol(e.to_string()));
        }
    }
}

/// Starts the worker; calls sent on the returned channel are answered on `actions`.
pub fn spawn_worker(socket: PathBuf, actions: Sender<Action>) -> Sender<Call> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("heph-tui rpc".into())
        .spawn(move || worker(&socket, &rx, &actions))
        .expect("cannot start the RPC thread");
    tx
}

fn worker(socket: &Path, calls: &Receiver<Call>, actions: &Sender<Action>) {
    let mut conn: Option<Conn> = None;
    while let Ok(call) = calls.recv() {
        let action = run(socket, &mut conn, call);
        if actions.send(action).is_err() {
            return;
        }
    }
}

/// Makes one call, opening the connection first if needed; a broken
/// connection is dropped so the next call opens a fresh one. A read that
/// fails on a connection left from before a daemon restart is retried once
/// on a fresh one (a write is not: it might have been applied).
fn run(socket: &Path, conn: &mut Option<Conn>, call: Call) -> Action {
    let read_only = matches!(call, Call::LoadAll | Call::Refresh(_) | Call::Status);
    let mut reused = conn.is_some();
    loop {
        if conn.is_none() {
            match Conn::open(socket).and_then(|c| {
                c.reader.get_ref().set_read_timeout(Some(CALL_TIMEOUT))?;
                Ok(c)
            }) {
                Ok(c) => *conn = Some(c),
                Err(e) => {
                    return Action::Failed {
                        error: io_sentence(&e, socket),
                    };
                }
            }
        }
        let c = conn.as_mut().expect("opened above");
        let result = perform(c, call.clone());
        if let Err(CallError::Io(_) | CallError::Protocol(_)) = &result {
            *conn = None;
            if reused && read_only && matches!(result, Err(CallError::Io(_))) {
                reused = false;
                continue;
            }
        }
        return result.unwrap_or_else(|e| Action::Failed {
            error: describe(&e, socket),
        });
    }
}

fn perform(c: &mut Conn, call: Call) -> Result<Action, CallError> {
    Ok(match call {
        Call::LoadAll => {
            let list: ListResult = c.call(method::NODE_LIST, Query::default())?;
            Action::Loaded(list.nodes)
        }
        Call::Refresh(ids) => {
            let mut nodes = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                let params = IdParams { id: id.to_string() };
                match c.call::<Node>(method::NODE_GET, params) {
                    Ok(node) => nodes.push(node),
                    Err(CallError::Rpc(e)) if e.code == code::NOT_FOUND => missing.push(id),
                    Err(e) => return Err(e),
                }
            }
            Action::Refreshed { nodes, missing }
        }
        Call::Status => {
            let sync = c.call::<SyncStatus>(method::SYNC_STATUS, json!({}));
            let auth = c.call::<AuthStatus>(method::AUTH_STATUS, json!({}));
            let text = |e: CallError| match e {
                CallError::Rpc(e) => Ok(e.message),
                other => Err(other),
            };
            Action::Status {
                sync: match sync {
                    Ok(s) => Ok(s),
                    Err(e) => Err(text(e)?),
                },
                auth: match auth {
                    Ok(a) => Ok(a),
                    Err(e) => Err(text(e)?),
                },
            }
        }
        Call::Create { params, message } => {
            let node: Node = c.call(method::NODE_CREATE, params)?;
            Action::Saved {
                node,
                undo: None,
                message,
            }
        }
        Call::Update {
            id,
            set,
            undo,
            message,
        } => {
            let node: Node = c.call(method::NODE_UPDATE, update_params(id, set))?;
            Action::Saved {
                node,
                undo,
                message,
            }
        }
        Call::Delete { id, undo, message } => {
            let node: Node = c.call(method::NODE_DELETE, IdParams { id: id.to_string() })?;
            Action::Saved {
                node,
                undo,
                message,
            }
        }
        Call::SyncNow => match c.call::<Value>(method::SYNC_NOW, json!({})) {
            Ok(_) => Action::SyncFinished(Ok(())),
            Err(CallError::Rpc(e)) => Action::SyncFinished(Err(e.message)),
            Err(e) => return Err(e),
        },
    })
}

fn update_params(id: NodeId, set: BTreeMap<String, Value>) -> UpdateParams {
    UpdateParams {
        id: id.to_string(),
        set,
    }
}

/// Starts the listener: `events.subscribe`, forwarded as actions, reconnecting forever.
pub fn spawn_listener(socket: PathBuf, actions: Sender<Action>) {
    std::thread::Builder::new()
        .name("heph-tui events".into())
        .spawn(move || listen(&socket, &actions))
        .expect("cannot start the events thread");
}

fn listen(socket: &Path, actions: &Sender<Action>) {
    let mut delay = BACKOFF.0;
    // `Some(true)` connected, `Some(false)` known down, `None` not yet known.
    let mut up: Option<bool> = None;
    loop {
        let reason = match subscribe(socket, actions, &mut up) {
            Ok(()) => return, // the UI is gone
            Err(reason) => reason,
        };
        if up == Some(true) {
            delay = BACKOFF.0; // it was up: retry soon
        }
        if up != Some(false) {
            if actions.send(Action::Disconnected { reason }).is_err() {
                return;
            }
            up = Some(false);
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(BACKOFF.1);
    }
}

/// One subscription, until the connection ends. `Ok` only when the UI is gone.
fn subscribe(socket: &Path, actions: &Sender<Action>, up: &mut Option<bool>) -> Result<(), String> {
    let mut conn = Conn::open(socket).map_err(|e| io_sentence(&e, socket))?;
    let result: Value = conn
        .call(method::EVENTS_SUBSCRIBE, json!({}))
        .map_err(|e| describe(&e, socket))?;
    if result.get("subscribed") != Some(&Value::Bool(true)) {
        return Err(format!("the daemon did not subscribe us: {result}"));
    }
    *up = Some(true);
    if actions.send(Action::Connected).is_err() {
        return Ok(());
    }
    loop {
        let line = conn.read().map_err(|e| describe(&e, socket))?;
        let Ok(note) = serde_json::from_value::<Notification>(line) else {
            continue;
        };
        if note.method != method::EVENT {
            continue;
        }
        // An event type this version does not know is a reason to reload.
        let event =
            serde_json::from_value::<Event>(note.params).unwrap_or(Event::Resync { skipped: 0 });
        if actions.send(Action::Event(event)).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::mpsc;

    /// A fake daemon that answers each request line with the lines `answer(request)`.
    fn fake_daemon(dir: &Path, answer: impl Fn(&Value) -> Vec<Value> + Send + 'static) -> PathBuf {
        let socket = dir.join("d.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut w = stream.try_clone().unwrap();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let req: Value = serde_json::from_str(&line).unwrap();
                    for reply in answer(&req) {
                        if writeln!(w, "{reply}").is_err() {
                            break;
                        }
                    }
                }
            }
        });
        socket
    }

    #[test]
    fn an_absent_daemon_is_one_sentence_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("none.sock");
        let (tx, rx) = mpsc::channel();
        let calls = spawn_worker(socket.clone(), tx);
        calls.send(Call::LoadAll).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            Action::Failed {
                error: format!(
                    "the daemon is not running (nothing answers on {}); start it with heph daemon start",
                    socket.display()
                )
            }
        );
    }

    #[test]
    fn calls_become_actions_and_rpc_errors_keep_their_message() {
        let dir = tempfile::tempdir().unwrap();
        let node = crate::testutil::node(1, "Buy milk");
        let node_json = serde_json::to_value(&node).unwrap();
        let socket = fake_daemon(dir.path(), move |req| {
            let id = req["id"].clone();
            let result = match req["method"].as_str().unwrap() {
                "node.list" => json!({"nodes": [node_json.clone()]}),
                "node.get" if req["params"]["id"] == node_json["id"] => node_json.clone(),
                "node.get" => {
                    return vec![
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code::NOT_FOUND, "message": "no node has the id x"}}),
                    ];
                }
                "sync.now" => {
                    return vec![
                        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code::NOT_CONFIGURED, "message": "no hub is configured, so there is nothing to sync with"}}),
                    ];
                }
                m => panic!("unexpected {m}"),
            };
            // A notification before the answer is skipped.
            vec![
                json!({"jsonrpc": "2.0", "method": "event", "params": {"type": "status"}}),
                json!({"jsonrpc": "2.0", "id": id, "result": result}),
            ]
        });
        let (tx, rx) = mpsc::channel();
        let calls = spawn_worker(socket, tx);
        calls.send(Call::LoadAll).unwrap();
        assert_eq!(rx.recv().unwrap(), Action::Loaded(vec![node.clone()]));
        let other = crate::testutil::id(2);
        calls.send(Call::Refresh(vec![node.id, other])).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            Action::Refreshed {
                nodes: vec![node],
                missing: vec![other]
            }
        );
        calls.send(Call::SyncNow).unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            Action::SyncFinished(Err(
                "no hub is configured, so there is nothing to sync with".into()
            ))
        );
    }

    #[test]
    fn the_listener_reports_down_then_up_and_forwards_events() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("d.sock");
        let (tx, rx) = mpsc::channel();
        spawn_listener(socket.clone(), tx);
        let Action::Disconnected { reason } = rx.recv().unwrap() else {
            panic!("expected Disconnected first")
        };
        assert!(reason.starts_with("the daemon is not running"), "{reason}");
        // The daemon appears: the listener finds it by itself.
        let listener = UnixListener::bind(&socket).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream).lines();
        let req: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(req["method"], "events.subscribe");
        writeln!(
            w,
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"subscribed":true,"last_seq":3}}}}"#,
            req["id"]
        )
        .unwrap();
        assert_eq!(rx.recv().unwrap(), Action::Connected);
        writeln!(
            w,
            r#"{{"jsonrpc":"2.0","method":"event","params":{{"type":"status"}}}}"#
        )
        .unwrap();
        assert_eq!(rx.recv().unwrap(), Action::Event(Event::Status));
        writeln!(
            w,
            r#"{{"jsonrpc":"2.0","method":"event","params":{{"type":"from_the_future"}}}}"#
        )
        .unwrap();
        assert_eq!(
            rx.recv().unwrap(),
            Action::Event(Event::Resync { skipped: 0 })
        );
        // The daemon goes away: one Disconnected.
        drop(w);
        drop(lines);
        drop(listener);
        std::fs::remove_file(&socket).unwrap();
        let Action::Disconnected { reason } = rx.recv().unwrap() else {
            panic!("expected Disconnected")
        };
        assert_eq!(reason, "the daemon closed the connection");
    }

    #[test]
    fn a_read_after_a_daemon_restart_uses_a_fresh_connection() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("d.sock");
        // The first daemon answers one call, then goes away.
        let first = UnixListener::bind(&socket).unwrap();
        let (tx, rx) = mpsc::channel();
        let calls = spawn_worker(socket.clone(), tx);
        calls.send(Call::LoadAll).unwrap();
        let (stream, _) = first.accept().unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream).lines();
        let req: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        writeln!(
            w,
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"nodes":[]}}}}"#,
            req["id"]
        )
        .unwrap();
        assert_eq!(rx.recv().unwrap(), Action::Loaded(vec![]));
        drop((w, lines, first));
        std::fs::remove_file(&socket).unwrap();
        // A second daemon: the reload is answered, not lost to the old connection.
        let node = crate::testutil::node(1, "Buy milk");
        let node_json = serde_json::to_value(&node).unwrap();
        fake_daemon(dir.path(), move |req| {
            vec![
                json!({"jsonrpc": "2.0", "id": req["id"], "result": {"nodes": [node_json.clone()]}}),
            ]
        });
        calls.send(Call::LoadAll).unwrap();
        assert_eq!(rx.recv().unwrap(), Action::Loaded(vec![node]));
    }

    #[test]
    fn io_sentences_name_the_socket_and_the_fix() {
        let s = Path::new("/run/heph/hephd.sock");
        let check = |kind: io::ErrorKind, expected: &str| {
            assert_eq!(io_sentence(&io::Error::from(kind), s), expected, "{kind:?}");
        };
        check(
            io::ErrorKind::ConnectionRefused,
            "the daemon is not running (nothing answers on /run/heph/hephd.sock); start it with heph daemon start",
        );
        check(
            io::ErrorKind::PermissionDenied,
            "the socket /run/heph/hephd.sock belongs to another user; run heph-tui as its owner",
        );
        check(
            io::ErrorKind::BrokenPipe,
            "the daemon closed the connection",
        );
    }
}
