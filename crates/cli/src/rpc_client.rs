//! A blocking JSON-RPC 2.0 client for `hephd`'s unix socket: one request
//! line out, one response line back (DESIGN §6).
//!
//! It owns the connection and its failure modes, each a [`ClientError`]
//! variant: nobody listening (`NotRunning`, the one every command turns into
//! exit 3), a refused or broken connection, a daemon that does not answer
//! within the read timeout, an unreadable answer, and the daemon's own error
//! object. It knows nothing about what the methods mean.

use std::io::{self, BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use heph_core::rpc::{Request, Response, RpcError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::exit::io_reason;

/// How long a call waits for its answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call did not return a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens on the socket (no file, or nobody accepting).
    #[error("the heph daemon is not running (no answer on {})", socket.display())]
    NotRunning { socket: PathBuf },
    /// The socket exists but cannot be connected to (permissions, not a socket, …).
    #[error("cannot connect to the heph daemon on {}: {}", socket.display(), io_reason(source))]
    Connect {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No answer within the read timeout.
    #[error("the heph daemon did not answer {method} within {} s (socket {})", after.as_secs(), socket.display())]
    Timeout {
        socket: PathBuf,
        method: String,
        after: Duration,
    },
    /// The daemon hung up before answering.
    #[error("the heph daemon closed the connection before answering {method}")]
    Closed { method: String },
    /// Reading or writing the socket failed.
    #[error("lost the connection to the heph daemon: {}", io_reason(source))]
    Io {
        #[source]
        source: io::Error,
    },
    /// The answer is not the JSON-RPC response this client expects.
    #[error("the heph daemon sent an unreadable answer to {method}: {reason}")]
    Protocol { method: String, reason: String },
    /// The daemon answered with an error object.
    #[error("{}", .0.message)]
    Rpc(RpcError),
}

/// A connection to `hephd`.
pub struct Client {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    timeout: Duration,
}

/// Whether a connect error means "nobody is listening here".
fn is_absent(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::NotFound | ErrorKind::ConnectionRefused
    ) || matches!(
        err.raw_os_error(),
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR)
    )
}

impl Client {
    /// Connects with the default read timeout.
    pub fn connect(socket: &Path) -> Result<Self, ClientError> {
        Self::connect_with_timeout(socket, READ_TIMEOUT)
    }

    /// Connects; each call then waits at most `timeout` for its answer.
    pub fn connect_with_timeout(socket: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|source| {
            if is_absent(&source) {
                ClientError::NotRunning {
                    socket: socket.to_path_buf(),
                }
            } else {
                ClientError::Connect {
                    socket: socket.to_path_buf(),
                    source,
                }
            }
        })?;
        let io = |source| ClientError::Io { source };
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        Ok(Self {
            socket: socket.to_path_buf(),
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
            timeout,
        })
    }

    /// The socket this client is connected to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Calls `method` and decodes its result as `R`.
    pub fn call<R: DeserializeOwned>(
        &mut self,
        method: &str,
        params: impl Serialize,
    ) -> Result<R, ClientError> {
        let value = self.call_value(method, params)?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol {
            method: method.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Calls `method` and returns its raw result.
    pub fn call_value(
        &mut self,
        method: &str,
        params: impl Serialize,
    ) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = Request::new(id, method, params);
        let mut line = serde_json::to_vec(&request).map_err(|e| ClientError::Protocol {
            method: method.to_owned(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .and_then(|()| self.writer.flush())
            .map_err(|source| self.io_error(method, source))?;
        loop {
            let mut buf = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut buf)
                .map_err(|source| self.io_error(method, source))?;
            if n == 0 {
                return Err(ClientError::Closed {
                    method: method.to_owned(),
                });
            }
            match parse_response(&buf, id) {
                Parsed::Skip => continue,
                Parsed::Result(value) => return Ok(value),
                Parsed::Error(err) => return Err(ClientError::Rpc(err)),
                Parsed::Bad(reason) => {
                    return Err(ClientError::Protocol {
                        method: method.to_owned(),
                        reason,
                    });
                }
            }
        }
    }

    fn io_error(&self, method: &str, source: io::Error) -> ClientError {
        match source.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => ClientError::Timeout {
                socket: self.socket.clone(),
                method: method.to_owned(),
                after: self.timeout,
            },
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof => {
                ClientError::Closed {
                    method: method.to_owned(),
                }
            }
            _ => ClientError::Io { source },
        }
    }
}

/// One line read from the daemon.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// A notification or blank line: read on.
    Skip,
    Result(Value),
    Error(RpcError),
    Bad(String),
}

fn parse_response(line: &[u8], id: u64) -> Parsed {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Parsed::Skip;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Parsed::Bad(format!("not JSON ({e})")),
    };
    if value.get("method").is_some() && value.get("id").is_none() {
        return Parsed::Skip;
    }
    let response: Response = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return Parsed::Bad(format!("not a JSON-RPC response ({e})")),
    };
    let ours = response.id.as_u64() == Some(id);
    // A parse error is answered with a null id: the daemon never read ours.
    let unread = response.id.is_null() && response.error.is_some();
    if !(ours || unread) {
        return Parsed::Bad(format!(
            "it answers request {} instead of {id}",
            response.id
        ));
    }
    match (response.result, response.error) {
        (_, Some(err)) => Parsed::Error(err),
        (Some(result), None) => Parsed::Result(result),
        (None, None) => Parsed::Result(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    #[test]
    fn parses_responses() {
        assert_eq!(
            parse_response(br#"{"jsonrpc":"2.0","id":3,"result":{"a":1}}"#, 3),
            Parsed::Result(serde_json::json!({"a":1}))
        );
        assert_eq!(
            parse_response(
                br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32001,"message":"no"}}"#,
                3
            ),
            Parsed::Error(RpcError::new(-32001, "no"))
        );
        // A parse error answered before the daemon could read our id.
        assert_eq!(
            parse_response(
                br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#,
                3
            ),
            Parsed::Error(RpcError::new(-32700, "bad"))
        );
        assert_eq!(
            parse_response(br#"{"jsonrpc":"2.0","method":"event","params":{}}"#, 3),
            Parsed::Skip
        );
        assert!(matches!(
            parse_response(br#"{"jsonrpc":"2.0","id":4,"result":1}"#, 3),
            Parsed::Bad(_)
        ));
        assert!(matches!(parse_response(b"hello\n", 3), Parsed::Bad(_)));
    }

    #[test]
    fn a_missing_socket_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nope.sock");
        let err = Client::connect(&socket).err().unwrap();
        assert!(matches!(err, ClientError::NotRunning { socket: s } if s == socket));
        // A stale socket file that nobody accepts on: refused, also not running.
        let stale = dir.path().join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let err = Client::connect(&stale).err().unwrap();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    }

    /// A one-connection server that answers each request line with `reply(line)`.
    fn serve(reply: fn(&Value) -> Option<String>) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("d.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            for line in BufReader::new(stream).lines() {
                let req: Value = serde_json::from_str(&line.unwrap()).unwrap();
                match reply(&req) {
                    Some(text) => writer.write_all(text.as_bytes()).unwrap(),
                    None => return,
                }
            }
        });
        (dir, socket)
    }

    #[test]
    fn calls_round_trip_and_skip_notifications() {
        let (_dir, socket) = serve(|req| {
            let id = &req["id"];
            let echo = &req["params"];
            Some(format!(
                "{{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{{\"type\":\"status\"}}}}\n\
                 {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"method\":{},\"echo\":{echo}}}}}\n",
                req["method"]
            ))
        });
        let mut client = Client::connect(&socket).unwrap();
        let got: Value = client
            .call("node.get", serde_json::json!({"id": "6f"}))
            .unwrap();
        assert_eq!(
            got,
            serde_json::json!({"method": "node.get", "echo": {"id": "6f"}})
        );
        let again: Value = client.call("tags.list", ()).unwrap();
        assert_eq!(again["method"], "tags.list");
    }

    #[test]
    fn errors_and_hangups_are_typed() {
        let (_dir, socket) = serve(|req| {
            if req["method"] == "hang.up" {
                return None;
            }
            Some(format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{{\"code\":-32001,\"message\":\"no such node\",\"data\":{{\"id\":\"zz\"}}}}}}\n",
                req["id"]
            ))
        });
        let mut client = Client::connect(&socket).unwrap();
        match client.call::<Value>("node.get", serde_json::json!({"id": "zz"})) {
            Err(ClientError::Rpc(err)) => {
                assert_eq!(err.code, heph_core::rpc::code::NOT_FOUND);
                assert_eq!(err.data, Some(serde_json::json!({"id": "zz"})));
            }
            other => panic!("{other:?}"),
        }
        let err = client.call::<Value>("hang.up", ()).err().unwrap();
        assert!(matches!(err, ClientError::Closed { .. }), "{err:?}");
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("d.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        thread::spawn(move || {
            let conn = listener.accept().unwrap();
            // Hold the connection open without answering until the test ends.
            let _ = rx.recv();
            drop(conn);
        });
        let mut client = Client::connect_with_timeout(&socket, Duration::from_millis(50)).unwrap();
        let err = client.call::<Value>("daemon.info", ()).err().unwrap();
        assert!(
            matches!(&err, ClientError::Timeout { method, .. } if method == "daemon.info"),
            "{err:?}"
        );
        drop(tx);
    }
}
