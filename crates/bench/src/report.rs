//! The one-line result every benchmark prints, and small timing helpers.

use std::fmt;
use std::time::{Duration, Instant};

/// Which way a budget points.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

/// `bench NAME value=… baseline=… ratio=… budget=… ok|FAIL`.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: &'static str,
    pub value: f64,
    pub baseline: f64,
    pub budget: Budget,
    /// Extra `key=value` figures printed before the verdict.
    pub extra: Vec<(String, String)>,
}

impl Line {
    pub fn ratio(&self) -> f64 {
        self.value / self.baseline
    }

    pub fn ok(&self) -> bool {
        let r = self.ratio();
        match self.budget {
            Budget::AtLeast(b) => r >= b,
            Budget::AtMost(b) => r <= b,
        }
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budget = match self.budget {
            Budget::AtLeast(b) => format!(">={b}"),
            Budget::AtMost(b) => format!("<={b}"),
        };
        write!(
            f,
            "bench {} value={:.0} baseline={:.0} ratio={:.3} budget={budget}",
            self.name,
            self.value,
            self.baseline,
            self.ratio()
        )?;
        for (k, v) in &self.extra {
            write!(f, " {k}={v}")?;
        }
        f.write_str(if self.ok() { " ok" } else { " FAIL" })
    }
}

/// Runs `f` `runs` times (each with fresh state from `setup`) and returns the median duration.
pub fn median<S, E>(
    runs: usize,
    mut setup: impl FnMut() -> Result<S, E>,
    mut f: impl FnMut(S) -> Result<(), E>,
) -> Result<Duration, E> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let state = setup()?;
        let start = Instant::now();
        f(state)?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// Items per second.
pub fn rate(items: usize, took: Duration) -> f64 {
    items as f64 / took.as_secs_f64().max(1e-9)
}
