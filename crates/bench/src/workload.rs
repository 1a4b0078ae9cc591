//! A deterministic, realistic op workload: nodes created with their usual
//! fields, then edited — retitled, re-prioritised, tagged, finished — by a
//! few replicas with interleaved clocks.

use heph_core::{Hlc, NodeId, Op, ReplicaId};
use serde_json::{Value, json};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes16(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_le_bytes());
        b[8..].copy_from_slice(&self.next().to_le_bytes());
        b
    }
}

/// `count` ops: about a fifth create nodes (four fields each), the rest edit them.
pub fn ops(count: usize, seed: u64) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    let replicas: Vec<ReplicaId> = (0..4).map(|_| ReplicaId(rng.bytes16())).collect();
    let mut wall = 1_764_000_000_000u64;
    let mut counter = 0u16;
    let mut nodes: Vec<NodeId> = Vec::new();
    let mut out = Vec::with_capacity(count);
    let mut push = |out: &mut Vec<Op>, rng: &mut Rng, node: NodeId, field: String, value: Value| {
        if rng.below(4) == 0 {
            wall += 1 + rng.below(3);
            counter = 0;
        } else {
            counter += 1;
        }
        let replica = replicas[rng.below(replicas.len() as u64) as usize];
        out.push(Op {
            hlc: Hlc {
                wall_ms: wall,
                counter,
                replica,
            },
            node,
            field,
            value,
        });
    };
    while out.len() < count {
        if nodes.is_empty() || (rng.below(5) == 0 && out.len() + 4 <= count) {
            let id = NodeId::from_random_bytes(rng.bytes16());
            nodes.push(id);
            let n = nodes.len();
            push(
                &mut out,
                &mut rng,
                id,
                "kind".into(),
                json!(if n % 7 == 0 { "note" } else { "task" }),
            );
            push(
                &mut out,
                &mut rng,
                id,
                "title".into(),
                json!(format!("Task number {n} of the benchmark")),
            );
            push(&mut out, &mut rng, id, "status".into(), json!("todo"));
            push(&mut out, &mut rng, id, "priority".into(), json!("medium"));
            continue;
        }
        let id = nodes[rng.below(nodes.len() as u64) as usize];
        let (field, value) = match rng.below(6) {
            0 => (
                "title".to_owned(),
                json!(format!("Retitled {}", rng.below(1_000_000))),
            ),
            1 => (
                "status".to_owned(),
                json!(["todo", "doing", "done"][rng.below(3) as usize]),
            ),
            2 => (
                "priority".to_owned(),
                json!(["low", "medium", "high"][rng.below(3) as usize]),
            ),
            3 => (format!("tag:t{}", rng.below(20)), json!(rng.below(3) != 0)),
            4 => (
                "due".to_owned(),
                json!(format!("2026-12-{:02}", 1 + rng.below(28))),
            ),
            _ => (
                "body".to_owned(),
                json!(format!("Some notes, revision {}", rng.below(1000))),
            ),
        };
        push(&mut out, &mut rng, id, field, value);
    }
    out
}
