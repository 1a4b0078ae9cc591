//! A scripted HTTP server on 127.0.0.1 for unit tests: each connection gets
//! the next scripted reply (or is dropped unanswered), and every request is
//! recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};

/// One scripted answer.
#[derive(Clone)]
pub enum Reply {
    Json(u16, String),
    /// Close the connection without answering (a network error).
    Drop,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Reply::Json(status, body.to_owned())
    }
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub body: String,
}

#[derive(Default)]
struct State {
    script: std::collections::VecDeque<Reply>,
    seen: Vec<Recorded>,
}

pub struct FakeServer {
    url: String,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl FakeServer {
    pub fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new((
            Mutex::new(State {
                script: script.into(),
                seen: Vec::new(),
            }),
            Condvar::new(),
        ));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                let reply = {
                    let mut s = shared.0.lock().unwrap();
                    let reply = s.script.pop_front();
                    if !matches!(reply, Some(Reply::Drop)) {
                        s.seen.push(Recorded {
                            path,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                    }
                    shared.1.notify_all();
                    reply
                };
                match reply {
                    Some(Reply::Json(status, body)) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Some(Reply::Drop) => {}
                    None => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 500 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                    }
                }
            }
        });
        Self { url, state }
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: Reply) {
        self.state.0.lock().unwrap().script.push_back(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.0.lock().unwrap().seen.clone()
    }
}
