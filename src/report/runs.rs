//! `ward status` and `ward runs` for people and machines.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::progress::thousands;
use super::{Style, fmt_duration};
use crate::state::{
    AttemptRecord, ItemRecord, ItemState, RunRecord, RunState, StepRecord, StepState,
};

/// A `for_each` step's items counted by state, the rate at which they
/// ended, and (while the step runs) an estimate of the time left. Counted
/// in one pass over the recorded items (`Store::items`): 10,000 items are
/// a few milliseconds, so `ward status` needs no query of its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ItemCounts {
    /// Items in the step's list.
    pub total: u64,
    /// Items that succeeded (in this run or, kept by a resume, before).
    pub succeeded: u64,
    /// Items whose attempt failed.
    pub failed: u64,
    /// Items running now (for a run whose ward is gone: whose end was
    /// not recorded).
    pub running: u64,
    /// Items not started yet (`pending`): what is left besides `running`.
    pub pending: u64,
    /// Items not started because the run failed elsewhere.
    pub skipped: u64,
    /// Items held by `ward pause` (they run after `ward unpause` and a
    /// resume).
    pub paused: u64,
    /// Items that ended (succeeded or failed) during the step's last
    /// attempt: what the rate counts (a resume does not count the items
    /// an earlier attempt ran).
    pub ended: u64,
    /// The time the rate is measured over: the step's last attempt from
    /// its start to its end, or to now while it runs.
    pub elapsed_ms: Option<u64>,
    /// `ended` per second of `elapsed_ms`; `None` before any item ended.
    pub rate_per_s: Option<f64>,
    /// While the step runs: the items left (pending and running) at that
    /// rate, in ms.
    pub eta_ms: Option<u64>,
}

impl ItemCounts {
    /// Items that will still run in this attempt: not started or running.
    pub fn left(&self) -> u64 {
        self.pending + self.running
    }

    /// `items of 12: 6 succeeded, 2 failed, 1 running, 3 left · 3.4 items/s
    /// · ETA 1s` (skipped only when there are some).
    pub fn line(&self) -> String {
        let mut text = format!(
            "items of {}: {} succeeded, {} failed, {} running, {} left",
            thousands(self.total),
            thousands(self.succeeded),
            thousands(self.failed),
            thousands(self.running),
            thousands(self.pending)
        );
        if self.skipped > 0 {
            text.push_str(&format!(", {} skipped", thousands(self.skipped)));
        }
        if self.paused > 0 {
            text.push_str(&format!(", {} paused", thousands(self.paused)));
        }
        if let Some(rate) = self.rate_per_s {
            text.push_str(&format!(" · {} items/s", fmt_rate(rate)));
        }
        if let Some(eta) = self.eta_ms {
            text.push_str(&format!(
                " · ETA {}",
                fmt_duration(Duration::from_millis(eta))
            ));
        }
        text
    }
}

/// A rate with as many decimals as it needs to say something: `0.25`,
/// `3.4`, `152`.
pub fn fmt_rate(rate: f64) -> String {
    if rate >= 100.0 {
        format!("{rate:.0}")
    } else if rate >= 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
    }
}

/// The items of each `for_each` step of a run, counted (by step id; steps
/// without recorded items are not in it). `now` is where a live step's
/// time so far ends.
pub fn item_counts(
    run: &RunRecord,
    steps: &[StepRecord],
    attempts: &[AttemptRecord],
    items: &[ItemRecord],
    now: i64,
) -> HashMap<String, ItemCounts> {
    let mut out: HashMap<String, ItemCounts> = HashMap::new();
    if items.is_empty() {
        return out;
    }
    let live = run.state == RunState::Running && !recorded_running_but_gone(run);
    // Each step's last attempt: the window its rate is measured over.
    let mut last: HashMap<&str, &AttemptRecord> = HashMap::new();
    for a in attempts {
        let e = last.entry(a.step_id.as_str()).or_insert(a);
        if a.attempt > e.attempt {
            *e = a;
        }
    }
    let running: HashMap<&str, bool> = steps
        .iter()
        .map(|s| (s.id.as_str(), s.state == StepState::Running))
        .collect();
    // Items come grouped by step: one lookup per step, not per item.
    let mut current: Option<(&str, Option<i64>)> = None;
    let mut latest_end: HashMap<&str, i64> = HashMap::new();
    for it in items {
        let from = match current {
            Some((id, from)) if id == it.step_id => from,
            _ => {
                let from = last.get(it.step_id.as_str()).map(|a| a.started_at);
                current = Some((it.step_id.as_str(), from));
                from
            }
        };
        let c = out.entry(it.step_id.clone()).or_default();
        c.total += 1;
        match it.state {
            ItemState::Succeeded => c.succeeded += 1,
            ItemState::Failed => c.failed += 1,
            ItemState::Running => c.running += 1,
            ItemState::Pending => c.pending += 1,
            ItemState::Skipped => c.skipped += 1,
            ItemState::Paused => c.paused += 1,
        }
        if matches!(it.state, ItemState::Succeeded | ItemState::Failed)
            && let (Some(from), Some(end)) = (from, it.finished_at)
            && end >= from
        {
            c.ended += 1;
            let e = latest_end.entry(it.step_id.as_str()).or_insert(end);
            *e = (*e).max(end);
        }
    }
    for (id, c) in &mut out {
        let Some(a) = last.get(id.as_str()) else {
            continue;
        };
        let step_running = running.get(id.as_str()).copied().unwrap_or(false);
        // Over the whole attempt once it ended; to now while it runs; for
        // a run whose ward is gone, to the last item's recorded end.
        let end = a
            .finished_at
            .or_else(|| (live && step_running).then_some(now))
            .or_else(|| latest_end.get(id.as_str()).copied());
        let Some(end) = end else { continue };
        let elapsed = (end - a.started_at).max(0) as u64;
        c.elapsed_ms = Some(elapsed);
        if c.ended > 0 && elapsed > 0 {
            let rate = c.ended as f64 * 1000.0 / elapsed as f64;
            c.rate_per_s = Some(rate);
            if live && step_running && a.finished_at.is_none() && c.left() > 0 {
                c.eta_ms = Some((c.left() as f64 / rate * 1000.0).ceil().min(1e12) as u64);
            }
        }
    }
    out
}

/// Unix milliseconds as local `YYYY-MM-DD HH:MM:SS`.
pub fn local_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "?".into())
}

/// Unix milliseconds as RFC 3339 with the local offset and milliseconds
/// (`2026-12-02T01:14:49.123+01:00`): how every time in ward's JSON is
/// written. The state keeps Unix ms; this is the output edge.
pub fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| {
        t.with_timezone(&chrono::Local)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
    })
}

/// [`rfc3339`] as a JSON value: `null` for no time.
pub fn json_time(ms: Option<i64>) -> Value {
    ms.and_then(rfc3339).map_or(Value::Null, Value::String)
}

/// Rewrites the Unix-ms fields `keys` of a serialized record as RFC 3339
/// strings (a missing or `null` field stays as it is).
pub fn times_to_rfc3339(v: &mut Value, keys: &[&str]) {
    for key in keys {
        if let Some(field) = v.get_mut(*key)
            && let Some(ms) = field.as_i64()
        {
            *field = json_time(Some(ms));
        }
    }
}

/// How long a step that is running now has run: since its current
/// attempt started. `None` unless the run is live (a run whose ward is
/// gone has no step running, only an end not recorded).
fn running_for(run: &RunRecord, step: &StepRecord, attempts: &[AttemptRecord]) -> Option<Duration> {
    if step.state != StepState::Running
        || run.state != RunState::Running
        || recorded_running_but_gone(run)
    {
        return None;
    }
    let current = attempts
        .iter()
        .filter(|a| a.step_id == step.id && a.outcome.is_none())
        .max_by_key(|a| a.attempt)?;
    Some(Duration::from_millis(
        (crate::clock::wall_ms() - current.started_at).max(0) as u64,
    ))
}

fn span(from: Option<i64>, to: Option<i64>) -> Option<Duration> {
    match (from, to) {
        (Some(a), Some(b)) if b >= a => Some(Duration::from_millis((b - a) as u64)),
        _ => None,
    }
}

/// How long a step took: its last attempt's own time. Not the step's
/// first start to its end: after a resume that span would include the
/// time between the runs (a 2 ms step shown as minutes).
fn step_duration(step: &StepRecord, attempts: &[AttemptRecord]) -> Option<Duration> {
    let last = attempts
        .iter()
        .filter(|a| a.step_id == step.id)
        .max_by_key(|a| a.attempt)?;
    // Only for a step that ended: a step reset for a resume has no time yet.
    step.finished_at?;
    span(Some(last.started_at), last.finished_at)
}

fn state_word(style: Style, state: &str, good: bool, bad: bool) -> String {
    if good {
        style.bold(state)
    } else if bad {
        style.error(state)
    } else {
        state.to_owned()
    }
}

/// One run with its steps, as a table.
pub fn render_status(
    out: &mut dyn Write,
    run: &RunRecord,
    steps: &[StepRecord],
    attempts: &[AttemptRecord],
    items: &[ItemRecord],
    style: Style,
    state: Option<&std::path::Path>,
) -> io::Result<()> {
    let counts = item_counts(run, steps, attempts, items, crate::clock::wall_ms());
    let good = run.state == RunState::Succeeded;
    let bad = matches!(
        run.state,
        RunState::Failed | RunState::Crashed | RunState::Interrupted
    );
    writeln!(
        out,
        "run {}  {}  {}",
        style.bold(&run.id),
        run.playbook_name,
        state_word(style, run.state.as_str(), good, bad)
    )?;
    writeln!(out, "  playbook  {}", run.playbook_path)?;
    let live = run.state == RunState::Running && !recorded_running_but_gone(run);
    let took = span(Some(run.started_at), run.finished_at)
        .map(|d| format!(", took {}", fmt_duration(d)))
        .or_else(|| {
            live.then(|| {
                let d =
                    Duration::from_millis((crate::clock::wall_ms() - run.started_at).max(0) as u64);
                format!(", running for {}", fmt_duration(d))
            })
        })
        .unwrap_or_default();
    let resumed = if run.resumes > 0 {
        format!(", resumed {}×", run.resumes)
    } else {
        String::new()
    };
    writeln!(
        out,
        "  started   {} on {} (pid {}){took}{resumed}",
        local_time(run.started_at),
        run.host,
        run.pid
    )?;
    if let Some(m) = &run.message {
        writeln!(out, "  message   {m}")?;
    }
    if recorded_running_but_gone(run) {
        writeln!(out, "  note      {}", not_recorded_note(run, state))?;
    }
    if let Some(p) = &run.preconditions {
        super::preconditions::render_status_lines(out, p, style)?;
    }
    writeln!(out)?;
    let width = steps.iter().map(|s| s.id.len()).max().unwrap_or(4).max(4);
    writeln!(
        out,
        "  {:<width$}  {:<11}  {:>8}  {:>9}  {:>4}  LOG",
        "STEP", "STATE", "ATTEMPTS", "DURATION", "EXIT"
    )?;
    for s in steps.iter().filter(|s| !s.compensation || s.attempts > 0) {
        let good = s.state == StepState::Succeeded;
        let bad = matches!(s.state, StepState::Failed | StepState::Interrupted);
        let state = format!("{:<11}", s.state.as_str());
        // A running step shows how long it has run so far.
        let duration = step_duration(s, attempts)
            .or_else(|| running_for(run, s, attempts))
            .map(fmt_duration)
            .unwrap_or_else(|| "-".into());
        let exit = s
            .exit_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "  {:<width$}  {}  {:>8}  {:>9}  {:>4}  {}",
            s.id,
            state_word(style, &state, good, bad),
            s.attempts,
            duration,
            exit,
            s.log_path
                .as_deref()
                .map(|p| if std::path::Path::new(p).exists() {
                    p
                } else {
                    "(no output)"
                })
                .unwrap_or("-")
        )?;
        if let Some(c) = counts.get(&s.id) {
            writeln!(
                out,
                "  {:<width$}  {}",
                "",
                style.dim(&format!("↳ {}", c.line()))
            )?;
        }
        if let Some(reason) = s
            .reason
            .as_deref()
            .filter(|_| s.state != StepState::Succeeded || s.attempts == 0)
        {
            writeln!(
                out,
                "  {:<width$}  {}",
                "",
                style.dim(&format!("↳ {reason}"))
            )?;
        }
        if let Some(u) = &s.unflushed {
            writeln!(
                out,
                "  {:<width$}  {}",
                "",
                style.dim(&format!(
                    "↳ output not yet flushed to disk: {} (a resume after a restart of the machine runs it again)",
                    u.paths.join(", ")
                ))
            )?;
        }
    }
    Ok(())
}

/// One run with its steps and attempts, as JSON.
/// True when a run recorded `running` has no ward behind it any more: it
/// was started on this host and its process is gone (or is no longer
/// ward). Its last recorded steps and attempts then say `running` only
/// because their end was never recorded (a crash, `kill -9`, or a state
/// database ward could no longer write). A run on another host is taken
/// as live: ward cannot tell from here.
pub fn recorded_running_but_gone(run: &RunRecord) -> bool {
    if run.state != RunState::Running || run.host != crate::host::hostname() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{}/comm", run.pid)) {
        Ok(comm) => comm.trim() != "ward",
        Err(_) => true,
    }
}

/// What `status` and `log` say of a run recorded `running` whose ward is
/// gone, so that both tell the same truth.
pub fn not_recorded_note(run: &RunRecord, state: Option<&std::path::Path>) -> String {
    format!(
        "recorded `running`, but its ward (pid {}) is gone: the end of the steps and \
         attempts shown `running` was not recorded (a crash, or a state database that could \
         not be written); ward's printed output is the only record of it. `ward resume{} {}` \
         continues the run",
        run.pid,
        super::state_flag(state),
        run.id
    )
}

/// A run as JSON: its record with times as RFC 3339, `duration_ms`
/// (`null` until it ends) and, for a live run, `running_ms` so far.
pub fn run_json(run: &RunRecord) -> serde_json::Result<Value> {
    let mut v = serde_json::to_value(run)?;
    times_to_rfc3339(&mut v, &["started_at", "finished_at", "slot_at"]);
    v["duration_ms"] =
        json!(span(Some(run.started_at), run.finished_at).map(|d| d.as_millis() as u64));
    if run.state == RunState::Running && !recorded_running_but_gone(run) {
        v["running_ms"] = json!((crate::clock::wall_ms() - run.started_at).max(0));
    }
    Ok(v)
}

/// An attempt as JSON, times as RFC 3339.
pub fn attempt_json(a: &AttemptRecord) -> serde_json::Result<Value> {
    let mut v = serde_json::to_value(a)?;
    times_to_rfc3339(&mut v, &["started_at", "finished_at"]);
    Ok(v)
}

/// `ward runs --json`: a list of [`run_json`], newest first.
pub fn runs_json(runs: &[RunRecord]) -> serde_json::Result<Value> {
    runs.iter().map(run_json).collect()
}

/// `ward status --json`. A record that cannot be turned into JSON is an
/// error, never a `null` in its place. A live run's running steps have
/// `running_ms`: how long their current attempt has run so far; `for_each`
/// steps have `items` ([`ItemCounts`]).
pub fn status_json(
    run: &RunRecord,
    steps: &[StepRecord],
    attempts: &[AttemptRecord],
    items: &[ItemRecord],
    state: Option<&std::path::Path>,
) -> serde_json::Result<Value> {
    let counts = item_counts(run, steps, attempts, items, crate::clock::wall_ms());
    let steps = steps
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s)?;
            times_to_rfc3339(&mut v, &["started_at", "finished_at"]);
            v["duration_ms"] = json!(step_duration(s, attempts).map(|d| d.as_millis() as u64));
            if let Some(d) = running_for(run, s, attempts) {
                v["running_ms"] = json!(d.as_millis() as u64);
            }
            v["attempt_list"] = attempts
                .iter()
                .filter(|a| a.step_id == s.id)
                .map(attempt_json)
                .collect::<serde_json::Result<Value>>()?;
            if let Some(c) = counts.get(&s.id) {
                v["items"] = serde_json::to_value(c)?;
            }
            Ok(v)
        })
        .collect::<serde_json::Result<Vec<Value>>>()?;
    let mut v = run_json(run)?;
    v["steps"] = Value::Array(steps);
    if recorded_running_but_gone(run) {
        v["note"] = json!(not_recorded_note(run, state));
    }
    Ok(v)
}

/// A list of runs, newest first.
pub fn render_runs(out: &mut dyn Write, runs: &[RunRecord], style: Style) -> io::Result<()> {
    if runs.is_empty() {
        return writeln!(out, "no runs recorded yet");
    }
    let width = runs
        .iter()
        .map(|r| r.playbook_name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(
        out,
        "{:<20}  {:<width$}  {:<11}  {:<19}  DURATION",
        "RUN", "PLAYBOOK", "STATE", "STARTED"
    )?;
    for r in runs {
        let good = r.state == RunState::Succeeded;
        let bad = matches!(
            r.state,
            RunState::Failed | RunState::Crashed | RunState::Interrupted
        );
        let state = format!("{:<11}", r.state.as_str());
        // A live run: its time so far, marked as not over.
        let took = span(Some(r.started_at), r.finished_at)
            .map(fmt_duration)
            .or_else(|| {
                (r.state == RunState::Running && !recorded_running_but_gone(r)).then(|| {
                    let d = Duration::from_millis(
                        (crate::clock::wall_ms() - r.started_at).max(0) as u64
                    );
                    format!("{} so far", fmt_duration(d))
                })
            })
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<20}  {:<width$}  {}  {:<19}  {took}",
            r.id,
            r.playbook_name,
            state_word(style, &state, good, bad),
            local_time(r.started_at)
        )?;
        if r.state == RunState::Skipped
            && let Some(m) = &r.message
        {
            writeln!(out, "{:<20}  {}", "", style.dim(&format!("↳ {m}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_times_are_rfc3339_with_offset_and_milliseconds() {
        let ms = 1_796_173_689_123; // 2026-12-02T01:08:09.123Z
        let text = rfc3339(ms).expect("a time");
        let back = chrono::DateTime::parse_from_rfc3339(&text).expect("RFC 3339");
        assert_eq!(back.timestamp_millis(), ms, "{text}");
        assert!(text.contains(".123"), "{text}");
        // An offset, never a bare time: `+01:00`, `-05:00` or `+00:00`.
        let offset = &text[text.len() - 6..];
        assert!(
            offset.starts_with(['+', '-']) && offset.as_bytes()[3] == b':',
            "{text}"
        );
        assert_eq!(json_time(None), Value::Null);
    }

    #[test]
    fn only_the_named_number_fields_are_converted() {
        let mut v = json!({"started_at": 0, "finished_at": null, "attempts": 3});
        times_to_rfc3339(&mut v, &["started_at", "finished_at", "slot_at"]);
        assert!(v["started_at"].is_string(), "{v}");
        assert!(v["finished_at"].is_null(), "{v}");
        assert_eq!(v["attempts"], 3);
        assert!(v.get("slot_at").is_none(), "{v}");
    }
}
