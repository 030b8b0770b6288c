//! `rotate`: delete old snapshots by a retention policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, NaiveDateTime};

use super::params::non_empty;
use super::snapshot_hardlink::{
    component_problem, default_latest, remove_if_present, split_suffix,
};
use super::verify::marker_path;
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
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

    fn run(p: &RotateParams, ctx: &ActionCtx) -> ActionResult {
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
    remove_if_present(&super::snapshot_hardlink::base_marker(dir, name))
}

pub(super) fn facts_now(facts: &RunFacts) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(&facts.timestamp, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|_| chrono::Local::now().naive_local())
}

/// A snapshot found in the folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Folder name.
    pub name: String,
    /// When it was taken (from its name, else its folder's mtime).
    pub time: NaiveDateTime,
    /// It has a manifest (the snapshot completed).
    pub complete: bool,
    /// It has a verified marker.
    pub verified: bool,
    /// For incremental snapshots: the base it needs.
    pub base: Option<String>,
}

impl Snapshot {
    /// Orders snapshots from oldest to newest: by the time in the name (or
    /// the folder's), and `NAME.2` after `NAME` (a later run, same day).
    pub fn age_order(&self) -> (NaiveDateTime, (&str, u32)) {
        (self.time, split_suffix(&self.name))
    }
}

/// What is in a snapshot folder.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Snapshots, any order.
    pub snapshots: Vec<Snapshot>,
    /// The name `latest` points at, if any.
    pub latest_target: Option<String>,
    /// `.NAME.deleting` folders left by an interrupted rotation.
    pub deleting: Vec<String>,
}

/// Reads a snapshot name's date: `2026-11-23`, `2026-11-23T02:00:00`,
/// `2026-11-23_0200`...; a same-name suffix (`2026-11-23.2`) is not part of it.
fn time_from_name(name: &str) -> Option<NaiveDateTime> {
    let name = split_suffix(name).0;
    let date = NaiveDate::parse_from_str(name.get(..10)?, "%Y-%m-%d").ok()?;
    let rest = name.get(10..).unwrap_or("");
    let digits: String = rest.chars().filter(char::is_ascii_digit).take(6).collect();
    let (h, m, s) = match digits.len() {
        6 => (
            digits[0..2].parse().ok()?,
            digits[2..4].parse().ok()?,
            digits[4..6].parse().ok()?,
        ),
        4 => (digits[0..2].parse().ok()?, digits[2..4].parse().ok()?, 0),
        _ => (0, 0, 0),
    };
    date.and_hms_opt(h, m, s)
}

/// Lists `dir` (read-only); `latest` is the name of the link to protect.
pub fn list(dir: &Path, latest: &str) -> Result<Listing, ActionError> {
    let mut listing = Listing::default();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => {
            return Err(ActionError::new(format!(
                "cannot list {}: {e}",
                dir.display()
            )));
        }
    };
    // What cannot be read is an error, never left out: a `latest` link or a
    // base marker that is missed would let rotate delete what it protects.
    let unreadable = |path: &Path, e: std::io::Error| {
        ActionError::new(format!("cannot read {}: {e}", path.display()))
    };
    for item in read {
        let item = item.map_err(|e| unreadable(dir, e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let ft = item.file_type().map_err(|e| unreadable(&item.path(), e))?;
        if ft.is_symlink() {
            if name == latest {
                let target =
                    std::fs::read_link(item.path()).map_err(|e| unreadable(&item.path(), e))?;
                listing.latest_target =
                    target.file_name().map(|n| n.to_string_lossy().into_owned());
            }
            continue;
        }
        if !ft.is_dir() {
            continue;
        }
        if let Some(inner) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".deleting"))
        {
            let _ = inner;
            listing.deleting.push(name);
            continue;
        }
        if name.starts_with('.') || name.ends_with(".partial") {
            continue;
        }
        let path: PathBuf = item.path();
        // A time that cannot be read is not the epoch: that would make the
        // snapshot the oldest, the first to go.
        let time = match time_from_name(&name) {
            Some(t) => t,
            None => std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| chrono::DateTime::<chrono::Local>::from(t).naive_local())
                .map_err(|e| unreadable(&path, e))?,
        };
        let marker = super::snapshot_hardlink::base_marker(dir, &name);
        let base = match std::fs::read_to_string(&marker) {
            Ok(b) => Some(b.trim().to_owned()).filter(|b| !b.is_empty()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(unreadable(&marker, e)),
        };
        listing.snapshots.push(Snapshot {
            // Both only ever make a snapshot count less (an incomplete or
            // unverified snapshot is never deleted), so an unreadable
            // manifest or marker cannot cost a backup.
            complete: manifest::present(&path),
            verified: marker_path(&path).is_some_and(|m| m.is_file()),
            base,
            name,
            time,
        });
    }
    Ok(listing)
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
        assert!(err.0.contains(".2026-01-02.base"), "{err}");
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
