//! What `ward run` does for a scheduled playbook before the run starts:
//! `--if-due` (is the schedule's last slot still without a successful
//! run?), the `jitter:` wait, and the slots missed since the previous run
//! (recorded as `missed` runs).

use std::time::Duration;

use jiff::Timestamp;

use crate::diagnostic::Diagnostics;
use crate::error::WardError;
use crate::model::Playbook;
use crate::schedule::{Fire, Schedule};
use crate::state::Store;

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

/// `--if-due`: due when the schedule has fired at or before `now` and the
/// playbook's last successful run (by `name:`) started before that fire.
/// A run that started after the slot (even a late, jittered one) covers it.
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
    match store.last_succeeded(name).await? {
        Some(run) if run.started_at >= ms(slot.at.timestamp()) => Ok(Due::No(format!(
            "not due: playbook `{name}` last succeeded in run {} (started {}), after its slot of {}{next}",
            run.id,
            shown_ms(run.started_at),
            shown(&slot)
        ))),
        _ => Ok(Due::Yes),
    }
}

/// A delay drawn uniformly from `[0, most]`, in milliseconds.
pub(super) fn draw(most: Duration) -> Duration {
    let most = u64::try_from(most.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=most))
}

/// Waits `delay` (the jitter), or until SIGINT, SIGTERM, SIGHUP (unless
/// ignored, as under `nohup`) or SIGQUIT: then the exit code for that
/// signal. Nothing was recorded yet and nothing started, so nothing is.
pub(super) async fn wait(delay: Duration) -> Result<Option<i32>, WardError> {
    let mut signals = crate::execute::Signals::install().map_err(WardError::Runtime)?;
    Ok(tokio::select! {
        () = tokio::time::sleep(delay) => None,
        received = signals.recv() => Some(super::signal_code(received)),
    })
}
