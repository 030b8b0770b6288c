//! Reporters for `ward run`/`ward resume`: live progress at a terminal, and
//! a quiet one for cron that speaks only about failures (so cron mail stays
//! short and means something).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Style;
use crate::execute::{Event, Reporter, StepEnd};
use crate::progress::{Progress, Sample};
use crate::state::{ItemState, RunState, StepState};

/// Human-friendly duration: `850ms`, `4.2s`, `3m12s`, `1h02m`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1_000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// `1 step`, `2 steps`.
pub fn count(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// ` --state PATH` (quoted for the shell) when the run was given one, so the
/// hints printed after a run can be pasted as they are.
pub fn state_flag(state: Option<&Path>) -> String {
    state
        .map(|p| {
            format!(
                " --state {}",
                crate::shell::quote(&crate::state::shown_location(p))
            )
        })
        .unwrap_or_default()
}

/// The commands to look at and continue a run that did not succeed.
fn next_steps(run_id: &str, state: &str) -> String {
    format!("  details: ward status{state} {run_id}; continue: ward resume{state} {run_id}")
}

/// The longest line a log tail shows, in characters; the rest is cut.
pub const TAIL_LINE_CHARS: usize = 500;
/// The most a log tail holds in all, in bytes (oldest lines go first).
pub const TAIL_BYTES: usize = 64 * 1024;

/// A line of a step's output as text to show: control characters other
/// than a tab are written out (`\u{1b}`), so that what a step prints cannot
/// clear the operator's screen, set its title or break the live lines
/// (the log keeps the bytes as they were).
pub fn visible(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The last `n` lines of a log file, for failure reports and the
/// notification summary: each line cut at [`TAIL_LINE_CHARS`] (marked),
/// all of them at most [`TAIL_BYTES`]. Only the file's end is read, so a
/// step that printed gigabytes on one line costs no more than a short log
/// (`ward log` shows the whole file, from elsewhere).
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::{Read, Seek, SeekFrom};
    // Not a plain read: a FIFO or a symlink at the log's place must not
    // hang the report or lead elsewhere.
    let Ok(fd) = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Vec::new();
    };
    let mut file = std::fs::File::from(fd);
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    if !meta.is_file() {
        return Vec::new();
    }
    // Enough for `n` full lines of the longest kind (4 bytes a character).
    let window = (n as u64) * (TAIL_LINE_CHARS as u64 * 4 + 1) + 1;
    let start = meta.len().saturating_sub(window);
    // One byte before the window tells whether it begins a line.
    let before = u64::from(start > 0);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(start - before)).is_err()
        || file.take(window + before).read_to_end(&mut bytes).is_err()
    {
        return Vec::new();
    }
    let mid_line = before == 1 && bytes.first() != Some(&b'\n');
    // (`get`: the file may have shrunk since it was measured.)
    let text = String::from_utf8_lossy(bytes.get(before as usize..).unwrap_or(&[]));
    let all: Vec<&str> = text.lines().collect();
    let first = all.len().saturating_sub(n);
    let mut lines: Vec<String> = all[first..]
        .iter()
        .enumerate()
        .map(|(i, l)| {
            // The window may begin inside a line: its start is not shown.
            let partial = mid_line && first == 0 && i == 0;
            let cut = l.chars().count() > TAIL_LINE_CHARS;
            let mut line =
                visible(&l.chars().take(TAIL_LINE_CHARS).collect::<String>()).into_owned();
            if partial {
                line.insert_str(0, "[start of line cut] ");
            }
            if cut {
                line.push_str(" [rest of line cut]");
            }
            line
        })
        .collect();
    let mut total: usize = lines.iter().map(|l| l.len() + 1).sum();
    while total > TAIL_BYTES && !lines.is_empty() {
        total -= lines.remove(0).len() + 1;
    }
    lines
}

/// How often a terminal's live lines are redrawn (5 Hz): fast enough for
/// elapsed time to look alive, slow enough to cost nothing.
pub const LIVE_EVERY: Duration = Duration::from_millis(200);

/// How often `--progress` without a terminal prints a line per running step.
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// The period of the plain progress lines: [`PLAIN_EVERY`], or
/// `WARD_PROGRESS_INTERVAL_MS` when set to a positive number of
/// milliseconds. The variable is for ward's own tests (which cannot wait
/// ten seconds per case); anything else in it is ignored.
pub fn plain_every() -> Duration {
    std::env::var("WARD_PROGRESS_INTERVAL_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(PLAIN_EVERY, Duration::from_millis)
}

/// How running steps are shown between events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Live {
    /// Not at all: only events are printed.
    Off,
    /// Lines at the bottom of a terminal, redrawn in place.
    Redraw,
    /// A plain line per running step every so often (no terminal, or
    /// `TERM=dumb`): nothing is ever overwritten.
    Every(Duration),
}

/// One running step, as the reporter follows it.
struct RunningStep {
    step: String,
    started: Instant,
    progress: Option<Arc<Progress>>,
    /// When the last plain line for it was printed (or the step started).
    printed: Instant,
    /// Where the rate for the ETA is measured from: the counters'
    /// generation, when it was first seen, and the amount done then.
    rate_from: Option<(u64, Instant, u64)>,
    /// A `for_each` step's items, once one of them ended.
    items: Option<ItemTally>,
}

/// The items of a running `for_each` step, as their ends were reported
/// ([`Event::ItemFinished`], and [`Event::ItemsKept`] for those that
/// succeeded before a resume): `done` is this ward's pace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ItemTally {
    total: usize,
    /// Succeeded before a resume: done, but not this ward's pace.
    kept: usize,
    done: usize,
    failed: usize,
}

/// Live progress: every start, end, skip and (optionally) output line; and
/// between them, what the running steps are doing (see [`Live`]).
pub struct ProgressReporter<W: Write> {
    out: W,
    style: Style,
    state: String,
    live: Live,
    running: Vec<RunningStep>,
    /// Steps finished (or skipped, or kept from an earlier attempt of the run).
    done: usize,
    total: usize,
    /// Live lines now on the screen, below the cursor's line's start.
    drawn: usize,
    /// Columns of the terminal (lines are cut to fit, as a wrapped line
    /// would break the redraw).
    width: usize,
    /// Most live lines drawn at once.
    rows: usize,
    /// The live lines as drawn (a tick that would draw the same skips).
    on_screen: Vec<String>,
    /// A `confirm:` question is on the screen: nothing is drawn, and what
    /// events print is held until it is answered.
    paused: bool,
    held: Vec<u8>,
}

impl<W: Write> ProgressReporter<W> {
    /// Writes progress to `out`, events only.
    pub fn new(out: W, style: Style) -> ProgressReporter<W> {
        ProgressReporter {
            out,
            style,
            state: String::new(),
            live: Live::Off,
            running: Vec::new(),
            done: 0,
            total: 0,
            drawn: 0,
            width: 80,
            rows: 10,
            on_screen: Vec::new(),
            paused: false,
            held: Vec::new(),
        }
    }

    /// Names the `--state` the run was given in the hints it prints.
    pub fn with_state(mut self, state: Option<&Path>) -> ProgressReporter<W> {
        self.state = state_flag(state);
        self
    }

    /// Draws a line per running step at the bottom of a terminal of
    /// `width` x `height`, redrawn in place.
    pub fn redrawing(mut self, width: usize, height: usize) -> ProgressReporter<W> {
        self.live = Live::Redraw;
        self.width = width.max(20);
        // Leave room for the lines printed above.
        self.rows = (height / 2).clamp(1, 10);
        self
    }

    /// Prints a plain line per running step every `every`.
    pub fn periodic(mut self, every: Duration) -> ProgressReporter<W> {
        self.live = Live::Every(every);
        self
    }

    /// `[3/11]`: steps done of the run's steps.
    fn counter(&self) -> String {
        // Compensations are not in the total; never show more done than in all.
        let total = self.total.max(self.done + self.running.len());
        format!("[{}/{}]", self.done, total)
    }

    /// Erases the live lines (the cursor is at the start of the line below them).
    fn clear(&mut self) {
        if self.drawn > 0 {
            let _ = write!(self.out, "\x1b[{}A\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    /// Redraws the live lines, unless they read as they are on the screen.
    fn redraw(&mut self) {
        let lines = self.live_lines();
        if self.drawn == lines.len() && lines == self.on_screen {
            return;
        }
        self.clear();
        for line in &lines {
            let _ = writeln!(self.out, "{}", self.style.dim(line));
        }
        self.drawn = lines.len();
        self.on_screen = lines;
    }

    /// The live lines: one per running step, cut to the terminal's width.
    fn live_lines(&mut self) -> Vec<String> {
        let now = Instant::now();
        let counter = self.counter();
        let mut lines = Vec::new();
        let shown = if self.running.len() > self.rows {
            self.rows - 1
        } else {
            self.running.len()
        };
        for r in &mut self.running[..shown] {
            let what = r.describe(now, false);
            let line = format!("{counter} {} {what}", r.step);
            lines.push(cut(&line, self.width - 1));
        }
        if shown < self.running.len() {
            lines.push(format!("… and {} more running", self.running.len() - shown));
        }
        lines
    }

    /// Prints the plain lines that are due.
    fn print_due(&mut self, every: Duration) {
        let now = Instant::now();
        let counter = self.counter();
        for r in &mut self.running {
            if now.duration_since(r.printed) >= every {
                r.printed = now;
                let what = r.describe(now, true);
                let line = format!("{counter} {} {what}", r.step);
                let _ = writeln!(self.out, "{line}");
            }
        }
    }

    /// Keeps count of the running steps and of those done.
    fn follow(&mut self, e: &Event<'_>) {
        match e {
            Event::RunStarted { kept, total, .. } => {
                self.done = *kept;
                self.total = *total;
            }
            Event::StepStarted { step, progress, .. } => {
                let now = Instant::now();
                self.running.retain(|r| r.step != *step);
                self.running.push(RunningStep {
                    step: (*step).to_owned(),
                    started: now,
                    progress: progress.cloned(),
                    printed: now,
                    rate_from: None,
                    items: None,
                });
            }
            Event::ItemsKept { step, kept, total } => {
                if let Some(r) = self.running.iter_mut().find(|r| r.step == *step) {
                    let t = r.items.get_or_insert_with(ItemTally::default);
                    t.total = *total;
                    t.kept = *kept;
                }
            }
            Event::ItemFinished {
                step, state, total, ..
            } => {
                if let Some(r) = self.running.iter_mut().find(|r| r.step == *step) {
                    let t = r.items.get_or_insert_with(ItemTally::default);
                    t.total = *total;
                    // A stopped item (pending again) did not end: it runs
                    // again on a resume.
                    if matches!(state, ItemState::Succeeded | ItemState::Failed) {
                        t.done += 1;
                    }
                    if *state == ItemState::Failed {
                        t.failed += 1;
                    }
                }
            }
            Event::StepFinished(end) => {
                self.running.retain(|r| r.step != end.step);
                if !end.will_retry {
                    self.done += 1;
                }
            }
            Event::StepSkipped { .. } => self.done += 1,
            _ => {}
        }
    }
}

impl RunningStep {
    /// `running 1m20s, 12,345 files, 1.2 GB of 4.0 GB (30%), ETA 2m10s`
    /// (plain) or the same with `·` between the parts (live).
    fn describe(&mut self, now: Instant, plain: bool) -> String {
        let elapsed = now.duration_since(self.started);
        let mut parts = vec![fmt_elapsed(elapsed)];
        if let Some(t) = self.items {
            parts.push(format!(
                "{}/{} items",
                thousands((t.kept + t.done) as u64),
                thousands(t.total as u64)
            ));
            if t.failed > 0 {
                parts.push(format!("{} failed", thousands(t.failed as u64)));
            }
            // Over the step's time so far; an ETA only after a second of it.
            let secs = elapsed.as_secs_f64();
            if secs >= 1.0 && t.done > 0 {
                let rate = t.done as f64 / secs;
                parts.push(format!("{} items/s", super::runs::fmt_rate(rate)));
                let left = t.total.saturating_sub(t.kept + t.done);
                if left > 0 {
                    let eta = (left as f64 / rate).ceil().min(1e7) as u64;
                    parts.push(format!("ETA {}", fmt_elapsed(Duration::from_secs(eta))));
                }
            }
        }
        if let Some(p) = &self.progress {
            let s = p.sample();
            if let Some(phase) = s.phase {
                parts.push(phase.to_owned());
            }
            if s.files > 0 || s.files_total.is_some() {
                parts.push(match s.files_total {
                    Some(t) => format!("{} of {} files", thousands(s.files), thousands(t)),
                    None => format!("{} files", thousands(s.files)),
                });
            }
            if s.bytes > 0 || s.bytes_total.is_some() {
                parts.push(match s.bytes_total {
                    Some(t) if t > 0 => format!(
                        "{} of {} ({}%)",
                        fmt_bytes(s.bytes),
                        fmt_bytes(t),
                        (s.bytes.min(t) * 100) / t
                    ),
                    _ => fmt_bytes(s.bytes),
                });
            }
            if let Some(eta) = self.eta(&s, now) {
                parts.push(format!("ETA {}", fmt_elapsed(eta)));
            }
        }
        if plain {
            format!("running {}", parts.join(", "))
        } else {
            parts.join(" · ")
        }
    }

    /// Time left, from the rate since the phase began: only with a known
    /// total and a second of measurement, never a guess from nothing.
    fn eta(&mut self, s: &Sample, now: Instant) -> Option<Duration> {
        // Bytes when their total is known, else files.
        let (done, total) = match (s.bytes_total, s.files_total) {
            (Some(t), _) => (s.bytes, t),
            (None, Some(t)) => (s.files, t),
            (None, None) => return None,
        };
        let (since, from) = match self.rate_from {
            Some((generation, since, from)) if generation == s.generation => (since, from),
            _ => {
                self.rate_from = Some((s.generation, now, done));
                return None;
            }
        };
        let took = now.duration_since(since).as_secs_f64();
        let moved = done.saturating_sub(from);
        if took < 1.0 || moved == 0 || done > total {
            return None;
        }
        let left = (total - done) as f64 * took / moved as f64;
        // Rounded up: "ETA 0s" while work remains would be wrong.
        Some(Duration::from_secs(left.ceil().min(1e7) as u64))
    }
}

/// Elapsed or remaining time for progress lines: whole seconds (`4s`,
/// `1m20s`, `2h05m`), so that the line does not flicker.
fn fmt_elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs / 60) % 60)
    }
}

/// `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1.2 GB` (decimal units, as `df -H` and rsync's `--human-readable`).
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `line` cut to `width` characters (a live line must not wrap).
fn cut(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        line.to_owned()
    } else {
        let mut s: String = line.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

impl<W: Write> Reporter for ProgressReporter<W> {
    fn tick_interval(&self) -> Option<Duration> {
        match self.live {
            Live::Off => None,
            Live::Redraw => Some(LIVE_EVERY),
            // A few checks per period, so that a step's line comes close
            // to its due time; at most once a second.
            Live::Every(every) => {
                Some((every / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)))
            }
        }
    }

    fn tick(&mut self) {
        if self.paused {
            return;
        }
        match self.live {
            Live::Off => {}
            Live::Redraw => self.redraw(),
            Live::Every(every) => self.print_due(every),
        }
        let _ = self.out.flush();
    }

    fn event(&mut self, e: &Event<'_>) {
        let s = self.style;
        self.follow(e);
        match e {
            // Counted only: shown by the live lines (redrawn at the next
            // tick) or the next plain line; never a line or an erase per
            // item.
            Event::ItemFinished { .. } | Event::ItemsKept { .. } => return,
            // The question is written by the executor; nothing is drawn
            // or printed until it is answered, so it stays readable.
            Event::ConfirmAsked { .. } => {
                self.clear();
                self.paused = true;
                let _ = self.out.flush();
                return;
            }
            Event::ConfirmAnswered { .. } => {
                self.paused = false;
                let held = std::mem::take(&mut self.held);
                let _ = self.out.write_all(&held);
                let _ = self.out.flush();
                return;
            }
            _ => {}
        }
        // What an event prints goes above the live lines: they are erased
        // first and drawn again at the next tick (at most 200 ms later), so
        // a burst of output lines costs one erase, not a redraw per line.
        self.clear();
        let mut out: Vec<u8> = Vec::new();
        // A closed terminal must not stop the run: ignore write errors.
        let _ = match e {
            Event::ConfirmAsked { .. }
            | Event::ConfirmAnswered { .. }
            | Event::ItemFinished { .. }
            | Event::ItemsKept { .. } => Ok(()),
            Event::RunStarted {
                run_id,
                playbook,
                resumed,
                kept,
                total,
            } => {
                if *resumed {
                    writeln!(
                        out,
                        "{} run {run_id} of {playbook}: {kept} of {} already done",
                        s.bold("resuming"),
                        count(*total, "step")
                    )
                } else {
                    writeln!(
                        out,
                        "{} run {run_id} of {playbook} ({})",
                        s.bold("starting"),
                        count(*total, "step")
                    )
                }
            }
            Event::StepStarted {
                step, attempt, of, ..
            } => {
                if *attempt > 1 || *of > 1 {
                    writeln!(out, "{} {step} (attempt {attempt})", s.dim("▶"))
                } else {
                    writeln!(out, "{} {step}", s.dim("▶"))
                }
            }
            Event::Output { step, line } => {
                writeln!(out, "{} {}", s.dim(&format!("{step} │")), visible(line))
            }
            Event::StepFinished(end) => write_end(&mut out, end, s, true),
            Event::StepSkipped { step, reason } => {
                writeln!(out, "{} {step} skipped: {reason}", s.dim("–"))
            }
            Event::FlushFailed { step, message } => {
                writeln!(out, "{} {step} failed: {message}", s.error("✘"))
            }
            Event::Interrupted { signal } => writeln!(
                out,
                "{} received {signal}: stopping running steps, starting only `when: always` steps (a third signal or SIGQUIT abandons those too)",
                s.warning("!")
            ),
            Event::SignalsUnavailable { message } => writeln!(
                out,
                "{} cannot catch signals ({message}): a signal will end ward at once, without running the `when: always` steps",
                s.warning("!")
            ),
            Event::SignalNoted { signal, count } => writeln!(
                out,
                "{} received {signal} again (signal {count}): still stopping; the `when: always` steps run (a third signal or SIGQUIT abandons them)",
                s.warning("!")
            ),
            Event::Abandoned { signal } => writeln!(
                out,
                "{} received {signal}: abandoning everything, `when: always` steps included; they stay pending for `ward resume`",
                s.error("!")
            ),
            Event::StateLost { message } => writeln!(
                out,
                "{} cannot record the state: {message}\n  going on from memory: running steps are stopped, only `when: always` steps and due compensations still run",
                s.error("✘")
            ),
            Event::ChildrenStopped { step, processes } => writeln!(
                out,
                "{} {step} left processes behind; stopped: {processes}",
                s.warning("!")
            ),
            Event::RunFinished {
                run_id,
                state,
                message,
                elapsed,
            } => {
                let word = match state {
                    RunState::Succeeded => s.bold("succeeded"),
                    _ => s.error(state.as_str()),
                };
                let why = message.map(|m| format!(": {m}")).unwrap_or_default();
                writeln!(
                    out,
                    "run {run_id} {word} in {}{why}",
                    fmt_duration(*elapsed)
                )
                .and_then(|()| {
                    if *state != RunState::Succeeded {
                        writeln!(out, "{}", next_steps(run_id, &self.state))
                    } else {
                        Ok(())
                    }
                })
            }
        };
        if self.paused {
            self.held.extend(out);
        } else {
            let _ = self.out.write_all(&out);
            let _ = self.out.flush();
        }
    }
}

fn write_end<W: Write>(
    out: &mut W,
    end: &StepEnd<'_>,
    s: Style,
    verbose: bool,
) -> std::io::Result<()> {
    let took = fmt_duration(end.elapsed);
    match end.state {
        StepState::Succeeded => {
            if verbose {
                let note = end.message.map(|m| format!(" {m}")).unwrap_or_default();
                writeln!(out, "{} {} {}{note}", s.bold("✔"), end.step, s.dim(&took))
            } else if let Some(w) = end.message.filter(|m| m.contains("warning:")) {
                // Even cron hears about warnings (e.g. files vanished during rsync).
                writeln!(out, "ward: {} succeeded with a {w}", end.step)
            } else {
                Ok(())
            }
        }
        _ if end.will_retry => writeln!(
            out,
            "{} {} attempt {} failed ({}) after {took}; retrying",
            s.warning("↻"),
            end.step,
            end.attempt,
            end.message.unwrap_or("")
        ),
        _ => {
            writeln!(
                out,
                "{} {} {} after {took}: {}",
                s.error("✘"),
                end.step,
                end.state,
                end.message.unwrap_or("")
            )?;
            // A step that printed nothing has no log file: say so rather
            // than name a path that does not exist.
            if end.log.exists() {
                writeln!(out, "  log: {}", end.log.display())?;
                for line in log_tail(end.log, 10) {
                    writeln!(out, "  | {line}")?;
                }
            } else {
                writeln!(out, "  log: (no output)")?;
            }
            Ok(())
        }
    }
}

/// For cron: prints nothing unless something fails.
pub struct QuietReporter<W: Write> {
    out: W,
    playbook: String,
    state: String,
    /// The state database can no longer be written: every outcome is
    /// printed, as this output is now the only record of it.
    unrecorded: bool,
}

impl<W: Write> QuietReporter<W> {
    /// Writes failure reports to `out`.
    pub fn new(out: W) -> QuietReporter<W> {
        QuietReporter {
            out,
            playbook: String::new(),
            state: String::new(),
            unrecorded: false,
        }
    }

    /// Names the `--state` the run was given in the hints it prints.
    pub fn with_state(mut self, state: Option<&Path>) -> QuietReporter<W> {
        self.state = state_flag(state);
        self
    }
}

impl<W: Write> Reporter for QuietReporter<W> {
    fn event(&mut self, e: &Event<'_>) {
        let _ = match e {
            Event::RunStarted { playbook, .. } => {
                self.playbook = playbook.to_string();
                Ok(())
            }
            Event::StepFinished(end) if !end.will_retry => {
                if self.unrecorded && end.state == StepState::Succeeded {
                    writeln!(
                        self.out,
                        "ward: {} succeeded after {} (not recorded)",
                        end.step,
                        fmt_duration(end.elapsed)
                    )
                } else {
                    write_end(&mut self.out, end, Style::plain(), false)
                }
            }
            Event::StateLost { message } => {
                self.unrecorded = true;
                writeln!(
                    self.out,
                    "ward: cannot record the state: {message}; going on from memory: only `when: always` steps and due compensations still run"
                )
            }
            Event::SignalsUnavailable { message } => writeln!(
                self.out,
                "ward: cannot catch signals ({message}): a signal will end ward at once, without running the `when: always` steps"
            ),
            Event::SignalNoted { signal, count } => writeln!(
                self.out,
                "ward: received {signal} again (signal {count}); the `when: always` steps still run"
            ),
            Event::Abandoned { signal } => writeln!(
                self.out,
                "ward: received {signal}: abandoning the `when: always` steps too"
            ),
            Event::ChildrenStopped { step, processes } => writeln!(
                self.out,
                "ward: {step} left processes behind; stopped: {processes}"
            ),
            Event::FlushFailed { step, message } => {
                writeln!(self.out, "ward: {step} failed: {message}")
            }
            Event::Interrupted { signal } => {
                writeln!(self.out, "ward: received {signal}, stopping")
            }
            Event::RunFinished {
                run_id,
                state,
                message,
                elapsed,
            } if *state != RunState::Succeeded => writeln!(
                self.out,
                "ward: run {run_id} of {} {state} after {}: {}\n{}",
                self.playbook,
                fmt_duration(*elapsed),
                message.unwrap_or(""),
                next_steps(run_id, &self.state)
            ),
            _ => Ok(()),
        };
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_counts_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_bytes(999), "999 B");
        assert_eq!(fmt_bytes(1_234), "1.2 kB");
        assert_eq!(fmt_bytes(1_200_000_000), "1.2 GB");
        assert_eq!(fmt_elapsed(Duration::from_millis(80_900)), "1m20s");
        assert_eq!(cut("abcdef", 4), "abc…");
    }

    fn step(progress: Option<Arc<Progress>>, started: Instant) -> RunningStep {
        RunningStep {
            step: "copy".into(),
            started,
            progress,
            printed: started,
            rate_from: None,
            items: None,
        }
    }

    #[test]
    fn an_eta_needs_a_total_and_a_measured_rate() {
        let t0 = Instant::now();
        let p = Arc::new(Progress::default());
        let mut r = step(Some(p.clone()), t0);
        p.add_files(10);
        p.add_bytes(1_000);
        // No total: counts, never an ETA.
        assert_eq!(r.describe(t0, true), "running 0s, 10 files, 1.0 kB");
        assert_eq!(
            r.describe(t0 + Duration::from_secs(5), true),
            "running 5s, 10 files, 1.0 kB"
        );
        // A total: the rate is measured from the first sample that has it.
        p.restart("hashing", None, Some(10_000));
        p.add_bytes(1_000);
        let at = t0 + Duration::from_secs(6);
        assert!(!r.describe(at, true).contains("ETA"));
        p.add_bytes(2_000);
        // 2,000 bytes in 2 s, 7,000 left: 7 s.
        assert_eq!(
            r.describe(at + Duration::from_secs(2), true),
            "running 8s, hashing, 3.0 kB of 10.0 kB (30%), ETA 7s"
        );
        // A command step: elapsed time only.
        assert_eq!(
            step(None, t0).describe(t0 + Duration::from_secs(61), false),
            "1m01s"
        );
    }

    #[test]
    fn live_lines_are_erased_before_anything_is_printed_and_skipped_when_unchanged() {
        let mut out = Vec::new();
        {
            let mut r = ProgressReporter::new(&mut out, Style::plain()).redrawing(40, 24);
            r.event(&Event::RunStarted {
                run_id: "r1",
                playbook: "p",
                resumed: false,
                kept: 0,
                total: 2,
            });
            r.event(&Event::StepStarted {
                step: "a-step-with-a-rather-long-name-indeed",
                attempt: 1,
                of: 1,
                progress: None,
            });
            r.tick();
            r.tick();
            r.event(&Event::Output {
                step: "a-step-with-a-rather-long-name-indeed",
                line: "hello",
            });
        }
        let text = String::from_utf8(out).expect("utf-8");
        // Cut to the width (39 columns) so that it cannot wrap; drawn once
        // although ticked twice; erased before the output line.
        assert_eq!(
            text,
            "starting run r1 of p (2 steps)\n\
             ▶ a-step-with-a-rather-long-name-indeed\n\
             [0/2] a-step-with-a-rather-long-name-i…\n\
             \x1b[1A\x1b[Ja-step-with-a-rather-long-name-indeed │ hello\n"
        );
    }

    fn fan_started(r: &mut ProgressReporter<&mut Vec<u8>>) {
        r.event(&Event::RunStarted {
            run_id: "r1",
            playbook: "p",
            resumed: false,
            kept: 0,
            total: 1,
        });
        r.event(&Event::StepStarted {
            step: "each",
            attempt: 1,
            of: 1,
            progress: None,
        });
    }

    fn item(r: &mut ProgressReporter<&mut Vec<u8>>, key: &str, state: ItemState) {
        r.event(&Event::ItemFinished {
            step: "each",
            key,
            state,
            total: 10_000,
        });
    }

    #[test]
    fn item_ends_are_counted_silently_and_shown_in_the_next_plain_line() {
        let mut out = Vec::new();
        {
            let mut r = ProgressReporter::new(&mut out, Style::plain()).periodic(Duration::ZERO);
            fan_started(&mut r);
            for k in 0..3_000 {
                let state = if k % 1_000 == 7 {
                    ItemState::Failed
                } else {
                    ItemState::Succeeded
                };
                item(&mut r, &format!("u{k}"), state);
            }
            // Stopped by a signal: pending again, not done.
            item(&mut r, "u-stopped", ItemState::Pending);
            r.tick();
        }
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        // 3,001 item ends: no line of their own; one periodic line says them.
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            lines[2],
            "[0/1] each running 0s, 3,000/10,000 items, 3 failed"
        );
    }

    #[test]
    fn a_resumed_fan_out_counts_the_items_kept_from_before_as_done() {
        let mut out = Vec::new();
        {
            let mut r = ProgressReporter::new(&mut out, Style::plain()).periodic(Duration::ZERO);
            fan_started(&mut r);
            r.event(&Event::ItemsKept {
                step: "each",
                kept: 7_000,
                total: 10_000,
            });
            for k in 0..500 {
                item(&mut r, &format!("u{k}"), ItemState::Succeeded);
            }
            r.tick();
        }
        let text = String::from_utf8(out).expect("utf-8");
        let last = text.lines().last().unwrap_or_default();
        assert_eq!(last, "[0/1] each running 0s, 7,500/10,000 items");
    }

    #[test]
    fn a_running_fan_out_shows_its_rate_and_eta_after_a_second() {
        let t0 = Instant::now();
        let mut r = step(None, t0);
        r.items = Some(ItemTally {
            total: 1_000,
            kept: 0,
            done: 250,
            failed: 2,
        });
        assert_eq!(
            r.describe(t0 + Duration::from_millis(500), true),
            "running 0s, 250/1,000 items, 2 failed"
        );
        // 250 in 10 s: 25/s, 750 left: 30 s.
        assert_eq!(
            r.describe(t0 + Duration::from_secs(10), false),
            "10s · 250/1,000 items · 2 failed · 25.0 items/s · ETA 30s"
        );
    }

    #[test]
    fn item_ends_do_not_erase_the_live_lines() {
        let mut out = Vec::new();
        {
            let mut r = ProgressReporter::new(&mut out, Style::plain()).redrawing(80, 24);
            fan_started(&mut r);
            r.tick();
            for k in 0..50 {
                item(&mut r, &format!("u{k}"), ItemState::Succeeded);
            }
            r.tick();
        }
        let text = String::from_utf8(out).expect("utf-8");
        // One erase: the redraw with the new count, none per item.
        assert_eq!(text.matches("\x1b[1A\x1b[J").count(), 1, "{text:?}");
        assert!(
            text.ends_with("[0/1] each 0s · 50/10,000 items\n"),
            "{text:?}"
        );
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "step"), "1 step");
        assert_eq!(count(0, "step"), "0 steps");
        assert_eq!(count(2, "step"), "2 steps");
    }

    #[test]
    fn control_characters_in_step_output_are_shown_not_obeyed() {
        assert_eq!(visible("plain\ttext"), "plain\ttext");
        assert_eq!(
            visible("\u{1b}[2J\u{1b}]0;title\u{7}ok"),
            "\\u{1b}[2J\\u{1b}]0;title\\u{7}ok"
        );
        assert!(!visible("a\rb").contains('\r'));
    }
}
