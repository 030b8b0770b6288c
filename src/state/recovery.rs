//! Every rule about crashes and resuming, in one place.
//!
//! 1. **One live run per lock.** A run holds its lock (a lease from the
//!    store: with SQLite an OS file lock) for its whole life. Whoever takes
//!    the lease and finds another run of that lock still recorded
//!    `running` knows that run's process is dead (its lease was freed: the
//!    kernel released the file lock): that run becomes `crashed` and its
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
//!
//! 7. **A held point dies with its ward.** A `pg.snapshot` step holds a
//!    consistent point of the databases (open transactions) in ward's
//!    process until the `pg.dump` that uses it has dumped it; no later
//!    process can use it. So when a resumed run has a `pg.snapshot` step
//!    recorded succeeded but a `pg.dump` of its point that must still run,
//!    the point is lost and is taken again in a window of its own: the
//!    snapshot step, every step it waits for (e.g. "stop the scheduler")
//!    and every recorded-succeeded step that follows from those (the
//!    copies of the window, its finalizer "start the scheduler", ...) run
//!    again, so that the point and the copies come from the same quiet
//!    moment again. Conversely, whenever a snapshot step runs again (also
//!    by rule 4 or 6), the dumps of its point run again with it: a dump of
//!    the old point would not match what the window copies again. The
//!    resume says so on stderr and in the run's events (`point-lost`).

use std::collections::{HashMap, HashSet};

use std::path::PathBuf;

use super::host::same_boot;
use super::records::{Change, NoteKind, StepRecord, StepState};
use super::{StateError, Store};

/// What the crash rules need to know of one planned step. Plain data, so
/// that state/ imports nothing above it: the plan computes it
/// (`plan::Plan::recovery_shape`).
#[derive(Clone, Debug)]
pub struct StepShape {
    /// The step id.
    pub id: String,
    /// True if the step only runs to compensate another (outside the DAG).
    pub compensation_only: bool,
    /// True for a `when: always`/`when: failure` step (rule 4).
    pub finalizer: bool,
    /// The steps it waits for (indexes), directly.
    pub waits_for: Vec<usize>,
    /// The steps that wait for it (indexes), directly.
    pub waited_by: Vec<usize>,
    /// Its part in a held consistent point (rule 7).
    pub point: PointRole,
}

/// A step's part in a consistent point that lives only as long as the ward
/// holding it (rule 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PointRole {
    /// None.
    None,
    /// It takes and holds a point (`pg.snapshot`).
    Holds,
    /// It dumps the point held by the step with this id (`pg.dump`).
    Dumps(String),
}

/// Rule 1: marks runs of `lock` still recorded `running` as crashed. Call
/// only while holding the lock's lease. Returns the ids of the runs it marked.
pub async fn reclaim_crashed(
    store: &mut dyn Store,
    lock: &str,
    found_by: &str,
    now: i64,
) -> Result<Vec<String>, StateError> {
    let mut marked = Vec::new();
    for run in store.running_with_lock(lock).await? {
        if run.id == found_by {
            continue;
        }
        let mut changes: Vec<Change> = store
            .steps(&run.id)
            .await?
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
        store.apply(&run.id, changes).await?;
        tracing::info!(
            "run {} recorded crashed: its ward (process {} on {}) is gone, its lock is free",
            run.id,
            run.pid,
            run.host
        );
        marked.push(run.id);
    }
    Ok(marked)
}

/// Where a resumed run starts.
#[derive(Debug)]
pub struct Resumption {
    /// Each step's starting state and its attempts so far, in plan order.
    pub initial: Vec<(StepState, u32)>,
    /// The changes that record the resets.
    pub changes: Vec<Change>,
    /// Kept steps whose output must be flushed before it is relied on
    /// (rule 6, same boot): step index and paths.
    pub flush_first: Vec<(usize, Vec<PathBuf>)>,
    /// Lines for the operator about what runs again and why (rule 7).
    pub notices: Vec<String>,
}

/// Rules 2-4, 6 and 7: where each step of the plan (`steps`) starts when
/// `records` are resumed (of a run that `crashed` or not) in the boot
/// `boot_id`.
pub fn resume_states(
    steps: &[StepShape],
    records: &[StepRecord],
    crashed: bool,
    boot_id: &str,
    now: i64,
) -> Resumption {
    let by_id: HashMap<&str, &StepRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let n = steps.len();
    let record = |i: usize| by_id.get(steps[i].id.as_str()).copied();
    let mut keep: Vec<bool> = (0..n)
        .map(|i| {
            !steps[i].compensation_only
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
        .filter(|&i| !steps[i].compensation_only && steps[i].finalizer)
        .filter(|&i| {
            crashed
                || record(i).is_some_and(|r| {
                    matches!(
                        r.state,
                        StepState::Succeeded | StepState::Failed | StepState::Interrupted
                    )
                })
        })
        .map(|f| (f, ancestors(steps, &[f])))
        .collect();
    // Rule 7: the pg.snapshot steps and the pg.dump steps that use their points.
    let points = held_points(steps);
    let mut lost: HashSet<usize> = HashSet::new();
    let mut notices = Vec::new();
    loop {
        let mut changed = false;
        for (point, dumps) in &points {
            let taken_before = record(*point).is_some_and(|r| r.state == StepState::Succeeded);
            if taken_before && !lost.contains(point) && dumps.iter().any(|&d| !keep[d]) {
                // The point died with the ward that held it: take it again,
                // in a window of its own (stop again, copy again).
                lost.insert(*point);
                let mut again: HashSet<usize> = ancestors(steps, &[*point]);
                again.insert(*point);
                let from: Vec<usize> = again.iter().copied().collect();
                again.extend(descendants(steps, &from));
                let mut rerun: Vec<usize> = again.into_iter().filter(|&i| keep[i]).collect();
                rerun.sort_unstable();
                let id = &steps[*point].id;
                for &i in &rerun {
                    keep[i] = false;
                    why.insert(
                        i,
                        format!(
                            "runs again: the consistent point of `{id}` was held by a ward \
                             that is gone"
                        ),
                    );
                }
                let names: Vec<&str> = rerun.iter().map(|&i| steps[i].id.as_str()).collect();
                notices.push(format!(
                    "the consistent point of `{id}` was held by a ward that is gone: the window \
                     is run again: {}",
                    names.join(", ")
                ));
                changed |= !rerun.is_empty();
            }
            if !keep[*point] {
                // A new point means a new dump: one kept from the old point
                // would not match what the window copies again.
                for &d in dumps {
                    if keep[d] {
                        keep[d] = false;
                        why.insert(
                            d,
                            format!(
                                "runs again: the point of `{}` is taken again",
                                steps[*point].id
                            ),
                        );
                        changed = true;
                    }
                }
            }
        }
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
                            steps[*f].id
                        )
                    } else {
                        format!(
                            "runs again: `{}` ran after the failure and may have undone it",
                            steps[*f].id
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

    let mut changes: Vec<Change> = notices
        .iter()
        .map(|n| Change::Note {
            kind: NoteKind::PointLost,
            message: n.clone(),
            at: now,
        })
        .collect();
    let flush_first = (0..n)
        .filter(|&i| keep[i])
        .filter_map(|i| {
            record(i)
                .and_then(|r| r.unflushed.as_ref())
                .map(|u| (i, u.paths.iter().map(PathBuf::from).collect()))
        })
        .inspect(|(i, _): &(usize, Vec<PathBuf>)| {
            tracing::debug!(
                "resume: step `{}` is kept; its unflushed output is flushed before it is relied on",
                steps[*i].id
            )
        })
        .collect();
    let initial = (0..n)
        .map(|i| {
            let attempts = record(i).map_or(0, |r| r.attempts);
            if keep[i] {
                tracing::info!(
                    "resume: step `{}` is not run again: recorded succeeded",
                    steps[i].id
                );
                return (StepState::Succeeded, attempts);
            }
            let was = record(i).map(|r| r.state);
            // Compensation steps run only if the resumed run fails again.
            if !steps[i].compensation_only {
                tracing::info!(
                    "resume: step `{}` will run: {}",
                    steps[i].id,
                    why.get(&i).map_or_else(
                        || format!("recorded {}", was.map_or("not started", StepState::as_str)),
                        |w| w.trim_start_matches("runs again: ").to_owned()
                    )
                );
            }
            if was.is_some_and(|s| s != StepState::Pending) {
                changes.push(Change::Step {
                    step: steps[i].id.clone(),
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
        notices,
    }
}

/// Each step holding a point with the steps that dump it.
fn held_points(steps: &[StepShape]) -> Vec<(usize, Vec<usize>)> {
    (0..steps.len())
        .filter(|&i| !steps[i].compensation_only && steps[i].point == PointRole::Holds)
        .map(|i| {
            let dumps = (0..steps.len())
                .filter(|&d| matches!(&steps[d].point, PointRole::Dumps(holder) if *holder == steps[i].id))
                .collect();
            (i, dumps)
        })
        .collect()
}

/// Every step that waits for one of `from`, directly or not.
fn descendants(steps: &[StepShape], from: &[usize]) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack: Vec<usize> = from.to_vec();
    while let Some(i) = stack.pop() {
        for &d in &steps[i].waited_by {
            if seen.insert(d) {
                stack.push(d);
            }
        }
    }
    seen
}

/// Every step that one of `from` waits for, directly or not.
fn ancestors(steps: &[StepShape], from: &[usize]) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut stack: Vec<usize> = from.to_vec();
    while let Some(i) = stack.pop() {
        for &d in &steps[i].waits_for {
            if seen.insert(d) {
                stack.push(d);
            }
        }
    }
    seen
}

/// How a run's steps differ from the plan (rule 5). Said in words by its
/// `Display` ("`copy` changed"); [`StepChange::step`] names the step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepChange {
    /// The plan has a step the run did not record.
    New(String),
    /// The step's definition differs from the recorded one.
    Changed(String),
    /// The run recorded a step the plan no longer has.
    Removed(String),
    /// The run's steps were recorded in a fingerprint version newer than
    /// this ward knows: no step can be compared.
    NewerWard {
        /// The recorded version.
        version: u32,
        /// The newest this ward knows.
        known: u32,
    },
}

impl StepChange {
    /// The step it is about; `None` when it is about all of them.
    pub fn step(&self) -> Option<&str> {
        match self {
            StepChange::New(id) | StepChange::Changed(id) | StepChange::Removed(id) => Some(id),
            StepChange::NewerWard { .. } => None,
        }
    }
}

impl std::fmt::Display for StepChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepChange::New(id) => write!(f, "`{id}` is new"),
            StepChange::Changed(id) => write!(f, "`{id}` changed"),
            StepChange::Removed(id) => write!(f, "`{id}` was removed"),
            StepChange::NewerWard { version, known } => write!(
                f,
                "its steps were recorded by a newer ward (step fingerprint version {version}; \
                 this ward knows up to {known})"
            ),
        }
    }
}

/// Rule 5: the steps whose definition differs between `planned` (the
/// plan's fingerprint, `(id, definition)` in the version the run recorded)
/// and `recorded`; empty if the run may be resumed as it is. A changed
/// secret counts (through its keyed fingerprint).
pub fn changed_steps(planned: &[(String, String)], recorded: &[StepRecord]) -> Vec<StepChange> {
    let by_id: HashMap<&str, &str> = recorded
        .iter()
        .map(|r| (r.id.as_str(), r.definition.as_str()))
        .collect();
    let mut out = Vec::new();
    for (id, definition) in planned {
        match by_id.get(id.as_str()) {
            None => out.push(StepChange::New(id.clone())),
            Some(def) if *def != definition => out.push(StepChange::Changed(id.clone())),
            Some(_) => tracing::debug!("resume: step `{id}` has the fingerprint the run recorded"),
        }
    }
    let now: HashSet<&str> = planned.iter().map(|(id, _)| id.as_str()).collect();
    for r in recorded {
        if !now.contains(r.id.as_str()) {
            out.push(StepChange::Removed(r.id.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service window with a held point: stop, point and copy inside it,
    /// start closing it (`when: always`), the dump of the point and a
    /// snapshot after it. As a playbook:
    ///
    /// ```yaml
    /// - { id: stop, run: "true" }
    /// - { id: point, needs: [stop], action: pg.snapshot }
    /// - { id: copy, needs: [stop], run: "true" }
    /// - { id: start, after: [stop, point, copy], when: always, run: "true" }
    /// - { id: dump, needs: [point], after: [start], action: pg.dump,
    ///     with: { dest: d.gz, snapshot: point } }
    /// - { id: snap, needs: [dump, copy], run: "true" }
    /// ```
    fn window() -> Vec<StepShape> {
        let steps: [(&str, &[usize], bool, PointRole); 6] = [
            ("stop", &[], false, PointRole::None),
            ("point", &[0], false, PointRole::Holds),
            ("copy", &[0], false, PointRole::None),
            ("start", &[0, 1, 2], true, PointRole::None),
            ("dump", &[1, 3], false, PointRole::Dumps("point".into())),
            ("snap", &[4, 2], false, PointRole::None),
        ];
        let mut shape: Vec<StepShape> = steps
            .iter()
            .map(|(id, waits_for, finalizer, point)| StepShape {
                id: (*id).to_owned(),
                compensation_only: false,
                finalizer: *finalizer,
                waits_for: waits_for.to_vec(),
                waited_by: Vec::new(),
                point: point.clone(),
            })
            .collect();
        for i in 0..shape.len() {
            for d in shape[i].waits_for.clone() {
                shape[d].waited_by.push(i);
            }
        }
        shape
    }

    fn records(states: &[(&str, StepState)], unflushed: &[&str]) -> Vec<StepRecord> {
        states
            .iter()
            .enumerate()
            .map(|(i, (id, state))| StepRecord {
                id: (*id).to_owned(),
                position: i,
                definition: format!("def of {id}"),
                state: *state,
                reason: None,
                attempts: 1,
                exit_code: None,
                started_at: None,
                finished_at: None,
                log_path: None,
                compensation: false,
                unflushed: unflushed.contains(id).then(|| super::super::Unflushed {
                    boot_id: "before".into(),
                    paths: vec!["/x".into()],
                }),
            })
            .collect()
    }

    fn pending(steps: &[StepShape], r: &Resumption) -> Vec<String> {
        steps
            .iter()
            .zip(&r.initial)
            .filter(|(_, (s, _))| *s == StepState::Pending)
            .map(|(step, _)| step.id.clone())
            .collect()
    }

    use StepState::{Failed, Skipped, Succeeded};

    #[test]
    fn a_point_lost_with_its_ward_reruns_its_window() {
        let v = window();
        let r = resume_states(
            &v,
            &records(
                &[
                    ("stop", Succeeded),
                    ("point", Succeeded),
                    ("copy", Succeeded),
                    ("start", Succeeded),
                    ("dump", Failed),
                    ("snap", Skipped),
                ],
                &[],
            ),
            false,
            "now",
            0,
        );
        assert_eq!(
            pending(&v, &r),
            ["stop", "point", "copy", "start", "dump", "snap"]
        );
        assert_eq!(
            r.notices,
            [
                "the consistent point of `point` was held by a ward that is gone: the window is \
              run again: stop, point, copy, start"
            ]
        );
    }

    #[test]
    fn a_dumped_point_is_not_taken_again() {
        let v = window();
        let r = resume_states(
            &v,
            &records(
                &[
                    ("stop", Succeeded),
                    ("point", Succeeded),
                    ("copy", Succeeded),
                    ("start", Succeeded),
                    ("dump", Succeeded),
                    ("snap", Failed),
                ],
                &[],
            ),
            false,
            "now",
            0,
        );
        assert_eq!(pending(&v, &r), ["snap"]);
        assert!(r.notices.is_empty());
    }

    #[test]
    fn a_point_taken_again_is_dumped_again() {
        // The copy was not flushed before a restart (rule 6): the window
        // runs again (rule 4), the point with it, so its dump too.
        let v = window();
        let r = resume_states(
            &v,
            &records(
                &[
                    ("stop", Succeeded),
                    ("point", Succeeded),
                    ("copy", Succeeded),
                    ("start", Succeeded),
                    ("dump", Succeeded),
                    ("snap", Failed),
                ],
                &["copy"],
            ),
            true,
            "after",
            0,
        );
        assert_eq!(
            pending(&v, &r),
            ["stop", "point", "copy", "start", "dump", "snap"]
        );
    }

    #[test]
    fn changed_new_and_removed_steps_are_named() {
        let recorded = records(&[("a", Succeeded), ("b", Failed), ("gone", Failed)], &[]);
        let planned: Vec<(String, String)> = [("a", "def of a"), ("b", "other"), ("c", "def of c")]
            .iter()
            .map(|(id, d)| ((*id).to_owned(), (*d).to_owned()))
            .collect();
        let changed: Vec<String> = changed_steps(&planned, &recorded)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(changed, ["`b` changed", "`c` is new", "`gone` was removed"]);
        assert!(changed_steps(&planned[..1], &recorded[..1]).is_empty());
    }
}
