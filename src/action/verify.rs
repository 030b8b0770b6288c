//! `verify`: check a backup set against its manifest.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::non_empty;
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
use crate::fs::manifest;
use crate::fs::snapshots::marker_path;

/// Reads a backup set's manifest (`<dir>/.<name>.manifest.json`) and
/// reports every missing, changed, truncated or extra file; marks the set
/// verified when clean.
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
    /// Re-hash the files whose sha256 the manifest recorded (default true;
    /// false checks structure, sizes and modes only).
    #[serde(default = "yes")]
    pub hashes: bool,
}

fn yes() -> bool {
    true
}

impl Action for Verify {
    const NAME: &'static str = "verify";
    const SUMMARY: &'static str = "check a backup set against its manifest";
    type Params = VerifyParams;

    fn check(p: &VerifyParams) -> Vec<ParamProblem> {
        non_empty("path", &p.path).into_iter().collect()
    }

    fn perform(p: &VerifyParams, ctx: &ActionCtx) -> ActionResult {
        let given = ctx.path(&p.path);
        let set = std::fs::canonicalize(&given).map_err(|e| {
            ActionError::new(format!("cannot open backup set {}: {e}", given.display()))
        })?;
        let found = match &p.manifest {
            Some(given) => manifest::load_from(&set, &ctx.path(given))?,
            None => manifest::load(&set)?,
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
        let mismatches = manifest::compare(
            &set,
            m,
            found.in_tree,
            p.hashes,
            ctx.threads,
            ctx.progress(),
        )?;
        for mm in &mismatches {
            ctx.log(format!("{}: {} ({})", mm.kind, mm.path, mm.detail));
        }
        // Issue 16: every dump decompressed to its last line (not when
        // the step checks structure only), whatever the manifest found:
        // where a dump breaks says more than its changed hash.
        let damaged = if p.hashes {
            let dumps =
                crate::fs::dumpcheck::check_set(&set, m, &|| ctx.cancelled(), ctx.progress())?;
            dumps.iter().for_each(|d| ctx.log(d.to_string()));
            crate::fs::dumpcheck::failure(&set, &dumps)
        } else {
            None
        };
        if !mismatches.is_empty() {
            let first: Vec<String> = mismatches
                .iter()
                .take(5)
                .map(|m| format!("{} {}", m.kind, m.path))
                .collect();
            return Err(ActionError::new(
                format!(
                    "{} does not match its manifest: {} problem(s): {}{}",
                    set.display(),
                    mismatches.len(),
                    first.join(", "),
                    if mismatches.len() > 5 { ", ..." } else { "" }
                ) + &damaged.map(|d| format!("; {d}")).unwrap_or_default(),
            ));
        }
        if let Some(msg) = damaged {
            return Err(ActionError::new(msg));
        }
        if let Some(marker) = marker_path(&set) {
            let note = serde_json::json!({
                "verified_at": chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "run_id": ctx.attempt.run_id,
                "manifest_checksum": m.checksum,
                "hashes": p.hashes,
            });
            manifest::write_file(&marker, note.to_string().as_bytes(), 0o644)?;
        }
        let hashed = m.entries.iter().filter(|e| e.sha256.is_some()).count();
        Ok(ActionOutput {
            summary: Some(format!(
                "{}: {} entries match{}",
                set.display(),
                m.entries.len(),
                if p.hashes {
                    format!(", {hashed} hashes checked")
                } else {
                    String::new()
                }
            )),
            details: serde_json::json!({ "entries": m.entries.len(), "hashed": hashed }),
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
        let progress = crate::progress::Progress::default();
        out.push(
            match manifest::compare(
                &set,
                m,
                found.in_tree,
                p.hashes,
                crate::fs::default_threads(),
                &progress,
            ) {
                Ok(mm) if mm.is_empty() => Check::pass(
                    "manifest",
                    format!(
                        "{} entries match{}",
                        m.entries.len(),
                        if p.hashes {
                            " (recorded hashes checked)"
                        } else {
                            ""
                        }
                    ),
                ),
                Ok(mm) => {
                    let first: Vec<String> = mm
                        .iter()
                        .take(5)
                        .map(|x| format!("{} {}", x.kind, x.path))
                        .collect();
                    Check::fail(
                        "manifest",
                        format!(
                            "{} problem(s): {}{}",
                            mm.len(),
                            first.join(", "),
                            if mm.len() > 5 { ", ..." } else { "" }
                        ),
                    )
                }
                Err(e) => Check::fail("manifest", e.to_string()),
            },
        );
        // Issue 16: the dumps read to their last line, as the step does.
        if p.hashes {
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
        let depth = if p.hashes {
            "sizes and recorded hashes"
        } else {
            "sizes only"
        };
        format!("verify {} against {manifest} ({depth})", p.path)
    }
}
