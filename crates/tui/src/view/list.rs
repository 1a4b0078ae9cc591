//! The agenda and notes lists: section headings and one line per node,
//! `[ ] !!! Title …   +tags   tomorrow   1a2b3c`, scrolled to keep the
//! selection in sight. Also the words shown while nothing is listed.

use heph_core::{Node, Priority, Status};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::theme::Theme;
use crate::agenda::{Row, Section, View, relative};
use crate::app::{App, Daemon};

/// How many characters of an id the list shows.
pub const SHORT_ID: usize = 6;
/// The due column's width: `today 15:30`.
const DUE_WIDTH: usize = 11;

/// `text` cut to `width` columns, with `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

fn status_box(node: &Node) -> &'static str {
    match node.status {
        _ if node.kind == Some(heph_core::Kind::Note) => " ≡ ",
        Some(Status::Doing) => "[~]",
        Some(Status::Done) => "[x]",
        Some(Status::Cancelled) => "[-]",
        Some(Status::Todo) | None => "[ ]",
    }
}

fn priority_mark(p: Priority) -> &'static str {
    match p {
        Priority::High => "!!!",
        Priority::Medium => "!! ",
        Priority::Low => "!  ",
        Priority::None => "   ",
    }
}

fn item_line(
    app: &App,
    section: Section,
    node: &Node,
    width: usize,
    theme: Theme,
) -> Line<'static> {
    let id = &node.id.as_str()[..SHORT_ID];
    let due = node
        .due
        .as_deref()
        .map(|d| relative(d, &app.now))
        .unwrap_or_default();
    let tags = if width >= 50 && !node.tags.is_empty() {
        let all: Vec<String> = node.tags.iter().map(|t| format!("+{t}")).collect();
        truncate(&all.join(" "), (width / 5).max(8))
    } else {
        String::new()
    };
    // " [ ] !!! " then the title, then "  tags  due  id "
    let left = 9;
    // The due column is right-aligned to a fixed width so dates line up.
    let due = if due.is_empty() || width < 50 {
        due
    } else {
        format!("{due:>DUE_WIDTH$}")
    };
    let right_parts: Vec<(String, ratatui::style::Style)> = [
        (tags, theme.tag()),
        (
            due,
            if section == Section::Overdue {
                theme.overdue()
            } else {
                theme.plain()
            },
        ),
        (id.to_owned(), theme.dim()),
    ]
    .into_iter()
    .filter(|(t, _)| !t.is_empty())
    .collect();
    let right_width: usize = right_parts
        .iter()
        .map(|(t, _)| t.width() + 2)
        .sum::<usize>()
        + 1;
    let room = width.saturating_sub(left + right_width);
    let title_text = truncate(node.title.as_deref().unwrap_or("(untitled)"), room);
    let pad = room.saturating_sub(title_text.width());
    let mut title_style = theme.plain();
    if matches!(node.status, Some(Status::Done | Status::Cancelled)) {
        title_style = theme
            .dim()
            .add_modifier(ratatui::style::Modifier::CROSSED_OUT);
    }
    let mut spans = vec![
        Span::raw(" "),
        Span::raw(status_box(node)),
        Span::raw(" "),
        Span::styled(priority_mark(node.priority), theme.priority(node.priority)),
        Span::raw(" "),
        Span::styled(title_text, title_style),
        Span::raw(" ".repeat(pad)),
    ];
    for (text, style) in right_parts {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(text, style));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

fn empty_text(app: &App) -> Vec<&'static str> {
    if let Daemon::Down { .. } = app.daemon {
        if !app.loaded {
            return vec![
                "The daemon is not running.",
                "",
                "Start it with:  heph daemon start",
                "heph-tui reconnects by itself.",
            ];
        }
    }
    if !app.loaded {
        return vec!["Loading…"];
    }
    if !app.filter.text.is_empty() || app.filter.tag.is_some() {
        return vec!["Nothing matches the filter.", "", "Esc clears it."];
    }
    match app.view {
        View::Agenda => vec!["Nothing on the agenda.", "", "Press a to add a task."],
        View::Notes => vec!["No notes yet.", "", "Press a to add one."],
    }
}

/// Draws the list into `area`.
pub fn render(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let rows = app.rows();
    if rows.is_empty() {
        let lines: Vec<Line> = empty_text(app)
            .into_iter()
            .map(|t| Line::styled(format!("  {t}"), theme.dim()))
            .collect();
        let top = Rect {
            y: area.y + area.height.min(1),
            height: area.height.saturating_sub(1),
            ..area
        };
        frame.render_widget(Paragraph::new(lines), top);
        return;
    }
    let width = usize::from(area.width);
    let height = usize::from(area.height);
    let selected_row = rows
        .iter()
        .position(|r| matches!(r, Row::Item { node, .. } if Some(node.id) == app.selected))
        .unwrap_or(0);
    // Keep the selection in sight, and its heading with it when possible.
    let offset = (selected_row + 1).saturating_sub(height);
    let lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, row)| match row {
            Row::Header { section, count } => Line::from(vec![
                Span::styled(format!(" {} ", section.label()), theme.section(*section)),
                Span::styled(format!("{count}"), theme.dim()),
            ]),
            Row::Item { section, node } => {
                let line = item_line(app, *section, node, width, theme);
                if i == selected_row {
                    line.style(theme.selected())
                } else {
                    line
                }
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_columns() {
        assert_eq!(truncate("Buy milk", 8), "Buy milk");
        assert_eq!(truncate("Buy milk", 7), "Buy mi…");
        assert_eq!(truncate("日本語テキスト", 7), "日本語…");
        assert_eq!(truncate("abc", 0), "");
    }
}
