//! The hybrid logical clock (Kulkarni et al., 2014) that stamps every op.
//!
//! An [`Hlc`] is wall milliseconds, a counter and the originating replica id.
//! Its text form is fixed width — 16 decimal digits, `-`, 4 hex digits, `-`,
//! 32 hex digits — so comparing the strings compares the clocks. [`HlcState`]
//! issues strictly increasing stamps (the send rule) and advances past stamps
//! it receives (the receive rule), refusing any stamp more than
//! `max_clock_skew` ahead of the local wall clock.
//!
//! This module never reads the wall clock: time comes in through [`Clock`].

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The default `max_clock_skew`: five minutes.
pub const DEFAULT_MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// The largest wall time the 16-digit text form can hold.
const MAX_WALL_MS: u64 = 9_999_999_999_999_999;

/// A source of wall-clock milliseconds since the Unix epoch.
///
/// Core never reads the system clock itself; the daemon passes a real one,
/// tests pass a [`ManualClock`].
pub trait Clock: Send + Sync {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> u64;
}

/// A clock that only moves when told to: for tests and benchmarks.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: u64) -> Self {
        Self(AtomicU64::new(ms))
    }
    /// Sets the reading to `ms`.
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    /// Moves the reading forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// The 128-bit id of a replica, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReplicaId(pub [u8; 16]);

impl ReplicaId {
    /// Parses 32 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, HlcParseError> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return Err(HlcParseError::new(
                s,
                "the replica id must be 32 hex digits",
            ));
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let hi = lower_hex(pair[0]);
            let lo = lower_hex(pair[1]);
            match (hi, lo) {
                (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
                _ => {
                    return Err(HlcParseError::new(
                        s,
                        "the replica id must be lowercase hex digits",
                    ));
                }
            }
        }
        Ok(Self(out))
    }
}

fn lower_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaId({self})")
    }
}

/// One hybrid-logical-clock stamp. Field order is comparison order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hlc {
    /// Wall-clock milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// Orders stamps that share a wall time.
    pub counter: u16,
    /// The replica that issued the stamp; breaks the remaining ties.
    pub replica: ReplicaId,
}

/// The length of an HLC's text form.
pub const HLC_TEXT_LEN: usize = 16 + 1 + 4 + 1 + 32;

impl Hlc {
    /// The smallest stamp; nothing is ever issued at it.
    pub const ZERO: Hlc = Hlc {
        wall_ms: 0,
        counter: 0,
        replica: ReplicaId([0; 16]),
    };
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016}-{:04x}-{}",
            self.wall_ms, self.counter, self.replica
        )
    }
}

impl fmt::Debug for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hlc({self})")
    }
}

/// A string that is not an HLC in the fixed-width text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid hlc {text:?}: {reason}")]
pub struct HlcParseError {
    text: String,
    reason: &'static str,
}

impl HlcParseError {
    fn new(text: &str, reason: &'static str) -> Self {
        let text: String = text.chars().take(80).collect();
        Self { text, reason }
    }
}

impl FromStr for Hlc {
    type Err = HlcParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != HLC_TEXT_LEN || b[16] != b'-' || b[21] != b'-' {
            return Err(HlcParseError::new(
                s,
                "expected 16 digits, '-', 4 hex digits, '-', 32 hex digits",
            ));
        }
        let mut wall_ms = 0u64;
        for &d in &b[..16] {
            if !d.is_ascii_digit() {
                return Err(HlcParseError::new(
                    s,
                    "the wall time must be 16 decimal digits",
                ));
            }
            wall_ms = wall_ms * 10 + u64::from(d - b'0');
        }
        let mut counter = 0u16;
        for &d in &b[17..21] {
            let Some(v) = lower_hex(d) else {
                return Err(HlcParseError::new(
                    s,
                    "the counter must be 4 lowercase hex digits",
                ));
            };
            counter = counter << 4 | u16::from(v);
        }
        let replica = ReplicaId::parse(&s[22..])?;
        Ok(Hlc {
            wall_ms,
            counter,
            replica,
        })
    }
}

impl Serialize for Hlc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why the clock refused to issue or accept a stamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// A received stamp is too far ahead of the local wall clock.
    #[error(
        "op {hlc} is {ahead_ms} ms ahead of this replica's clock, more than the allowed skew of {max_skew_ms} ms; check the sending device's clock"
    )]
    Skew {
        /// The refused stamp.
        hlc: Hlc,
        /// How far ahead of local `now` it is.
        ahead_ms: u64,
        /// The configured bound.
        max_skew_ms: u64,
    },
    /// Issuing another stamp would move the clock past `now + max_clock_skew`.
    #[error(
        "the clock cannot advance: issuing another stamp would move it more than {max_skew_ms} ms past the wall clock"
    )]
    Exhausted {
        /// The configured bound.
        max_skew_ms: u64,
    },
}

/// The clock state of one replica: the last stamp issued or seen.
#[derive(Debug, Clone)]
pub struct HlcState {
    replica: ReplicaId,
    last_wall: u64,
    last_counter: u16,
    max_skew_ms: u64,
}

impl HlcState {
    /// A fresh clock for `replica` with the default skew bound.
    pub fn new(replica: ReplicaId) -> Self {
        Self {
            replica,
            last_wall: 0,
            last_counter: 0,
            max_skew_ms: DEFAULT_MAX_CLOCK_SKEW_MS,
        }
    }

    /// Sets `max_clock_skew` in milliseconds.
    pub fn with_max_skew_ms(mut self, ms: u64) -> Self {
        self.max_skew_ms = ms;
        self
    }

    /// The replica this clock stamps for.
    pub fn replica(&self) -> ReplicaId {
        self.replica
    }

    /// The configured `max_clock_skew` in milliseconds.
    pub fn max_skew_ms(&self) -> u64 {
        self.max_skew_ms
    }

    /// The send rule: a stamp strictly greater than every stamp issued or seen.
    pub fn send(&mut self, now_ms: u64) -> Result<Hlc, ClockError> {
        let (wall, counter) = if now_ms > self.last_wall {
            (now_ms.min(MAX_WALL_MS), 0)
        } else if self.last_counter < u16::MAX {
            (self.last_wall, self.last_counter + 1)
        } else {
            // The counter is spent: borrow the next millisecond, within bounds.
            let next = self.last_wall + 1;
            if next > now_ms.saturating_add(self.max_skew_ms) || next > MAX_WALL_MS {
                return Err(ClockError::Exhausted {
                    max_skew_ms: self.max_skew_ms,
                });
            }
            (next, 0)
        };
        self.last_wall = wall;
        self.last_counter = counter;
        Ok(Hlc {
            wall_ms: wall,
            counter,
            replica: self.replica,
        })
    }

    /// Stamps for `replica` from now on, keeping the clock's reading: every
    /// later stamp is still greater than every stamp issued or seen.
    pub fn renew(&mut self, replica: ReplicaId) {
        self.replica = replica;
    }

    /// Checks a remote stamp against the skew bound without changing state.
    pub fn check(&self, remote: &Hlc, now_ms: u64) -> Result<(), ClockError> {
        let limit = now_ms.saturating_add(self.max_skew_ms);
        if remote.wall_ms > limit {
            return Err(ClockError::Skew {
                hlc: *remote,
                ahead_ms: remote.wall_ms - now_ms,
                max_skew_ms: self.max_skew_ms,
            });
        }
        Ok(())
    }

    /// The receive rule: refuse a stamp too far ahead, else advance past it so
    /// every later [`send`](Self::send) is greater.
    pub fn receive(&mut self, remote: &Hlc, now_ms: u64) -> Result<(), ClockError> {
        self.check(remote, now_ms)?;
        self.observe(remote);
        Ok(())
    }

    /// Advances past a stamp already known to be acceptable (for example one
    /// read back from this replica's own log at start-up).
    pub fn observe(&mut self, seen: &Hlc) {
        if (seen.wall_ms, seen.counter) > (self.last_wall, self.last_counter) {
            self.last_wall = seen.wall_ms;
            self.last_counter = seen.counter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(n: u8) -> ReplicaId {
        ReplicaId([n; 16])
    }

    #[test]
    fn text_form_round_trips_and_is_fixed_width() {
        let h = Hlc {
            wall_ms: 1_732_467_200_123,
            counter: 0x2a,
            replica: rid(0xab),
        };
        let s = h.to_string();
        assert_eq!(s, "0001732467200123-002a-abababababababababababababababab");
        assert_eq!(s.len(), HLC_TEXT_LEN);
        assert_eq!(s.parse::<Hlc>().unwrap(), h);
    }

    #[test]
    fn string_order_is_clock_order() {
        let stamps = [
            Hlc {
                wall_ms: 9,
                counter: 0xffff,
                replica: rid(0xff),
            },
            Hlc {
                wall_ms: 10,
                counter: 0,
                replica: rid(0),
            },
            Hlc {
                wall_ms: 10,
                counter: 0x0f,
                replica: rid(1),
            },
            Hlc {
                wall_ms: 10,
                counter: 0x10,
                replica: rid(0),
            },
            Hlc {
                wall_ms: 10,
                counter: 0x10,
                replica: rid(2),
            },
            Hlc {
                wall_ms: 1_000_000_000_000,
                counter: 0,
                replica: rid(0),
            },
        ];
        for w in stamps.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_string() < w[1].to_string());
        }
    }

    #[test]
    fn parse_refuses_malformed_text() {
        for bad in [
            "",
            "0001732467200123-002a-ABABABABABABABABABABABABABABABAB",
            "001732467200123-002a-abababababababababababababababab",
            "0001732467200123_002a-abababababababababababababababab",
            "0001732467200123-002g-abababababababababababababababab",
            "000173246720012x-002a-abababababababababababababababab",
            "0001732467200123-002a-ababababababababababababababab",
        ] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn send_is_strictly_increasing_even_when_the_wall_clock_stalls_or_goes_back() {
        let mut c = HlcState::new(rid(1));
        let a = c.send(100).unwrap();
        let b = c.send(100).unwrap();
        let d = c.send(50).unwrap();
        let e = c.send(101).unwrap();
        assert!(a < b && b < d && d < e);
        assert_eq!((e.wall_ms, e.counter), (101, 0));
    }

    #[test]
    fn receive_advances_past_the_remote_stamp() {
        let mut c = HlcState::new(rid(1));
        let remote = Hlc {
            wall_ms: 5_000,
            counter: 7,
            replica: rid(2),
        };
        c.receive(&remote, 4_000).unwrap();
        let next = c.send(4_000).unwrap();
        assert!(next > remote);
        assert_eq!((next.wall_ms, next.counter), (5_000, 8));
    }

    #[test]
    fn receive_refuses_a_stamp_beyond_the_skew_and_names_it() {
        let mut c = HlcState::new(rid(1)).with_max_skew_ms(1_000);
        let remote = Hlc {
            wall_ms: 12_001,
            counter: 0,
            replica: rid(2),
        };
        let err = c.receive(&remote, 11_000).unwrap_err();
        assert_eq!(
            err,
            ClockError::Skew {
                hlc: remote,
                ahead_ms: 1_001,
                max_skew_ms: 1_000
            }
        );
        assert!(err.to_string().contains("1001 ms ahead"));
        // The refused stamp did not move the clock.
        assert_eq!(c.send(11_000).unwrap().wall_ms, 11_000);
        // Exactly at the bound is accepted.
        c.receive(
            &Hlc {
                wall_ms: 12_000,
                ..remote
            },
            11_000,
        )
        .unwrap();
    }

    #[test]
    fn counter_overflow_borrows_a_millisecond_but_never_past_the_skew_bound() {
        let mut c = HlcState::new(rid(1)).with_max_skew_ms(1);
        c.observe(&Hlc {
            wall_ms: 100,
            counter: u16::MAX,
            replica: rid(2),
        });
        let h = c.send(100).unwrap();
        assert_eq!((h.wall_ms, h.counter), (101, 0));
        c.observe(&Hlc {
            wall_ms: 101,
            counter: u16::MAX,
            replica: rid(2),
        });
        assert_eq!(
            c.send(100).unwrap_err(),
            ClockError::Exhausted { max_skew_ms: 1 }
        );
    }
}
