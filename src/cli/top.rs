//! `top`: a full-screen live view of every instance (ratatui), sampled in
//! the background; sort with c/m/n/s, quit with q. The terminal is restored
//! on every exit path (ratatui's panic hook included).

use super::Ctx;
use crate::core::error::{Error, Result};
use crate::features::monitor::stats::{human_bytes, Sample};
use crate::state::registry::Instance;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::Constraint;
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Block, Row, Table};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq)]
enum SortKey {
    Name,
    Cpu,
    Mem,
    Status,
}

impl SortKey {
    /// What the title says the rows are sorted by.
    fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Cpu => "cpu",
            SortKey::Mem => "memory",
            SortKey::Status => "status",
        }
    }

    /// The column (index in the header) the key sorts by.
    fn column(self) -> usize {
        match self {
            SortKey::Name => 0,
            SortKey::Status => 1,
            SortKey::Cpu => 4,
            SortKey::Mem => 5,
        }
    }
}

struct Snapshot {
    instances: Vec<Instance>,
    samples: HashMap<String, Sample>,
}

fn sampler(tx: mpsc::Sender<Snapshot>) {
    std::thread::spawn(move || loop {
        let Ok(ctx) = Ctx::from_env() else { return };
        let samples = crate::service::stats::sample(&ctx, None).unwrap_or_default();
        // The agents' latest words (a failure only leaves the last ones).
        let _ = crate::features::activity::sync(&ctx);
        let instances = ctx
            .store
            .load()
            .map(|r| r.instances.into_values().collect())
            .unwrap_or_default();
        let snap = Snapshot {
            instances,
            samples: samples.into_iter().map(|s| (s.id.clone(), s)).collect(),
        };
        if tx.send(snap).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    });
}

pub fn top(ctx: &Ctx) -> Result<u8> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return Err(Error::Usage(
            "top needs a terminal; use `ai-sessctl stats --json`".into(),
        ));
    }
    if ctx.store.load().is_ok_and(|r| r.live_count() > 0) {
        crate::features::activity::watch::ensure(ctx);
    }
    let first = Snapshot {
        instances: ctx.store.load()?.instances.into_values().collect(),
        samples: HashMap::new(),
    };
    let (tx, rx) = mpsc::channel();
    sampler(tx);
    let mut terminal = ratatui::init();
    let result = ui_loop(&mut terminal, rx, first);
    ratatui::restore();
    result.map(|_| 0)
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    rx: mpsc::Receiver<Snapshot>,
    mut snap: Snapshot,
) -> Result<()> {
    let mut sort = SortKey::Name;
    let io = |e: std::io::Error| Error::Other(format!("terminal: {e}"));
    loop {
        while let Ok(s) = rx.try_recv() {
            snap = s;
        }
        terminal.draw(|f| draw(f, &snap, sort)).map_err(io)?;
        if event::poll(Duration::from_millis(200)).map_err(io)? {
            if let Event::Key(k) = event::read().map_err(io)? {
                match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        return Ok(())
                    }
                    KeyCode::Char('c') => sort = SortKey::Cpu,
                    KeyCode::Char('m') => sort = SortKey::Mem,
                    KeyCode::Char('n') => sort = SortKey::Name,
                    KeyCode::Char('s') => sort = SortKey::Status,
                    _ => {}
                }
            }
        }
    }
}

fn draw(f: &mut ratatui::Frame, snap: &Snapshot, sort: SortKey) {
    let mut rows: Vec<(&Instance, Option<&Sample>)> = snap
        .instances
        .iter()
        .map(|i| (i, snap.samples.get(i.id.as_str())))
        .collect();
    let cpu = |s: Option<&Sample>| s.map(|s| s.cpu_percent).unwrap_or(-1.0);
    let mem = |s: Option<&Sample>| s.map(|s| s.memory_usage).unwrap_or(0);
    match sort {
        SortKey::Name => rows.sort_by(|a, b| a.0.id.cmp(&b.0.id)),
        SortKey::Cpu => rows.sort_by(|a, b| cpu(b.1).total_cmp(&cpu(a.1))),
        SortKey::Mem => rows.sort_by_key(|r| std::cmp::Reverse(mem(r.1))),
        SortKey::Status => rows.sort_by_key(|r| r.0.status.as_str()),
    }
    let now = chrono::Utc::now();
    let body: Vec<Row> = rows.iter().map(|(i, s)| row(i, *s, now)).collect();
    // The sorted column is marked; the others keep their plain names.
    let names = [
        "ID", "STATUS", "ACTIVITY", "HEALTH", "CPU", "MEMORY", "PORT", "UPTIME", "PROJECT",
    ];
    let header = Row::new(names.iter().enumerate().map(|(n, name)| {
        if n == sort.column() {
            format!("{name} ▼")
        } else {
            (*name).to_owned()
        }
    }))
    .style(Style::default().add_modifier(Modifier::BOLD));
    // Columns as wide as what they hold; the project path, last, takes
    // what is left (and is cut first on a narrow terminal).
    let id_width = snap
        .instances
        .iter()
        .map(|i| i.id.as_str().chars().count())
        .max()
        .unwrap_or(2)
        .clamp(4, 48) as u16;
    let widths = [
        Constraint::Length(id_width),
        Constraint::Length(14),
        Constraint::Length(9),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(21),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Fill(1),
    ];
    let running = snap.instances.iter().filter(|i| i.status.is_live()).count();
    // The one count of "needs you" (list, prompt, dashboard, API agree).
    let waiting = snap.instances.iter().filter(|i| i.needs_you()).count();
    let waiting = if waiting > 0 {
        format!(", {waiting} need you")
    } else {
        String::new()
    };
    let title = format!(
        " ai-sessions: {running} running of {}{waiting} — sorted by {} (c cpu, m memory, n name, s status) — q quit ",
        snap.instances.len(),
        sort.label()
    );
    let table = Table::new(body, widths)
        .header(header)
        .column_spacing(2)
        .block(Block::bordered().title(title));
    f.render_widget(table, f.area());
}

/// One instance's row; one that needs you stands out.
fn row<'a>(i: &Instance, s: Option<&Sample>, now: chrono::DateTime<chrono::Utc>) -> Row<'a> {
    let color = match i.status {
        crate::core::types::Status::Running => Color::Green,
        crate::core::types::Status::Error => Color::Red,
        crate::core::types::Status::Paused => Color::Yellow,
        _ => Color::DarkGray,
    };
    let health = i
        .health
        .as_ref()
        .map(|h| h.status.to_string())
        .unwrap_or_else(|| "-".into());
    let uptime = match i.timestamps.started {
        Some(t) if i.status.is_live() => crate::cli::output::human_duration(now - t),
        _ => "-".into(),
    };
    Row::new(vec![
        i.id.to_string(),
        i.status.to_string(),
        super::list::activity_word(i),
        health,
        s.map(|s| format!("{:.1}%", s.cpu_percent))
            .unwrap_or_else(|| "-".into()),
        s.map(|s| {
            format!(
                "{} / {}",
                human_bytes(s.memory_usage),
                human_bytes(s.memory_limit)
            )
        })
        .unwrap_or_else(|| "-".into()),
        super::list::port_cell(i),
        uptime,
        super::list::project_shown(&i.project_path),
    ])
    .style(if i.needs_you() {
        Style::default()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::default().fg(color)
    })
}
