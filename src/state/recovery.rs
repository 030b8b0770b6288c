//! Every rule about crashes and resuming, in one place.
//!
//! 1. **One live run per lock.** A run holds its lock (an OS file lock) for
//!    its whole life. Whoever takes the lock and finds another run of that
//!    lock still recorded `running` knows that run's process is dead (the
//!    kernel released its lock): that run becomes `crashed` and its
//!    `running` steps `interrupted`. A crashed run can be resumed.
//!
//! 2. **A step is `succeeded` only after it finished** (and, with
//!    `creates:`, after that path was fsynced). The record is committed in
//!    the same scheduler turn in which its dependents are spawned, right
//!    after spawning them, so the fsync overlaps their start-up; if ward
//!    dies in between, the step is simply not recorded and runs again.
//!    `resume` never runs a step recorded succeeded again, except under
//!    rule 4.
//!
//! 3. **Anything else runs again on resume**: failed, skipped, interrupted,
//!    compensated (its effect was undone), never started, and `running`
//!    (the process died mid-step, so the step may have half-happened).
//!    Steps must therefore be safe to repeat; `creates:` lets a step say
//!    "already done".
//!
//! 4. **Finalizers reopen their window.** A `when: always`/`when: failure`
//!    step (e.g. "start the scheduler") closes a window opened by the steps
//!    it waits for (e.g. "stop the scheduler", "dump", "copy"). If it ran
//!    after a failure, it may have undone what the window set up; if ward
//!    died, a reboot may have done the same (services start at boot). So
//!    when any step of such a window must run again, the whole window runs
//!    again (stop, then dump *and* copy, so that both come from the same
//!    quiet moment), and the finalizer closes it again. Work after a closed
//!    window (e.g. a snapshot of the copy) does not reopen it. A finalizer
//!    recorded `interrupted` (ward abandoned it mid-way on a third signal
//!    or SIGQUIT) may have half-run, so it reopens its window too; one left
//!    `pending` (abandoned before it started) did not touch the window:
//!    the resume runs what is left of the window, then the finalizer.
//!
//! 5. **Same inputs.** A resume uses the run's recorded variables and
//!    `ward.*` facts (date, run id), so a snapshot started on Monday is
//!    still Monday's after midnight. If the playbook file changed, resume
//!    refuses (exit 2) and lists the changed steps, unless told
//!    `--allow-changed`.
//!
//! 6. **Durable before trusted.** Some actions (a local `rsync`) succeed
//!    as soon as their output is complete in the page cache; the executor
//!    then flushes it to disk in the background, so that the scheduler can
//!    restart without waiting for the disk, and records the flush when it
//!    is done. A run waits for its flushes before it ends. A step recorded
//!    succeeded whose flush was not recorded is trusted on resume only in
//!    the same boot of the machine (ward died, the kernel still holds the
//!    data, and the resume flushes it first); after a restart of the
//!    machine its output may be lost, so it runs again (and, by rule 4,
//!    its whole window with it).

use std::collections::{HashMap, HashSet};

use std::path::PathBuf;

use super::boot::same_boot;
use super::records::{Change, StepRecord, StepState};
use super::{StateError, Store};
use crate::model::When;
use crate::validate::Validated;

/// Rule 1: marks runs of `lock` still recorded `running` as crashed. Call
/// only while holding the lock. Returns the ids of the runs it marked.
pub fn reclaim_crashed(
    store: &mut dyn Store,
    lock: &str,
    found_by: &str,
    now: i64,
) -> Result<Vec<String>, StateError> {
    let mut marked = Vec::new();
    for run in store.running_with_lock(lock)? {
        if run.id == found_by {
            continue;
        }
        let mut changes: Vec<Change> = store
            .steps(&run.id)?
            .into_iter()
            .filter(|s| s.state == StepState::Running)
            .map(|s| Change::Step {
                step: s.id,
                state: StepState::Interrupted,
                reason: Some("ward's process died while this step ran".into()),
                at: now,
            })
            .collect();
        changes.push(Change::Run {
            state: super::RunState::Crashed,
            message: Some(format!(
                "process {} on {} ended without recording an end (found by run {found_by})",
                run.pid, run.host
            )),
            at: now,
        });
        store.apply(&run.id, &changes)?;
        marked.push(run.id);
    }
    Ok(marked)
}

/// Where a resumed run starts.
#[derive(Debug)]
pub struct Resumption {
    /// Each step's starting state and its attempts so far, in `v.steps` order.
    pub initial: Vec<(StepState, u32)>,
    /// The changes that record the resets.
    pub changes: Vec<Change>,
    /// Kept steps whose output must be flushed before it is relied on
    /// (rule 6, same boot): step index and paths.
    pub flush_first: Vec<(usize, Vec<PathBuf>)>,
}

/// Rules 2-4 and 6: where each step starts when `records` are resumed (of
/// a run that `crashed` or not) in the boot `boot_id`.
pub fn resume_states(
    v: &Validated,
    records: &[StepRecord],
    crashed: bool,
    boot_id: &str,
    now: i64,
) -> Resumption {
    let by_id: HashMap<&str, &StepRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let n = v.steps.len();
    let record = |i: usize| by_id.get(v.steps[i].id.as_str()).copied();
    let mut keep: Vec<bool> = (0..n)
        .map(|i| {
            !v.steps[i].compensation_only
                && record(i).is_some_and(|r| r.state == StepState::Succeeded)
        })
        .collect();
    let mut why: HashMap<usize, String> = HashMap::new();

    // Rule 6: output that never reached the disk before a restart is gone.
    for (i, kept) in keep.iter_mut().enumerate() {
        if let Some(u) = record(i).and_then(|r| r.unflushed.as_ref())
            && *kept
            && !same_boot(&u.boot_id, boot_id)
        {
            *kept = false;
            why.insert(
                i,
                "runs again: the machine restarted before its output was flushed to disk"
                    .to_owned(),
            );
        }
    }

    // Rule 4: a finalizer that ran (or, after a crash, may have run: a reboot
    // restarts services too) reopens its window when any step of the window
    // must run again; then the whole window runs again, and so does it.
    let finalizers: Vec<(usize, HashSet<usize>)> = (0..n)
        .filter(|&i| !v.steps[i].compensation_only && v.steps[i].when != When::Success)
        .filter(|&i| {
            crashed
                || record(i).is_some_and(|r| {
                    matches!(
                        r.state,
                        StepState::Succeeded | StepState::Failed | StepState::Interrupted
                    )
                })
        })
        .map(|f| (f, ancestors(v, &[f])))
        .collect();
    loop {
        let mut changed = false;
        for (f, window) in &finalizers {
            if !window.iter().any(|&w| !keep[w]) {
                continue;
            }
            for &w in window.iter().chain(std::iter::once(f)) {
                if keep[w] {
                    keep[w] = false;
                    let reason = if w == *f {
                        "runs again: steps it waits for run again".to_owned()
                    } else if crashed {
                        format!(
                            "runs again: ward died inside the window that `{}` closes",
                            v.steps[*f].id
                        )
                    } else {
                        format!(
                            "runs again: `{}` ran after the failure and may have undone it",
                            v.steps[*f].id
                        )
                    };
                    why.insert(w, reason);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }

    let mut changes = Vec::new();
    let flush_first = (0..n)
        .filter(|&i| keep[i])
        .filter_map(|i| {
            record(i)
                .and_then(|r| r.unflushed.as_ref())
                .map(|u| (i, u.paths.iter().map(PathBuf::from).collect()))
        })
        .collect();
    let initial = (0..n)
        .map(|i| {
            let attempts = record(i).map_or(0, |r| r.attempts);
            if keep[i] {
                return (StepState::Succeeded, attempts);
            }
            let was = record(i).map(|r| r.state);
            if was.is_some_and(|s| s != StepState::Pending) {
                changes.push(Change::Step {
                    step: v.steps[i].id.clone(),
                    state: StepState::Pending,
                    reason: why.remove(&i),
                    at: now,
                });
            }
            (StepState::Pending, attempts)
        })
        .collect();
    Resumption {
        initial,
        changes,
        flush_first,
    }
}

/// Every step that one of `from` waits for, directly or not.
fn ancestors(v: &Validated, from: &[usize]) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack: Vec<usize> = from.to_vec();
    while let Some(i) = stack.pop() {
        for (d, _) in v.graph.dependencies(i) {
            if seen.insert(d) {
                stack.push(d);
            }
        }
    }
    seen
}
