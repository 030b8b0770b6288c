//! `snapshot.hardlink`: a dated hard-link copy of the `current` tree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::path::Path;

use super::folder_lock::lock_folder;
use super::params::{component_problem, default_latest, facts_now, non_empty};
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
use crate::fs::manifest::{self, ManifestInfo};
use crate::fs::snapshots::{
    base_marker, carried_from, list, marker_path, own_previous, remove_if_present, split_suffix,
    suffix_number, with_suffix,
};
use crate::fs::sync_dir;
use crate::fs::tree::{link_tree_since, remove_tree};

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
    /// Files whose sha256 goes into the manifest: `all` (the default; files unchanged since the previous snapshot keep its hash, unread) or `sample` (1 in 32: damage to the other files goes unnoticed).
    #[serde(default)]
    pub hash: HashMode,
    /// What the backup holds, in the playbook's words (`full`, `gold-only`):
    /// recorded in the manifest, where a restore's `scope` guard reads it.
    pub scope: Option<String>,
}

/// Which files a manifest records a content hash for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HashMode {
    /// A fixed 1-in-32 sample by path, plus every dump: damage to a file outside the sample is not found by `verify`.
    Sample,
    /// Every regular file (unchanged ones keep the previous snapshot's hash).
    #[default]
    All,
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
        if let Some(name) = &p.name
            && let Some(why) = name_problem(name, &p.latest)
        {
            out.push(
                ParamProblem::new(
                    "name",
                    format!("snapshot name `{name}` is not allowed: {why}"),
                )
                .help("use a plain name such as `{{ ward.date }}` (the default)"),
            );
        }
        if lexically_inside(&p.dir, &p.src) {
            out.push(
                ParamProblem::new(
                    "dir",
                    format!(
                        "the snapshot folder `{}` is inside the tree it snapshots (`{}`); every snapshot would contain the ones before it",
                        p.dir, p.src
                    ),
                )
                .help("put `dir` next to `src`, e.g. `src: backup/current`, `dir: backup/snapshots`"),
            );
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

    fn perform(p: &SnapshotHardlinkParams, ctx: &ActionCtx) -> ActionResult {
        let name = p.name.clone().unwrap_or_else(|| ctx.facts.date.clone());
        // Checked at validate time too; here for the default (the date) and
        // for parameters recorded by an older ward. Nothing is created yet.
        if let Some(why) = name_problem(&name, &p.latest) {
            return Err(ActionError::new(format!(
                "snapshot name `{name}` is not allowed: {why}; nothing was created"
            )));
        }
        let dir = ctx.path(&p.dir);
        let src = ctx.path(&p.src);
        refuse_dir_inside_src(&src, &dir)?;
        let threads = p.threads.map_or(ctx.threads, |t| t as usize);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ActionError::new(format!("cannot create {}: {e}", dir.display())))?;
        // Two runs (of different playbooks: one playbook's runs share its
        // lock) making a snapshot in the same folder would pick the same
        // name and remove each other's `.partial`; one waits for the other.
        let _folder_lock = lock_folder(&dir, ctx, "making the snapshot")?;
        let (slot, stale) = match choose_slot(&dir, &name, &ctx.attempt.run_id)? {
            Slot::Done(slot) => {
                // A resume after "renamed, but not yet recorded": the
                // snapshot is this run's own (its manifest says so).
                // A later run may have made a newer snapshot meanwhile (the
                // same day's `NAME.2`, or the next night's); `latest` must
                // not go back to older data.
                if let Some(newer) = newer_latest(&dir, &p.latest, &slot)? {
                    ctx.log(format!(
                        "{} was completed by this run before it was interrupted; {} stays at {newer}, which is newer",
                        dir.join(&slot).display(),
                        p.latest
                    ));
                } else {
                    ctx.log(format!(
                        "{} was completed by this run before it was interrupted; switching {} to it",
                        dir.join(&slot).display(),
                        p.latest
                    ));
                    switch_latest(&dir, &p.latest, &slot)?;
                }
                return Ok(ActionOutput {
                    summary: Some(format!(
                        "{} already complete (made by this run)",
                        dir.join(&slot).display()
                    )),
                    details: serde_json::json!({ "snapshot": dir.join(&slot).display().to_string() }),
                    ..ActionOutput::default()
                });
            }
            Slot::New { slot, stale } => (slot, stale),
        };
        if slot != name {
            ctx.log(format!(
                "{} was made by an earlier run; this run's snapshot is {}",
                dir.join(&name).display(),
                dir.join(&slot).display()
            ));
        }
        for leftover in &stale {
            let path = dir.join(leftover);
            ctx.log(format!(
                "removing {} left by an interrupted snapshot",
                path.display()
            ));
            remove_tree(&path, threads, ctx.cancel_flag())?;
        }
        let done = dir.join(&slot);
        // Files an interrupted attempt may have left for this name.
        for marker in [
            manifest::outside_path(&done),
            marker_path(&done),
            Some(base_marker(&dir, &slot)),
            manifest::unlinks_path(&done),
        ]
        .into_iter()
        .flatten()
        {
            remove_if_present(&marker)?;
        }
        let partial = dir.join(format!("{slot}.partial"));
        let made = make(p, ctx, &src, &dir, &slot, threads);
        if made.is_err() && !ctx.cancelled() {
            // Leave nothing behind that only this name's next attempt
            // would clean; a resume after a stop redoes it anyway.
            let _ = remove_tree(
                &partial,
                threads,
                &std::sync::atomic::AtomicBool::new(false),
            );
            if !done.exists() {
                for marker in [
                    manifest::outside_path(&done),
                    Some(base_marker(&dir, &slot)),
                ]
                .into_iter()
                .flatten()
                {
                    let _ = std::fs::remove_file(marker);
                }
            }
        }
        let (m, stats) = made?;
        switch_latest(&dir, &p.latest, &slot)?;
        let hashed = m.entries.iter().filter(|e| e.sha256.is_some()).count();
        Ok(ActionOutput {
            summary: Some(format!(
                "{}: {} files, {} bytes, {hashed} hashed ({} read)",
                done.display(),
                m.files,
                m.bytes,
                stats.read
            )),
            details: serde_json::json!({
                "snapshot": done.display().to_string(),
                "files": m.files,
                "bytes": m.bytes,
                "entries": m.entries.len(),
                "hashed": hashed,
                "hashed_read": stats.read,
                "hashed_carried": stats.carried,
                "bytes_read": stats.bytes_read,
                "unhashed_changing": stats.unstable.len(),
            }),
            ..ActionOutput::default()
        })
    }

    fn inspect(
        p: &SnapshotHardlinkParams,
        ctx: &super::inspect::ProbeCtx<'_>,
    ) -> Vec<super::inspect::Check> {
        use super::inspect::{self, Check};
        let src = ctx.path(&p.src);
        let dir = ctx.path(&p.dir);
        let name = p.name.clone().unwrap_or_else(|| ctx.facts.date.clone());
        let mut out = vec![
            inspect::existing_folder("src", &src, ctx),
            inspect::writable_folder("dir", &dir, ctx),
        ];
        if dir.join(&name).exists() {
            out.push(Check::pass(
                "name",
                format!("{name} exists in {}: the new snapshot gets the next free suffix (`{name}.2`, ...)", dir.display()),
            ));
        } else {
            out.push(Check::pass("name", format!("{name} (new)")));
        }
        out
    }

    fn writes(p: &SnapshotHardlinkParams) -> Vec<String> {
        vec![p.dir.clone()]
    }

    fn describe(p: &SnapshotHardlinkParams) -> String {
        let name = p.name.as_deref().unwrap_or("<date>");
        let dir = p.dir.trim_end_matches('/');
        let strategy = match (p.strategy, p.cycle) {
            (SnapshotStrategy::BaseIncremental, Some(c)) => format!(", base every {c} days"),
            _ => String::new(),
        };
        format!(
            "hard-link {} -> {dir}/{name} (via {name}.partial; {name}.2, .3, ... if an earlier run made {name}), then {dir}/{} -> it{strategy}",
            p.src, p.latest
        )
    }
}

/// Links `src` into `<dir>/<slot>.partial`, writes the manifest next to
/// it, syncs, and renames it to `<dir>/<slot>`; the rename is the last
/// step that can fail, so on an error `<dir>/<slot>` does not exist.
fn make(
    p: &SnapshotHardlinkParams,
    ctx: &ActionCtx,
    src: &Path,
    dir: &Path,
    slot: &str,
    threads: usize,
) -> Result<(manifest::Manifest, manifest::HashStats), ActionError> {
    let done = dir.join(slot);
    let partial = dir.join(format!("{slot}.partial"));
    ctx.log(format!(
        "linking {} into {} ({threads} threads)",
        src.display(),
        partial.display()
    ));
    let clock = std::time::Instant::now();
    let base = match p.strategy {
        SnapshotStrategy::Full => None,
        SnapshotStrategy::BaseIncremental => {
            choose_base(dir, slot, &p.latest, p.cycle.unwrap_or(1), &ctx.facts)?
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
    let source = manifest::Source::of(src)?;
    // The previous manifest is read while the tree is linked: the linking
    // waits on the kernel, the reading on the CPU (a fifth of a nightly
    // snapshot's time when it came after). A failed linking leaves the
    // thread to finish on its own; it only reads.
    let previous = (p.hash == HashMode::All).then(|| {
        let (dir, latest, slot) = (dir.to_path_buf(), p.latest.clone(), slot.to_owned());
        let source = source.clone();
        std::thread::spawn(move || {
            // The lowest priority: the reading fills the moments the linking
            // waits, and never takes a core from it (a failure to lower it
            // only costs that).
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
            previous_hashes(&dir, &latest, &slot, &source)
        })
    });
    // No total while linking: the tree is counted by linking it (last
    // night's manifest would only be a guess).
    ctx.progress().restart("linking", None, None);
    let entries = link_tree_since(
        src,
        base.as_ref().map(|(_, p)| p.as_path()),
        &partial,
        threads,
        ctx.cancel_flag(),
        ctx.progress(),
    )?;
    ctx.log(format!(
        "linked {} entries in {:.2}s",
        entries.len(),
        clock.elapsed().as_secs_f64()
    ));
    ctx.check()?;
    let clock = std::time::Instant::now();
    let carry = match previous.map(std::thread::JoinHandle::join) {
        Some(Ok((carry, said))) => {
            for line in said {
                ctx.log(line);
            }
            carry
        }
        Some(Err(_)) => {
            ctx.log("reading the previous manifest failed; hashing every file");
            manifest::Carry::default()
        }
        None => manifest::Carry::default(),
    };
    let info = ManifestInfo {
        name: slot.to_owned(),
        host: ctx.facts.host.clone(),
        run_id: ctx.attempt.run_id.clone(),
        playbook_hash: ctx.playbook_hash.clone(),
        hash_all: p.hash == HashMode::All,
        kind,
        base: base.clone(),
        // Set by the executor for every step (docs/playbook.md, "How steps run").
        playbook: ctx
            .attempt
            .env
            .iter()
            .find(|(k, _)| k == "WARD_PLAYBOOK")
            .map(|(_, v)| v.clone()),
        scope: p.scope.clone(),
        source: Some(source),
        carry,
    };
    let (mut m, stats) = manifest::build_counted(
        &partial,
        &entries,
        &info,
        threads,
        ctx.cancel_flag(),
        ctx.progress(),
    )?;
    ctx.log(format!(
        "hashed {} files: {} read ({} bytes), {} unchanged since the previous snapshot (not read)",
        stats.read + stats.carried,
        stats.read,
        stats.bytes_read,
        stats.carried
    ));
    if stats.no_clock {
        ctx.log(format!(
            "the clock of the file system of {} could not be read: the files read were \
             recorded without their change time, and the next snapshot reads them again",
            partial.display()
        ));
    }
    for path in stats.unstable.iter().take(20) {
        ctx.log(format!(
            "{path} kept changing while it was read: recorded without a hash"
        ));
    }
    if stats.unstable.len() > 20 {
        ctx.log(format!(
            "... and {} more files that kept changing",
            stats.unstable.len() - 20
        ));
    }
    let json = manifest::encode(&mut m)?;
    let manifest_path = manifest::outside_path(&done)
        .ok_or_else(|| ActionError::new(format!("{} is not a snapshot path", done.display())))?;
    manifest::write_file(&manifest_path, &json, 0o644)?;
    ctx.log(format!(
        "manifest {} written in {:.2}s",
        manifest_path.display(),
        clock.elapsed().as_secs_f64()
    ));
    let clock = std::time::Instant::now();
    // Everything linked must be on disk before the snapshot gets its final name.
    let fd = std::fs::File::open(&partial)
        .map_err(|e| ActionError::new(format!("cannot open {}: {e}", partial.display())))?;
    rustix::fs::syncfs(&fd)
        .map_err(|e| ActionError::new(format!("cannot sync {}: {e}", partial.display())))?;
    ctx.log(format!("synced in {:.2}s", clock.elapsed().as_secs_f64()));
    // An incremental snapshot is marked before it gets its name, so it is
    // never mistaken for a complete tree (rotate and restore read this).
    if let Some((base_name, _)) = &base {
        manifest::write_file(&base_marker(dir, slot), base_name.as_bytes(), 0o644)?;
    }
    std::fs::rename(&partial, &done).map_err(|e| {
        ActionError::new(format!(
            "cannot rename {} to {}: {e}",
            partial.display(),
            done.display()
        ))
    })?;
    sync_dir(dir)?;
    Ok((m, stats))
}

/// The hashes the previous snapshot's manifest lets this one reuse, and
/// what to log about it. The previous snapshot is the one `latest`
/// points at (else the newest complete one; [`carried_from`]); its
/// manifest is used only if ward wrote it (owned by this user or root,
/// writable by nobody else: [`own_previous`]), it is intact, and it was made
/// from the same tree (`source`). Whatever is amiss, nothing is reused:
/// every file is read. The unlinks file a rotation left beside it
/// ([`manifest::Unlinks`]) is used under the same conditions and only for
/// that manifest; else it is ignored (a line says why), and the files a
/// rotation unlinked a name of are read again.
fn previous_hashes(
    dir: &Path,
    latest: &str,
    slot: &str,
    source: &manifest::Source,
) -> (manifest::Carry, Vec<String>) {
    let none = |why: String| {
        (
            manifest::Carry::default(),
            vec![format!("{why}; hashing every file")],
        )
    };
    let listing = match list(dir, latest) {
        Ok(l) => l,
        Err(e) => return none(format!("cannot list the earlier snapshots ({e})")),
    };
    let Some(previous) = carried_from(&listing, |name| name == slot) else {
        return none(format!("no earlier snapshot in {}", dir.display()));
    };
    let set = dir.join(&previous.name);
    let found = match own_previous(&set) {
        Ok(found) => found,
        Err(why) => return none(format!("the previous snapshot's manifest: {why}")),
    };
    match &found.source {
        None => {
            return none(format!(
                "the manifest {} does not record which tree it was made from (an older ward wrote it)",
                found.path.display()
            ));
        }
        Some(s) if (s.dev, s.ino) != (source.dev, source.ino) => {
            return none(format!(
                "the previous snapshot {} was made from another tree ({})",
                set.display(),
                s.path
            ));
        }
        Some(_) => {}
    }
    let mut carry = found.carry;
    if carry.is_empty() {
        return none(format!(
            "the manifest {} records no file identities to compare with",
            found.path.display()
        ));
    }
    let n = carry.len();
    let mut said = vec![format!(
        "files unchanged since {} (same inode, size, mtime and change time) keep its hashes ({n} recorded)",
        set.display()
    )];
    match manifest::read_unlinks(&set, &found.checksum) {
        Ok(None) => {}
        Ok(Some(unlinks)) => {
            let files: usize = unlinks.windows.iter().map(|w| w.inodes.len()).sum();
            said.push(format!(
                "a change time a rotation's unlink left counts as unchanged for the {files} files \
                 it unlinked a name of unchanged ({} rotation(s) since {})",
                unlinks.windows.len(),
                set.display()
            ));
            carry.accept_unlinks(unlinks);
        }
        Err(why) => said.push(format!(
            "ignoring what rotations recorded beside {}: {why}; files they unlinked a name of \
             are read again",
            set.display()
        )),
    }
    (carry, said)
}

/// Why `name` cannot name a snapshot in `dir`, if it cannot: it must be
/// one plain name, and not one of ward's own names there (the `latest`
/// link, `.partial` folders being linked, and the dot files next to each
/// snapshot: `.NAME.manifest.json`, `.NAME.verified`, `.NAME.base`,
/// `.NAME.unlinks.json`, `.NAME.deleting`), or rotation could delete what
/// `latest` points at.
pub(super) fn name_problem(name: &str, latest: &str) -> Option<String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Some("it must be one plain name inside `dir` (no `/`, not `.` or `..`)".into());
    }
    if name.starts_with('.') {
        return Some(
            "names starting with `.` are reserved for ward's own files next to each snapshot \
             (`.NAME.manifest.json`, `.NAME.verified`, `.NAME.base`, `.NAME.unlinks.json`, \
             `.NAME.deleting`)"
                .into(),
        );
    }
    for suffix in RESERVED_SUFFIXES {
        if name.ends_with(suffix) {
            return Some(format!(
                "names ending in `{suffix}` are reserved for ward's own files"
            ));
        }
    }
    if name == latest || name == "latest" {
        return Some("it is the name of the `latest` link".into());
    }
    None
}

/// Endings ward gives its own files and folders in a snapshot folder.
const RESERVED_SUFFIXES: [&str; 6] = [
    ".partial",
    ".deleting",
    ".verified",
    ".base",
    manifest::SUFFIX,
    manifest::UNLINKS_SUFFIX,
];

/// Refuses a snapshot folder inside (or equal to) the tree it snapshots:
/// every snapshot would link the earlier ones. Checked before anything
/// is created.
fn refuse_dir_inside_src(src: &Path, dir: &Path) -> Result<(), ActionError> {
    let src_real = std::fs::canonicalize(src).map_err(|e| {
        ActionError::new(format!(
            "cannot open the tree to snapshot {}: {e}",
            src.display()
        ))
    })?;
    let dir_real = canonical_prefix(dir);
    if dir_real.starts_with(&src_real) {
        return Err(ActionError::new(format!(
            "the snapshot folder {} is inside the tree it snapshots ({}); every snapshot would \
             contain the ones before it. Put `dir` next to `src`, not inside it; nothing was created",
            dir.display(),
            src.display()
        )));
    }
    Ok(())
}

/// True if the path `dir` is `src` or below it, as written (both relative
/// or both absolute, no `..`); symlinks are checked at run time.
fn lexically_inside(dir: &str, src: &str) -> bool {
    let parts = |p: &str| -> Option<Vec<String>> {
        let parts: Vec<String> = p
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect();
        (!parts.iter().any(|c| c == "..")).then_some(parts)
    };
    match (parts(dir), parts(src)) {
        (Some(d), Some(s)) if dir.starts_with('/') == src.starts_with('/') => d.starts_with(&s),
        _ => false,
    }
}

/// `path` with its longest existing prefix resolved (symlinks, `..`), the
/// rest appended as written.
fn canonical_prefix(path: &Path) -> std::path::PathBuf {
    let mut rest = Vec::new();
    let mut cur = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(cur) {
            return rest.iter().rev().fold(real, |acc, part| acc.join(part));
        }
        match (cur.file_name(), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                cur = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Where this run's snapshot goes.
enum Slot {
    /// This run already completed it (a resume): reuse it.
    Done(String),
    /// A new snapshot under this name; `stale` are `.partial` folders of
    /// the same name left by interrupted attempts.
    New { slot: String, stale: Vec<String> },
}

/// Picks the snapshot name for this run: the one it already completed
/// (its manifest records the run id), else the next free one after every
/// existing `NAME`, `NAME.k`, so that a later snapshot always sorts after
/// the earlier ones.
fn choose_slot(dir: &Path, name: &str, run_id: &str) -> Result<Slot, ActionError> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| ActionError::new(format!("cannot list {}: {e}", dir.display())))?;
    let mut taken: Vec<u32> = Vec::new();
    let mut stale = Vec::new();
    for item in read {
        let item =
            item.map_err(|e| ActionError::new(format!("cannot list {}: {e}", dir.display())))?;
        let Some(file) = item.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let Some(rest) = file.strip_prefix(name) else {
            continue;
        };
        if rest.is_empty() {
            taken.push(1);
        } else if rest == ".partial" {
            stale.push(file);
        } else if let Some(k) = rest.strip_prefix('.') {
            match k.strip_suffix(".partial") {
                Some(k) if suffix_number(k).is_some() => stale.push(file),
                Some(_) => {}
                None => taken.extend(suffix_number(k)),
            }
        }
    }
    taken.sort_unstable_by(|a, b| b.cmp(a));
    for &k in &taken {
        let slot = with_suffix(name, k);
        if let Ok(Some(found)) = manifest::find(&dir.join(&slot))
            && found.manifest.run_id == run_id
        {
            return Ok(Slot::Done(slot));
        }
    }
    let next = taken.first().map_or(1, |k| k + 1);
    stale.sort();
    Ok(Slot::New {
        slot: with_suffix(name, next),
        stale,
    })
}

/// The snapshot `latest` points at when it is complete and newer than
/// `slot` (see [`crate::fs::snapshots::Snapshot::age_order`]), else None.
fn newer_latest(dir: &Path, latest: &str, slot: &str) -> Result<Option<String>, ActionError> {
    let listing = list(dir, latest)?;
    let find = |name: &str| listing.snapshots.iter().find(|s| s.name == name);
    Ok(
        match (listing.latest_target.as_deref().and_then(find), find(slot)) {
            (Some(current), Some(ours))
                if current.complete && current.age_order() > ours.age_order() =>
            {
                Some(current.name.clone())
            }
            _ => None,
        },
    )
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
    Ok(sync_dir(dir)?)
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
    let now = facts_now(facts);
    let listing = list(dir, latest)?;
    let limit = chrono::Duration::days(i64::from(cycle));
    Ok(listing
        .snapshots
        .iter()
        .filter(|s| s.complete && s.base.is_none() && s.name != name)
        .filter(|s| now.signed_duration_since(s.time) < limit)
        .max_by(|a, b| {
            a.time
                .cmp(&b.time)
                .then_with(|| split_suffix(&a.name).cmp(&split_suffix(&b.name)))
        })
        .map(|s| (s.name.clone(), dir.join(&s.name))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            ".x",
            ".x.deleting",
            "x.partial",
            "x.deleting",
            "x.verified",
            "x.base",
            "x.manifest.json",
            "x.unlinks.json",
            "latest",
            "current",
        ] {
            assert!(name_problem(bad, "current").is_some(), "{bad:?}");
        }
        for good in ["2026-12-01", "2026-12-01.2", "weekly", "v1.5", "x.partials"] {
            assert_eq!(name_problem(good, "current"), None, "{good:?}");
        }
    }

    #[test]
    fn same_name_suffixes_order_by_number() {
        assert_eq!(split_suffix("2026-12-01"), ("2026-12-01", 1));
        assert_eq!(split_suffix("2026-12-01.2"), ("2026-12-01", 2));
        assert_eq!(split_suffix("2026-12-01.10"), ("2026-12-01", 10));
        assert_eq!(split_suffix("2026-12-01.02"), ("2026-12-01.02", 1));
        assert_eq!(split_suffix("x.1"), ("x.1", 1));
        assert!(split_suffix("d.9") < split_suffix("d.10"));
        assert_eq!(with_suffix("d", 1), "d");
        assert_eq!(with_suffix("d", 3), "d.3");
    }

    #[test]
    fn folders_inside_the_source_as_written() {
        assert!(lexically_inside("data/snaps", "data"));
        assert!(lexically_inside("./data/", "data"));
        assert!(lexically_inside("/srv/b/current/s", "/srv/b/current"));
        assert!(!lexically_inside("backup/snapshots", "backup/current"));
        assert!(!lexically_inside("data2", "data"));
        assert!(!lexically_inside("data/../x", "data"));
        assert!(!lexically_inside("/data/s", "data"));
    }
}
