//! `ward probe`: the table of checks (step, check, verdict, detail), the
//! paths each copy would change (`--list`), and the JSON document.

use std::io::{self, Write};

use serde::Serialize;

use super::{Style, count};
use crate::action::inspect::{Change, Check, Verdict};

/// The checks of one step (or of the playbook's preconditions).
#[derive(Debug, Serialize)]
pub struct StepProbe {
    /// The step's id.
    pub id: String,
    /// `action` (with `action` set), `run` or `cmd`.
    pub kind: &'static str,
    /// The action's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// What was found.
    pub checks: Vec<Check>,
}

/// A whole probe.
#[derive(Debug, Serialize)]
pub struct Probe {
    /// The playbook's `name:`.
    pub playbook: String,
    /// The file.
    pub file: String,
    /// When it was probed (RFC 3339).
    pub checked_at: String,
    /// `preconditions:` as a run would check them.
    pub preconditions: Vec<Check>,
    /// Every step, in the order written.
    pub steps: Vec<StepProbe>,
}

/// How many checks ended with each verdict.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub pass: usize,
    /// Passed with a warning.
    pub warn: usize,
    /// Failed.
    pub fail: usize,
    /// Not known before the run.
    pub unknown: usize,
}

impl Probe {
    fn all(&self) -> impl Iterator<Item = &Check> {
        self.preconditions
            .iter()
            .chain(self.steps.iter().flat_map(|s| s.checks.iter()))
    }

    /// The verdicts counted.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for check in self.all() {
            match check.verdict {
                Verdict::Pass => c.pass += 1,
                Verdict::Warn => c.warn += 1,
                Verdict::Fail => c.fail += 1,
                Verdict::Unknown => c.unknown += 1,
            }
        }
        c
    }

    /// True if some check failed.
    pub fn failed(&self) -> bool {
        self.all().any(|c| c.verdict == Verdict::Fail)
    }
}

/// The table, then (with `list`) every path each copy would change, then
/// one closing line.
pub fn render_text(out: &mut dyn Write, probe: &Probe, list: bool, style: Style) -> io::Result<()> {
    let mut rows: Vec<(&str, &Check)> = probe
        .preconditions
        .iter()
        .map(|c| ("(preconditions)", c))
        .collect();
    for s in &probe.steps {
        rows.extend(s.checks.iter().map(|c| (s.id.as_str(), c)));
    }
    let w_step = rows.iter().map(|(s, _)| s.len()).max().unwrap_or(0).max(4);
    let w_check = rows
        .iter()
        .map(|(_, c)| c.subject.len())
        .max()
        .unwrap_or(0)
        .max(5);
    writeln!(
        out,
        "{}",
        style.bold(&format!(
            "{:<w_step$}  {:<w_check$}  {:<7}  DETAIL",
            "STEP", "CHECK", "VERDICT"
        ))
    )?;
    let mut last = "";
    for (step, c) in &rows {
        let shown = if *step == last { "" } else { step };
        last = step;
        let word = format!("{:<7}", c.verdict.as_str());
        let word = match c.verdict {
            Verdict::Pass => word,
            Verdict::Warn => style.warning(&word),
            Verdict::Fail => style.error(&word),
            Verdict::Unknown => style.dim(&word),
        };
        writeln!(
            out,
            "{shown:<w_step$}  {:<w_check$}  {word}  {}",
            c.subject,
            one_line(&c.detail)
        )?;
    }
    if list {
        for s in &probe.steps {
            for tree in s.checks.iter().filter_map(|c| c.tree.as_ref()) {
                writeln!(out)?;
                writeln!(out, "{} -> {}: {}", s.id, tree.dest, tree.summary())?;
                for e in &tree.entries {
                    let mark = match e.change {
                        Change::Restored => "+",
                        Change::Replaced => "~",
                        Change::Deleted => "-",
                    };
                    writeln!(out, "  {mark} {} ({} B)", e.path, e.bytes)?;
                }
            }
        }
    }
    let c = probe.counts();
    let total = c.pass + c.warn + c.fail + c.unknown;
    let verdict = if c.fail > 0 {
        style.error("FAILED")
    } else {
        style.bold("ok")
    };
    writeln!(
        out,
        "\nprobe {verdict}: {} ({} passed, {} with warnings, {} failed, {} unknown until the run); nothing was changed",
        count(total, "check"),
        c.pass,
        c.warn,
        c.fail,
        c.unknown
    )
}

/// A detail on one line of the table.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[derive(Serialize)]
struct ProbeJson<'a> {
    #[serde(flatten)]
    probe: &'a Probe,
    result: &'static str,
    counts: Counts,
}

/// The JSON document: the probe, its `result` (`passed` or `failed`)
/// and the counts; every copy's `tree` with all its `entries`.
pub fn render_json(out: &mut dyn Write, probe: &Probe) -> io::Result<()> {
    let doc = ProbeJson {
        probe,
        result: if probe.failed() { "failed" } else { "passed" },
        counts: probe.counts(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_step_once_and_the_verdicts() {
        let probe = Probe {
            playbook: "p".into(),
            file: "p.yml".into(),
            checked_at: "2026-01-01T00:00:00+00:00".into(),
            preconditions: vec![],
            steps: vec![StepProbe {
                id: "copy".into(),
                kind: "action",
                action: Some("rsync"),
                checks: vec![
                    Check::pass("program rsync", "/usr/bin/rsync"),
                    Check::fail("dest", "/x is not writable"),
                ],
            }],
        };
        let mut out = Vec::new();
        render_text(&mut out, &probe, false, Style::plain()).expect("render");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("copy  program rsync  pass"), "{text}");
        assert!(text.contains("\n      dest           FAIL"), "{text}");
        assert!(
            text.contains("probe FAILED: 2 checks (1 passed, 0 with warnings, 1 failed"),
            "{text}"
        );
        assert!(probe.failed());
    }
}
