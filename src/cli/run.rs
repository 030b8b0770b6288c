//! `ward run FILE` and `ward resume RUN_ID`

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use super::{OutputArgs, ResumeArgs, RunArgs};
use super::{due, vars};
use crate::error::{WardError, exit};
use crate::execute::confirm::ConfirmSetup;
use crate::execute::{ItemNotifier, Reporter};
use crate::model::Overlap;
use crate::notify;
use crate::report::{ProgressReporter, QuietReporter, Style, local_time};
use crate::session::{self, RunSettings, StateSession};
use crate::state::{Access, RunState};

fn reporter(output: &OutputArgs, state: Option<&Path>) -> (Box<dyn Reporter>, RunSettings) {
    let terminal = std::io::stdout().is_terminal();
    let progress = output.progress || (terminal && !output.quiet);
    if progress {
        let style = Style::stdout();
        let shown = ProgressReporter::new(std::io::stdout(), style).with_state(state);
        // At a terminal, live lines redrawn in place; else (no terminal,
        // or `TERM=dumb`) a plain line per running step now and then.
        let shown = match crate::report::live_stdout() {
            Some((width, height)) => shown.redrawing(width, height),
            None => shown.periodic(crate::report::plain_every()),
        };
        (
            Box::new(shown),
            RunSettings {
                echo_output: true,
                skip_preconditions: false,
                confirm: ConfirmSetup::new(false, Vec::new()),
                notes: Vec::new(),
                marker: None,
                item_notifier: None,
            },
        )
    } else {
        (
            Box::new(QuietReporter::new(std::io::stderr()).with_state(state)),
            RunSettings {
                echo_output: false,
                skip_preconditions: false,
                confirm: ConfirmSetup::new(false, Vec::new()),
                notes: Vec::new(),
                marker: None,
                item_notifier: None,
            },
        )
    }
}

/// How `ward run` ended before a run was started.
enum NotRun {
    /// `--if-due` found the playbook not due (exit 0).
    NotDue,
    /// A signal ended the jitter wait or the wait for the lock (its exit code).
    Stopped(i32),
    /// `overlap: queue | latest` gave up waiting for the lock (recorded
    /// `skipped`; exit 3 with this line).
    GaveWay(String),
}

/// True when the run shows progress (a terminal, or `--progress`).
fn shows_progress(output: &OutputArgs) -> bool {
    output.progress || (std::io::stdout().is_terminal() && !output.quiet)
}

/// How the closing line of an invalid playbook ends, for run and resume.
const NOTHING_RUN: &str = "; nothing was run";

pub(super) fn run(args: &RunArgs) -> Result<i32, WardError> {
    let mut overrides = vars::parse(&args.vars.vars)?;
    let report = super::report::ReportTarget::from_args(&args.report)?;
    let run_id = session::new_run_id();
    crate::restore::check_override_names(&args.overrides)?;
    let checked = crate::check_file(&args.file, &overrides, &run_id)?;
    let mut v = match super::checked::plan_or_exit(
        checked,
        &args.file.display().to_string(),
        NOTHING_RUN,
    ) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let mut guided = crate::restore::Guided::default();
    if v.restore.is_some() {
        let (chosen, set) = crate::restore::choose_snapshot(&v, args.snapshot.snapshot.as_deref())?;
        if let Some((var, path)) = set {
            // As a `--var`: recorded with the run, so a resume restores it too.
            overrides.retain(|(k, _)| *k != var);
            overrides.push((var, path));
            let checked = crate::check_file(&args.file, &overrides, &run_id)?;
            v = match super::checked::plan_or_exit(
                checked,
                &args.file.display().to_string(),
                NOTHING_RUN,
            ) {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
        }
        guided = session::block_on(crate::restore::guide(&v, &run_id, &chosen, &args.overrides))??;
        for (_, o) in guided.notes.iter().skip(1) {
            eprintln!("{}: {o}", Style::stderr().warning("override"));
        }
    } else if !args.overrides.is_empty() || args.snapshot.snapshot.is_some() {
        return Err(WardError::Usage(format!(
            "{}: --snapshot and --override are for playbooks with `restore:`, and playbook `{}` \
             has none",
            args.file.display(),
            v.playbook.name.value
        )));
    }
    let schedule = due::schedule_of(&v.playbook);
    if args.if_due && schedule.is_none() {
        return Err(WardError::Usage(format!(
            "{}: playbook `{}` has no `schedule:`, so --if-due cannot tell whether it is due; \
             add one such as `schedule: \"30 2 * * *\"` (docs/playbook.md, \"Schedule\"), or \
             run it without --if-due",
            args.file.display(),
            v.playbook.name.value
        )));
    }
    let now = super::next::now()?;
    let progress = shows_progress(&args.output);
    let jitter = v
        .playbook
        .jitter
        .as_ref()
        .map(|j| (j.value.std(), j.value.to_string()))
        .filter(|(j, _)| !args.no_jitter && !j.is_zero());
    let given = args.state.state.as_deref();
    let (mut reporter, mut settings) = reporter(&args.output, given);
    settings.skip_preconditions = args.skip_preconditions;
    settings.confirm = ConfirmSetup::new(args.confirm.yes, guided.context);
    settings.notes = guided.notes;
    settings.marker = guided.marker;
    session::check_confirmable(&v, &settings, |_| false)?;
    let setup = notify::Setup::of(&v.playbook);
    let notices = notify::item::ItemNotices::of(&v, &setup);
    settings.item_notifier = notices.clone().map(|n| n as Arc<dyn ItemNotifier>);
    let name = v.playbook.name.value.clone();
    let lock = v.playbook.lock_name().to_owned();
    let overlap = v.playbook.overlap;
    let outcome = session::block_on(async {
        let mut state = StateSession::open(given, Access::Create).await?;
        if let (true, Some(schedule)) = (args.if_due, &schedule)
            && let due::Due::No(line) =
                due::check(state.store.as_ref(), &name, schedule, now).await?
        {
            tracing::info!("--if-due: {line}");
            if progress {
                println!("{line}");
            }
            return Ok(Err(NotRun::NotDue));
        }
        if let Some((most, written)) = &jitter {
            let delay = due::draw(*most);
            let announce = || {
                if progress {
                    println!(
                        "waiting {} before starting (jitter: up to {written}); --no-jitter starts at once",
                        crate::report::fmt_duration(delay)
                    );
                }
            };
            if let Some(code) = due::wait(delay, announce).await? {
                return Ok(Err(NotRun::Stopped(code)));
            }
            // Another ward may have covered the slot while this one waited.
            if let (true, Some(schedule)) = (args.if_due, &schedule)
                && let due::Due::No(line) =
                    due::check(state.store.as_ref(), &name, schedule, now).await?
            {
                tracing::info!("--if-due, after the jitter: {line}");
                if progress {
                    println!("{line}");
                }
                return Ok(Err(NotRun::NotDue));
            }
        }
        if let Some(schedule) = &schedule {
            let missed = due::record_missed(state.store.as_mut(), &v, schedule, now).await?;
            notify_missed(&mut state, &setup, &missed, progress).await;
        }
        let mut lease = None;
        if let (true, Some(schedule)) = (args.if_due && overlap != Overlap::Skip, &schedule) {
            let holder = session::holder(&run_id, state.store.as_ref());
            // At most until the next slot: its own run takes over from there.
            let deadline = schedule.next_after(now).map(|f| {
                std::time::Duration::from_millis(
                    u64::try_from(due::ms(f.at.timestamp()) - due::ms(now)).unwrap_or(0),
                )
            });
            let latest = overlap == Overlap::Latest;
            let why = match due::wait_for_lock(
                state.store.as_ref(),
                &lock,
                &holder,
                deadline,
                latest,
            )
            .await?
            {
                due::Waited::Got(l) => {
                    lease = Some(l);
                    None
                }
                due::Waited::Stopped(code) => return Ok(Err(NotRun::Stopped(code))),
                due::Waited::Superseded => Some(format!(
                    "not run: a newer scheduled run of playbook `{name}` is waiting for the lock \
                     `{lock}` (overlap: latest); only the newest runs"
                )),
                due::Waited::TimedOut => Some(format!(
                    "not run: the previous run held the lock `{lock}` until the schedule's next \
                     slot (overlap: queue), whose run takes over"
                )),
            };
            if let Some(why) = why {
                due::record_overlap_skip(state.store.as_mut(), &v, &run_id, why.clone()).await?;
                if let Some(target) = &report {
                    super::report::write_after_run(state.store.as_ref(), &run_id, target).await;
                }
                return Ok(Err(NotRun::GaveWay(why)));
            }
        }
        let mut pinging = notify::PingStart::new(reporter.as_mut(), &setup);
        let started = session::start(
            &v,
            &run_id,
            &overrides,
            &mut state,
            &settings,
            &mut pinging,
            lease,
        )
        .await;
        let outcome = match started {
            Err(WardError::NotStarted { what, lease })
                if args.if_due && matches!(*lease, crate::state::LeaseError::Held { .. }) =>
            {
                // overlap: skip. The slot came while the previous run still
                // ran: recorded, so the night shows why it has no backup.
                let why = format!(
                    "not run: the previous run still holds the lock (overlap: skip): {lease}"
                );
                due::record_overlap_skip(state.store.as_mut(), &v, &run_id, why).await?;
                return Err(WardError::NotStarted { what, lease });
            }
            other => other?,
        };
        let mut undelivered: Vec<_> = pinging.finish().into_iter().collect();
        undelivered.extend(finish_notices(notices.as_deref()));
        after_run(&mut state, &setup, &run_id, &outcome, false, undelivered).await;
        if let Some(target) = &report {
            super::report::write_after_run(state.store.as_ref(), &run_id, target).await;
        }
        if outcome.ending != crate::execute::Ending::StateLost {
            super::prune::after_run(&mut state, &v.playbook, &run_id, progress).await;
        }
        Ok::<_, WardError>(Ok(outcome))
    })??;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(NotRun::NotDue) => return Ok(exit::OK),
        Err(NotRun::Stopped(code)) => {
            eprintln!(
                "{}: playbook `{name}` not run: a signal ended the wait before it; nothing was recorded",
                Style::stderr().error("stopped")
            );
            return Ok(code);
        }
        Err(NotRun::GaveWay(why)) => {
            eprintln!(
                "{}: run {run_id} of playbook `{name}` {why} (recorded `skipped`)",
                Style::stderr().error("skipped")
            );
            return Ok(exit::LOCKED);
        }
    };
    if outcome.ending == crate::execute::Ending::Skipped {
        // The failed checks were printed above; one line to end with.
        eprintln!(
            "{}: run {run_id} of playbook `{}`: a precondition was not met, no step was run \
             (details: ward status{} {run_id})",
            Style::stderr().error("skipped"),
            v.playbook.name.value,
            crate::report::state_flag(given)
        );
    }
    Ok(super::ending_code(outcome.ending))
}

/// Says (at a terminal) and notifies (`on: [missed]`) each missed slot
/// just recorded, once: a slot recorded by an earlier ward is not in
/// `missed`. No metrics: the run that follows writes them.
async fn notify_missed(
    state: &mut StateSession,
    setup: &notify::Setup,
    missed: &[String],
    progress: bool,
) {
    let quiet = notify::Setup {
        metrics: None,
        ..setup.clone()
    };
    let shown_state = notify::state_for_commands(state.given.as_deref());
    for id in missed {
        if progress && let Ok(Some(run)) = state.store.run(id).await {
            println!(
                "missed: {}; recorded as run {id}",
                run.message
                    .as_deref()
                    .unwrap_or("a slot passed without a run")
            );
        }
        let end = notify::RunEnd {
            run_id: id,
            ending: crate::execute::Ending::Skipped,
            message: None,
            resumed: false,
            state: shown_state.as_deref(),
        };
        notify::after_run(state.store.as_mut(), &quiet, &end, Vec::new()).await;
    }
}

/// Notifications and metrics once the run ended, however it ended; they
/// never change its result or exit code.
async fn after_run(
    state: &mut StateSession,
    setup: &notify::Setup,
    run_id: &str,
    outcome: &session::Outcome,
    resumed: bool,
    earlier: Vec<notify::Undelivered>,
) {
    let shown_state = notify::state_for_commands(state.given.as_deref());
    let end = notify::RunEnd {
        run_id,
        ending: outcome.ending,
        message: outcome.message.as_deref(),
        resumed,
        state: shown_state.as_deref(),
    };
    notify::after_run(state.store.as_mut(), setup, &end, earlier).await;
}

/// Waits (at most `notify::item::FINISH_WAIT`) for the `on_item:`
/// notifications still being sent once the run has ended; what was not sent.
fn finish_notices(notices: Option<&notify::item::ItemNotices>) -> Option<notify::Undelivered> {
    notices?.finish(notify::item::FINISH_WAIT)
}

/// Why resuming `run` did nothing. With `--last` the operator may have
/// meant a newer run that was killed before ward recorded it (so the
/// "last" one is an older, finished run): name the run that was found.
fn already_succeeded(run: &crate::state::RunRecord, last: bool) -> String {
    let finished = run
        .finished_at
        .map_or_else(|| "an unrecorded time".to_owned(), local_time);
    let which = if last {
        "the most recent run, "
    } else {
        "run "
    };
    let mut text = format!(
        "{which}{} of playbook {} ({}), already succeeded at {finished}; nothing was resumed",
        run.id, run.playbook_name, run.playbook_path
    );
    if last {
        text.push_str(
            ". A run killed before ward recorded it cannot be resumed: start it again with `ward run`",
        );
    }
    text
}

pub(super) fn resume(args: &ResumeArgs) -> Result<i32, WardError> {
    let report = super::report::ReportTarget::from_args(&args.report)?;
    session::block_on(resume_recorded(args, report))?
}

async fn resume_recorded(
    args: &ResumeArgs,
    report: Option<super::report::ReportTarget>,
) -> Result<i32, WardError> {
    let mut state = StateSession::open(args.state.state.as_deref(), Access::Write).await?;
    let run = super::inspect::find_run(&state, args.run_id.as_deref()).await?;
    tracing::info!(
        "resume: run {} of playbook `{}`, recorded {} ({})",
        run.id,
        run.playbook_name,
        run.state.as_str(),
        if args.run_id.is_some() {
            "as given"
        } else {
            "the most recent, --last"
        }
    );
    if run.lock_name.ends_with(crate::rehearse::LOCK_SUFFIX) {
        // Its sandbox is gone; resumed, its steps would not be fenced.
        return Err(WardError::Usage(format!(
            "run {} of playbook {} was a rehearsal (`ward rehearse`), whose sandbox was torn \
             down; it is not resumed: rehearse again with `ward rehearse {}`",
            run.id,
            run.playbook_name,
            crate::shell::quote(&run.playbook_path)
        )));
    }
    if run.state == RunState::Succeeded {
        println!("{}", already_succeeded(&run, args.run_id.is_none()));
        return Ok(exit::OK);
    }
    if run.state == RunState::Skipped {
        return Err(WardError::Usage(format!(
            "run {} of playbook {} was skipped: its preconditions were not met (`ward status {}` \
             says which), so no step ran and there is nothing to resume; start a new run with \
             `ward run {}`",
            run.id,
            run.playbook_name,
            run.id,
            crate::shell::quote(&run.playbook_path)
        )));
    }
    if run.state == RunState::Missed {
        return Err(WardError::Usage(format!(
            "run {} of playbook {} is a missed slot of its schedule: no step was meant to run \
             in it, so there is nothing to resume; start a new run with `ward run {}`",
            run.id,
            run.playbook_name,
            crate::shell::quote(&run.playbook_path)
        )));
    }
    // Same variables as the run: recorded overrides, secrets given again.
    let overrides = vars::for_resume(&run, &args.vars.vars)?;
    let facts = session::recorded_facts_of(&run)?;
    let path = std::path::PathBuf::from(&run.playbook_path);
    let checked = crate::check_file_with(&path, &overrides, facts)?;
    let v = match super::checked::plan_or_exit(checked, &run.playbook_path, NOTHING_RUN) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    // Compared even when the file is the same: secrets and other `--var`s
    // given again may differ from the run's.
    let records = state.store.steps(&run.id).await?;
    let changed = session::changed_steps(&v, &records, state.store.as_ref())?;
    tracing::info!(
        "resume: {} of {} steps differ from the fingerprints the run recorded{}",
        changed.len(),
        records.len(),
        if args.allow_changed {
            " (--allow-changed)"
        } else {
            ""
        }
    );
    if !changed.is_empty() && !args.allow_changed {
        return Err(WardError::PlaybookChanged(format!(
            "{} or its variables changed since run {} started: {}. Resuming would mix two versions; \
             start a new run, or pass --allow-changed if the change is intended",
            run.playbook_path,
            run.id,
            changed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if changed.is_empty() && v.playbook.source.sha256() != run.playbook_hash {
        eprintln!(
            "note: {} changed since the run started, but no step did",
            run.playbook_path
        );
    }
    let (mut reporter, mut settings) = reporter(&args.output, args.state.state.as_deref());
    let guided = crate::restore::resumed(&v, &run.id);
    settings.confirm = ConfirmSetup::new(args.confirm.yes, guided.context);
    settings.marker = guided.marker;
    // A step that succeeded, or had an attempt (so was confirmed), is not asked again.
    session::check_confirmable(&v, &settings, |i| {
        v.steps.get(i).is_some_and(|s| {
            records.iter().any(|r| {
                r.id == s.id && (r.state == crate::state::StepState::Succeeded || r.attempts > 0)
            })
        })
    })?;
    let setup = notify::Setup::of(&v.playbook);
    let notices = notify::item::ItemNotices::of(&v, &setup);
    settings.item_notifier = notices.clone().map(|n| n as Arc<dyn ItemNotifier>);
    let mut pinging = notify::PingStart::new(reporter.as_mut(), &setup);
    let outcome = session::resume(&v, &run, &mut state, &settings, &mut pinging).await?;
    let mut undelivered: Vec<_> = pinging.finish().into_iter().collect();
    undelivered.extend(finish_notices(notices.as_deref()));
    after_run(&mut state, &setup, &run.id, &outcome, true, undelivered).await;
    if let Some(target) = &report {
        super::report::write_after_run(state.store.as_ref(), &run.id, target).await;
    }
    let progress = shows_progress(&args.output);
    if outcome.ending != crate::execute::Ending::StateLost {
        super::prune::after_run(&mut state, &v.playbook, &run.id, progress).await;
    }
    Ok(super::ending_code(outcome.ending))
}
