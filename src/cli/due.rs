//! What `ward run` does for a scheduled playbook before the run starts:
//! `--if-due` (is the schedule's last slot still without a successful
//! run?), the `jitter:` wait, and the slots missed since the previous run
//! (recorded as `missed` runs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::diagnostic::Diagnostics;
use crate::error::WardError;
use crate::model::Playbook;
use crate::plan::Plan;
use crate::schedule::{Fire, Schedule};
use crate::state::{Lease, LeaseError, LeaseHolder, RunState, Store, UnrunRun};

/// The playbook's schedule in its zone (`None` without `schedule:`;
/// validation already refused a wrong one).
pub(super) fn schedule_of(playbook: &Playbook) -> Option<Schedule> {
    crate::validate::schedule::schedule(playbook, &mut Diagnostics::default())
}

/// Unix milliseconds of an instant.
pub(super) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn shown(f: &Fire) -> String {
    f.at.strftime("%Y-%m-%d %H:%M %Z").to_string()
}

fn shown_ms(at: i64) -> String {
    crate::report::local_time(at)
}

/// Whether `--if-due` runs the playbook now.
pub(super) enum Due {
    /// The slot of `slot` has no successful run yet.
    Yes,
    /// Not due; the line says why (printed only at a terminal).
    No(String),
}

/// The most recent runs `--if-due` looks through for one that covers the
/// slot (all started at or after it; a slot is never run that often).
const COVERING_RUNS: usize = 100;

/// `--if-due`: due when the schedule has fired at or before `now` and no
/// run of the playbook (by `name:`) that started at or after that fire
/// succeeded or is still running (on this host, its ward alive). A run
/// that started after the slot, even a late, jittered one, covers it; one
/// still running covers it too, so an hourly line does not pile up
/// `skipped` runs behind a long backup.
pub(super) async fn check(
    store: &dyn Store,
    name: &str,
    schedule: &Schedule,
    now: Timestamp,
) -> Result<Due, WardError> {
    let next = schedule
        .next_after(now)
        .map(|f| format!("; next slot {}", shown(&f)))
        .unwrap_or_default();
    let Some(slot) = schedule.last_at_or_before(now) else {
        return Ok(Due::No(format!(
            "not due: playbook `{name}`: its schedule `{}` has not fired yet{next}",
            schedule.expr().written()
        )));
    };
    let since = ms(slot.at.timestamp());
    let recent = store.runs(Some(name), COVERING_RUNS).await?;
    // Newest first: the runs that started at or after the slot.
    let after_slot = recent.iter().take_while(|r| r.started_at >= since);
    for r in after_slot {
        let word = match r.state {
            RunState::Succeeded => "succeeded",
            RunState::Running if !crate::report::recorded_running_but_gone(r) => "is still running",
            _ => continue,
        };
        return Ok(Due::No(format!(
            "not due: playbook `{name}`: run {} (started {}, after its slot of {}) {word}{next}",
            r.id,
            shown_ms(r.started_at),
            shown(&slot)
        )));
    }
    tracing::info!(
        "--if-due: due: no run since the slot of {} succeeded or is running",
        shown(&slot)
    );
    Ok(Due::Yes)
}

/// A delay drawn uniformly from `[0, most]`, in milliseconds.
pub(super) fn draw(most: Duration) -> Duration {
    let most = u64::try_from(most.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=most))
}

/// Waits `delay` (the jitter), or until SIGINT, SIGTERM, SIGHUP (unless
/// ignored, as under `nohup`) or SIGQUIT: then the exit code for that
/// signal. Nothing was recorded yet and nothing started, so nothing is.
/// `announce` runs once the signals are caught (so a signal sent on
/// seeing its line is never the default, fatal one).
pub(super) async fn wait(
    delay: Duration,
    announce: impl FnOnce(),
) -> Result<Option<i32>, WardError> {
    let mut signals = crate::execute::Signals::install().map_err(WardError::Runtime)?;
    announce();
    Ok(tokio::select! {
        () = tokio::time::sleep(delay) => None,
        received = signals.recv() => Some(super::signal_code(received)),
    })
}

/// The most slots one run start looks through (a year of a schedule that
/// fires every five minutes); older ones are left unrecorded, with a warning.
const MAX_SLOTS: usize = 110_000;

/// Records, as runs in state `missed`, every slot of the schedule that
/// passed without a run: the fires after the playbook's newest recorded
/// run (any state) up to `now`, but the newest, which belongs to the run
/// starting now (a run late for its slot is late, not missed). Each slot
/// is recorded once (the store keys it by playbook name and slot), so two
/// wards starting at once, or a later run, never record one twice.
/// Returns the ids of the runs recorded now, oldest first.
pub(super) async fn record_missed(
    store: &mut dyn Store,
    plan: &Plan,
    schedule: &Schedule,
    now: Timestamp,
) -> Result<Vec<String>, WardError> {
    let name = &plan.playbook.name.value;
    let Some(previous) = store.runs(Some(name), 1).await?.into_iter().next() else {
        // Never run: nothing was missed yet.
        return Ok(Vec::new());
    };
    let Ok(after) = Timestamp::from_millisecond(previous.started_at) else {
        return Ok(Vec::new());
    };
    let mut fires: Vec<Fire> = schedule
        .fires_between(after, now)
        .take(MAX_SLOTS + 1)
        .collect();
    if fires.len() > MAX_SLOTS {
        eprintln!(
            "warning: playbook `{name}`: more than {MAX_SLOTS} slots of `{}` passed since run {}; \
             the first {MAX_SLOTS} are recorded as missed",
            schedule.expr().written(),
            previous.id
        );
    } else {
        fires.pop();
    }
    let path = std::fs::canonicalize(plan.playbook.source.path())
        .unwrap_or_else(|_| plan.playbook.source.path().to_path_buf())
        .display()
        .to_string();
    let mut recorded = Vec::new();
    for fire in fires {
        let slot_at = ms(fire.at.timestamp());
        let run = UnrunRun {
            id: crate::session::run_id_at(fire.at.strftime("%Y%m%d-%H%M%S")),
            state: RunState::Missed,
            playbook_name: name.clone(),
            playbook_path: path.clone(),
            playbook_hash: plan.playbook.source.sha256(),
            playbook_text: plan.playbook.source.text().to_owned(),
            lock_name: plan.playbook.lock_name().to_owned(),
            host: store.host().hostname.clone(),
            pid: std::process::id(),
            ward_version: env!("CARGO_PKG_VERSION").to_owned(),
            at: slot_at,
            message: format!(
                "the slot of {} passed without a run (the run before it, {}, started {}): \
                 the machine was off or asleep, or its clock jumped",
                shown(&fire),
                previous.id,
                shown_ms(previous.started_at)
            ),
            slot_at: Some(slot_at),
            max_age_ms: plan
                .playbook
                .max_age
                .as_ref()
                .map(|d| i64::try_from(d.value.std().as_millis()).unwrap_or(i64::MAX)),
        };
        let id = run.id.clone();
        if store.record_unrun(run).await? {
            tracing::info!(
                "schedule: slot of {} passed without a run: recorded missed as {id}",
                shown(&fire)
            );
            recorded.push(id);
        }
    }
    Ok(recorded)
}

/// How often a waiting scheduled run tries the lock again.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// What waiting for the lock (`overlap: queue | latest`) came to.
pub(super) enum Waited {
    /// The lock, taken: the run starts.
    Got(Lease),
    /// A newer scheduled run is waiting (`latest`): this one gives way.
    Superseded,
    /// The schedule's next fire time came first: that slot's run takes over.
    TimedOut,
    /// A signal ended the wait (its exit code).
    Stopped(i32),
}

/// The file under the state's `locks/` naming the newest run waiting for
/// `lock` under `overlap: latest`.
fn ticket(store: &dyn Store, lock: &str) -> PathBuf {
    store.folder().join("locks").join(format!("{lock}.latest"))
}

/// Writes `run_id` into the ticket: a new private file (0600, created
/// exclusively, so never through a planted symlink) fsynced and renamed
/// over the old one, so a reader sees one whole id.
fn take_ticket(path: &Path, run_id: &str) -> Result<(), WardError> {
    crate::fs::write_atomic(path, run_id.as_bytes(), 0o600).map_err(|e| {
        WardError::State(crate::state::StateError::Backend {
            db: path.display().to_string(),
            detail: format!("cannot write the `overlap: latest` ticket: {e}"),
        })
    })
}

/// Waits for the run lock: tries it every 200 ms until it is free, the
/// schedule's next fire time after `now` comes (`deadline`, measured on the
/// monotonic clock), a signal arrives, or (`latest`) a newer run waits.
pub(super) async fn wait_for_lock(
    store: &dyn Store,
    lock: &str,
    holder: &LeaseHolder,
    deadline: Option<Duration>,
    latest: bool,
) -> Result<Waited, WardError> {
    let started = std::time::Instant::now();
    let path = ticket(store, lock);
    let mut signals = crate::execute::Signals::install().map_err(WardError::Runtime)?;
    let mut waiting = false;
    loop {
        let mine = || std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == holder.run_id);
        if waiting && latest && !mine() {
            return Ok(Waited::Superseded);
        }
        match store.acquire_lease(lock, holder).await {
            Ok(lease) => {
                if waiting && latest {
                    let _ = std::fs::remove_file(&path);
                }
                return Ok(Waited::Got(lease));
            }
            Err(LeaseError::Held { .. }) => {}
            Err(LeaseError::State(e)) => return Err(e.into()),
        }
        if !waiting && latest {
            take_ticket(&path, &holder.run_id)?;
        }
        waiting = true;
        if deadline.is_some_and(|d| started.elapsed() >= d) {
            return Ok(Waited::TimedOut);
        }
        tokio::select! {
            () = tokio::time::sleep(LOCK_POLL) => {}
            received = signals.recv() => return Ok(Waited::Stopped(super::signal_code(received))),
        }
    }
}

/// Records a scheduled run that did not start because of the previous
/// one (`overlap:`), as a run in state `skipped` with no steps.
pub(super) async fn record_overlap_skip(
    store: &mut dyn Store,
    plan: &Plan,
    run_id: &str,
    message: String,
) -> Result<(), WardError> {
    let run = UnrunRun {
        id: run_id.to_owned(),
        state: RunState::Skipped,
        playbook_name: plan.playbook.name.value.clone(),
        playbook_path: std::fs::canonicalize(plan.playbook.source.path())
            .unwrap_or_else(|_| plan.playbook.source.path().to_path_buf())
            .display()
            .to_string(),
        playbook_hash: plan.playbook.source.sha256(),
        playbook_text: plan.playbook.source.text().to_owned(),
        lock_name: plan.playbook.lock_name().to_owned(),
        host: store.host().hostname.clone(),
        pid: std::process::id(),
        ward_version: env!("CARGO_PKG_VERSION").to_owned(),
        at: Timestamp::now().as_millisecond(),
        message,
        slot_at: None,
        max_age_ms: None,
    };
    store.record_unrun(run).await?;
    Ok(())
}
