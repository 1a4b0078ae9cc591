//! A real OpenID provider for the end-to-end tests: `tests/oidc/provider.mjs`
//! (panva's `oidc-provider` on Node) started on a free 127.0.0.1 port, plus a
//! small HTTP/1.1 client that drives the provider's own interaction pages to
//! approve or deny a device code — no browser.
//!
//! Every wait is bounded and panics with a clear message. The provider's keys
//! and state live in a temp dir, so `restart` keeps them and `rotate_keys`
//! adds a new signing key while keeping the old one published.

#![allow(dead_code)] // shared helper: each test module uses a different part of it

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

/// How long a provider may take to print its ready line.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Timeout of every HTTP exchange with the provider or a hub.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for [`OidcProvider::start`].
#[derive(Clone, Debug)]
pub struct OidcOptions {
    /// Access-token lifetime in seconds (`--access-ttl`, default 300).
    pub access_ttl: u64,
    /// Rotate refresh tokens on use (`--rotate-refresh`, default true).
    pub rotate_refresh: bool,
    /// Offer the device flow (default true; false passes `--no-device-flow`).
    pub device_flow: bool,
}

impl Default for OidcOptions {
    fn default() -> Self {
        Self {
            access_ttl: 300,
            rotate_refresh: true,
            device_flow: true,
        }
    }
}

/// The token endpoint's successful answer.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub raw: Value,
}

/// A running `tests/oidc/provider.mjs`; killed when dropped.
pub struct OidcProvider {
    dir: TempDir,
    child: Option<Child>,
    port: u16,
    issuer: String,
    client_id: String,
    audience: String,
    options: OidcOptions,
}

/// `tests/oidc`, where `provider.mjs` and its `node_modules` live.
pub fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

impl OidcProvider {
    /// Starts the provider on a free port with a fresh RS256 key.
    pub fn start(audience: &str, options: OidcOptions) -> Self {
        assert!(
            oidc_dir().join("node_modules/oidc-provider").is_dir(),
            "the test OpenID provider is not installed; run `npm ci --prefix tests/oidc`"
        );
        let mut provider = Self {
            dir: tempfile::tempdir().unwrap(),
            child: None,
            port: 0,
            issuer: String::new(),
            client_id: String::new(),
            audience: audience.to_owned(),
            options,
        };
        provider.spawn();
        provider
    }

    /// The issuer URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public client's id (`heph`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The audience every access token carries.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JWKS file (private keys; the first one signs).
    pub fn keys_file(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    /// The provider's stderr so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the provider; its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it (when running) and starts it again on the same port with the
    /// same keys, grants and refresh tokens.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Adds a new signing key in front of the old one (which stays
    /// published, so tokens it signed still verify) and restarts.
    pub fn rotate_keys(&mut self) {
        let out = Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .arg("--new-key")
            .output()
            .expect("node is not on PATH; the OpenID provider tests need Node.js 20+");
        assert!(out.status.success(), "provider.mjs --new-key failed");
        let key: Value = serde_json::from_slice(first_line(&out.stdout)).unwrap();
        let path = self.keys_file();
        let mut jwks: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        jwks["keys"].as_array_mut().unwrap().insert(0, key);
        std::fs::write(&path, serde_json::to_vec(&jwks).unwrap()).unwrap();
        self.restart();
    }

    /// The `kid` of the key that signs new tokens.
    pub fn signing_kid(&self) -> String {
        let jwks: Value =
            serde_json::from_str(&std::fs::read_to_string(self.keys_file()).unwrap()).unwrap();
        jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("provider.log"))
            .unwrap();
        let mut cmd = Command::new("node");
        cmd.arg(oidc_dir().join("provider.mjs"))
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--audience")
            .arg(&self.audience)
            .arg("--access-ttl")
            .arg(self.options.access_ttl.to_string())
            .arg("--rotate-refresh")
            .arg(self.options.rotate_refresh.to_string())
            .arg("--keys")
            .arg(self.keys_file())
            .arg("--state")
            .arg(self.dir.path().join("state.json"));
        if !self.options.device_flow {
            cmd.arg("--no-device-flow");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("node is not on PATH; the OpenID provider tests need Node.js 20+");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(START_LIMIT) {
            Ok(line) if !line.trim().is_empty() => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the OpenID provider did not print its ready line within {START_LIMIT:?}; its log:\n{}",
                    self.log_text()
                );
            }
        };
        let ready: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("the provider's ready line is not JSON ({e}): {line}"));
        self.port = ready["port"].as_u64().unwrap() as u16;
        self.issuer = ready["issuer"].as_str().unwrap().to_owned();
        self.client_id = ready["client_id"].as_str().unwrap().to_owned();
        self.child = Some(child);
    }

    /// The discovery document.
    pub fn discovery(&self) -> Value {
        let r = http(
            "GET",
            &format!("{}/.well-known/openid-configuration", self.issuer),
            &[],
            None,
        );
        assert_eq!(r.status, 200, "discovery failed: {}", r.text());
        r.json()
    }

    /// Starts a device authorization (`scope` e.g. `openid offline_access`);
    /// returns the endpoint's JSON (`device_code`, `verification_uri_complete`, …).
    pub fn device_authorize(&self, scope: &str) -> Value {
        let r = self.post_form(
            "/device/auth",
            &[("client_id", self.client_id.as_str()), ("scope", scope)],
        );
        assert_eq!(r.status, 200, "device authorization failed: {}", r.text());
        r.json()
    }

    /// POSTs a form to the token endpoint: `(status, JSON body)`.
    pub fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self.post_form("/token", form);
        (r.status, r.json())
    }

    /// Exchanges an approved device code for tokens (panics on an error answer).
    pub fn device_token(&self, device_code: &str) -> Tokens {
        let (status, body) = self.token_request(&[
            ("client_id", self.client_id.as_str()),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ]);
        assert_eq!(status, 200, "device token request failed: {body}");
        Tokens::from_json(body)
    }

    /// Uses a refresh token: `(status, JSON body)`.
    pub fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token_request(&[
            ("client_id", self.client_id.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
    }

    /// The whole device flow for `username`: authorize, approve, exchange.
    pub fn login(&self, username: &str) -> Tokens {
        let auth = self.device_authorize("openid offline_access");
        self.approve(
            auth["verification_uri_complete"].as_str().unwrap(),
            username,
        );
        self.device_token(auth["device_code"].as_str().unwrap())
    }

    /// Approves a device code as `username` through the provider's own pages:
    /// the verification page, the user-code confirmation form, the sign-in
    /// form and the consent form, following redirects with cookies.
    pub fn approve(&self, verification_uri_complete: &str, username: &str) {
        let mut browser = Browser::default();
        let page = self.confirm_user_code(&mut browser, verification_uri_complete, false);
        let form = Form::find(&page.text(), |f| f.contains_key("login")).unwrap_or_else(|| {
            panic!(
                "no sign-in form after confirming the user code:\n{}",
                page.text()
            )
        });
        let mut fields = form.fields.clone();
        fields.insert("login".into(), username.into());
        fields.insert("password".into(), "any".into());
        let page = browser.submit(&form.action, &page.url, &fields);
        let form = Form::find(&page.text(), |f| {
            f.get("prompt").map(String::as_str) == Some("consent")
        })
        .unwrap_or_else(|| panic!("no consent form after signing in:\n{}", page.text()));
        let page = browser.submit(&form.action, &page.url, &form.fields);
        assert!(
            page.status == 200 && page.text().contains("Sign-in Success"),
            "the provider did not confirm the device sign-in (status {}):\n{}",
            page.status,
            page.text()
        );
    }

    /// Denies a device code: the confirmation form's abort button.
    pub fn deny(&self, verification_uri_complete: &str) {
        let mut browser = Browser::default();
        let page = self.confirm_user_code(&mut browser, verification_uri_complete, true);
        assert_eq!(page.status, 200, "aborting failed:\n{}", page.text());
    }

    /// Opens the verification page, submits the auto-post form it answers
    /// with, then submits the confirmation form (confirm or abort).
    fn confirm_user_code(&self, browser: &mut Browser, uri: &str, abort: bool) -> Page {
        let page = browser.get(uri);
        assert_eq!(
            page.status,
            200,
            "verification page failed:\n{}",
            page.text()
        );
        let form = Form::find(&page.text(), |f| f.contains_key("user_code")).unwrap_or_else(|| {
            panic!(
                "no user-code form on the verification page:\n{}",
                page.text()
            )
        });
        let page = browser.submit(&form.action, &page.url, &form.fields);
        let form = Form::find(&page.text(), |f| f.contains_key("confirm"))
            .unwrap_or_else(|| panic!("no confirmation form for the user code:\n{}", page.text()));
        let mut fields = form.fields.clone();
        if abort {
            fields.remove("confirm");
            fields.insert("abort".into(), "yes".into());
        }
        browser.submit(&form.action, &page.url, &fields)
    }

    fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let body = encode_form(form.iter().map(|(k, v)| (*k, *v)));
        http(
            "POST",
            &format!("{}{path}", self.issuer),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(body.as_bytes()),
        )
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Tokens {
    pub fn from_json(raw: Value) -> Self {
        Self {
            access_token: raw["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no access_token in {raw}"))
                .to_owned(),
            refresh_token: raw["refresh_token"].as_str().map(str::to_owned),
            expires_in: raw["expires_in"].as_u64(),
            raw,
        }
    }
}

fn first_line(bytes: &[u8]) -> &[u8] {
    bytes.split(|b| *b == b'\n').next().unwrap_or(bytes)
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client over std TcpStream (http:// on 127.0.0.1 only).

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased; repeated headers keep every value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text()))
    }
}

/// One HTTP/1.1 request (`Connection: close`) to an `http://` URL.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    let (host, path) = split_url(url);
    let mut stream = TcpStream::connect(&host)
        .unwrap_or_else(|e| panic!("cannot connect to {host} for {method} {url}: {e}"));
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        req.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    if let Some(body) = body {
        stream.write_all(body).unwrap();
    }
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading the answer to {method} {url}: {e}"));
    parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "malformed HTTP answer to {method} {url}: {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// `http://host:port/path?q` → (`host:port`, `/path?q`).
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("only http:// URLs are supported here: {url}"));
    match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    }
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// `application/x-www-form-urlencoded`.
pub fn encode_form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A page the browser landed on.
pub struct Page {
    pub url: String,
    pub status: u16,
    /// Header names lowercased, as in [`Response`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Page {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Just enough of a browser: a cookie jar with paths, and redirects.
#[derive(Default)]
pub struct Browser {
    /// (host, path prefix, name) → value.
    cookies: BTreeMap<(String, String, String), String>,
}

impl Browser {
    pub fn get(&mut self, url: &str) -> Page {
        self.request("GET", url.to_owned(), None)
    }

    pub fn submit(&mut self, action: &str, base: &str, fields: &BTreeMap<String, String>) -> Page {
        let url = resolve(base, action);
        let body = encode_form(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.request("POST", url, Some(body))
    }

    fn request(&mut self, method: &str, mut url: String, mut body: Option<String>) -> Page {
        let mut method = method.to_owned();
        for _ in 0..10 {
            let (host, path) = split_url(&url);
            let cookie = self.cookie_header(&host, &path);
            let mut headers = vec![("accept", "text/html")];
            if !cookie.is_empty() {
                headers.push(("cookie", cookie.as_str()));
            }
            if body.is_some() {
                headers.push(("content-type", "application/x-www-form-urlencoded"));
            }
            let r = http(&method, &url, &headers, body.as_deref().map(str::as_bytes));
            for (k, v) in &r.headers {
                if k == "set-cookie" {
                    self.store_cookie(&host, &path, v);
                }
            }
            match (r.status, r.header("location")) {
                (301 | 302 | 303 | 307 | 308, Some(location)) => {
                    url = resolve(&url, location);
                    if r.status != 307 && r.status != 308 {
                        method = "GET".into();
                        body = None;
                    }
                }
                _ => {
                    return Page {
                        url,
                        status: r.status,
                        headers: r.headers,
                        body: r.body,
                    };
                }
            }
        }
        panic!("more than 10 redirects from the provider's pages, last at {url}");
    }

    fn cookie_header(&self, host: &str, path: &str) -> String {
        self.cookies
            .iter()
            .filter(|((h, p, _), _)| h == host && path.starts_with(p.as_str()))
            .map(|((_, _, n), v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn store_cookie(&mut self, host: &str, request_path: &str, header: &str) {
        let mut parts = header.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let mut path = request_path
            .rsplit_once('/')
            .map(|(dir, _)| format!("{dir}/"))
            .unwrap_or_else(|| "/".into());
        let mut expired = value.is_empty();
        for attr in parts {
            let attr = attr.trim();
            if let Some(p) = attr
                .strip_prefix("path=")
                .or_else(|| attr.strip_prefix("Path="))
            {
                path = p.to_owned();
            }
            if attr
                .to_ascii_lowercase()
                .starts_with("expires=thu, 01 jan 1970")
            {
                expired = true;
            }
        }
        let key = (host.to_owned(), path, name.trim().to_owned());
        if expired {
            self.cookies.remove(&key);
        } else {
            self.cookies.insert(key, value.trim().to_owned());
        }
    }
}

/// Resolves `location` (absolute URL or absolute path) against `base`.
fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        let (host, _) = split_url(base);
        format!("http://{host}{location}")
    }
}

/// An HTML form: its action and every named input's value.
#[derive(Clone, Debug)]
pub struct Form {
    pub action: String,
    pub fields: BTreeMap<String, String>,
}

impl Form {
    /// The first form on `html` whose fields satisfy `wanted`.
    pub fn find(html: &str, wanted: impl Fn(&BTreeMap<String, String>) -> bool) -> Option<Form> {
        let mut rest = html;
        while let Some(start) = rest.find("<form") {
            let after = &rest[start..];
            let end = after.find("</form>").unwrap_or(after.len());
            let form_html = &after[..end];
            let tag_end = form_html.find('>')?;
            let action = attr(&form_html[..tag_end], "action")?;
            let mut fields = BTreeMap::new();
            let mut inputs = form_html;
            while let Some(i) = inputs.find("<input") {
                let input = &inputs[i..];
                let close = input.find('>').unwrap_or(input.len());
                let tag = &input[..close];
                if let Some(name) = attr(tag, "name") {
                    fields.insert(name, attr(tag, "value").unwrap_or_default());
                }
                inputs = &input[close..];
            }
            if wanted(&fields) {
                return Some(Form {
                    action: unescape(&action),
                    fields,
                });
            }
            rest = &after[end..];
        }
        None
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let i = tag.find(&needle)? + needle.len();
    let j = tag[i..].find('"')?;
    Some(unescape(&tag[i..i + j]))
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// The decoded header and claims of a compact JWS (no verification: the
/// hub's tests verify; these only look inside the provider's tokens).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let part = parts
            .next()
            .unwrap_or_else(|| panic!("not a JWT: {} parts", token.split('.').count()));
        serde_json::from_slice::<Value>(&base64url_decode(part)).unwrap()
    };
    (next(), next())
}

/// Decodes unpadded base64url.
pub fn base64url_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url: {s}"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | value(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// The provider itself, over plain HTTP: the device flow, refresh rotation,
/// denial, restart and key rotation behave as the other tests assume.
mod provider_tests {
    use super::*;

    const AUD: &str = "https://hub.test.invalid";

    #[test]
    fn device_flow_issues_jwt_access_token_for_audience_and_rotating_refresh_token() {
        let idp = OidcProvider::start(AUD, OidcOptions::default());
        let auth = idp.device_authorize("openid offline_access");
        let device_code = auth["device_code"].as_str().unwrap();
        assert!(auth["interval"].as_u64().unwrap_or(5) >= 1);

        // Before approval the token endpoint says to keep waiting.
        let (status, body) = idp.token_request(&[
            ("client_id", "heph"),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ]);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("authorization_pending"))
        );

        idp.approve(auth["verification_uri_complete"].as_str().unwrap(), "alice");
        let tokens = idp.device_token(device_code);
        let (header, claims) = jwt_parts(&tokens.access_token);
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"].as_str().unwrap(), idp.signing_kid());
        assert_eq!(claims["iss"], idp.issuer());
        assert_eq!(claims["sub"], "alice");
        assert!(
            claims["aud"] == AUD
                || claims["aud"]
                    .as_array()
                    .is_some_and(|a| a.contains(&AUD.into())),
            "aud is {}",
            claims["aud"]
        );
        let ttl = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(ttl, 300);

        let refresh = tokens
            .refresh_token
            .clone()
            .expect("no refresh token for offline_access");
        let (status, body) = idp.refresh(&refresh);
        assert_eq!(status, 200, "{body}");
        let rotated = Tokens::from_json(body);
        let new_refresh = rotated.refresh_token.clone().unwrap();
        assert_ne!(new_refresh, refresh, "the refresh token did not rotate");
        assert_eq!(jwt_parts(&rotated.access_token).1["sub"], "alice");

        // The rotated-away refresh token is dead (reuse detection revokes the grant).
        let (status, body) = idp.refresh(&refresh);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );

        // Revocation (RFC 7009) is offered.
        assert!(idp.discovery()["revocation_endpoint"].is_string());
    }

    #[test]
    fn denied_device_code_answers_access_denied() {
        let idp = OidcProvider::start(AUD, OidcOptions::default());
        let auth = idp.device_authorize("openid offline_access");
        idp.deny(auth["verification_uri_complete"].as_str().unwrap());
        let (status, body) = idp.token_request(&[
            ("client_id", "heph"),
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", auth["device_code"].as_str().unwrap()),
        ]);
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("access_denied"))
        );
    }

    #[test]
    fn without_rotation_the_refresh_token_is_kept_and_the_ttl_is_honoured() {
        let idp = OidcProvider::start(
            "heph-hub",
            OidcOptions {
                access_ttl: 30,
                rotate_refresh: false,
                ..OidcOptions::default()
            },
        );
        let tokens = idp.login("bob");
        let claims = jwt_parts(&tokens.access_token).1;
        assert_eq!(claims["aud"], "heph-hub");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            30
        );
        let refresh = tokens.refresh_token.unwrap();
        let (status, body) = idp.refresh(&refresh);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["refresh_token"].as_str().unwrap_or(&refresh), refresh);
        let (status, _) = idp.refresh(&refresh);
        assert_eq!(status, 200, "an unrotated refresh token works again");
    }

    #[test]
    fn restart_keeps_port_keys_and_refresh_tokens_and_rotate_keys_adds_a_signing_key() {
        let mut idp = OidcProvider::start(AUD, OidcOptions::default());
        let issuer = idp.issuer().to_owned();
        let old_kid = idp.signing_kid();
        let tokens = idp.login("carol");

        idp.stop();
        let refused = TcpStream::connect(("127.0.0.1", idp.port()));
        assert!(
            refused.is_err(),
            "a stopped provider still accepts connections"
        );
        idp.restart();
        assert_eq!(idp.issuer(), issuer);
        let (status, body) = idp.refresh(tokens.refresh_token.as_deref().unwrap());
        assert_eq!(
            status, 200,
            "a refresh token did not survive a restart: {body}"
        );
        assert_eq!(
            jwt_parts(body["access_token"].as_str().unwrap()).0["kid"],
            old_kid.as_str()
        );

        idp.rotate_keys();
        assert_eq!(idp.issuer(), issuer);
        let new_kid = idp.signing_kid();
        assert_ne!(new_kid, old_kid);
        let jwks = http("GET", &format!("{issuer}/jwks"), &[], None).json();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [new_kid.as_str(), old_kid.as_str()]);
        assert!(
            jwks["keys"][0].get("d").is_none(),
            "the JWKS leaks a private key"
        );
        let tokens = idp.login("carol");
        assert_eq!(jwt_parts(&tokens.access_token).0["kid"], new_kid.as_str());
    }

    #[test]
    fn no_device_flow_option_removes_the_device_endpoint() {
        let idp = OidcProvider::start(
            AUD,
            OidcOptions {
                device_flow: false,
                ..OidcOptions::default()
            },
        );
        let discovery = idp.discovery();
        assert!(discovery["token_endpoint"].is_string());
        assert!(discovery.get("device_authorization_endpoint").is_none());
    }
}

/// A scripted HTTP server on 127.0.0.1 that plays a hostile hub and
/// provider: each path (query ignored) answers the JSON last set for it,
/// with `{base}` replaced by the server's own URL; other paths get 404.
/// Every requested path is recorded.
pub struct ScriptedHttp {
    base: String,
    routes: std::sync::Arc<std::sync::Mutex<Routes>>,
}

/// Each path's (status, body), and every path requested.
type Routes = (BTreeMap<String, (u16, String)>, Vec<String>);

impl ScriptedHttp {
    pub fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: std::sync::Arc<std::sync::Mutex<Routes>> = Default::default();
        let (shared, own) = (routes.clone(), base.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let path = target.split('?').next().unwrap_or("").to_owned();
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
                let (status, text) = {
                    let mut s = shared.lock().unwrap();
                    s.1.push(path.clone());
                    s.0.get(&path)
                        .cloned()
                        .unwrap_or((404, r#"{"error":"not_found"}"#.into()))
                };
                let text = text.replace("{base}", &own);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        Self { base, routes }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Answers `path` with `status` and `body` from now on.
    pub fn set(&self, path: &str, status: u16, body: &Value) {
        self.routes
            .lock()
            .unwrap()
            .0
            .insert(path.to_owned(), (status, body.to_string()));
    }

    /// How many requests `path` has had.
    pub fn hits(&self, path: &str) -> usize {
        self.routes
            .lock()
            .unwrap()
            .1
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}
