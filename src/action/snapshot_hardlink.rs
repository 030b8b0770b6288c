//! `snapshot.hardlink`: a dated hard-link copy of the `current` tree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::path::Path;

use super::manifest::{self, ManifestInfo};
use super::params::non_empty;
use super::tree::{link_tree_since, remove_tree};
use super::{
    Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem, sync_dir,
    write_atomic,
};

/// Links `src` into `<dir>/<name>.partial` in parallel, renames it to
/// `<dir>/<name>` when complete and switches the `latest` symlink atomically.
pub struct SnapshotHardlink;

/// Full snapshots every time, or a base every `cycle` days plus changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotStrategy {
    /// Every snapshot links the whole tree (FOSSology solution 1).
    #[default]
    Full,
    /// A full base every `cycle` days; otherwise only files changed since the base (solution 2).
    BaseIncremental,
}

/// Parameters of `snapshot.hardlink`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotHardlinkParams {
    /// The tree to snapshot (e.g. the backup's `current`).
    pub src: String,
    /// The folder that holds the snapshots.
    pub dir: String,
    /// Snapshot name (default: the run's date, `YYYY-MM-DD`).
    pub name: Option<String>,
    /// Name of the symlink in `dir` that points at the newest snapshot (default `latest`).
    #[serde(default = "default_latest")]
    pub latest: String,
    /// `full` (default) or `base-incremental`.
    #[serde(default)]
    pub strategy: SnapshotStrategy,
    /// Days between full bases, for `base-incremental`.
    pub cycle: Option<u32>,
    /// Threads that link in parallel (default: number of CPUs).
    pub threads: Option<u32>,
    /// Files whose sha256 goes into the manifest: `sample` (1 in 32, the default) or `all`.
    #[serde(default)]
    pub hash: HashMode,
}

/// Which files a manifest records a content hash for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HashMode {
    /// A fixed 1-in-32 sample by path, plus every dump.
    #[default]
    Sample,
    /// Every regular file.
    All,
}

/// Default name of the `latest` symlink.
pub fn default_latest() -> String {
    "latest".into()
}

/// Checks a name that must be one path component.
pub(super) fn component_problem(key: &'static str, name: &str) -> Option<ParamProblem> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Some(ParamProblem::new(
            key,
            format!("`{key}` must be a plain name inside `dir`, not `{name}`"),
        ))
    } else {
        None
    }
}

impl Action for SnapshotHardlink {
    const NAME: &'static str = "snapshot.hardlink";
    const SUMMARY: &'static str = "hard-link a dated snapshot of a tree and switch `latest` to it";
    type Params = SnapshotHardlinkParams;

    fn check(p: &SnapshotHardlinkParams) -> Vec<ParamProblem> {
        let mut out: Vec<ParamProblem> = non_empty("src", &p.src)
            .into_iter()
            .chain(non_empty("dir", &p.dir))
            .chain(component_problem("latest", &p.latest))
            .collect();
        if let Some(name) = &p.name {
            out.extend(component_problem("name", name));
            if name.ends_with(".partial") {
                out.push(ParamProblem::new("name", "snapshot names may not end in `.partial` (ward uses it for unfinished snapshots)"));
            }
            if *name == p.latest {
                out.push(ParamProblem::new(
                    "name",
                    "the snapshot name is the same as the `latest` link",
                ));
            }
        }
        match (p.strategy, p.cycle) {
            (SnapshotStrategy::BaseIncremental, None) => out.push(
                ParamProblem::new(
                    "strategy",
                    "`strategy: base-incremental` needs `cycle` (days between full bases)",
                )
                .help("e.g. `cycle: 7`"),
            ),
            (SnapshotStrategy::BaseIncremental, Some(0)) => {
                out.push(ParamProblem::new("cycle", "`cycle` must be at least 1"));
            }
            (SnapshotStrategy::Full, Some(_)) => out.push(ParamProblem::new(
                "cycle",
                "`cycle` only applies to `strategy: base-incremental`",
            )),
            _ => {}
        }
        if p.threads == Some(0) {
            out.push(ParamProblem::new("threads", "`threads` must be at least 1"));
        }
        out
    }

    fn run(p: &SnapshotHardlinkParams, ctx: &ActionCtx) -> ActionResult {
        let dir = ctx.path(&p.dir);
        let src = ctx.path(&p.src);
        let name = p.name.clone().unwrap_or_else(|| ctx.facts.date.clone());
        let threads = p.threads.map_or(ctx.threads, |t| t as usize);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ActionError::new(format!("cannot create {}: {e}", dir.display())))?;
        let done = dir.join(&name);
        let partial = dir.join(format!("{name}.partial"));
        if done.exists() {
            // A resume after "renamed, but not yet recorded": finish the job.
            manifest::read(&done.join(manifest::FILE_NAME)).map_err(|e| {
                ActionError::new(format!(
                    "{} exists but is not a complete ward snapshot ({e}); move it away or choose another `name`",
                    done.display()
                ))
            })?;
            ctx.log(format!(
                "{} is already complete; switching {} to it",
                done.display(),
                p.latest
            ));
            switch_latest(&dir, &p.latest, &name)?;
            return Ok(ActionOutput {
                summary: Some(format!("{} already complete", done.display())),
                ..ActionOutput::default()
            });
        }
        if partial.exists() {
            ctx.log(format!(
                "removing {} left by an interrupted snapshot",
                partial.display()
            ));
            remove_tree(&partial, threads, ctx.cancel_flag())?;
        }
        ctx.log(format!(
            "linking {} into {} ({threads} threads)",
            src.display(),
            partial.display()
        ));
        let clock = std::time::Instant::now();
        let base = match p.strategy {
            SnapshotStrategy::Full => None,
            SnapshotStrategy::BaseIncremental => {
                choose_base(&dir, &name, &p.latest, p.cycle.unwrap_or(1), &ctx.facts)?
            }
        };
        let kind = match (p.strategy, &base) {
            (SnapshotStrategy::Full, _) => "full",
            (SnapshotStrategy::BaseIncremental, None) => "base",
            (SnapshotStrategy::BaseIncremental, Some(_)) => "incremental",
        };
        if let Some((base_name, _)) = &base {
            ctx.log(format!(
                "incremental against base {base_name}: only new and changed files are linked"
            ));
        }
        let entries = link_tree_since(
            &src,
            base.as_ref().map(|(_, p)| p.as_path()),
            &partial,
            threads,
            ctx.cancel_flag(),
        )?;
        ctx.log(format!(
            "linked {} entries in {:.2}s",
            entries.len(),
            clock.elapsed().as_secs_f64()
        ));
        ctx.check()?;
        let clock = std::time::Instant::now();
        let info = ManifestInfo {
            name: name.clone(),
            host: ctx.facts.host.clone(),
            run_id: ctx.run_id.clone(),
            playbook_hash: ctx.playbook_hash.clone(),
            hash_all: p.hash == HashMode::All,
            kind,
            base: base.clone(),
        };
        let mut m = manifest::build(&partial, &entries, &info, threads, ctx.cancel_flag())?;
        let json = manifest::encode(&mut m)?;
        write_atomic(&partial.join(manifest::FILE_NAME), &json, 0o644)?;
        ctx.log(format!(
            "manifest written in {:.2}s",
            clock.elapsed().as_secs_f64()
        ));
        let clock = std::time::Instant::now();
        // Everything linked must be on disk before the snapshot gets its final name.
        let fd = std::fs::File::open(&partial)?;
        rustix::fs::syncfs(&fd)
            .map_err(|e| ActionError::new(format!("cannot sync {}: {e}", partial.display())))?;
        ctx.log(format!("synced in {:.2}s", clock.elapsed().as_secs_f64()));
        // An incremental snapshot is marked before it gets its name, so it is
        // never mistaken for a complete tree (rotate and restore read this).
        let marker = base_marker(&dir, &name);
        match &base {
            Some((base_name, _)) => write_atomic(&marker, base_name.as_bytes(), 0o644)?,
            None => {
                let _ = std::fs::remove_file(&marker);
            }
        }
        std::fs::rename(&partial, &done).map_err(|e| {
            ActionError::new(format!(
                "cannot rename {} to {}: {e}",
                partial.display(),
                done.display()
            ))
        })?;
        sync_dir(&dir)?;
        switch_latest(&dir, &p.latest, &name)?;
        let hashed = m.entries.iter().filter(|e| e.sha256.is_some()).count();
        Ok(ActionOutput {
            summary: Some(format!(
                "{}: {} files, {} bytes, {hashed} hashed",
                done.display(),
                m.files,
                m.bytes
            )),
            details: serde_json::json!({
                "snapshot": done.display().to_string(),
                "files": m.files,
                "bytes": m.bytes,
                "entries": m.entries.len(),
                "hashed": hashed,
            }),
            ..ActionOutput::default()
        })
    }

    fn describe(p: &SnapshotHardlinkParams) -> String {
        let name = p.name.as_deref().unwrap_or("<date>");
        let dir = p.dir.trim_end_matches('/');
        let strategy = match (p.strategy, p.cycle) {
            (SnapshotStrategy::BaseIncremental, Some(c)) => format!(", base every {c} days"),
            _ => String::new(),
        };
        format!(
            "hard-link {} -> {dir}/{name} (via {name}.partial), then {dir}/{} -> {name}{strategy}",
            p.src, p.latest
        )
    }
}

/// Points `dir/latest` at `name` atomically: a new symlink under a temp
/// name, renamed over the old one.
pub(super) fn switch_latest(dir: &Path, latest: &str, name: &str) -> Result<(), ActionError> {
    let link = dir.join(latest);
    if let Ok(meta) = std::fs::symlink_metadata(&link)
        && !meta.file_type().is_symlink()
    {
        return Err(ActionError::new(format!(
            "{} exists and is not a symlink; ward will not replace it",
            link.display()
        )));
    }
    let tmp = dir.join(format!(".{latest}.ward-tmp-{:08x}", fastrand::u32(..)));
    std::os::unix::fs::symlink(name, &tmp)
        .map_err(|e| ActionError::new(format!("cannot create {}: {e}", tmp.display())))?;
    if let Err(e) = std::fs::rename(&tmp, &link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ActionError::new(format!(
            "cannot switch {}: {e}",
            link.display()
        )));
    }
    sync_dir(dir)
}

/// `<dir>/.<name>.base`: present for incremental snapshots, holding the base's name.
pub(super) fn base_marker(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!(".{name}.base"))
}

/// The newest complete, non-incremental snapshot in `dir` taken less than
/// `cycle` days before now; None means: take a new base.
fn choose_base(
    dir: &Path,
    name: &str,
    latest: &str,
    cycle: u32,
    facts: &crate::template::RunFacts,
) -> Result<Option<(String, std::path::PathBuf)>, ActionError> {
    let now = super::rotate::facts_now(facts);
    let listing = super::rotate::list(dir, latest)?;
    let limit = chrono::Duration::days(i64::from(cycle));
    Ok(listing
        .snapshots
        .iter()
        .filter(|s| s.complete && s.base.is_none() && s.name != name)
        .filter(|s| now.signed_duration_since(s.time) < limit)
        .max_by(|a, b| a.time.cmp(&b.time).then(a.name.cmp(&b.name)))
        .map(|s| (s.name.clone(), dir.join(&s.name))))
}
