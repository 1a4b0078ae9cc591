//! A node's markdown body as readable terminal text: headings in bold,
//! bullets as `•`, quotes with a bar, code indented, `**strong**`,
//! `*emphasis*`, `` `code` `` and `[links](url)` with the address shown.
//!
//! A small line-based reader, not a full CommonMark parser: it covers what
//! people write in notes, and anything it does not recognise is shown as it
//! was typed, so no text is ever hidden.

use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::theme::Theme;

/// Renders `body` as lines (wrapping is left to the paragraph).
pub fn render(body: &str, theme: Theme) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let mut in_code = false;
    for raw in body.lines() {
        let trimmed = raw.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push(Line::from(Span::styled(format!("  {raw}"), theme.code())));
            continue;
        }
        let indent = raw.len() - trimmed.len();
        let pad = " ".repeat(indent);
        if trimmed.is_empty() {
            out.push(Line::default());
        } else if let Some((level, text)) = heading(trimmed) {
            let mut style = theme.bold();
            if level == 1 {
                style = style.add_modifier(Modifier::UNDERLINED);
            }
            out.push(Line::from(inline(text, style, theme)));
        } else if is_rule(trimmed) {
            out.push(Line::from(Span::styled("─".repeat(24), theme.dim())));
        } else if let Some(text) = trimmed.strip_prefix('>') {
            let mut spans = vec![Span::styled(format!("{pad}│ "), theme.dim())];
            spans.extend(inline(text.trim_start(), theme.dim(), theme));
            out.push(Line::from(spans));
        } else if let Some((marker, text)) = list_item(trimmed) {
            let mut spans = vec![Span::raw(format!("{pad}{marker}"))];
            spans.extend(inline(text, theme.plain(), theme));
            out.push(Line::from(spans));
        } else {
            let mut spans = Vec::new();
            if !pad.is_empty() {
                spans.push(Span::raw(pad));
            }
            spans.extend(inline(trimmed, theme.plain(), theme));
            out.push(Line::from(spans));
        }
    }
    out
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    let rest = &line[level..];
    ((1..=6).contains(&level) && (rest.is_empty() || rest.starts_with(' ')))
        .then(|| (level, rest.trim()))
}

fn is_rule(line: &str) -> bool {
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    compact.len() >= 3
        && ['-', '*', '_']
            .iter()
            .any(|&c| compact.chars().all(|x| x == c))
}

/// `- x`, `* x`, `+ x`, `1. x`, and task boxes `- [ ] x` / `- [x] x`.
fn list_item(line: &str) -> Option<(String, &str)> {
    for bullet in ["- ", "* ", "+ "] {
        if let Some(rest) = line.strip_prefix(bullet) {
            if let Some(rest) = rest.strip_prefix("[ ] ") {
                return Some(("☐ ".into(), rest));
            }
            if let Some(rest) = rest
                .strip_prefix("[x] ")
                .or_else(|| rest.strip_prefix("[X] "))
            {
                return Some(("☑ ".into(), rest));
            }
            return Some(("• ".into(), rest));
        }
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits) {
        let rest = &line[digits..];
        if let Some(text) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some((format!("{}. ", &line[..digits]), text));
        }
    }
    None
}

/// Inline markup of one line, on top of `base`.
fn inline(text: &str, base: Style, theme: Theme) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut plain = String::new();
    let flush = |plain: &mut String, spans: &mut Vec<Span<'static>>| {
        if !plain.is_empty() {
            spans.push(Span::styled(std::mem::take(plain), base));
        }
    };
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let prev = plain.chars().last();
        // `code`
        if c == '`' {
            if let Some(end) = rest[1..].find('`') {
                flush(&mut plain, &mut spans);
                spans.push(Span::styled(rest[1..1 + end].to_owned(), theme.code()));
                rest = &rest[end + 2..];
                continue;
            }
        }
        // **strong** and __strong__
        if rest.starts_with("**") || rest.starts_with("__") {
            let mark = &rest[..2];
            if let Some(end) = rest[2..].find(mark).filter(|&e| e > 0) {
                flush(&mut plain, &mut spans);
                let inner = &rest[2..2 + end];
                spans.push(Span::styled(
                    inner.to_owned(),
                    base.add_modifier(Modifier::BOLD),
                ));
                rest = &rest[end + 4..];
                continue;
            }
        }
        // *emphasis* and _emphasis_ (not inside a word for `_`)
        if (c == '*' || (c == '_' && !prev.is_some_and(char::is_alphanumeric)))
            && rest[1..].chars().next().is_some_and(|n| !n.is_whitespace())
        {
            if let Some(end) = rest[1..].find(c).filter(|&e| e > 0) {
                flush(&mut plain, &mut spans);
                spans.push(Span::styled(
                    rest[1..1 + end].to_owned(),
                    base.add_modifier(Modifier::ITALIC),
                ));
                rest = &rest[end + 2..];
                continue;
            }
        }
        // [text](url)
        if c == '[' {
            if let Some(close) = rest.find("](") {
                if let Some(end) = rest[close + 2..].find(')') {
                    flush(&mut plain, &mut spans);
                    let label = &rest[1..close];
                    let url = &rest[close + 2..close + 2 + end];
                    spans.push(Span::styled(label.to_owned(), theme.link()));
                    spans.push(Span::styled(format!(" ({url})"), theme.dim()));
                    rest = &rest[close + 3 + end..];
                    continue;
                }
            }
        }
        // <https://autolink>
        if rest.starts_with("<http") {
            if let Some(end) = rest.find('>') {
                flush(&mut plain, &mut spans);
                spans.push(Span::styled(rest[1..end].to_owned(), theme.link()));
                rest = &rest[end + 1..];
                continue;
            }
        }
        plain.push(c);
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut plain, &mut spans);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(body: &str) -> Vec<String> {
        render(body, Theme { color: false })
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    fn check(body: &str, expected: &[&str]) {
        assert_eq!(text(body), expected, "{body:?}");
    }

    #[test]
    fn blocks() {
        check("# Title\n\nPlain text.", &["Title", "", "Plain text."]);
        check("## Sub ##", &["Sub ##"]);
        check("#hashtag", &["#hashtag"]);
        check(
            "- one\n* two\n  + nested\n1. first\n10) tenth",
            &["• one", "• two", "  • nested", "1. first", "10. tenth"],
        );
        check("- [ ] open\n- [x] shut", &["☐ open", "☑ shut"]);
        check("> quoted *a*", &["│ quoted a"]);
        check(
            "---\n* * *",
            &["─".repeat(24).as_str(), "─".repeat(24).as_str()],
        );
        check(
            "```rust\nlet x = **1**;\n```\nafter",
            &["  let x = **1**;", "after"],
        );
    }

    #[test]
    fn inline_markup() {
        check("a **b** c", &["a b c"]);
        check("a __b__ c", &["a b c"]);
        check("an *em* and _em_", &["an em and em"]);
        check("snake_case_name stays", &["snake_case_name stays"]);
        check("2 * 3 * 4", &["2 * 3 * 4"]);
        check("run `heph sync`", &["run heph sync"]);
        check(
            "see [the doc](https://example.org/x) now",
            &["see the doc (https://example.org/x) now"],
        );
        check("<https://example.org>", &["https://example.org"]);
        check("unclosed **bold and [link", &["unclosed **bold and [link"]);
        check("héllo *wörld*", &["héllo wörld"]);
    }

    #[test]
    fn styles_mark_what_was_markup() {
        let lines = render("**b** `c` [l](u)", Theme { color: true });
        let spans = &lines[0].spans;
        assert!(spans[0].style.add_modifier.contains(Modifier::BOLD));
        assert_eq!(spans[2].style, Theme { color: true }.code());
        assert_eq!(spans[4].style, Theme { color: true }.link());
    }
}
