//! Styles, with and without colour: the only place that picks a colour.
//!
//! With `NO_COLOR` every style here is colourless and meaning is carried by
//! text and by bold, dim and reverse video alone, so nothing is lost on a
//! monochrome terminal.

use ratatui::style::{Color, Modifier, Style};

use crate::agenda::Section;
use heph_core::Priority;

/// How serious a status chip is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Good,
    Neutral,
    Busy,
    Warn,
    Bad,
}

/// The styles of one run.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn plain(self) -> Style {
        Style::new()
    }

    pub fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    /// The selected list row.
    pub fn selected(self) -> Style {
        if self.color {
            Style::new()
                .bg(Color::Indexed(237))
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED)
        }
    }

    /// The active tab.
    pub fn active_tab(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::Black)
                .bg(Color::Cyan)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    pub fn section(self, s: Section) -> Style {
        let c = match s {
            Section::Overdue => Color::Red,
            Section::Today => Color::Yellow,
            Section::Upcoming => Color::Cyan,
            Section::NoDate | Section::Done => Color::Gray,
            Section::Notes => Color::Magenta,
        };
        self.fg(c).add_modifier(Modifier::BOLD)
    }

    pub fn priority(self, p: Priority) -> Style {
        match p {
            Priority::High => self.fg(Color::Red).add_modifier(Modifier::BOLD),
            Priority::Medium => self.fg(Color::Yellow),
            Priority::Low => self.fg(Color::Blue),
            Priority::None => self.plain(),
        }
    }

    pub fn tag(self) -> Style {
        self.fg(Color::Magenta)
    }

    pub fn overdue(self) -> Style {
        self.fg(Color::Red)
    }

    pub fn key(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn link(self) -> Style {
        self.fg(Color::Blue).add_modifier(Modifier::UNDERLINED)
    }

    pub fn code(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn chip(self, s: Severity) -> Style {
        match s {
            Severity::Good => self.fg(Color::Green),
            Severity::Neutral => self.dim(),
            Severity::Busy => self.fg(Color::Cyan),
            Severity::Warn => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Severity::Bad => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }
}
