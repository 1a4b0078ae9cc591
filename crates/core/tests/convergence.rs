//! Convergence of replicas (DESIGN §3) and the sync cursor rule (DESIGN §4).
//!
//! The property tests run several replicas that edit the same registers
//! concurrently, with wall clocks that collide often, and exchange their ops
//! in random order with duplication and loss-then-resend. Once everything has
//! reached everyone, every replica must hold exactly the registers the merge
//! rule picks (the greatest HLC per register), answer every query alike, and
//! keep a log with each op once in strictly increasing `seq` order. The plain
//! tests pin the late-arriving-op scenario that makes cursors seqs, the clock
//! skew refusal, and the clock of a reopened replica.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use heph_core::hlc::DEFAULT_MAX_CLOCK_SKEW_MS;
use heph_core::replica::Edit;
use heph_core::store::OpenOptions;
use heph_core::{
    ClockError, Hlc, Kind, ManualClock, MemoryStore, Node, NodeId, Op, Outcome, Query, Refusal,
    Register, Replica, ReplicaError, ReplicaId, SqliteStore, Status, Store, StoreError,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

/// Every clock starts here (2025-06-15), so wall times are realistic.
const BASE_MS: u64 = 1_750_000_000_000;
/// A small pool of nodes, so replicas keep editing the same registers.
const NODES: usize = 3;

fn node(i: usize) -> NodeId {
    NodeId::from_random_bytes([0x11 * (i as u8 + 1); 16])
}

fn rid(n: u8) -> ReplicaId {
    ReplicaId([n; 16])
}

/// The fields edits pick from, each with the values it may take. Every value
/// is valid, so every batch is accepted; `x-future` stands for a field
/// written by a newer version.
static FIELDS: LazyLock<Vec<(String, Vec<Value>)>> = LazyLock::new(|| {
    let s = |xs: &[&str]| xs.iter().map(|x| json!(x)).collect::<Vec<_>>();
    let flag = || vec![json!(true), json!(false)];
    vec![
        ("kind".into(), s(&["task", "note"])),
        (
            "title".into(),
            s(&[
                "Buy milk",
                "buy MILK now",
                "Éclair",
                "call mum",
                "tea\u{0}time",
                "x",
            ]),
        ),
        ("status".into(), s(&["todo", "doing", "done", "cancelled"])),
        ("priority".into(), s(&["none", "low", "medium", "high"])),
        ("deleted".into(), flag()),
        ("tag:x".into(), flag()),
        ("tag:home".into(), flag()),
        (
            "due".into(),
            vec![
                json!("2026-11-25"),
                json!("2026-11-25T23:30:00-01:00"),
                json!("2026-11-24T12:00:00Z"),
                json!("2026-12-01"),
                Value::Null,
            ],
        ),
        (
            "body".into(),
            s(&["", "milk and eggs", "# Notes\n- [ ] MILK", "ünïcödé"]),
        ),
        ("scheduled".into(), vec![json!("2026-11-20"), Value::Null]),
        (
            "parent".into(),
            vec![
                json!(node(0).to_string()),
                json!(node(1).to_string()),
                Value::Null,
            ],
        ),
        (format!("link:blocks:{}", node(0)), flag()),
        (format!("link:relates:{}", node(2)), flag()),
        (
            "x-future".into(),
            vec![
                json!(1),
                json!("s"),
                json!({"a": [1, 2.5, null], "b": {"c": "d"}}),
                Value::Null,
                json!([true, {"e": -0.5}]),
                json!(u64::MAX),
                json!(i64::MIN),
            ],
        ),
    ]
});

/// One event of a run.
#[derive(Debug, Clone)]
enum Step {
    /// A replica's wall clock moves forward a little and it commits edits
    /// (node, field, value) as one batch.
    Edit {
        replica: Index,
        advance_ms: u64,
        edits: Vec<(usize, Index, Index)>,
    },
    /// Ops picked among all made so far (duplicates welcome) travel to one
    /// replica as one batch; the `true` ones are lost on the way and queued
    /// for a resend.
    Send {
        to: Index,
        picks: Vec<(Index, bool)>,
    },
    /// The ops lost on the way to a replica are re-sent, in batches.
    Resend { to: Index, batch: usize },
}

fn step() -> impl Strategy<Value = Step> {
    let edit = (
        any::<Index>(),
        0u64..3,
        proptest::collection::vec((0..NODES, any::<Index>(), any::<Index>()), 1..5),
    )
        .prop_map(|(replica, advance_ms, edits)| Step::Edit {
            replica,
            advance_ms,
            edits,
        });
    let send = (
        any::<Index>(),
        proptest::collection::vec((any::<Index>(), proptest::bool::weighted(0.25)), 1..12),
    )
        .prop_map(|(to, picks)| Step::Send { to, picks });
    let resend = (any::<Index>(), 1usize..6).prop_map(|(to, batch)| Step::Resend { to, batch });
    prop_oneof![3 => edit, 3 => send, 1 => resend]
}

fn script() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(step(), 5..100)
}

/// Replicas of one store type, with a record of what each must hold.
struct Sim<S> {
    replicas: Vec<Replica<S>>,
    clocks: Vec<Arc<ManualClock>>,
    /// Every op made, in the order it was made.
    all: Vec<Op>,
    /// The HLCs each replica holds (its own and those delivered to it).
    holds: Vec<HashSet<Hlc>>,
    /// Per replica, ops lost on the way to it, waiting to be re-sent.
    lost: Vec<Vec<Op>>,
}

impl<S: Store> Sim<S> {
    fn new(n: usize, mut make: impl FnMut() -> S) -> Self {
        let clocks: Vec<Arc<ManualClock>> = (0..n)
            .map(|_| Arc::new(ManualClock::new(BASE_MS)))
            .collect();
        let replicas = clocks
            .iter()
            .enumerate()
            .map(|(i, clock)| {
                Replica::open(make(), clock.clone(), DEFAULT_MAX_CLOCK_SKEW_MS, || {
                    rid(i as u8 + 1)
                })
                .expect("open a replica")
            })
            .collect();
        Self {
            replicas,
            clocks,
            all: Vec::new(),
            holds: vec![HashSet::new(); n],
            lost: vec![Vec::new(); n],
        }
    }

    fn run(&mut self, steps: &[Step]) {
        let n = self.replicas.len();
        for step in steps {
            match step {
                Step::Edit {
                    replica,
                    advance_ms,
                    edits,
                } => self.edit(replica.index(n), *advance_ms, edits),
                Step::Send { to, picks } => {
                    if self.all.is_empty() {
                        continue;
                    }
                    let to = to.index(n);
                    let mut batch = Vec::new();
                    for (pick, lost) in picks {
                        let op = self.all[pick.index(self.all.len())].clone();
                        if *lost {
                            self.lost[to].push(op);
                        } else {
                            batch.push(op);
                        }
                    }
                    self.deliver(to, &batch);
                }
                Step::Resend { to, batch } => {
                    let to = to.index(n);
                    self.resend(to, *batch);
                }
            }
        }
    }

    fn edit(&mut self, r: usize, advance_ms: u64, edits: &[(usize, Index, Index)]) {
        self.clocks[r].advance(advance_ms);
        let edits: Vec<Edit> = edits
            .iter()
            .map(|(n, f, v)| {
                let (field, values) = &FIELDS[f.index(FIELDS.len())];
                Edit::new(
                    node(*n),
                    field.clone(),
                    values[v.index(values.len())].clone(),
                )
            })
            .collect();
        let held_max = self.holds[r].iter().max().copied();
        let ops = self.replicas[r]
            .commit_local(&edits)
            .expect("commit local edits");
        assert_eq!(ops.len(), edits.len());
        for (i, op) in ops.iter().enumerate() {
            assert_eq!(op.hlc.replica, self.replicas[r].id());
            // The send rule: above every stamp this replica issued or received.
            assert!(
                held_max.is_none_or(|m| op.hlc > m),
                "{op:?} <= {held_max:?}"
            );
            assert!(i == 0 || op.hlc > ops[i - 1].hlc);
            self.holds[r].insert(op.hlc);
        }
        self.all.extend(ops);
        assert_eq!(
            self.replicas[r].store().op_count().unwrap(),
            self.holds[r].len() as u64
        );
    }

    /// Delivers one batch and checks each op's outcome against the record.
    fn deliver(&mut self, to: usize, batch: &[Op]) {
        if batch.is_empty() {
            return;
        }
        let outcomes = self.replicas[to]
            .receive(batch)
            .expect("receive a batch of valid ops");
        assert_eq!(outcomes.len(), batch.len());
        let mut in_batch = HashSet::new();
        for (op, outcome) in batch.iter().zip(&outcomes) {
            let duplicate = self.holds[to].contains(&op.hlc) || !in_batch.insert(op.hlc);
            if duplicate {
                assert_eq!(outcome, &Outcome::Duplicate, "{op:?}");
            } else {
                assert!(
                    matches!(outcome, Outcome::Applied | Outcome::Superseded),
                    "{op:?}: {outcome:?}"
                );
            }
        }
        self.holds[to].extend(in_batch);
        assert_eq!(
            self.replicas[to].store().op_count().unwrap(),
            self.holds[to].len() as u64,
            "op_count is not the number of distinct ops delivered"
        );
    }

    fn resend(&mut self, to: usize, batch: usize) {
        let lost = std::mem::take(&mut self.lost[to]);
        for chunk in lost.chunks(batch.max(1)) {
            self.deliver(to, chunk);
        }
    }

    /// Re-sends what was lost, then sends every op to every replica again,
    /// each in its own order and batch size.
    fn deliver_everything(&mut self) {
        for r in 0..self.replicas.len() {
            self.resend(r, 4);
            let mut order = self.all.clone();
            let shift = (r * 7).checked_rem(order.len()).unwrap_or(0);
            order.rotate_left(shift);
            if r % 2 == 1 {
                order.reverse();
            }
            for chunk in order.chunks(3 + r) {
                self.deliver(r, chunk);
            }
        }
    }
}

/// The registers the merge rule yields for `ops`: the greatest HLC per register.
fn expected_registers(ops: &[Op]) -> Vec<Register> {
    let mut best: BTreeMap<(NodeId, String), &Op> = BTreeMap::new();
    for op in ops {
        let slot = best.entry((op.node, op.field.clone())).or_insert(op);
        if op.hlc > slot.hlc {
            *slot = op;
        }
    }
    best.into_values()
        .map(|op| Register {
            node: op.node,
            field: op.field.clone(),
            value: op.value.clone(),
            hlc: op.hlc,
        })
        .collect()
}

/// The node views the expected registers yield, by id.
fn expected_nodes(registers: &[Register]) -> BTreeMap<NodeId, Node> {
    let mut by_node: BTreeMap<NodeId, Vec<&Register>> = BTreeMap::new();
    for r in registers {
        by_node.entry(r.node).or_default().push(r);
    }
    by_node
        .into_iter()
        .map(|(id, regs)| {
            let node =
                Node::from_registers(id, regs.iter().map(|r| (r.field.as_str(), &r.value, r.hlc)))
                    .expect("a node with registers");
            (id, node)
        })
        .collect()
}

fn queries() -> Vec<Query> {
    let q = Query::default;
    vec![
        q(),
        Query {
            include_deleted: true,
            ..q()
        },
        Query {
            kind: Some(Kind::Task),
            ..q()
        },
        Query {
            kind: Some(Kind::Note),
            include_deleted: true,
            ..q()
        },
        Query {
            status: vec![Status::Todo, Status::Doing],
            ..q()
        },
        Query {
            status: vec![Status::Done],
            include_deleted: true,
            ..q()
        },
        Query {
            tag: Some("x".into()),
            ..q()
        },
        Query {
            tag: Some("home".into()),
            include_deleted: true,
            ..q()
        },
        Query {
            text: Some("milk".into()),
            ..q()
        },
        Query {
            text: Some("É".into()),
            include_deleted: true,
            ..q()
        },
        Query {
            text: Some("\u{0}".into()),
            ..q()
        },
        Query {
            due_from: Some("2026-11-25".into()),
            due_to: Some("2026-11-30".into()),
            ..q()
        },
        Query {
            due_to: Some("2026-11-25".into()),
            include_deleted: true,
            ..q()
        },
        Query {
            due_from: Some("2026-11-26T00:00:00Z".into()),
            ..q()
        },
        Query {
            parent: Some(node(0)),
            ..q()
        },
        Query {
            kind: Some(Kind::Task),
            status: vec![Status::Todo, Status::Done],
            tag: Some("x".into()),
            include_deleted: true,
            ..q()
        },
        Query {
            limit: Some(2),
            include_deleted: true,
            ..q()
        },
    ]
}

/// The log holds every op of `all` exactly once, in strictly increasing seq.
fn check_log<S: Store>(store: &S, all: &[Op], who: &str) {
    let expected: HashMap<Hlc, &Op> = all.iter().map(|op| (op.hlc, op)).collect();
    let log = store.ops_after(0, usize::MAX).unwrap();
    let mut seen = HashSet::new();
    for (i, logged) in log.iter().enumerate() {
        if i > 0 {
            assert!(
                logged.seq > log[i - 1].seq,
                "{who}: seq {} after {}",
                logged.seq,
                log[i - 1].seq
            );
        }
        assert!(
            seen.insert(logged.op.hlc),
            "{who}: {} logged twice",
            logged.op.hlc
        );
        assert_eq!(
            Some(&&logged.op),
            expected.get(&logged.op.hlc),
            "{who}: a logged op differs from the op made"
        );
    }
    assert_eq!(log.len(), expected.len(), "{who}: the log misses ops");
    assert_eq!(store.op_count().unwrap(), expected.len() as u64, "{who}");
    assert_eq!(
        store.last_seq().unwrap(),
        log.last().map_or(0, |l| l.seq),
        "{who}"
    );
    assert_eq!(
        store.max_hlc().unwrap(),
        expected.keys().max().copied(),
        "{who}"
    );
}

/// Everything a reader can see of a store, for comparing two stores.
#[derive(Debug, PartialEq)]
struct View {
    registers: Vec<Register>,
    nodes: Vec<Option<Node>>,
    answers: Vec<Vec<Node>>,
}

fn view<S: Store>(store: &S) -> View {
    View {
        registers: store.registers().unwrap(),
        nodes: (0..NODES).map(|i| store.node(&node(i)).unwrap()).collect(),
        answers: queries().iter().map(|q| store.query(q).unwrap()).collect(),
    }
}

/// Checks every replica against the merge rule, the log rules and a reference
/// store (so against each other too).
fn check_converged<S: Store>(sim: &Sim<S>) {
    let registers = expected_registers(&sim.all);
    let nodes = expected_nodes(&registers);
    // The reference for every query: an in-memory store given all ops at once.
    let mut reference = MemoryStore::new();
    reference.apply_batch(&sim.all).unwrap();
    let reference = view(&reference);
    assert_eq!(reference.registers, registers);
    for (r, replica) in sim.replicas.iter().enumerate() {
        let who = format!("replica {r}");
        let store = replica.store();
        check_log(store, &sim.all, &who);
        let v = view(store);
        assert_eq!(
            v.registers, registers,
            "{who}: registers differ from the merge rule"
        );
        for i in 0..NODES {
            assert_eq!(v.nodes[i].as_ref(), nodes.get(&node(i)), "{who}: node {i}");
        }
        // The unfiltered queries, against the model.
        let mut live: Vec<Node> = nodes.values().cloned().collect();
        live.sort_by_key(|n| (n.created, n.id));
        assert_eq!(v.answers[1], live, "{who}: include_deleted");
        live.retain(|n| !n.deleted);
        assert_eq!(v.answers[0], live, "{who}: all");
        assert_eq!(v, reference, "{who} differs from the reference store");
    }
}

/// A tiny deterministic generator, for shuffles driven by a proptest seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Feeds `ops` to `replica` shuffled by `seed`, each op one to three times,
/// in batches of 1..=16.
fn feed<S: Store>(replica: &mut Replica<S>, ops: &[Op], seed: u64) {
    let mut rng = SplitMix(seed);
    let mut order: Vec<Op> = Vec::new();
    for op in ops {
        for _ in 0..=rng.below(3) {
            order.push(op.clone());
        }
    }
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut rest = &order[..];
    while !rest.is_empty() {
        let take = (1 + rng.below(16)).min(rest.len());
        replica.receive(&rest[..take]).expect("receive valid ops");
        rest = &rest[take..];
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn five_memory_replicas_converge(steps in script()) {
        let mut sim = Sim::new(5, MemoryStore::new);
        sim.run(&steps);
        sim.deliver_everything();
        check_converged(&sim);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn five_sqlite_replicas_converge(steps in script()) {
        let mut sim = Sim::new(5, || SqliteStore::open_in_memory().unwrap());
        sim.run(&steps);
        sim.deliver_everything();
        check_converged(&sim);
    }

    #[test]
    fn sqlite_and_memory_stores_agree_exactly(
        steps in script(),
        seed_sqlite in any::<u64>(),
        seed_memory in any::<u64>(),
    ) {
        // Five authors make the ops; two fresh replicas receive all of them,
        // each in its own order, with duplicates.
        let mut authors = Sim::new(5, MemoryStore::new);
        authors.run(&steps);
        let clock = Arc::new(ManualClock::new(BASE_MS));
        let mut sqlite = Replica::open(
            SqliteStore::open_in_memory().unwrap(),
            clock.clone(),
            DEFAULT_MAX_CLOCK_SKEW_MS,
            || rid(0xa0),
        )
        .unwrap();
        let mut memory =
            Replica::open(MemoryStore::new(), clock, DEFAULT_MAX_CLOCK_SKEW_MS, || rid(0xb0))
                .unwrap();
        feed(&mut sqlite, &authors.all, seed_sqlite);
        feed(&mut memory, &authors.all, seed_memory);
        check_log(sqlite.store(), &authors.all, "sqlite");
        check_log(memory.store(), &authors.all, "memory");
        let (a, b) = (view(sqlite.store()), view(memory.store()));
        prop_assert_eq!(&a.registers, &expected_registers(&authors.all));
        prop_assert_eq!(a, b);
    }
}

fn op(wall: u64, counter: u16, replica: u8, node_ix: usize, field: &str, value: Value) -> Op {
    Op {
        hlc: Hlc {
            wall_ms: wall,
            counter,
            replica: rid(replica),
        },
        node: node(node_ix),
        field: field.to_owned(),
        value,
    }
}

/// DESIGN §4: spoke A's ops stamped at 100 000 reach the hub and a reader
/// pulls them; spoke B, offline, then pushes ops stamped 60 000–70 000. A seq
/// cursor finds B's ops; an HLC cursor ("after the greatest HLC seen") never
/// would. This is why cursors are seqs.
fn late_arriving_ops<S: Store>(mut hub: S) {
    let spoke = |id: u8, wall: u64| {
        let clock = Arc::new(ManualClock::new(wall));
        let replica = Replica::open(
            MemoryStore::new(),
            clock.clone(),
            DEFAULT_MAX_CLOCK_SKEW_MS,
            || rid(id),
        )
        .unwrap();
        (replica, clock)
    };
    let (mut a, _) = spoke(0xa, 100_000);
    let a_ops = a
        .commit_local(&[
            Edit::new(node(0), "kind", "task"),
            Edit::new(node(0), "title", "from A"),
            Edit::new(node(1), "title", "also from A"),
        ])
        .unwrap();
    assert!(a_ops.iter().all(|op| op.hlc.wall_ms == 100_000));
    hub.apply_batch(&a_ops).unwrap();

    // A reader pulls everything there is.
    let first_pull = hub.ops_after(0, usize::MAX).unwrap();
    assert_eq!(first_pull.len(), a_ops.len());
    let cursor = first_pull.last().unwrap().seq;
    assert_eq!(cursor, hub.last_seq().unwrap());
    let max_seen_hlc = first_pull.iter().map(|l| l.op.hlc).max().unwrap();
    let mut reader = MemoryStore::new();
    reader
        .apply_batch(&first_pull.iter().map(|l| l.op.clone()).collect::<Vec<_>>())
        .unwrap();

    // Spoke B was offline since before A's edits; its clock is behind.
    let (mut b, b_clock) = spoke(0xb, 60_000);
    let mut b_ops = b
        .commit_local(&[
            Edit::new(node(2), "kind", "note"),
            Edit::new(node(2), "title", "from B"),
        ])
        .unwrap();
    b_clock.set(65_000);
    b_ops.extend(
        b.commit_local(&[Edit::new(node(0), "title", "older edit from B")])
            .unwrap(),
    );
    b_clock.set(70_000);
    b_ops.extend(
        b.commit_local(&[Edit::new(node(2), "tag:x", true)])
            .unwrap(),
    );
    assert!(
        b_ops
            .iter()
            .all(|op| (60_000..=70_000).contains(&op.hlc.wall_ms) && op.hlc < max_seen_hlc)
    );
    let outcomes = hub.apply_batch(&b_ops).unwrap();
    // B's title edit of node 0 loses to A's, but it is logged all the same.
    assert_eq!(
        outcomes,
        vec![
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Superseded,
            Outcome::Applied
        ]
    );

    // The seq cursor returns exactly B's ops, in arrival order.
    let second_pull = hub.ops_after(cursor, usize::MAX).unwrap();
    let pulled: Vec<Op> = second_pull.iter().map(|l| l.op.clone()).collect();
    assert_eq!(pulled, b_ops);
    assert!(second_pull.iter().all(|l| l.seq > cursor));
    reader.apply_batch(&pulled).unwrap();
    assert_eq!(reader.registers().unwrap(), hub.registers().unwrap());

    // An HLC cursor would have missed all of them: nothing in the log is
    // stamped after the greatest HLC the reader has seen.
    let by_hlc: Vec<Op> = hub
        .ops_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|l| l.op)
        .filter(|op| op.hlc > max_seen_hlc)
        .collect();
    assert!(
        by_hlc.is_empty(),
        "an HLC cursor found {by_hlc:?}, so the scenario no longer shows why cursors are seqs"
    );
    assert_eq!(hub.op_count().unwrap(), (a_ops.len() + b_ops.len()) as u64);
}

#[test]
fn late_arriving_ops_are_found_by_a_seq_cursor_and_missed_by_an_hlc_cursor() {
    late_arriving_ops(SqliteStore::open_in_memory().unwrap());
    late_arriving_ops(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    late_arriving_ops(
        SqliteStore::open(dir.path().join("hub.db"), &OpenOptions::default()).unwrap(),
    );
}

fn skew_refusal_writes_nothing_and_a_retry_succeeds<S: Store>(store: S) {
    const SKEW: u64 = 300_000;
    let clock = Arc::new(ManualClock::new(BASE_MS));
    let mut replica = Replica::open(store, clock.clone(), SKEW, || rid(1)).unwrap();
    let batch = vec![
        op(BASE_MS - 5, 0, 2, 0, "kind", json!("task")),
        op(BASE_MS + 10, 0, 2, 0, "title", json!("in time")),
        op(
            BASE_MS + 400_000,
            0,
            3,
            1,
            "title",
            json!("from a clock 400 s fast"),
        ),
        op(BASE_MS + 20, 0, 2, 0, "status", json!("todo")),
    ];
    let err = replica.receive(&batch).unwrap_err();
    let message = err.to_string();
    match &err {
        ReplicaError::Store(StoreError::BatchRefused {
            index: 2,
            refusal:
                Refusal::ClockSkew(ClockError::Skew {
                    hlc,
                    ahead_ms: 400_000,
                    max_skew_ms: SKEW,
                }),
        }) => assert_eq!(*hlc, batch[2].hlc),
        other => panic!("expected a clock-skew refusal of op 2, got {other:?}"),
    }
    assert!(message.contains("400000 ms ahead"), "{message}");
    assert!(message.contains(&batch[2].hlc.to_string()), "{message}");
    assert!(
        message.starts_with("op 2 of the batch was refused"),
        "{message}"
    );
    assert!(!message.ends_with('.'), "{message}");
    // Nothing was written, and the clock did not jump to the refused stamp.
    assert_eq!(replica.store().op_count().unwrap(), 0);
    assert!(replica.store().registers().unwrap().is_empty());
    let local = replica
        .commit_local(&[Edit::new(node(2), "title", "local")])
        .unwrap();
    assert_eq!(local[0].hlc.wall_ms, BASE_MS);

    // The sender keeps the batch; once the receiver's clock catches up to
    // within the bound (here: exactly at it), the same batch goes through.
    clock.advance(100_000);
    let outcomes = replica.receive(&batch).unwrap();
    assert_eq!(outcomes, vec![Outcome::Applied; 4]);
    check_log(
        replica.store(),
        &[local, batch.clone()].concat(),
        "after the retry",
    );
    let next = replica
        .commit_local(&[Edit::new(node(2), "title", "after")])
        .unwrap();
    assert!(
        next[0].hlc > batch[2].hlc,
        "the receive rule was not applied"
    );
}

#[test]
fn receive_refuses_a_batch_with_an_op_beyond_the_clock_skew_and_accepts_it_later() {
    skew_refusal_writes_nothing_and_a_retry_succeeds(MemoryStore::new());
    skew_refusal_writes_nothing_and_a_retry_succeeds(SqliteStore::open_in_memory().unwrap());
}

#[test]
fn a_reopened_replica_takes_a_fresh_id_and_stamps_past_its_log_when_the_clock_went_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heph.db");
    let clock = Arc::new(ManualClock::new(BASE_MS));
    let open = |clock: &Arc<ManualClock>, id: u8| {
        let store = SqliteStore::open(&path, &OpenOptions::default()).unwrap();
        Replica::open(store, clock.clone(), DEFAULT_MAX_CLOCK_SKEW_MS, || rid(id)).unwrap()
    };
    let mut replica = open(&clock, 0x51);
    assert_eq!(replica.id(), rid(0x51));
    let mine = replica
        .commit_local(&[
            Edit::new(node(0), "kind", "task"),
            Edit::new(node(0), "title", "before the restart"),
        ])
        .unwrap();
    // An op from a peer whose clock runs 4 minutes ahead (within the skew).
    let theirs = op(
        BASE_MS + 240_000,
        9,
        0x77,
        1,
        "title",
        json!("from the future"),
    );
    replica.receive(std::slice::from_ref(&theirs)).unwrap();
    drop(replica);

    // The device restarts with its wall clock an hour behind.
    clock.set(BASE_MS - 3_600_000);
    let mut replica = open(&clock, 0x99);
    // A replica id names one run, never the database (DESIGN §4: a copied
    // data directory must not make two writers share one).
    assert_eq!(
        replica.id(),
        rid(0x99),
        "the reopened replica kept the old id"
    );
    let max = replica.store().max_hlc().unwrap().unwrap();
    assert_eq!(max, theirs.hlc);
    assert!(mine.iter().all(|op| op.hlc < max));
    let after = replica
        .commit_local(&[
            Edit::new(node(0), "title", "after the restart"),
            Edit::new(node(0), "status", "done"),
        ])
        .unwrap();
    assert!(after[0].hlc > max, "{:?} is not past {max:?}", after[0].hlc);
    assert!(after[1].hlc > after[0].hlc);
    assert!(after.iter().all(|op| op.hlc.replica == rid(0x99)));
    // And the local edit wins over everything it was made after.
    let n = replica.store().node(&node(0)).unwrap().unwrap();
    assert_eq!(n.title.as_deref(), Some("after the restart"));
    check_log(
        replica.store(),
        &[mine, vec![theirs], after].concat(),
        "reopened replica",
    );
}

/// Two writers that share a replica id (a database copied under the old
/// rule, or a running virtual machine cloned) mint the same HLCs. The hub
/// refuses the second push as a collision instead of swallowing it as a
/// duplicate; the pusher re-stamps its unpushed ops and pushes again; a third
/// copy that never pushed meets the collision on pull and repairs there.
/// Every op made survives, and every replica ends with the same registers.
/// The hub the copies of `shared_replica_ids_collide_and_are_repaired` sync with.
const HUB: &str = "https://hub.example";

/// The ops a replica would push to `HUB` (its own, from the start).
fn own_ops<S: Store>(store: &S) -> Vec<Op> {
    store
        .outgoing(0, 100, HUB)
        .unwrap()
        .ops
        .into_iter()
        .map(|l| l.op)
        .collect()
}

fn shared_replica_ids_collide_and_are_repaired<S: Store>(mut make: impl FnMut() -> S) {
    let clock = Arc::new(ManualClock::new(BASE_MS));
    let mut hub = Replica::open(make(), clock.clone(), DEFAULT_MAX_CLOCK_SKEW_MS, || {
        rid(0xb0)
    })
    .unwrap();
    let shared = rid(0x5c);
    let mut copies: Vec<Replica<S>> = (0..3)
        .map(|_| {
            Replica::open(make(), clock.clone(), DEFAULT_MAX_CLOCK_SKEW_MS, || shared).unwrap()
        })
        .collect();
    let mut fresh_ids = (0xd0u8..).map(rid);
    let mut fresh = || fresh_ids.next().unwrap();
    // The same moment on each copy, a different task: the same HLCs.
    let made: Vec<Vec<Op>> = copies
        .iter_mut()
        .enumerate()
        .map(|(i, r)| {
            r.commit_local(&[
                Edit::new(node(i), "kind", "task"),
                Edit::new(node(i), "title", format!("from copy {i}")),
            ])
            .unwrap()
        })
        .collect();
    assert_eq!(made[0][1].hlc, made[1][1].hlc);
    // A later edit on copy 1 keeps winning its register after the repair.
    clock.advance(5);
    let later = copies[1]
        .commit_local(&[Edit::new(node(1), "title", "renamed on copy 1")])
        .unwrap();

    // Copy 0 pushes first: accepted.
    hub.receive(&made[0]).unwrap();
    // Copy 1's push collides: refused whole, nothing written.
    let push1 = copies[1].store().outgoing(0, 100, HUB).unwrap();
    let ops1: Vec<Op> = push1.ops.iter().map(|l| l.op.clone()).collect();
    let before = hub.store().op_count().unwrap();
    let Err(ReplicaError::Store(StoreError::BatchRefused {
        index: 0,
        refusal: Refusal::Collision { hlc },
    })) = hub.receive(&ops1)
    else {
        panic!("the colliding push was not refused as a collision");
    };
    assert_eq!(hlc, made[0][0].hlc);
    assert_eq!(hub.store().op_count().unwrap(), before);
    // Copy 1 repairs: its unpushed ops stamped by the shared id move.
    let repaired = copies[1]
        .restamp_unpushed(0, HUB, hlc.replica, &mut fresh)
        .unwrap();
    assert_eq!(repaired.moved.len(), 3);
    // Each keeps its wall time and counter (its place among every op it is
    // not concurrent with) under a fresh id, greater than the old stamp.
    assert!(repaired.moved.iter().all(|(old, new)| new.replica != shared
        && (new.wall_ms, new.counter) == (old.wall_ms, old.counter)
        && new > old));
    assert_ne!(
        copies[1].id(),
        shared,
        "copy 1 still stamps with the shared id"
    );
    let node1 = copies[1].store().node(&node(1)).unwrap().unwrap();
    assert_eq!(node1.title.as_deref(), Some("renamed on copy 1"));
    let ops1 = own_ops(copies[1].store());
    assert!(
        hub.receive(&ops1)
            .unwrap()
            .iter()
            .all(|o| *o == Outcome::Applied || *o == Outcome::Superseded)
    );

    // Copy 2 never pushed: pulling the hub's log finds the collision first.
    let from_hub: Vec<Op> = hub
        .store()
        .ops_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|l| l.op)
        .collect();
    let (_, restamped) = copies[2]
        .receive_repairing(&from_hub, Some(HUB), &[("sync.pulled", "5")], &mut fresh)
        .unwrap();
    assert_eq!(restamped.moved.len(), 2, "{restamped:?}");
    assert_eq!(
        copies[2].store().meta("sync.pulled").unwrap().as_deref(),
        Some("5")
    );
    assert_ne!(copies[2].id(), shared);
    let ops2 = own_ops(copies[2].store());
    assert_eq!(ops2.len(), 2, "only copy 2's own ops go back");
    hub.receive(&ops2).unwrap();

    // Everyone gets everything; nothing made was lost.
    let all: Vec<Op> = hub
        .store()
        .ops_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|l| l.op)
        .collect();
    assert_eq!(all.len(), 2 + 3 + 2);
    for r in copies.iter_mut() {
        let (_, more) = r
            .receive_repairing(&all, Some(HUB), &[], &mut fresh)
            .unwrap();
        assert!(more.moved.is_empty(), "{more:?}");
        assert_eq!(
            r.store().registers().unwrap(),
            hub.store().registers().unwrap()
        );
    }
    let titles: BTreeMap<NodeId, Option<String>> = (0..3)
        .map(|i| (node(i), hub.store().node(&node(i)).unwrap().unwrap().title))
        .collect();
    assert_eq!(titles[&node(0)].as_deref(), Some("from copy 0"));
    assert_eq!(titles[&node(1)].as_deref(), Some("renamed on copy 1"));
    assert_eq!(titles[&node(2)].as_deref(), Some("from copy 2"));
    assert!(later[0].hlc > made[1][1].hlc);
}

#[test]
fn shared_replica_ids_collide_and_are_repaired_in_memory() {
    shared_replica_ids_collide_and_are_repaired(MemoryStore::new);
}

#[test]
fn shared_replica_ids_collide_and_are_repaired_in_sqlite() {
    shared_replica_ids_collide_and_are_repaired(|| SqliteStore::open_in_memory().unwrap());
}
