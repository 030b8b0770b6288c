//! `history:`: how long a playbook's runs and their logs are kept in the
//! state (docs/playbook.md, "History").

use schemars::JsonSchema;
use serde::Deserialize;

/// How long runs of the playbook, and their logs, are kept. A run is
/// removed only when it is older than `keep_days` AND not among the newest
/// `keep_runs` runs of the playbook; some runs are always kept (the last
/// success, the last failure, the newest unfinished run, any run still
/// running). Without `history:`, 90 days and 50 runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// Runs started within this many days are kept (default 90; 0: age
    /// alone keeps none).
    #[serde(default = "default_keep_days")]
    #[schemars(range(min = 0, max = 36500))]
    pub keep_days: u32,
    /// The newest this many runs of the playbook are kept, however old
    /// (default 50; 0: count alone keeps none).
    #[serde(default = "default_keep_runs")]
    #[schemars(range(min = 0, max = 1000000))]
    pub keep_runs: u32,
}

/// `keep_days` when not written.
pub const DEFAULT_KEEP_DAYS: u32 = 90;
/// `keep_runs` when not written.
pub const DEFAULT_KEEP_RUNS: u32 = 50;
/// The most `keep_days` (a hundred years: "forever").
pub const MAX_KEEP_DAYS: u32 = 36_500;
/// The most `keep_runs`.
pub const MAX_KEEP_RUNS: u32 = 1_000_000;

fn default_keep_days() -> u32 {
    DEFAULT_KEEP_DAYS
}

fn default_keep_runs() -> u32 {
    DEFAULT_KEEP_RUNS
}

impl Default for History {
    fn default() -> History {
        History {
            keep_days: DEFAULT_KEEP_DAYS,
            keep_runs: DEFAULT_KEEP_RUNS,
        }
    }
}

impl History {
    /// Checks the numbers the types let through: each problem with the
    /// key it is about.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.keep_days > MAX_KEEP_DAYS {
            out.push((
                "keep_days",
                format!(
                    "`keep_days` must be at most {MAX_KEEP_DAYS} (a hundred years), not {}",
                    self.keep_days
                ),
            ));
        }
        if self.keep_runs > MAX_KEEP_RUNS {
            out.push((
                "keep_runs",
                format!(
                    "`keep_runs` must be at most {MAX_KEEP_RUNS}, not {}",
                    self.keep_runs
                ),
            ));
        }
        out
    }
}
