//! The TUI's whole state ([`App`]) and the one function that changes it,
//! [`update`]: an [`Action`] in, the [`Call`]s to make on the daemon out.
//!
//! Pure: no I/O, no clock, no terminal. Keys arrive as [`Action::Key`] and
//! are turned into intents by [`crate::input`]; RPC results, daemon events
//! and ticks arrive as actions from the client threads. Rendering reads
//! this state and nothing else.

use std::collections::BTreeMap;

use crossterm::event::KeyEvent;
use heph_core::input::parse_quick_add;
use heph_core::rpc::{AuthStatus, CreateParams, Event, SyncStatus};
use heph_core::{Kind, Node, NodeId, Priority, Status};
use serde_json::{Value, json};

use crate::agenda::{self, Filter, Now, Row, View};

/// How often sync and auth health are re-read without a `status` event.
pub const STATUS_EVERY_MS: i64 = 30_000;
/// More changed nodes than this in one event reload everything instead.
pub const REFRESH_LIMIT: usize = 64;
/// From this width on, the detail pane sits beside the list.
pub const WIDE: u16 = 100;

/// Whether the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemon {
    /// Not known yet (starting up).
    Connecting,
    Up,
    /// The socket refused or dropped us; the client keeps retrying.
    Down {
        reason: String,
    },
}

/// A one-line text field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub kind: InputKind,
    pub text: String,
    /// Cursor position, in characters.
    pub cursor: usize,
    /// The text filter before editing began, restored on cancel.
    restore: Option<String>,
}

impl Input {
    fn new(kind: InputKind, text: String) -> Self {
        let cursor = text.chars().count();
        Self {
            kind,
            text,
            cursor,
            restore: None,
        }
    }

    fn byte(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    fn apply(&mut self, edit: Edit) {
        let len = self.text.chars().count();
        match edit {
            Edit::Char(c) => {
                let at = self.byte(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            Edit::Backspace if self.cursor > 0 => {
                let at = self.byte(self.cursor - 1);
                self.text.remove(at);
                self.cursor -= 1;
            }
            Edit::Delete if self.cursor < len => {
                let at = self.byte(self.cursor);
                self.text.remove(at);
            }
            Edit::Left => self.cursor = self.cursor.saturating_sub(1),
            Edit::Right => self.cursor = (self.cursor + 1).min(len),
            Edit::Home => self.cursor = 0,
            Edit::End => self.cursor = len,
            Edit::Clear => {
                self.text.clear();
                self.cursor = 0;
            }
            Edit::DeleteWord => {
                let chars: Vec<char> = self.text.chars().collect();
                let mut start = self.cursor;
                while start > 0 && chars[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && chars[start - 1] != ' ' {
                    start -= 1;
                }
                let (a, b) = (self.byte(start), self.byte(self.cursor));
                self.text.replace_range(a..b, "");
                self.cursor = start;
            }
            Edit::Backspace | Edit::Delete => {}
        }
    }
}

/// What a text field is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputKind {
    /// A quick-add line for a new task or note.
    Add(Kind),
    /// A new title for this node.
    EditTitle(NodeId),
    /// The text filter, applied as it is typed.
    Filter,
    /// An id prefix to jump to.
    Jump,
}

/// One edit of a text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Char(char),
    Backspace,
    Delete,
    Left,
    Right,
    Home,
    End,
    /// Ctrl-U.
    Clear,
    /// Ctrl-W.
    DeleteWord,
}

/// What has the keyboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Input(Input),
    ConfirmDelete {
        id: NodeId,
        title: String,
    },
    TagPicker {
        index: usize,
    },
    Help,
    /// Sync and auth health in full, with the commands that fix them.
    Health,
}

/// The inverse of a change, applied by `u`.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    pub id: NodeId,
    pub set: BTreeMap<String, Value>,
    /// What was done, e.g. `marked done "Buy milk"`.
    pub label: String,
}

/// A request for the daemon; the client answers each with an [`Action`].
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `node.list` of every live node → [`Action::Loaded`].
    LoadAll,
    /// `node.get` of these ids → [`Action::Refreshed`].
    Refresh(Vec<NodeId>),
    /// `sync.status` and `auth.status` → [`Action::Status`].
    Status,
    /// `node.create` → [`Action::Saved`].
    Create {
        params: CreateParams,
        message: String,
    },
    /// `node.update` → [`Action::Saved`], carrying `undo` back.
    Update {
        id: NodeId,
        set: BTreeMap<String, Value>,
        undo: Option<Undo>,
        message: String,
    },
    /// `node.delete` → [`Action::Saved`].
    Delete {
        id: NodeId,
        undo: Option<Undo>,
        message: String,
    },
    /// `sync.now` → [`Action::SyncFinished`].
    SyncNow,
}

/// A line under the list: what just happened, or what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// Everything that happens to the TUI.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A key press, turned into one of the intents below by [`crate::input`].
    Key(KeyEvent),
    // Intents.
    Move(isize),
    Top,
    Bottom,
    Page(isize),
    SwitchView,
    ToggleShowDone,
    ToggleDetail,
    StartAdd,
    StartEditTitle,
    StartFilter,
    StartJump,
    Edit(Edit),
    Submit,
    Cancel,
    ToggleDone,
    Undo,
    Priority(i8),
    RequestDelete,
    ConfirmDelete,
    OpenTagPicker,
    ToggleHelp,
    ShowHealth,
    ClearFilters,
    Reload,
    SyncNow,
    Quit,
    // The terminal and the clock.
    Resize(u16, u16),
    Tick {
        now_ms: i64,
    },
    // From the client threads.
    Connected,
    Disconnected {
        reason: String,
    },
    Event(Event),
    Loaded(Vec<Node>),
    Refreshed {
        nodes: Vec<Node>,
        missing: Vec<NodeId>,
    },
    Status {
        sync: Result<SyncStatus, String>,
        auth: Result<AuthStatus, String>,
    },
    Saved {
        node: Node,
        undo: Option<Undo>,
        message: String,
    },
    /// A call failed; `error` is one sentence.
    Failed {
        error: String,
    },
    SyncFinished(Result<(), String>),
}

/// The TUI's state.
#[derive(Debug, Clone)]
pub struct App {
    /// Every live node the daemon has, by id.
    pub nodes: BTreeMap<NodeId, Node>,
    /// Whether the first `node.list` has answered.
    pub loaded: bool,
    pub view: View,
    pub filter: Filter,
    pub selected: Option<NodeId>,
    /// The selection's index among the list's items, kept when the node leaves.
    pub cursor: usize,
    /// The detail pane fills the main area (and, when narrow, is shown at all).
    pub detail_open: bool,
    pub detail_scroll: u16,
    pub mode: Mode,
    pub daemon: Daemon,
    pub sync: Option<SyncStatus>,
    pub auth: Option<AuthStatus>,
    /// A `sync.now` this TUI asked for is running.
    pub syncing: bool,
    pub undo: Vec<Undo>,
    pub message: Option<Message>,
    pub now: Now,
    /// When health was last asked for (Unix ms).
    pub last_status_ms: i64,
    /// The terminal's size.
    pub size: (u16, u16),
    /// Whether to use colour (`NO_COLOR` unset).
    pub color: bool,
    pub quit: bool,
}

const DAEMON_DOWN: &str = "the daemon is not running; start it with heph daemon start";

impl App {
    pub fn new(now: Now, color: bool) -> Self {
        Self {
            nodes: BTreeMap::new(),
            loaded: false,
            view: View::Agenda,
            filter: Filter::default(),
            selected: None,
            cursor: 0,
            detail_open: false,
            detail_scroll: 0,
            mode: Mode::Normal,
            daemon: Daemon::Connecting,
            sync: None,
            auth: None,
            syncing: false,
            undo: Vec::new(),
            message: None,
            last_status_ms: now.ms,
            now,
            size: (80, 24),
            color,
            quit: false,
        }
    }

    /// The rows of the list on screen.
    pub fn rows(&self) -> Vec<Row<'_>> {
        agenda::rows(&self.nodes, self.view, &self.filter, &self.now)
    }

    /// The selected node, if it is still known.
    pub fn selected_node(&self) -> Option<&Node> {
        self.selected.and_then(|id| self.nodes.get(&id))
    }

    /// Whether the detail pane sits beside the list.
    pub fn wide(&self) -> bool {
        self.size.0 >= WIDE
    }

    /// How many list lines a page is.
    fn page(&self) -> isize {
        (self.size.1 as isize - 5).max(1)
    }

    fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: false,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
        });
    }

    /// Keeps the selection on a visible item: the same node while it is
    /// listed, else the item now at the old position.
    fn fix_selection(&mut self) {
        let ids = agenda::item_ids(&self.rows());
        if let Some(i) = self.selected.and_then(|s| ids.iter().position(|&x| x == s)) {
            self.cursor = i;
            return;
        }
        if ids.is_empty() {
            self.selected = None;
            self.cursor = 0;
        } else {
            self.cursor = self.cursor.min(ids.len() - 1);
            self.selected = Some(ids[self.cursor]);
        }
        self.detail_scroll = 0;
    }

    fn select_index(&mut self, index: isize) {
        let ids = agenda::item_ids(&self.rows());
        if ids.is_empty() {
            return;
        }
        let i = index.clamp(0, ids.len() as isize - 1) as usize;
        if self.selected != Some(ids[i]) {
            self.detail_scroll = 0;
        }
        self.cursor = i;
        self.selected = Some(ids[i]);
    }

    fn upsert(&mut self, node: Node) {
        if node.deleted {
            self.nodes.remove(&node.id);
        } else {
            self.nodes.insert(node.id, node);
        }
    }

    /// The selected node, or a message saying there is none.
    fn target(&mut self) -> Option<Node> {
        let node = self.selected_node().cloned();
        if node.is_none() {
            self.error("nothing is selected");
        }
        node
    }

    /// Whether calls can be made now; says why not otherwise.
    fn online(&mut self) -> bool {
        if self.daemon == Daemon::Up {
            return true;
        }
        self.error(DAEMON_DOWN);
        false
    }
}

fn title(node: &Node) -> &str {
    node.title.as_deref().unwrap_or("(untitled)")
}

fn one(field: &str, value: Value) -> BTreeMap<String, Value> {
    BTreeMap::from([(field.to_owned(), value)])
}

/// Applies `action` to `app` and returns the calls to make on the daemon.
pub fn update(app: &mut App, action: Action) -> Vec<Call> {
    let mut calls = Vec::new();
    match action {
        Action::Key(key) => {
            if !matches!(app.mode, Mode::Input(_)) {
                app.message = None;
            }
            if let Some(next) = crate::input::action_for(app, key) {
                return update(app, next);
            }
        }
        Action::Move(delta) => match &mut app.mode {
            Mode::TagPicker { index } => {
                let len = agenda::tag_counts(&app.nodes).len() + 1;
                *index = (*index as isize + delta).clamp(0, len as isize - 1) as usize;
            }
            _ if app.detail_open => {
                app.detail_scroll = (i64::from(app.detail_scroll) + delta as i64)
                    .clamp(0, i64::from(u16::MAX)) as u16;
            }
            _ => app.select_index(app.cursor as isize + delta),
        },
        Action::Top => app.select_index(0),
        Action::Bottom => app.select_index(isize::MAX),
        Action::Page(pages) => {
            let delta = pages * app.page();
            update(app, Action::Move(delta));
        }
        Action::SwitchView => {
            app.view = match app.view {
                View::Agenda => View::Notes,
                View::Notes => View::Agenda,
            };
            app.selected = None;
            app.cursor = 0;
            app.fix_selection();
        }
        Action::ToggleShowDone => {
            app.filter.show_done = !app.filter.show_done;
            app.fix_selection();
            app.info(if app.filter.show_done {
                "showing done and cancelled tasks"
            } else {
                "hiding done and cancelled tasks"
            });
        }
        Action::ToggleDetail => {
            if app.detail_open {
                app.detail_open = false;
            } else if app.selected_node().is_some() {
                app.detail_open = true;
                app.detail_scroll = 0;
            }
        }
        Action::StartAdd => {
            let kind = match app.view {
                View::Agenda => Kind::Task,
                View::Notes => Kind::Note,
            };
            app.mode = Mode::Input(Input::new(InputKind::Add(kind), String::new()));
        }
        Action::StartEditTitle => {
            if let Some(node) = app.target() {
                let text = title(&node).to_owned();
                app.mode = Mode::Input(Input::new(InputKind::EditTitle(node.id), text));
            }
        }
        Action::StartFilter => {
            let mut input = Input::new(InputKind::Filter, app.filter.text.clone());
            input.restore = Some(app.filter.text.clone());
            app.mode = Mode::Input(input);
        }
        Action::StartJump => app.mode = Mode::Input(Input::new(InputKind::Jump, String::new())),
        Action::Edit(edit) => {
            if let Mode::Input(input) = &mut app.mode {
                input.apply(edit);
                if input.kind == InputKind::Filter {
                    app.filter.text = input.text.clone();
                    app.fix_selection();
                }
            }
        }
        Action::Submit => submit(app, &mut calls),
        Action::Cancel => {
            if let Mode::Input(Input {
                restore: Some(text),
                ..
            }) = &app.mode
            {
                app.filter.text = text.clone();
                app.fix_selection();
            }
            app.message = None;
            app.mode = Mode::Normal;
        }
        Action::ToggleDone => {
            if let Some(node) = app.target() {
                if node.kind == Some(Kind::Note) {
                    app.error("notes have no status; only tasks can be marked done");
                } else if app.online() {
                    let old = node.status.unwrap_or(Status::Todo);
                    let (new, verb) = if old == Status::Done {
                        (Status::Todo, "reopened")
                    } else {
                        (Status::Done, "marked done")
                    };
                    let label = format!("{verb} \"{}\"", title(&node));
                    calls.push(Call::Update {
                        id: node.id,
                        set: one("status", json!(new.as_str())),
                        undo: Some(Undo {
                            id: node.id,
                            set: one("status", json!(old.as_str())),
                            label: label.clone(),
                        }),
                        message: format!("{label} · u to undo"),
                    });
                }
            }
        }
        Action::Undo => match app.undo.last().cloned() {
            None => app.info("nothing to undo"),
            Some(undo) => {
                if app.online() {
                    app.undo.pop();
                    calls.push(Call::Update {
                        id: undo.id,
                        set: undo.set,
                        undo: None,
                        message: format!("undid: {}", undo.label),
                    });
                }
            }
        },
        Action::Priority(step) => {
            if let Some(node) = app.target() {
                const LEVELS: [Priority; 4] = [
                    Priority::None,
                    Priority::Low,
                    Priority::Medium,
                    Priority::High,
                ];
                let at = LEVELS.iter().position(|&p| p == node.priority).unwrap_or(0);
                let next = (at as isize + isize::from(step)).clamp(0, 3) as usize;
                if next == at {
                    app.info(format!(
                        "the priority is already {}",
                        node.priority.as_str()
                    ));
                } else if app.online() {
                    let new = LEVELS[next];
                    let label = format!(
                        "priority of \"{}\" {} → {}",
                        title(&node),
                        node.priority.as_str(),
                        new.as_str()
                    );
                    calls.push(Call::Update {
                        id: node.id,
                        set: one("priority", json!(new.as_str())),
                        undo: Some(Undo {
                            id: node.id,
                            set: one("priority", json!(node.priority.as_str())),
                            label: label.clone(),
                        }),
                        message: label,
                    });
                }
            }
        }
        Action::RequestDelete => {
            if let Some(node) = app.target() {
                app.mode = Mode::ConfirmDelete {
                    id: node.id,
                    title: title(&node).to_owned(),
                };
            }
        }
        Action::ConfirmDelete => {
            if let Mode::ConfirmDelete { id, title } = app.mode.clone() {
                app.mode = Mode::Normal;
                if app.online() {
                    let label = format!("deleted \"{title}\"");
                    calls.push(Call::Delete {
                        id,
                        undo: Some(Undo {
                            id,
                            set: one("deleted", json!(false)),
                            label: label.clone(),
                        }),
                        message: format!("{label} · u to undo"),
                    });
                }
            }
        }
        Action::OpenTagPicker => {
            let tags = agenda::tag_counts(&app.nodes);
            if tags.is_empty() {
                app.info("no node has a tag yet; add one with +tag when adding");
            } else {
                let index = app
                    .filter
                    .tag
                    .as_ref()
                    .and_then(|t| tags.iter().position(|(name, _)| name == t))
                    .map_or(0, |i| i + 1);
                app.mode = Mode::TagPicker { index };
            }
        }
        Action::ToggleHelp => {
            app.mode = if app.mode == Mode::Help {
                Mode::Normal
            } else {
                Mode::Help
            };
        }
        Action::ShowHealth => {
            app.mode = if app.mode == Mode::Health {
                Mode::Normal
            } else {
                Mode::Health
            };
        }
        Action::ClearFilters => {
            if app.detail_open {
                app.detail_open = false;
            } else if app.filter.text.is_empty() && app.filter.tag.is_none() {
                app.info("no filter to clear; q quits");
            } else {
                app.filter.text.clear();
                app.filter.tag = None;
                app.fix_selection();
                app.info("filters cleared");
            }
        }
        Action::Reload => {
            if app.online() {
                calls.extend([Call::LoadAll, Call::Status]);
                app.last_status_ms = app.now.ms;
                app.info("reloading");
            }
        }
        Action::SyncNow => {
            if app.online() {
                app.syncing = true;
                calls.push(Call::SyncNow);
            }
        }
        Action::Quit => app.quit = true,
        Action::Resize(w, h) => app.size = (w, h),
        Action::Tick { now_ms } => {
            app.now.ms = now_ms;
            if app.daemon == Daemon::Up && now_ms - app.last_status_ms >= STATUS_EVERY_MS {
                app.last_status_ms = now_ms;
                calls.push(Call::Status);
            }
            // A date rolling over moves tasks between sections.
            app.fix_selection();
        }
        Action::Connected => {
            app.daemon = Daemon::Up;
            app.last_status_ms = app.now.ms;
            calls.extend([Call::LoadAll, Call::Status]);
        }
        Action::Disconnected { reason } => {
            app.daemon = Daemon::Down { reason };
            app.syncing = false;
        }
        Action::Event(event) => match event {
            Event::Changed { nodes, .. } if nodes.len() > REFRESH_LIMIT => {
                calls.push(Call::LoadAll)
            }
            Event::Changed { nodes, .. } => calls.push(Call::Refresh(nodes)),
            Event::Resync { .. } => calls.push(Call::LoadAll),
            Event::Status => {
                app.last_status_ms = app.now.ms;
                calls.push(Call::Status);
            }
            Event::Subscribed { .. } => {}
        },
        Action::Loaded(nodes) => {
            app.nodes = nodes
                .into_iter()
                .filter(|n| !n.deleted)
                .map(|n| (n.id, n))
                .collect();
            app.loaded = true;
            app.fix_selection();
        }
        Action::Refreshed { nodes, missing } => {
            for id in missing {
                app.nodes.remove(&id);
            }
            for node in nodes {
                app.upsert(node);
            }
            app.fix_selection();
        }
        Action::Status { sync, auth } => {
            let mut errors = Vec::new();
            match sync {
                Ok(s) => app.sync = Some(s),
                Err(e) => errors.push(format!("cannot read the sync status: {e}")),
            }
            match auth {
                Ok(a) => app.auth = Some(a),
                Err(e) => errors.push(format!("cannot read the sign-in status: {e}")),
            }
            if !errors.is_empty() {
                app.error(errors.join("; "));
            }
        }
        Action::Saved {
            node,
            undo,
            message,
        } => {
            let id = node.id;
            let created = !app.nodes.contains_key(&id) && !node.deleted;
            app.upsert(node);
            if created {
                app.selected = Some(id);
            }
            app.fix_selection();
            if let Some(undo) = undo {
                app.undo.push(undo);
            }
            app.info(message);
        }
        Action::Failed { error } => app.error(error),
        Action::SyncFinished(result) => {
            app.syncing = false;
            match result {
                Ok(()) => app.info("synced"),
                Err(e) => app.error(e),
            }
            app.last_status_ms = app.now.ms;
            calls.push(Call::Status);
        }
    }
    calls
}

/// Enter: finishes what the current mode was doing.
fn submit(app: &mut App, calls: &mut Vec<Call>) {
    match app.mode.clone() {
        Mode::Input(input) => {
            let text = input.text.trim().to_owned();
            match input.kind {
                InputKind::Add(kind) => {
                    if !app.online() {
                        return;
                    }
                    match parse_quick_add(&text, app.now.today()) {
                        Err(e) => app.error(e),
                        Ok(q) => {
                            let what = if kind == Kind::Note { "note" } else { "task" };
                            calls.push(Call::Create {
                                message: format!("added {what} \"{}\"", q.title),
                                params: CreateParams {
                                    kind: Some(kind),
                                    title: q.title,
                                    priority: q.priority,
                                    due: q.due,
                                    scheduled: q.scheduled,
                                    tags: q.tags,
                                    ..CreateParams::default()
                                },
                            });
                            app.mode = Mode::Normal;
                        }
                    }
                }
                InputKind::EditTitle(id) => {
                    let old = app.nodes.get(&id).map(|n| title(n).to_owned());
                    if text.is_empty() {
                        app.error("the title cannot be empty; Esc keeps the old one");
                    } else if old.as_deref() == Some(text.as_str()) {
                        app.mode = Mode::Normal;
                    } else if app.online() {
                        let old = old.unwrap_or_default();
                        let label = format!("renamed \"{old}\" to \"{text}\"");
                        calls.push(Call::Update {
                            id,
                            set: one("title", json!(text)),
                            undo: Some(Undo {
                                id,
                                set: one("title", json!(old)),
                                label: label.clone(),
                            }),
                            message: label,
                        });
                        app.mode = Mode::Normal;
                    }
                }
                InputKind::Filter => app.mode = Mode::Normal,
                InputKind::Jump => jump(app, &text),
            }
        }
        Mode::TagPicker { index } => {
            let tags = agenda::tag_counts(&app.nodes);
            app.filter.tag = index
                .checked_sub(1)
                .and_then(|i| tags.get(i))
                .map(|(t, _)| t.clone());
            app.mode = Mode::Normal;
            app.fix_selection();
        }
        Mode::ConfirmDelete { .. } => {
            // Enter is not a yes: deleting needs an explicit `y`.
        }
        Mode::Help | Mode::Health => app.mode = Mode::Normal,
        Mode::Normal => {
            let _ = update(app, Action::ToggleDetail);
        }
    }
}

/// Selects the one node whose id starts with `prefix`, showing it whatever
/// the view and filters were.
fn jump(app: &mut App, prefix: &str) {
    let prefix = prefix.trim_start_matches('#').to_ascii_lowercase();
    if prefix.is_empty() {
        app.error("type the start of an id, e.g. 1a2b");
        return;
    }
    let hits: Vec<&Node> = app
        .nodes
        .values()
        .filter(|n| n.id.as_str().starts_with(&prefix))
        .collect();
    let node = match hits.as_slice() {
        [] => {
            app.error(format!("no node's id starts with \"{prefix}\""));
            return;
        }
        [one] => (*one).clone(),
        many => {
            app.error(format!(
                "{} nodes' ids start with \"{prefix}\"; type more of the id",
                many.len()
            ));
            return;
        }
    };
    app.mode = Mode::Normal;
    app.view = if node.kind == Some(Kind::Note) {
        View::Notes
    } else {
        View::Agenda
    };
    if !app.filter.matches(&node) {
        app.filter.text.clear();
        app.filter.tag = None;
    }
    if matches!(node.status, Some(Status::Done | Status::Cancelled)) {
        app.filter.show_done = true;
    }
    app.selected = Some(node.id);
    app.fix_selection();
    app.info(format!("jumped to \"{}\"", title(&node)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{app_with, id, local_sync, no_auth, node, now, sample_nodes};

    fn selected_title(app: &App) -> &str {
        app.selected_node()
            .and_then(|n| n.title.as_deref())
            .unwrap_or("-")
    }

    fn msg(app: &App) -> &str {
        app.message.as_ref().map_or("", |m| m.text.as_str())
    }

    fn type_text(app: &mut App, text: &str) {
        for c in text.chars() {
            assert!(update(app, Action::Edit(Edit::Char(c))).is_empty());
        }
    }

    #[test]
    fn startup_connects_then_loads_and_selects_the_first_item() {
        let mut app = App::new(now(), true);
        assert_eq!(app.daemon, Daemon::Connecting);
        assert_eq!(
            update(&mut app, Action::Connected),
            [Call::LoadAll, Call::Status]
        );
        assert_eq!(app.daemon, Daemon::Up);
        update(&mut app, Action::Loaded(sample_nodes()));
        assert!(app.loaded);
        assert_eq!(selected_title(&app), "Pay the electricity bill");
    }

    #[test]
    fn moving_skips_headers_and_stops_at_the_ends() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::Move(1));
        assert_eq!(selected_title(&app), "Standup");
        update(&mut app, Action::Move(1));
        assert_eq!(selected_title(&app), "Buy milk");
        update(&mut app, Action::Move(-10));
        assert_eq!(selected_title(&app), "Pay the electricity bill");
        update(&mut app, Action::Bottom);
        assert_eq!(selected_title(&app), "Read about CRDTs");
        update(&mut app, Action::Move(5));
        assert_eq!(selected_title(&app), "Read about CRDTs");
        update(&mut app, Action::Top);
        assert_eq!(selected_title(&app), "Pay the electricity bill");
        update(&mut app, Action::Page(1));
        assert_eq!(selected_title(&app), "Read about CRDTs");
        update(&mut app, Action::Page(-1));
        assert_eq!(selected_title(&app), "Pay the electricity bill");
    }

    #[test]
    fn switching_views_shows_notes() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::SwitchView);
        assert_eq!(app.view, View::Notes);
        assert_eq!(selected_title(&app), "Oat milk brand");
        update(&mut app, Action::SwitchView);
        assert_eq!(app.view, View::Agenda);
    }

    #[test]
    fn show_done_toggles_the_done_section() {
        let mut app = app_with(sample_nodes());
        assert!(!app.rows().iter().any(|r| matches!(r, Row::Item { node, .. } if node.title.as_deref() == Some("Renew passport"))));
        update(&mut app, Action::ToggleShowDone);
        assert!(app.filter.show_done);
        update(&mut app, Action::Bottom);
        assert_eq!(selected_title(&app), "Renew passport");
        update(&mut app, Action::ToggleShowDone);
        assert_eq!(selected_title(&app), "Read about CRDTs");
        assert_eq!(msg(&app), "hiding done and cancelled tasks");
    }

    #[test]
    fn the_detail_opens_scrolls_and_closes() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::ToggleDetail);
        assert!(app.detail_open);
        update(&mut app, Action::Move(3));
        assert_eq!(
            (app.detail_scroll, selected_title(&app)),
            (3, "Pay the electricity bill")
        );
        update(&mut app, Action::Move(-9));
        assert_eq!(app.detail_scroll, 0);
        update(&mut app, Action::ClearFilters);
        assert!(!app.detail_open);
        // Enter in normal mode opens it too.
        update(&mut app, Action::Submit);
        assert!(app.detail_open);
        let mut empty = app_with(vec![]);
        update(&mut empty, Action::ToggleDetail);
        assert!(!empty.detail_open);
    }

    #[test]
    fn quick_add_parses_like_heph_add() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::StartAdd);
        type_text(&mut app, "Call Bob +work due:fri pri:high");
        let calls = update(&mut app, Action::Submit);
        assert_eq!(
            calls,
            [Call::Create {
                params: CreateParams {
                    kind: Some(Kind::Task),
                    title: "Call Bob".into(),
                    priority: Some(Priority::High),
                    due: Some("2026-11-27".into()),
                    tags: vec!["work".into()],
                    ..CreateParams::default()
                },
                message: "added task \"Call Bob\"".into(),
            }]
        );
        assert_eq!(app.mode, Mode::Normal);
        // The answer selects the new node.
        let mut n = node(20, "Call Bob");
        n.due = Some("2026-11-27".into());
        update(
            &mut app,
            Action::Saved {
                node: n,
                undo: None,
                message: "added task \"Call Bob\"".into(),
            },
        );
        assert_eq!(selected_title(&app), "Call Bob");
        assert_eq!(msg(&app), "added task \"Call Bob\"");
    }

    #[test]
    fn quick_add_in_notes_adds_a_note_and_bad_input_stays_open() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::SwitchView);
        update(&mut app, Action::StartAdd);
        type_text(&mut app, "Ideas due:someday");
        assert!(update(&mut app, Action::Submit).is_empty());
        assert!(
            msg(&app).starts_with("cannot read \"someday\" as a date"),
            "{}",
            msg(&app)
        );
        assert!(matches!(app.mode, Mode::Input(_)));
        for _ in 0..12 {
            update(&mut app, Action::Edit(Edit::Backspace));
        }
        let calls = update(&mut app, Action::Submit);
        let [Call::Create { params, .. }] = calls.as_slice() else {
            panic!("{calls:?}")
        };
        assert_eq!(
            (params.kind, params.title.as_str()),
            (Some(Kind::Note), "Ideas")
        );
    }

    #[test]
    fn text_fields_edit_at_the_cursor() {
        let check = |start: &str, edits: &[Edit], text: &str, cursor: usize| {
            let mut input = Input::new(InputKind::Jump, start.into());
            for &e in edits {
                input.apply(e);
            }
            assert_eq!(
                (input.text.as_str(), input.cursor),
                (text, cursor),
                "{start:?} {edits:?}"
            );
        };
        use Edit::*;
        check("abc", &[Left, Char('é')], "abéc", 3);
        check("abc", &[Home, Delete], "bc", 0);
        check("abc", &[Home, Backspace], "abc", 0);
        check("abc", &[End, Delete, Backspace], "ab", 2);
        check("héllo wörld  ", &[DeleteWord], "héllo ", 6);
        check("one two", &[Left, Left, DeleteWord], "one wo", 4);
        check("abc", &[Clear, Char('x')], "x", 1);
        check("ab", &[Right, Right, Left, Left, Left], "ab", 0);
    }

    #[test]
    fn editing_a_title_sends_an_update_with_its_undo() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::StartEditTitle);
        let Mode::Input(input) = &app.mode else {
            panic!()
        };
        assert_eq!(input.text, "Pay the electricity bill");
        update(&mut app, Action::Edit(Edit::Clear));
        assert!(update(&mut app, Action::Submit).is_empty());
        assert_eq!(
            msg(&app),
            "the title cannot be empty; Esc keeps the old one"
        );
        type_text(&mut app, "Pay the gas bill");
        let calls = update(&mut app, Action::Submit);
        assert_eq!(
            calls,
            [Call::Update {
                id: id(1),
                set: one("title", json!("Pay the gas bill")),
                undo: Some(Undo {
                    id: id(1),
                    set: one("title", json!("Pay the electricity bill")),
                    label: "renamed \"Pay the electricity bill\" to \"Pay the gas bill\"".into(),
                }),
                message: "renamed \"Pay the electricity bill\" to \"Pay the gas bill\"".into(),
            }]
        );
        // An unchanged title sends nothing.
        update(&mut app, Action::StartEditTitle);
        assert!(update(&mut app, Action::Submit).is_empty());
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn done_then_undo_restores_the_old_status() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::Move(1)); // Standup, doing
        let calls = update(&mut app, Action::ToggleDone);
        let [
            Call::Update {
                id: target,
                set,
                undo: Some(undo),
                message,
            },
        ] = calls.as_slice()
        else {
            panic!("{calls:?}")
        };
        assert_eq!((*target, set), (id(3), &one("status", json!("done"))));
        assert_eq!(undo.set, one("status", json!("doing")));
        assert_eq!(message, "marked done \"Standup\" · u to undo");
        // The daemon answers; the task leaves the agenda and the next one is selected.
        let mut done = app.nodes[&id(3)].clone();
        done.status = Some(Status::Done);
        update(
            &mut app,
            Action::Saved {
                node: done,
                undo: Some(undo.clone()),
                message: message.clone(),
            },
        );
        assert_eq!(selected_title(&app), "Buy milk");
        assert_eq!(app.undo.len(), 1);
        let calls = update(&mut app, Action::Undo);
        assert_eq!(
            calls,
            [Call::Update {
                id: id(3),
                set: one("status", json!("doing")),
                undo: None,
                message: "undid: marked done \"Standup\"".into(),
            }]
        );
        assert!(app.undo.is_empty());
        assert!(update(&mut app, Action::Undo).is_empty());
        assert_eq!(msg(&app), "nothing to undo");
    }

    #[test]
    fn a_done_task_reopens_and_notes_cannot_be_done() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::ToggleShowDone);
        update(&mut app, Action::Bottom);
        let calls = update(&mut app, Action::ToggleDone);
        let [Call::Update { set, .. }] = calls.as_slice() else {
            panic!()
        };
        assert_eq!(set, &one("status", json!("todo")));
        update(&mut app, Action::SwitchView);
        assert!(update(&mut app, Action::ToggleDone).is_empty());
        assert_eq!(
            msg(&app),
            "notes have no status; only tasks can be marked done"
        );
    }

    #[test]
    fn priority_steps_up_and_down_within_bounds() {
        let mut app = app_with(sample_nodes());
        // The first item is high already.
        assert!(update(&mut app, Action::Priority(1)).is_empty());
        assert_eq!(msg(&app), "the priority is already high");
        let calls = update(&mut app, Action::Priority(-1));
        let [
            Call::Update {
                set,
                undo: Some(undo),
                message,
                ..
            },
        ] = calls.as_slice()
        else {
            panic!("{calls:?}")
        };
        assert_eq!(set, &one("priority", json!("medium")));
        assert_eq!(undo.set, one("priority", json!("high")));
        assert_eq!(
            message,
            "priority of \"Pay the electricity bill\" high → medium"
        );
    }

    #[test]
    fn delete_asks_first_and_can_be_undone() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::RequestDelete);
        assert_eq!(
            app.mode,
            Mode::ConfirmDelete {
                id: id(1),
                title: "Pay the electricity bill".into()
            }
        );
        // Enter is not a yes; Esc cancels.
        assert!(update(&mut app, Action::Submit).is_empty());
        update(&mut app, Action::Cancel);
        assert_eq!(app.mode, Mode::Normal);
        update(&mut app, Action::RequestDelete);
        let calls = update(&mut app, Action::ConfirmDelete);
        let [
            Call::Delete {
                id: target,
                undo: Some(undo),
                ..
            },
        ] = calls.as_slice()
        else {
            panic!("{calls:?}")
        };
        assert_eq!((*target, &undo.set), (id(1), &one("deleted", json!(false))));
        let mut gone = app.nodes[&id(1)].clone();
        gone.deleted = true;
        update(
            &mut app,
            Action::Saved {
                node: gone,
                undo: Some(undo.clone()),
                message: "deleted".into(),
            },
        );
        assert!(!app.nodes.contains_key(&id(1)));
        assert_eq!(selected_title(&app), "Standup");
    }

    #[test]
    fn jump_finds_a_node_by_id_prefix_anywhere() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::StartFilter);
        type_text(&mut app, "milk");
        update(&mut app, Action::Submit);
        update(&mut app, Action::StartJump);
        type_text(&mut app, "0707");
        update(&mut app, Action::Submit);
        // The done task was hidden and filtered out: both are lifted.
        assert_eq!(selected_title(&app), "Renew passport");
        assert!(app.filter.show_done);
        assert_eq!(app.filter.text, "");
        update(&mut app, Action::StartJump);
        type_text(&mut app, "#0808");
        update(&mut app, Action::Submit);
        assert_eq!(
            (app.view, selected_title(&app)),
            (View::Notes, "Packing list")
        );
        update(&mut app, Action::StartJump);
        type_text(&mut app, "0");
        update(&mut app, Action::Submit);
        assert_eq!(
            msg(&app),
            "9 nodes' ids start with \"0\"; type more of the id"
        );
        update(&mut app, Action::Edit(Edit::Clear));
        type_text(&mut app, "ff");
        update(&mut app, Action::Submit);
        assert_eq!(msg(&app), "no node's id starts with \"ff\"");
        assert!(matches!(app.mode, Mode::Input(_)));
    }

    #[test]
    fn the_text_filter_applies_while_typing_and_cancel_restores_it() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::StartFilter);
        type_text(&mut app, "bill");
        assert_eq!(agenda::item_ids(&app.rows()), [id(1)]);
        update(&mut app, Action::Cancel);
        assert_eq!(app.filter.text, "");
        update(&mut app, Action::StartFilter);
        type_text(&mut app, "MILK");
        update(&mut app, Action::Submit);
        assert_eq!(agenda::item_ids(&app.rows()), [id(2)]);
        update(&mut app, Action::ClearFilters);
        assert_eq!(
            (app.filter.text.as_str(), msg(&app)),
            ("", "filters cleared")
        );
        update(&mut app, Action::ClearFilters);
        assert_eq!(msg(&app), "no filter to clear; q quits");
    }

    #[test]
    fn the_tag_picker_sets_and_clears_the_tag_filter() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::OpenTagPicker);
        assert_eq!(app.mode, Mode::TagPicker { index: 0 });
        update(&mut app, Action::Move(2)); // (all), errand, home
        update(&mut app, Action::Submit);
        assert_eq!(app.filter.tag.as_deref(), Some("home"));
        assert_eq!(agenda::item_ids(&app.rows()), [id(1), id(2)]);
        update(&mut app, Action::OpenTagPicker);
        assert_eq!(app.mode, Mode::TagPicker { index: 2 });
        update(&mut app, Action::Move(-9));
        update(&mut app, Action::Submit);
        assert_eq!(app.filter.tag, None);
        let mut bare = app_with(vec![node(1, "x")]);
        update(&mut bare, Action::OpenTagPicker);
        assert_eq!(bare.mode, Mode::Normal);
    }

    #[test]
    fn help_and_health_toggle() {
        let mut app = app_with(sample_nodes());
        update(&mut app, Action::ToggleHelp);
        assert_eq!(app.mode, Mode::Help);
        update(&mut app, Action::ToggleHelp);
        assert_eq!(app.mode, Mode::Normal);
        update(&mut app, Action::ShowHealth);
        assert_eq!(app.mode, Mode::Health);
        update(&mut app, Action::Submit);
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn reload_sync_and_quit() {
        let mut app = app_with(sample_nodes());
        assert_eq!(
            update(&mut app, Action::Reload),
            [Call::LoadAll, Call::Status]
        );
        assert_eq!(update(&mut app, Action::SyncNow), [Call::SyncNow]);
        assert!(app.syncing);
        let calls = update(
            &mut app,
            Action::SyncFinished(Err(
                "no hub is configured, so there is nothing to sync with".into(),
            )),
        );
        assert_eq!(calls, [Call::Status]);
        assert!(!app.syncing);
        assert_eq!(
            msg(&app),
            "no hub is configured, so there is nothing to sync with"
        );
        update(&mut app, Action::Quit);
        assert!(app.quit);
    }

    #[test]
    fn while_the_daemon_is_down_changes_are_refused_with_the_fix() {
        let mut app = app_with(sample_nodes());
        update(
            &mut app,
            Action::Disconnected {
                reason: "connection refused".into(),
            },
        );
        assert_eq!(
            app.daemon,
            Daemon::Down {
                reason: "connection refused".into()
            }
        );
        // The last known agenda stays on screen.
        assert_eq!(selected_title(&app), "Pay the electricity bill");
        for action in [
            Action::ToggleDone,
            Action::Priority(-1),
            Action::Reload,
            Action::SyncNow,
        ] {
            assert!(update(&mut app, action.clone()).is_empty(), "{action:?}");
            assert_eq!(msg(&app), DAEMON_DOWN);
        }
        // Ticks do not ask a daemon that is down.
        let later = app.now.ms + STATUS_EVERY_MS;
        assert!(update(&mut app, Action::Tick { now_ms: later }).is_empty());
        assert_eq!(
            update(&mut app, Action::Connected),
            [Call::LoadAll, Call::Status]
        );
    }

    #[test]
    fn ticks_refresh_health_slowly() {
        let mut app = app_with(sample_nodes());
        let t0 = app.now.ms;
        assert!(update(&mut app, Action::Tick { now_ms: t0 + 1000 }).is_empty());
        assert_eq!(app.now.ms, t0 + 1000);
        assert_eq!(
            update(
                &mut app,
                Action::Tick {
                    now_ms: t0 + STATUS_EVERY_MS
                }
            ),
            [Call::Status]
        );
        assert!(
            update(
                &mut app,
                Action::Tick {
                    now_ms: t0 + STATUS_EVERY_MS + 1
                }
            )
            .is_empty()
        );
    }

    #[test]
    fn events_become_refreshes() {
        let mut app = app_with(sample_nodes());
        let changed = |nodes: Vec<NodeId>| Action::Event(Event::Changed { nodes, last_seq: 9 });
        assert_eq!(
            update(&mut app, changed(vec![id(1)])),
            [Call::Refresh(vec![id(1)])]
        );
        let many: Vec<NodeId> = (0..=REFRESH_LIMIT as u8).map(id).collect();
        assert_eq!(update(&mut app, changed(many)), [Call::LoadAll]);
        assert_eq!(
            update(&mut app, Action::Event(Event::Resync { skipped: 3 })),
            [Call::LoadAll]
        );
        assert_eq!(
            update(&mut app, Action::Event(Event::Status)),
            [Call::Status]
        );
        assert!(update(&mut app, Action::Event(Event::Subscribed { last_seq: 1 })).is_empty());
    }

    #[test]
    fn refreshes_upsert_and_remove_nodes() {
        let mut app = app_with(sample_nodes());
        let mut renamed = app.nodes[&id(1)].clone();
        renamed.title = Some("Pay the bill now".into());
        let mut deleted = app.nodes[&id(2)].clone();
        deleted.deleted = true;
        update(
            &mut app,
            Action::Refreshed {
                nodes: vec![renamed, deleted, node(30, "From another spoke")],
                missing: vec![id(3)],
            },
        );
        assert_eq!(selected_title(&app), "Pay the bill now");
        assert!(!app.nodes.contains_key(&id(2)) && !app.nodes.contains_key(&id(3)));
        assert!(app.nodes.contains_key(&id(30)));
    }

    #[test]
    fn status_results_are_kept_and_failures_said() {
        let mut app = app_with(vec![]);
        assert_eq!(app.sync, Some(local_sync()));
        assert_eq!(app.auth, Some(no_auth()));
        update(
            &mut app,
            Action::Status {
                sync: Err("the daemon closed the connection".into()),
                auth: Ok(no_auth()),
            },
        );
        assert_eq!(app.sync, Some(local_sync()));
        assert_eq!(
            msg(&app),
            "cannot read the sync status: the daemon closed the connection"
        );
        update(
            &mut app,
            Action::Failed {
                error: "boom happened".into(),
            },
        );
        assert_eq!(
            app.message,
            Some(Message {
                text: "boom happened".into(),
                error: true
            })
        );
    }

    #[test]
    fn resize_is_remembered() {
        let mut app = app_with(vec![]);
        update(&mut app, Action::Resize(80, 24));
        assert_eq!(app.size, (80, 24));
        assert!(!app.wide());
    }
}
