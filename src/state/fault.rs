//! Fault injection for crash tests, as a wrapper around any store.
//!
//! `WARD_FAULT_KILL_AFTER_COMMITS=N` makes ward SIGKILL itself right after
//! its N-th durable state commit (a recorded run, or a non-empty batch of
//! changes), so tests can crash a run at exact points (between "step
//! recorded running" and "child started", after "succeeded" is durable,
//! ...) and check that `ward resume` does the right thing. Unset, the
//! store is not wrapped at all.

use std::path::Path;

use super::host::HostIdentity;
use super::lease::{LeaseFuture, LeaseHolder};
use super::records::{
    AttemptRecord, Change, ItemRecord, ItemState, NewRun, NewStep, RunRecord, StepRecord, UnrunRun,
};
use super::{EventRecord, RunFilter, Store, StoreFuture};

/// The environment variable that arms the fault.
pub const KILL_AFTER_COMMITS: &str = "WARD_FAULT_KILL_AFTER_COMMITS";

/// `store`, wrapped when the fault is armed.
pub fn wrap(store: Box<dyn Store>) -> Box<dyn Store> {
    match std::env::var(KILL_AFTER_COMMITS)
        .ok()
        .and_then(|n| n.trim().parse().ok())
    {
        Some(at) => Box::new(KillAfter {
            inner: store,
            commits: 0,
            at,
        }),
        None => store,
    }
}

/// Counts commits and kills the process right after the `at`-th.
struct KillAfter {
    inner: Box<dyn Store>,
    commits: u64,
    at: u64,
}

impl KillAfter {
    fn committed(commits: &mut u64, at: u64) {
        *commits += 1;
        if *commits == at {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        }
    }
}

impl Store for KillAfter {
    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn folder(&self) -> &Path {
        self.inner.folder()
    }

    fn host(&self) -> &HostIdentity {
        self.inner.host()
    }

    fn acquire_lease<'a>(&'a self, name: &'a str, holder: &'a LeaseHolder) -> LeaseFuture<'a> {
        self.inner.acquire_lease(name, holder)
    }

    fn lease_lost(&self) -> Option<super::StateError> {
        self.inner.lease_lost()
    }

    fn item_controls(
        &self,
        run_id: &str,
        after: i64,
    ) -> StoreFuture<'_, (i64, Vec<super::ItemControlled>)> {
        self.inner.item_controls(run_id, after)
    }

    fn create_run(&mut self, run: NewRun, steps: Vec<NewStep>) -> StoreFuture<'_, ()> {
        let at = self.at;
        let commits = &mut self.commits;
        let done = self.inner.create_run(run, steps);
        Box::pin(async move {
            done.await?;
            KillAfter::committed(commits, at);
            Ok(())
        })
    }

    fn record_unrun(&mut self, run: UnrunRun) -> StoreFuture<'_, bool> {
        let at = self.at;
        let commits = &mut self.commits;
        let done = self.inner.record_unrun(run);
        Box::pin(async move {
            let new = done.await?;
            KillAfter::committed(commits, at);
            Ok(new)
        })
    }

    fn apply(&mut self, run_id: &str, changes: Vec<Change>) -> StoreFuture<'_, ()> {
        let (at, empty) = (self.at, changes.is_empty());
        let commits = &mut self.commits;
        let done = self.inner.apply(run_id, changes);
        Box::pin(async move {
            done.await?;
            if !empty {
                KillAfter::committed(commits, at);
            }
            Ok(())
        })
    }

    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        self.inner.run(id)
    }

    fn runs(&self, playbook: Option<&str>, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        self.inner.runs(playbook, limit)
    }

    fn runs_matching(&self, filter: &RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        self.inner.runs_matching(filter)
    }

    fn steps(&self, run_id: &str) -> StoreFuture<'_, Vec<StepRecord>> {
        self.inner.steps(run_id)
    }

    fn attempts(&self, run_id: &str, step: Option<&str>) -> StoreFuture<'_, Vec<AttemptRecord>> {
        self.inner.attempts(run_id, step)
    }

    fn items(
        &self,
        run_id: &str,
        step: Option<&str>,
        state: Option<ItemState>,
    ) -> StoreFuture<'_, Vec<ItemRecord>> {
        self.inner.items(run_id, step, state)
    }

    fn events(&self, run_id: &str) -> StoreFuture<'_, Vec<EventRecord>> {
        self.inner.events(run_id)
    }

    fn running_with_lock(&self, lock: &str) -> StoreFuture<'_, Vec<RunRecord>> {
        self.inner.running_with_lock(lock)
    }

    fn last_succeeded(&self, playbook: &str) -> StoreFuture<'_, Option<RunRecord>> {
        self.inner.last_succeeded(playbook)
    }

    fn playbook_names(&self) -> StoreFuture<'_, Vec<String>> {
        self.inner.playbook_names()
    }

    // Not a commit of the run: pruning comes after its end.
    fn prune_runs(
        &mut self,
        request: &super::retention::PruneRequest,
    ) -> StoreFuture<'_, Vec<super::retention::PrunedRun>> {
        self.inner.prune_runs(request)
    }

    fn run_ids(&self) -> StoreFuture<'_, Vec<String>> {
        self.inner.run_ids()
    }

    fn lease_holders(&self) -> StoreFuture<'_, Vec<String>> {
        self.inner.lease_holders()
    }
}
