//! The detail pane: everything about the selected node — kind, status,
//! priority, dates, tags, id, parent and children, links both ways — and
//! its body rendered as readable markdown.

use heph_core::{Node, NodeId};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::list::SHORT_ID;
use super::markdown;
use super::theme::Theme;
use crate::agenda::relative;
use crate::app::App;

fn field(name: &str, theme: Theme) -> Span<'static> {
    Span::styled(format!("{name:<10} "), theme.dim())
}

fn reference(app: &App, id: &NodeId, theme: Theme) -> Vec<Span<'static>> {
    let title = app
        .nodes
        .get(id)
        .and_then(|n| n.title.clone())
        .unwrap_or_else(|| "(not on this replica)".into());
    vec![
        Span::raw(title),
        Span::raw(" "),
        Span::styled(id.as_str()[..SHORT_ID].to_owned(), theme.dim()),
    ]
}

/// The pane's lines for `node` (before wrapping).
pub fn lines(app: &App, node: &Node, theme: Theme) -> Vec<Line<'static>> {
    let mut out = vec![Line::styled(
        node.title.clone().unwrap_or_else(|| "(untitled)".into()),
        theme.bold(),
    )];
    let mut what = vec![node.kind.map_or("node", |k| k.as_str()).to_owned()];
    if let Some(s) = node.status {
        what.push(s.as_str().to_owned());
    }
    what.push(format!("priority {}", node.priority.as_str()));
    out.push(Line::styled(what.join(" · "), theme.dim()));
    out.push(Line::default());
    for (name, value) in [("due", &node.due), ("scheduled", &node.scheduled)] {
        if let Some(v) = value {
            out.push(Line::from(vec![
                field(name, theme),
                Span::raw(relative(v, &app.now)),
                Span::styled(format!("  {v}"), theme.dim()),
            ]));
        }
    }
    if !node.tags.is_empty() {
        let tags: Vec<String> = node.tags.iter().map(|t| format!("+{t}")).collect();
        out.push(Line::from(vec![
            field("tags", theme),
            Span::styled(tags.join(" "), theme.tag()),
        ]));
    }
    out.push(Line::from(vec![
        field("id", theme),
        Span::raw(node.id.to_string()),
    ]));
    if let Some(parent) = &node.parent {
        let mut spans = vec![field("parent", theme)];
        spans.extend(reference(app, parent, theme));
        out.push(Line::from(spans));
    }
    let children: Vec<&Node> = app
        .nodes
        .values()
        .filter(|n| n.parent == Some(node.id))
        .collect();
    for (i, child) in children.iter().enumerate() {
        let mut spans = vec![field(if i == 0 { "children" } else { "" }, theme)];
        spans.extend(reference(app, &child.id, theme));
        out.push(Line::from(spans));
    }
    for (i, link) in node.links.iter().enumerate() {
        let mut spans = vec![
            field(if i == 0 { "links" } else { "" }, theme),
            Span::styled(format!("{} → ", link.rel), theme.dim()),
        ];
        spans.extend(reference(app, &link.target, theme));
        out.push(Line::from(spans));
    }
    let inbound: Vec<(&Node, &str)> = app
        .nodes
        .values()
        .flat_map(|n| {
            n.links
                .iter()
                .filter(|l| l.target == node.id)
                .map(move |l| (n, l.rel.as_str()))
        })
        .collect();
    for (i, (from, rel)) in inbound.iter().enumerate() {
        let mut spans = vec![
            field(if i == 0 { "linked by" } else { "" }, theme),
            Span::styled(format!("{rel} ← "), theme.dim()),
        ];
        spans.extend(reference(app, &from.id, theme));
        out.push(Line::from(spans));
    }
    out.push(Line::default());
    if node.body.trim().is_empty() {
        out.push(Line::styled("(no body)", theme.dim()));
    } else {
        out.extend(markdown::render(&node.body, theme));
    }
    out
}

/// Draws the pane into `area`, with a border on its left when `beside` the list.
pub fn render(frame: &mut Frame, area: Rect, app: &App, beside: bool, theme: Theme) {
    let block = if beside {
        Block::new()
            .borders(Borders::LEFT)
            .border_style(theme.dim())
    } else {
        Block::new()
    };
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let inner = Rect {
        x: inner.x + 1,
        width: inner.width.saturating_sub(2),
        ..inner
    };
    let Some(node) = app.selected_node() else {
        frame.render_widget(
            Paragraph::new(Line::styled("Nothing selected.", theme.dim())),
            inner,
        );
        return;
    };
    let text = lines(app, node, theme);
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .scroll((app.detail_scroll, 0)),
        inner,
    );
}
