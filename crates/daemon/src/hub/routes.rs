//! The hub's HTTP routes (DESIGN §4): push, pull with long poll, `/rpc`,
//! `/healthz` and the RFC 9728 protected-resource metadata.
//!
//! Handlers parse and check everything before touching the replica, so a
//! bad request writes nothing; every refusal is an [`ApiError`]. Cursors are
//! the hub log's arrival seqs, never HLCs; every push and pull answer names
//! the log's id ([`log_id`](super::log_id)), and a pull that names another
//! log, or a position the log no longer holds, is told to start over before
//! any long poll. The replica itself is only
//! reached through the [`Db`] thread; this module owns no sockets (see
//! [`serve`](super::serve)) and does not decide who a caller is (see
//! [`auth`](super::auth)).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use heph_core::hub_log::{Seen, Verdict};
use heph_core::wire::{
    DEFAULT_PULL_LIMIT, Health, MAX_PULL_LIMIT, MAX_PULL_WAIT_SECS, MAX_PUSH_BYTES, MAX_PUSH_OPS,
    MAX_RPC_BYTES, ProtectedResource, PullResponse, PushRequest, PushResponse, error_code, route,
};
use heph_core::{Hlc, Outcome, Refusal, ReplicaError, Store, StoreError};
use tokio::sync::watch;

use super::api_error::ApiError;
use super::auth::{self, Caller, Policy};
use super::members::Role;
use crate::db::Db;
use crate::rpc::envelope;
use crate::rpc::methods::Context;
use crate::rpc::server::Audience;

/// How long a client may take to send a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
pub struct HubState {
    pub ctx: Arc<Context>,
    pub db: Db,
    pub auth: Policy,
    /// The hub's public URL (the RFC 9728 `resource`).
    pub public_url: String,
    pub shutdown: watch::Receiver<bool>,
    /// The built-in issuer, when the hub is its own (`--builtin-issuer`).
    pub issuer: Option<Arc<crate::issuer::Issuer>>,
}

/// The router with every route, the auth layer on the protected ones, and
/// JSON answers for unknown routes and methods.
pub fn router(state: Arc<HubState>) -> Router {
    let protected = Router::new()
        .route(route::PUSH, post(push))
        .route(route::PULL, get(pull))
        .route(route::RPC, post(rpc))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ));
    let mut public = Router::new()
        .route(route::HEALTHZ, get(healthz))
        .route(route::PROTECTED_RESOURCE, get(protected_resource));
    if let Some(issuer) = &state.issuer {
        public = public
            .merge(crate::issuer::routes::router(issuer.clone(), state.db.clone()).with_state(()));
    }
    public
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        error_code::NOT_FOUND,
        "no such route; the hub serves /sync/push, /sync/pull, /rpc, /healthz and /.well-known/oauth-protected-resource",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        error_code::METHOD_NOT_ALLOWED,
        "this route does not take that method: /sync/push and /rpc take POST, the others GET",
    )
}

async fn healthz() -> Response {
    axum::Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
    .into_response()
}

async fn protected_resource(State(state): State<Arc<HubState>>) -> Response {
    let mut meta = ProtectedResource {
        resource: state.public_url.clone(),
        bearer_methods_supported: vec!["header".into()],
        ..ProtectedResource::default()
    };
    if let Policy::Oidc(v) = &state.auth {
        meta.authorization_servers = vec![v.settings.issuer.clone()];
        meta.heph_client_id = Some(v.settings.client_id.clone());
        meta.scopes_supported = v.settings.scopes.clone();
    }
    axum::Json(meta).into_response()
}

/// Reads a JSON request body of at most `limit` bytes, refusing compressed
/// bodies, other media types and senders slower than [`BODY_TIMEOUT`].
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error_code::UNSUPPORTED_ENCODING,
                format!(
                    "the hub does not accept compressed bodies (Content-Encoding: {}); send plain JSON",
                    String::from_utf8_lossy(enc.as_bytes())
                ),
            ));
        }
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = String::from_utf8_lossy(ct.as_bytes()).to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if essence != "application/json" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error_code::UNSUPPORTED_MEDIA_TYPE,
                format!("the body must be application/json, not {essence}"),
            ));
        }
    }
    let over = || {
        ApiError::too_large(format!(
            "the request body is larger than the limit of {limit} bytes ({} MiB)",
            limit / (1024 * 1024)
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(over());
    }
    match read_limited(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(BodyError::TooLarge) => Err(over()),
        Err(BodyError::Timeout) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            error_code::TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
        Err(BodyError::Broken(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            error_code::INVALID_BODY,
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// Not all there within [`BODY_TIMEOUT`].
    Timeout,
    /// The connection failed; the cause.
    Broken(String),
}

/// Reads a body of at most `limit` bytes from a sender no slower than
/// [`BODY_TIMEOUT`]: every hub route that reads a body goes through here.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(s) = source {
                if s.to_string().contains("length limit exceeded") {
                    return Err(BodyError::TooLarge);
                }
                source = s.source();
            }
            Err(BodyError::Broken(e.to_string()))
        }
    }
}

async fn push(
    State(state): State<Arc<HubState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if !caller.allows(Role::Writer) {
        return Err(caller.forbidden(Role::Writer, "pushing"));
    }
    let bytes = read_body(&headers, body, MAX_PUSH_BYTES).await?;
    let req: PushRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::json(&e, r#"{"ops":[…]} with valid ops"#))?;
    if req.ops.len() > MAX_PUSH_OPS {
        return Err(ApiError::too_large(format!(
            "the batch holds {} ops, more than the limit of {MAX_PUSH_OPS} per push",
            req.ops.len()
        )));
    }
    if req.ops.is_empty() {
        let fresh = super::log_id::fresh();
        let (log, end) = state
            .db
            .call(move |r| -> Result<_, StoreError> {
                let (log, _) = super::log_id::ensure(r, fresh)?;
                Ok((log, heph_core::hub_log::end(r.store())?))
            })
            .await
            .map_err(|_| ApiError::shutting_down())?
            .map_err(read_error)?;
        return Ok(axum::Json(PushResponse {
            log: Some(log),
            seq: end.map_or(0, |e| e.seq),
            hlc: end.map(|e| e.hlc),
            ..PushResponse::default()
        })
        .into_response());
    }
    let ops = req.ops;
    let fresh = super::log_id::fresh();
    let ctx = state.ctx.clone();
    let result = state
        .db
        .call(move |r| -> Result<_, ReplicaError> {
            let outcomes = r.receive(&ops)?;
            let nodes: BTreeSet<_> = ops
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| matches!(o, Outcome::Applied))
                .map(|(op, _)| op.node)
                .collect();
            // Announced on the replica thread right after the commit, so a
            // pusher that hangs up meanwhile cannot keep long polls asleep.
            ctx.committed(nodes, r.store().last_seq()?);
            let (log, _) = super::log_id::ensure(r, fresh)?;
            let end = heph_core::hub_log::end(r.store())?;
            let duplicates = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Duplicate))
                .count() as u64;
            Ok((outcomes.len() as u64 - duplicates, duplicates, log, end))
        })
        .await
        .map_err(|_| ApiError::shutting_down())?;
    let (accepted, duplicates, log, end) = result.map_err(push_error)?;
    Ok(axum::Json(PushResponse {
        accepted,
        duplicates,
        log: Some(log),
        seq: end.map_or(0, |e| e.seq),
        hlc: end.map(|e| e.hlc),
    })
    .into_response())
}

fn push_error(e: ReplicaError) -> ApiError {
    let skew = |c: &heph_core::ClockError| {
        ApiError::new(
            StatusCode::CONFLICT,
            error_code::CLOCK_SKEW,
            format!("{c}; nothing of the batch was written, so keep it and retry later"),
        )
    };
    match e {
        ReplicaError::Store(StoreError::BatchRefused {
            refusal: Refusal::ClockSkew(c),
            ..
        }) => skew(&c),
        ReplicaError::Clock(c) => skew(&c),
        ReplicaError::Store(StoreError::BatchRefused {
            index,
            refusal: Refusal::Collision { hlc },
        }) => {
            tracing::warn!(%hlc, replica = %hlc.replica, "refused a push: its op {index} carries an HLC this hub has logged with different content (two writers share a replica id); the sender re-stamps it");
            ApiError::collision(
                hlc,
                format!(
                    "op {index} of the batch carries the HLC {hlc}, which this hub has logged with different content, so two writers share the replica id {}; nothing of the batch was written: re-stamp the unpushed ops of that id and push again",
                    hlc.replica
                ),
            )
        }
        ReplicaError::Store(StoreError::BatchRefused {
            index,
            refusal: Refusal::Invalid(inv),
        }) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            error_code::INVALID_OP,
            format!("op {index} of the batch was refused, so none of the batch was written: {inv}"),
        ),
        other => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error_code::STORE,
            format!("the hub cannot write the batch: {other}"),
        ),
    }
}

/// The checked query of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullQuery {
    pub after: u64,
    pub limit: usize,
    pub wait_secs: u64,
    /// The log id the spoke's cursors belong to (`log`), if it sent one.
    pub log: Option<String>,
    /// A position the spoke saw in that log (`seen` and `seen_hlc`).
    pub seen: Option<Seen>,
}

/// The longest log id a pull may name.
const MAX_LOG_ID: usize = 64;

fn number(key: &str, value: &str) -> Result<u64, ApiError> {
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::query(format!(
            "{key} must be a non-negative whole number, not {:?}",
            value.chars().take(40).collect::<String>()
        )));
    }
    value
        .parse()
        .map_err(|_| ApiError::query(format!("{key} is too large")))
}

/// Parses `after`, `limit` and `wait`. Unknown keys are ignored (a newer
/// spoke may send more); a repeated key is refused.
pub fn parse_pull_query(query: Option<&str>) -> Result<PullQuery, ApiError> {
    let mut q = PullQuery {
        after: 0,
        limit: DEFAULT_PULL_LIMIT,
        wait_secs: 0,
        log: None,
        seen: None,
    };
    let mut given = BTreeSet::new();
    let (mut seen_seq, mut seen_hlc) = (None, None);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !["after", "limit", "wait", "log", "seen", "seen_hlc"].contains(&key) {
            continue;
        }
        if !given.insert(key) {
            return Err(ApiError::query(format!("{key} is given more than once")));
        }
        if key == "log" {
            if value.is_empty()
                || value.len() > MAX_LOG_ID
                || !value.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(ApiError::query(format!(
                    "log must be a log id of 1 to {MAX_LOG_ID} hex digits, not {:?}",
                    value.chars().take(40).collect::<String>()
                )));
            }
            q.log = Some(value.to_ascii_lowercase());
            continue;
        }
        if key == "seen_hlc" {
            let hlc: Hlc = value.parse().map_err(|_| {
                ApiError::query(format!(
                    "seen_hlc must be an HLC, not {:?}",
                    value.chars().take(60).collect::<String>()
                ))
            })?;
            seen_hlc = Some(hlc);
            continue;
        }
        let n = number(key, value)?;
        match key {
            "after" => q.after = n,
            "seen" => seen_seq = Some(n),
            "limit" => {
                if n == 0 || n > MAX_PULL_LIMIT as u64 {
                    return Err(ApiError::query(format!(
                        "limit must be from 1 to {MAX_PULL_LIMIT}, not {n}"
                    )));
                }
                q.limit = n as usize;
            }
            _ => {
                if n > MAX_PULL_WAIT_SECS {
                    return Err(ApiError::query(format!(
                        "wait must be from 0 to {MAX_PULL_WAIT_SECS} seconds, not {n}"
                    )));
                }
                q.wait_secs = n;
            }
        }
    }
    q.seen = match (seen_seq, seen_hlc) {
        (None, None) => None,
        (Some(seq), Some(hlc)) if seq > 0 => Some(Seen { seq, hlc }),
        _ => {
            return Err(ApiError::query(
                "seen (a hub seq above 0) and seen_hlc come together or not at all",
            ));
        }
    };
    Ok(q)
}

fn read_error(e: StoreError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        error_code::STORE,
        format!("the hub cannot read its log: {e}"),
    )
}

/// What one read of the log for a pull found.
enum Fetched {
    /// The spoke's claim about the log failed: the start-over page, with the log's id.
    StartOver(String),
    /// `after` is beyond the log's end (a spoke that names no log).
    Ahead { last: u64 },
    /// The ops after `after`, the log's last seq and its id.
    Page {
        ops: Vec<heph_core::LoggedOp>,
        last: u64,
        log: String,
    },
}

/// The answer that tells a spoke to start over: no ops, `next` 0, and the
/// id of the log as it is now.
fn start_over_page(log: String) -> Response {
    axum::Json(PullResponse {
        ops: Vec::new(),
        next: 0,
        more: true,
        log: Some(log),
    })
    .into_response()
}

async fn pull(
    State(state): State<Arc<HubState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let q = parse_pull_query(query.as_deref())?;
    let (after, limit, seen) = (q.after, q.limit, q.seen);
    let mut claim = q.log.clone();
    if q.wait_secs > 0 {
        // A spoke that names a log is checked before any wait: if its
        // cursors belong to another log (or this one is not what it saw),
        // it is told at once to start over, even while it long-polls.
        if let Some(claimed) = claim.take() {
            let fresh = super::log_id::fresh();
            let (verdict, log) = state
                .db
                .call(move |r| super::log_id::check_claim(r, &claimed, after, seen, fresh))
                .await
                .map_err(|_| ApiError::shutting_down())?
                .map_err(read_error)?;
            if verdict != Verdict::Same {
                return Ok(start_over_page(log));
            }
        }
        let mut seq = state.ctx.log_seq.subscribe();
        let mut stop = state.shutdown.clone();
        if *seq.borrow_and_update() <= after {
            tokio::select! {
                _ = seq.wait_for(|&s| s > after) => {}
                _ = tokio::time::sleep(Duration::from_secs(q.wait_secs)) => {}
                _ = stop.wait_for(|&s| s) => {}
            }
        }
    }
    // Without a wait, the claim is checked in the same job as the read.
    let fresh = super::log_id::fresh();
    let fetched = state
        .db
        .call(move |r| -> Result<Fetched, StoreError> {
            let log = match claim {
                Some(claimed) => {
                    let (verdict, log) =
                        super::log_id::check_claim(r, &claimed, after, seen, fresh)?;
                    if verdict != Verdict::Same {
                        return Ok(Fetched::StartOver(log));
                    }
                    log
                }
                None => super::log_id::ensure(r, fresh)?.0,
            };
            let last = r.store().last_seq()?;
            if after > last {
                return Ok(Fetched::Ahead { last });
            }
            Ok(Fetched::Page {
                ops: r.store().ops_after(after, limit)?,
                last,
                log,
            })
        })
        .await
        .map_err(|_| ApiError::shutting_down())?
        .map_err(read_error)?;
    let (ops, last_seq, log) = match fetched {
        Fetched::StartOver(log) => return Ok(start_over_page(log)),
        Fetched::Ahead { last } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                error_code::CURSOR_AHEAD,
                format!(
                    "the cursor {after} is beyond the hub's log, which ends at {last}; the hub's database was replaced, so pull again from 0"
                ),
            ));
        }
        Fetched::Page { ops, last, log } => (ops, last, log),
    };
    let next = ops.last().map_or(after, |l| l.seq);
    let body = PullResponse {
        more: next < last_seq,
        next,
        ops: ops.into_iter().map(|l| l.op).collect(),
        log: Some(log),
    };
    Ok(axum::Json(body).into_response())
}

async fn rpc(
    State(state): State<Arc<HubState>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, MAX_RPC_BYTES).await?;
    let message = match envelope::parse(&bytes) {
        Ok(message) => message,
        Err(envelope::Refusal::Parse(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                error_code::MALFORMED_JSON,
                format!("the request body is not valid JSON: {e}"),
            ));
        }
        Err(refusal) => return Ok(axum::Json(refusal.response()).into_response()),
    };
    // Every method of the request (or batch) must be allowed before any
    // runs, decided on the parsed method, never on raw JSON.
    for call in message.calls() {
        let needed = Role::needed_for(call.method);
        if !caller.allows(needed) {
            return Err(caller.forbidden(needed, &format!("the RPC method {}", call.method)));
        }
    }
    let audience = if caller.allows(Role::Owner) {
        Audience::Owner
    } else {
        Audience::Member
    };
    Ok(
        match crate::rpc::server::answer(&state.ctx, message, None, audience).await {
            Some(reply) => ([(header::CONTENT_TYPE, "application/json")], reply).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(query: Option<&str>, expected: Result<(u64, usize, u64), &str>) {
        match (parse_pull_query(query), expected) {
            (Ok(q), Ok((after, limit, wait))) => {
                assert_eq!(
                    (q.after, q.limit, q.wait_secs),
                    (after, limit, wait),
                    "{query:?}"
                )
            }
            (Err(e), Err(want)) => {
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
                assert!(e.message.contains(want), "{query:?}: {}", e.message)
            }
            (got, want) => panic!("{query:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn pull_queries() {
        check(None, Ok((0, 1000, 0)));
        check(Some(""), Ok((0, 1000, 0)));
        check(Some("after=5&limit=10&wait=60"), Ok((5, 10, 60)));
        check(Some("after=5&future=x"), Ok((5, 1000, 0)));
        check(Some("limit=10000"), Ok((0, 10000, 0)));
        check(
            Some("after=-1"),
            Err("after must be a non-negative whole number"),
        );
        check(
            Some("after=abc"),
            Err("after must be a non-negative whole number"),
        );
        check(Some("after="), Err("after must be"));
        check(Some("after"), Err("after must be"));
        check(Some("after=1.5"), Err("after must be"));
        check(Some("after=99999999999999999999"), Err("after must be"));
        check(Some("after=18446744073709551615"), Err("after must be"));
        check(Some("limit=0"), Err("limit must be from 1 to 10000, not 0"));
        check(Some("limit=10001"), Err("limit must be from 1 to 10000"));
        check(Some("wait=61"), Err("wait must be from 0 to 60 seconds"));
        check(
            Some("after=1&after=2"),
            Err("after is given more than once"),
        );
        let hlc = "0001795620812689-0000-cadc70ff8d5680aff4610b11f327aa4a";
        let q = parse_pull_query(Some(&format!("after=3&log=AB01&seen=2&seen_hlc={hlc}"))).unwrap();
        assert_eq!(q.log.as_deref(), Some("ab01"));
        assert_eq!(
            q.seen.map(|s| (s.seq, s.hlc.to_string())),
            Some((2, hlc.to_owned()))
        );
        check(Some("log=xyz"), Err("log must be a log id"));
        check(Some(&format!("log={}", "a".repeat(65))), Err("log must be"));
        check(Some("log=ab&seen=2"), Err("come together"));
        check(
            Some(&format!("log=ab&seen=0&seen_hlc={hlc}")),
            Err("come together"),
        );
        check(
            Some("log=ab&seen=2&seen_hlc=x"),
            Err("seen_hlc must be an HLC"),
        );
        check(Some("log=ab&log=cd"), Err("log is given more than once"));
    }
}
