//! What a run's preconditions found, as the state records it with the run
//! (`runs.preconditions_json`, schema version 3), and the run's `max_age`.

use serde::{Deserialize, Serialize};

/// The preconditions of one run: each check and what it found, or that
/// the operator skipped them (`--skip-preconditions`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreconditionsRecord {
    /// True when `--skip-preconditions` was given: nothing was checked.
    pub skipped_by_operator: bool,
    /// Each check, in the playbook's order.
    pub checks: Vec<CheckRecord>,
    /// The output of the `command` checks, if any printed something.
    pub log_path: Option<String>,
}

/// One precondition and what it found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The check in one line (`tcp db:5432`).
    pub check: String,
    /// True if it held.
    pub passed: bool,
    /// What was found (`12.5G free`, `connection refused`).
    pub detail: String,
}

impl PreconditionsRecord {
    /// The checks that did not hold.
    pub fn failed(&self) -> impl Iterator<Item = &CheckRecord> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// Why the run was skipped, naming each failed check; `None` if every
    /// check held (or none was made).
    pub fn skip_reason(&self) -> Option<String> {
        let failed: Vec<String> = self
            .failed()
            .map(|c| format!("{} ({})", c.check, c.detail))
            .collect();
        (!failed.is_empty()).then(|| {
            format!(
                "{} not met, no step was run: {}",
                if failed.len() == 1 {
                    "a precondition was"
                } else {
                    "preconditions were"
                },
                failed.join("; ")
            )
        })
    }
}
