//! The unix-socket JSON-RPC server: one JSON message per line.
//!
//! Owns connections and framing, and runs parsed messages ([`answer`], which
//! the hub's `/rpc` shares): the parsing lives in
//! [`envelope`](super::envelope), the methods in [`methods`](super::methods).
//! A batch's replies are capped at [`MAX_BATCH_REPLY_BYTES`]. A bad message gets a
//! JSON-RPC error and the connection carries on; a line over
//! [`MAX_LINE_BYTES`] gets an error and the connection is closed. Each
//! connection has its own reader and writer, so one slow or broken client
//! never affects another. On shutdown no new connection is accepted, a
//! request already read is finished and answered, and idle connections close.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use heph_core::rpc::{
    Event, MAX_BATCH_REPLY_BYTES, MAX_LINE_BYTES, Method, Notification, Response, RpcError, code,
    method,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;

use super::envelope::{self, Item, Message};
use super::methods::{Context, dispatch};

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// How long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` turns true, then drains.
pub async fn serve(listener: UnixListener, ctx: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = stop.wait_for(|&stop| stop) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(connection(stream, ctx.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; closing them");
        conns.shutdown().await;
    }
}

/// How reading one line ended.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line is in the buffer (without its newline).
    Complete,
    /// The peer closed; any partial line is dropped.
    Eof,
    /// The line is longer than allowed.
    TooLong,
}

/// Reads one line into `buf`, refusing more than `max` bytes. Cancel-safe:
/// bytes move from the reader to `buf` without an await in between.
async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Line> {
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                if buf.len() + pos > max {
                    return Ok(Line::TooLong);
                }
                buf.extend_from_slice(&available[..pos]);
                r.consume(pos + 1);
                return Ok(Line::Complete);
            }
            None => {
                let n = available.len();
                if buf.len() + n > max {
                    return Ok(Line::TooLong);
                }
                buf.extend_from_slice(available);
                r.consume(n);
            }
        }
    }
}

fn encode(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        format!(r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{},"message":"cannot encode the response: {e}"}}}}"#, code::INTERNAL)
    })
}

async fn connection(stream: UnixStream, ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let (rd, mut wr) = stream.into_split();
    let (out, mut out_rx) = mpsc::channel::<String>(64);
    let writer = tokio::spawn(async move {
        while let Some(mut line) = out_rx.recv().await {
            line.push('\n');
            if wr.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut reader = BufReader::new(rd);
    let mut buf = Vec::new();
    let mut subscription: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        buf.clear();
        let read = tokio::select! {
            _ = shutdown.wait_for(|&stop| stop) => break,
            read = read_line(&mut reader, &mut buf, MAX_LINE_BYTES) => read,
        };
        match read {
            Ok(Line::Complete) => {}
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => {
                let err = RpcError::new(
                    code::INVALID_REQUEST,
                    format!(
                        "the request is longer than the limit of {MAX_LINE_BYTES} bytes; the connection is closed"
                    ),
                );
                let _ = out.send(encode(&Response::err(Value::Null, err))).await;
                break;
            }
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Some(reply) = handle_message(&ctx, &buf, &out, &mut subscription).await {
            if out.send(reply).await.is_err() {
                break;
            }
        }
    }
    if let Some(sub) = subscription {
        sub.abort();
    }
    drop(out);
    let _ = writer.await;
}

/// Handles one line: a request, a notification or a batch. Returns the reply line, if any.
async fn handle_message(
    ctx: &Arc<Context>,
    line: &[u8],
    out: &mpsc::Sender<String>,
    subscription: &mut Option<tokio::task::JoinHandle<()>>,
) -> Option<String> {
    match envelope::parse(line) {
        // The socket's peer is the machine's user: it sees everything.
        Ok(message) => answer(ctx, message, Some((out, subscription)), Audience::Owner).await,
        Err(refusal) => Some(encode(&refusal.response())),
    }
}

pub(crate) type SubscribeSlot<'a> = (
    &'a mpsc::Sender<String>,
    &'a mut Option<tokio::task::JoinHandle<()>>,
);

/// How much of the daemon a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// The machine's user (the socket) or a hub owner: everything.
    Owner,
    /// A hub's reader or writer: `daemon.info` without the hub's paths and pid.
    Member,
}

/// Runs a parsed message and encodes its reply; `None` when nothing is
/// answered (notifications only). `subscribe` is `None` where a
/// subscription cannot live (over the hub's HTTP `/rpc`); inside a batch it
/// is never offered. A batch runs in order and stops once its replies reach
/// [`MAX_BATCH_REPLY_BYTES`]: the rest are answered with an error, not run.
pub(crate) async fn answer(
    ctx: &Arc<Context>,
    message: Message,
    subscribe: Option<SubscribeSlot<'_>>,
    audience: Audience,
) -> Option<String> {
    let items = match message {
        Message::Single(item) => {
            return run_item(ctx, item, subscribe, audience)
                .await
                .map(|r| encode(&r));
        }
        Message::Batch(items) => items,
    };
    // The batch's reply is written as it runs (no list of replies joined
    // into a second copy at the end); `bytes` counts each reply plus one.
    let mut out = String::from("[");
    let mut bytes = 0usize;
    let mut full = false;
    for item in items {
        let reply = if full {
            not_run(&item)
        } else {
            match run_item(ctx, item, None, audience).await {
                None => None,
                Some(r) => {
                    let line = encode(&r);
                    if bytes + line.len() > MAX_BATCH_REPLY_BYTES {
                        full = true;
                        let err = RpcError::new(
                            code::INVALID_REQUEST,
                            format!(
                                "this request ran, but its reply ({} bytes) would take the batch's replies past the limit of {} MiB; send it on its own",
                                line.len(),
                                MAX_BATCH_REPLY_BYTES / (1024 * 1024)
                            ),
                        );
                        Some(encode(&Response::err(r.id, err)))
                    } else {
                        Some(line)
                    }
                }
            }
        };
        if let Some(line) = reply {
            if bytes > 0 {
                out.push(',');
            }
            bytes += line.len() + 1;
            out.push_str(&line);
        }
    }
    (bytes > 0).then(|| {
        out.push(']');
        out
    })
}

/// The answer to a batch item left unrun because the batch's replies were full.
fn not_run(item: &Item) -> Option<String> {
    let id = match item {
        Item::Call(call) => call.id.clone()?,
        Item::Refused(reply) => return reply.as_ref().map(encode),
    };
    let err = RpcError::new(
        code::INVALID_REQUEST,
        format!(
            "not run: the batch's replies reached the limit of {} MiB; send this request again in another batch",
            MAX_BATCH_REPLY_BYTES / (1024 * 1024)
        ),
    );
    Some(encode(&Response::err(id, err)))
}

/// Runs one parsed item.
async fn run_item(
    ctx: &Arc<Context>,
    item: Item,
    subscribe: Option<SubscribeSlot<'_>>,
    audience: Audience,
) -> Option<Response> {
    let call = match item {
        Item::Call(call) => call,
        Item::Refused(reply) => return reply,
    };
    let Some(id) = call.id else {
        // A notification: run it, answer nothing.
        if call.method != Method::EventsSubscribe {
            let _ = dispatch(ctx, call.method, call.params).await;
        }
        return None;
    };
    if call.method == Method::EventsSubscribe {
        let Some((out, slot)) = subscribe else {
            let err = RpcError::new(
                code::INVALID_REQUEST,
                "events.subscribe needs its own unix-socket connection; it cannot be part of a batch or sent over HTTP",
            );
            return Some(Response::err(id, err));
        };
        if slot.is_some() {
            let err = RpcError::new(
                code::INVALID_REQUEST,
                "this connection is already subscribed",
            );
            return Some(Response::err(id, err));
        }
        let rx = ctx.events.subscribe();
        let last_seq = match dispatch(ctx, Method::DaemonInfo, Value::Null).await {
            Ok(info) => info.get("last_seq").and_then(Value::as_u64).unwrap_or(0),
            Err(e) => return Some(Response::err(id, e)),
        };
        *slot = Some(tokio::spawn(forward_events(rx, out.clone())));
        return Some(Response::ok(
            id,
            json!({"subscribed": true, "last_seq": last_seq}),
        ));
    }
    Some(match dispatch(ctx, call.method, call.params).await {
        Ok(mut result) => {
            if call.method == Method::DaemonInfo && audience == Audience::Member {
                if let Value::Object(info) = &mut result {
                    for private in ["pid", "db", "socket"] {
                        info.remove(private);
                    }
                }
            }
            Response::ok(id, result)
        }
        Err(err) => Response::err(id, err),
    })
}

/// Copies events to one subscriber; a subscriber that lags is told to resync.
async fn forward_events(mut rx: broadcast::Receiver<Event>, out: mpsc::Sender<String>) {
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(skipped)) => Event::Resync { skipped },
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let note = Notification {
            jsonrpc: "2.0".into(),
            method: method::EVENT.into(),
            params: serde_json::to_value(event).unwrap_or(Value::Null),
        };
        if out.send(encode(&note)).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(Line, Vec<u8>)> {
        let mut r = BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        loop {
            let mut buf = Vec::new();
            let l = read_line(&mut r, &mut buf, max).await.unwrap();
            let done = l != Line::Complete;
            out.push((l, buf));
            if done {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn framing() {
        let got = lines(b"ab\ncdef\n", 10).await;
        assert_eq!(got[0], (Line::Complete, b"ab".to_vec()));
        assert_eq!(got[1], (Line::Complete, b"cdef".to_vec()));
        assert_eq!(got[2].0, Line::Eof);
        let got = lines(b"0123456789\n0123456789X\n", 10).await;
        assert_eq!(got[0], (Line::Complete, b"0123456789".to_vec()));
        assert_eq!(got[1].0, Line::TooLong);
        // A partial line at EOF is not a request.
        assert_eq!(lines(b"{\"jsonrpc\"", 100).await[0].0, Line::Eof);
    }
}
