//! `heph-bench issuer`: the built-in issuer's refresh latency while
//! `/oauth/device_authorization` is flooded, against the same refresh with
//! no flood (issue 12 item 5: 4 ms became 268 ms at 65k rows).
//!
//! In-process, on a fresh database in a temporary directory: one account,
//! one sign-in, then `REFRESHES` refreshes timed one by one (the p50 is the
//! figure) — alone for the baseline, then while `FLOODERS` tasks request
//! device codes as fast as they can, each from its own address (so the
//! per-address limit never stops them: the worst case for the store).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hephd::db::SystemClock;
use hephd::issuer::{Issuer, IssuerSettings, IssuerStore};

use crate::Options;
use crate::report::{Budget, Line};

type Error = Box<dyn std::error::Error + Send + Sync>;

const REFRESHES: usize = 200;
const FLOODERS: usize = 4;

pub fn run(opts: &Options) -> Result<Vec<Line>, Box<dyn std::error::Error>> {
    run_inner(opts).map_err(|e| -> Box<dyn std::error::Error> { e })
}

fn run_inner(opts: &Options) -> Result<Vec<Line>, Error> {
    hephd::install_crypto_provider();
    let rt = crate::runtime()?;
    rt.block_on(async {
        let (mut base, mut flooded) = (Vec::new(), Vec::new());
        let (mut sent, mut admitted) = (0, 0);
        for _ in 0..opts.runs.max(1) {
            base.push(measure(false).await?.0);
            let (p50, s, a) = measure(true).await?;
            flooded.push(p50);
            sent += s;
            admitted += a;
        }
        Ok(vec![Line {
            name: "issuer_refresh_under_flood",
            value: median(flooded),
            baseline: median(base),
            budget: Budget::AtMost(5.0),
            extra: vec![
                ("unit".into(), "refresh_p50_us".into()),
                ("flood_requests".into(), sent.to_string()),
                ("flood_admitted".into(), admitted.to_string()),
            ],
        }])
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The p50 of `REFRESHES` refreshes in µs, with or without a flood; and
/// how many device authorizations the flood sent and how many got a code.
async fn measure(flood: bool) -> Result<(f64, u64, u64), Error> {
    let dir = tempfile::tempdir_in(std::env::current_dir()?)?;
    let mut store = IssuerStore::open(&dir.path().join("heph.db"))?;
    let sub = store.add_account("bench", "$argon2id$unused", 0)?;
    let issuer = Arc::new(Issuer::new(
        IssuerSettings::new("https://hub.bench.invalid"),
        store,
        Arc::new(SystemClock),
    ));
    let grant = issuer
        .authorize_device(Some("heph"), None, "192.0.2.1")
        .await?;
    issuer.decide(&grant.user_code, Some(sub)).await?;
    let tokens = issuer
        .exchange_device_code(Some("heph"), Some(&grant.device_code))
        .await?;
    let mut refresh = tokens.refresh_token.ok_or("no refresh token")?;

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, admitted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut flooders = Vec::new();
    if flood {
        for f in 0..FLOODERS {
            let (issuer, stop) = (issuer.clone(), stop.clone());
            let (sent, admitted) = (sent.clone(), admitted.clone());
            flooders.push(tokio::spawn(async move {
                let mut i: u32 = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let address = format!("10.{f}.{}.{}", i >> 8 & 0xff, i & 0xff);
                    let answer = issuer.authorize_device(Some("heph"), None, &address).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if answer.is_ok() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        // Let the flood reach its steady state before timing.
        while sent.load(Ordering::Relaxed) < 2_000 {
            tokio::task::yield_now().await;
        }
    }
    let mut took = Vec::with_capacity(REFRESHES);
    for _ in 0..REFRESHES {
        let start = Instant::now();
        let t = issuer.refresh(Some("heph"), Some(&refresh)).await?;
        took.push(start.elapsed());
        refresh = t.refresh_token.ok_or("no rotated refresh token")?;
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await?;
    }
    took.sort();
    let p50: Duration = took[took.len() / 2];
    Ok((
        p50.as_secs_f64() * 1e6,
        sent.load(Ordering::Relaxed),
        admitted.load(Ordering::Relaxed),
    ))
}
