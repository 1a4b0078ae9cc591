//! Boxes drawn over the lists: help, sync and sign-in health (with the
//! exact commands that fix things), the delete confirmation and the tag
//! picker. Each is sized to fit an 80×24 terminal.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::list::truncate;
use super::status::{age, auth_chip, sync_chip};
use super::theme::Theme;
use crate::agenda::tag_counts;
use crate::app::{App, Daemon};
use crate::input::HELP;

/// A `width`×`height` box centred in `area`, shrunk to fit.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw(
    frame: &mut Frame,
    area: Rect,
    title: &str,
    lines: Vec<Line<'static>>,
    width: u16,
    theme: Theme,
) {
    // Lines come pre-wrapped (or cut), so the height is exact.
    let rect = centered(area, width, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let block = Block::new()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), theme.bold()));
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

pub fn help(frame: &mut Frame, area: Rect, theme: Theme) {
    let lines = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<10}"), theme.key()),
                Span::raw((*what).to_owned()),
            ])
        })
        .collect();
    draw(frame, area, "keys · ? or Esc closes", lines, 60, theme);
}

/// The label column of the health popup.
const LABEL: usize = 12;

/// Word-wraps `text` to `width` columns (a word longer than a line is cut).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word = word.to_owned();
        loop {
            let sep = usize::from(!line.is_empty());
            if line.width() + sep + word.width() <= width {
                if sep == 1 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word wider than the line: cut it.
            let mut head = String::new();
            let mut rest = word.chars();
            for c in rest.by_ref() {
                if head.width() + c.width().unwrap_or(0) > width {
                    lines.push(std::mem::take(&mut head));
                    head.push(c);
                    break;
                }
                head.push(c);
            }
            word = head + rest.as_str();
            if word.width() <= width {
                line = word;
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// `name` in the label column, then `value` wrapped beside it.
fn row(name: &str, value: &str, style: Style, inner: usize, theme: Theme) -> Vec<Line<'static>> {
    wrap(value, inner.saturating_sub(LABEL + 1))
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let name = if i == 0 { name } else { "" };
            Line::from(vec![
                Span::styled(format!(" {name:<width$}", width = LABEL - 1), theme.dim()),
                Span::styled(text, style),
            ])
        })
        .collect()
}

/// Sync and sign-in health in full: the state, the cause, and the exact
/// command that fixes it (for a sign-in, the whole `heph auth login …`).
pub fn health(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let width = area.width.saturating_sub(4).min(100);
    let inner = usize::from(width.saturating_sub(2));
    let mut lines: Vec<Line<'static>> = Vec::new();
    let plain = theme.plain();
    if let Daemon::Down { reason } = &app.daemon {
        lines.extend(row("Daemon", reason, theme.error(), inner, theme));
        lines.extend(row("fix", "heph daemon start", theme.key(), inner, theme));
        lines.extend(row(
            "",
            "(what follows is as last known)",
            theme.dim(),
            inner,
            theme,
        ));
        lines.push(Line::default());
    }
    match &app.sync {
        Some(s) => {
            if let Some(c) = sync_chip(app).filter(|_| app.daemon == Daemon::Up) {
                lines.extend(row("Sync", &c.text, theme.chip(c.severity), inner, theme));
                lines.extend(row("", &s.message, plain, inner, theme));
            } else {
                lines.extend(row("Sync", &s.message, plain, inner, theme));
            }
            if let Some(hub) = &s.hub_url {
                lines.extend(row("hub", hub, plain, inner, theme));
            }
            if let Some(t) = s.last_success_ms {
                let ago = format!("{} ago", age(app.now.ms - t as i64));
                lines.extend(row("last sync", &ago, plain, inner, theme));
            }
            if s.configured {
                let pending = format!("{} ops not yet pushed", s.pending_ops);
                lines.extend(row("pending", &pending, plain, inner, theme));
            }
            if let Some(e) = &s.last_error {
                lines.extend(row("error", e, theme.error(), inner, theme));
            }
            if let Some(h) = &s.hint {
                lines.extend(row("fix", h, theme.key(), inner, theme));
            }
        }
        None => lines.extend(row("Sync", "not known yet", theme.dim(), inner, theme)),
    }
    lines.push(Line::default());
    match &app.auth {
        Some(a) => {
            if let Some(c) = auth_chip(app) {
                lines.extend(row(
                    "Sign-in",
                    &c.text,
                    theme.chip(c.severity),
                    inner,
                    theme,
                ));
                lines.extend(row("", &a.message, plain, inner, theme));
            } else {
                lines.extend(row("Sign-in", &a.message, plain, inner, theme));
            }
            if a.configured {
                lines.extend(row("state", &a.state, plain, inner, theme));
            }
            if let Some(who) = &a.subject {
                lines.extend(row("subject", who, plain, inner, theme));
            }
            if let Some(h) = &a.hint {
                let name = if a.action_needed { "run" } else { "hint" };
                lines.extend(row(name, h, theme.key(), inner, theme));
            }
        }
        None => lines.extend(row("Sign-in", "not known yet", theme.dim(), inner, theme)),
    }
    draw(frame, area, "health · s or Esc closes", lines, width, theme);
}

pub fn confirm_delete(frame: &mut Frame, area: Rect, title: &str, theme: Theme) {
    let lines = vec![
        Line::raw(format!(" Delete \"{}\"?", truncate(title, 44))),
        Line::default(),
        Line::from(vec![
            Span::raw(" "),
            Span::styled("y", theme.key()),
            Span::raw(" delete   "),
            Span::styled("n", theme.key()),
            Span::raw(" keep   (u undoes a delete)"),
        ]),
    ];
    draw(frame, area, "delete", lines, 56, theme);
}

pub fn tag_picker(frame: &mut Frame, area: Rect, app: &App, index: usize, theme: Theme) {
    let tags = tag_counts(&app.nodes);
    let room = usize::from(area.height.saturating_sub(4)).max(1);
    let offset = (index + 1).saturating_sub(room);
    let entries = std::iter::once(("(all tags)".to_owned(), None))
        .chain(tags.into_iter().map(|(t, c)| (format!("+{t}"), Some(c))));
    let lines = entries
        .enumerate()
        .skip(offset)
        .take(room)
        .map(|(i, (name, count))| {
            let count = count.map(|c| c.to_string()).unwrap_or_default();
            let line = Line::from(vec![
                Span::raw(format!(" {:<24}", truncate(&name, 24))),
                Span::styled(format!("{count:>4} "), theme.dim()),
            ]);
            if i == index {
                line.style(theme.selected())
            } else {
                line
            }
        })
        .collect();
    draw(frame, area, "tag · Enter picks", lines, 34, theme);
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrapping_breaks_at_spaces_and_cuts_long_words() {
        let check = |text: &str, width: usize, expected: &[&str]| {
            assert_eq!(wrap(text, width), expected, "{text:?} at {width}");
        };
        check(
            "heph auth login --hub-url https://hub.example",
            20,
            &["heph auth login", "--hub-url", "https://hub.example"],
        );
        check("abcdefghij", 4, &["abcd", "efgh", "ij"]);
        check("a abcdefghij b", 4, &["a", "abcd", "efgh", "ij b"]);
        check("", 10, &[""]);
        check("fits exactly", 12, &["fits exactly"]);
    }
}
