//! Drawing: a function of [`App`] and nothing else.
//!
//! ```text
//!  heph  Agenda  Notes   /milk  +home                     7 listed   ← header
//!  Overdue 1                          │ Pay the electricity bill     ← list │ detail
//!  [ ] !!! Pay the electricity bill … │ task · todo · priority high     (detail beside
//!  …                                  │ …                                the list from
//!  a add  x done  u undo  e edit  …                                   ← hints, a message,
//!  ○ local only                                        s health ? help    or the input line
//! ```
//!
//! Below [`crate::app::WIDE`] columns the detail replaces the list when
//! opened (Enter). Popups are drawn last, over everything.

pub mod detail;
pub mod list;
pub mod markdown;
pub mod popup;
pub mod status;
pub mod theme;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthStr;

use crate::agenda::{View, item_ids};
use crate::app::{App, InputKind, Mode};
use crate::input::HINTS;
use heph_core::Kind;
use theme::Theme;

/// The detail pane's least width beside the list: a label and a whole id.
const DETAIL_MIN: u16 = 50;

/// Draws the whole screen.
pub fn render(frame: &mut Frame, app: &App) {
    let theme = Theme { color: app.color };
    let [header, main, line, status_row] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    render_header(frame, header, app, theme);
    if app.detail_open {
        detail::render(frame, main, app, false, theme);
    } else if app.wide() {
        // Two fifths for the detail, but room for a whole id line in it.
        let detail_width = (main.width * 2 / 5).max(DETAIL_MIN).min(main.width);
        let [left, right] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(detail_width)]).areas(main);
        list::render(frame, left, app, theme);
        detail::render(frame, right, app, true, theme);
    } else {
        list::render(frame, main, app, theme);
    }
    render_line(frame, line, app, theme);
    status::render(frame, status_row, app, theme);
    match &app.mode {
        Mode::Help => popup::help(frame, frame.area(), theme),
        Mode::Health => popup::health(frame, frame.area(), app, theme),
        Mode::ConfirmDelete { title, .. } => popup::confirm_delete(frame, main, title, theme),
        Mode::TagPicker { index } => popup::tag_picker(frame, main, app, *index, theme),
        Mode::Input(_) | Mode::Normal => {}
    }
}

fn render_header(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let tab = |name: &str, on: bool| {
        Span::styled(
            format!(" {name} "),
            if on { theme.active_tab() } else { theme.dim() },
        )
    };
    let mut spans = vec![
        Span::styled(" heph ", theme.bold()),
        tab("Agenda", app.view == View::Agenda),
        Span::raw(" "),
        tab("Notes", app.view == View::Notes),
    ];
    if !app.filter.text.is_empty() {
        spans.push(Span::styled(
            format!("  /{}", list::truncate(&app.filter.text, 20)),
            theme.key(),
        ));
    }
    if let Some(tag) = &app.filter.tag {
        spans.push(Span::styled(format!("  +{tag}"), theme.tag()));
    }
    if app.filter.show_done {
        spans.push(Span::styled("  +done", theme.dim()));
    }
    let left = Line::from(spans);
    frame.render_widget(left.clone(), area);
    if app.loaded {
        let count = item_ids(&app.rows()).len();
        let text = format!("{count} listed ");
        if left.width() + text.width() < usize::from(area.width) {
            let w = text.width() as u16;
            frame.render_widget(
                Span::styled(text, theme.dim()),
                Rect {
                    x: area.x + area.width - w,
                    width: w,
                    ..area
                },
            );
        }
    }
}

/// The row above the status line: the input field, else a message, else key hints.
fn render_line(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    if let Mode::Input(input) = &app.mode {
        let prompt = match input.kind {
            InputKind::Add(Kind::Note) => " add note › ",
            InputKind::Add(Kind::Task) => " add task › ",
            InputKind::EditTitle(_) => " title › ",
            InputKind::Filter => " filter / ",
            InputKind::Jump => " jump to id › ",
        };
        // Keep the cursor in view on a long line.
        let before: String = input.text.chars().take(input.cursor).collect();
        let room = usize::from(area.width).saturating_sub(prompt.width() + 1);
        let skip = before.width().saturating_sub(room);
        let shown: String = {
            let mut used = 0;
            input
                .text
                .chars()
                .skip_while(|c| {
                    let w = unicode_width::UnicodeWidthChar::width(*c).unwrap_or(0);
                    let keep = used >= skip;
                    used += w;
                    !keep
                })
                .collect()
        };
        let line = Line::from(vec![Span::styled(prompt, theme.key()), Span::raw(shown)]);
        frame.render_widget(line, area);
        let x = area.x + (prompt.width() + before.width() - skip) as u16;
        frame.set_cursor_position(Position::new(x.min(area.x + area.width - 1), area.y));
        // Above the field: how to write it, or what was wrong with it.
        let above = Rect {
            y: area.y.saturating_sub(1),
            ..area
        };
        let hint = match (&app.message, &input.kind) {
            (Some(m), _) if m.error => Line::styled(format!(" {}", m.text), theme.error()),
            (_, InputKind::Add(_)) => Line::styled(
                " +tag  due:fri  sched:+1w  pri:high   ·   Enter adds, Esc cancels",
                theme.dim(),
            ),
            (_, InputKind::Jump) => Line::styled(
                " the first characters of an id, as the list shows them",
                theme.dim(),
            ),
            _ => Line::styled(" Enter keeps, Esc cancels", theme.dim()),
        };
        frame.render_widget(ratatui::widgets::Clear, above);
        frame.render_widget(hint, above);
        return;
    }
    if let Some(m) = &app.message {
        let style = if m.error {
            theme.error()
        } else {
            theme.plain()
        };
        frame.render_widget(Line::styled(format!(" {}", m.text), style), area);
        return;
    }
    let mut spans = vec![Span::raw(" ")];
    let mut used = 1;
    for (key, what) in HINTS {
        let w = key.width() + what.width() + 3;
        if used + w > usize::from(area.width) {
            break;
        }
        used += w;
        spans.push(Span::styled(*key, theme.key()));
        spans.push(Span::styled(format!(" {what}  "), theme.dim()));
    }
    frame.render_widget(Line::from(spans), area);
}

#[cfg(test)]
mod tests;
