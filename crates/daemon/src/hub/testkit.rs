//! Test support (the `testkit` feature, and this crate's own tests): signing
//! keys and a fake OpenID provider that serves a discovery document and a
//! JWKS on 127.0.0.1, counts the fetches, and can answer badly on purpose
//! (HTML, 50 MB, errors) or go away. It is deliberately a tiny raw HTTP/1.1
//! server so a test controls every byte. Never used by the daemon itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RSA_A: &str = include_str!("testkeys/rsa_a.pem");
const RSA_A_PUB: &str = include_str!("testkeys/rsa_a.pub.pem");
const RSA_B: &str = include_str!("testkeys/rsa_b.pem");
const EC_P256: &str = include_str!("testkeys/ec_p256.pem");
const ED25519: &str = include_str!("testkeys/ed25519.pem");
// jsonwebtoken derives public JWKs for RSA keys only; these were derived
// from the PEMs above with openssl.
const EC_P256_JWK: &str = include_str!("testkeys/ec_p256.pub.jwk.json");
const ED25519_JWK: &str = include_str!("testkeys/ed25519.pub.jwk.json");

/// A private signing key with its public JWK.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    fn build(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let jwk = Jwk::from_encoding_key(&encoding, alg).expect("test key converts to a JWK");
        Self::with_jwk(kid, alg, encoding, serde_json::to_value(jwk).unwrap())
    }

    fn with_jwk(kid: &str, alg: Algorithm, encoding: EncodingKey, mut jwk: Value) -> Self {
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk,
        }
    }

    /// RSA key A (RS256).
    pub fn rsa_a(kid: &str) -> Self {
        Self::build(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_A.as_bytes()).unwrap(),
        )
    }

    /// RSA key B (RS256), a different key.
    pub fn rsa_b(kid: &str) -> Self {
        Self::build(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_B.as_bytes()).unwrap(),
        )
    }

    /// RSA key A used with PS256.
    pub fn rsa_a_pss(kid: &str) -> Self {
        Self::build(
            kid,
            Algorithm::PS256,
            EncodingKey::from_rsa_pem(RSA_A.as_bytes()).unwrap(),
        )
    }

    pub fn ec_p256(kid: &str) -> Self {
        let mut jwk: Value = serde_json::from_str(EC_P256_JWK).unwrap();
        jwk["alg"] = json!("ES256");
        let key = EncodingKey::from_ec_pem(EC_P256.as_bytes()).unwrap();
        Self::with_jwk(kid, Algorithm::ES256, key, jwk)
    }

    pub fn ed25519(kid: &str) -> Self {
        let mut jwk: Value = serde_json::from_str(ED25519_JWK).unwrap();
        jwk["alg"] = json!("EdDSA");
        let key = EncodingKey::from_ed_pem(ED25519.as_bytes()).unwrap();
        Self::with_jwk(kid, Algorithm::EdDSA, key, jwk)
    }

    /// The PEM text of RSA key A's public half (what an HS256 confusion
    /// attack would use as the HMAC secret).
    pub fn rsa_a_public_pem() -> &'static str {
        RSA_A_PUB
    }

    /// A compact JWS of `claims` with this key's `alg` and `kid`, typed as
    /// an access token (`typ: at+jwt`, RFC 9068) as real providers do.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(Some("at+jwt")), claims)
    }

    /// This key's header with `typ` set to `typ` (or left out).
    pub fn header(&self, typ: Option<&str>) -> Header {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        header.typ = typ.map(str::to_owned);
        header
    }

    /// A compact JWS with a caller-made header.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// How the fake provider answers the JWKS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksAnswer {
    /// The JWKS as JSON, with an optional Cache-Control value.
    Json { cache_control: Option<String> },
    /// An HTML error page with status 200.
    Html,
    /// `n` bytes of JSON-looking junk, chunked (no Content-Length).
    Huge(usize),
    /// This HTTP status.
    Status(u16),
    /// Accept the request and never answer (until the connection is dropped).
    Hang,
}

struct IdpState {
    issuer: String,
    keys: Mutex<Vec<Value>>,
    answer: Mutex<JwksAnswer>,
    discovery_hits: AtomicU64,
    jwks_hits: AtomicU64,
    /// Requests whose path is neither discovery nor JWKS (e.g. a `jku` target).
    other_hits: AtomicU64,
    /// What discovery says instead of the truth: its `issuer`, its `jwks_uri`.
    discovery_issuer: Mutex<Option<String>>,
    discovery_jwks_uri: Mutex<Option<String>>,
}

/// A fake OpenID provider on 127.0.0.1: discovery and JWKS only.
pub struct FakeIdp {
    state: Arc<IdpState>,
    task: Option<tokio::task::JoinHandle<()>>,
    port: u16,
}

impl FakeIdp {
    /// Starts it with these public keys (in this order).
    pub async fn start(keys: &[&TestKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(IdpState {
            issuer: format!("http://127.0.0.1:{port}"),
            keys: Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()),
            answer: Mutex::new(JwksAnswer::Json {
                cache_control: None,
            }),
            discovery_hits: AtomicU64::new(0),
            jwks_hits: AtomicU64::new(0),
            other_hits: AtomicU64::new(0),
            discovery_issuer: Mutex::new(None),
            discovery_jwks_uri: Mutex::new(None),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        Self {
            state,
            task: Some(task),
            port,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Replaces the published keys.
    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// Replaces the published JWKS entries with raw JSON values.
    pub fn set_raw_keys(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    /// Makes discovery name this `issuer` (None: its own URL).
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        *self.state.discovery_issuer.lock().unwrap() = issuer.map(str::to_owned);
    }

    /// Makes discovery name this `jwks_uri` (None: its own `/jwks`).
    pub fn set_discovery_jwks_uri(&self, uri: Option<&str>) {
        *self.state.discovery_jwks_uri.lock().unwrap() = uri.map(str::to_owned);
    }

    pub fn set_answer(&self, answer: JwksAnswer) {
        *self.state.answer.lock().unwrap() = answer;
    }

    /// JWKS requests served so far.
    pub fn jwks_hits(&self) -> u64 {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    pub fn discovery_hits(&self) -> u64 {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    /// Requests to any other path (a `jku`/`x5u` target must see none).
    pub fn other_hits(&self) -> u64 {
        self.state.other_hits.load(Ordering::SeqCst)
    }

    /// Stops listening: connections to its port are refused.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port with the same state.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.task = Some(tokio::spawn(serve(listener, self.state.clone())));
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, state: Arc<IdpState>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if buf.len() > 64 * 1024 {
                    return;
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            let (status, ctype, extra, body): (u16, &str, String, Vec<u8>) = match path.as_str() {
                "/.well-known/openid-configuration" => {
                    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
                    let issuer = state.discovery_issuer.lock().unwrap().clone();
                    let jwks_uri = state.discovery_jwks_uri.lock().unwrap().clone();
                    let doc = json!({
                        "issuer": issuer.unwrap_or_else(|| state.issuer.clone()),
                        "jwks_uri": jwks_uri.unwrap_or_else(|| format!("{}/jwks", state.issuer)),
                        "token_endpoint": format!("{}/token", state.issuer),
                    });
                    (
                        200,
                        "application/json",
                        String::new(),
                        serde_json::to_vec(&doc).unwrap(),
                    )
                }
                "/jwks" => {
                    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
                    let answer = state.answer.lock().unwrap().clone();
                    match answer {
                        JwksAnswer::Json { cache_control } => {
                            let keys = state.keys.lock().unwrap().clone();
                            let extra = cache_control
                                .map(|c| format!("cache-control: {c}\r\n"))
                                .unwrap_or_default();
                            (
                                200,
                                "application/json",
                                extra,
                                serde_json::to_vec(&json!({"keys": keys})).unwrap(),
                            )
                        }
                        JwksAnswer::Html => (
                            200,
                            "text/html",
                            String::new(),
                            b"<html><body>Sign in to continue</body></html>".to_vec(),
                        ),
                        JwksAnswer::Status(s) => {
                            (s, "text/plain", String::new(), b"unavailable".to_vec())
                        }
                        JwksAnswer::Hang => {
                            std::future::pending::<()>().await;
                            return;
                        }
                        JwksAnswer::Huge(n) => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
                                .await;
                            let block = vec![b' '; 1024 * 1024];
                            let mut sent = 0;
                            while sent < n {
                                let len = block.len().min(n - sent);
                                let frame = format!("{len:x}\r\n");
                                if stream.write_all(frame.as_bytes()).await.is_err()
                                    || stream.write_all(&block[..len]).await.is_err()
                                    || stream.write_all(b"\r\n").await.is_err()
                                {
                                    return;
                                }
                                sent += len;
                            }
                            let _ = stream.write_all(b"0\r\n\r\n").await;
                            return;
                        }
                    }
                }
                _ => {
                    state.other_hits.fetch_add(1, Ordering::SeqCst);
                    (404, "text/plain", String::new(), b"not found".to_vec())
                }
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        });
    }
}
