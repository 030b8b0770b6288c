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

/// The last `n` lines of a log file, for failure reports.
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// Live progress: every start, end, skip and (optionally) output line.
pub struct ProgressReporter<W: Write> {
    out: W,
    style: Style,
}

impl<W: Write> ProgressReporter<W> {
    /// Writes progress to `out`.
    pub fn new(out: W, style: Style) -> ProgressReporter<W> {
        ProgressReporter { out, style }
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
                        "{} run {run_id} of {playbook}: {kept} of {total} steps already done",
                        s.bold("resuming")
                    )
                } else {
                    writeln!(
                        self.out,
                        "{} run {run_id} of {playbook} ({total} steps)",
                        s.bold("starting")
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
                "{} received {signal}: stopping running steps, starting only `when: always` steps (send it again to kill at once)",
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
                        writeln!(
                            self.out,
                            "  details: ward status {run_id}; continue: ward resume {run_id}"
                        )
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
            writeln!(out, "  log: {}", end.log.display())?;
            for line in log_tail(end.log, 10) {
                writeln!(out, "  | {line}")?;
            }
            Ok(())
        }
    }
}

/// For cron: prints nothing unless something fails.
pub struct QuietReporter<W: Write> {
    out: W,
    playbook: String,
}

impl<W: Write> QuietReporter<W> {
    /// Writes failure reports to `out`.
    pub fn new(out: W) -> QuietReporter<W> {
        QuietReporter {
            out,
            playbook: String::new(),
        }
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
                write_end(&mut self.out, end, Style::plain(), false)
            }
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
                "ward: run {run_id} of {} {state} after {}: {}\n  details: ward status {run_id}; continue: ward resume {run_id}",
                self.playbook,
                fmt_duration(*elapsed),
                message.unwrap_or("")
            ),
            _ => Ok(()),
        };
        let _ = self.out.flush();
    }
}
