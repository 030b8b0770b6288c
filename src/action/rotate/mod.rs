//! `rotate`: delete old snapshots by a retention policy, and say for each
//! snapshot why it is kept or deleted ([`decide`]) and what deleting it
//! frees ([`explain`], with [`crate::fs::unique`]; a run counts it while
//! deleting, with [`crate::fs::tree::remove_tree_counted`]), and record for
//! the next snapshot which files its unlinks left unchanged ([`unlinks`]).

mod decide;
mod explain;
mod unlinks;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::folder_lock::lock_folder;
use super::params::{component_problem, default_latest, facts_now, non_empty};
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
use crate::fs::snapshots::{base_marker, list, marker_path, remove_if_present};
use crate::fs::tree::{Freed, remove_tree, remove_tree_counted, remove_tree_observed};
use crate::fs::{manifest, sync_dir};
use crate::model::Duration;
use crate::report::fmt_bytes;
use crate::template::RunFacts;
use decide::{Decision, Selection, select};
use explain::Unique;

/// `ward plan` counts unique bytes only while the snapshots together hold
/// at most this many entries: a plan is read at once and often, and
/// reading 20,000 entries takes a few tens of milliseconds on a local
/// disk, while a repository of millions of files would take minutes.
/// `ward probe` counts them all.
const PLAN_BUDGET: u64 = 20_000;

/// A run counts what deleting a snapshot frees only up to this many
/// entries: the count keeps each file with more than one name in memory
/// (measured: about 80 bytes each), so a snapshot of this size costs up to
/// about 160 MB; past it, the deletion goes on without the figure.
const RUN_BUDGET: u64 = 2_000_000;

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
    /// Count what deleting each snapshot frees (its unique bytes) while
    /// deleting it, for the log and the details (default true).
    /// Costs memory for their multiply-linked files (the deletion reads
    /// each file's metadata anyway); `false` for very large trees.
    #[serde(default = "yes")]
    pub count_freed: bool,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
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
        // Listed under the folder's lock, and held to the end: a snapshot
        // being made there is finished first (its base is never deleted
        // under it), and a second rotation waits instead of deleting the
        // same snapshots. A missing folder gets `list`'s own error.
        let _folder_lock = if dir.is_dir() {
            Some(lock_folder(&dir, ctx, "rotating it")?)
        } else {
            None
        };
        let listing = list(&dir, &p.latest)?;
        let plan = select(p, &listing, now);
        if !plan.snapshots.is_empty() {
            ctx.log(format!("{} (as of {now}):", Self::describe(p)));
            for line in explain::table(&plan, None) {
                ctx.log(line);
            }
        }
        // What the unlinks below do to the files the latest snapshot shares
        // with the deleted ones, for the next snapshot (see `unlinks`).
        let watch = if plan.delete.is_empty() && listing.deleting.is_empty() {
            None
        } else {
            unlinks::Watch::start(&dir, &listing, &plan.delete)
                .inspect_err(|why| {
                    ctx.log(format!(
                        "not recording which files the deletions leave unchanged: {why}; the \
                         next snapshot reads the files they unlink a name of again"
                    ));
                })
                .ok()
        };
        let mut deleted = Vec::new();
        let mut freed: Vec<Option<u64>> = Vec::new();
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
            let frees = if p.count_freed {
                // Counted by the deletion itself, after the snapshots
                // deleted before it: a file whose other names went with
                // them is freed here, so this is what deleting it frees,
                // and the figures add up to what the rotation frees.
                let counted = delete(&doomed, Some(Some(RUN_BUDGET)), watch.as_ref(), ctx)?;
                ctx.log(match counted.bytes {
                    Some(n) => format!("deleted {} (freed {})", path.display(), fmt_bytes(n)),
                    None => format!(
                        "deleted {} (what it freed was not counted: more than {RUN_BUDGET} entries)",
                        path.display()
                    ),
                });
                counted.bytes
            } else {
                delete(&doomed, None, watch.as_ref(), ctx)?;
                None
            };
            deleted.push(name.clone());
            freed.push(frees);
        }
        // Finish deletions a crash interrupted. Not counted: part of such
        // a leftover is gone already, so its figure would be part of what
        // it freed, and the summary's figures are for this run's deletions.
        for leftover in &listing.deleting {
            ctx.check()?;
            ctx.log(format!(
                "finishing the deletion of {}",
                dir.join(leftover).display()
            ));
            delete(&dir.join(leftover), None, watch.as_ref(), ctx)?;
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
        if let Some(watch) = watch {
            ctx.log(watch.finish());
        }
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
        let total: u64 = freed.iter().flatten().sum();
        let mut summary = format!(
            "kept {} of {} verified snapshots, deleted {}",
            plan.keep.len(),
            plan.keep.len() + deleted.len(),
            deleted.len()
        );
        if !deleted.is_empty() && p.count_freed {
            let uncounted = freed.iter().any(Option::is_none);
            summary.push_str(&format!(
                " (freed {}{})",
                if uncounted { "at least " } else { "" },
                fmt_bytes(total)
            ));
        }
        if unverified > 0 {
            summary.push_str(&format!(
                "; {unverified} unverified kept and not counted (verify runs before rotate?)"
            ));
        }
        let frees_of = |name: &str| {
            deleted
                .iter()
                .position(|d| d == name)
                .and_then(|i| freed[i])
        };
        Ok(ActionOutput {
            summary: Some(summary),
            details: serde_json::json!({
                "kept": plan.keep,
                "deleted": deleted,
                "not_counted": plan.not_counted,
                "freed_bytes": p.count_freed.then_some(total),
                "snapshots": decisions_json(&plan, |name| frees_of(name).map(Unique::Bytes)),
            }),
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
        let listing = match list(&dir, &p.latest) {
            Ok(listing) => listing,
            Err(e) => return vec![format!("cannot list {}: {e}", dir.display())],
        };
        let plan = select(p, &listing, facts_now(facts));
        let mut lines = vec![headline(&plan)];
        if plan.snapshots.is_empty() {
            return lines;
        }
        // Cheap only: a plan is shown at once (see PLAN_BUDGET).
        let names: Vec<&str> = plan.snapshots.iter().map(|j| j.name.as_str()).collect();
        let never = AtomicBool::new(false);
        let counted = explain::count(
            &dir,
            &names,
            crate::fs::default_threads(),
            &never,
            Some(PLAN_BUDGET),
        );
        let (unique, spent) = counted.unwrap_or_else(|e| {
            lines.push(format!("unique bytes not counted: {e}"));
            Default::default()
        });
        lines.extend(explain::table(&plan, Some(&unique)));
        if spent {
            lines.push(format!(
                "unique bytes not counted (-): the snapshots hold more than {PLAN_BUDGET} entries; \
                 `ward probe` counts them"
            ));
        }
        lines
    }

    fn inspect(p: &RotateParams, ctx: &super::inspect::ProbeCtx<'_>) -> Vec<super::inspect::Check> {
        use super::inspect::{self, Check, Verdict};
        let dir = ctx.path(&p.dir);
        let mut out = vec![inspect::writable_folder("dir", &dir, ctx)];
        if out[0].verdict != Verdict::Pass || !dir.is_dir() {
            return out;
        }
        let listing = match list(&dir, &p.latest) {
            Ok(listing) => listing,
            Err(e) => {
                out.push(Check::fail(
                    "rotation",
                    format!("cannot list {}: {e}", dir.display()),
                ));
                return out;
            }
        };
        let plan = select(p, &listing, facts_now(ctx.facts));
        let mut detail = headline(&plan);
        if ctx.made_by(&dir).is_some() {
            detail = format!("as the folder is now (an earlier step adds to it): {detail}");
        }
        // Every snapshot, whatever it costs: `ward probe` is the look
        // before a change, asked for on purpose.
        let names: Vec<&str> = plan.snapshots.iter().map(|j| j.name.as_str()).collect();
        let never = AtomicBool::new(false);
        let unique = explain::count(&dir, &names, crate::fs::default_threads(), &never, None)
            .map(|(u, _)| u)
            .unwrap_or_default();
        let doomed: u64 = plan
            .delete
            .iter()
            .filter_map(|n| match unique.get(n) {
                Some(Unique::Bytes(b)) => Some(*b),
                _ => None,
            })
            .sum();
        if !plan.delete.is_empty() {
            detail.push_str(&format!(
                "; deleting them frees at least {} (the sum of their unique bytes; files shared \
                 only among them add to it)",
                fmt_bytes(doomed)
            ));
        }
        out.push(Check::new(
            "rotation",
            if plan.delete.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Warn
            },
            detail,
        ));
        for j in &plan.snapshots {
            let bytes = match unique.get(&j.name) {
                Some(Unique::Bytes(b)) => format!("unique {}", fmt_bytes(*b)),
                Some(Unique::Failed(e)) => format!("unique bytes not counted: {e}"),
                _ => "unique bytes not counted".to_owned(),
            };
            out.push(Check::new(
                format!("snapshot {}", j.name),
                if j.decision == Decision::Delete {
                    Verdict::Warn
                } else {
                    Verdict::Pass
                },
                format!("{}: {}; {bytes}", j.decision.word(), j.why()),
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

/// Deletes a tree, counting what it frees with `count` (see
/// [`remove_tree_observed`]) and showing each file it unlinks to `watch`.
fn delete(
    path: &Path,
    count: Option<Option<u64>>,
    watch: Option<&unlinks::Watch>,
    ctx: &ActionCtx,
) -> Result<Freed, crate::fs::FsError> {
    match (watch, count) {
        (Some(w), count) => remove_tree_observed(
            path,
            ctx.threads,
            ctx.cancel_flag(),
            count,
            &|st: &rustix::fs::Stat| w.observe(st),
        ),
        (None, Some(budget)) => remove_tree_counted(path, ctx.threads, ctx.cancel_flag(), budget),
        (None, None) => {
            remove_tree(path, ctx.threads, ctx.cancel_flag()).map(|()| Freed::default())
        }
    }
}

/// Removes the files next to snapshot `name` that belong to it: its
/// manifest, its base marker and what rotations recorded for it.
fn remove_side_files(dir: &Path, name: &str) -> Result<(), ActionError> {
    let set = dir.join(name);
    for file in [manifest::outside_path(&set), manifest::unlinks_path(&set)]
        .into_iter()
        .flatten()
    {
        remove_if_present(&file)?;
    }
    Ok(remove_if_present(&base_marker(dir, name))?)
}

/// One line: what the rotation would keep and delete.
fn headline(plan: &Selection) -> String {
    let mut line = format!("would keep {} verified snapshot(s)", plan.keep.len());
    if !plan.delete.is_empty() {
        line.push_str(&format!(" and delete {}", plan.delete.len()));
    }
    if !plan.not_counted.is_empty() {
        line.push_str(&format!(
            "; {} not counted (incomplete or unverified) and kept",
            plan.not_counted.len()
        ));
    }
    line
}

/// The decisions for the step's details: each snapshot's name, time,
/// decision, reasons (or what the rules said of a deleted one), and its
/// unique bytes where counted (`unique_bytes`; in a run, what deleting it
/// freed).
fn decisions_json(plan: &Selection, unique: impl Fn(&str) -> Option<Unique>) -> serde_json::Value {
    plan.snapshots
        .iter()
        .map(|j| {
            let mut v = serde_json::to_value(j).unwrap_or(serde_json::Value::Null);
            if let (Some(Unique::Bytes(b)), Some(o)) = (unique(&j.name), v.as_object_mut()) {
                o.insert("unique_bytes".into(), b.into());
            }
            v
        })
        .collect()
}
