//! The conformance suite every [`Store`] must pass.
//!
//! Each check is a generic function taking a fresh store; the
//! [`store_conformance!`](crate::store_conformance) macro turns them into
//! `#[test]`s for one implementation. SQLite, in-memory and any later store
//! (PostgreSQL) run the same suite, so they cannot disagree.

use serde_json::{Value, json};

use super::{Resolved, Store, StoreError, Transaction};
use crate::field::NodeId;
use crate::hlc::{Hlc, ReplicaId};
use crate::node::{Kind, Priority, Query, Status};
use crate::op::{Op, Outcome, Refusal};

/// A node id made from one byte, for readable tests.
pub fn node_id(n: u8) -> NodeId {
    NodeId::from_random_bytes([n; 16])
}

/// An op stamped `(wall, counter)` by replica `replica`.
pub fn op(wall: u64, counter: u16, replica: u8, node: u8, field: &str, value: Value) -> Op {
    Op {
        hlc: Hlc {
            wall_ms: wall,
            counter,
            replica: ReplicaId([replica; 16]),
        },
        node: node_id(node),
        field: field.to_owned(),
        value,
    }
}

fn task(wall: u64, node: u8, title: &str) -> Vec<Op> {
    vec![
        op(wall, 0, 1, node, "kind", json!("task")),
        op(wall, 1, 1, node, "title", json!(title)),
        op(wall, 2, 1, node, "status", json!("todo")),
    ]
}

pub fn apply_and_read_back<S: Store>(mut s: S) {
    let outcomes = s.apply_batch(&task(1000, 1, "Buy milk")).unwrap();
    assert_eq!(outcomes, vec![Outcome::Applied; 3]);
    let n = s.node(&node_id(1)).unwrap().unwrap();
    assert_eq!(n.kind, Some(Kind::Task));
    assert_eq!(n.title.as_deref(), Some("Buy milk"));
    assert_eq!(n.status, Some(Status::Todo));
    assert_eq!(n.priority, Priority::None);
    assert_eq!(n.created.wall_ms, 1000);
    assert_eq!((n.updated.wall_ms, n.updated.counter), (1000, 2));
    assert_eq!(s.registers().unwrap().len(), 3);
    assert_eq!(s.op_count().unwrap(), 3);
    assert_eq!(s.last_seq().unwrap(), 3);
    assert_eq!(s.max_hlc().unwrap().map(|h| h.counter), Some(2));
    assert!(s.node(&node_id(2)).unwrap().is_none());
}

pub fn greatest_hlc_wins_in_any_order<S: Store>(mut s: S) {
    let older = op(1000, 0, 2, 1, "title", json!("older"));
    let newer = op(1000, 0, 3, 1, "title", json!("newer")); // same wall time, greater replica
    assert_eq!(
        s.apply_batch(std::slice::from_ref(&newer)).unwrap(),
        vec![Outcome::Applied]
    );
    assert_eq!(
        s.apply_batch(std::slice::from_ref(&older)).unwrap(),
        vec![Outcome::Superseded]
    );
    assert_eq!(
        s.node(&node_id(1)).unwrap().unwrap().title.as_deref(),
        Some("newer")
    );
    // Within one batch, in either order.
    let a = op(2000, 0, 1, 2, "title", json!("a"));
    let b = op(2000, 1, 1, 2, "title", json!("b"));
    assert_eq!(
        s.apply_batch(&[b.clone(), a.clone()]).unwrap(),
        vec![Outcome::Applied, Outcome::Superseded]
    );
    assert_eq!(
        s.node(&node_id(2)).unwrap().unwrap().title.as_deref(),
        Some("b")
    );
    let c = op(3000, 0, 1, 3, "title", json!("c"));
    let d = op(3000, 1, 1, 3, "title", json!("d"));
    assert_eq!(
        s.apply_batch(&[c, d]).unwrap(),
        vec![Outcome::Superseded, Outcome::Applied]
    );
    assert_eq!(
        s.node(&node_id(3)).unwrap().unwrap().title.as_deref(),
        Some("d")
    );
    // Every op is logged, winners and losers alike.
    assert_eq!(s.op_count().unwrap(), 6);
}

pub fn duplicates_change_nothing<S: Store>(mut s: S) {
    let ops = task(1000, 1, "Buy milk");
    s.apply_batch(&ops).unwrap();
    let before = s.registers().unwrap();
    assert_eq!(s.apply_batch(&ops).unwrap(), vec![Outcome::Duplicate; 3]);
    let twice = [ops[0].clone(), ops[0].clone()];
    assert_eq!(s.apply_batch(&twice).unwrap(), vec![Outcome::Duplicate; 2]);
    let fresh = op(5000, 0, 1, 1, "priority", json!("high"));
    assert_eq!(
        s.apply_batch(&[fresh.clone(), fresh]).unwrap(),
        vec![Outcome::Applied, Outcome::Duplicate]
    );
    assert_eq!(s.op_count().unwrap(), 4);
    assert_eq!(s.registers().unwrap().len(), before.len() + 1);
    let seqs: Vec<u64> = s.ops_after(0, 100).unwrap().iter().map(|l| l.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

/// Duplicate detection must hold for a small batch spread over a long
/// stretch of history too (the SQLite store switches strategy there).
pub fn duplicates_are_found_across_a_long_history<S: Store>(mut s: S) {
    let history: Vec<Op> = (1..=500)
        .map(|i| op(i, 0, 1, (i % 7) as u8, "title", json!(format!("t{i}"))))
        .collect();
    s.apply_batch(&history).unwrap();
    let batch = [
        history[0].clone(),
        op(250, 1, 2, 9, "title", json!("new")),
        history[499].clone(),
        history[300].clone(),
        op(501, 0, 2, 9, "title", json!("newer")),
    ];
    assert_eq!(
        s.apply_batch(&batch).unwrap(),
        vec![
            Outcome::Duplicate,
            Outcome::Superseded,
            Outcome::Duplicate,
            Outcome::Duplicate,
            Outcome::Applied
        ]
    );
    assert_eq!(s.op_count().unwrap(), 502);
}

pub fn ops_after_pages_in_seq_order<S: Store>(mut s: S) {
    let ops: Vec<Op> = (0..25)
        .map(|i| op(1000 + i, 0, 1, 1, "title", json!(format!("v{i}"))))
        .collect();
    for chunk in ops.chunks(7) {
        s.apply_batch(chunk).unwrap();
    }
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = s.ops_after(after, 10).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        for l in &page {
            assert!(l.seq > after, "seq {} after {after}", l.seq);
            after = l.seq;
            seen.push(l.op.clone());
        }
    }
    assert_eq!(seen, ops);
    assert!(s.ops_after(u64::MAX, 10).unwrap().is_empty());
    assert!(s.ops_after(3, 0).unwrap().is_empty());
}

/// DESIGN §4: an op with an older HLC that arrives after newer ones is still
/// found by a reader who has already read past the newer ones.
pub fn late_arriving_op_is_visible_through_ops_after<S: Store>(mut s: S) {
    s.apply_batch(&[op(100_000, 0, 1, 1, "title", json!("new"))])
        .unwrap();
    let cursor = s.last_seq().unwrap();
    let late = op(
        60_000,
        0,
        2,
        2,
        "title",
        json!("stamped earlier, arrived later"),
    );
    assert_eq!(
        s.apply_batch(std::slice::from_ref(&late)).unwrap(),
        vec![Outcome::Applied]
    );
    let page = s.ops_after(cursor, 100).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].op, late);
    assert!(page[0].seq > cursor);
}

pub fn a_batch_with_one_invalid_op_writes_nothing<S: Store>(mut s: S) {
    let mut ops = task(1000, 1, "Buy milk");
    ops.push(op(1000, 3, 1, 1, "status", json!("finished")));
    ops.push(op(1000, 4, 1, 1, "priority", json!("high")));
    match s.apply_batch(&ops) {
        Err(StoreError::BatchRefused {
            index,
            refusal: Refusal::Invalid(inv),
        }) => {
            assert_eq!(index, 3);
            assert_eq!(inv.field, "status");
        }
        other => panic!("expected BatchRefused, got {other:?}"),
    }
    assert_eq!(s.op_count().unwrap(), 0);
    assert!(s.node(&node_id(1)).unwrap().is_none());
    // The transaction-level apply reports the refusal per op.
    let mut tx = s.begin().unwrap();
    let outcomes = tx.apply(&ops).unwrap();
    assert!(matches!(outcomes[3], Outcome::Refused(Refusal::Invalid(_))));
    assert_eq!(outcomes[4], Outcome::Applied);
    drop(tx);
    assert_eq!(
        s.op_count().unwrap(),
        0,
        "a dropped transaction wrote something"
    );
}

pub fn unknown_fields_are_kept<S: Store>(mut s: S) {
    let future = op(1000, 5, 1, 1, "x-colour", json!({"rgb": [1, 2, 3]}));
    let mut ops = task(1000, 1, "t");
    ops.push(future.clone());
    s.apply_batch(&ops).unwrap();
    let n = s.node(&node_id(1)).unwrap().unwrap();
    assert_eq!(n.extra.get("x-colour"), Some(&json!({"rgb": [1, 2, 3]})));
    let logged = s.ops_after(0, 10).unwrap();
    assert_eq!(logged.last().unwrap().op, future);
}

pub fn meta_round_trips<S: Store>(mut s: S) {
    assert_eq!(s.meta("k").unwrap(), None);
    let mut tx = s.begin().unwrap();
    tx.set_meta("k", "v1").unwrap();
    tx.set_meta("k", "v2").unwrap();
    tx.commit().unwrap();
    assert_eq!(s.meta("k").unwrap().as_deref(), Some("v2"));
}

fn ids<S: Store>(s: &S, q: Query) -> Vec<u8> {
    s.query(&q)
        .unwrap()
        .iter()
        .map(|n| (1..=20).find(|&i| node_id(i) == n.id).unwrap())
        .collect()
}

pub fn queries_select_by_every_criterion<S: Store>(mut s: S) {
    let mut ops = Vec::new();
    ops.extend(task(1001, 1, "Buy milk"));
    ops.extend(task(1002, 2, "Write report"));
    ops.extend(task(1003, 3, "Call Mum"));
    ops.push(op(1004, 0, 1, 4, "kind", json!("note")));
    ops.push(op(1004, 1, 1, 4, "title", json!("Recipes")));
    ops.push(op(
        1004,
        2,
        1,
        4,
        "body",
        json!("Pancakes need MILK and eggs"),
    ));
    ops.push(op(1005, 0, 1, 1, "tag:home", json!(true)));
    ops.push(op(1005, 1, 1, 2, "tag:work", json!(true)));
    ops.push(op(1005, 2, 1, 3, "tag:home", json!(true)));
    ops.push(op(1006, 0, 1, 3, "tag:home", json!(false)));
    ops.push(op(1007, 0, 1, 1, "due", json!("2026-11-25")));
    ops.push(op(1007, 1, 1, 2, "due", json!("2026-11-25T23:30:00-01:00"))); // 2026-11-26 00:30Z
    ops.push(op(1007, 2, 1, 3, "due", json!("2026-11-24T12:00:00Z")));
    ops.push(op(1008, 0, 1, 2, "status", json!("done")));
    ops.push(op(1009, 0, 1, 3, "parent", json!(node_id(4).to_string())));
    ops.push(op(1010, 0, 1, 5, "kind", json!("task")));
    ops.push(op(1010, 1, 1, 5, "title", json!("Gone")));
    ops.push(op(1010, 2, 1, 5, "deleted", json!(true)));
    s.apply_batch(&ops).unwrap();

    let q = Query::default;
    assert_eq!(ids(&s, q()), vec![1, 2, 3, 4]);
    assert_eq!(
        ids(
            &s,
            Query {
                include_deleted: true,
                ..q()
            }
        ),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                kind: Some(Kind::Note),
                ..q()
            }
        ),
        vec![4]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                kind: Some(Kind::Task),
                ..q()
            }
        ),
        vec![1, 2, 3]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                status: vec![Status::Todo],
                ..q()
            }
        ),
        vec![1, 3]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                status: vec![Status::Done, Status::Todo],
                ..q()
            }
        ),
        vec![1, 2, 3]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                tag: Some("home".into()),
                ..q()
            }
        ),
        vec![1]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                tag: Some("work".into()),
                ..q()
            }
        ),
        vec![2]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                tag: Some("none".into()),
                ..q()
            }
        ),
        Vec::<u8>::new()
    );
    assert_eq!(
        ids(
            &s,
            Query {
                parent: Some(node_id(4)),
                ..q()
            }
        ),
        vec![3]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                text: Some("milk".into()),
                ..q()
            }
        ),
        vec![1, 4]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                text: Some("MUM".into()),
                ..q()
            }
        ),
        vec![3]
    );
    let due = |from: Option<&str>, to: Option<&str>| Query {
        due_from: from.map(Into::into),
        due_to: to.map(Into::into),
        ..q()
    };
    assert_eq!(ids(&s, due(None, Some("2026-11-25"))), vec![1, 3]);
    assert_eq!(ids(&s, due(Some("2026-11-25"), None)), vec![1, 2]);
    assert_eq!(
        ids(&s, due(Some("2026-11-25"), Some("2026-11-25"))),
        vec![1]
    );
    assert_eq!(
        ids(
            &s,
            due(
                Some("2026-11-26T00:00:00Z"),
                Some("2026-11-26T01:30:00+01:00")
            )
        ),
        vec![2]
    );
    assert_eq!(
        ids(&s, due(Some("2026-11-24T12:00:01Z"), Some("2026-11-24"))),
        Vec::<u8>::new()
    );
    assert_eq!(
        ids(
            &s,
            Query {
                limit: Some(2),
                ..q()
            }
        ),
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &s,
            Query {
                kind: Some(Kind::Task),
                tag: Some("work".into()),
                status: vec![Status::Done],
                ..q()
            }
        ),
        vec![2]
    );
    assert!(matches!(
        s.query(&due(Some("next week"), None)),
        Err(StoreError::Query(_))
    ));
    assert_eq!(
        s.tag_counts().unwrap(),
        vec![("home".to_owned(), 1), ("work".to_owned(), 1)]
    );
    let n3 = s.node(&node_id(3)).unwrap().unwrap();
    assert!(n3.tags.is_empty(), "a tag set to false is removed");
    assert_eq!(n3.parent, Some(node_id(4)));
}

pub fn prefixes_resolve<S: Store>(mut s: S) {
    // node_id(0x11) starts "11111111-", node_id(0x12) "12121212-".
    let mut ops = task(1000, 0x11, "a");
    ops.extend(task(1001, 0x12, "b"));
    ops.push(op(1002, 0, 1, 0x13, "title", json!("c")));
    ops.push(op(1002, 1, 1, 0x13, "deleted", json!(true)));
    s.apply_batch(&ops).unwrap();
    assert_eq!(
        s.resolve_prefix("111", false).unwrap(),
        Resolved::One(node_id(0x11))
    );
    assert_eq!(
        s.resolve_prefix(node_id(0x12).as_str(), false).unwrap(),
        Resolved::One(node_id(0x12))
    );
    assert_eq!(
        s.resolve_prefix("1", false).unwrap(),
        Resolved::Ambiguous(vec![node_id(0x11), node_id(0x12)])
    );
    assert_eq!(s.resolve_prefix("13", false).unwrap(), Resolved::NotFound);
    assert_eq!(
        s.resolve_prefix("13", true).unwrap(),
        Resolved::One(node_id(0x13))
    );
    assert_eq!(s.resolve_prefix("zz", false).unwrap(), Resolved::NotFound);
    assert_eq!(s.resolve_prefix("", false).unwrap(), Resolved::NotFound);
    assert_eq!(s.resolve_prefix("1%", false).unwrap(), Resolved::NotFound);
}

/// Ops record where they came from; the first origin wins (a duplicate
/// arriving from elsewhere does not relabel it).
pub fn origins_are_recorded_and_read_back<S: Store>(mut s: S) {
    let local = op(1000, 0, 1, 1, "title", json!("local"));
    let pulled = op(1001, 0, 2, 1, "priority", json!("high"));
    s.apply_batch(std::slice::from_ref(&local)).unwrap();
    s.apply_batch_from(std::slice::from_ref(&pulled), Some("https://hub.example"))
        .unwrap();
    assert_eq!(s.origin(&local.hlc).unwrap(), Some(None));
    assert_eq!(
        s.origin(&pulled.hlc).unwrap(),
        Some(Some("https://hub.example".to_owned()))
    );
    let unknown = op(9, 0, 9, 9, "title", json!("never logged")).hlc;
    assert_eq!(s.origin(&unknown).unwrap(), None);
    // A duplicate from another origin changes nothing.
    s.apply_batch_from(std::slice::from_ref(&local), Some("https://other.example"))
        .unwrap();
    assert_eq!(s.origin(&local.hlc).unwrap(), Some(None));
    // Inside a transaction too; a dropped transaction records nothing.
    let later = op(1002, 0, 2, 2, "title", json!("later"));
    let mut tx = s.begin().unwrap();
    tx.apply_from(std::slice::from_ref(&later), Some("https://hub.example"))
        .unwrap();
    drop(tx);
    assert_eq!(s.origin(&later.hlc).unwrap(), None);
}

/// `outgoing` skips the ops of one origin, pages with `limit`, and reports
/// how far it scanned so the push cursor can pass skipped ops.
pub fn outgoing_skips_one_origin_and_pages<S: Store>(mut s: S) {
    let hub = "https://hub.example";
    let mut mine = Vec::new();
    for i in 0..6u64 {
        let own = op(1000 + i, 0, 1, 1, "title", json!(format!("own {i}")));
        let theirs = op(1000 + i, 1, 2, 2, "title", json!(format!("theirs {i}")));
        let other = op(1000 + i, 2, 3, 3, "title", json!(format!("other {i}")));
        s.apply_batch(std::slice::from_ref(&own)).unwrap();
        s.apply_batch_from(std::slice::from_ref(&theirs), Some(hub))
            .unwrap();
        s.apply_batch_from(std::slice::from_ref(&other), Some("https://other.example"))
            .unwrap();
        mine.push(own);
        mine.push(other);
    }
    // 18 ops: seqs 1..=18; per round own (3k+1), theirs (3k+2), other (3k+3).
    assert_eq!(s.count_outgoing(0, hub).unwrap(), 12);
    assert_eq!(s.count_outgoing(16, hub).unwrap(), 1);
    let mut after = 0;
    let mut sent = Vec::new();
    loop {
        let page = s.outgoing(after, 5, hub).unwrap();
        assert!(page.ops.len() <= 5);
        assert!(page.scanned_to >= after);
        for l in &page.ops {
            assert!(l.seq > after && l.seq <= page.scanned_to);
        }
        sent.extend(page.ops.iter().map(|l| l.op.clone()));
        if page.scanned_to == after {
            break;
        }
        after = page.scanned_to;
    }
    assert_eq!(sent, mine);
    assert_eq!(after, 18);
    // Only skipped ops left: the cursor still moves to the end.
    s.apply_batch_from(&[op(2000, 0, 2, 2, "title", json!("t"))], Some(hub))
        .unwrap();
    let page = s.outgoing(18, 5, hub).unwrap();
    assert!(page.ops.is_empty());
    assert_eq!(page.scanned_to, 19);
    assert_eq!(s.count_outgoing(18, hub).unwrap(), 0);
    // An origin never seen skips nothing.
    assert_eq!(
        s.outgoing(0, 100, "https://never.example")
            .unwrap()
            .ops
            .len(),
        19
    );
}

/// Applies `ops` as one batch and checks the outcome of op `index`, or the
/// refusal of the whole batch.
fn check_batch<S: Store>(s: &mut S, ops: &[Op], expected: Result<Vec<Outcome>, (usize, Hlc)>) {
    let before = (s.op_count().unwrap(), s.registers().unwrap());
    match (s.apply_batch(ops), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (
            Err(StoreError::BatchRefused {
                index,
                refusal: Refusal::Collision { hlc },
            }),
            Err(want),
        ) => {
            assert_eq!((index, hlc), want);
            let after = (s.op_count().unwrap(), s.registers().unwrap());
            assert_eq!(after, before, "a refused batch wrote something");
        }
        (got, want) => panic!("got {got:?}, want {want:?}"),
    }
}

/// Two ops under one HLC must be one op: the same content is a duplicate,
/// different content (node, field or value) a collision that refuses the
/// batch, whether the other op is logged or earlier in the batch.
pub fn the_same_hlc_with_different_content_is_a_collision<S: Store>(mut s: S) {
    let ops = task(1000, 1, "Buy milk");
    s.apply_batch(&ops).unwrap();
    let title = &ops[1];
    let h = title.hlc;
    let with = |node: u8, field: &str, value: Value| Op {
        hlc: h,
        node: node_id(node),
        field: field.into(),
        value,
    };
    check_batch(
        &mut s,
        std::slice::from_ref(title),
        Ok(vec![Outcome::Duplicate]),
    );
    let fresh = op(9000, 0, 4, 7, "title", json!("fresh"));
    for other in [
        with(1, "title", json!("Buy bread")),
        with(2, "title", json!("Buy milk")),
        with(1, "body", json!("Buy milk")),
    ] {
        check_batch(&mut s, &[fresh.clone(), other], Err((1, h)));
    }
    let outcomes = s
        .begin()
        .unwrap()
        .apply(&[with(1, "title", json!("Buy bread"))])
        .unwrap();
    assert_eq!(
        outcomes,
        vec![Outcome::Refused(Refusal::Collision { hlc: h })]
    );
    assert!(
        Refusal::Collision { hlc: h }
            .to_string()
            .contains(&h.replica.to_string()),
        "the refusal names the shared replica id"
    );
    // Within one batch.
    let a = op(8000, 0, 5, 8, "title", json!("a"));
    check_batch(
        &mut s,
        &[a.clone(), a.clone()],
        Ok(vec![Outcome::Applied, Outcome::Duplicate]),
    );
    let b = op(8001, 0, 5, 8, "title", json!("b"));
    let b2 = Op {
        value: json!("b2"),
        ..b.clone()
    };
    check_batch(&mut s, &[b.clone(), b2], Err((1, b.hlc)));
    assert_eq!(s.op_count().unwrap(), 4);
}

/// A re-stamp moves an op to a new HLC under a new, greater seq, keeps its
/// assignment, and leaves each register holding its greatest op.
pub fn restamp_moves_an_op_and_keeps_registers_right<S: Store>(mut s: S) {
    let kind = op(1000, 0, 1, 1, "kind", json!("task"));
    let a = op(1000, 1, 1, 1, "title", json!("a"));
    let b = op(2000, 0, 2, 1, "title", json!("b"));
    let x = op(3000, 0, 5, 2, "title", json!("x"));
    let y = op(3000, 0, 3, 2, "title", json!("y"));
    let tag = op(1000, 2, 1, 1, "tag:home", json!(true));
    s.apply_batch(&[
        kind.clone(),
        a.clone(),
        b.clone(),
        x.clone(),
        y.clone(),
        tag.clone(),
    ])
    .unwrap();
    let last = s.last_seq().unwrap();
    let moved = |h: &Hlc, r: u8| Hlc {
        replica: ReplicaId([r; 16]),
        ..*h
    };
    let register = |s: &S, n: u8, f: &str| {
        s.registers()
            .unwrap()
            .into_iter()
            .find(|r| r.node == node_id(n) && r.field == f)
            .map(|r| (r.value, r.hlc))
            .unwrap()
    };
    let mut tx = s.begin().unwrap();
    let nodes = tx
        .restamp(&[
            // A superseded op stays superseded.
            (a.hlc, moved(&a.hlc, 9)),
            // The winner moved below its old HLC still wins.
            (b.hlc, moved(&b.hlc, 0)),
            // The winner moved below a concurrent op of its register loses to it.
            (x.hlc, moved(&x.hlc, 1)),
            // The op that made the node, and a tag.
            (kind.hlc, moved(&kind.hlc, 7)),
            (tag.hlc, moved(&tag.hlc, 7)),
            // Not logged: skipped.
            (moved(&a.hlc, 0x42), moved(&a.hlc, 0x43)),
        ])
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(nodes, vec![node_id(1), node_id(2)]);
    assert_eq!(s.op_count().unwrap(), 6);
    assert_eq!(register(&s, 1, "title"), (json!("b"), moved(&b.hlc, 0)));
    assert_eq!(register(&s, 2, "title"), (json!("y"), y.hlc));
    assert_eq!(
        register(&s, 1, "kind"),
        (json!("task"), moved(&kind.hlc, 7))
    );
    let n = s.node(&node_id(1)).unwrap().unwrap();
    assert_eq!(n.created, moved(&kind.hlc, 7));
    assert_eq!(n.tags, vec!["home".to_owned()]);
    assert_eq!(
        s.query(&Query {
            tag: Some("home".into()),
            ..Query::default()
        })
        .unwrap()
        .len(),
        1
    );
    // The moved ops come after everything that was logged, as local ops.
    let log = s.ops_after(0, 100).unwrap();
    let hlcs: Vec<Hlc> = log.iter().map(|l| l.op.hlc).collect();
    assert_eq!(
        hlcs,
        vec![
            y.hlc,
            moved(&a.hlc, 9),
            moved(&b.hlc, 0),
            moved(&x.hlc, 1),
            moved(&kind.hlc, 7),
            moved(&tag.hlc, 7)
        ]
    );
    assert!(log[1..].iter().all(|l| l.seq > last));
    assert_eq!(log[2].op.value, json!("b"));
    assert_eq!(s.origin(&a.hlc).unwrap(), None);
    assert_eq!(s.origin(&moved(&a.hlc, 9)).unwrap(), Some(None));
    assert_eq!(s.ops_after(log[3].seq, 10).unwrap().len(), 2);
    // The old HLC is free again: the other writer's op under it is fresh.
    let theirs = Op {
        value: json!("theirs"),
        ..a.clone()
    };
    assert_eq!(
        s.apply_batch(std::slice::from_ref(&theirs)).unwrap(),
        vec![Outcome::Superseded]
    );
    // A re-stamp after the last op was moved still hands out a greater seq.
    let top = s.last_seq().unwrap();
    let mut tx = s.begin().unwrap();
    tx.restamp(&[(theirs.hlc, moved(&theirs.hlc, 3))]).unwrap();
    tx.commit().unwrap();
    assert!(s.last_seq().unwrap() > top);
}

/// Expands to one `#[test]` per conformance check for the store `make` builds.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@tests $make;
            apply_and_read_back, greatest_hlc_wins_in_any_order, duplicates_change_nothing,
            duplicates_are_found_across_a_long_history,
            ops_after_pages_in_seq_order, late_arriving_op_is_visible_through_ops_after,
            a_batch_with_one_invalid_op_writes_nothing, unknown_fields_are_kept, meta_round_trips,
            queries_select_by_every_criterion, prefixes_resolve,
            origins_are_recorded_and_read_back, outgoing_skips_one_origin_and_pages,
            the_same_hlc_with_different_content_is_a_collision,
            restamp_moves_an_op_and_keeps_registers_right);
    };
    (@tests $make:expr; $($name:ident),*) => {
        $(
            #[test]
            fn $name() {
                $crate::store::conformance::$name($make);
            }
        )*
    };
}
