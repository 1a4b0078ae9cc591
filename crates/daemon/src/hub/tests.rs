//! Bearer verification against a fake provider with our own keys: every
//! adversarial token of issue 6 as its own test, the JWKS cache rules with a
//! hand-moved clock, and the HTTP status mapping through the real router.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::bearer::{OidcSettings, Rejection, Verdict, Verifier};
use super::jwks::{JwksPolicy, KeySource};
use super::testkit::{FakeIdp, JwksAnswer, TestKey, now_secs};

const AUD: &str = "https://hub.test.invalid";

/// A verifier on a fake provider, with a clock the test moves.
struct Fixture {
    idp: FakeIdp,
    verifier: Verifier,
    offset_ms: Arc<AtomicU64>,
}

impl Fixture {
    async fn new(keys: &[&TestKey]) -> Self {
        let idp = FakeIdp::start(keys).await;
        let offset_ms = Arc::new(AtomicU64::new(0));
        let base = Instant::now();
        let off = offset_ms.clone();
        let now = Arc::new(move || base + Duration::from_millis(off.load(Ordering::SeqCst)));
        let keys = KeySource::with_clock(idp.issuer(), JwksPolicy::default(), now).unwrap();
        let verifier = Verifier::with_keys(
            OidcSettings {
                issuer: idp.issuer().to_owned(),
                audience: AUD.into(),
                client_id: "heph".into(),
                scopes: vec!["openid".into(), "offline_access".into()],
            },
            keys,
        );
        Self {
            idp,
            verifier,
            offset_ms,
        }
    }

    fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }

    fn claims(&self) -> Value {
        let now = now_secs();
        json!({"iss": self.idp.issuer(), "aud": AUD, "sub": "alice", "iat": now, "exp": now + 300})
    }

    async fn check(&self, token: &str) -> Verdict {
        let header = format!("Bearer {token}");
        self.verifier.verify(Some(header.as_bytes()), None).await
    }
}

fn valid(sub: &str) -> Verdict {
    Verdict::Valid { sub: sub.into() }
}

fn invalid(r: Rejection) -> Verdict {
    Verdict::Invalid(r)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().unwrap().remove(key);
    } else {
        claims[key] = value;
    }
    claims
}

#[tokio::test]
async fn every_accepted_algorithm_verifies_with_its_jwk() {
    let keys = [
        TestKey::rsa_a("rs"),
        TestKey::rsa_b("ps").clone(),
        TestKey::ec_p256("es"),
        TestKey::ed25519("ed"),
    ];
    // "ps": RSA key B published for PS256.
    let mut ps = TestKey::rsa_b("ps");
    ps.alg = Algorithm::PS256;
    ps.jwk["alg"] = json!("PS256");
    let f = Fixture::new(&[&keys[0], &ps, &keys[2], &keys[3]]).await;
    for key in [&keys[0], &ps, &keys[2], &keys[3]] {
        assert_eq!(
            f.check(&key.sign(&f.claims())).await,
            valid("alice"),
            "{:?}",
            key.alg
        );
    }
    assert_eq!(f.idp.jwks_hits(), 1, "the JWKS is fetched once and cached");
}

#[tokio::test]
async fn alg_none_is_refused_before_any_key_lookup() {
    let f = Fixture::new(&[&TestKey::rsa_a("a")]).await;
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let header = b64(&json!({"alg": "none", "kid": "a", "typ": "JWT"}));
    let body = b64(&f.claims());
    for token in [format!("{header}.{body}."), format!("{header}.{body}.c2ln")] {
        let v = f.check(&token).await;
        assert!(
            matches!(v, Verdict::Invalid(Rejection::Algorithm(ref a)) if a == "none")
                || v == invalid(Rejection::Malformed("it is unsigned")),
            "{v:?}"
        );
    }
    assert_eq!(f.idp.jwks_hits(), 0);
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let f = Fixture::new(&[&TestKey::rsa_a("a")]).await;
    let secret = EncodingKey::from_secret(TestKey::rsa_a_public_pem().as_bytes());
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("a".into());
    let token = jsonwebtoken::encode(&header, &f.claims(), &secret).unwrap();
    assert_eq!(
        f.check(&token).await,
        invalid(Rejection::Algorithm("HS256".into()))
    );
    // Also with another public value (the issuer URL) as the secret.
    let n = f.verifier.settings.issuer.clone();
    let secret = EncodingKey::from_secret(n.as_bytes());
    let token = jsonwebtoken::encode(&header, &f.claims(), &secret).unwrap();
    assert_eq!(
        f.check(&token).await,
        invalid(Rejection::Algorithm("HS256".into()))
    );
}

#[tokio::test]
async fn a_header_algorithm_other_than_the_jwks_is_refused() {
    let f = Fixture::new(&[&TestKey::rsa_a("a")]).await;
    // Same RSA key, but PS256 while the JWK says RS256.
    let token = TestKey::rsa_a_pss("a").sign(&f.claims());
    assert_eq!(
        f.check(&token).await,
        invalid(Rejection::AlgorithmMismatch {
            header: "PS256".into()
        })
    );
}

#[tokio::test]
async fn wrong_issuer_is_refused_and_one_trailing_slash_is_tolerated() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    let iss = f.idp.issuer().to_owned();
    let t = key.sign(&with(f.claims(), "iss", json!("https://evil.example")));
    assert!(matches!(
        f.check(&t).await,
        Verdict::Invalid(Rejection::WrongIssuer(_))
    ));
    let t = key.sign(&with(f.claims(), "iss", json!(format!("{iss}/"))));
    assert_eq!(f.check(&t).await, valid("alice"));
    let t = key.sign(&with(f.claims(), "iss", json!(format!("{iss}//"))));
    assert!(matches!(
        f.check(&t).await,
        Verdict::Invalid(Rejection::WrongIssuer(_))
    ));
    let t = key.sign(&with(f.claims(), "iss", json!(format!("{iss}/x"))));
    assert!(matches!(
        f.check(&t).await,
        Verdict::Invalid(Rejection::WrongIssuer(_))
    ));
}

#[tokio::test]
async fn wrong_audience_is_refused_and_an_audience_list_containing_it_is_accepted() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    let t = key.sign(&with(f.claims(), "aud", json!("https://other.example")));
    assert_eq!(
        f.check(&t).await,
        invalid(Rejection::WrongAudience(AUD.into()))
    );
    let t = key.sign(&with(f.claims(), "aud", json!(["account", AUD])));
    assert_eq!(f.check(&t).await, valid("alice"));
    let t = key.sign(&with(f.claims(), "aud", json!(["account"])));
    assert_eq!(
        f.check(&t).await,
        invalid(Rejection::WrongAudience(AUD.into()))
    );
}

#[tokio::test]
async fn missing_exp_is_refused() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    let t = key.sign(&with(f.claims(), "exp", Value::Null));
    assert_eq!(
        f.check(&t).await,
        invalid(Rejection::MissingClaim("exp".into()))
    );
}

#[tokio::test]
async fn missing_sub_is_refused() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    let t = key.sign(&with(f.claims(), "sub", Value::Null));
    assert_eq!(
        f.check(&t).await,
        invalid(Rejection::MissingClaim("sub".into()))
    );
    let t = key.sign(&with(f.claims(), "sub", json!("")));
    assert_eq!(
        f.check(&t).await,
        invalid(Rejection::BadClaim("sub".into()))
    );
    let t = key.sign(&with(f.claims(), "sub", json!(42)));
    assert!(matches!(f.check(&t).await, Verdict::Invalid(_)));
}

#[tokio::test]
async fn missing_aud_is_refused() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    let t = key.sign(&with(f.claims(), "aud", Value::Null));
    assert_eq!(
        f.check(&t).await,
        invalid(Rejection::MissingClaim("aud".into()))
    );
}

#[tokio::test]
async fn expired_beyond_leeway_is_refused_and_within_leeway_accepted() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    let now = now_secs();
    let t = key.sign(&with(f.claims(), "exp", json!(now - 90)));
    assert_eq!(f.check(&t).await, invalid(Rejection::Expired));
    let t = key.sign(&with(f.claims(), "exp", json!(now - 30)));
    assert_eq!(f.check(&t).await, valid("alice"));
}

#[tokio::test]
async fn nbf_in_the_future_is_refused_beyond_leeway() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    let now = now_secs();
    let t = key.sign(&with(f.claims(), "nbf", json!(now + 600)));
    assert_eq!(f.check(&t).await, invalid(Rejection::NotYetValid));
    let t = key.sign(&with(f.claims(), "nbf", json!(now + 20)));
    assert_eq!(f.check(&t).await, valid("alice"));
}

#[tokio::test]
async fn unknown_kid_triggers_one_refetch_so_rotation_needs_no_restart() {
    let a = TestKey::rsa_a("a");
    let b = TestKey::rsa_b("b");
    let f = Fixture::new(&[&a]).await;
    assert_eq!(f.check(&a.sign(&f.claims())).await, valid("alice"));
    assert_eq!(f.idp.jwks_hits(), 1);
    f.idp.set_keys(&[&b, &a]);
    assert_eq!(f.check(&b.sign(&f.claims())).await, valid("alice"));
    assert_eq!(f.idp.jwks_hits(), 2, "exactly one refetch for the new kid");
    assert_eq!(f.check(&a.sign(&f.claims())).await, valid("alice"));
    assert_eq!(f.check(&b.sign(&f.claims())).await, valid("alice"));
    assert_eq!(f.idp.jwks_hits(), 2);
}

#[tokio::test]
async fn a_flood_of_random_kids_fetches_at_most_once_per_cooldown() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    assert_eq!(f.check(&a.sign(&f.claims())).await, valid("alice"));
    let warm = f.idp.jwks_hits();
    for i in 0..300 {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(format!("random-{i}"));
        let t = a.sign_with(header, &f.claims());
        assert_eq!(f.check(&t).await, invalid(Rejection::UnknownKey));
    }
    assert_eq!(f.idp.jwks_hits(), warm + 1, "one refetch per cooldown");
    f.advance(Duration::from_secs(31));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("random-after-cooldown".into());
    assert_eq!(
        f.check(&a.sign_with(header, &f.claims())).await,
        invalid(Rejection::UnknownKey)
    );
    assert_eq!(f.idp.jwks_hits(), warm + 2);
    // The real key still works throughout.
    assert_eq!(f.check(&a.sign(&f.claims())).await, valid("alice"));
}

#[tokio::test]
async fn jku_x5u_and_embedded_jwk_headers_are_ignored() {
    let a = TestKey::rsa_a("a");
    let attacker = TestKey::rsa_b("a");
    let f = Fixture::new(&[&a]).await;
    let elsewhere = format!("{}/attacker/jwks", f.idp.issuer());
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("a".into());
    header.jku = Some(elsewhere.clone());
    header.x5u = Some(elsewhere.clone());
    header.jwk = Some(serde_json::from_value(attacker.jwk.clone()).unwrap());
    let t = attacker.sign_with(header.clone(), &f.claims());
    assert_eq!(f.check(&t).await, invalid(Rejection::BadSignature));
    header.kid = Some("attacker".into());
    let t = attacker.sign_with(header, &f.claims());
    assert_eq!(f.check(&t).await, invalid(Rejection::UnknownKey));
    assert_eq!(
        f.idp.other_hits(),
        0,
        "the hub fetched a URL named in a token header"
    );
}

#[tokio::test]
async fn truncated_tokens_are_refused() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    let t = a.sign(&f.claims());
    assert_eq!(
        f.check(&t[..t.len() - 10]).await,
        invalid(Rejection::BadSignature)
    );
    let two = t.rsplit_once('.').unwrap().0;
    assert_eq!(
        f.check(two).await,
        invalid(Rejection::Malformed("a JWT has three dot-separated parts"))
    );
    let cut_claims = {
        let mut p: Vec<&str> = t.split('.').collect();
        p[1] = &p[1][..p[1].len() / 2];
        p.join(".")
    };
    assert!(matches!(f.check(&cut_claims).await, Verdict::Invalid(_)));
}

#[tokio::test]
async fn non_base64_tokens_are_refused() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    let t = a.sign(&f.claims()).replacen('.', "!.", 1);
    assert_eq!(
        f.check(&t).await,
        invalid(Rejection::Malformed("it is not base64url"))
    );
    assert_eq!(f.idp.jwks_hits(), 0);
}

#[tokio::test]
async fn a_huge_header_is_refused_before_decoding() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("a".repeat(20_000));
    let t = a.sign_with(header, &f.claims());
    assert_eq!(f.check(&t).await, invalid(Rejection::TooLarge));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k".repeat(1000));
    let t = a.sign_with(header, &f.claims());
    assert_eq!(
        f.check(&t).await,
        invalid(Rejection::Malformed("its kid is not a short string"))
    );
    assert_eq!(f.idp.jwks_hits(), 0);
}

#[tokio::test]
async fn a_token_in_the_query_string_is_refused() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    let t = a.sign(&f.claims());
    let query = format!("after=0&access_token={t}");
    assert_eq!(
        f.verifier.verify(None, Some(&query)).await,
        invalid(Rejection::InQuery)
    );
    let header = format!("Bearer {t}");
    assert_eq!(
        f.verifier
            .verify(Some(header.as_bytes()), Some(&query))
            .await,
        invalid(Rejection::InQuery)
    );
}

#[tokio::test]
async fn an_opaque_token_gets_a_message_pointing_to_the_operations_guide() {
    let f = Fixture::new(&[&TestKey::rsa_a("a")]).await;
    let v = f.check("2YotnFZFEjr1zCsicMWpAA").await;
    assert_eq!(v, invalid(Rejection::Opaque));
    assert!(Rejection::Opaque.to_string().contains("docs/operations.md"));
}

#[tokio::test]
async fn a_jwks_answering_html_makes_tokens_unverifiable_not_valid() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    f.idp.set_answer(JwksAnswer::Html);
    match f.check(&a.sign(&f.claims())).await {
        Verdict::Unavailable {
            reason,
            retry_after,
        } => {
            assert!(reason.contains("did not answer JSON"), "{reason}");
            assert!(retry_after >= Duration::from_secs(1));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_50_mb_jwks_is_cut_off() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    f.idp.set_answer(JwksAnswer::Huge(50 * 1024 * 1024));
    match f.check(&a.sign(&f.claims())).await {
        Verdict::Unavailable { reason, .. } => {
            assert!(reason.contains("more than 512 KiB"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_jwks_without_usable_keys_or_with_an_error_status_is_unavailable() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    f.idp.set_raw_keys(vec![
        json!({"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"a"}),
    ]);
    match f.check(&a.sign(&f.claims())).await {
        Verdict::Unavailable { reason, .. } => {
            assert!(reason.contains("no usable signing key"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    f.idp.set_answer(JwksAnswer::Status(500));
    f.advance(Duration::from_secs(6));
    match f.check(&a.sign(&f.claims())).await {
        Verdict::Unavailable { reason, .. } => assert!(reason.contains("HTTP 500"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn provider_down_at_start_is_unavailable_then_recovers_after_the_back_off() {
    let a = TestKey::rsa_a("a");
    let mut f = Fixture::new(&[&a]).await;
    f.idp.stop().await;
    let t = a.sign(&f.claims());
    match f.check(&t).await {
        Verdict::Unavailable { reason, .. } => {
            assert!(reason.contains("cannot reach"), "{reason}");
            assert!(reason.contains(f.idp.issuer()), "names the URL: {reason}");
        }
        other => panic!("{other:?}"),
    }
    f.idp.restart().await;
    // Within the failure back-off the hub does not retry.
    assert!(matches!(f.check(&t).await, Verdict::Unavailable { .. }));
    assert_eq!(f.idp.discovery_hits(), 0);
    f.advance(Duration::from_secs(6));
    assert_eq!(f.check(&t).await, valid("alice"));
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_provider_is_down() {
    let a = TestKey::rsa_a("a");
    let b = TestKey::rsa_b("b");
    let mut f = Fixture::new(&[&a]).await;
    f.idp.set_answer(JwksAnswer::Json {
        cache_control: Some("public, max-age=60".into()),
    });
    assert_eq!(f.check(&a.sign(&f.claims())).await, valid("alice"));
    f.idp.stop().await;
    f.advance(Duration::from_secs(120)); // the cache is stale now
    assert_eq!(f.check(&a.sign(&f.claims())).await, valid("alice"));
    // A kid the hub never saw cannot be checked: 503, not 401.
    assert!(matches!(
        f.check(&b.sign(&f.claims())).await,
        Verdict::Unavailable { .. }
    ));
    assert_eq!(f.check(&a.sign(&f.claims())).await, valid("alice"));
}

#[tokio::test]
async fn a_slow_refresh_of_a_stale_cache_holds_up_only_the_request_that_fetches() {
    let a = TestKey::rsa_a("a");
    let f = Arc::new(Fixture::new(&[&a]).await);
    f.idp.set_answer(JwksAnswer::Json {
        cache_control: Some("max-age=60".into()),
    });
    let t = a.sign(&f.claims());
    assert_eq!(f.check(&t).await, valid("alice"));
    f.advance(Duration::from_secs(120));
    f.idp.set_answer(JwksAnswer::Hang);
    let first = {
        let (f, t) = (f.clone(), t.clone());
        tokio::spawn(async move { f.check(&t).await })
    };
    // Bounded wait until the first request's refresh reached the provider.
    let start = Instant::now();
    while f.idp.jwks_hits() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the refresh never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        f.check(&t).await,
        valid("alice"),
        "served from the stale cache"
    );
    assert!(
        !first.is_finished(),
        "the second request waited for the hanging fetch"
    );
    assert_eq!(
        first.await.unwrap(),
        valid("alice"),
        "the fetcher falls back to the last good keys"
    );
}

#[tokio::test]
async fn cache_control_max_age_is_honoured_within_bounds() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    f.idp.set_answer(JwksAnswer::Json {
        cache_control: Some("max-age=600".into()),
    });
    let t = a.sign(&f.claims());
    assert_eq!(f.check(&t).await, valid("alice"));
    f.advance(Duration::from_secs(300));
    assert_eq!(f.check(&t).await, valid("alice"));
    assert_eq!(f.idp.jwks_hits(), 1);
    f.advance(Duration::from_secs(301));
    assert_eq!(f.check(&t).await, valid("alice"));
    assert_eq!(f.idp.jwks_hits(), 2, "refetched after max-age");
    // max-age=0 is raised to the 60 s floor: no fetch per request.
    f.idp.set_answer(JwksAnswer::Json {
        cache_control: Some("no-store".into()),
    });
    f.advance(Duration::from_secs(601));
    assert_eq!(f.check(&t).await, valid("alice"));
    for _ in 0..20 {
        assert_eq!(f.check(&t).await, valid("alice"));
    }
    assert_eq!(f.idp.jwks_hits(), 3);
}

// ---------------------------------------------------------------------------
// Through the real router: status codes, headers and roles.

mod http {
    use super::*;
    use crate::db::{Db, SystemClock};
    use crate::hub::auth::Policy;
    use crate::hub::routes::{HubState, router};
    use crate::rpc::methods::{Context, StaticInfo};
    use tokio::sync::watch;

    struct Hub {
        url: String,
        db: Db,
        _dir: tempfile::TempDir,
        _stop: watch::Sender<bool>,
        http: reqwest::Client,
    }

    async fn hub(idp: &FakeIdp) -> Hub {
        crate::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (db, _thread) =
            Db::open(&dir.path().join("hub.db"), 300_000, Arc::new(SystemClock)).unwrap();
        let info = StaticInfo {
            mode: "server".into(),
            db: String::new(),
            socket: String::new(),
            started_ms: 0,
        };
        let ctx = Arc::new(Context::local(db.clone(), info, 0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let verifier = Verifier::new(
            OidcSettings {
                issuer: idp.issuer().to_owned(),
                audience: AUD.into(),
                client_id: "heph".into(),
                scopes: vec!["openid".into(), "offline_access".into()],
            },
            JwksPolicy::default(),
        )
        .unwrap();
        let (stop, stopped) = watch::channel(false);
        let state = Arc::new(HubState {
            ctx,
            db: db.clone(),
            auth: Policy::Oidc(Arc::new(verifier)),
            public_url: url.clone(),
            shutdown: stopped.clone(),
            issuer: None,
        });
        tokio::spawn(crate::hub::serve::serve(
            listener,
            None,
            router(state),
            stopped,
        ));
        Hub {
            url,
            db,
            _dir: dir,
            _stop: stop,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    impl Hub {
        async fn grant(&self, sub: &str, role: &str) {
            let (sub, role) = (
                sub.to_owned(),
                crate::hub::members::Role::parse(role).unwrap(),
            );
            self.db
                .call(move |r| {
                    let mut m = crate::hub::members::load(r).unwrap();
                    m.insert(sub, role);
                    let raw: std::collections::BTreeMap<_, _> =
                        m.iter().map(|(s, r)| (s.clone(), r.as_str())).collect();
                    r.set_meta(&[(
                        crate::hub::members::MEMBERS_KEY,
                        &serde_json::to_string(&raw).unwrap(),
                    )])
                    .unwrap();
                })
                .await
                .unwrap();
        }

        async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
            let mut req = self.http.get(format!("{}{path}", self.url));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap()
        }

        async fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
            let mut req = self.http.post(format!("{}{path}", self.url)).json(&body);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            req.send().await.unwrap()
        }
    }

    fn token(key: &TestKey, idp: &FakeIdp, sub: &str) -> String {
        let now = now_secs();
        key.sign(
            &json!({"iss": idp.issuer(), "aud": AUD, "sub": sub, "iat": now, "exp": now + 300}),
        )
    }

    #[tokio::test]
    async fn no_or_bad_token_is_401_with_a_bearer_challenge() {
        let a = TestKey::rsa_a("a");
        let idp = FakeIdp::start(&[&a]).await;
        let hub = hub(&idp).await;
        for t in [None, Some("not-a-jwt"), Some("a.b.c")] {
            let r = hub.get("/sync/pull", t).await;
            assert_eq!(r.status(), 401);
            let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(
                challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
                "{challenge}"
            );
            assert!(
                challenge.ends_with(&format!(
                    "resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
                    hub.url
                )),
                "{challenge}"
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_token");
        }
        let r = hub.get("/sync/pull", Some("opaque0123456789")).await;
        let body: Value = r.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("docs/operations.md"),
            "{body}"
        );
        let t = token(&a, &idp, "alice");
        let r = hub.get(&format!("/sync/pull?access_token={t}"), None).await;
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Authorization header"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_hub_without_members_says_how_to_add_one() {
        let a = TestKey::rsa_a("a");
        let idp = FakeIdp::start(&[&a]).await;
        let hub = hub(&idp).await;
        let r = hub.get("/sync/pull", Some(&token(&a, &idp, "alice"))).await;
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "not_member");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains("hephd --owner-sub alice"), "{msg}");
        assert!(msg.contains("heph hub grant alice --role owner"), "{msg}");
    }

    #[tokio::test]
    async fn a_valid_non_member_is_403_naming_the_sub_and_the_grant_command() {
        let a = TestKey::rsa_a("a");
        let idp = FakeIdp::start(&[&a]).await;
        let hub = hub(&idp).await;
        hub.grant("owner-1", "owner").await;
        let r = hub
            .get("/sync/pull", Some(&token(&a, &idp, "mallory")))
            .await;
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["message"],
            "mallory is not a member of this hub; an owner can admit it with heph hub grant mallory --role writer on the hub machine"
        );
    }

    #[tokio::test]
    async fn roles_reader_pulls_writer_pushes_owner_manages() {
        let a = TestKey::rsa_a("a");
        let idp = FakeIdp::start(&[&a]).await;
        let hub = hub(&idp).await;
        hub.grant("olga", "owner").await;
        hub.grant("wim", "writer").await;
        hub.grant("rita", "reader").await;
        let (olga, wim, rita) = (
            token(&a, &idp, "olga"),
            token(&a, &idp, "wim"),
            token(&a, &idp, "rita"),
        );
        let empty = json!({"ops": []});
        assert_eq!(hub.get("/sync/pull", Some(&rita)).await.status(), 200);
        let r = hub.post("/sync/push", Some(&rita), empty.clone()).await;
        assert_eq!(r.status(), 403);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "forbidden");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("heph hub grant rita --role writer"),
            "{body}"
        );
        assert_eq!(
            hub.post("/sync/push", Some(&wim), empty).await.status(),
            200
        );

        let call = |m: &str| json!({"jsonrpc": "2.0", "id": 1, "method": m, "params": {}});
        assert_eq!(
            hub.post("/rpc", Some(&rita), call("node.list"))
                .await
                .status(),
            200
        );
        assert_eq!(
            hub.post(
                "/rpc",
                Some(&rita),
                json!({"jsonrpc":"2.0","id":1,"method":"node.create","params":{"title":"x"}})
            )
            .await
            .status(),
            403
        );
        assert_eq!(
            hub.post(
                "/rpc",
                Some(&rita),
                json!([call("node.list"), call("node.delete")])
            )
            .await
            .status(),
            403,
            "one forbidden method refuses the whole batch"
        );
        assert_eq!(
            hub.post("/rpc", Some(&wim), call("hub.members"))
                .await
                .status(),
            403
        );
        let r = hub.post("/rpc", Some(&olga), call("hub.members")).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["result"]["members"].as_array().unwrap().len(),
            3,
            "{body}"
        );
        let grant = json!({"jsonrpc":"2.0","id":2,"method":"hub.grant","params":{"sub":"rita","role":"writer"}});
        let body: Value = hub
            .post("/rpc", Some(&olga), grant)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            body["result"]["message"], "rita is now a writer (was a reader)",
            "{body}"
        );
        assert_eq!(
            hub.post("/sync/push", Some(&rita), json!({"ops": []}))
                .await
                .status(),
            200,
            "a grant takes effect on the next request"
        );
        let revoke_last =
            json!({"jsonrpc":"2.0","id":3,"method":"hub.revoke","params":{"sub":"olga"}});
        let body: Value = hub
            .post("/rpc", Some(&olga), revoke_last)
            .await
            .json()
            .await
            .unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only owner"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn provider_unreachable_is_503_with_retry_after_never_500() {
        let a = TestKey::rsa_a("a");
        let mut idp = FakeIdp::start(&[&a]).await;
        let hub = hub(&idp).await;
        hub.grant("alice", "owner").await;
        let t = token(&a, &idp, "alice");
        idp.stop().await;
        let r = hub.get("/sync/pull", Some(&t)).await;
        assert_eq!(r.status(), 503);
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&retry), "{retry}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "auth_unavailable");
    }

    #[tokio::test]
    async fn protected_resource_metadata_names_issuer_client_and_scopes() {
        let idp = FakeIdp::start(&[&TestKey::rsa_a("a")]).await;
        let hub = hub(&idp).await;
        let meta: Value = hub
            .get("/.well-known/oauth-protected-resource", None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(meta["resource"], hub.url);
        assert_eq!(meta["authorization_servers"], json!([idp.issuer()]));
        assert_eq!(meta["heph_client_id"], "heph");
        assert_eq!(
            meta["scopes_supported"],
            json!(["openid", "offline_access"])
        );
        assert_eq!(idp.jwks_hits(), 0, "the hub starts without fetching keys");
    }
}
