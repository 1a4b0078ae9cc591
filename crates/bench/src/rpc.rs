//! The local RPC's cost: `node.create` over the daemon's real unix socket.
//!
//! * `rpc_create`: creates per second through a running `hephd` (in this
//!   process, on its own runtime, over a real socket) against applying one
//!   op per transaction directly to a core store on the same kind of disk.
//!   Budget: ≥ 0.5×.
//! * `rpc_latency`: the p50 of one create round trip against the p50 of the
//!   direct apply, with p99 printed. Budget: ≤ 3× (the socket, JSON and a
//!   thread hop must stay small next to the durable commit).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use heph_core::store::OpenOptions;
use heph_core::{Hlc, NodeId, Op, ReplicaId, SqliteStore, Store};
use hephd::config::{Args, Config};
use serde_json::json;
use tokio::sync::watch;

use crate::Options;
use crate::report::{Budget, Line};

type Error = Box<dyn std::error::Error>;

/// Creates per measurement.
const CREATES: usize = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn direct(dir: &std::path::Path) -> Result<Vec<Duration>, Error> {
    let mut store = SqliteStore::open(dir.join("direct.db"), &OpenOptions::default())?;
    let replica = ReplicaId([7; 16]);
    let mut times = Vec::with_capacity(CREATES);
    for i in 0..CREATES {
        let op = Op {
            hlc: Hlc {
                wall_ms: 1_700_000_000_000 + i as u64,
                counter: 0,
                replica,
            },
            node: NodeId::from_random_bytes(hephd::db::random_bytes()),
            field: "title".into(),
            value: json!(format!("direct {i}")),
        };
        let start = Instant::now();
        store.apply_batch(std::slice::from_ref(&op))?;
        times.push(start.elapsed());
    }
    Ok(times)
}

fn over_socket(dir: &std::path::Path) -> Result<Vec<Duration>, Error> {
    let db = dir.join("rpc/heph.db");
    let socket = dir.join("rpc/hephd.sock");
    let args = <Args as clap::Parser>::try_parse_from([
        "hephd".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
        "--socket".as_ref(),
        socket.as_os_str(),
        "--config".as_ref(),
        dir.join("none.toml").as_os_str(),
    ])?;
    let home = dir.display().to_string();
    let env = move |k: &str| (k == "HOME").then(|| home.clone());
    let config = Config::resolve(&args, &env, &|_| Ok(String::new()))?;
    let (stop, stopped) = watch::channel(false);
    let daemon = std::thread::spawn(move || -> Result<(), String> {
        let rt = crate::runtime().map_err(|e| e.to_string())?;
        rt.block_on(hephd::run(&config, stopped))
            .map_err(|e| e.to_string())
    });
    let start = Instant::now();
    let stream = loop {
        match UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(10) && !daemon.is_finished() => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("hephd did not come up: {e}").into()),
        }
    };
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut times = Vec::with_capacity(CREATES);
    let mut line = String::new();
    for i in 0..CREATES {
        let req = json!({"jsonrpc": "2.0", "id": i, "method": "node.create", "params": {"title": format!("rpc {i}")}});
        let start = Instant::now();
        writer.write_all(format!("{req}\n").as_bytes())?;
        line.clear();
        reader.read_line(&mut line)?;
        times.push(start.elapsed());
        if !line.contains("\"result\"") {
            return Err(format!("node.create failed: {line}").into());
        }
    }
    let _ = stop.send(true);
    daemon.join().map_err(|_| "the daemon thread panicked")??;
    Ok(times)
}

pub fn run(_opts: &Options) -> Result<Vec<Line>, Error> {
    let dir = tempfile::tempdir()?;
    eprintln!("rpc: {CREATES} creates over the socket and {CREATES} direct one-op transactions");
    let mut direct = direct(dir.path())?;
    let mut rpc = over_socket(dir.path())?;
    let total = |t: &[Duration]| t.iter().sum::<Duration>();
    let direct_rate = CREATES as f64 / total(&direct).as_secs_f64();
    let rpc_rate = CREATES as f64 / total(&rpc).as_secs_f64();
    direct.sort();
    rpc.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Ok(vec![
        Line {
            name: "rpc_create",
            value: rpc_rate,
            baseline: direct_rate,
            budget: Budget::AtLeast(0.5),
            extra: vec![],
        },
        Line {
            name: "rpc_latency",
            value: us(percentile(&rpc, 0.5)),
            baseline: us(percentile(&direct, 0.5)),
            budget: Budget::AtMost(3.0),
            extra: vec![
                ("p99".into(), format!("{:.0}", us(percentile(&rpc, 0.99)))),
                (
                    "baseline_p99".into(),
                    format!("{:.0}", us(percentile(&direct, 0.99))),
                ),
                ("unit".into(), "us".into()),
            ],
        },
    ])
}
