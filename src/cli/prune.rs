//! `ward prune`, and the prune at the end of `ward run` and `ward resume`:
//! each playbook's `history:` policy applied to the runs in the state and
//! their logs (the rules are in `state/retention.rs`).

use std::io::Write;

use super::PruneArgs;
use crate::error::{WardError, exit};
use crate::model::{History, Playbook};
use crate::report::{Style, count, fmt_bytes as bytes, local_time};
use crate::session::{StateSession, block_on};
use crate::state::Access;
use crate::state::retention::{self, PolicyRecord, PruneOptions, PruneReport, Retention};

/// The policy a playbook records (`None`: no `history:`, the default).
pub(super) fn policy_of(playbook: &Playbook) -> Option<Retention> {
    playbook.history.as_ref().map(|h| retention_of(h.value))
}

fn retention_of(h: History) -> Retention {
    Retention {
        keep_days: h.keep_days,
        keep_runs: h.keep_runs,
    }
}

/// After a run (`ward run`, `ward resume`), once its notifications are
/// out: records the playbook's policy and applies it to the playbook's
/// runs, then removes logs no run owns. Never changes the run's exit code:
/// a failure is one warning line on stderr. At a terminal (`progress`),
/// one line says what went, if anything did, and what was left alone.
pub(super) async fn after_run(
    state: &mut StateSession,
    playbook: &Playbook,
    run_id: &str,
    progress: bool,
) {
    let name = playbook.name.value.clone();
    // The real clock, not `WARD_NOW`: a rehearsal dated next year must not
    // empty this year's history.
    let now = crate::clock::wall_ms();
    let opts = PruneOptions {
        playbook: Some(name.clone()),
        dry_run: false,
        sweep: true,
        now_ms: now,
        record: Some(PolicyRecord {
            playbook: name.clone(),
            policy: policy_of(playbook),
            run_id: run_id.to_owned(),
            at: now,
        }),
    };
    let report = match retention::prune(state.store.as_mut(), &opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "{}: the history of playbook `{name}` was not pruned: {e}; the run's result \
                 stands (try `ward prune` later)",
                Style::stderr().warning("warning")
            );
            return;
        }
    };
    // What was left alone is for `ward prune` and a watching operator: under
    // cron the same foreign file would mail a warning after every night.
    if progress {
        warn_left(&report);
    }
    if progress && (!report.runs.is_empty() || report.orphans_removed().next().is_some()) {
        println!("history: {}", totals(&report));
    }
}

pub(super) fn prune(args: &PruneArgs) -> Result<i32, WardError> {
    let opts = PruneOptions {
        playbook: args.playbook.clone(),
        dry_run: args.dry_run,
        sweep: args.playbook.is_none(),
        now_ms: crate::clock::wall_ms(),
        record: None,
    };
    let report = block_on(async {
        let mut state = StateSession::open(args.state.state.as_deref(), Access::Write).await?;
        if let Some(name) = &args.playbook
            && !state.store.playbook_names().await?.contains(name)
        {
            return Err(WardError::Usage(format!(
                "no run of playbook `{name}` is recorded in {}: check the name (`ward runs` \
                 lists them) and `--state`",
                state.store.describe()
            )));
        }
        Ok(retention::prune(state.store.as_mut(), &opts).await?)
    })??;
    let mut out = std::io::stdout().lock();
    if args.json {
        // Times as every read command gives them (docs/cli.md, "JSON output").
        let mut json =
            serde_json::to_value(Json::of(&report)).map_err(|e| WardError::Output(e.into()))?;
        if let Some(runs) = json
            .get_mut("runs")
            .and_then(serde_json::Value::as_array_mut)
        {
            for run in runs {
                crate::report::times_to_rfc3339(run, &["started_at"]);
            }
        }
        serde_json::to_writer_pretty(&mut out, &json).map_err(|e| WardError::Output(e.into()))?;
        writeln!(out)?;
    } else {
        render(&mut out, &report)?;
    }
    warn_left(&report);
    Ok(exit::OK)
}

/// `ward prune --json`: the report, with its totals.
#[derive(serde::Serialize)]
struct Json<'a> {
    #[serde(flatten)]
    report: &'a PruneReport,
    totals: Totals,
}

#[derive(serde::Serialize)]
struct Totals {
    runs: usize,
    log_files: u64,
    bytes: u64,
}

impl<'a> Json<'a> {
    fn of(report: &'a PruneReport) -> Json<'a> {
        Json {
            report,
            totals: Totals {
                runs: report.runs.len(),
                log_files: report.files(),
                bytes: report.bytes(),
            },
        }
    }
}

fn render(out: &mut dyn Write, report: &PruneReport) -> std::io::Result<()> {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for r in &report.runs {
        writeln!(
            out,
            "{verb} run {} of `{}` ({}, started {}; keep_days {}, keep_runs {}): {}, {}",
            r.run.id,
            r.run.playbook,
            r.run.state,
            local_time(r.run.started_at),
            r.run.policy.keep_days,
            r.run.policy.keep_runs,
            count(r.logs.files as usize, "log file"),
            bytes(r.logs.bytes)
        )?;
    }
    for o in report.orphans_removed() {
        writeln!(
            out,
            "{verb} logs/{} (no such run recorded): {}, {}",
            o.run_id,
            count(o.files as usize, "log file"),
            bytes(o.bytes)
        )?;
    }
    if let Some(why) = &report.sweep_skipped {
        writeln!(out, "note: {why}")?;
    }
    writeln!(out, "{}", totals(report))
}

/// The closing line: what went, in all.
fn totals(report: &PruneReport) -> String {
    let (verb, freed) = if report.dry_run {
        ("would remove", "would be freed")
    } else {
        ("removed", "freed")
    };
    if report.runs.is_empty() && report.orphans_removed().next().is_none() {
        return if report.dry_run {
            "nothing to remove".to_owned()
        } else {
            "nothing removed".to_owned()
        };
    }
    format!(
        "{verb} {} and {}; {} {freed}",
        count(report.runs.len(), "run"),
        count(report.files() as usize, "log file"),
        bytes(report.bytes())
    )
}

/// Warns once per folder where something ward did not write was left.
fn warn_left(report: &PruneReport) {
    for l in report.left() {
        eprintln!(
            "{}: left alone in the logs folder, not written by ward: {}; remove it by hand if \
             it is not needed",
            Style::stderr().warning("warning"),
            // Names as written by whoever put them there: escaped, so a
            // newline or a terminal control sequence shows as text.
            l.left
                .iter()
                .map(|n| n.escape_debug().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_of_the_key_and_of_the_state_agree() {
        assert_eq!(retention_of(History::default()), Retention::DEFAULT);
    }
}
