//! Sign-in rate limits of the verification page (DESIGN §7.5): per account
//! name and per client address, whether or not the account exists (a limit
//! that applied only to real accounts would reveal which ones are real).
//!
//! Each key gets a fixed budget of attempts per window; once it is spent,
//! the key is refused until the window that began with its first attempt
//! ends. Memory is bounded: past [`MAX_KEYS`] keys, expired ones are
//! swept, and if that is not enough the oldest are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The most keys remembered at once.
pub const MAX_KEYS: usize = 10_000;

/// One budget: `attempts` per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub attempts: u32,
    pub window: Duration,
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
    slots: Mutex<HashMap<String, Slot>>,
}

impl Limiter {
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key` at `now_ms`; `Err(retry_after)` when its
    /// budget is already spent (the refused attempt is not counted).
    pub fn attempt(&self, key: &str, now_ms: u64) -> Result<(), Duration> {
        let window_ms = self.budget.window.as_millis() as u64;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.len() >= MAX_KEYS && !slots.contains_key(key) {
            slots.retain(|_, s| now_ms.saturating_sub(s.started_ms) < window_ms);
            while slots.len() >= MAX_KEYS {
                let Some(oldest) = slots
                    .iter()
                    .min_by_key(|(_, s)| s.started_ms)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                slots.remove(&oldest);
            }
        }
        let slot = slots.entry(key.to_owned()).or_insert(Slot {
            started_ms: now_ms,
            used: 0,
        });
        if now_ms.saturating_sub(slot.started_ms) >= window_ms {
            *slot = Slot {
                started_ms: now_ms,
                used: 0,
            };
        }
        if slot.used >= self.budget.attempts {
            let left = window_ms.saturating_sub(now_ms.saturating_sub(slot.started_ms));
            return Err(Duration::from_millis(left).max(Duration::from_secs(1)));
        }
        slot.used += 1;
        Ok(())
    }

    /// Forgets `key` (a successful sign-in clears its account's count).
    pub fn clear(&self, key: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Limiter {
        Limiter::new(Budget {
            attempts: 3,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_spent_budget_refuses_until_the_window_ends() {
        let l = limiter();
        for t in 0..3 {
            assert!(l.attempt("alice", t).is_ok());
        }
        assert_eq!(l.attempt("alice", 10_000), Err(Duration::from_secs(50)));
        assert!(l.attempt("bob", 10_000).is_ok(), "keys are separate");
        assert!(l.attempt("alice", 60_000).is_ok(), "a new window");
        l.clear("alice");
        for t in 0..3 {
            assert!(l.attempt("alice", 60_001 + t).is_ok());
        }
    }

    #[test]
    fn memory_is_bounded() {
        let l = limiter();
        for i in 0..(MAX_KEYS as u64 + 50) {
            let _ = l.attempt(&format!("k{i}"), i);
        }
        assert!(l.slots.lock().unwrap().len() <= MAX_KEYS);
    }
}
