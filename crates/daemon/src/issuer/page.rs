//! The built-in issuer's pages for people: the device verification page
//! (sign in, see what is asking, approve or deny) and the invite page
//! (choose a password from a single-use link). Plain server-rendered HTML
//! that works without JavaScript.
//!
//! Safety rules, all enforced here: every form carries a CSRF token that
//! must match the `__Host-heph_csrf` cookie (`Secure`, `HttpOnly`,
//! `SameSite=Strict`); sign-in answers the same for an unknown user and a
//! wrong password and is rate-limited (see [`Issuer::sign_in`]); a code
//! is checked only after a successful sign-in, so the page cannot be used
//! to guess codes; the client and scopes are shown before approval; pages
//! forbid framing, scripts and caching. Approval is bound to the signed-in
//! account by a short-lived, single-use ticket kept in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::grants::{InviteError, Issuer, SignInError};
use super::keys::{constant_time_eq, random_token};
use super::routes::{path, read_form};
use crate::db::Db;
use crate::hub::members::{self, Role};
use crate::hub::serve::PeerAddr;

/// The CSRF cookie's name (`__Host-`: only from this exact origin, `Path=/`, `Secure`).
pub const CSRF_COOKIE: &str = "__Host-heph_csrf";
/// How long a signed-in approval stays open.
const TICKET_TTL: Duration = Duration::from_secs(300);
/// The most approvals open at once.
const MAX_TICKETS: usize = 1_000;

struct Ticket {
    sub: String,
    username: String,
    user_code: String,
    created: Instant,
}

/// What the pages share.
pub struct PageState {
    issuer: Arc<Issuer>,
    db: Db,
    tickets: Mutex<HashMap<String, Ticket>>,
}

impl PageState {
    pub fn new(issuer: Arc<Issuer>, db: Db) -> Self {
        Self {
            issuer,
            db,
            tickets: Mutex::new(HashMap::new()),
        }
    }

    fn open_ticket(&self, t: Ticket) -> String {
        let id = random_token(24);
        let mut map = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| t.created.elapsed() < TICKET_TTL);
        if map.len() >= MAX_TICKETS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, t)| t.created)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), t);
        id
    }

    fn take_ticket(&self, id: &str) -> Option<Ticket> {
        let mut map = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id).filter(|t| t.created.elapsed() < TICKET_TTL)
    }
}

pub fn router(state: Arc<PageState>) -> Router {
    Router::new()
        .route(path::DEVICE_PAGE, get(device_page).post(device_sign_in))
        .route(path::DEVICE_DECISION, post(device_decision))
        .route(path::INVITE_PAGE, get(invite_page).post(invite_submit))
        .with_state(state)
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page with the security headers; `csrf` sets the cookie.
fn page(status: StatusCode, title: &str, body: &str, csrf: Option<&str>) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Hephaestus</title><style>\
body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}}\
h1{{font-size:1.4rem}}label{{display:block;margin:.8rem 0 .2rem}}\
input[type=text],input[type=password]{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}\
button{{margin:1rem .5rem 0 0;padding:.5rem 1.2rem;font-size:1rem}}\
.code{{font-family:monospace;font-size:1.3rem;letter-spacing:.1rem}}.error{{color:#a00}}\
dt{{font-weight:bold;margin-top:.5rem}}</style></head><body>\
<h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(token) = csrf
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict"
        ))
    {
        h.insert(header::SET_COOKIE, v);
    }
    resp
}

/// The CSRF token of the request's cookie, if it has one.
fn csrf_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == CSRF_COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| {
            v.len() >= 32
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The token to put in a form: the request's, or a fresh one (then also set as the cookie).
fn csrf_for(headers: &HeaderMap) -> (String, bool) {
    match csrf_cookie(headers) {
        Some(t) => (t, false),
        None => (random_token(32), true),
    }
}

/// Whether the form's token matches the cookie.
fn csrf_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    match (csrf_cookie(headers), form.get("csrf")) {
        (Some(cookie), Some(sent)) => constant_time_eq(cookie.as_bytes(), sent.as_bytes()),
        _ => false,
    }
}

/// A posted form whose CSRF token matches the cookie, or the page refusing it.
async fn checked_form(
    headers: &HeaderMap,
    body: Body,
) -> Result<HashMap<String, String>, Response> {
    let form = read_form(headers, body).await.map_err(|e| {
        page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            &escape(&e.description),
            None,
        )
    })?;
    if !csrf_ok(headers, &form) {
        return Err(csrf_refused());
    }
    Ok(form)
}

fn csrf_refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "<p class=\"error\">The form was not sent from this page, or its security cookie is missing. \
Reload the page and try again (cookies must be allowed, and the hub must be reached over https:// unless it is on this machine).</p>",
        None,
    )
}

fn sign_in_form(csrf: &str, user_code: &str, username: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        "{error}<p>A device is asking to sign in to this hub. Enter the code it shows, then sign in with your hub account.</p>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"user_code\">Code</label><input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{code}\" autocomplete=\"off\" autocapitalize=\"characters\" required>\
<label for=\"username\">User name</label><input type=\"text\" id=\"username\" name=\"username\" value=\"{user}\" autocomplete=\"username\" required>\
<label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
        action = path::DEVICE_PAGE,
        csrf = escape(csrf),
        code = escape(user_code),
        user = escape(username),
    )
}

#[derive(serde::Deserialize)]
struct CodeQuery {
    user_code: Option<String>,
}

async fn device_page(headers: HeaderMap, Query(q): Query<CodeQuery>) -> Response {
    let (csrf, fresh) = csrf_for(&headers);
    let code = q.user_code.unwrap_or_default();
    page(
        StatusCode::OK,
        "Sign in a device",
        &sign_in_form(&csrf, &code, "", None),
        fresh.then_some(csrf.as_str()),
    )
}

fn scope_list(scope: &str, lifetime_days: u64) -> String {
    let offline =
        format!("stay signed in (up to {lifetime_days} days, until you sign out or it is revoked)");
    scope
        .split_whitespace()
        .map(|s| {
            let what = match s {
                "openid" => "know who you are on this hub",
                "offline_access" => offline.as_str(),
                "profile" => "see your user name",
                _ => "",
            };
            format!("<li><code>{}</code> — {}</li>", escape(s), escape(what))
        })
        .collect()
}

async fn device_sign_in(
    State(state): State<Arc<PageState>>,
    peer: Option<axum::Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match checked_form(&headers, body).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let csrf = form.get("csrf").cloned().unwrap_or_default();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let (user_code, username, password) = (get("user_code"), get("username"), get("password"));
    let address = state.issuer.client_key(&headers, peer.map(|p| p.0.0));
    let retry = |status, message: &str| {
        page(
            status,
            "Sign in a device",
            &sign_in_form(&csrf, user_code, username, Some(message)),
            None,
        )
    };
    let account = match state.issuer.sign_in(username, password, &address).await {
        Ok(a) => a,
        Err(SignInError::Wrong) => {
            tracing::info!(address = %address, "refused a sign-in on the verification page: wrong user name or password");
            return retry(
                StatusCode::UNAUTHORIZED,
                "The user name or password is incorrect.",
            );
        }
        Err(SignInError::Disabled) => {
            return retry(
                StatusCode::FORBIDDEN,
                "This account is disabled. Ask the hub's operator to enable it (hephd user enable).",
            );
        }
        Err(SignInError::RateLimited(after)) => {
            tracing::warn!(address = %address, "sign-in rate limit reached on the verification page");
            let mut resp = retry(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "Too many sign-in attempts. Wait {} minute(s) and try again.",
                    after.as_secs().div_ceil(60)
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&after.as_secs().to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        Err(SignInError::Unavailable) => {
            return retry(
                StatusCode::SERVICE_UNAVAILABLE,
                "The hub cannot check sign-ins right now; try again shortly.",
            );
        }
    };
    let pending = match state.issuer.pending_code(user_code).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return retry(
                StatusCode::BAD_REQUEST,
                "That code is not valid, or it has expired or was already used. Check the code your device shows, or start the sign-in again there.",
            );
        }
        Err(_) => {
            return retry(
                StatusCode::SERVICE_UNAVAILABLE,
                "The hub cannot read sign-in requests right now; try again shortly.",
            );
        }
    };
    let ticket = state.open_ticket(Ticket {
        sub: account.sub.clone(),
        username: account.username.clone(),
        user_code: pending.user_code.clone(),
        created: Instant::now(),
    });
    let body = format!(
        "<p>Signed in as <strong>{user}</strong>.</p>\
<p>Approve only if this code is the one your own device shows:</p><p class=\"code\">{code}</p>\
<dl><dt>Application</dt><dd><code>{client}</code></dd><dt>It asks to</dt><dd><ul>{scopes}</ul></dd></dl>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        user = escape(&account.username),
        code = escape(&pending.user_code),
        client = escape(&pending.client_id),
        scopes = scope_list(
            &pending.scope,
            state
                .issuer
                .settings
                .sign_in_lifetime
                .as_secs()
                .div_ceil(86_400)
        ),
        action = path::DEVICE_DECISION,
        csrf = escape(&csrf),
        ticket = escape(&ticket),
    );
    page(StatusCode::OK, "Approve this device?", &body, None)
}

async fn device_decision(
    State(state): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match checked_form(&headers, body).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let Some(ticket) = form.get("ticket").and_then(|t| state.take_ticket(t)) else {
        return page(
            StatusCode::BAD_REQUEST,
            "This approval has expired",
            &format!(
                "<p class=\"error\">This approval form was already used or is more than five minutes old.</p><p><a href=\"{}\">Start again</a></p>",
                path::DEVICE_PAGE
            ),
            None,
        );
    };
    let approve = form.get("decision").map(String::as_str) == Some("approve");
    let decided = state
        .issuer
        .decide(&ticket.user_code, approve.then(|| ticket.sub.clone()))
        .await;
    match decided {
        Ok(true) if approve => {
            tracing::info!(sub = %ticket.sub, "a device sign-in was approved on the verification page");
            page(
                StatusCode::OK,
                "Device approved",
                &format!(
                    "<p>The device is now signed in as <strong>{}</strong>. You can close this page and return to it.</p>",
                    escape(&ticket.username)
                ),
                None,
            )
        }
        Ok(true) => page(
            StatusCode::OK,
            "Request denied",
            "<p>The device was not signed in. If you did not start this sign-in, someone else has the code: nothing was granted.</p>",
            None,
        ),
        Ok(false) => page(
            StatusCode::BAD_REQUEST,
            "This code has expired",
            "<p class=\"error\">The code expired or was already decided. Start the sign-in again on your device.</p>",
            None,
        ),
        Err(_) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "<p class=\"error\">The hub cannot record the decision right now; try again shortly.</p>",
            None,
        ),
    }
}

#[derive(serde::Deserialize)]
struct InviteQuery {
    token: Option<String>,
}

fn invite_dead() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "This link has expired",
        "<p class=\"error\">This invitation link was already used or is more than 15 minutes old. Ask the hub's operator for a new one.</p>",
        None,
    )
}

fn invite_form(csrf: &str, token: &str, username: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        "{error}<p>Choose a password for <strong>{user}</strong> on this hub.</p>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"token\" value=\"{token}\">\
<label for=\"password\">New password (8 characters or more)</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"new-password\" required>\
<label for=\"confirm\">The same again</label><input type=\"password\" id=\"confirm\" name=\"confirm\" autocomplete=\"new-password\" required>\
<button type=\"submit\">Set password</button></form>",
        user = escape(username),
        action = path::INVITE_PAGE,
        csrf = escape(csrf),
        token = escape(token),
    )
}

async fn invite_page(
    State(state): State<Arc<PageState>>,
    headers: HeaderMap,
    Query(q): Query<InviteQuery>,
) -> Response {
    let token = q.token.unwrap_or_default();
    match state.issuer.invite(&token).await {
        Ok(Some(username)) => {
            let (csrf, fresh) = csrf_for(&headers);
            page(
                StatusCode::OK,
                "Welcome to this hub",
                &invite_form(&csrf, &token, &username, None),
                fresh.then_some(csrf.as_str()),
            )
        }
        _ => invite_dead(),
    }
}

async fn invite_submit(
    State(state): State<Arc<PageState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let form = match checked_form(&headers, body).await {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let (token, password) = (get("token"), get("password"));
    let Ok(Some(username)) = state.issuer.invite(token).await else {
        return invite_dead();
    };
    if password != get("confirm") {
        return page(
            StatusCode::BAD_REQUEST,
            "Welcome to this hub",
            &invite_form(
                get("csrf"),
                token,
                &username,
                Some("The two passwords differ."),
            ),
            None,
        );
    }
    let redeemed = match state.issuer.redeem_invite(token, password).await {
        Ok(Some(done)) => done,
        Ok(None) => return invite_dead(),
        Err(InviteError::Password(e)) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Welcome to this hub",
                &invite_form(get("csrf"), token, &username, Some(&format!("{e}."))),
                None,
            );
        }
        Err(InviteError::Unavailable) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p class=\"error\">The hub cannot save the password right now; try again shortly.</p>",
                None,
            );
        }
    };
    let sub = redeemed.sub.clone();
    let offered = Role::parse(&redeemed.role).unwrap_or(Role::Writer);
    // A new account gets the invite's role; an existing one (a password
    // reset) keeps whatever role it has.
    let role = if redeemed.created {
        let granted = {
            let sub = sub.clone();
            state
                .db
                .call(move |r| members::set_role(r, &sub, offered))
                .await
        };
        if !matches!(granted, Ok(Ok(_))) {
            tracing::error!(sub = %sub, "an invited account was created but could not be made a member");
        }
        Some(offered)
    } else {
        let sub = sub.clone();
        match state.db.call(move |r| members::membership(r, &sub)).await {
            Ok(Ok(members::Membership::Member(role))) => Some(role),
            _ => None,
        }
    };
    tracing::info!(sub = %sub, created = redeemed.created, "an invitation was redeemed");
    let username = redeemed.username;
    let hub = escape(&state.issuer.settings.issuer);
    page(
        StatusCode::OK,
        "Your account is ready",
        &format!(
            "<p>Your account <strong>{user}</strong> is ready{role}.</p>\
<p>On each of your devices, run:</p><pre>heph auth login --hub-url {hub}</pre>",
            user = escape(&username),
            role = role.map_or_else(String::new, |r| format!(
                " ({} of this hub)",
                r.with_article()
            )),
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn csrf_needs_the_cookie_and_the_field_to_match() {
        let token = random_token(32);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {CSRF_COOKIE}={token}")).unwrap(),
        );
        let form = |v: &str| HashMap::from([("csrf".to_owned(), v.to_owned())]);
        assert!(csrf_ok(&h, &form(&token)));
        assert!(!csrf_ok(&h, &form("x")));
        assert!(!csrf_ok(&HeaderMap::new(), &form(&token)));
        assert!(!csrf_ok(&h, &HashMap::new()));
    }
}
