//! Keys to intents: which [`Action`] a key press means in the current mode.
//!
//! The only place that knows the key bindings; the help overlay and the
//! hint line read [`HELP`] and [`HINTS`] from here so they cannot drift
//! from what the keys do. Pure: a key and the app in, an action out.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{Action, App, Edit, Mode};

/// Every binding in normal mode, as the help overlay lists them.
pub const HELP: &[(&str, &str)] = &[
    ("j k ↓ ↑", "move"),
    ("g G", "first / last"),
    ("PgDn PgUp", "page"),
    ("Tab", "agenda ⇄ notes"),
    ("Enter", "open / close the detail"),
    ("a", "quick add: Buy milk +home due:fri pri:high"),
    ("e", "edit the title"),
    ("x", "mark done / reopen"),
    ("u", "undo the last change"),
    ("+ -", "raise / lower the priority"),
    ("d", "delete (asks first)"),
    ("/", "filter by text"),
    ("t", "filter by tag"),
    (".", "show / hide done tasks"),
    (":", "jump to an id prefix"),
    ("s", "sync and sign-in health"),
    ("S", "sync now"),
    ("r", "reload"),
    ("Esc", "close / clear filters"),
    ("?", "this help"),
    ("q", "quit"),
];

/// The hint line, most useful first; as many as fit are shown.
pub const HINTS: &[(&str, &str)] = &[
    ("a", "add"),
    ("x", "done"),
    ("u", "undo"),
    ("e", "edit"),
    ("+-", "pri"),
    ("d", "del"),
    ("/", "find"),
    ("t", "tag"),
    (":", "jump"),
    ("Tab", "notes"),
    (".", "done"),
    ("q", "quit"),
];

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

/// The action a key means now, if any.
pub fn action_for(app: &App, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if ctrl(&key, 'c') {
        return Some(Action::Quit);
    }
    match &app.mode {
        Mode::Input(_) => text_field(key),
        Mode::ConfirmDelete { .. } => match key.code {
            KeyCode::Char('y' | 'Y') => Some(Action::ConfirmDelete),
            KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc => Some(Action::Cancel),
            KeyCode::Enter => Some(Action::Submit),
            _ => None,
        },
        Mode::TagPicker { .. } => match key.code {
            KeyCode::Char('j') | KeyCode::Down => Some(Action::Move(1)),
            KeyCode::Char('k') | KeyCode::Up => Some(Action::Move(-1)),
            KeyCode::Enter => Some(Action::Submit),
            KeyCode::Esc | KeyCode::Char('q' | 't') => Some(Action::Cancel),
            _ => None,
        },
        Mode::Help => match key.code {
            KeyCode::Char('?' | 'q') | KeyCode::Esc | KeyCode::Enter => Some(Action::ToggleHelp),
            _ => None,
        },
        Mode::Health => match key.code {
            KeyCode::Char('s' | 'q') | KeyCode::Esc | KeyCode::Enter => Some(Action::ShowHealth),
            _ => None,
        },
        Mode::Normal => normal(key),
    }
}

fn text_field(key: KeyEvent) -> Option<Action> {
    if ctrl(&key, 'u') {
        return Some(Action::Edit(Edit::Clear));
    }
    if ctrl(&key, 'w') {
        return Some(Action::Edit(Edit::DeleteWord));
    }
    if ctrl(&key, 'a') {
        return Some(Action::Edit(Edit::Home));
    }
    if ctrl(&key, 'e') {
        return Some(Action::Edit(Edit::End));
    }
    Some(match key.code {
        KeyCode::Enter => Action::Submit,
        KeyCode::Esc => Action::Cancel,
        KeyCode::Backspace => Action::Edit(Edit::Backspace),
        KeyCode::Delete => Action::Edit(Edit::Delete),
        KeyCode::Left => Action::Edit(Edit::Left),
        KeyCode::Right => Action::Edit(Edit::Right),
        KeyCode::Home => Action::Edit(Edit::Home),
        KeyCode::End => Action::Edit(Edit::End),
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
            Action::Edit(Edit::Char(c))
        }
        _ => return None,
    })
}

fn normal(key: KeyEvent) -> Option<Action> {
    Some(match key.code {
        KeyCode::Char('j') | KeyCode::Down => Action::Move(1),
        KeyCode::Char('k') | KeyCode::Up => Action::Move(-1),
        KeyCode::Char('g') | KeyCode::Home => Action::Top,
        KeyCode::Char('G') | KeyCode::End => Action::Bottom,
        KeyCode::PageDown => Action::Page(1),
        KeyCode::PageUp => Action::Page(-1),
        KeyCode::Tab | KeyCode::BackTab => Action::SwitchView,
        KeyCode::Enter => Action::ToggleDetail,
        KeyCode::Char('a') => Action::StartAdd,
        KeyCode::Char('e') => Action::StartEditTitle,
        KeyCode::Char('x') | KeyCode::Char(' ') => Action::ToggleDone,
        KeyCode::Char('u') => Action::Undo,
        KeyCode::Char('+' | '=') => Action::Priority(1),
        KeyCode::Char('-') => Action::Priority(-1),
        KeyCode::Char('d') | KeyCode::Delete => Action::RequestDelete,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Char('t') => Action::OpenTagPicker,
        KeyCode::Char('.') => Action::ToggleShowDone,
        KeyCode::Char(':') => Action::StartJump,
        KeyCode::Char('s') => Action::ShowHealth,
        KeyCode::Char('S') => Action::SyncNow,
        KeyCode::Char('r') => Action::Reload,
        KeyCode::Esc => Action::ClearFilters,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::update;
    use crate::testutil::{app_with, sample_nodes};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn check(app: &App, code: KeyCode, expected: Option<Action>) {
        assert_eq!(
            action_for(app, key(code)),
            expected,
            "{code:?} in {:?}",
            app.mode
        );
    }

    #[test]
    fn normal_mode_bindings() {
        let app = app_with(sample_nodes());
        use KeyCode::*;
        check(&app, Char('j'), Some(Action::Move(1)));
        check(&app, Up, Some(Action::Move(-1)));
        check(&app, Char('G'), Some(Action::Bottom));
        check(&app, PageDown, Some(Action::Page(1)));
        check(&app, Tab, Some(Action::SwitchView));
        check(&app, Enter, Some(Action::ToggleDetail));
        check(&app, Char('a'), Some(Action::StartAdd));
        check(&app, Char('e'), Some(Action::StartEditTitle));
        check(&app, Char('x'), Some(Action::ToggleDone));
        check(&app, Char('u'), Some(Action::Undo));
        check(&app, Char('+'), Some(Action::Priority(1)));
        check(&app, Char('-'), Some(Action::Priority(-1)));
        check(&app, Char('d'), Some(Action::RequestDelete));
        check(&app, Char('/'), Some(Action::StartFilter));
        check(&app, Char('t'), Some(Action::OpenTagPicker));
        check(&app, Char('.'), Some(Action::ToggleShowDone));
        check(&app, Char(':'), Some(Action::StartJump));
        check(&app, Char('s'), Some(Action::ShowHealth));
        check(&app, Char('S'), Some(Action::SyncNow));
        check(&app, Char('r'), Some(Action::Reload));
        check(&app, Esc, Some(Action::ClearFilters));
        check(&app, Char('?'), Some(Action::ToggleHelp));
        check(&app, Char('q'), Some(Action::Quit));
        check(&app, Char('Z'), None);
        assert_eq!(
            action_for(&app, KeyEvent::new(Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
    }

    #[test]
    fn a_text_field_takes_every_printable_key() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::StartAdd);
        use KeyCode::*;
        check(&app, Char('q'), Some(Action::Edit(Edit::Char('q'))));
        check(&app, Char('?'), Some(Action::Edit(Edit::Char('?'))));
        check(&app, Backspace, Some(Action::Edit(Edit::Backspace)));
        check(&app, Enter, Some(Action::Submit));
        check(&app, Esc, Some(Action::Cancel));
        assert_eq!(
            action_for(&app, KeyEvent::new(Char('w'), KeyModifiers::CONTROL)),
            Some(Action::Edit(Edit::DeleteWord))
        );
        // Typed through `update`, keys reach the field.
        for c in "q?x".chars() {
            update(&mut app, Action::Key(key(Char(c))));
        }
        let Mode::Input(input) = &app.mode else {
            panic!()
        };
        assert_eq!(input.text, "q?x");
    }

    #[test]
    fn popups_have_their_own_keys() {
        let mut app = app_with(sample_nodes());
        use KeyCode::*;
        update(&mut app, Action::RequestDelete);
        check(&app, Char('y'), Some(Action::ConfirmDelete));
        check(&app, Char('n'), Some(Action::Cancel));
        check(&app, Char('x'), None);
        app.mode = Mode::TagPicker { index: 0 };
        check(&app, Char('j'), Some(Action::Move(1)));
        check(&app, Enter, Some(Action::Submit));
        check(&app, Esc, Some(Action::Cancel));
        app.mode = Mode::Help;
        check(&app, Char('?'), Some(Action::ToggleHelp));
        check(&app, Char('j'), None);
        app.mode = Mode::Health;
        check(&app, Esc, Some(Action::ShowHealth));
    }

    #[test]
    fn a_key_clears_the_last_message() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::Failed { error: "x".into() });
        update(&mut app, Action::Key(key(KeyCode::Char('j'))));
        assert_eq!(app.message, None);
    }
}
