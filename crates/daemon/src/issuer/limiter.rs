//! Rate limits of the built-in issuer (DESIGN §7.5): sign-in attempts per
//! account name, per (account, address) pair and per client address,
//! whether or not the account exists (a limit that applied only to real
//! accounts would reveal which ones are real), and device authorizations
//! per address.
//!
//! Each key gets a fixed budget of attempts per window; once it is spent,
//! the key is *locked* until the window that began with its first attempt
//! ends. Memory is bounded without ever forgetting a lock: when the table
//! is full, expired and unlocked keys make room (oldest first); when every
//! key in it is locked, a key not yet in the table is refused too
//! ([`Refusal::Full`]) rather than evicting a lock, so a flood of fresh
//! names cannot reset a real account's lockout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The most keys remembered at once, by default.
pub const MAX_KEYS: usize = 10_000;

/// One budget: `attempts` per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub attempts: u32,
    pub window: Duration,
}

/// Why an attempt was refused; both carry when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This key spent its budget.
    Locked(Duration),
    /// The table is full of locked keys, and this key is not one of them.
    Full(Duration),
}

impl Refusal {
    /// How long to wait.
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::Locked(d) | Refusal::Full(d) => d,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    started_ms: u64,
    used: u32,
}

/// Attempts counted per key.
#[derive(Debug)]
pub struct Limiter {
    budget: Budget,
    max_keys: usize,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Limiter {
    pub fn new(budget: Budget) -> Self {
        Self::with_capacity(budget, MAX_KEYS)
    }

    /// A limiter remembering at most `max_keys` keys.
    pub fn with_capacity(budget: Budget, max_keys: usize) -> Self {
        Self {
            budget,
            max_keys: max_keys.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn window_ms(&self) -> u64 {
        self.budget.window.as_millis() as u64
    }

    /// How long until the window of `slot` ends (at least a second).
    fn left(&self, slot: &Slot, now_ms: u64) -> Duration {
        let left = self
            .window_ms()
            .saturating_sub(now_ms.saturating_sub(slot.started_ms));
        Duration::from_millis(left).max(Duration::from_secs(1))
    }

    fn live(&self, slot: &Slot, now_ms: u64) -> bool {
        now_ms.saturating_sub(slot.started_ms) < self.window_ms()
    }

    fn locked(&self, slot: &Slot, now_ms: u64) -> bool {
        self.live(slot, now_ms) && slot.used >= self.budget.attempts
    }

    /// Counts one attempt for `key` at `now_ms`; refused when its budget
    /// is already spent, or when it is new and the table is full of locks
    /// (a refused attempt is not counted).
    pub fn attempt(&self, key: &str, now_ms: u64) -> Result<(), Refusal> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= self.max_keys && !slots.contains_key(key) {
            self.make_room(&mut slots, now_ms);
            if slots.len() >= self.max_keys {
                let soonest = slots
                    .values()
                    .map(|s| self.left(s, now_ms))
                    .min()
                    .unwrap_or(Duration::from_secs(1));
                return Err(Refusal::Full(soonest));
            }
        }
        let slot = slots.entry(key.to_owned()).or_insert(Slot {
            started_ms: now_ms,
            used: 0,
        });
        if !self.live(slot, now_ms) {
            *slot = Slot {
                started_ms: now_ms,
                used: 0,
            };
        }
        if slot.used >= self.budget.attempts {
            return Err(Refusal::Locked(self.left(slot, now_ms)));
        }
        slot.used += 1;
        Ok(())
    }

    /// Drops every expired key, then unlocked keys oldest first until a
    /// tenth of the table is free (so a full table is not swept on every
    /// attempt). Locked keys are never dropped.
    fn make_room(&self, slots: &mut HashMap<String, Slot>, now_ms: u64) {
        slots.retain(|_, s| self.live(s, now_ms));
        let target = self.max_keys - self.max_keys.div_ceil(10);
        if slots.len() <= target {
            return;
        }
        let mut unlocked: Vec<(u64, String)> = slots
            .iter()
            .filter(|(_, s)| !self.locked(s, now_ms))
            .map(|(k, s)| (s.started_ms, k.clone()))
            .collect();
        unlocked.sort_unstable();
        let excess = slots.len() - target;
        for (_, key) in unlocked.into_iter().take(excess) {
            slots.remove(&key);
        }
    }

    /// Forgets `key` (a successful sign-in clears its account's count).
    pub fn clear(&self, key: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_keys: usize) -> Limiter {
        Limiter::with_capacity(
            Budget {
                attempts: 3,
                window: Duration::from_secs(60),
            },
            max_keys,
        )
    }

    #[test]
    fn a_spent_budget_refuses_until_the_window_ends() {
        let l = limiter(MAX_KEYS);
        for t in 0..3 {
            assert!(l.attempt("alice", t).is_ok());
        }
        assert_eq!(
            l.attempt("alice", 10_000),
            Err(Refusal::Locked(Duration::from_secs(50)))
        );
        assert!(l.attempt("bob", 10_000).is_ok(), "keys are separate");
        assert!(l.attempt("alice", 60_000).is_ok(), "a new window");
        l.clear("alice");
        for t in 0..3 {
            assert!(l.attempt("alice", 60_001 + t).is_ok());
        }
    }

    #[test]
    fn memory_is_bounded() {
        let l = limiter(MAX_KEYS);
        for i in 0..(MAX_KEYS as u64 + 50) {
            let _ = l.attempt(&format!("k{i}"), i);
        }
        assert!(l.len() <= MAX_KEYS);
    }

    /// The attack of issue 12 item 6: lock an account, then try 10,050
    /// fresh names. The lock survives; once the table is full of locks,
    /// fresh names are refused instead.
    #[test]
    fn a_flood_of_fresh_keys_never_evicts_a_lock() {
        let l = limiter(MAX_KEYS);
        for t in 0..3 {
            l.attempt("account:alice", t).unwrap();
        }
        assert!(matches!(
            l.attempt("account:alice", 3),
            Err(Refusal::Locked(_))
        ));
        // Fresh names, each used once (unlocked): they make room for each other.
        for i in 0..(MAX_KEYS as u64 + 50) {
            l.attempt(&format!("account:fresh{i}"), 10 + i).unwrap();
        }
        assert!(l.len() <= MAX_KEYS);
        assert!(
            matches!(l.attempt("account:alice", 20_000), Err(Refusal::Locked(_))),
            "the lock was evicted"
        );
        // Fresh names that lock themselves fill the table with locks…
        let l = limiter(100);
        for t in 0..3 {
            l.attempt("account:alice", t).unwrap();
        }
        let mut refused = 0;
        for i in 0..150u64 {
            let key = format!("account:fresh{i}");
            for _ in 0..4 {
                if let Err(Refusal::Full(after)) = l.attempt(&key, 10 + i) {
                    assert!(after >= Duration::from_secs(1));
                    refused += 1;
                }
            }
        }
        // …and then fresh names are refused, the lock kept.
        assert!(refused > 0);
        assert!(l.len() <= 100);
        assert!(matches!(
            l.attempt("account:alice", 500),
            Err(Refusal::Locked(_))
        ));
        // Once the locks run out, room comes back.
        assert!(l.attempt("account:late", 61_000).is_ok());
        assert!(l.attempt("account:alice", 61_000).is_ok());
    }
}
