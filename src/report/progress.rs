//! Reporters for `ward run`/`ward resume`: live progress at a terminal, and
//! a quiet one for cron that speaks only about failures (so cron mail stays
//! short and means something).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::Style;
use crate::execute::{Event, Reporter, StepEnd};
use crate::state::{RunState, StepState};

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
        .map(|p| format!(" --state {}", crate::shell::quote(&p.display().to_string())))
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
            let mut line: String = l.chars().take(TAIL_LINE_CHARS).collect();
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

/// Live progress: every start, end, skip and (optionally) output line.
pub struct ProgressReporter<W: Write> {
    out: W,
    style: Style,
    state: String,
}

impl<W: Write> ProgressReporter<W> {
    /// Writes progress to `out`.
    pub fn new(out: W, style: Style) -> ProgressReporter<W> {
        ProgressReporter {
            out,
            style,
            state: String::new(),
        }
    }

    /// Names the `--state` the run was given in the hints it prints.
    pub fn with_state(mut self, state: Option<&Path>) -> ProgressReporter<W> {
        self.state = state_flag(state);
        self
    }
}

impl<W: Write> Reporter for ProgressReporter<W> {
    fn event(&mut self, e: &Event<'_>) {
        let s = self.style;
        // A closed terminal must not stop the run: ignore write errors.
        let _ = match e {
            Event::RunStarted {
                run_id,
                playbook,
                resumed,
                kept,
                total,
            } => {
                if *resumed {
                    writeln!(
                        self.out,
                        "{} run {run_id} of {playbook}: {kept} of {} already done",
                        s.bold("resuming"),
                        count(*total, "step")
                    )
                } else {
                    writeln!(
                        self.out,
                        "{} run {run_id} of {playbook} ({})",
                        s.bold("starting"),
                        count(*total, "step")
                    )
                }
            }
            Event::StepStarted { step, attempt, of } => {
                if *attempt > 1 || *of > 1 {
                    writeln!(self.out, "{} {step} (attempt {attempt})", s.dim("▶"))
                } else {
                    writeln!(self.out, "{} {step}", s.dim("▶"))
                }
            }
            Event::Output { step, line } => {
                writeln!(self.out, "{} {line}", s.dim(&format!("{step} │")))
            }
            Event::StepFinished(end) => write_end(&mut self.out, end, s, true),
            Event::StepSkipped { step, reason } => {
                writeln!(self.out, "{} {step} skipped: {reason}", s.dim("–"))
            }
            Event::FlushFailed { step, message } => {
                writeln!(self.out, "{} {step} failed: {message}", s.error("✘"))
            }
            Event::Interrupted { signal } => writeln!(
                self.out,
                "{} received {signal}: stopping running steps, starting only `when: always` steps (a third signal or SIGQUIT abandons those too)",
                s.warning("!")
            ),
            Event::SignalsUnavailable { message } => writeln!(
                self.out,
                "{} cannot catch signals ({message}): a signal will end ward at once, without running the `when: always` steps",
                s.warning("!")
            ),
            Event::SignalNoted { signal, count } => writeln!(
                self.out,
                "{} received {signal} again (signal {count}): still stopping; the `when: always` steps run (a third signal or SIGQUIT abandons them)",
                s.warning("!")
            ),
            Event::Abandoned { signal } => writeln!(
                self.out,
                "{} received {signal}: abandoning everything, `when: always` steps included; they stay pending for `ward resume`",
                s.error("!")
            ),
            Event::StateLost { message } => writeln!(
                self.out,
                "{} cannot record the state: {message}\n  going on from memory: running steps are stopped, only `when: always` steps and due compensations still run",
                s.error("✘")
            ),
            Event::ChildrenStopped { step, processes } => writeln!(
                self.out,
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
                    self.out,
                    "run {run_id} {word} in {}{why}",
                    fmt_duration(*elapsed)
                )
                .and_then(|()| {
                    if *state != RunState::Succeeded {
                        writeln!(self.out, "{}", next_steps(run_id, &self.state))
                    } else {
                        Ok(())
                    }
                })
            }
        };
        let _ = self.out.flush();
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
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "step"), "1 step");
        assert_eq!(count(0, "step"), "0 steps");
        assert_eq!(count(2, "step"), "2 steps");
    }
}
