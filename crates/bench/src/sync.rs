//! DESIGN §9 sync rows: real `hephd` processes (hub and spokes) over loopback.
//!
//! * `sync_incremental`: one round of one op (push it, pull after the hub's
//!   last seq) against a hub whose log holds 1,000,000 ops, vs the same
//!   round against a hub of 1,000 ops. Median of 200 rounds. Budget ≤ 1.5×.
//! * `sync_bootstrap`: a new spoke's first full pull of the 1,000,000 ops,
//!   from start to the last op committed, vs applying the same ops locally
//!   in the spoke's page size (10,000) — which is also how the hub's
//!   database is written. Budget ≥ 0.5× the local rate.
//! * `sync_propagation_p50` / `_p99`: an edit on spoke A until spoke B's
//!   `events.subscribe` reports it (long poll), 100 edits. Budgets 50 ms / 250 ms.
//! * `hub_idle_clients`: the hub's RSS with 1,000 idle long polls parked.
//!   Budget 150 MB. `spoke_idle_rss`: an idle spoke's RSS. Budget 30 MB.
//!
//! Needs the release `hephd` binary beside `heph-bench`
//! (`cargo build --release -p hephd -p heph-bench`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use heph_core::store::OpenOptions;
use heph_core::wire::HubUrl;
use heph_core::{Hlc, NodeId, Op, ReplicaId, SqliteStore, Store};
use hephd::spoke::HubClient;
use serde_json::{Value, json};

use crate::Options;
use crate::report::{Budget, Line};
use crate::workload;

type Error = Box<dyn std::error::Error>;

const BIG: usize = 1_000_000;
const SMALL: usize = 1_000;
/// The spoke applies a catch-up in transactions of this many ops.
const PAGE: usize = hephd::spoke::sync_loop::BULK_APPLY_OPS;
const ROUNDS: usize = 200;
const EDITS: usize = 100;
const IDLE_CLIENTS: usize = 1_000;

fn hephd_path() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("hephd");
    if !path.exists() {
        return Err(format!(
            "{} is missing; build it with cargo build --release (then run cargo run --release -p heph-bench)",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// A `hephd` child process; killed when dropped.
struct Proc {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Result<Proc, Error> {
        let home = dir.join(name);
        std::fs::create_dir_all(&home)?;
        let socket = home.join("hephd.sock");
        let log = home.join("hephd.log");
        std::fs::write(home.join("config.toml"), "")?;
        let child = Command::new(hephd_path()?)
            .arg("--db")
            .arg(home.join("heph.db"))
            .arg("--socket")
            .arg(&socket)
            .arg("--config")
            .arg(home.join("config.toml"))
            .args(args)
            .env("HOME", &home)
            .env_remove("HEPH_HUB_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let p = Proc { child, socket, log };
        let start = Instant::now();
        while rpc(&p.socket, "daemon.info", json!({})).is_err() {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "hephd {name} did not start: {}",
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }

    fn port(&self) -> Result<u16, Error> {
        let text = std::fs::read_to_string(&self.log)?;
        text.lines()
            .filter_map(|l| l.split("hub listening on http://127.0.0.1:").nth(1))
            .filter_map(|p| p.trim().parse().ok())
            .next()
            .ok_or_else(|| "the hub did not log its address".into())
    }

    fn rss_mb(&self) -> Result<f64, Error> {
        self.status_mb("VmRSS:")
    }

    /// The peak resident set so far.
    fn peak_rss_mb(&self) -> Result<f64, Error> {
        self.status_mb("VmHWM:")
    }

    fn status_mb(&self, field: &str) -> Result<f64, Error> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {field} in /proc/PID/status"))?;
        Ok(kb / 1024.0)
    }
}

fn rpc(socket: &Path, method: &str, params: Value) -> Result<Value, Error> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    writeln!(
        s,
        "{}",
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    )?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    let v: Value = serde_json::from_str(&line)?;
    v.get("result")
        .cloned()
        .ok_or_else(|| format!("{method} failed: {line}").into())
}

fn write_db(path: &Path, ops: &[Op]) -> Result<Duration, Error> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let mut store = SqliteStore::open(path, &OpenOptions::default())?;
    let start = Instant::now();
    for chunk in ops.chunks(PAGE) {
        store.apply_batch(chunk)?;
    }
    Ok(start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One incremental round of one op against the hub at `port`.
fn incremental(rt: &tokio::runtime::Runtime, port: u16, tag: u8) -> Result<Duration, Error> {
    let client = HubClient::new(HubUrl::parse(&format!("http://127.0.0.1:{port}"))?, None)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let mut times = Vec::with_capacity(ROUNDS);
    rt.block_on(async {
        let mut after = client
            .pull(u64::MAX / 2, 1, 0)
            .await
            .map(|p| p.next)
            .unwrap_or(0);
        if after == 0 {
            // The cursor is beyond the log: find the end by paging from 0 with big pages.
            loop {
                let page = client.pull(after, 10_000, 0).await?;
                after = page.next;
                if !page.more {
                    break;
                }
            }
        }
        for i in 0..ROUNDS + 20 {
            let op = Op {
                hlc: Hlc {
                    wall_ms: now,
                    counter: i as u16,
                    replica: ReplicaId([tag; 16]),
                },
                node: NodeId::from_random_bytes([tag; 16]),
                field: "title".into(),
                value: json!(format!("round {i}")),
            };
            let start = Instant::now();
            let page = client.pull(after, 10_000, 0).await?;
            after = page.next;
            client.push(std::slice::from_ref(&op)).await?;
            if i >= 20 {
                times.push(start.elapsed());
            }
        }
        Ok::<_, hephd::spoke::SyncError>(())
    })?;
    Ok(median(times))
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub fn run(_opts: &Options) -> Result<Vec<Line>, Error> {
    hephd::install_crypto_provider();
    raise_fd_limit();
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    eprintln!("sync: generating {BIG} ops");
    let ops = workload::ops(BIG, 0x51c);
    // The local baseline: the same ops applied in the spoke's page size.
    let local = write_db(&d.join("big/heph.db"), &ops)?;
    write_db(&d.join("small/heph.db"), &ops[..SMALL])?;
    drop(ops);
    let local_rate = BIG as f64 / local.as_secs_f64();
    eprintln!("sync: local apply of {BIG} ops took {local:?}");
    let hub_args = [
        "--mode",
        "server",
        "--insecure-no-auth",
        "--listen",
        "127.0.0.1:0",
    ];
    let big = Proc::start(d, "big", &hub_args)?;
    let small = Proc::start(d, "small", &hub_args)?;
    let (big_port, small_port) = (big.port()?, small.port()?);

    // Bootstrap: a new spoke pulls the big hub's whole log.
    let hub_url = format!("http://127.0.0.1:{big_port}");
    let start = Instant::now();
    let spoke = Proc::start(d, "bootstrap", &["--hub-url", &hub_url])?;
    loop {
        let st = rpc(&spoke.socket, "sync.status", json!({}))?;
        if st["hub_seq"].as_u64() == Some(BIG as u64) {
            break;
        }
        if start.elapsed() > Duration::from_secs(240) {
            return Err(format!("bootstrap did not finish in 240 s: {st}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let bootstrap = start.elapsed();
    let bootstrap_peak = spoke.peak_rss_mb()?;
    std::thread::sleep(Duration::from_millis(500));
    let after_bootstrap = spoke.rss_mb()?;
    drop(spoke);
    eprintln!(
        "sync: bootstrap of {BIG} ops took {bootstrap:?}; the spoke's peak RSS {bootstrap_peak:.0} MB, {after_bootstrap:.0} MB after"
    );

    // Incremental rounds against both hubs.
    let rt = crate::runtime()?;
    let inc_small = incremental(&rt, small_port, 0x11)?;
    let inc_big = incremental(&rt, big_port, 0x22)?;
    eprintln!("sync: incremental round {inc_small:?} (1,000 ops) vs {inc_big:?} (1,000,000 ops)");
    drop(big);

    // Propagation between two spokes of the small hub.
    let small_url = format!("http://127.0.0.1:{small_port}");
    let a = Proc::start(d, "a", &["--hub-url", &small_url])?;
    let b = Proc::start(d, "b", &["--hub-url", &small_url])?;
    let sub = UnixStream::connect(&b.socket)?;
    sub.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut sub_w = sub.try_clone()?;
    writeln!(
        sub_w,
        r#"{{"jsonrpc":"2.0","id":1,"method":"events.subscribe"}}"#
    )?;
    let mut events = BufReader::new(sub);
    let mut line = String::new();
    events.read_line(&mut line)?;
    let mut a_conn = UnixStream::connect(&a.socket)?;
    let mut a_reader = BufReader::new(a_conn.try_clone()?);
    let mut lat = Vec::with_capacity(EDITS);
    for i in 0..EDITS {
        let start = Instant::now();
        writeln!(
            a_conn,
            "{}",
            json!({"jsonrpc": "2.0", "id": i, "method": "node.create", "params": {"title": format!("edit {i}")}})
        )?;
        line.clear();
        a_reader.read_line(&mut line)?;
        let made: Value = serde_json::from_str(&line)?;
        let id = made["result"]["id"].clone();
        loop {
            line.clear();
            if events.read_line(&mut line)? == 0 {
                return Err("spoke B closed its event stream".into());
            }
            let ev: Value = serde_json::from_str(&line)?;
            if ev["params"]["type"] == "changed"
                && ev["params"]["nodes"]
                    .as_array()
                    .is_some_and(|n| n.contains(&id))
            {
                break;
            }
        }
        lat.push(start.elapsed());
    }
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99) = (ms(percentile(&lat, 0.5)), ms(percentile(&lat, 0.99)));
    eprintln!("sync: propagation p50 {p50:.1} ms, p99 {p99:.1} ms");
    let spoke_rss = a.rss_mb()?;

    // 1,000 idle long polls parked at the small hub.
    let last = rpc(&small.socket, "daemon.info", json!({}))?["last_seq"]
        .as_u64()
        .unwrap_or(0);
    let before = small.rss_mb()?;
    let mut idle = Vec::with_capacity(IDLE_CLIENTS);
    for _ in 0..IDLE_CLIENTS {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", small_port))?;
        write!(
            s,
            "GET /sync/pull?after={last}&wait=60 HTTP/1.1\r\nHost: hub\r\n\r\n"
        )?;
        idle.push(s);
    }
    // Let the hub accept and park them all before reading its RSS.
    std::thread::sleep(Duration::from_secs(2));
    let hub_rss = small.rss_mb()?;
    eprintln!(
        "sync: hub RSS {before:.1} MB idle, {hub_rss:.1} MB with {IDLE_CLIENTS} parked long polls; idle spoke {spoke_rss:.1} MB"
    );
    drop(idle);
    drop((a, b, small));

    let incremental_line = |value: Duration, baseline: Duration| Line {
        name: "sync_incremental",
        value: value.as_secs_f64() * 1e6,
        baseline: baseline.as_secs_f64() * 1e6,
        budget: Budget::AtMost(1.5),
        extra: vec![("unit".into(), "us".into())],
    };
    Ok(vec![
        incremental_line(inc_big, inc_small),
        Line {
            name: "sync_bootstrap",
            value: BIG as f64 / bootstrap.as_secs_f64(),
            baseline: local_rate,
            budget: Budget::AtLeast(0.5),
            extra: vec![
                ("seconds".into(), format!("{:.1}", bootstrap.as_secs_f64())),
                ("peak_rss_mb".into(), format!("{bootstrap_peak:.0}")),
                ("unit".into(), "ops/s".into()),
            ],
        },
        Line {
            name: "sync_propagation_p50",
            value: p50,
            baseline: 50.0,
            budget: Budget::AtMost(1.0),
            extra: vec![("unit".into(), "ms".into())],
        },
        Line {
            name: "sync_propagation_p99",
            value: p99,
            baseline: 250.0,
            budget: Budget::AtMost(1.0),
            extra: vec![("unit".into(), "ms".into())],
        },
        Line {
            name: "hub_idle_clients",
            value: hub_rss,
            baseline: 150.0,
            budget: Budget::AtMost(1.0),
            extra: vec![
                ("unit".into(), "MB".into()),
                ("clients".into(), IDLE_CLIENTS.to_string()),
                ("rss_before".into(), format!("{before:.1}")),
            ],
        },
        Line {
            name: "spoke_idle_rss",
            value: spoke_rss,
            baseline: 30.0,
            budget: Budget::AtMost(1.0),
            extra: vec![("unit".into(), "MB".into())],
        },
    ])
}
