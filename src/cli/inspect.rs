//! `ward status`, `ward runs` and `ward log`: read-only views of the state.
//!
//! The store is async; each command runs on a small current-thread runtime
//! (`session::block_on`), opened read-only.

use std::io::Write;
use std::path::Path;

use chrono::TimeZone;

use super::{LogArgs, RunsArgs, StatusArgs};
use crate::error::{WardError, exit};
use crate::report::{Style, attempt_json, render_runs, render_status, runs_json, status_json};
use crate::session::{StateSession, block_on};
use crate::state::{Access, RunFilter, RunRecord, RunState, StepState};

/// How often `ward log --follow` looks for new output and for the step's
/// end: often enough to feel live, seldom enough to cost nothing.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(400);

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

fn print_json(value: &serde_json::Value) -> Result<(), WardError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    serde_json::to_writer_pretty(&mut out, value).map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

pub(super) fn status(args: &StatusArgs) -> Result<i32, WardError> {
    let (run, steps, attempts, items) = block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let run = find_run(&session, args.run_id.as_deref()).await?;
        let steps = session.store.steps(&run.id).await?;
        let attempts = session.store.attempts(&run.id, None).await?;
        // Counted in Rust (`report::item_counts`): 10,000 items read and
        // counted take milliseconds, well under what `status` may cost.
        let items = session.store.items(&run.id, None, None).await?;
        Ok::<_, WardError>((run, steps, attempts, items))
    })??;
    if args.json {
        let json = status_json(&run, &steps, &attempts, &items, args.state.state.as_deref())
            .map_err(|e| WardError::Internal(format!("cannot print the run as JSON: {e}")))?;
        print_json(&json)?;
    } else {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        render_status(
            &mut out,
            &run,
            &steps,
            &attempts,
            &items,
            Style::stdout(),
            args.state.state.as_deref(),
        )?;
        out.flush()?;
    }
    Ok(exit::OK)
}

/// A `--status` word as a run state; the error lists the words there are.
fn parse_state(word: &str) -> Result<RunState, WardError> {
    RunState::parse(word.trim()).ok_or_else(|| {
        WardError::Usage(format!(
            "--status {word}: not a run state; use one of running, succeeded, failed, \
             interrupted, crashed, skipped, missed"
        ))
    })
}

/// A `--since`/`--until` value as Unix ms: a date (its local midnight), an
/// RFC 3339 time, or an age counted back from `now_ms` (`7d`, `24h`).
fn parse_when(flag: &str, text: &str, now_ms: i64) -> Result<i64, WardError> {
    let t = text.trim();
    let bad = |why: &str| {
        WardError::Usage(format!(
            "{flag} {text}: {why}; write a date (2026-12-01), an RFC 3339 time \
             (2026-12-01T08:00:00+01:00) or an age such as 7d, 24h or 30m"
        ))
    };
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).ok_or_else(|| bad("not a date"))?;
        // A midnight skipped by a clock change: the first time after it.
        return chrono::Local
            .from_local_datetime(&midnight)
            .earliest()
            .or_else(|| {
                chrono::Local
                    .from_local_datetime(&(midnight + chrono::TimeDelta::hours(1)))
                    .earliest()
            })
            .map(|d| d.timestamp_millis())
            .ok_or_else(|| bad("that midnight does not exist in the local time zone"));
    }
    // A date with a time of day after it: `2026-12-01T08:00:00+01:00`.
    let b = t.as_bytes();
    if b.len() > 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        return chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| d.timestamp_millis())
            .map_err(|e| {
                bad(&format!(
                    "not an RFC 3339 time ({e}; it needs an offset such as Z or +01:00)"
                ))
            });
    }
    match crate::model::Duration::parse(t) {
        Ok(age) => {
            let ms = i64::try_from(age.std().as_millis()).unwrap_or(i64::MAX);
            Ok(now_ms.saturating_sub(ms))
        }
        Err(e) if t.starts_with(|c: char| c.is_ascii_digit()) && !t.contains('-') => {
            Err(bad(&e.to_string()))
        }
        Err(_) => Err(bad("not a date, a time or an age")),
    }
}

/// What `ward runs` was asked to list.
fn run_filter(args: &RunsArgs, now_ms: i64) -> Result<RunFilter, WardError> {
    let mut states = Vec::new();
    for word in &args.status {
        let state = parse_state(word)?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    let since_ms = args
        .since
        .as_deref()
        .map(|t| parse_when("--since", t, now_ms))
        .transpose()?;
    let until_ms = args
        .until
        .as_deref()
        .map(|t| parse_when("--until", t, now_ms))
        .transpose()?;
    if let (Some(since), Some(until)) = (since_ms, until_ms)
        && since >= until
    {
        return Err(WardError::Usage(format!(
            "--since {} is not before --until {}: no run can match",
            args.since.as_deref().unwrap_or_default(),
            args.until.as_deref().unwrap_or_default()
        )));
    }
    Ok(RunFilter {
        playbook: args.playbook.clone(),
        states,
        since_ms,
        until_ms,
        limit: args.limit,
    })
}

pub(super) fn runs(args: &RunsArgs) -> Result<i32, WardError> {
    // Runs record the clock's time, so ages count back from the clock
    // (not `WARD_NOW`, which only sets the date a run believes it is).
    let filter = run_filter(args, crate::clock::wall_ms())?;
    let runs = block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let runs = session.store.runs_matching(&filter).await?;
        Ok::<_, WardError>(runs)
    })??;
    if args.json {
        let json = runs_json(&runs)
            .map_err(|e| WardError::Internal(format!("cannot print the runs as JSON: {e}")))?;
        print_json(&json)?;
    } else {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let filtered = args.playbook.is_some()
            || !args.status.is_empty()
            || args.since.is_some()
            || args.until.is_some();
        if runs.is_empty() && filtered {
            writeln!(out, "no recorded run matches these filters")?;
        } else {
            render_runs(&mut out, &runs, Style::stdout())?;
        }
        out.flush()?;
    }
    Ok(exit::OK)
}

pub(super) fn log(args: &LogArgs) -> Result<i32, WardError> {
    if args.follow
        && let Some(step) = &args.step
    {
        return follow(args, step);
    }
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
                let mut v = attempt_json(a).map_err(|e| {
                    WardError::Internal(format!("cannot print the attempt as JSON: {e}"))
                })?;
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
        writeln!(
            out,
            "note: {}",
            crate::report::not_recorded_note(&run, args.state.state.as_deref())
        )?;
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

/// `ward log RUN STEP --follow`: prints the step's output so far, then
/// what it adds, attempt after attempt, until the step ends (exit 0). A
/// run whose ward is gone ends it too, with a message (exit 1): the step
/// will never end then.
fn follow(args: &LogArgs, step: &str) -> Result<i32, WardError> {
    block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let run = find_run(&session, Some(&args.run_id)).await?;
        let run_id = run.id;
        let stdout = std::io::stdout();
        // Attempts printed to their end, and how far into the current one.
        let mut finished = 0u32;
        let mut offset = 0u64;
        let mut header_for = 0u32;
        loop {
            // The states first, the output after: a step seen ended then
            // has all its output in the file when it is read.
            let run = session.store.run(&run_id).await?.ok_or_else(|| {
                WardError::RunNotFound(format!("run {run_id} is no longer recorded"))
            })?;
            let state = session
                .store
                .steps(&run_id)
                .await?
                .into_iter()
                .find(|s| s.id == step)
                .map(|s| s.state)
                .ok_or_else(|| {
                    WardError::RunNotFound(format!("run {run_id} has no step `{step}`"))
                })?;
            let attempts = session.store.attempts(&run_id, Some(step)).await?;
            let mut out = stdout.lock();
            let done_before = finished;
            for a in attempts.iter().filter(|a| a.attempt > done_before) {
                if header_for != a.attempt {
                    writeln!(
                        out,
                        "==> {} (attempt {}) {} <==",
                        a.step_id, a.attempt, a.log_path
                    )?;
                    header_for = a.attempt;
                    offset = 0;
                }
                match crate::state::private::read_log_from(Path::new(&a.log_path), offset) {
                    Ok(bytes) => {
                        out.write_all(&bytes)?;
                        offset += bytes.len() as u64;
                    }
                    // A step that has printed nothing yet has no file yet.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(WardError::Output(std::io::Error::new(
                            e.kind(),
                            format!("cannot read {}: {e}", a.log_path),
                        )));
                    }
                }
                if a.outcome.is_some() {
                    finished = a.attempt;
                }
            }
            out.flush()?;
            drop(out);
            if state.is_terminal() {
                if attempts.is_empty() {
                    // Skipped (a `when:`, a failed need): nothing will come.
                    eprintln!("step `{step}` of run {run_id} did not run: it is {state}");
                }
                return Ok(exit::OK);
            }
            if run.state != RunState::Running {
                // The run ended without running the step (it stays pending).
                eprintln!(
                    "run {run_id} ended ({}) with step `{step}` {}",
                    run.state,
                    if state == StepState::Pending {
                        "not run"
                    } else {
                        state.as_str()
                    }
                );
                return Ok(exit::OK);
            }
            if crate::report::recorded_running_but_gone(&run) {
                eprintln!(
                    "{}: stopped following step `{step}`: the run {}",
                    Style::stderr().error("error"),
                    crate::report::not_recorded_note(&run, args.state.state.as_deref())
                );
                return Ok(exit::FAILED);
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn since_takes_a_date_a_time_or_an_age() {
        assert_eq!(
            parse_when("--since", "7d", NOW).unwrap(),
            NOW - 7 * 86_400_000
        );
        assert_eq!(parse_when("--since", "24h", NOW).unwrap(), NOW - 86_400_000);
        assert_eq!(
            parse_when("--since", "2026-12-01T08:00:00Z", NOW).unwrap(),
            chrono::DateTime::parse_from_rfc3339("2026-12-01T08:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        let midnight = chrono::Local
            .with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .earliest()
            .unwrap()
            .timestamp_millis();
        assert_eq!(parse_when("--since", "2026-12-01", NOW).unwrap(), midnight);
    }

    #[test]
    fn bad_times_are_usage_errors_that_say_what_to_write() {
        for bad in [
            "yesterday",
            "Today",
            "2026-12-01 08:00",
            "2026-13-01",
            "7",
            "7x",
            "2026-12-01T08:00:00",
            "",
        ] {
            let e = parse_when("--since", bad, NOW).unwrap_err();
            assert_eq!(e.exit_code(), exit::USAGE, "{bad}");
            assert!(e.to_string().contains("7d, 24h"), "{bad}: {e}");
        }
    }
}
