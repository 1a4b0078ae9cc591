//! Rendering tests: the screen drawn into ratatui's `TestBackend` and
//! compared, as text, with reviewed `insta` snapshots — the healthy agenda
//! and every degraded chip — plus checks on the styles that carry meaning.

use heph_core::rpc::{AuthStatus, SyncStatus};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;

use super::*;
use crate::app::{Action, Edit, update};
use crate::testutil::{NOW_MS, app_with, id, sample_nodes};

fn draw(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| render(f, app)).unwrap();
    terminal.backend().buffer().clone()
}

/// The buffer as lines of text, trailing blanks trimmed.
fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn screen(app: &App) -> String {
    text(&draw(app, app.size.0, app.size.1))
}

fn sized(width: u16, height: u16) -> App {
    let mut app = app_with(sample_nodes());
    update(&mut app, Action::Resize(width, height));
    app
}

fn hub_sync(f: impl FnOnce(&mut SyncStatus)) -> SyncStatus {
    let mut s = SyncStatus {
        configured: true,
        hub_url: Some("https://hub.example".into()),
        last_success_ms: Some(NOW_MS as u64 - 4_000),
        message: "the last sync round succeeded".into(),
        ..SyncStatus::default()
    };
    f(&mut s);
    s
}

fn signed_in(f: impl FnOnce(&mut AuthStatus)) -> AuthStatus {
    let mut a = AuthStatus {
        configured: true,
        state: "valid".into(),
        subject: Some("alice@example.org".into()),
        action_needed: false,
        message: "signed in; the access token is refreshed before it expires".into(),
        hint: None,
        ..AuthStatus::default()
    };
    f(&mut a);
    a
}

fn status(app: &mut App, sync: SyncStatus, auth: AuthStatus) {
    update(
        app,
        Action::Status {
            sync: Ok(sync),
            auth: Ok(auth),
        },
    );
}

/// The last row: the status line.
fn status_line(app: &App) -> String {
    screen(app).lines().last().unwrap().to_owned()
}

#[test]
fn agenda_at_80x24() {
    insta::assert_snapshot!(screen(&sized(80, 24)));
}

#[test]
fn agenda_with_the_detail_beside_it() {
    let mut app = sized(120, 30);
    update(&mut app, Action::Move(4)); // Review the sync design
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn detail_opened_at_80x24() {
    let mut app = sized(80, 24);
    update(&mut app, Action::Move(4));
    update(&mut app, Action::ToggleDetail);
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn notes_view() {
    let mut app = sized(80, 24);
    update(&mut app, Action::SwitchView);
    // Oat milk brand, first: its parent shows.
    update(&mut app, Action::ToggleDetail);
    let mut notes = sized(80, 24);
    update(&mut notes, Action::SwitchView);
    insta::assert_snapshot!(format!("{}{}", screen(&notes), screen(&app)));
}

#[test]
fn daemon_down_keeps_the_last_agenda_and_says_how_to_fix_it() {
    let mut app = sized(80, 24);
    update(
        &mut app,
        Action::Disconnected {
            reason: "the daemon closed the connection".into(),
        },
    );
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn daemon_down_at_start() {
    let mut app = App::new(crate::testutil::now(), true);
    update(&mut app, Action::Resize(80, 24));
    update(
        &mut app,
        Action::Disconnected {
            reason: "the daemon is not running (nothing answers on /run/heph/hephd.sock); start it with heph daemon start".into(),
        },
    );
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn hub_unreachable_and_auth_needed() {
    let mut app = sized(80, 24);
    status(
        &mut app,
        hub_sync(|s| {
            s.pending_ops = 3;
            s.last_error = Some("cannot connect to https://hub.example: connection refused".into());
            s.hint = Some("heph sync --status".into());
        }),
        signed_in(|a| {
            a.state = "needs_login".into();
            a.action_needed = true;
            a.message = "the hub refused the refresh token (invalid_grant): sign in again".into();
            a.hint = Some("heph auth login --hub-url https://hub.example --issuer https://idp.example/app/heph/ --client-id heph".into());
        }),
    );
    assert_eq!(
        status_line(&app),
        " ✕ hub unreachable · 3 pending · heph sync --status   ⚠ auth · heph auth status"
    );
    update(&mut app, Action::ShowHealth);
    // The popup shows the exact command in full.
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn synced_and_signed_in() {
    let mut app = sized(100, 24);
    status(&mut app, hub_sync(|_| {}), signed_in(|_| {}));
    let line = status_line(&app);
    assert!(
        line.starts_with(" ● synced 4s ago   ✓ signed in as alice@example.org  ")
            && line.ends_with("  s health  ? help"),
        "{line}"
    );
    update(
        &mut app,
        Action::Tick {
            now_ms: NOW_MS + 90_000,
        },
    );
    assert!(status_line(&app).starts_with(" ● synced 1m ago "));
    update(&mut app, Action::SyncNow);
    assert!(status_line(&app).starts_with(" ↻ syncing "));
}

#[test]
fn local_only_and_connecting() {
    assert!(status_line(&sized(80, 24)).starts_with(" ○ local only "));
    let mut app = App::new(crate::testutil::now(), true);
    update(&mut app, Action::Resize(80, 24));
    assert!(status_line(&app).starts_with(" … connecting "));
    assert!(screen(&app).contains("Loading…"));
}

#[test]
fn help_overlay_fits_80x24() {
    let mut app = sized(80, 24);
    update(&mut app, Action::ToggleHelp);
    insta::assert_snapshot!(screen(&app));
}

#[test]
fn quick_add_line() {
    let mut app = sized(80, 24);
    update(&mut app, Action::StartAdd);
    for c in "Call Bob +work due:fri".chars() {
        update(&mut app, Action::Edit(Edit::Char(c)));
    }
    let s = screen(&app);
    let rows: Vec<&str> = s.lines().collect();
    assert_eq!(
        rows[21],
        " +tag  due:fri  sched:+1w  pri:high   ·   Enter adds, Esc cancels"
    );
    assert_eq!(rows[22], " add task › Call Bob +work due:fri");
    // A bad line keeps the field open and says what is wrong above it.
    update(&mut app, Action::Edit(Edit::Char('x')));
    update(&mut app, Action::Submit);
    let s = screen(&app);
    let rows: Vec<&str> = s.lines().collect();
    assert!(
        rows[21].starts_with(" cannot read \"frix\" as a date; use today"),
        "{}",
        rows[21]
    );
}

#[test]
fn delete_confirmation_and_tag_picker() {
    let mut app = sized(80, 24);
    update(&mut app, Action::RequestDelete);
    let mut picker = sized(80, 24);
    update(&mut picker, Action::OpenTagPicker);
    update(&mut picker, Action::Move(2));
    insta::assert_snapshot!(format!("{}{}", screen(&app), screen(&picker)));
}

#[test]
fn filters_show_in_the_header() {
    let mut app = sized(80, 24);
    update(&mut app, Action::StartFilter);
    for c in "milk".chars() {
        update(&mut app, Action::Edit(Edit::Char(c)));
    }
    update(&mut app, Action::Submit);
    update(&mut app, Action::ToggleShowDone);
    app.message = None;
    let s = screen(&app);
    assert!(s.starts_with(" heph  Agenda   Notes   /milk  +done"), "{s}");
    assert!(s.lines().next().unwrap().ends_with("1 listed"));
    update(&mut app, Action::StartFilter);
    update(&mut app, Action::Edit(Edit::Clear));
    for c in "nothing like this".chars() {
        update(&mut app, Action::Edit(Edit::Char(c)));
    }
    assert!(screen(&app).contains("Nothing matches the filter."));
}

#[test]
fn no_color_uses_no_colour_at_all() {
    let mut app = sized(120, 30);
    app.color = false;
    status(
        &mut app,
        hub_sync(|s| s.last_error = Some("down".into())),
        signed_in(|a| a.action_needed = true),
    );
    update(&mut app, Action::Move(4));
    let buffer = draw(&app, 120, 30);
    for cell in buffer.content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    // The same words as in colour.
    let mut coloured = app.clone();
    coloured.color = true;
    assert_eq!(text(&buffer), screen(&coloured));
    insta::assert_snapshot!(text(&buffer));
}

#[test]
fn colour_marks_the_chips_by_severity() {
    let mut app = sized(80, 24);
    update(
        &mut app,
        Action::Disconnected {
            reason: "gone".into(),
        },
    );
    let buffer = draw(&app, 80, 24);
    assert_eq!(buffer[(1, 23)].symbol(), "✕");
    assert_eq!(buffer[(1, 23)].fg, Color::Red);
    status(&mut app, hub_sync(|_| {}), signed_in(|_| {}));
    update(&mut app, Action::Connected);
    let buffer = draw(&app, 80, 24);
    assert_eq!(buffer[(1, 23)].symbol(), "●");
    assert_eq!(buffer[(1, 23)].fg, Color::Green);
}

#[test]
fn tiny_terminals_do_not_break_drawing() {
    for (w, h) in [(1, 1), (10, 3), (20, 5), (40, 8), (300, 80)] {
        let mut app = sized(w, h);
        for action in [
            Action::ToggleHelp,
            Action::ShowHealth,
            Action::RequestDelete,
            Action::StartAdd,
        ] {
            update(&mut app, action);
            draw(&app, w, h);
            update(&mut app, Action::Cancel);
        }
        update(&mut app, Action::ToggleDetail);
        draw(&app, w, h);
    }
    // A long title is cut with an ellipsis, never wrapped into the next row.
    let mut app = sized(80, 24);
    let mut long = app.nodes[&id(6)].clone();
    long.title = Some("A very long title ".repeat(10));
    update(
        &mut app,
        Action::Refreshed {
            nodes: vec![long],
            missing: vec![],
        },
    );
    let s = screen(&app);
    let row = s.lines().find(|l| l.contains("A very long")).unwrap();
    assert!(row.contains("…  060606"), "{row}");
}
