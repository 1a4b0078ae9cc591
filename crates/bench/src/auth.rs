//! `heph-bench auth`: hub push+pull throughput with bearer verification on
//! vs off (DESIGN §9: ≥ 0.97×).
//!
//! Both variants run the real hub router in-process on 127.0.0.1 with a
//! fresh database; the verified one checks an RS256 token against a JWKS
//! served by hephd's test provider (`hub::testkit`, no Node needed) and
//! looks the subject up in the members table on every request. Several
//! clients push batches and pull concurrently; the figure is requests per
//! second, the median of `--runs` alternating runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heph_core::Op;
use heph_core::wire::PushRequest;
use hephd::db::{Db, SystemClock};
use hephd::hub::auth::Policy;
use hephd::hub::bearer::{OidcSettings, Verifier};
use hephd::hub::jwks::JwksPolicy;
use hephd::hub::routes::{HubState, router};
use hephd::hub::testkit::{FakeIdp, TestKey, now_secs};
use hephd::rpc::methods::{Context, StaticInfo};
use serde_json::json;
use tokio::sync::watch;

use crate::Options;
use crate::report::{Budget, Line};

type Error = Box<dyn std::error::Error + Send + Sync>;

const AUD: &str = "https://hub.bench.invalid";
const CLIENTS: usize = 4;
const ROUNDS: usize = 250;
const BATCH: usize = 10;

pub fn run(opts: &Options) -> Result<Vec<Line>, Box<dyn std::error::Error>> {
    run_inner(opts).map_err(|e| -> Box<dyn std::error::Error> { e })
}

fn run_inner(opts: &Options) -> Result<Vec<Line>, Error> {
    hephd::install_crypto_provider();
    let rt = crate::runtime()?;
    rt.block_on(async {
        let key = TestKey::rsa_a("bench");
        let idp = FakeIdp::start(&[&key]).await;
        let now = now_secs();
        let token = key.sign(&json!({
            "iss": idp.issuer(), "aud": AUD, "sub": "bench", "iat": now, "exp": now + 3600
        }));
        let ops = crate::workload::ops(CLIENTS * ROUNDS * BATCH, 7);
        // One warm-up of each, then alternate so drift hits both alike.
        measure(None, &ops).await?;
        measure(Some((idp.issuer(), token.as_str())), &ops).await?;
        let (mut base, mut with) = (Vec::new(), Vec::new());
        for _ in 0..opts.runs.max(1) {
            base.push(measure(None, &ops).await?);
            with.push(measure(Some((idp.issuer(), token.as_str())), &ops).await?);
        }
        Ok(vec![Line {
            name: "auth_overhead",
            value: median(with),
            baseline: median(base),
            budget: Budget::AtLeast(0.97),
            extra: vec![("unit".into(), "push+pull_requests/s".into())],
        }])
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Requests per second of `CLIENTS` clients each doing `ROUNDS` push+pull
/// pairs, against a fresh hub; `oidc` is (issuer, token) or off.
async fn measure(oidc: Option<(&str, &str)>, ops: &[Op]) -> Result<f64, Error> {
    let dir = tempfile::tempdir()?;
    let (db, _thread) = Db::open(&dir.path().join("hub.db"), 300_000, Arc::new(SystemClock))?;
    let auth = match oidc {
        None => Policy::InsecureNoAuth,
        Some((issuer, _)) => {
            db.call(|r| hephd::hub::members::seed_owner(r, "bench"))
                .await
                .map_err(|_| "the database thread stopped")??;
            let verifier = Verifier::new(
                OidcSettings {
                    issuer: issuer.to_owned(),
                    audience: AUD.into(),
                    client_id: "heph".into(),
                    scopes: vec!["openid".into()],
                },
                JwksPolicy::default(),
            )?;
            Policy::Oidc(Arc::new(verifier))
        }
    };
    let info = StaticInfo {
        mode: "server".into(),
        db: String::new(),
        socket: String::new(),
        started_ms: 0,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = watch::channel(false);
    let state = Arc::new(HubState {
        ctx: Arc::new(Context::local(db.clone(), info, 0)),
        db,
        auth,
        public_url: url.clone(),
        shutdown: stopped.clone(),
        issuer: None,
    });
    let server = tokio::spawn(hephd::hub::serve::serve(
        listener,
        None,
        router(state),
        stopped,
    ));

    let token = oidc.map(|(_, t)| t.to_owned());
    let start = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let mine: Vec<Op> = ops[c * ROUNDS * BATCH..(c + 1) * ROUNDS * BATCH].to_vec();
        let (url, token) = (url.clone(), token.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?;
            let auth = |req: reqwest::RequestBuilder| match &token {
                Some(t) => req.bearer_auth(t),
                None => req,
            };
            let mut after = 0u64;
            for batch in mine.chunks(BATCH) {
                let body = PushRequest {
                    ops: batch.to_vec(),
                };
                let r = auth(http.post(format!("{url}/sync/push")).json(&body))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    return Err(format!("push answered {}", r.status()).into());
                }
                let r = auth(http.get(format!("{url}/sync/pull?after={after}&limit=1000")))
                    .send()
                    .await?;
                if !r.status().is_success() {
                    return Err(format!("pull answered {}", r.status()).into());
                }
                let page: serde_json::Value = r.json().await?;
                after = page["next"].as_u64().unwrap_or(after);
            }
            Ok::<_, Error>(())
        }));
    }
    for c in clients {
        c.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = server.await;
    Ok((CLIENTS * ROUNDS * 2) as f64 / elapsed)
}
