//! Fault injection for crash tests.
//!
//! `WARD_FAULT_KILL_AFTER_COMMITS=N` makes ward SIGKILL itself right after
//! its N-th durable state commit, so tests can crash a run at exact points
//! (between "step recorded running" and "child started", after "succeeded"
//! is durable, ...) and check that `ward resume` does the right thing. It
//! is read once; unset, it costs one integer comparison per commit.

use std::sync::OnceLock;

/// The environment variable that arms the fault.
pub const KILL_AFTER_COMMITS: &str = "WARD_FAULT_KILL_AFTER_COMMITS";

fn armed() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| std::env::var(KILL_AFTER_COMMITS).ok()?.trim().parse().ok())
}

/// Called by the store after each commit.
pub fn after_commit(count: u64) {
    if armed() == Some(count) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
