//! `ward probe FILE`: every step's read-only checks against the real
//! system (each action's [`inspect`](crate::action::Action::inspect)), the
//! playbook's preconditions, a table of verdicts; nothing is run, no lock
//! is taken and no state is read or written.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ProbeArgs, vars};
use crate::action::inspect::{self, Check, ProbeCtx, Verdict};
use crate::error::{WardError, exit};
use crate::model::MinFree;
use crate::plan::{Check as Precondition, Plan, ResolvedBody};
use crate::report::{self, Probe, StepProbe, Style};

/// `ward probe --help`'s closing text.
pub(super) const HELP: &str = "Examples:\n  \
    ward probe backup.yml\n  \
    ward probe restore.yml --var snapshot=2026-11-20 --list\n  \
    ward probe restore.yml --json | jq '.steps[].checks[] | select(.verdict == \"fail\")'\n\n\
    Each step is checked without being done: programs (and versions), folders\n\
    (writable, via access(2)), free space, the PostgreSQL server (version,\n\
    databases a restore would replace), the snapshot to restore (verified,\n\
    not marked), and what each rsync copy would restore, replace, delete and\n\
    leave (rsync --dry-run). No step's own command is started, no lock is\n\
    taken, no state is read or written; `command` preconditions do run.\n\n\
    Exit 0 when no check failed, 1 when one did, 2 for an invalid playbook.";

pub(super) fn probe(args: &ProbeArgs) -> Result<i32, WardError> {
    let overrides = vars::parse(&args.vars.vars)?;
    let checked = crate::check_file(&args.file, &overrides, "probe")?;
    let shown = args.file.display().to_string();
    let plan = match super::checked::plan_or_exit(checked, &shown, "; nothing was probed") {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let probe = Probe {
        playbook: plan.playbook.name.value.clone(),
        file: shown,
        checked_at: report::rfc3339(crate::clock::wall_ms()).unwrap_or_default(),
        preconditions: preconditions(&plan)?,
        steps: steps(&plan),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        report::probe_json(&mut out, &probe)?;
    } else {
        report::probe_text(&mut out, &probe, args.list, Style::stdout())?;
    }
    out.flush()?;
    Ok(if probe.failed() {
        exit::FAILED
    } else {
        exit::OK
    })
}

/// The preconditions as a run checks them. A `command` check's output
/// goes to a private folder of its own, removed afterwards (a run keeps it
/// in its log folder, which a probe does not make). A free-space check
/// against the last run's size cannot know that size: the state is not
/// read, so its verdict is unknown.
fn preconditions(plan: &Plan) -> Result<Vec<Check>, WardError> {
    if plan.preconditions.is_empty() {
        return Ok(Vec::new());
    }
    let log_dir = std::env::temp_dir().join(format!(
        "ward-probe-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let work_dir = PathBuf::from(&plan.facts.playbook_dir);
    let ctx = crate::preflight::Preflight {
        work_dir: &work_dir,
        log_dir: &log_dir,
        run_id: "probe",
        last: crate::preflight::LastRun::Never,
    };
    let record = crate::preflight::check_all(&plan.preconditions, &ctx);
    // What the `command` checks printed, told in the detail instead of a
    // path to a log that is removed.
    let log_path = log_dir.join(crate::preflight::LOG_NAME);
    let printed = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&log_dir);
    let shown_log = format!("output in {}", log_path.display());
    // The log holds a header line per `command` check, in order, then its output.
    let mut sections: Vec<Vec<&str>> = Vec::new();
    for l in printed.lines() {
        if l.starts_with("== precondition: command ") {
            sections.push(Vec::new());
        } else if let Some(last) = sections.last_mut() {
            last.push(l);
        }
    }
    let mut commands = 0usize;
    Ok(plan
        .preconditions
        .iter()
        .zip(record.checks)
        .map(|(p, r)| {
            let output = if matches!(p.check, Precondition::Command { .. }) {
                commands += 1;
                let lines = sections.get(commands - 1).map(Vec::as_slice).unwrap_or(&[]);
                let last = &lines[lines.len().saturating_sub(3)..];
                if last.is_empty() {
                    "no output".to_owned()
                } else {
                    format!("output: {}", last.join(" / "))
                }
            } else {
                String::new()
            };
            let times_last = matches!(
                p.check,
                Precondition::FreeSpace {
                    min: MinFree::TimesLast(_),
                    ..
                }
            );
            let (verdict, detail) = match (times_last, r.passed) {
                (true, _) => (
                    Verdict::Unknown,
                    "needs the last run's size, which probe does not read from the state"
                        .to_owned(),
                ),
                (false, true) => (Verdict::Pass, r.detail),
                // A `command` check's output was in the removed folder.
                (false, false) => (Verdict::Fail, r.detail.replace(&shown_log, &output)),
            };
            Check::new(r.check, verdict, detail)
        })
        .collect())
}

/// Every step's checks, in the order written.
fn steps(plan: &Plan) -> Vec<StepProbe> {
    let work_dir = PathBuf::from(&plan.facts.playbook_dir);
    plan.steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (earlier, commands) = earlier_writes(plan, i, &work_dir);
            let ctx = ProbeCtx {
                step: &step.id,
                work_dir: &work_dir,
                facts: &plan.facts,
                env: &step.env,
                earlier: &earlier,
                commands: &commands,
            };
            let (kind, action) = match &step.body {
                ResolvedBody::Action(p) => ("action", Some(p.action())),
                ResolvedBody::Run(_) => ("run", None),
                ResolvedBody::Cmd(_) => ("cmd", None),
            };
            StepProbe {
                id: step.id.clone(),
                kind,
                action,
                checks: step_checks(step, &ctx),
            }
        })
        .collect()
}

fn step_checks(step: &crate::plan::ResolvedStep, ctx: &ProbeCtx<'_>) -> Vec<Check> {
    if let Some(cond) = step.condition.as_ref().filter(|c| !c.value) {
        return vec![Check::pass(
            "if",
            format!("`{}` is false: the step is skipped, not probed", cond.expr),
        )];
    }
    let mut out = Vec::new();
    if let Some(creates) = step.shown_creates() {
        let path = ctx.path(creates);
        if path.exists() {
            return vec![Check::pass(
                "creates",
                format!("{} exists: the step is skipped", path.display()),
            )];
        }
        out.push(Check::pass(
            "creates",
            format!("{} does not exist: the step runs", path.display()),
        ));
    }
    match &step.body {
        ResolvedBody::Action(p) => out.extend(p.inspect(ctx)),
        ResolvedBody::Run(_) => out.push(inspect::program("bash", true, ctx)),
        ResolvedBody::Cmd(argv) => out.extend(inspect::command(argv, ctx)),
    }
    out
}

/// What the steps step `i` waits for (directly or not) write, resolved:
/// a probe of those paths waits for the run; and the `run:`/`cmd:` steps
/// among them, whose writes cannot be known.
fn earlier_writes(plan: &Plan, i: usize, work_dir: &Path) -> (Vec<(PathBuf, String)>, Vec<String>) {
    let mut seen = vec![false; plan.steps.len()];
    let mut stack = vec![i];
    let mut out = Vec::new();
    let mut commands = Vec::new();
    while let Some(j) = stack.pop() {
        if !plan.graph.contains(j) {
            continue;
        }
        for (dep, _) in plan.graph.dependencies(j) {
            if std::mem::replace(&mut seen[dep], true) {
                continue;
            }
            stack.push(dep);
            if let ResolvedBody::Action(p) = &plan.steps[dep].body {
                out.extend(
                    p.writes()
                        .into_iter()
                        .map(|w| (work_dir.join(w), plan.steps[dep].id.clone())),
                );
            } else {
                commands.push(plan.steps[dep].id.clone());
            }
        }
    }
    commands.sort();
    (out, commands)
}
