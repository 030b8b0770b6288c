//! `rotate`: delete old snapshots by a retention policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::non_empty;
use super::snapshot_hardlink::{component_problem, default_latest};
use super::{Action, ParamProblem};
use crate::model::Duration;

/// Keeps snapshots by keep_last / daily / weekly / monthly / within; counts
/// only complete, verified snapshots, never deletes the `latest` target and
/// never leaves fewer than `min_keep`.
pub struct Rotate;

/// Parameters of `rotate`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateParams {
    /// The folder that holds the snapshots.
    pub dir: String,
    /// Keep the newest N snapshots.
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N days.
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks.
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months.
    pub keep_monthly: Option<u32>,
    /// Keep every snapshot younger than this.
    pub keep_within: Option<Duration>,
    /// Never leave fewer verified snapshots than this (default 1).
    #[serde(default = "one")]
    pub min_keep: u32,
    /// Name of the `latest` symlink, whose target is never deleted (default `latest`).
    #[serde(default = "default_latest")]
    pub latest: String,
}

fn one() -> u32 {
    1
}

impl Action for Rotate {
    const NAME: &'static str = "rotate";
    const SUMMARY: &'static str = "delete old snapshots by a retention policy";
    type Params = RotateParams;

    fn check(p: &RotateParams) -> Vec<ParamProblem> {
        let mut out: Vec<ParamProblem> = non_empty("dir", &p.dir)
            .into_iter()
            .chain(component_problem("latest", &p.latest))
            .collect();
        let any_rule = p.keep_last.is_some()
            || p.keep_daily.is_some()
            || p.keep_weekly.is_some()
            || p.keep_monthly.is_some()
            || p.keep_within.is_some();
        if !any_rule {
            out.push(
                ParamProblem::new("", "`rotate` needs at least one `keep_*` rule; without one it would keep only `min_keep` snapshots")
                    .help("e.g. `keep_daily: 7` and `keep_weekly: 4`"),
            );
        }
        if p.min_keep == 0 {
            out.push(ParamProblem::new(
                "min_keep",
                "`min_keep` must be at least 1; rotation never deletes the last good snapshot",
            ));
        }
        out
    }

    fn describe(p: &RotateParams) -> String {
        let mut rules = Vec::new();
        if let Some(n) = p.keep_last {
            rules.push(format!("last {n}"));
        }
        if let Some(n) = p.keep_daily {
            rules.push(format!("daily {n}"));
        }
        if let Some(n) = p.keep_weekly {
            rules.push(format!("weekly {n}"));
        }
        if let Some(n) = p.keep_monthly {
            rules.push(format!("monthly {n}"));
        }
        if let Some(d) = p.keep_within {
            rules.push(format!("within {d}"));
        }
        format!(
            "rotate {}: keep {}; at least {} verified; never the target of {}",
            p.dir,
            rules.join(", "),
            p.min_keep,
            p.latest
        )
    }
}
