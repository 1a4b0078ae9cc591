//! The real terminal and the process around it: raw mode and the alternate
//! screen, restored on every way out (normal exit, panic, SIGTERM, SIGINT,
//! SIGHUP), and the threads that turn key presses, resizes and signals
//! into [`Action`]s.
//!
//! The only module that touches the tty; nothing here decides anything.

use std::io::{self, Stdout};
use std::sync::Once;
use std::sync::mpsc::Sender;

use crossterm::event::{self, Event as TermEvent, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::app::Action;

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// The terminal in raw mode on the alternate screen; restored when dropped.
pub struct Tui {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Tui {
    /// Enters raw mode and the alternate screen, after arranging that a
    /// panic anywhere restores the terminal before its message is printed.
    pub fn enter() -> io::Result<Self> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
                // A panic on a helper thread must not leave a UI without
                // its client behind: end the process.
                std::process::exit(101);
            }));
        });
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen) {
            restore();
            return Err(e);
        }
        let terminal = Terminal::new(CrosstermBackend::new(stdout)).inspect_err(|_| restore())?;
        Ok(Self { terminal })
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
    }
}

/// Forwards key presses and resizes as actions until the UI is gone.
pub fn spawn_input(actions: Sender<Action>) {
    std::thread::Builder::new()
        .name("heph-tui keys".into())
        .spawn(move || {
            while let Ok(ev) = event::read() {
                let action = match ev {
                    TermEvent::Key(k) if k.kind != KeyEventKind::Release => Action::Key(k),
                    TermEvent::Resize(w, h) => Action::Resize(w, h),
                    _ => continue,
                };
                if actions.send(action).is_err() {
                    return;
                }
            }
        })
        .expect("cannot start the keyboard thread");
}

/// Turns SIGTERM, SIGINT and SIGHUP into [`Action::Quit`], so the main loop
/// ends normally and the terminal is restored on the way out.
pub fn spawn_signals(actions: Sender<Action>) -> io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("heph-tui signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if actions.send(Action::Quit).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
