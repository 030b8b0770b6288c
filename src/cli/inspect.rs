//! `ward status`, `ward runs` and `ward log`: read-only views of the state.
//!
//! The store is async; each command runs on a small current-thread runtime
//! (`session::block_on`), opened read-only.

use std::io::Write;
use std::path::Path;

use super::{LogArgs, RunsArgs, StatusArgs};
use crate::error::{WardError, exit};
use crate::report::{Style, render_runs, render_status, status_json};
use crate::session::{StateSession, block_on};
use crate::state::{Access, RunRecord};

/// A run by id, or the most recent one for `None` or `last`.
pub(super) async fn find_run(
    session: &StateSession,
    id: Option<&str>,
) -> Result<RunRecord, WardError> {
    match id.filter(|i| *i != "last") {
        Some(id) => session.store.run(id).await?.ok_or_else(|| {
            WardError::RunNotFound(format!(
                "no run `{id}` in {}; see `ward runs`",
                session.store.describe()
            ))
        }),
        None => session
            .store
            .runs(None, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                WardError::RunNotFound(format!("no runs recorded in {}", session.store.describe()))
            }),
    }
}

/// A record as JSON; a failure is an error, never an empty document.
fn to_json(value: &impl serde::Serialize) -> Result<serde_json::Value, WardError> {
    serde_json::to_value(value)
        .map_err(|e| WardError::Internal(format!("cannot print the record as JSON: {e}")))
}

fn print_json(value: &serde_json::Value) -> Result<(), WardError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

pub(super) fn status(args: &StatusArgs) -> Result<i32, WardError> {
    let (run, steps, attempts) = block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let run = find_run(&session, args.run_id.as_deref()).await?;
        let steps = session.store.steps(&run.id).await?;
        let attempts = session.store.attempts(&run.id, None).await?;
        Ok::<_, WardError>((run, steps, attempts))
    })??;
    if args.json {
        let json = status_json(&run, &steps, &attempts)
            .map_err(|e| WardError::Internal(format!("cannot print the run as JSON: {e}")))?;
        print_json(&json)?;
    } else {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        render_status(&mut out, &run, &steps, &attempts, Style::stdout())?;
        out.flush()?;
    }
    Ok(exit::OK)
}

pub(super) fn runs(args: &RunsArgs) -> Result<i32, WardError> {
    let runs = block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let runs = session
            .store
            .runs(args.playbook.as_deref(), args.limit)
            .await?;
        Ok::<_, WardError>(runs)
    })??;
    if args.json {
        print_json(&to_json(&runs)?)?;
    } else {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        render_runs(&mut out, &runs, Style::stdout())?;
        out.flush()?;
    }
    Ok(exit::OK)
}

pub(super) fn log(args: &LogArgs) -> Result<i32, WardError> {
    let (run, attempts) = block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let run = find_run(&session, Some(&args.run_id)).await?;
        if let Some(step) = &args.step
            && !session
                .store
                .steps(&run.id)
                .await?
                .iter()
                .any(|s| &s.id == step)
        {
            return Err(WardError::RunNotFound(format!(
                "run {} has no step `{step}`",
                run.id
            )));
        }
        let attempts = session
            .store
            .attempts(&run.id, args.step.as_deref())
            .await?;
        Ok((run, attempts))
    })??;
    let read = |path: &str| {
        crate::state::private::read_log(Path::new(path))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    if args.json {
        let items = attempts
            .iter()
            .map(|a| {
                let mut v = to_json(a)?;
                v["output"] = match read(&a.log_path) {
                    Ok(text) => serde_json::Value::String(text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        serde_json::Value::String(String::new())
                    }
                    // Not printed as empty output: null says it could not be read.
                    Err(_) => serde_json::Value::Null,
                };
                Ok(v)
            })
            .collect::<Result<Vec<serde_json::Value>, WardError>>()?;
        print_json(&serde_json::json!({ "run_id": run.id, "attempts": items }))?;
        return Ok(exit::OK);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if attempts.is_empty() {
        writeln!(out, "run {} has no step output yet", run.id)?;
    }
    let gone = crate::report::recorded_running_but_gone(&run);
    if gone && attempts.iter().any(|a| a.outcome.is_none()) {
        writeln!(out, "note: {}", crate::report::not_recorded_note(&run))?;
    }
    for a in &attempts {
        let end = match (a.exit_code, a.signal, a.outcome) {
            (Some(c), _, Some(o)) => format!("{o}, exit {c}"),
            (None, Some(sig), Some(o)) => format!("{o}, signal {sig}"),
            (_, _, Some(o)) => o.to_string(),
            // The same words as `ward status` (see `not_recorded_note`).
            _ if run.state == crate::state::RunState::Running && !gone => "running".to_owned(),
            _ => "end not recorded".to_owned(),
        };
        writeln!(
            out,
            "==> {} (attempt {}, {end}) {} <==",
            a.step_id, a.attempt, a.log_path
        )?;
        match read(&a.log_path) {
            Ok(text) => {
                out.write_all(text.as_bytes())?;
                if !text.is_empty() && !text.ends_with('\n') {
                    writeln!(out)?;
                }
            }
            // Silent steps have no log file at all.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => writeln!(out, "(no output)")?,
            Err(e) => writeln!(out, "(log unreadable: {e})")?,
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
