//! `rotate`: delete old snapshots by a retention policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use chrono::{Datelike, NaiveDateTime};

use super::params::{component_problem, default_latest, facts_now, non_empty};
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
use crate::fs::snapshots::{Listing, Snapshot, base_marker, list, marker_path, remove_if_present};
use crate::fs::tree::remove_tree;
use crate::fs::{manifest, sync_dir};
use crate::model::Duration;
use crate::template::RunFacts;

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

    fn perform(p: &RotateParams, ctx: &ActionCtx) -> ActionResult {
        let dir = ctx.path(&p.dir);
        let now = facts_now(&ctx.facts);
        let listing = list(&dir, &p.latest)?;
        let plan = select(p, &listing, now);
        for note in &plan.notes {
            ctx.log(note);
        }
        let mut deleted = Vec::new();
        for name in &plan.delete {
            ctx.check()?;
            let path = dir.join(name);
            // Unmark first, then move aside: a crash mid-delete never
            // leaves something that looks like a complete, verified snapshot.
            if let Some(marker) = marker_path(&path) {
                remove_if_present(&marker)?;
            }
            let doomed = dir.join(format!(".{name}.deleting"));
            std::fs::rename(&path, &doomed).map_err(|e| {
                ActionError::new(format!(
                    "cannot move {} aside to {}: {e}",
                    path.display(),
                    doomed.display()
                ))
            })?;
            remove_side_files(&dir, name)?;
            sync_dir(&dir)?;
            ctx.log(format!("deleting {}", path.display()));
            remove_tree(&doomed, ctx.threads, ctx.cancel_flag())?;
            deleted.push(name.clone());
        }
        // Finish deletions a crash interrupted.
        for leftover in &listing.deleting {
            ctx.check()?;
            ctx.log(format!(
                "finishing the deletion of {}",
                dir.join(leftover).display()
            ));
            remove_tree(&dir.join(leftover), ctx.threads, ctx.cancel_flag())?;
            // The side files belong to the deleted snapshot only while no
            // new snapshot of that name exists.
            if let Some(name) = leftover
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".deleting"))
                && std::fs::symlink_metadata(dir.join(name)).is_err()
            {
                remove_side_files(&dir, name)?;
            }
        }
        sync_dir(&dir)?;
        let unverified = plan.not_counted.len();
        if unverified > 0 {
            ctx.log(format!(
                "not counted and kept: {}. rotate counts only snapshots a `verify` step has \
                 checked; these have not been verified (yet), so they are kept in addition to \
                 the {} verified ones. Run `verify` before `rotate` (snapshot -> verify -> rotate).",
                plan.not_counted.join(", "),
                plan.keep.len()
            ));
        }
        let mut summary = format!(
            "kept {} of {} verified snapshots, deleted {}",
            plan.keep.len(),
            plan.keep.len() + deleted.len(),
            deleted.len()
        );
        if unverified > 0 {
            summary.push_str(&format!(
                "; {unverified} unverified kept and not counted (verify runs before rotate?)"
            ));
        }
        Ok(ActionOutput {
            summary: Some(summary),
            details: serde_json::json!({ "kept": plan.keep, "deleted": deleted, "not_counted": plan.not_counted }),
            warning: (!plan.not_counted.is_empty()).then(|| {
                format!(
                    "not counted (incomplete or unverified, kept): {}",
                    plan.not_counted.join(", ")
                )
            }),
            ..ActionOutput::default()
        })
    }

    fn probe(p: &RotateParams, work_dir: &Path, facts: &RunFacts) -> Vec<String> {
        let dir = work_dir.join(&p.dir);
        match list(&dir, &p.latest) {
            Ok(listing) => {
                let plan = select(p, &listing, facts_now(facts));
                let mut lines: Vec<String> = plan
                    .delete
                    .iter()
                    .map(|n| format!("would delete {}", dir.join(n).display()))
                    .collect();
                lines.push(format!(
                    "would keep {} verified snapshot(s)",
                    plan.keep.len()
                ));
                lines.extend(
                    plan.not_counted
                        .iter()
                        .map(|n| format!("not counted (incomplete or unverified): {n}")),
                );
                lines
            }
            Err(e) => vec![format!("cannot list {}: {e}", dir.display())],
        }
    }

    fn inspect(p: &RotateParams, ctx: &super::inspect::ProbeCtx<'_>) -> Vec<super::inspect::Check> {
        use super::inspect::{self, Check, Verdict};
        let dir = ctx.path(&p.dir);
        let mut out = vec![inspect::writable_folder("dir", &dir, ctx)];
        if out[0].verdict != Verdict::Pass || !dir.is_dir() {
            return out;
        }
        let lines = Self::probe(p, ctx.work_dir, ctx.facts);
        let deleting = lines
            .iter()
            .filter(|l| l.starts_with("would delete"))
            .count();
        let mut detail = lines.join("; ");
        if ctx.made_by(&dir).is_some() {
            detail = format!("as the folder is now (an earlier step adds to it): {detail}");
        }
        out.push(Check::new(
            "rotation",
            if deleting > 0 {
                Verdict::Warn
            } else {
                Verdict::Pass
            },
            detail,
        ));
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

/// Removes the files next to snapshot `name` that belong to it: its
/// manifest and its base marker.
fn remove_side_files(dir: &Path, name: &str) -> Result<(), ActionError> {
    let set = dir.join(name);
    if let Some(m) = manifest::outside_path(&set) {
        remove_if_present(&m)?;
    }
    Ok(remove_if_present(&base_marker(dir, name))?)
}

/// The outcome of a retention policy over a listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// Verified snapshots kept, newest first.
    pub keep: Vec<String>,
    /// Verified snapshots to delete, oldest first.
    pub delete: Vec<String>,
    /// Incomplete or unverified snapshots, never counted, never deleted.
    pub not_counted: Vec<String>,
    /// Why, for the log.
    pub notes: Vec<String>,
}

/// Applies the policy: only complete, verified snapshots count; the
/// `latest` target is always kept; at least `min_keep` remain.
pub fn select(p: &RotateParams, listing: &Listing, now: NaiveDateTime) -> Selection {
    let mut counted: Vec<&Snapshot> = listing
        .snapshots
        .iter()
        .filter(|s| s.complete && s.verified)
        .collect();
    // Newest first.
    counted.sort_by(|a, b| b.age_order().cmp(&a.age_order()));
    let mut not_counted: Vec<String> = listing
        .snapshots
        .iter()
        .filter(|s| !(s.complete && s.verified))
        .map(|s| s.name.clone())
        .collect();
    not_counted.sort();
    let mut keep: HashSet<&str> = HashSet::new();
    let mut notes = Vec::new();
    if let Some(n) = p.keep_last {
        keep.extend(counted.iter().take(n as usize).map(|s| s.name.as_str()));
    }
    let mut by_bucket = |n: Option<u32>, bucket: &dyn Fn(&NaiveDateTime) -> (i32, u32)| {
        let Some(n) = n else { return };
        let mut seen = BTreeSet::new();
        for s in &counted {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(bucket(&s.time)) {
                keep.insert(s.name.as_str());
            }
        }
    };
    by_bucket(p.keep_daily, &|t| (t.year(), t.ordinal()));
    by_bucket(p.keep_weekly, &|t| {
        (t.iso_week().year(), t.iso_week().week())
    });
    by_bucket(p.keep_monthly, &|t| (t.year(), t.month()));
    if let Some(within) = p.keep_within {
        let limit = chrono::Duration::from_std(within.std()).unwrap_or(chrono::Duration::MAX);
        keep.extend(
            counted
                .iter()
                .filter(|s| now.signed_duration_since(s.time) < limit)
                .map(|s| s.name.as_str()),
        );
    }
    if let Some(target) = &listing.latest_target
        && counted.iter().any(|s| &s.name == target)
        && keep.insert(target.as_str())
    {
        notes.push(format!("keeping {target}: `{}` points at it", p.latest));
    }
    for s in &counted {
        if keep.len() >= p.min_keep as usize {
            break;
        }
        if keep.insert(s.name.as_str()) {
            notes.push(format!("keeping {}: min_keep is {}", s.name, p.min_keep));
        }
    }
    // An incremental snapshot is only whole with its base.
    let needed: Vec<(&str, &str)> = listing
        .snapshots
        .iter()
        .filter(|s| keep.contains(s.name.as_str()) || !(s.complete && s.verified))
        .filter_map(|s| s.base.as_deref().map(|b| (s.name.as_str(), b)))
        .collect();
    for (incremental, base) in needed {
        if counted.iter().any(|s| s.name == base) && keep.insert(base) {
            notes.push(format!(
                "keeping {base}: incremental snapshot {incremental} needs it"
            ));
        }
    }
    let kept: Vec<String> = counted
        .iter()
        .filter(|s| keep.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    let delete: Vec<String> = counted
        .iter()
        .rev()
        .filter(|s| !keep.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    Selection {
        keep: kept,
        delete,
        not_counted,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::snapshots::time_from_name;
    use chrono::NaiveDate;

    fn params() -> RotateParams {
        RotateParams {
            dir: "x".into(),
            keep_last: None,
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(6),
            keep_within: None,
            min_keep: 3,
            latest: "latest".into(),
        }
    }

    fn snap(day: NaiveDate, verified: bool) -> Snapshot {
        Snapshot {
            name: day.format("%Y-%m-%d").to_string(),
            time: day.and_hms_opt(2, 0, 0).expect("time"),
            complete: true,
            verified,
            base: None,
        }
    }

    #[test]
    fn four_hundred_days_with_failures_never_drop_below_min_keep() {
        let p = params();
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).expect("date");
        let mut listing = Listing::default();
        for day in 0..400u64 {
            let date = start + chrono::Days::new(day);
            // Every 5th night the backup fails verification; every 11th it never completes.
            let verified = day % 5 != 0;
            let complete = day % 11 != 0;
            let mut s = snap(date, verified);
            s.complete = complete;
            listing.snapshots.push(s.clone());
            if complete && verified {
                listing.latest_target = Some(s.name.clone());
            }
            let sel = select(&p, &listing, date.and_hms_opt(3, 0, 0).expect("t"));
            let counted = listing
                .snapshots
                .iter()
                .filter(|s| s.complete && s.verified)
                .count();
            assert!(
                sel.keep.len() >= counted.min(3),
                "day {day}: kept {}",
                sel.keep.len()
            );
            if let Some(t) = &listing.latest_target {
                assert!(!sel.delete.contains(t), "day {day}: would delete latest");
            }
            for d in &sel.delete {
                let s = listing
                    .snapshots
                    .iter()
                    .find(|s| &s.name == d)
                    .expect("known");
                assert!(
                    s.complete && s.verified,
                    "only verified snapshots are deleted"
                );
            }
            let doomed: HashSet<String> = sel.delete.iter().cloned().collect();
            listing.snapshots.retain(|s| !doomed.contains(&s.name));
        }
        let left: Vec<&Snapshot> = listing
            .snapshots
            .iter()
            .filter(|s| s.complete && s.verified)
            .collect();
        // 7 daily + up to 4 weekly + up to 6 monthly, overlapping.
        assert!(left.len() >= 7 && left.len() <= 17, "{}", left.len());
        // Unverified or incomplete snapshots are never deleted.
        assert_eq!(
            listing
                .snapshots
                .iter()
                .filter(|s| !s.verified || !s.complete)
                .count(),
            80 + 37 - 8
        );
    }

    #[test]
    fn a_base_marker_that_cannot_be_read_is_an_error() {
        // Read as "no base", rotate could delete the base an incremental
        // snapshot needs.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("2026-01-02")).expect("snapshot");
        std::fs::create_dir(dir.path().join(".2026-01-02.base")).expect("a folder, not a file");
        let err = list(dir.path(), "latest").expect_err("must not list");
        assert!(err.to_string().contains(".2026-01-02.base"), "{err}");
    }

    #[test]
    fn keeps_latest_target_even_when_old() {
        let mut p = params();
        p.keep_daily = Some(1);
        p.keep_weekly = None;
        p.keep_monthly = None;
        p.min_keep = 1;
        let d = |n| NaiveDate::from_ymd_opt(2026, 1, n).expect("date");
        let listing = Listing {
            snapshots: vec![snap(d(1), true), snap(d(2), true), snap(d(3), true)],
            latest_target: Some("2026-01-01".into()),
            deleting: vec![],
        };
        let sel = select(&p, &listing, d(3).and_hms_opt(5, 0, 0).expect("t"));
        assert_eq!(sel.keep, ["2026-01-03", "2026-01-01"]);
        assert_eq!(sel.delete, ["2026-01-02"]);
    }

    #[test]
    fn names_give_times() {
        assert_eq!(time_from_name("2026-11-23").map(|t| t.hour()), Some(0));
        assert_eq!(
            time_from_name("2026-11-23T02:30:00").map(|t| t.minute()),
            Some(30)
        );
        assert!(time_from_name("weekly").is_none());
    }

    use chrono::Timelike;
}
