//! What a notification says about a run: a typed summary built from what
//! the run recorded, turned into JSON (`notify.command`) or mail text only
//! at the edge.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::execute::Ending;
use crate::model::notify::NotifyOn;
use crate::report::{fmt_duration, local_time, log_tail};
use crate::state::{AttemptRecord, RunRecord, RunState, StateError, StepRecord, StepState, Store};

/// Version of the summary's JSON; a new field does not change it, a
/// removed or renamed one does.
pub const SUMMARY_VERSION: u32 = 1;

/// Log lines of a failed step that a summary carries.
pub const LOG_TAIL_LINES: usize = 50;

/// How the run ended, for people and programs reading a summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunResult {
    /// Every step that was due succeeded (possibly with warnings).
    Succeeded,
    /// A step failed.
    Failed,
    /// A signal stopped the run.
    Interrupted,
    /// The state database could not be written during the run.
    StateLost,
    /// A precondition failed: no step ran.
    Skipped,
    /// A slot of the schedule passed without a run (a `missed` run).
    Missed,
}

impl RunResult {
    /// From how the executor says the run ended.
    pub fn of(ending: Ending) -> RunResult {
        match ending {
            Ending::Succeeded => RunResult::Succeeded,
            Ending::Failed | Ending::ItemsFailed => RunResult::Failed,
            Ending::StateLost => RunResult::StateLost,
            Ending::Interrupted(_) | Ending::Abandoned(_) => RunResult::Interrupted,
            Ending::Skipped => RunResult::Skipped,
            Ending::NotConfirmed => RunResult::Failed,
        }
    }

    /// The word used in subjects and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Succeeded => "succeeded",
            RunResult::Failed => "failed",
            RunResult::Interrupted => "interrupted",
            RunResult::StateLost => "state-lost",
            RunResult::Skipped => "skipped",
            RunResult::Missed => "missed",
        }
    }

    /// Every value, for metrics that list them all.
    /// (Not `Missed`: a missed run writes no metrics, the run after it does.)
    pub const ALL: [RunResult; 5] = [
        RunResult::Succeeded,
        RunResult::Failed,
        RunResult::Interrupted,
        RunResult::StateLost,
        RunResult::Skipped,
    ];
}

/// One step, as the summary lists it.
#[derive(Clone, Debug, Serialize)]
pub struct StepSummary {
    /// Step id.
    pub id: String,
    /// Its state at the end of the run.
    pub state: StepState,
    /// Attempts (across resumes).
    pub attempts: u32,
    /// Its last attempt's duration.
    pub duration_ms: Option<u64>,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
}

/// A step that did not succeed, with the end of its log.
#[derive(Clone, Debug, Serialize)]
pub struct FailedStep {
    /// Step id.
    pub step: String,
    /// Its state (failed or interrupted).
    pub state: StepState,
    /// What happened, in words.
    pub message: Option<String>,
    /// Its last attempt's log file.
    pub log: Option<String>,
    /// The last lines of that log (at most [`LOG_TAIL_LINES`]).
    pub log_tail: Vec<String>,
}

/// A warning of a step that succeeded (e.g. files vanished during rsync).
#[derive(Clone, Debug, Serialize)]
pub struct StepWarning {
    /// Step id.
    pub step: String,
    /// The warning.
    pub message: String,
}

/// The previous finished run of the same playbook.
#[derive(Clone, Debug, Serialize)]
pub struct PreviousRun {
    /// Its id.
    pub run_id: String,
    /// How it ended.
    pub state: RunState,
}

/// Commands an operator may type next.
#[derive(Clone, Debug, Serialize)]
pub struct NextCommands {
    /// `ward status ... RUN`.
    pub status: String,
    /// `ward resume ... RUN`, for a run that did not succeed.
    pub resume: Option<String>,
}

/// Everything a notification says about a run. No secret is in it: the
/// variables are not, and the records it is built from keep secrets masked.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// [`SUMMARY_VERSION`].
    pub version: u32,
    /// Playbook name.
    pub playbook: String,
    /// Playbook file.
    pub playbook_path: String,
    /// Host the run ran on.
    pub host: String,
    /// Run id.
    pub run_id: String,
    /// How it ended.
    pub result: RunResult,
    /// Which `on:` words this run matches (`success` and `recovered` may both).
    pub events: Vec<NotifyOn>,
    /// Why, if it did not succeed.
    pub message: Option<String>,
    /// Start, local time, RFC 3339.
    pub started_at: String,
    /// End, local time, RFC 3339.
    pub finished_at: String,
    /// Unix seconds of the end (for metrics).
    #[serde(skip)]
    pub finished_unix: f64,
    /// Unix seconds of the end of the playbook's last successful run (this
    /// one if it succeeded), if any is recorded (for metrics).
    #[serde(skip)]
    pub last_success_unix: Option<f64>,
    /// From the first start to the end (a resumed run: since its first start).
    pub duration_ms: u64,
    /// True for `ward resume`.
    pub resumed: bool,
    /// The previous finished run of the playbook, if any.
    pub previous: Option<PreviousRun>,
    /// Every step, in playbook order.
    pub steps: Vec<StepSummary>,
    /// Steps that failed or were stopped, with their logs' last lines.
    pub failures: Vec<FailedStep>,
    /// Warnings of steps that succeeded; never failures.
    pub warnings: Vec<StepWarning>,
    /// Bytes rsync steps transferred in this run, if any reported it.
    pub bytes_copied: Option<u64>,
    /// Snapshots kept by the last `rotate` step of this run, if any ran.
    pub snapshots: Option<u64>,
    /// What to type next.
    pub commands: NextCommands,
    /// ward's version.
    pub ward_version: String,
}

/// What a summary is built from besides the store.
pub struct RunEnd<'a> {
    /// The run.
    pub run_id: &'a str,
    /// How the executor says it ended.
    pub ending: Ending,
    /// The executor's words, if it did not succeed.
    pub message: Option<&'a str>,
    /// True for `ward resume` (the run had not succeeded before).
    pub resumed: bool,
    /// `--state` as given (made absolute for the commands shown).
    pub state: Option<&'a Path>,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&chrono::Local).to_rfc3339())
        .unwrap_or_default()
}

/// The commands to look at and continue a run, with `--state` when one
/// was given (absolute: the mail is read elsewhere than where ward ran).
pub fn next_commands(run_id: &str, state: Option<&Path>, succeeded: bool) -> NextCommands {
    // A path is made absolute (the command may be pasted anywhere); an
    // address is shown with its password masked, never made a path.
    let flag = state
        .map(|p| match crate::state::parse_location(p.as_os_str()) {
            Ok(crate::state::Location::Sqlite(_)) => std::path::absolute(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string(),
            _ => crate::state::shown_location(p),
        })
        .map(|p| format!(" --state {}", crate::shell::quote(&p)))
        .unwrap_or_default();
    let id = crate::shell::quote(run_id);
    NextCommands {
        status: format!("ward status{flag} {id}"),
        resume: (!succeeded).then(|| format!("ward resume{flag} {id}")),
    }
}

/// Builds the summary of a run that ended.
pub async fn build(store: &dyn Store, end: &RunEnd<'_>) -> Result<Summary, String> {
    let text = |e: StateError| e.to_string();
    let run = store
        .run(end.run_id)
        .await
        .map_err(text)?
        .ok_or_else(|| format!("run {} is not in the state", end.run_id))?;
    let steps = store.steps(end.run_id).await.map_err(text)?;
    let attempts = store.attempts(end.run_id, None).await.map_err(text)?;
    let earlier = store
        .runs(Some(&run.playbook_name), 50)
        .await
        .map_err(text)?;
    Ok(from_records(&run, &steps, &attempts, &earlier, end))
}

/// The summary from the records (split from [`build`] for tests).
pub fn from_records(
    run: &RunRecord,
    steps: &[StepRecord],
    attempts: &[AttemptRecord],
    earlier: &[RunRecord],
    end: &RunEnd<'_>,
) -> Summary {
    // A missed slot is a record, not an ending of the executor.
    let result = if run.state == RunState::Missed {
        RunResult::Missed
    } else {
        RunResult::of(end.ending)
    };
    let previous = earlier
        .iter()
        // The previous run that actually ran: a skipped night (no step
        // ran) says nothing about whether the backup worked.
        .find(|r| {
            r.id != run.id
                // A missed slot counts (it was mailed as `missed`, so the
                // next success says it recovered); a skipped night does not
                // (by default nobody heard of it).
                && !matches!(r.state, RunState::Running | RunState::Skipped)
                && r.started_at <= run.started_at
        })
        .map(|r| PreviousRun {
            run_id: r.id.clone(),
            state: r.state,
        });
    let recovered = result == RunResult::Succeeded
        && (end.resumed
            || previous
                .as_ref()
                .is_some_and(|p| p.state != RunState::Succeeded));
    let events = match result {
        RunResult::Succeeded if recovered => vec![NotifyOn::Success, NotifyOn::Recovered],
        RunResult::Succeeded => vec![NotifyOn::Success],
        RunResult::Skipped => vec![NotifyOn::Skipped],
        RunResult::Missed => vec![NotifyOn::Missed],
        RunResult::Failed | RunResult::Interrupted | RunResult::StateLost => {
            vec![NotifyOn::Failure]
        }
    };
    let last_attempt = |id: &str| {
        attempts
            .iter()
            .filter(|a| a.step_id == id)
            .max_by_key(|a| a.attempt)
    };
    let mut summary_steps = Vec::new();
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    let mut bytes_copied: Option<u64> = None;
    let mut snapshots = None;
    for s in steps.iter().filter(|s| !s.compensation || s.attempts > 0) {
        let last = last_attempt(&s.id);
        let duration_ms = match (last, s.finished_at) {
            (Some(a), Some(_)) => a
                .finished_at
                .filter(|f| *f >= a.started_at)
                .map(|f| (f - a.started_at) as u64),
            _ => None,
        };
        let reason = match s.state {
            StepState::Failed | StepState::Interrupted => last
                .and_then(|a| a.message.clone())
                .or_else(|| s.reason.clone()),
            StepState::Skipped => s.reason.clone(),
            _ => None,
        };
        summary_steps.push(StepSummary {
            id: s.id.clone(),
            state: s.state,
            attempts: s.attempts,
            duration_ms,
            exit_code: s.exit_code,
            reason: reason.clone(),
        });
        match s.state {
            StepState::Failed | StepState::Interrupted => {
                let log = s
                    .log_path
                    .clone()
                    .or_else(|| last.map(|a| a.log_path.clone()));
                failures.push(FailedStep {
                    step: s.id.clone(),
                    state: s.state,
                    message: reason,
                    log_tail: log
                        .as_deref()
                        .map(|l| log_tail(Path::new(l), LOG_TAIL_LINES))
                        .unwrap_or_default(),
                    log,
                });
            }
            StepState::Succeeded => {
                // The executor records an action's warning in the message of
                // the attempt that succeeded: "<summary>; warning: <text>".
                if let Some(w) = last
                    .and_then(|a| a.message.as_deref())
                    .and_then(|m| m.split_once("warning: ").map(|(_, w)| w))
                {
                    warnings.push(StepWarning {
                        step: s.id.clone(),
                        message: w.to_owned(),
                    });
                }
                // Figures only from attempts of this process or run: a step
                // kept from before a resume still copied its bytes in this run.
                if let Some(details) = last.and_then(|a| a.details.as_ref()) {
                    if let Some(n) = details.get("transferred_size").and_then(|v| v.as_u64()) {
                        bytes_copied = Some(bytes_copied.unwrap_or(0) + n);
                    }
                    if let Some(kept) = details.get("kept").and_then(|v| v.as_array()) {
                        let unverified = details
                            .get("not_counted")
                            .and_then(|v| v.as_array())
                            .map_or(0, Vec::len);
                        snapshots = Some((kept.len() + unverified) as u64);
                    }
                }
            }
            _ => {}
        }
    }
    let finished = run.finished_at.unwrap_or_else(crate::clock::wall_ms);
    Summary {
        version: SUMMARY_VERSION,
        playbook: run.playbook_name.clone(),
        playbook_path: run.playbook_path.clone(),
        host: run.host.clone(),
        run_id: run.id.clone(),
        result,
        events,
        message: end
            .message
            .map(str::to_owned)
            .or_else(|| run.message.clone())
            .filter(|_| result != RunResult::Succeeded),
        started_at: rfc3339(run.started_at),
        finished_at: rfc3339(finished),
        finished_unix: finished as f64 / 1000.0,
        last_success_unix: if result == RunResult::Succeeded {
            Some(finished as f64 / 1000.0)
        } else {
            earlier
                .iter()
                .filter(|r| r.id != run.id && r.state == RunState::Succeeded)
                .filter_map(|r| r.finished_at)
                .max()
                .map(|f| f as f64 / 1000.0)
        },
        duration_ms: (finished - run.started_at).max(0) as u64,
        resumed: end.resumed,
        previous,
        steps: summary_steps,
        failures,
        warnings,
        bytes_copied,
        snapshots,
        commands: next_commands(
            &run.id,
            end.state,
            // Nothing to resume: no step of a missed run was meant to run.
            matches!(result, RunResult::Succeeded | RunResult::Missed),
        ),
        ward_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

impl Summary {
    /// A summary from what is known without the store (its records could
    /// not be read, e.g. after the state was lost).
    pub fn without_records(
        playbook: &str,
        playbook_path: &str,
        host: &str,
        end: &RunEnd<'_>,
        why: &str,
    ) -> Summary {
        let result = RunResult::of(end.ending);
        let now = crate::clock::wall_ms();
        Summary {
            version: SUMMARY_VERSION,
            playbook: playbook.to_owned(),
            playbook_path: playbook_path.to_owned(),
            host: host.to_owned(),
            run_id: end.run_id.to_owned(),
            result,
            events: if result == RunResult::Succeeded {
                vec![NotifyOn::Success]
            } else {
                vec![NotifyOn::Failure]
            },
            message: Some(
                end.message
                    .map_or_else(|| why.to_owned(), |m| format!("{m} ({why})")),
            ),
            started_at: String::new(),
            finished_at: rfc3339(now),
            finished_unix: now as f64 / 1000.0,
            last_success_unix: (result == RunResult::Succeeded).then_some(now as f64 / 1000.0),
            duration_ms: 0,
            resumed: end.resumed,
            previous: None,
            steps: Vec::new(),
            failures: Vec::new(),
            warnings: Vec::new(),
            bytes_copied: None,
            snapshots: None,
            commands: next_commands(end.run_id, end.state, result == RunResult::Succeeded),
            ward_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// True if this run matches one of `on`.
    pub fn matches(&self, on: &[NotifyOn]) -> bool {
        self.events.iter().any(|e| on.contains(e))
    }

    /// The word for the subject line: what the reader must know first.
    pub fn headline(&self) -> &'static str {
        match self.result {
            RunResult::Succeeded if self.events.contains(&NotifyOn::Recovered) => "RECOVERED",
            RunResult::Succeeded if !self.warnings.is_empty() => "succeeded with warnings",
            RunResult::Succeeded => "succeeded",
            RunResult::Failed => "FAILED",
            RunResult::Interrupted => "INTERRUPTED",
            RunResult::StateLost => "FAILED (state not recorded)",
            RunResult::Skipped => "SKIPPED (a precondition was not met)",
            RunResult::Missed => "MISSED (a scheduled slot passed without a run)",
        }
    }

    /// The mail's subject.
    pub fn subject(&self) -> String {
        format!(
            "[ward] {} {} on {} (run {})",
            self.playbook,
            self.headline(),
            self.host,
            self.run_id
        )
    }

    /// The mail's body: plain text, most important first.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let line = |t: &mut String, s: String| {
            t.push_str(&s);
            t.push('\n');
        };
        line(
            &mut t,
            format!(
                "Playbook {} on {}: {}",
                self.playbook,
                self.host,
                self.headline()
            ),
        );
        let took = fmt_duration(Duration::from_millis(self.duration_ms));
        line(
            &mut t,
            format!(
                "Run {}{}, started {}, took {took}.",
                self.run_id,
                if self.resumed { " (resumed)" } else { "" },
                self.started_at_local()
            ),
        );
        if let Some(m) = &self.message {
            line(&mut t, format!("Why: {m}"));
        }
        if let Some(p) = &self.previous
            && self.events.contains(&NotifyOn::Recovered)
        {
            line(
                &mut t,
                format!("The previous run, {}, had {}.", p.run_id, p.state),
            );
        }
        t.push('\n');
        if let Some(resume) = &self.commands.resume {
            line(&mut t, "To continue once the cause is fixed:".into());
            line(&mut t, format!("    {resume}"));
        }
        line(&mut t, format!("Details: {}", self.commands.status));
        line(&mut t, format!("Playbook file: {}", self.playbook_path));
        if !self.steps.is_empty() {
            t.push_str("\nSteps:\n");
            let width = self.steps.iter().map(|s| s.id.len()).max().unwrap_or(4);
            for s in &self.steps {
                let duration = s
                    .duration_ms
                    .map(|d| fmt_duration(Duration::from_millis(d)))
                    .unwrap_or_else(|| "-".into());
                let mut row = format!(
                    "  {:<width$}  {:<11}  {:>9}",
                    s.id,
                    s.state.as_str(),
                    duration
                );
                if s.attempts > 1 {
                    row.push_str(&format!("  {} attempts", s.attempts));
                }
                if let Some(c) = s.exit_code
                    && c != 0
                {
                    row.push_str(&format!("  exit {c}"));
                }
                if let Some(r) = &s.reason
                    && s.exit_code.is_none_or(|c| *r != format!("exit code {c}"))
                {
                    row.push_str(&format!("  ({r})"));
                }
                line(&mut t, row);
            }
        }
        if !self.warnings.is_empty() {
            t.push_str("\nWarnings (the run still succeeded):\n");
            for w in &self.warnings {
                line(&mut t, format!("  {}: {}", w.step, w.message));
            }
        }
        for f in &self.failures {
            t.push('\n');
            line(
                &mut t,
                format!(
                    "Last {} lines of `{}`'s log{}:",
                    f.log_tail.len(),
                    f.step,
                    f.log
                        .as_deref()
                        .map(|l| format!(" ({l})"))
                        .unwrap_or_default()
                ),
            );
            for l in &f.log_tail {
                line(&mut t, format!("  | {l}"));
            }
        }
        if let Some(b) = self.bytes_copied {
            line(&mut t, format!("\nBytes copied: {b}"));
        }
        if let Some(n) = self.snapshots {
            line(&mut t, format!("Snapshots kept: {n}"));
        }
        line(&mut t, format!("\n-- ward {}", self.ward_version));
        t
    }

    fn started_at_local(&self) -> String {
        chrono::DateTime::parse_from_rfc3339(&self.started_at)
            .map(|t| local_time(t.timestamp_millis()))
            .unwrap_or_else(|_| "?".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AttemptOutcome;

    fn run(id: &str, state: RunState, started: i64) -> RunRecord {
        RunRecord {
            id: id.into(),
            playbook_name: "nightly".into(),
            playbook_path: "/etc/ward/nightly.yml".into(),
            playbook_hash: String::new(),
            playbook_text: String::new(),
            lock_name: "nightly".into(),
            vars: Ok(Default::default()),
            overrides: Ok(Default::default()),
            facts: Err(crate::state::Unreadable("unused".into())),
            state,
            host: "backup1".into(),
            pid: 1,
            ward_version: "0".into(),
            started_at: started,
            finished_at: Some(started + 5_000),
            resumes: 0,
            message: None,
            max_age_ms: None,
            preconditions: None,
            slot_at: None,
        }
    }

    fn step(id: &str, state: StepState) -> StepRecord {
        StepRecord {
            id: id.into(),
            position: 0,
            definition: String::new(),
            state,
            reason: None,
            attempts: 1,
            exit_code: Some(0),
            started_at: Some(1_000),
            finished_at: Some(3_000),
            log_path: None,
            compensation: false,
            unflushed: None,
        }
    }

    fn attempt(step: &str, message: Option<&str>, details: serde_json::Value) -> AttemptRecord {
        AttemptRecord {
            step_id: step.into(),
            attempt: 1,
            started_at: 1_000,
            finished_at: Some(2_500),
            exit_code: Some(0),
            signal: None,
            outcome: Some(AttemptOutcome::Succeeded),
            message: message.map(str::to_owned),
            log_path: "/nonexistent".into(),
            details: Some(details),
        }
    }

    fn end(ending: Ending, resumed: bool) -> RunEnd<'static> {
        RunEnd {
            run_id: "r3",
            ending,
            message: None,
            resumed,
            state: None,
        }
    }

    fn summary(previous: Option<RunState>, ending: Ending, resumed: bool) -> Summary {
        let this = run("r3", RunState::Succeeded, 30_000);
        let mut earlier = vec![this.clone()];
        if let Some(p) = previous {
            earlier.push(run("r2", p, 20_000));
        }
        earlier.push(run("r1", RunState::Succeeded, 10_000));
        from_records(&this, &[], &[], &earlier, &end(ending, resumed))
    }

    #[test]
    fn recovered_means_the_previous_finished_run_did_not_succeed() {
        use NotifyOn::*;
        let s = summary(Some(RunState::Failed), Ending::Succeeded, false);
        assert_eq!(s.events, vec![Success, Recovered]);
        assert_eq!(s.headline(), "RECOVERED");
        assert_eq!(s.previous.as_ref().map(|p| p.run_id.as_str()), Some("r2"));
        assert_eq!(
            summary(Some(RunState::Crashed), Ending::Succeeded, false).events,
            vec![Success, Recovered]
        );
        assert_eq!(
            summary(Some(RunState::Succeeded), Ending::Succeeded, false).events,
            vec![Success]
        );
        // A run still running elsewhere is not "finished": r1 counts.
        assert_eq!(
            summary(Some(RunState::Running), Ending::Succeeded, false).events,
            vec![Success]
        );
        // A resume that succeeds continued a run that had not.
        assert_eq!(
            summary(Some(RunState::Succeeded), Ending::Succeeded, true).events,
            vec![Success, Recovered]
        );
        let failed = summary(Some(RunState::Failed), Ending::Failed, false);
        assert_eq!(failed.events, vec![Failure]);
        assert!(failed.matches(crate::model::notify::DEFAULT_ON));
        assert!(!summary(None, Ending::Succeeded, false).matches(crate::model::notify::DEFAULT_ON));
        // The last success of a failed run is the newest earlier success.
        assert_eq!(failed.last_success_unix, Some(15.0));
        assert_eq!(failed.commands.resume.as_deref(), Some("ward resume r3"));
    }

    #[test]
    fn a_missed_slot_is_its_own_result_with_nothing_to_resume_and_the_next_success_recovers() {
        let mut missed = run("m1", RunState::Missed, 20_000);
        missed.slot_at = Some(20_000);
        let s = from_records(
            &missed,
            &[],
            &[],
            std::slice::from_ref(&missed),
            &end(Ending::Skipped, false),
        );
        assert_eq!(s.result, RunResult::Missed);
        assert_eq!(s.events, vec![NotifyOn::Missed]);
        assert_eq!(
            s.headline(),
            "MISSED (a scheduled slot passed without a run)"
        );
        assert!(s.matches(crate::model::notify::DEFAULT_ON));
        assert!(!s.matches(&[NotifyOn::Failure, NotifyOn::Skipped]));
        assert_eq!(s.commands.resume, None);
        assert!(s.steps.is_empty());
        // Metrics are not written for a missed run: no series for it.
        assert!(!RunResult::ALL.contains(&RunResult::Missed));
        // The run after a missed slot: its previous finished run did not succeed.
        let this = run("r3", RunState::Succeeded, 30_000);
        let after = from_records(
            &this,
            &[],
            &[],
            &[this.clone(), missed, run("r1", RunState::Succeeded, 10_000)],
            &end(Ending::Succeeded, false),
        );
        assert_eq!(after.events, vec![NotifyOn::Success, NotifyOn::Recovered]);
    }

    #[test]
    fn warnings_are_apart_from_failures_and_figures_are_added_up() {
        let this = run("r3", RunState::Succeeded, 30_000);
        let steps = vec![
            step("copy", StepState::Succeeded),
            step("copy-again", StepState::Succeeded),
            step("rotate", StepState::Succeeded),
        ];
        let attempts = vec![
            attempt(
                "copy",
                Some(
                    "3 files; warning: some source files vanished during the transfer (rsync exit 24)",
                ),
                serde_json::json!({ "transferred_size": 1000 }),
            ),
            attempt(
                "copy-again",
                None,
                serde_json::json!({ "transferred_size": 24 }),
            ),
            attempt(
                "rotate",
                Some("kept 2"),
                serde_json::json!({ "kept": ["a", "b"], "not_counted": ["c"] }),
            ),
        ];
        let s = from_records(
            &this,
            &steps,
            &attempts,
            &[],
            &end(Ending::Succeeded, false),
        );
        assert_eq!(s.result, RunResult::Succeeded);
        assert_eq!(s.events, vec![NotifyOn::Success]);
        assert!(s.failures.is_empty());
        assert_eq!(s.warnings.len(), 1);
        assert_eq!(s.warnings[0].step, "copy");
        assert_eq!(
            s.warnings[0].message,
            "some source files vanished during the transfer (rsync exit 24)"
        );
        assert_eq!(s.headline(), "succeeded with warnings");
        assert_eq!(s.bytes_copied, Some(1024));
        assert_eq!(s.snapshots, Some(3));
        assert_eq!(s.steps[0].duration_ms, Some(1_500));
        assert!(s.commands.resume.is_none());
        let text = s.text();
        assert!(
            text.contains(
                "Warnings (the run still succeeded):\n  copy: some source files vanished"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_warning_still_pings_success() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).expect("read");
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").expect("write");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let this = run("r3", RunState::Succeeded, 30_000);
        let steps = vec![step("copy", StepState::Succeeded)];
        let attempts = vec![attempt(
            "copy",
            Some("warning: files vanished"),
            serde_json::Value::Null,
        )];
        let s = from_records(
            &this,
            &steps,
            &attempts,
            &[],
            &end(Ending::Succeeded, false),
        );
        assert_eq!(s.warnings.len(), 1);
        let url = |p: &str| {
            Some(
                crate::model::notify::HttpUrl::parse(&format!("http://127.0.0.1:{port}/{p}"))
                    .expect("url"),
            )
        };
        let setup = crate::notify::Setup {
            notify: crate::model::Notify {
                ping: Some(crate::model::notify::Ping {
                    start: None,
                    success: url("ok"),
                    failure: url("fail"),
                    ca_file: None,
                    timeout: crate::model::notify::DEFAULT_PING_TIMEOUT,
                }),
                ..Default::default()
            },
            metrics: None,
            playbook_dir: std::env::temp_dir(),
            playbook: "nightly".into(),
            playbook_path: String::new(),
        };
        assert_eq!(crate::notify::deliver(&setup, &s), vec![]);
        let request = server.join().expect("server");
        assert!(request.starts_with("GET /ok HTTP/1.1\r\n"), "{request}");
    }
}
