//! `heph-tui`: the terminal UI of Hephaestus (DESIGN §8) — a live agenda and
//! notes with a detail pane, quick add, done/undo, filters, and sync and
//! sign-in health chips, all over `hephd`'s socket.
//!
//! The elm shape: [`app::App`] is the whole state, [`app::update`] the only
//! way it changes (pure, tested action by action), [`view::render`] draws
//! it. Keys, daemon answers, events, ticks and signals all arrive as
//! [`app::Action`]s on one channel; [`run`] is the loop that feeds them to
//! `update`, hands the resulting calls to the RPC thread and redraws. The UI
//! thread never waits on the socket.

pub mod agenda;
pub mod app;
pub mod client;
pub mod input;
pub mod settings;
pub mod terminal;
pub mod view;

#[cfg(test)]
mod testutil;

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;

use app::{Action, App};
use settings::Settings;

/// How often the clock ticks ("synced 4s ago" and the slow health refresh).
const TICK: Duration = Duration::from_secs(1);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the UI until the user quits or a signal arrives.
pub fn run(settings: &Settings) -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<Action>();
    let calls = client::spawn_worker(settings.socket.value.clone(), tx.clone());
    client::spawn_listener(settings.socket.value.clone(), tx.clone());
    terminal::spawn_signals(tx.clone())?;
    let mut tui = terminal::Tui::enter()?;
    terminal::spawn_input(tx);

    let now = agenda::Now {
        ms: now_ms(),
        tz: TimeZone::system(),
    };
    let mut app = App::new(now, settings.color);
    let size = tui.terminal.size()?;
    app::update(&mut app, Action::Resize(size.width, size.height));
    let mut last_tick = Instant::now();
    while !app.quit {
        tui.terminal.draw(|f| view::render(f, &app))?;
        let wait = TICK.saturating_sub(last_tick.elapsed());
        let mut batch = match rx.recv_timeout(wait) {
            Ok(action) => vec![action],
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        batch.extend(rx.try_iter());
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            batch.push(Action::Tick { now_ms: now_ms() });
        }
        for action in batch {
            for call in app::update(&mut app, action) {
                // The worker only stops when this loop does.
                let _ = calls.send(call);
            }
        }
    }
    drop(tui);
    Ok(())
}
