//! What a run's preconditions found, for people: one line per check.

use std::io::{self, Write};

use super::Style;
use crate::state::PreconditionsRecord;

/// Every check with `ok` or `FAILED` (with `only_failed`, the failed ones),
/// then the log of the `command` checks if one was written.
pub fn render_preconditions(
    out: &mut dyn Write,
    record: &PreconditionsRecord,
    only_failed: bool,
    style: Style,
) -> io::Result<()> {
    if record.skipped_by_operator {
        return writeln!(
            out,
            "preconditions: {}",
            style.bold("not checked (--skip-preconditions)")
        );
    }
    for c in record.checks.iter().filter(|c| !only_failed || !c.passed) {
        let word = if c.passed {
            style.bold("ok")
        } else {
            style.error("FAILED")
        };
        writeln!(out, "precondition {word}: {} ({})", c.check, c.detail)?;
    }
    if let Some(log) = &record.log_path
        && (!only_failed || record.failed().next().is_some())
    {
        writeln!(out, "preconditions log: {log}")?;
    }
    Ok(())
}

/// The `preconditions` lines of `ward status`: each check, or that the
/// operator skipped them.
pub(super) fn render_status_lines(
    out: &mut dyn Write,
    record: &PreconditionsRecord,
    style: Style,
) -> io::Result<()> {
    if record.skipped_by_operator {
        return writeln!(out, "  preconds  not checked (--skip-preconditions)");
    }
    for (i, c) in record.checks.iter().enumerate() {
        let label = if i == 0 { "preconds" } else { "" };
        let word = if c.passed {
            "ok".to_owned()
        } else {
            style.error("FAILED")
        };
        writeln!(out, "  {label:<8}  {word} {} ({})", c.check, c.detail)?;
    }
    if let Some(log) = &record.log_path {
        writeln!(out, "  {:<8}  log: {log}", "")?;
    }
    Ok(())
}
