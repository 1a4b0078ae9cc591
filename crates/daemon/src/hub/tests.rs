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
        Self::for_audience(keys, AUD).await
    }

    /// A hub whose audience is `audience` (client id `heph`).
    async fn for_audience(keys: &[&TestKey], audience: &str) -> Self {
        let idp = FakeIdp::start(keys).await;
        let offset_ms = Arc::new(AtomicU64::new(0));
        let base = Instant::now();
        let off = offset_ms.clone();
        let now = Arc::new(move || base + Duration::from_millis(off.load(Ordering::SeqCst)));
        let keys = KeySource::with_clock(idp.issuer(), JwksPolicy::default(), now).unwrap();
        let verifier = Verifier::with_keys(
            OidcSettings {
                issuer: idp.issuer().to_owned(),
                audience: audience.into(),
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
    assert_eq!(f.check(&t).await, invalid(Rejection::BadSubject));
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
// Only access tokens (issue 12, item 2): tokens shaped like each recipe's
// ID and access tokens, signed by the test provider's key.

/// One token shape: its `typ` header, its claims over the fixture's base
/// claims (`null` removes one), and the expected verdict.
struct Shape {
    name: &'static str,
    typ: Option<&'static str>,
    claims: Value,
    want: Result<(), Rejection>,
}

fn id(reason: &str) -> Result<(), Rejection> {
    Err(Rejection::IdToken(reason.into()))
}

const ONLY_CLIENT: &str = "its only audience is the client id heph and it carries no scope";
const NAMES_CLIENT: &str =
    "its audience names the client id heph and it carries no scope, scp or client_id";

async fn check_shapes(audience: &str, shapes: Vec<Shape>) {
    let key = TestKey::rsa_a("a");
    let f = Fixture::for_audience(&[&key], audience).await;
    for shape in shapes {
        let mut claims = f.claims();
        claims["aud"] = json!(audience);
        for (k, v) in shape.claims.as_object().unwrap() {
            claims = with(claims, k, v.clone());
        }
        let token = key.sign_with(key.header(shape.typ), &claims);
        let want = match shape.want {
            Ok(()) => valid("alice"),
            Err(r) => invalid(r),
        };
        assert_eq!(f.check(&token).await, want, "{}", shape.name);
    }
}

#[tokio::test]
async fn id_tokens_of_every_recipe_are_refused_and_their_access_tokens_accepted() {
    let t = now_secs();
    check_shapes(
        AUD,
        vec![
            // panva's oidc-provider (the npm provider of the e2e tests).
            Shape {
                name: "oidc-provider ID token: {alg,kid}, aud = client id, nothing else",
                typ: None,
                claims: json!({"aud": "heph"}),
                want: id(ONLY_CLIENT),
            },
            Shape {
                name: "oidc-provider ID token with auth_time, sid, azp",
                typ: None,
                claims: json!({"aud": "heph", "auth_time": t, "sid": "s1", "azp": "heph"}),
                want: id(ONLY_CLIENT),
            },
            Shape {
                name: "oidc-provider access token",
                typ: Some("at+jwt"),
                claims: json!({"client_id": "heph", "scope": "openid offline_access", "jti": "j"}),
                want: Ok(()),
            },
            // The built-in issuer (crates/daemon/src/issuer/grants.rs).
            Shape {
                name: "built-in ID token: typ JWT, aud = client id",
                typ: Some("JWT"),
                claims: json!({"aud": "heph", "auth_time": t, "preferred_username": "alice"}),
                want: id(ONLY_CLIENT),
            },
            Shape {
                name: "built-in access token",
                typ: Some("at+jwt"),
                claims: json!({"client_id": "heph", "scope": "openid offline_access", "jti": "j", "auth_time": t}),
                want: Ok(()),
            },
            // Keycloak: typ JWT on both, a typ claim tells them apart.
            Shape {
                name: "Keycloak ID token (auth code: nonce, at_hash)",
                typ: Some("JWT"),
                claims: json!({"aud": "heph", "typ": "ID", "azp": "heph", "nonce": "n", "at_hash": "h"}),
                want: id("it carries nonce, which only ID tokens do"),
            },
            Shape {
                name: "Keycloak ID token (device flow) with the hub's audience mapped in",
                typ: Some("JWT"),
                claims: json!({"aud": ["heph", AUD], "typ": "ID", "azp": "heph", "sid": "s"}),
                want: id("its typ claim is ID"),
            },
            Shape {
                name: "Keycloak access token",
                typ: Some("JWT"),
                claims: json!({"aud": [AUD, "account"], "typ": "Bearer", "azp": "heph", "scope": "openid offline_access", "sid": "s"}),
                want: Ok(()),
            },
            Shape {
                name: "Keycloak refresh token",
                typ: Some("JWT"),
                claims: json!({"aud": AUD, "typ": "Refresh", "azp": "heph"}),
                want: Err(Rejection::NotAccessToken("Refresh (its typ claim)".into())),
            },
            // Entra ID: access tokens carry scp, ID tokens do not.
            Shape {
                name: "Entra ID token",
                typ: Some("JWT"),
                claims: json!({"aud": "heph", "tid": "t", "oid": "o", "ver": "2.0"}),
                want: id(ONLY_CLIENT),
            },
            Shape {
                name: "Entra access token",
                typ: Some("JWT"),
                claims: json!({"scp": "sync", "azp": "heph", "tid": "t", "ver": "2.0"}),
                want: Ok(()),
            },
            // Auth0: access tokens for an API carry scope and the userinfo audience.
            Shape {
                name: "Auth0 ID token",
                typ: Some("JWT"),
                claims: json!({"aud": "heph", "nonce": "n", "sid": "s"}),
                want: id("it carries nonce, which only ID tokens do"),
            },
            Shape {
                name: "Auth0 access token",
                typ: Some("JWT"),
                claims: json!({"aud": [AUD, "https://t.auth0.com/userinfo"], "azp": "heph", "scope": "openid offline_access"}),
                want: Ok(()),
            },
            // Authelia and Kanidm issue RFC 9068 access tokens.
            Shape {
                name: "Authelia ID token",
                typ: Some("JWT"),
                claims: json!({"aud": ["heph"], "azp": "heph", "amr": ["pwd"], "at_hash": "h"}),
                want: id("it carries at_hash, which only ID tokens do"),
            },
            Shape {
                name: "Authelia access token",
                typ: Some("application/at+jwt"),
                claims: json!({"client_id": "heph", "scope": "openid offline_access", "jti": "j"}),
                want: Ok(()),
            },
            // Zitadel: aud holds the client id and the project id.
            Shape {
                name: "Zitadel ID token",
                typ: Some("JWT"),
                claims: json!({"aud": ["123@heph", "heph", AUD], "azp": "heph", "at_hash": "h"}),
                want: id("it carries at_hash, which only ID tokens do"),
            },
            Shape {
                name: "Zitadel ID token from a refresh (no at_hash)",
                typ: Some("JWT"),
                claims: json!({"aud": ["heph", AUD], "azp": "heph"}),
                want: id(NAMES_CLIENT),
            },
            Shape {
                name: "Zitadel access token",
                typ: Some("JWT"),
                claims: json!({"aud": ["heph", AUD], "client_id": "heph", "jti": "j"}),
                want: Ok(()),
            },
            // Dex and authentik with the hub's own audience (see docs/operations.md).
            Shape {
                name: "Dex token for a cross-client audience",
                typ: None,
                claims: json!({"aud": AUD, "azp": "heph", "email": "a@example.org"}),
                want: Ok(()),
            },
            Shape {
                name: "authentik access token with an audience mapping",
                typ: Some("JWT"),
                claims: json!({"aud": AUD, "azp": "heph", "uid": "u", "auth_time": t, "acr": "goauthentik.io/providers/oauth2/default"}),
                want: Ok(()),
            },
            Shape {
                name: "ID-token claims win over an access-token marker",
                typ: Some("JWT"),
                claims: json!({"scope": "openid", "c_hash": "h"}),
                want: id("it carries c_hash, which only ID tokens do"),
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn with_the_client_id_as_audience_only_a_marked_access_token_passes() {
    // What docs/operations.md used to recommend for authentik, Kanidm and
    // Dex: --oidc-audience heph, the client id.
    check_shapes(
        "heph",
        vec![
            Shape {
                name: "any ID token of the client",
                typ: None,
                claims: json!({}),
                want: id(ONLY_CLIENT),
            },
            Shape {
                name: "authentik access token (ID-token claims plus azp and uid)",
                typ: Some("JWT"),
                claims: json!({"azp": "heph", "uid": "u", "auth_time": t_now()}),
                want: id(ONLY_CLIENT),
            },
            Shape {
                name: "untyped token with client_id but no scope",
                typ: Some("JWT"),
                claims: json!({"client_id": "heph"}),
                want: id(ONLY_CLIENT),
            },
            Shape {
                name: "Kanidm access token (RFC 9068)",
                typ: Some("at+jwt"),
                claims: json!({"client_id": "heph", "scope": "openid offline_access"}),
                want: Ok(()),
            },
            Shape {
                name: "untyped token with a scope",
                typ: Some("JWT"),
                claims: json!({"scope": "openid offline_access"}),
                want: Ok(()),
            },
        ],
    )
    .await;
}

fn t_now() -> i64 {
    now_secs()
}

#[tokio::test]
async fn specific_types_other_than_at_jwt_are_refused_before_any_key_lookup() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    for typ in [
        "logout+jwt",
        "id_token+jwt",
        "application/id_token+jwt",
        "secevent+jwt",
        "JOSE",
        "dpop+jwt",
    ] {
        let token = key.sign_with(key.header(Some(typ)), &f.claims());
        let shown = typ.to_owned();
        assert_eq!(
            f.check(&token).await,
            invalid(Rejection::NotAccessToken(shown)),
            "{typ}"
        );
    }
    assert_eq!(f.idp.jwks_hits(), 0, "refused before any key lookup");
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        let token = key.sign_with(key.header(Some(typ)), &f.claims());
        assert_eq!(f.check(&token).await, valid("alice"), "{typ}");
    }
    // A typ that is not text, or with control characters, is no type at all.
    let b64 = |v: &Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let token = format!(
        "{}.{}.c2ln",
        b64(&json!({"alg": "RS256", "kid": "a", "typ": 7})),
        b64(&f.claims())
    );
    assert_eq!(
        f.check(&token).await,
        invalid(Rejection::Malformed("its typ is not a string"))
    );
    let token = key.sign_with(key.header(Some("logout\n+jwt\u{1b}[2J")), &f.claims());
    assert_eq!(
        f.check(&token).await,
        invalid(Rejection::NotAccessToken("logout+jwt[2J".into()))
    );
}

#[tokio::test]
async fn a_sub_with_control_characters_or_over_255_bytes_is_refused() {
    let key = TestKey::rsa_a("a");
    let f = Fixture::new(&[&key]).await;
    for sub in [
        "alice\n2026-12-02T00:00:00Z INFO hephd: granted owner",
        "alice\r",
        "\u{1b}[2Jalice",
        "alice\u{7f}",
        "alice\u{85}",
        "ecila\u{202e}",
        "a\u{2066}b",
        "",
        &"a".repeat(256),
    ] {
        let t = key.sign(&with(f.claims(), "sub", json!(sub)));
        assert_eq!(f.check(&t).await, invalid(Rejection::BadSubject), "{sub:?}");
    }
    for sub in [
        "auth0|65f0c0ffee",
        "Zm9vYmFy",
        "ålice Ünïcode",
        &"a".repeat(255),
    ] {
        let t = key.sign(&with(f.claims(), "sub", json!(sub)));
        assert_eq!(f.check(&t).await, valid(sub));
    }
}

// ---------------------------------------------------------------------------
// Discovery must name our issuer and https endpoints (items 10 and 15).

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused_and_one_trailing_slash_tolerated() {
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    let iss = f.idp.issuer().to_owned();
    let t = a.sign(&f.claims());
    f.idp.set_discovery_issuer(Some("https://evil.example"));
    match f.check(&t).await {
        Verdict::Unavailable { reason, .. } => {
            assert!(
                reason.contains("names the issuer \"https://evil.example\", not the configured"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.idp.jwks_hits(),
        0,
        "no keys read from a mismatched issuer"
    );
    for (named, ok) in [
        (format!("{iss}//"), false),
        (format!("{iss}/x"), false),
        (iss.replace("127.0.0.1", "localhost"), false),
        (format!("{iss}/"), true),
    ] {
        f.idp.set_discovery_issuer(Some(&named));
        f.advance(Duration::from_secs(6)); // past the failure back-off
        let v = f.check(&t).await;
        if ok {
            assert_eq!(v, valid("alice"), "{named}");
        } else {
            assert!(matches!(v, Verdict::Unavailable { .. }), "{named}: {v:?}");
        }
    }
}

#[tokio::test]
async fn a_plain_http_jwks_uri_is_refused_unless_issuer_and_endpoint_are_loopback() {
    use super::jwks::{FetchError, check_endpoint};
    let insecure =
        |r: Result<reqwest::Url, FetchError>| matches!(r, Err(FetchError::InsecureEndpoint { .. }));
    let idp = "https://idp.example";
    assert!(check_endpoint(idp, "https://idp.example/jwks").is_ok());
    assert!(check_endpoint(idp, "https://keys.example.net/jwks").is_ok());
    assert!(insecure(check_endpoint(idp, "http://idp.example/jwks")));
    assert!(insecure(check_endpoint(idp, "http://127.0.0.1/jwks")));
    assert!(insecure(check_endpoint(idp, "ftp://idp.example/jwks")));
    assert!(matches!(
        check_endpoint(idp, "/jwks"),
        Err(FetchError::BadEndpoint { .. })
    ));
    let local = "http://127.0.0.1:8080";
    assert!(check_endpoint(local, "http://127.0.0.1:8080/jwks").is_ok());
    assert!(check_endpoint(local, "http://localhost:9/jwks").is_ok());
    assert!(check_endpoint(local, "http://[::1]:9/jwks").is_ok());
    assert!(insecure(check_endpoint(local, "http://192.0.2.1/jwks")));

    // Through a fetch: discovery names a plain-http jwks_uri off loopback.
    let a = TestKey::rsa_a("a");
    let f = Fixture::new(&[&a]).await;
    f.idp.set_discovery_jwks_uri(Some("http://192.0.2.1/jwks"));
    match f.check(&a.sign(&f.claims())).await {
        Verdict::Unavailable { reason, .. } => {
            assert!(reason.contains("which is not https"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.idp.jwks_hits(), 0);
}

// ---------------------------------------------------------------------------
// A hanging provider (item 3): one fetch, shared by every waiter, with the
// cooldown applied after failures too. Paused time; the JWKS is read by a
// counting function that can be told to hang.

mod single_flight {
    use super::*;
    use crate::hub::jwks::{FetchError, LocalJwks};
    use std::sync::atomic::AtomicBool;

    struct Hanging {
        verifier: Arc<Verifier>,
        calls: Arc<AtomicU64>,
        hang: Arc<AtomicBool>,
        key: TestKey,
    }

    const ISS: &str = "https://idp.test.invalid";

    impl Hanging {
        fn new() -> Self {
            let key = TestKey::rsa_a("a");
            let calls = Arc::new(AtomicU64::new(0));
            let hang = Arc::new(AtomicBool::new(true));
            let jwks = json!({"keys": [key.jwk.clone()]});
            let (c, h) = (calls.clone(), hang.clone());
            let read: LocalJwks = Arc::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
                let (hang, jwks) = (h.load(Ordering::SeqCst), jwks.clone());
                Box::pin(async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    Ok::<Value, FetchError>(jwks)
                })
            });
            let now = Arc::new(|| tokio::time::Instant::now().into_std());
            let keys = KeySource::local_with_clock(ISS, read, JwksPolicy::default(), now);
            let verifier = Arc::new(Verifier::with_keys(
                OidcSettings {
                    issuer: ISS.into(),
                    audience: AUD.into(),
                    client_id: "heph".into(),
                    scopes: vec![],
                },
                keys,
            ));
            Self {
                verifier,
                calls,
                hang,
                key,
            }
        }

        fn token(&self, kid: &str) -> String {
            let now = now_secs();
            let mut header = self.key.header(Some("at+jwt"));
            header.kid = Some(kid.into());
            self.key.sign_with(
                header,
                &json!({"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 3600}),
            )
        }

        /// `n` concurrent checks of `token(kid_i)`; their verdicts.
        async fn concurrently(&self, kids: Vec<String>) -> Vec<Verdict> {
            let mut set = tokio::task::JoinSet::new();
            for kid in kids {
                let (v, header) = (
                    self.verifier.clone(),
                    format!("Bearer {}", self.token(&kid)),
                );
                set.spawn(async move { v.verify(Some(header.as_bytes()), None).await });
            }
            set.join_all().await
        }

        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    fn unavailable(v: &Verdict) -> Duration {
        match v {
            Verdict::Unavailable { retry_after, .. } => *retry_after,
            other => panic!("want 503, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_on_a_cold_cache_share_one_fetch_of_a_hanging_provider() {
        let h = Hanging::new();
        // Before: 6 requests, 6 fetches one after another (answered at 5, 10, … 30 s).
        let verdicts = h.concurrently(vec!["a".into(); 6]).await;
        for v in &verdicts {
            assert!(unavailable(v) >= Duration::from_secs(1));
        }
        assert_eq!(h.calls(), 1, "one fetch for all six");
        assert_eq!(h.verifier.keys().fetch_count(), 1);
        // Within the failure back-off nobody fetches again.
        let verdicts = h.concurrently(vec!["a".into(); 6]).await;
        assert!(
            verdicts
                .iter()
                .all(|v| unavailable(v) >= Duration::from_secs(1))
        );
        assert_eq!(h.calls(), 1, "the back-off holds after a failed fetch");
        // The provider answers again; after the back-off one fetch serves all.
        h.hang.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(6)).await;
        let verdicts = h.concurrently(vec!["a".into(); 6]).await;
        assert!(
            verdicts.iter().all(|v| *v == valid("alice")),
            "{verdicts:?}"
        );
        assert_eq!(h.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kids_refetch_once_per_cooldown_even_when_the_refetch_fails() {
        let h = Hanging::new();
        h.hang.store(false, Ordering::SeqCst);
        assert_eq!(h.concurrently(vec!["a".into()]).await, vec![valid("alice")]);
        assert_eq!(h.calls(), 1);
        h.hang.store(true, Ordering::SeqCst);
        // Before: 8 unknown kids (unsigned garbage suffices) made 8 fetches.
        let kids: Vec<String> = (0..8).map(|i| format!("made-up-{i}")).collect();
        let verdicts = h.concurrently(kids.clone()).await;
        assert!(
            verdicts
                .iter()
                .all(|v| unavailable(v) >= Duration::from_secs(1))
        );
        assert_eq!(h.calls(), 2, "one refetch for eight unknown kids");
        // Past the failure back-off but inside the cooldown: still none.
        tokio::time::advance(Duration::from_secs(10)).await;
        let verdicts = h.concurrently(kids.clone()).await;
        for v in &verdicts {
            let retry = unavailable(v);
            assert!(
                retry >= Duration::from_secs(1) && retry <= Duration::from_secs(30),
                "{retry:?}"
            );
        }
        assert_eq!(h.calls(), 2, "the cooldown holds after a failed refetch");
        // The cached key is never held up by any of it.
        assert_eq!(h.concurrently(vec!["a".into()]).await, vec![valid("alice")]);
        // After the cooldown, one more refetch; the provider is back.
        h.hang.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(30)).await;
        let verdicts = h.concurrently(kids).await;
        assert!(
            verdicts
                .iter()
                .all(|v| *v == invalid(Rejection::UnknownKey)),
            "{verdicts:?}"
        );
        assert_eq!(h.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_the_wait_limit_and_the_fetcher_after_the_timeout() {
        let h = Hanging::new();
        let leader = {
            let (v, header) = (h.verifier.clone(), format!("Bearer {}", h.token("a")));
            tokio::spawn(async move { v.verify(Some(header.as_bytes()), None).await })
        };
        // Let the leader start its fetch.
        while h.calls() == 0 {
            tokio::task::yield_now().await;
        }
        let start = tokio::time::Instant::now();
        let waiter = h.concurrently(vec!["a".into()]).await;
        let waited = start.elapsed();
        unavailable(&waiter[0]);
        assert_eq!(
            waited,
            JwksPolicy::default().wait_limit,
            "paused clock: exact"
        );
        assert!(!leader.is_finished(), "the fetch is still running");
        unavailable(&leader.await.unwrap());
        assert_eq!(h.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetcher_that_goes_away_does_not_cancel_the_fetch_for_the_others() {
        let h = Hanging::new();
        let leader = {
            let (v, header) = (h.verifier.clone(), format!("Bearer {}", h.token("a")));
            tokio::spawn(async move { v.verify(Some(header.as_bytes()), None).await })
        };
        while h.calls() == 0 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let verdicts = h.concurrently(vec!["a".into(); 4]).await;
        assert!(
            verdicts
                .iter()
                .all(|v| unavailable(v) >= Duration::from_secs(1))
        );
        assert_eq!(h.calls(), 1, "the abandoned fetch was not restarted");
    }
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
        // The cause (a URL, a transport error) is for the log, not for an
        // unauthenticated caller.
        assert_eq!(body["message"], crate::hub::auth::UNAVAILABLE_MESSAGE);
        let text = body.to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.contains("connect"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn two_authorization_headers_are_400_not_first_wins() {
        let a = TestKey::rsa_a("a");
        let idp = FakeIdp::start(&[&a]).await;
        let hub = hub(&idp).await;
        hub.grant("alice", "owner").await;
        let good = token(&a, &idp, "alice");
        assert_eq!(hub.get("/sync/pull", Some(&good)).await.status(), 200);
        for second in [good.as_str(), "garbage", ""] {
            let r = hub
                .http
                .get(format!("{}/sync/pull", hub.url))
                .header("authorization", format!("Bearer {good}"))
                .header("authorization", format!("Bearer {second}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 400, "second header {second:.10}");
            let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(
                challenge.starts_with("Bearer error=\"invalid_request\""),
                "{challenge}"
            );
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_request");
        }
    }

    #[tokio::test]
    async fn six_concurrent_requests_while_the_provider_hangs_make_one_fetch() {
        let a = TestKey::rsa_a("a");
        let idp = FakeIdp::start(&[&a]).await;
        idp.set_answer(JwksAnswer::Hang);
        let hub = Arc::new(hub(&idp).await);
        hub.grant("alice", "owner").await;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..6 {
            let hub = hub.clone();
            // Half with the real kid, half with made-up ones.
            let t = if i % 2 == 0 {
                token(&a, &idp, "alice")
            } else {
                let mut header = a.header(Some("at+jwt"));
                header.kid = Some(format!("made-up-{i}"));
                let now = now_secs();
                a.sign_with(
                    header,
                    &json!({"iss": idp.issuer(), "aud": AUD, "sub": "alice", "iat": now, "exp": now + 300}),
                )
            };
            set.spawn(async move {
                let r = hub.get("/sync/pull", Some(&t)).await;
                (
                    r.status().as_u16(),
                    r.headers().get("retry-after").is_some(),
                )
            });
        }
        let answers = set.join_all().await;
        assert!(answers.iter().all(|a| *a == (503, true)), "{answers:?}");
        assert_eq!(idp.discovery_hits(), 1);
        assert_eq!(idp.jwks_hits(), 1, "one fetch for six requests");
    }

    #[tokio::test]
    async fn a_sub_with_control_characters_never_reaches_a_403_or_the_log() {
        let a = TestKey::rsa_a("a");
        let idp = FakeIdp::start(&[&a]).await;
        let hub = hub(&idp).await;
        let r = hub
            .get(
                "/sync/pull",
                Some(&token(&a, &idp, "mallory\nINFO granted owner")),
            )
            .await;
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert!(!body.to_string().contains("mallory"), "{body}");
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
