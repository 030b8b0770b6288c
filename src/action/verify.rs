//! `verify`: check a backup set against its manifest, read back all or a
//! rolling slice of its content, optionally spot-check it against the live
//! source, and record the result in the set's verified marker.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{facts_now, non_empty};
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
use crate::fs::manifest::{self, Mismatch};
use crate::fs::spot::{SpotPolicy, SpotReport};
use crate::fs::verified::{self, Depth, Marker, Read1, ReadShare, SHARED_NOTE, depth_for};

/// Reads a backup set's manifest (`<dir>/.<name>.manifest.json`) and
/// reports every missing, changed, truncated or extra file; records in the
/// set's verified marker whether it passed (a failure replaces a good
/// marker: the set stops counting for `rotate`).
pub struct Verify;

/// Parameters of `verify`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyParams {
    /// The backup set (a snapshot folder or the `latest` link).
    pub path: String,
    /// The manifest (default `<dir>/.<name>.manifest.json` next to the set,
    /// or `<path>/manifest.json` for snapshots made before ward 0.2).
    pub manifest: Option<String>,
    /// How much content to read back: `all` (re-hash every file whose
    /// sha256 the manifest recorded; the default), `1/N` (one slice of N
    /// by a stable hash of the path, a different slice each night, so every
    /// file is read back within N verifies), or `none` (structure, sizes,
    /// modes only). Structure, sizes, modes, owner and mtime are checked in
    /// full at every level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<String>,
    /// Old form of `read`: true is `read: all`, false is `read: none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<bool>,
    /// Spot-check the set against this live source folder: file count,
    /// and size and content of a sample of its files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<String>,
    /// The share of the source's files sampled (`1/N`, default `1/100`;
    /// at least 100 files, at most 2000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
    /// Percent of sampled source files that may be missing from the set
    /// (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_missing: Option<f64>,
    /// Percent of sampled source files that may differ from the set,
    /// though not modified since the snapshot (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_changed: Option<f64>,
    /// Percent by which the set's file count may differ from the
    /// source's (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count_diff: Option<f64>,
}

impl VerifyParams {
    /// What `read` (or the old `hashes`) asks for; checked by `check`.
    fn share(&self) -> Result<ReadShare, String> {
        match (&self.read, self.hashes) {
            (Some(_), Some(_)) => Err("give `read` or the old `hashes`, not both".to_owned()),
            (Some(r), None) => ReadShare::parse(r),
            (None, Some(false)) => Ok(ReadShare::None),
            (None, Some(true) | None) => Ok(ReadShare::All),
        }
    }

    /// The spot check's sample and tolerances.
    fn policy(&self) -> Result<SpotPolicy, String> {
        let mut p = SpotPolicy::default();
        if let Some(s) = &self.sample {
            p.share = match ReadShare::parse(s)? {
                ReadShare::Share(n) => n,
                ReadShare::All => 1,
                ReadShare::None => return Err("`sample: none` samples nothing".to_owned()),
            };
        }
        for (value, slot) in [
            (self.max_missing, &mut p.max_missing),
            (self.max_changed, &mut p.max_changed),
            (self.max_count_diff, &mut p.max_count_diff),
        ] {
            if let Some(v) = value {
                if !(0.0..=100.0).contains(&v) {
                    return Err(format!("{v} is not a percentage (0 to 100)"));
                }
                *slot = v;
            }
        }
        Ok(p)
    }
}

/// `text` with its control characters escaped (`\u{1b}`), as the step's
/// log shows them: the names of files in a set are chosen by whoever wrote
/// the source, and one with escape sequences must not drive the terminal
/// that shows the step's failure or `ward verify --status`.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The first few mismatches, for a one-line message.
fn first_of(mismatches: &[Mismatch]) -> String {
    let first: Vec<String> = mismatches
        .iter()
        .take(5)
        .map(|m| format!("{} {}", m.kind, plain(&m.path)))
        .collect();
    format!(
        "{}{}",
        first.join(", "),
        if mismatches.len() > 5 { ", ..." } else { "" }
    )
}

impl Action for Verify {
    const NAME: &'static str = "verify";
    const SUMMARY: &'static str = "check a backup set against its manifest";
    type Params = VerifyParams;

    fn check(p: &VerifyParams) -> Vec<ParamProblem> {
        let mut out: Vec<ParamProblem> = non_empty("path", &p.path).into_iter().collect();
        if let Err(e) = p.share() {
            let key = if p.read.is_some() { "read" } else { "hashes" };
            out.push(ParamProblem::new(key, e).help("`read: all`, `read: 1/7` or `read: none`"));
        }
        if let Err(e) = p.policy() {
            out.push(ParamProblem::new("sample", e));
        }
        if p.against.is_none()
            && (p.sample.is_some()
                || p.max_missing.is_some()
                || p.max_changed.is_some()
                || p.max_count_diff.is_some())
        {
            out.push(
                ParamProblem::new("sample", "the spot check's settings without `against`")
                    .help("name the live source with `against: SRC`, or drop them"),
            );
        }
        if let Some(a) = &p.against {
            out.extend(non_empty("against", a));
        }
        out
    }

    fn perform(p: &VerifyParams, ctx: &ActionCtx) -> ActionResult {
        let share = p.share().map_err(ActionError::new)?;
        let policy = p.policy().map_err(ActionError::new)?;
        let now = facts_now(&ctx.facts);
        let at = now.format("%Y-%m-%dT%H:%M:%S").to_string();
        let given = ctx.path(&p.path);
        let set = std::fs::canonicalize(&given).map_err(|e| {
            ActionError::new(format!("cannot open backup set {}: {e}", given.display()))
        })?;
        // A link (`latest`) names a snapshot of its own folder, as
        // `snapshot.hardlink` makes it. One pointed at a folder elsewhere
        // that is no snapshot (by whoever can write the link's folder)
        // would have this step write a failed marker beside any folder.
        if p.manifest.is_none()
            && manifest::located(&set).is_none()
            && std::fs::symlink_metadata(&given).is_ok_and(|m| m.file_type().is_symlink())
        {
            let home = given
                .parent()
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        p
                    }
                })
                .and_then(|p| std::fs::canonicalize(p).ok());
            if home.as_deref() != set.parent() {
                return Err(ActionError::new(format!(
                    "{} is a link to {}, outside its own folder, which has no manifest: a \
                     snapshots folder's link names one of its snapshots; nothing was \
                     verified or recorded",
                    given.display(),
                    set.display()
                )));
            }
        }
        let previous =
            verified::path(&set).and_then(|marker| verified::read(&marker).ok().flatten());
        let set_name = set
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let depth = depth_for(share, &set, now.date());
        // Every outcome below that is about the set (not about the run)
        // is recorded: a failure replaces a good marker.
        // `read`: the content was read at `depth` (not when the manifest
        // could not be read): only then is a slice or full read recorded.
        let record = |checksum: &str, read: bool, problems: u64, error: Option<String>| {
            let ok = problems == 0 && error.is_none();
            let read_of = |slice| Read1 {
                slice,
                at: at.clone(),
                // What the read found (a failed spot check is not the slice's).
                ok: problems == 0,
                problems,
                set: set_name.clone(),
            };
            let same = previous
                .as_ref()
                .filter(|m| m.manifest_checksum == checksum);
            let marker = Marker {
                format: verified::FORMAT.to_owned(),
                at: at.clone(),
                run_id: ctx.attempt.run_id.clone(),
                manifest_checksum: checksum.to_owned(),
                level: depth.level().to_owned(),
                slice: match depth {
                    Depth::Slice { k, n } => Some(format!("{k}/{n}")),
                    _ => None,
                },
                ok,
                problems,
                error,
                slices: match depth {
                    Depth::Slice { k, n } if read => {
                        let history = set
                            .parent()
                            .map(|dir| verified::history(dir, n, now.date()))
                            .unwrap_or_default();
                        Some(verified::record(n, history, read_of(Some(k))))
                    }
                    _ => same.and_then(|m| m.slices.clone()),
                },
                full: match depth {
                    Depth::Full if read => Some(read_of(None)),
                    _ => same.and_then(|m| m.full.clone()),
                },
            };
            verified::write(&set, &marker).map_err(|e| ActionError::new(e.to_string()))
        };
        let found = match &p.manifest {
            Some(given) => manifest::load_from(&set, &ctx.path(given)),
            None => manifest::load(&set),
        };
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                // No manifest or a damaged one: the set is not verified.
                record("", false, 0, Some(e.to_string()))?;
                return Err(ActionError::new(e.to_string()));
            }
        };
        let m = &found.manifest;
        // A second run on the same day made `NAME.2`: a step that names the
        // snapshot by its template would check (and mark) the older one.
        if m.run_id != ctx.attempt.run_id
            && let Some(own) = crate::fs::snapshots::made_later_by(&set, &ctx.attempt.run_id)?
        {
            return Err(ActionError::new(format!(
                "{} was made by an earlier run (run {}); this run's snapshot is {}. \
                 Verify `<dir>/latest` (the snapshot step points it at the new snapshot) \
                 instead of naming the snapshot by its date",
                set.display(),
                m.run_id,
                own.display()
            )));
        }
        ctx.check()?;
        ctx.log(format!("reading back: {depth}"));
        let mismatches =
            match manifest::compare(&set, m, found.in_tree, &depth, ctx.threads, ctx.progress()) {
                Ok(mismatches) => mismatches,
                // A check that could not be completed (a folder that cannot
                // be listed) proves nothing: recorded as failed.
                Err(e) => {
                    record(&m.checksum, false, 0, Some(e.to_string()))?;
                    return Err(e.into());
                }
            };
        for mm in &mismatches {
            ctx.log(format!("{}: {} ({})", mm.kind, mm.path, mm.detail));
        }
        let mut failures = Vec::new();
        if !mismatches.is_empty() {
            failures.push(format!(
                "{} does not match its manifest: {} problem(s): {}{}",
                set.display(),
                mismatches.len(),
                first_of(&mismatches),
                if mismatches.iter().any(|m| m.shared) {
                    format!(". {SHARED_NOTE}")
                } else {
                    String::new()
                }
            ));
        }

        // The spot check against the live source.
        let mut spot: Option<SpotReport> = None;
        if let Some(src) = &p.against {
            ctx.check()?;
            let src = ctx.path(src);
            let made = chrono::NaiveDateTime::parse_from_str(&m.created, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .and_then(|t| t.and_local_timezone(chrono::Local).earliest())
                .map(std::time::SystemTime::from)
                // An unreadable creation time: no source change is excused.
                .unwrap_or_else(std::time::SystemTime::now);
            match crate::fs::spot::check(&src, &set, m, made, &ctx.facts.date, &policy) {
                Ok(report) => {
                    ctx.log(format!(
                        "spot check against {}: {} files in the source, {} in the set; \
                         {} sampled: {} missing, {} differ, {} changed since the snapshot",
                        src.display(),
                        report.source_files,
                        report.set_files,
                        report.sampled,
                        report.missing.len(),
                        report.changed.len(),
                        report.changed_since
                    ));
                    for path in &report.missing {
                        ctx.log(format!("spot check: missing from the set: {path}"));
                    }
                    for (path, how) in &report.changed {
                        ctx.log(format!("spot check: differs: {path} ({how})"));
                    }
                    failures.extend(
                        report
                            .failures
                            .iter()
                            .map(|f| format!("spot check against {}: {f}", src.display())),
                    );
                    spot = Some(report);
                }
                Err(e) => failures.push(e.to_string()),
            }
        }

        // Every dump decompressed to its last line (not when the step
        // checks structure only), whatever the manifest found: where a
        // dump breaks says more than its changed hash.
        if depth != Depth::Structure {
            let dumps =
                crate::fs::dumpcheck::check_set(&set, m, &|| ctx.cancelled(), ctx.progress())?;
            dumps.iter().for_each(|d| ctx.log(d.to_string()));
            failures.extend(crate::fs::dumpcheck::failure(&set, &dumps));
        }

        // Failures besides the manifest's mismatches (the spot check, ...)
        // are the marker's `error`.
        let others_failed = failures.len() > usize::from(!mismatches.is_empty());
        record(
            &m.checksum,
            true,
            mismatches.len() as u64,
            others_failed.then(|| plain(&failures.join("; "))),
        )?;
        if !failures.is_empty() {
            return Err(ActionError::new(plain(&failures.join("; "))));
        }
        let hashed = m
            .entries
            .iter()
            .filter(|e| e.sha256.is_some() && depth.reads(&e.rel_bytes()))
            .count();
        Ok(ActionOutput {
            summary: Some(format!(
                "{}: {} entries match ({depth}{}){}",
                set.display(),
                m.entries.len(),
                if depth == Depth::Structure {
                    String::new()
                } else {
                    format!(", {hashed} hashes checked")
                },
                spot.as_ref().map_or(String::new(), |s| format!(
                    "; spot check: {} of {} sampled source files match, {} changed since",
                    s.sampled - s.missing.len() - s.changed.len() - s.changed_since,
                    s.sampled,
                    s.changed_since
                ))
            )),
            details: serde_json::json!({
                "entries": m.entries.len(),
                "hashed": hashed,
                "level": depth.level(),
                "slice": match depth { Depth::Slice { k, n } => Some(format!("{k}/{n}")), _ => None },
            }),
            ..ActionOutput::default()
        })
    }

    fn inspect(p: &VerifyParams, ctx: &super::inspect::ProbeCtx<'_>) -> Vec<super::inspect::Check> {
        use super::inspect::Check;
        let given = ctx.path(&p.path);
        if let Some(step) = ctx.made_by(&given) {
            return vec![Check::unknown(
                "set",
                format!(
                    "{} is made by step `{step}` during the run",
                    given.display()
                ),
            )];
        }
        let set = match std::fs::canonicalize(&given) {
            Ok(s) => s,
            Err(e) => {
                return vec![Check::fail(
                    "set",
                    format!("backup set {} does not exist: {e}", given.display()),
                )];
            }
        };
        let found = match &p.manifest {
            Some(m) => manifest::load_from(&set, &ctx.path(m)),
            None => manifest::load(&set),
        };
        let found = match found {
            Ok(f) => f,
            Err(e) => return vec![Check::fail("set", e.to_string())],
        };
        let m = &found.manifest;
        let mut out = vec![Check::pass(
            "set",
            format!(
                "{} ({} files, {}, made {} by run {})",
                set.display(),
                m.files,
                crate::model::ByteSize(m.bytes),
                m.created,
                m.run_id
            ),
        )];
        // The check the step makes, without marking the set verified.
        let share = p.share().unwrap_or(ReadShare::All);
        let today = crate::clock::now()
            .map(|t| t.date())
            .unwrap_or_else(|_| chrono::Local::now().date_naive());
        let depth = depth_for(share, &set, today);
        let progress = crate::progress::Progress::default();
        out.push(
            match manifest::compare(
                &set,
                m,
                found.in_tree,
                &depth,
                crate::fs::default_threads(),
                &progress,
            ) {
                Ok(mm) if mm.is_empty() => Check::pass(
                    "manifest",
                    format!("{} entries match (read back: {depth})", m.entries.len()),
                ),
                Ok(mm) => Check::fail(
                    "manifest",
                    format!("{} problem(s): {}", mm.len(), first_of(&mm)),
                ),
                Err(e) => Check::fail("manifest", e.to_string()),
            },
        );
        // The dumps read to their last line, as the step does.
        if depth != Depth::Structure {
            let dumps = crate::fs::dumpcheck::check_set(&set, m, &|| false, &progress);
            out.extend(dumps.ok().filter(|d| !d.is_empty()).map(|d| {
                match crate::fs::dumpcheck::failure(&set, &d) {
                    Some(msg) => Check::fail("dumps", msg),
                    None => Check::pass("dumps", crate::fs::dumpcheck::summary(&d)),
                }
            }));
        }
        out
    }

    fn describe(p: &VerifyParams) -> String {
        let manifest = p.manifest.clone().unwrap_or_else(|| "its manifest".into());
        let depth = match p.share() {
            Ok(ReadShare::All) => "sizes and recorded hashes".to_owned(),
            Ok(ReadShare::None) => "sizes only".to_owned(),
            Ok(ReadShare::Share(n)) => {
                format!("sizes, and recorded hashes of one slice of {n} a night")
            }
            Err(e) => e,
        };
        let spot = p
            .against
            .as_ref()
            .map_or(String::new(), |a| format!("; spot check against {a}"));
        format!("verify {} against {manifest} ({depth}){spot}", p.path)
    }
}
