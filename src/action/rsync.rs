//! `rsync`: copy a tree with real rsync, keeping hard links.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::inspect::{self, Change, Check, ProbeCtx, Tally, TreeDiff, Verdict};
use super::params::forbidden_args;
use super::params::{non_empty, option_like};
use super::rsync_since::{self, CopyKey, Prior, Since, Stamp};
use super::{
    Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem, describe_status,
};
use crate::fs::changed::{self, Changes};
use crate::fs::compare::{self, Compared};
use std::path::Path;

mod unshare;

/// Runs rsync with an argv (no shell): `-a -H --delete` by default, never
/// `--inplace`, exit 24 (files vanished) a warning unless told otherwise.
pub struct Rsync;

/// What to copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RsyncMode {
    /// The whole tree.
    #[default]
    Full,
    /// FOSSology's `gold` and `license` trees only (the "gold-only" backup).
    GoldOnly,
    /// The rules given in `filters`.
    Filter,
}

/// What rsync's exit code 24 (source files vanished during transfer) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Vanished {
    /// Succeed with a warning (default).
    #[default]
    Warn,
    /// Fail the step.
    Fail,
}

/// Parameters of `rsync`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RsyncParams {
    /// Source folder (its contents are copied), or `host:path`.
    pub src: String,
    /// Destination folder (e.g. the backup's `current` tree), or `host:path`.
    pub dest: String,
    /// `full` (default), `gold-only` or `filter`.
    #[serde(default)]
    pub mode: RsyncMode,
    /// rsync filter rules for `mode: filter`, e.g. `["+ /gold/***", "- *"]`.
    #[serde(default)]
    pub filters: Vec<String>,
    /// Delete files in `dest` that are gone from `src` (default true).
    #[serde(default = "yes")]
    pub delete: bool,
    /// Keep hard links inside the source (`-H`, default true).
    #[serde(default = "yes")]
    pub hard_links: bool,
    /// `warn` (default) or `fail` when files vanished during the transfer (exit 24).
    #[serde(default)]
    pub vanished: Vanished,
    /// Extra rsync arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The rsync program (default: `rsync` on PATH).
    pub program: Option<String>,
    /// An earlier `rsync` step of this run that copied the same `src` to
    /// the same `dest` (a warm pass while a service still runs): copy only
    /// what changed since it started (by change time; folders that changed
    /// are copied whole), or everything when that cannot be trusted (it
    /// did not succeed in this ward process, a network file system, the
    /// clock stepped back). Both must be local.
    // Left out when unset, so runs recorded before this key existed keep
    // their step definitions (and resume as unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_since: Option<String>,
    /// Who finds what a full pass into a local `dest` copies: `ward`
    /// (default) reads both trees in parallel and hands rsync only what
    /// rsync's own quick check would act on (`fs/compare.rs`); `rsync`
    /// lets rsync list both trees itself.
    // Left out when default, like `changed_since`.
    #[serde(default, skip_serializing_if = "Compare::is_ward")]
    pub compare: Compare,
}

/// Who compares the source with `dest` on a full pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// ward, in parallel, by rsync's quick-check rule (default).
    #[default]
    Ward,
    /// rsync, listing both trees itself.
    Rsync,
}

impl Compare {
    fn is_ward(&self) -> bool {
        *self == Compare::Ward
    }
}

fn yes() -> bool {
    true
}

const FORBIDDEN_ARGS: &[(&str, &str)] = &[
    (
        "--inplace",
        "it would change files that hard-linked snapshots share",
    ),
    (
        "--append",
        "it would change files that hard-linked snapshots share",
    ),
    (
        "--append-verify",
        "it would change files that hard-linked snapshots share",
    ),
    ("--write-devices", "it would write into device files"),
];

/// Refused with a local `dest` only: ward reads rsync's dry run there.
const FORBIDDEN_LOCAL_ARGS: &[(&str, &str)] = &[
    (
        "--quiet",
        "it hides rsync's dry run, which ward reads to keep older snapshots' files unchanged",
    ),
    (
        "-q",
        "it hides rsync's dry run, which ward reads to keep older snapshots' files unchanged",
    ),
];

/// rsync's short options that take a value (`-e ssh` as `-essh`): the
/// rest of such a cluster is the value, not options.
const SHORT_WITH_VALUE: &str = "BefMT@";

impl RsyncParams {
    /// The filter rules this mode implies.
    pub fn filter_rules(&self) -> Vec<String> {
        match self.mode {
            RsyncMode::Full => Vec::new(),
            RsyncMode::GoldOnly => ["+ /gold/***", "+ /license/***", "- *"]
                .into_iter()
                .map(String::from)
                .collect(),
            RsyncMode::Filter => self.filters.clone(),
        }
    }
}

impl RsyncParams {
    /// The command line of a pass over the paths rsync reads from stdin
    /// (NUL-separated, relative to `src`): listed folders are copied
    /// recursively, and with `--delete` cleaned of what is gone.
    pub fn argv_listed(&self, src: &str, dest: &str) -> Vec<String> {
        self.argv_list_with(src, dest, "-r")
    }

    /// The command line of a pass that sets the attributes of the folders
    /// read from stdin without copying what is in them (`-d`).
    pub fn argv_folders_only(&self, src: &str, dest: &str) -> Vec<String> {
        self.argv_list_with(src, dest, "-d")
    }

    fn argv_list_with(&self, src: &str, dest: &str, recursion: &str) -> Vec<String> {
        let mut argv = self.argv(src, dest);
        let at = argv.iter().rposition(|a| a == "--").unwrap_or(argv.len());
        argv.splice(
            at..at,
            [recursion, "--from0", "--files-from=-"].map(String::from),
        );
        argv
    }

    /// The full rsync command line (no shell involved).
    pub fn argv(&self, src: &str, dest: &str) -> Vec<String> {
        let mut argv = vec![
            self.program.clone().unwrap_or_else(|| "rsync".into()),
            "-a".into(),
        ];
        if self.hard_links {
            argv.push("-H".into());
        }
        argv.push("--numeric-ids".into());
        if self.delete {
            argv.push("--delete".into());
        }
        argv.push("--stats".into());
        // Totals on stdout as rsync goes (files checked of the list, bytes
        // so far): read from the pipe for the progress line and kept out
        // of the log (see `Progress2`).
        argv.push("--info=progress2".into());
        for rule in self.filter_rules() {
            argv.push(format!("--filter={rule}"));
        }
        argv.extend(self.args.iter().cloned());
        // Everything after `--` is a path, never an option (validation also
        // refuses paths that start with `-`; this holds if one slips by).
        argv.push("--".into());
        // A trailing slash copies the folder's contents, not the folder.
        argv.push(format!("{}/", src.trim_end_matches('/')));
        argv.push(dest.to_owned());
        argv
    }
}

/// What an rsync step copies this time.
enum Pass {
    /// What changed since an earlier copy (the list rsync reads).
    Changed(Changes),
    /// Everything, and why not only the changes (when they were asked for).
    Full(Option<String>),
    /// What differs between `src` and `dest` (ward compared them), and
    /// why not only the changes (when they were asked for).
    Compared(Compared, Option<String>),
    /// Nothing: the step was stopped while the changes were listed.
    Stopped,
}

/// Lists what changed in `src` (resolved) since the copy of step
/// `since`, or says why everything must be copied.
fn changed_pass(
    ctx: &ActionCtx,
    p: &RsyncParams,
    since: &str,
    key: &CopyKey,
    src: &std::path::Path,
) -> Pass {
    let dest = std::path::Path::new(&key.dest);
    let since = match rsync_since::threshold(&ctx.attempt.run_id, since, key, src, dest) {
        Ok(since) => since,
        Err(why) => return Pass::Full(Some(why)),
    };
    let began = Instant::now();
    match list_since(ctx, p, &since, src, dest) {
        Ok(changes) => {
            ctx.log(format!(
                "listed {} changed paths ({} folders whole, {} names of unchanged files to \
                 be linked) from {} folders in {:.2}s",
                changes.listed,
                changes.whole_folders,
                changes.linked,
                changes.folders_read,
                began.elapsed().as_secs_f64()
            ));
            Pass::Changed(changes)
        }
        // Stopped (a timeout or a signal): no rsync is started.
        Err(crate::fs::FsError::Stopped) => Pass::Stopped,
        Err(e) => Pass::Full(Some(format!("the changes could not be listed: {e}"))),
    }
}

/// Lists what changed in `src` (resolved) from `since` on: the walk of a
/// `changed_since` pass, and of a full pass's narrowed history check.
fn list_since(
    ctx: &ActionCtx,
    p: &RsyncParams,
    since: &Since,
    src: &Path,
    dest: &Path,
) -> Result<Changes, crate::fs::FsError> {
    changed::list(
        src,
        since.from,
        top_names(p),
        &since.mount_points,
        since.list_linked.then_some(dest),
        ctx.threads,
        ctx.cancel_flag(),
    )
}

/// The top-level names a mode copies, when it copies only some: gold-only
/// copies two folders, and the rest of the tree need not be read.
fn top_names(p: &RsyncParams) -> Option<&'static [&'static str]> {
    match p.mode {
        RsyncMode::GoldOnly => Some(&["gold", "license"]),
        RsyncMode::Full | RsyncMode::Filter => None,
    }
}

/// What was done for the older snapshots before the copy.
enum History {
    /// `dest` is local: what rsync would set in place was looked up.
    Kept(Kept),
    /// `dest` is remote: nothing could be done.
    Unprotected,
}

/// The figures of [`protect_history`] for a local `dest`.
struct Kept {
    /// Entries rsync's dry run would change in place.
    in_place: u64,
    /// Of them, names whose inode was shared.
    shared: u64,
    /// New inodes made.
    inodes: u64,
    /// Bytes copied for them (not counting cloned ones).
    bytes: u64,
    /// Seconds taken (dry run and new inodes).
    secs: f64,
    /// Which entries the dry run looked at.
    scope: Scope,
}

/// Which entries a history check's dry run looked at.
enum Scope {
    /// Those of a `changed_since` pass's list.
    Pass,
    /// Those that differ between `src` and `dest` (a full pass that ward
    /// compared).
    Compared,
    /// What changed in `src` since the last successful copy into `dest`,
    /// which started at this time: so many entries (a full pass).
    Changed(u64, std::time::SystemTime),
    /// Everything, and why not only what changed (a full pass).
    Full(String),
}

/// Before rsync sets attributes in place in `dest` (a mode, owner, group
/// or time change of a file whose content is unchanged), gives each such
/// entry whose inode is shared (with a hard-linked snapshot) an inode of
/// its own (see `rsync/unshare.rs`). The entries are what rsync's own dry
/// run with the same command line (and the same `list` of changed paths
/// on stdin, for a `changed_since` pass) itemizes, so they match rsync's
/// decisions: filters, `--checksum`, `--size-only`, `--chmod`, `-L` and
/// remote sources included.
fn protect_history(
    ctx: &ActionCtx,
    p: &RsyncParams,
    from: &str,
    dest: &str,
    list: Option<&Vec<u8>>,
    scope: Scope,
) -> Result<Option<History>, ActionError> {
    if is_remote(dest) {
        ctx.log(format!(
            "{dest} is remote: files there that older snapshots share (hard links) are not \
             protected; a mode, owner or time change in the source will change them in every \
             snapshot that shares them"
        ));
        return Ok(Some(History::Unprotected));
    }
    // A first copy into an empty folder changes nothing in place.
    if empty_folder(dest)? {
        return Ok(None);
    }
    let mut argv = match list {
        Some(_) => p.argv_listed(from, dest),
        None => p.argv(from, dest),
    };
    dry_run_flags(&mut argv);
    ctx.progress()
        .restart("looking for in-place changes", None, None);
    let began = Instant::now();
    let found = Arc::new(Mutex::new(ItemLines::default()));
    let filter = {
        let found = found.clone();
        let mut pending = Vec::new();
        Box::new(move |chunk: &[u8], _keep: &mut Vec<u8>| {
            let last = chunk.is_empty();
            pending.extend_from_slice(chunk);
            let end = if last {
                pending.len()
            } else {
                match pending.iter().rposition(|b| *b == b'\n') {
                    Some(i) => i + 1,
                    None => return,
                }
            };
            let lines: Vec<u8> = pending.drain(..end).collect();
            if let Ok(mut found) = found.lock() {
                found.read(&lines);
            }
        }) as crate::action::context::StdoutFilter
    };
    let done = ctx.run_program_filtered(&argv, list.cloned(), filter)?;
    ctx.check()?;
    let found = std::mem::take(
        &mut *found
            .lock()
            .map_err(|_| ActionError::new("the dry run's reader failed; rsync was not run"))?,
    );
    let code = done.status.code();
    // 23 and 24: some files could not be read or vanished; the copy goes
    // on with the others (and fails or warns as usual), so their entries
    // are protected.
    if !matches!(code, Some(0 | 23 | 24)) {
        return Err(ActionError::new(format!(
            "rsync --dry-run failed: {}{}; the copy was not started, since what it would \
             change in place in files that older snapshots share could not be known",
            describe_status(&done.status),
            code.and_then(exit_meaning)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )));
    }
    if !found.stats_seen {
        return Err(ActionError::new(
            "rsync --dry-run printed no statistics (its output was suppressed); the copy was \
             not started, since what it would change in place could not be known",
        ));
    }
    let in_place = found.items.len() as u64;
    let threads = ctx.threads;
    let unshared = unshare::unshare(Path::new(dest), &found.items, threads, ctx.cancel_flag())?;
    ctx.log(format!(
        "kept older snapshots unchanged: rsync would set attributes in place on {in_place} \
         entries; {} of their names shared an inode, now {} new inodes ({} cloned, {} bytes \
         copied, {} more names relinked) in {:.2}s",
        unshared.shared,
        unshared.inodes,
        unshared.cloned,
        unshared.bytes,
        unshared.relinked,
        began.elapsed().as_secs_f64()
    ));
    Ok(Some(History::Kept(Kept {
        in_place,
        shared: unshared.shared,
        inodes: unshared.inodes,
        bytes: unshared.bytes,
        secs: began.elapsed().as_secs_f64(),
        scope,
    })))
}

/// Compares `src` (resolved) with `dest` for a full pass, or says why
/// rsync lists everything itself. `why` is why the pass is not only what
/// changed since an earlier copy (`changed_since`), kept either way.
fn compared_pass(
    ctx: &ActionCtx,
    p: &RsyncParams,
    real_src: &Result<std::path::PathBuf, String>,
    dest: &str,
    view: bool,
    why: Option<String>,
) -> Pass {
    let not = match (p.compare, real_src) {
        (Compare::Rsync, _) => Some("`compare: rsync`".to_owned()),
        (_, Err(e)) => Some(e.clone()),
        _ if view => Some("the source is an incremental snapshot's view".to_owned()),
        // The quick check ward repeats is the one of `-a` alone:
        // `--checksum`, `--size-only`, `-A`, `-X` and the like change it.
        _ if !p.args.is_empty() => Some("the step has extra rsync `args`".to_owned()),
        _ if p.mode == RsyncMode::Filter => Some("`mode: filter`".to_owned()),
        _ => match empty_folder(dest) {
            Ok(true) => Some("the copy is empty".to_owned()),
            Ok(false) => None,
            Err(e) => Some(e.to_string()),
        },
    };
    let src = match (not, real_src) {
        (None, Ok(src)) => src,
        (not, _) => {
            ctx.log(format!(
                "rsync lists both trees: {}",
                not.unwrap_or_default()
            ));
            return Pass::Full(why);
        }
    };
    let rules = compare::Rules {
        only_top: top_names(p),
        delete: p.delete,
        hard_links: p.hard_links,
        owners: rustix::process::geteuid().is_root(),
    };
    ctx.progress().restart("comparing", None, None);
    let began = Instant::now();
    match compare::list(src, Path::new(dest), rules, ctx.threads, ctx.cancel_flag()) {
        Ok(c) => {
            ctx.log(format!(
                "compared {} entries in {} folders with the copy in {:.2}s: {}",
                c.entries,
                c.folders_read,
                began.elapsed().as_secs_f64(),
                compared_summary(&c)
            ));
            Pass::Compared(c, why)
        }
        Err(crate::fs::FsError::Stopped) => Pass::Stopped,
        Err(e) => {
            ctx.log(format!(
                "rsync lists both trees: the comparison failed: {e}"
            ));
            Pass::Full(why)
        }
    }
}

/// What a comparison found, in words.
fn compared_summary(c: &Compared) -> String {
    format!(
        "{} paths differ ({} folders whole, {} names linked), {} folders' own attributes",
        c.listed, c.whole_folders, c.linked, c.shallow_listed
    )
}

/// Runs rsync over what a comparison found: the listed paths, then the
/// folders whose own attributes alone differ. The first run's output is
/// the pass's (its statistics); both must succeed.
fn run_compared(
    ctx: &ActionCtx,
    p: &RsyncParams,
    from: &str,
    dest: &str,
    c: &Compared,
) -> Result<Option<crate::process::Finished>, ActionError> {
    let mut first = None;
    for (argv, list, count, what) in [
        (
            p.argv_listed(from, dest),
            &c.list,
            c.listed,
            "paths that differ",
        ),
        (
            p.argv_folders_only(from, dest),
            &c.shallow,
            c.shallow_listed,
            "folders whose own attributes differ",
        ),
    ] {
        if count == 0 {
            continue;
        }
        ctx.log(format!(
            "running: {} (with {count} {what} on stdin)",
            argv.join(" ")
        ));
        ctx.progress().restart("copying", None, None);
        let done = ctx.run_program_filtered(&argv, Some(list.clone()), Progress2::filter(ctx))?;
        // A failed first run starts no second one. The first run's
        // warning is the pass's (read again by the caller); a later one
        // is logged.
        if let Some(warning) = rsync_outcome(p, &done.status)?
            && first.is_some()
        {
            ctx.log(warning);
        }
        first.get_or_insert(done);
    }
    Ok(first)
}

/// Whether an rsync run succeeded: a warning for vanished files (exit 24)
/// unless `vanished: fail`, an error for any other failure.
fn rsync_outcome(
    p: &RsyncParams,
    status: &std::process::ExitStatus,
) -> Result<Option<String>, ActionError> {
    let code = status.code();
    match code {
        Some(0) => Ok(None),
        Some(24) if p.vanished == Vanished::Warn => Ok(Some(
            "some source files vanished during the transfer (rsync exit 24)".to_owned(),
        )),
        _ => Err(ActionError::new(format!(
            "rsync failed: {}{}",
            describe_status(status),
            code.and_then(exit_meaning)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ))),
    }
}

/// True if the folder `dest` has no entries (a first copy into it).
fn empty_folder(dest: &str) -> Result<bool, ActionError> {
    Ok(std::fs::read_dir(dest)
        .map_err(|e| ActionError::new(format!("cannot read {dest}: {e}")))?
        .next()
        .is_none())
}

/// Why a full pass checks the whole tree when the run has no state
/// folder (an [`ActionCtx`] built outside a recorded run).
const NO_COPIES: &str = "no state folder to keep copy stamps in";

/// The stamp the last successful copy into `dest` kept, if this full
/// pass may narrow its history check by it (see [`full_history`]), and
/// `src` resolved; else why not. The walk hands rsync's dry run a list of
/// paths, so the parameters must act on a list as on the whole tree, as
/// for `changed_since` ([`changed_since_problems`]). Stamps are kept in
/// `copies` (ward's state folder); without one there is none to read.
fn kept_prior(
    p: &RsyncParams,
    key: &CopyKey,
    real_src: &Result<std::path::PathBuf, String>,
    view: bool,
    copies: Option<&Path>,
    dest: &str,
) -> Result<(Prior, std::path::PathBuf), String> {
    let src = real_src.as_ref().map_err(Clone::clone)?;
    if view {
        return Err("the source is an incremental snapshot's view".to_owned());
    }
    if !changed_since_problems(p).is_empty() {
        return Err(
            "`mode: filter` or the step's `args` act differently on a list of paths".to_owned(),
        );
    }
    let copies = copies.ok_or_else(|| NO_COPIES.to_owned())?;
    let prior = rsync_since::kept_threshold(key, src, copies, Path::new(dest))?;
    Ok((prior, src.clone()))
}

/// The history check of a full pass: over what changed in `src` since
/// the last successful copy into `dest` started, when the stamp that copy
/// kept holds (`prior`), else over the whole tree, saying why.
///
/// Why what changed is enough: every change to a source entry's mode,
/// owner, times or content moves its change time to the kernel's clock,
/// which nobody can set back. An entry unchanged since the last copy
/// started therefore already has, in `dest`, exactly the attributes rsync
/// gave it then, so rsync has nothing to set in place on it now (unless
/// someone changed `dest` itself: then the damage to shared inodes is done
/// already, and restoring the source's attributes restores the ones the
/// snapshots recorded). An entry missed here would only mean an older
/// snapshot's metadata rewritten, which its next verify reports; an entry
/// missed by the copy would lose data, so the copy stays a full pass.
fn full_history(
    ctx: &ActionCtx,
    p: &RsyncParams,
    from: &str,
    dest: &str,
    prior: Result<(Prior, std::path::PathBuf), String>,
) -> Result<Option<History>, ActionError> {
    // Nothing to narrow: protect_history says what it does there.
    if is_remote(dest) || empty_folder(dest)? {
        return protect_history(ctx, p, from, dest, None, Scope::Full(String::new()));
    }
    let why = match prior {
        Ok((prior, src)) => {
            let since_copy = format!("since the copy of {}", local_time(prior.started));
            let began = Instant::now();
            match list_since(ctx, p, &prior.since, &src, Path::new(dest)) {
                Err(crate::fs::FsError::Stopped) => return Err(ActionError::stopped()),
                Err(e) => format!("the changes {since_copy} could not be listed: {e}"),
                // The root changed: a pass over everything.
                Ok(c) if c.list == b".\0" => format!(
                    "{} itself changed {since_copy} (a name added or removed there)",
                    src.display()
                ),
                Ok(c) => {
                    let listed_secs = began.elapsed().as_secs_f64();
                    ctx.log(format!(
                        "history check over {} entries changed {since_copy} ({} folders \
                         whole; {} folders read in {listed_secs:.2}s)",
                        c.listed, c.whole_folders, c.folders_read
                    ));
                    let scope = Scope::Changed(c.listed, prior.started);
                    let mut history = if c.listed == 0 {
                        Some(History::Kept(Kept {
                            in_place: 0,
                            shared: 0,
                            inodes: 0,
                            bytes: 0,
                            secs: 0.0,
                            scope,
                        }))
                    } else {
                        protect_history(ctx, p, from, dest, Some(&c.list), scope)?
                    };
                    if let Some(History::Kept(k)) = &mut history {
                        k.secs += listed_secs;
                    }
                    return Ok(history);
                }
            }
        }
        Err(why) => why,
    };
    ctx.log(format!("history check over the whole tree: {why}"));
    protect_history(ctx, p, from, dest, None, Scope::Full(why))
}

/// A moment as local `YYYY-MM-DD HH:MM:SS`, for the log.
fn local_time(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Local>::from(t)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// What a dry run's output says: the in-place entries, and whether its
/// `--stats` block came (so that the output was not silenced).
#[derive(Default)]
struct ItemLines {
    items: Vec<unshare::InPlace>,
    stats_seen: bool,
}

impl ItemLines {
    /// Reads whole lines of the dry run's output, as bytes: with `-8` in
    /// `args` rsync prints a name's high bytes as they are, which need not
    /// be UTF-8.
    fn read(&mut self, text: &[u8]) {
        for line in text.split(|&b| b == b'\n') {
            if let Some(rest) = line.strip_prefix(ITEM.as_bytes()) {
                let (item, rest) = rest.split_at(rest.len().min(11));
                let rest = rest.trim_ascii_start();
                let Some(space) = rest.iter().position(|&b| b == b' ') else {
                    continue;
                };
                let Ok(item) = std::str::from_utf8(item) else {
                    continue;
                };
                self.items
                    .extend(unshare::in_place(item, &rest[space + 1..]));
            } else if line.starts_with(b"Number of files:") {
                self.stats_seen = true;
            }
        }
    }
}

/// If `src` lies in an incremental snapshot (a folder with a manifest of
/// kind `incremental` at `src` or above it), builds the complete view of
/// `src` next to the snapshot and returns it.
fn incremental_view(
    ctx: &ActionCtx,
    src: &std::path::Path,
) -> Result<Option<std::path::PathBuf>, ActionError> {
    let Ok(src) = std::fs::canonicalize(src) else {
        return Ok(None);
    };
    for set in src.ancestors().take(6) {
        let Some(found) = crate::fs::manifest::find(set)? else {
            continue;
        };
        let m = found.manifest;
        if m.kind != "incremental" {
            return Ok(None);
        }
        let prefix = src
            .strip_prefix(set)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let name = set
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let view = set
            .parent()
            .unwrap_or(set)
            .join(format!(".{name}.view-{:08x}", fastrand::u32(..)));
        ctx.log(format!(
            "{} is an incremental snapshot on base {}; building its complete view in {}",
            set.display(),
            m.base.as_deref().unwrap_or("?"),
            view.display()
        ));
        if let Err(e) = crate::fs::manifest::materialize(&m, set, &prefix, &view) {
            let _ = crate::fs::tree::remove_tree(
                &view,
                ctx.threads,
                &std::sync::atomic::AtomicBool::new(false),
            );
            return Err(e.into());
        }
        return Ok(Some(view));
    }
    Ok(None)
}

/// Why `changed_since` cannot serve these parameters. Ward walks `src`
/// and hands rsync the changed paths, and rsync applies a rule that
/// excludes a folder to that folder, not to a path listed inside it, and
/// copies a listed folder on another file system despite `-x`: so both
/// ends must be local, `mode: filter` is refused (`full` and `gold-only`,
/// whose rules include whole trees, are safe), and so are `args` that
/// filter, list or change how rsync recurses.
fn changed_since_problems(p: &RsyncParams) -> Vec<ParamProblem> {
    let mut out = Vec::new();
    for (key, path) in [("src", &p.src), ("dest", &p.dest)] {
        if is_remote(path) {
            out.push(
                ParamProblem::new(
                    "changed_since",
                    format!("`changed_since` needs a local `{key}`; {path:?} is remote"),
                )
                .help("remove `changed_since` (every pass then lists the whole tree)"),
            );
        }
    }
    if p.mode == RsyncMode::Filter {
        out.push(
            ParamProblem::new(
                "changed_since",
                "`changed_since` works with `mode: full` or `gold-only`, not `mode: filter`",
            )
            .help(
                "rsync applies a rule that excludes a folder to the folder, not to a changed \
                 path listed inside it; remove `changed_since`, or copy with `mode: full`",
            ),
        );
    }
    for arg in p.args.iter().filter(|a| unsafe_with_list(a)) {
        out.push(
            ParamProblem::new(
                "changed_since",
                format!("`changed_since` cannot be combined with the rsync argument {arg:?}"),
            )
            .help(
                "arguments that filter (--exclude, --include, --filter, -F, -C), list \
                 (--files-from) or change recursion or file systems (-r, -d, -x) would \
                 act differently on a list of changed paths; remove the argument or \
                 `changed_since`",
            ),
        );
    }
    out
}

/// True for an rsync argument that acts differently on a list of paths
/// than on a whole tree.
fn unsafe_with_list(arg: &str) -> bool {
    const LONG: &[&str] = &[
        "--exclude",
        "--include",
        "--filter",
        "--cvs-exclude",
        "--files-from",
        "--from0",
        "--one-file-system",
        "--recursive",
        "--no-recursive",
        "--no-r",
        "--dirs",
        "--no-dirs",
        "--relative",
        "--no-relative",
        "--delete-excluded",
    ];
    match arg.strip_prefix("--") {
        Some(_) => LONG.iter().any(|l| {
            arg == *l
                || arg
                    .strip_prefix(l)
                    .is_some_and(|r| r.starts_with(['=', '-']))
        }),
        // A cluster of short options: any of them.
        None => arg
            .strip_prefix('-')
            .is_some_and(|cluster| cluster.chars().any(|c| "fFCxrdR".contains(c))),
    }
}

/// A problem with a `src`/`dest` that rsync or the remote shell would read
/// as an option: the path itself, or the host of `[user@]host:path`, starts
/// with `-` (a host is handed to ssh, which reads `-oProxyCommand=...`).
fn path_problem(key: &'static str, path: &str) -> Option<ParamProblem> {
    option_like(key, path).or_else(|| {
        let remote = path.split('/').next().filter(|_| is_remote(path))?;
        let host = remote.split(':').next().unwrap_or_default();
        let host = host.rsplit('@').next().unwrap_or(host);
        host.starts_with('-').then(|| {
            ParamProblem::new(
                key,
                format!("the host in `{key}` starts with `-`: {host:?} would be read as an option"),
            )
            .help("give a host name, e.g. `backup.example.org:/srv/backup`")
        })
    })
}

fn is_remote(path: &str) -> bool {
    // `host:path` (rsync's rule: a colon before the first slash).
    path.split('/')
        .next()
        .is_some_and(|first| first.contains(':'))
}

fn local_or_remote(ctx: &ActionCtx, path: &str) -> String {
    if is_remote(path) {
        path.to_owned()
    } else {
        ctx.path(path).display().to_string()
    }
}

/// What rsync's exit codes mean (rsync(1), EXIT VALUES).
fn exit_meaning(code: i32) -> Option<&'static str> {
    Some(match code {
        1 => "syntax or usage error",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files or folders",
        5 => "error starting client-server protocol",
        10 => "error in socket I/O",
        11 => "error in file I/O",
        12 => "error in rsync protocol data stream",
        20 => "received SIGUSR1 or SIGINT",
        23 => "partial transfer due to error",
        24 => "partial transfer: source files vanished",
        25 => "--max-delete limit stopped deletions",
        30 => "timeout in data send/receive",
        35 => "timeout waiting for daemon connection",
        _ => return None,
    })
}

/// Follows `rsync --info=progress2` on rsync's stdout. rsync writes each
/// update as `\r` and one line, e.g.
/// `      1,234,567  45%   10.00MB/s    0:00:05 (xfr#12, to-chk=100/200)`,
/// and the last one ends with `\n`. Updates set the step's bytes (so far)
/// and files (checked of the list: `to-chk=LEFT/ALL`); the list's length is
/// a total only once rsync has the whole list (`to-chk`, not `ir-chk`, its
/// incremental recursion's count so far), so only then is there an ETA.
/// The updates are dropped from what is logged; everything else (the
/// `--stats` block, `-v` file names) is kept byte for byte.
struct Progress2 {
    /// The start of a record whose `\r` or `\n` has not come yet.
    pending: Vec<u8>,
    progress: std::sync::Arc<crate::progress::Progress>,
}

impl Progress2 {
    fn filter(ctx: &ActionCtx) -> crate::action::context::StdoutFilter {
        let mut p = Progress2 {
            pending: Vec::new(),
            progress: ctx.progress_handle(),
        };
        Box::new(move |chunk, keep| p.feed(chunk, keep))
    }

    fn feed(&mut self, chunk: &[u8], keep: &mut Vec<u8>) {
        if chunk.is_empty() {
            keep.append(&mut self.pending);
            return;
        }
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|b| *b == b'\r' || *b == b'\n') {
            self.pending.extend_from_slice(&rest[..=i]);
            rest = &rest[i + 1..];
            let record = std::mem::take(&mut self.pending);
            let (body, end) = record.split_at(record.len() - 1);
            match parse_progress2(&String::from_utf8_lossy(body)) {
                Some(update) => self.apply(update),
                // A bare `\r` (before each update) means nothing in a log.
                None if body.is_empty() && end == b"\r" => {}
                None => keep.extend_from_slice(&record),
            }
        }
        self.pending.extend_from_slice(rest);
    }

    fn apply(&self, u: Update2) {
        if let Some(bytes) = u.bytes {
            self.progress.set_bytes(bytes);
        }
        if let Some((left, all, complete)) = u.check {
            self.progress.set_files(all.saturating_sub(left));
            self.progress.set_totals(complete.then_some(all), None);
        }
    }
}

/// One `--info=progress2` update.
#[derive(Debug, PartialEq, Eq)]
struct Update2 {
    /// Bytes so far (None if rsync printed them another way, e.g. `-h`).
    bytes: Option<u64>,
    /// Files left to check, files in the list so far, and whether the list
    /// is complete.
    check: Option<(u64, u64, bool)>,
}

/// Reads one update line, or None if `line` is not one.
fn parse_progress2(line: &str) -> Option<Update2> {
    let mut words = line.split_whitespace();
    let first = words.next()?;
    let pct = words.next()?;
    let pct_ok = pct
        .strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !pct_ok {
        return None;
    }
    let bytes = first.replace(',', "").parse::<u64>().ok();
    let check = ["to-chk=", "ir-chk="].iter().find_map(|key| {
        let at = line.find(key)? + key.len();
        let rest = &line[at..];
        let end = rest.find(')').unwrap_or(rest.len());
        let (left, all) = rest[..end].split_once('/')?;
        Some((
            left.trim().parse().ok()?,
            all.trim().parse().ok()?,
            *key == "to-chk=",
        ))
    });
    Some(Update2 { bytes, check })
}

/// Reads the numbers of `rsync --stats`.
fn parse_stats(out: &str) -> serde_json::Map<String, serde_json::Value> {
    const KEYS: &[(&str, &str)] = &[
        ("Number of files:", "files"),
        ("Number of created files:", "files_created"),
        ("Number of deleted files:", "files_deleted"),
        ("Number of regular files transferred:", "files_transferred"),
        ("Total file size:", "total_size"),
        ("Total transferred file size:", "transferred_size"),
        ("Total bytes sent:", "bytes_sent"),
        ("Total bytes received:", "bytes_received"),
    ];
    let mut stats = serde_json::Map::new();
    for line in out.lines() {
        for (prefix, key) in KEYS {
            if let Some(rest) = line.trim().strip_prefix(prefix) {
                let digits: String = rest
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '.')
                    .filter(char::is_ascii_digit)
                    .collect();
                if let Ok(n) = digits.parse::<u64>() {
                    stats.insert((*key).to_owned(), n.into());
                }
            }
        }
    }
    stats
}

impl Action for Rsync {
    const NAME: &'static str = "rsync";
    const SUMMARY: &'static str = "copy a tree with rsync (hard links kept, never in place)";
    type Params = RsyncParams;

    fn check(p: &RsyncParams) -> Vec<ParamProblem> {
        let mut out: Vec<ParamProblem> = non_empty("src", &p.src)
            .into_iter()
            .chain(non_empty("dest", &p.dest))
            .chain(path_problem("src", &p.src))
            .chain(path_problem("dest", &p.dest))
            .collect();
        match (p.mode, p.filters.is_empty()) {
            (RsyncMode::Filter, true) => out.push(
                ParamProblem::new("filters", "`mode: filter` needs `filters`")
                    .help("e.g. `filters: [\"+ /gold/***\", \"- *\"]`"),
            ),
            (RsyncMode::Full | RsyncMode::GoldOnly, false) => out.push(
                ParamProblem::new("filters", "`filters` only apply with `mode: filter`")
                    .help("set `mode: filter` or remove `filters`"),
            ),
            _ => {}
        }
        out.extend(forbidden_args("args", &p.args, FORBIDDEN_ARGS, ""));
        if !is_remote(&p.dest) {
            out.extend(forbidden_args(
                "args",
                &p.args,
                FORBIDDEN_LOCAL_ARGS,
                SHORT_WITH_VALUE,
            ));
        }
        if p.changed_since.is_some() {
            out.extend(changed_since_problems(p));
        }
        out
    }

    fn perform(p: &RsyncParams, ctx: &ActionCtx) -> ActionResult {
        // Validation refused these already; checked again before anything
        // is created or started, in case parameters reach here another way.
        for (key, value) in [("src", &p.src), ("dest", &p.dest)] {
            if let Some(problem) = path_problem(key, value) {
                return Err(ActionError::new(format!(
                    "{}; nothing was run",
                    problem.message
                )));
            }
        }
        let src = local_or_remote(ctx, &p.src);
        let dest = local_or_remote(ctx, &p.dest);
        if !is_remote(&p.dest) {
            std::fs::create_dir_all(&dest)
                .map_err(|e| ActionError::new(format!("cannot create {dest}: {e}")))?;
        }
        if !is_remote(&p.src) && !std::path::Path::new(&src).is_dir() {
            return Err(ActionError::new(format!("source {src} is not a folder")));
        }
        // Restoring from an incremental snapshot: build its complete tree
        // (hard links into it and its base) and copy from that.
        let view = if is_remote(&p.src) {
            None
        } else {
            incremental_view(ctx, std::path::Path::new(&src))?
        };
        let from = view
            .as_ref()
            .map_or(src.clone(), |v| v.display().to_string());
        let local = !is_remote(&p.src) && !is_remote(&p.dest);
        let key = CopyKey {
            src: src.clone(),
            dest: dest.clone(),
            filters: p.filter_rules(),
            hard_links: p.hard_links,
            delete: p.delete,
            args: p.args.clone(),
            program: p.program.clone(),
        };
        // rsync copies the contents of `src/`, following `src` itself when
        // it is a symlink (the FOSSology playbooks link to the repository):
        // so do the stamp and the walk.
        let real_src = if local {
            std::fs::canonicalize(&src).map_err(|e| format!("cannot resolve {src}: {e}"))
        } else {
            Err("the source or destination is remote".to_owned())
        };
        // Taken before rsync starts: whatever changes after this moment
        // carries a later change time, which a later pass looks for.
        let stamp = real_src
            .as_ref()
            .ok()
            .and_then(|real| Stamp::take(key.clone(), real, std::path::Path::new(&dest)));
        // The stamp the last successful copy into `dest` kept, read before
        // it is removed: nothing that fails from here on leaves one.
        let copies = ctx.copies_dir.as_deref();
        let prior = kept_prior(p, &key, &real_src, view.is_some(), copies, &dest);
        if let Some(copies) = copies
            && !is_remote(&p.dest)
        {
            rsync_since::forget(copies, Path::new(&dest)).map_err(|e| {
                ActionError::new(format!(
                    "{e}; nothing was copied (if this copy failed, the stamp would still \
                     narrow the next copy's check of what older snapshots share)"
                ))
            })?;
        }
        let pass = match (&p.changed_since, &view, &real_src) {
            (Some(since), None, Ok(real)) => changed_pass(ctx, p, since, &key, real),
            (Some(_), None, Err(why)) => Pass::Full(Some(why.clone())),
            (Some(_), Some(_), _) => Pass::Full(Some(
                "the source is an incremental snapshot's view".to_owned(),
            )),
            (None, _, _) => Pass::Full(None),
        };
        let pass = match pass {
            Pass::Full(why) => compared_pass(ctx, p, &real_src, &dest, view.is_some(), why),
            other => other,
        };
        if let Pass::Full(Some(why)) = &pass {
            ctx.log(format!("copying everything: {why}"));
        }
        // Older snapshots share `dest`'s inodes: the entries whose
        // attributes rsync would set in place get inodes of their own first.
        let history = match &pass {
            Pass::Stopped => None,
            Pass::Changed(c) if c.listed == 0 => None,
            Pass::Changed(c) => protect_history(ctx, p, &from, &dest, Some(&c.list), Scope::Pass)?,
            // Folders alone (the shallow list) are never shared with a
            // snapshot: only the listed paths are checked.
            Pass::Compared(c, _) if c.listed == 0 => None,
            Pass::Compared(c, _) => {
                protect_history(ctx, p, &from, &dest, Some(&c.list), Scope::Compared)?
            }
            Pass::Full(_) => full_history(ctx, p, &from, &dest, prior)?,
        };
        let done = match &pass {
            Pass::Stopped => Err(ActionError::stopped()),
            Pass::Changed(c) if c.listed == 0 => {
                ctx.log("nothing changed since the earlier copy; rsync not run");
                Ok(None)
            }
            Pass::Changed(c) => {
                let argv = p.argv_listed(&from, &dest);
                ctx.log(format!(
                    "running: {} (with {} changed paths on stdin)",
                    argv.join(" "),
                    c.listed
                ));
                ctx.progress().restart("copying", None, None);
                ctx.run_program_filtered(&argv, Some(c.list.clone()), Progress2::filter(ctx))
                    .map(Some)
            }
            Pass::Compared(c, _) if c.is_empty() => {
                ctx.log("nothing differs between the source and the copy; rsync not run");
                Ok(None)
            }
            Pass::Compared(c, _) => run_compared(ctx, p, &from, &dest, c),
            Pass::Full(_) => {
                let argv = p.argv(&from, &dest);
                ctx.log(format!("running: {}", argv.join(" ")));
                ctx.progress().restart("copying", None, None);
                ctx.run_program_filtered(&argv, None, Progress2::filter(ctx))
                    .map(Some)
            }
        };
        if let Some(v) = &view {
            let _ = crate::fs::tree::remove_tree(
                v,
                ctx.threads,
                &std::sync::atomic::AtomicBool::new(false),
            );
        }
        let done = done?;
        let mut stats = serde_json::Map::new();
        let mut warning = None;
        if let Some(done) = &done {
            stats = parse_stats(&String::from_utf8_lossy(&done.stdout));
            warning = rsync_outcome(p, &done.status)?;
        }
        // This copy succeeded: a later pass of the same copy may start from
        // it, in this process, and a later full pass, in another run, may
        // check only what changed since for older snapshots. A pass over
        // what changed since an earlier copy keeps a stamp too: entries
        // unchanged since that copy started are as it left them, and the
        // others this pass copied, so `dest` is as complete for what did
        // not change since this pass started as after a full pass (and
        // FOSSology's nightly copy ends with such a pass).
        if let Some(stamp) = stamp {
            if view.is_none()
                && let Some(copies) = copies
                && let Err(e) = rsync_since::save(&stamp, copies, Path::new(&dest))
            {
                ctx.log(format!(
                    "the next full pass will check the whole tree for older snapshots: {e}"
                ));
            }
            rsync_since::record(&ctx.attempt.run_id, &ctx.attempt.step, stamp);
        }
        let count = |k: &str| stats.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let mut summary = format!(
            "{} files, {} transferred, {} bytes sent",
            count("files"),
            count("files_transferred"),
            count("bytes_sent")
        );
        match &history {
            Some(History::Kept(h)) => {
                if h.inodes > 0 {
                    summary.push_str(&format!(
                        "; {} shared files given their own inode first",
                        h.inodes
                    ));
                }
                stats.insert("in_place".into(), h.in_place.into());
                stats.insert("unshared".into(), h.inodes.into());
                stats.insert("unshared_names".into(), h.shared.into());
                stats.insert("unshared_bytes".into(), h.bytes.into());
                stats.insert("history_secs".into(), h.secs.into());
                match &h.scope {
                    Scope::Pass => {
                        stats.insert("history_scope".into(), "changed".into());
                    }
                    Scope::Compared => {
                        stats.insert("history_scope".into(), "compared".into());
                    }
                    Scope::Changed(listed, started) => {
                        stats.insert("history_scope".into(), "changed".into());
                        stats.insert("history_listed".into(), (*listed).into());
                        stats.insert(
                            "history_since".into(),
                            chrono::DateTime::<chrono::Local>::from(*started)
                                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
                                .into(),
                        );
                    }
                    Scope::Full(why) => {
                        stats.insert("history_scope".into(), "full".into());
                        stats.insert("history_why_full".into(), why.clone().into());
                    }
                }
            }
            Some(History::Unprotected) => {
                stats.insert("history".into(), "unprotected (remote dest)".into());
            }
            None => {}
        }
        if let Pass::Compared(c, _) = &pass {
            if p.changed_since.is_none() {
                summary = format!("{}; {summary}", compared_summary(c));
            }
            stats.insert("compared".into(), c.entries.into());
            stats.insert("compared_folders".into(), c.folders_read.into());
            stats.insert("differ".into(), c.listed.into());
            stats.insert("differ_whole_folders".into(), c.whole_folders.into());
            stats.insert("differ_linked".into(), c.linked.into());
            stats.insert("differ_folders_only".into(), c.shallow_listed.into());
        }
        if let Some(since) = &p.changed_since {
            match &pass {
                Pass::Changed(c) => {
                    summary = format!(
                        "changed since `{since}`: {} paths ({} folders whole) from {} folders read; {summary}",
                        c.listed, c.whole_folders, c.folders_read
                    );
                    stats.insert("pass".into(), "changed".into());
                    stats.insert("listed".into(), c.listed.into());
                    stats.insert("whole_folders".into(), c.whole_folders.into());
                    stats.insert("linked".into(), c.linked.into());
                    stats.insert("folders_read".into(), c.folders_read.into());
                }
                Pass::Compared(c, why) => {
                    summary = format!(
                        "everything compared (not only what changed since `{since}`): {}; \
                         {summary}",
                        compared_summary(c)
                    );
                    stats.insert("pass".into(), "full".into());
                    if let Some(why) = why {
                        stats.insert("why_full".into(), why.clone().into());
                    }
                }
                Pass::Full(why) => {
                    summary =
                        format!("everything (not only what changed since `{since}`): {summary}");
                    stats.insert("pass".into(), "full".into());
                    if let Some(why) = why {
                        stats.insert("why_full".into(), why.clone().into());
                    }
                }
                // Returned as an error above.
                Pass::Stopped => {}
            }
        }
        Ok(ActionOutput {
            summary: Some(summary),
            details: serde_json::Value::Object(stats),
            warning,
            // rsync does not fsync. The executor flushes the copy in the
            // background, so a backup can restart its service without
            // waiting for the disk; a resume after a restart of the machine
            // copies again (state/recovery.rs, rule 6).
            unflushed: if is_remote(&p.dest) {
                Vec::new()
            } else {
                vec![std::path::PathBuf::from(&dest)]
            },
        })
    }

    fn inspect(p: &RsyncParams, ctx: &ProbeCtx<'_>) -> Vec<Check> {
        inspect_copy(p, ctx)
    }

    fn writes(p: &RsyncParams) -> Vec<String> {
        if is_remote(&p.dest) {
            Vec::new()
        } else {
            vec![p.dest.clone()]
        }
    }

    fn describe(p: &RsyncParams) -> String {
        let mut flags = String::from("-a");
        if p.hard_links {
            flags.push('H');
        }
        if p.delete {
            flags.push_str(" --delete");
        }
        let mode = match p.mode {
            RsyncMode::Full => String::new(),
            RsyncMode::GoldOnly => " (gold-only: gold/ and license/)".into(),
            RsyncMode::Filter => format!(" (filters: {})", p.filters.join("; ")),
        };
        format!(
            "rsync {flags} {}/ -> {}{mode}",
            p.src.trim_end_matches('/'),
            p.dest
        )
    }
}

/// Marks the lines of a dry run's `--out-format` among rsync's others.
const ITEM: &str = "ward-item ";

impl RsyncParams {
    /// The command line of this copy's dry run: the same as
    /// [`argv`](Self::argv), without the progress updates, with
    /// `--dry-run` and one line per entry that would change (its
    /// itemized change, its size and its name).
    pub fn argv_dry_run(&self, src: &str, dest: &str) -> Vec<String> {
        let mut argv = self.argv(src, dest);
        dry_run_flags(&mut argv);
        argv
    }
}

/// Makes a copy's command line its dry run: no progress updates, and
/// `--dry-run` with one line per entry that would change (its itemized
/// change, its size and its name) after the step's own `args` (the last
/// `--out-format` is the one rsync uses).
fn dry_run_flags(argv: &mut Vec<String>) {
    argv.retain(|a| a != "--info=progress2");
    let at = argv.iter().rposition(|a| a == "--").unwrap_or(argv.len());
    argv.splice(
        at..at,
        [
            "--dry-run".to_owned(),
            "--no-human-readable".to_owned(),
            "--stats".to_owned(),
            format!("--out-format={ITEM}%i %l %n"),
        ],
    );
}

/// The probe of a copy: rsync there, the source, the destination, and
/// what rsync's own dry run says it would change.
fn inspect_copy(p: &RsyncParams, ctx: &ProbeCtx<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    for (key, value) in [("src", &p.src), ("dest", &p.dest)] {
        if let Some(problem) = path_problem(key, value) {
            out.push(Check::fail(key, problem.message));
            return out;
        }
    }
    let program = p.program.clone().unwrap_or_else(|| "rsync".into());
    let found = inspect::program(&program, true, ctx);
    let have_rsync = found.verdict != Verdict::Fail;
    out.push(found);
    let src = if is_remote(&p.src) {
        p.src.clone()
    } else {
        ctx.path(&p.src).display().to_string()
    };
    let dest = if is_remote(&p.dest) {
        p.dest.clone()
    } else {
        ctx.path(&p.dest).display().to_string()
    };
    let src_ok = if is_remote(&p.src) {
        out.push(Check::pass("src", format!("{src} (remote: read by rsync)")));
        true
    } else {
        let c = inspect::existing_folder("src", Path::new(&src), ctx);
        let ok = c.verdict == Verdict::Pass;
        out.push(c);
        ok
    };
    let dest_ok = if is_remote(&p.dest) {
        out.push(Check::pass(
            "dest",
            format!("{dest} (remote: written by rsync)"),
        ));
        true
    } else {
        let c = inspect::writable_folder("dest", Path::new(&dest), ctx);
        let ok = c.verdict != Verdict::Fail;
        out.push(c);
        ok
    };
    if !have_rsync || !src_ok || !dest_ok {
        out.push(Check::unknown("tree", "not compared: see the checks above"));
        return out;
    }
    if !is_remote(&p.src) && incremental_source(Path::new(&src)) {
        out.push(Check::unknown(
            "tree",
            format!("{src} is an incremental snapshot: its complete view is built at run time, so it is not compared"),
        ));
        return out;
    }
    let argv = p.argv_dry_run(&src, &dest);
    match dry_run(&argv, ctx.env, &dest, !is_remote(&p.dest)) {
        Ok((tree, in_place)) => {
            if is_remote(&p.dest) || !in_place.is_empty() {
                out.push(history_check(&p.dest, &dest, &in_place));
            }
            let need = tree.restored.bytes.saturating_add(tree.replaced.bytes);
            let summary = tree.summary();
            out.push(Check {
                subject: "tree".into(),
                verdict: Verdict::Pass,
                detail: format!("{summary} (rsync --dry-run)"),
                tree: Some(tree),
            });
            if !is_remote(&p.dest) {
                out.push(inspect::free_space(
                    Path::new(&dest),
                    Some((need, "what the dry run would write".into())),
                ));
            }
        }
        Err(why) => out.push(Check::fail("tree", why)),
    }
    out
}

/// True if `src` lies in an incremental snapshot (as [`incremental_view`] looks).
fn incremental_source(src: &Path) -> bool {
    let Ok(src) = std::fs::canonicalize(src) else {
        return false;
    };
    src.ancestors()
        .take(6)
        .find_map(|set| crate::fs::manifest::find(set).ok().flatten())
        .is_some_and(|found| found.manifest.kind == "incremental")
}

/// Runs rsync's dry run (with the step's environment, as the copy would
/// run) and counts what it would change in `dest`.
fn dry_run(
    argv: &[String],
    env: &[(String, String)],
    dest: &str,
    local_dest: bool,
) -> Result<(TreeDiff, Vec<unshare::InPlace>), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let out = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let code = out.status.code();
    if !matches!(code, Some(0 | 24)) {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "rsync --dry-run failed: {}{}{}",
            describe_status(&out.status),
            code.and_then(exit_meaning)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default(),
            if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            }
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = ItemLines::default();
    lines.read(&out.stdout);
    Ok((classify(&text, dest, local_dest), lines.items))
}

/// What the copy would do for older snapshots: how many of the entries
/// the dry run would change in place share their inode in `dest` (and so
/// get an inode of their own first), or that a remote `dest` is not
/// protected.
fn history_check(given: &str, dest: &str, in_place: &[unshare::InPlace]) -> Check {
    use std::os::unix::fs::MetadataExt;
    if is_remote(given) {
        return Check::unknown(
            "history",
            "dest is remote: a mode, owner or time change will reach every older snapshot \
             there that shares the file (hard links)",
        );
    }
    let shared = in_place
        .iter()
        .filter(|e| {
            let path = Path::new(dest).join(os_str(&e.rel));
            std::fs::symlink_metadata(path).is_ok_and(|m| m.nlink() > 1)
        })
        .count();
    Check::pass(
        "history",
        format!(
            "{} entries would change only in attributes; {shared} of them share their inode \
             (older snapshots) and get an inode of their own before the copy",
            in_place.len()
        ),
    )
}

fn os_str(rel: &[u8]) -> &std::ffi::OsStr {
    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rel)
}

/// Reads a dry run's output (see [`RsyncParams::argv_dry_run`]): each
/// itemized line is an entry created (`+++++++++`), deleted
/// (`*deleting`) or changed (anything else); every source entry rsync
/// counted (`Number of files`, `Total file size` of `--stats`) and did not
/// itemize is unchanged. A deleted entry's bytes are looked up in `dest`
/// (rsync does not know them) when it is local.
fn classify(text: &str, dest: &str, local_dest: bool) -> TreeDiff {
    let mut tree = TreeDiff {
        dest: dest.to_owned(),
        ..TreeDiff::default()
    };
    let mut itemized = 0u64;
    let mut itemized_bytes = 0u64;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(ITEM) else {
            continue;
        };
        let (item, rest) = rest.split_at(rest.len().min(11));
        let Some((size, name)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let size: u64 = size.parse().unwrap_or(0);
        let kind = item.as_bytes().get(1).copied().unwrap_or(b' ');
        if item.starts_with("*deleting") {
            let bytes = if local_dest {
                deleted_size(&Path::new(dest).join(unescape(name.trim_end_matches('/'))))
            } else {
                0
            };
            tree.record(Change::Deleted, name.to_owned(), bytes);
            continue;
        }
        // A folder's size is its block, not data.
        let bytes = if kind == b'd' { 0 } else { size };
        itemized += 1;
        itemized_bytes = itemized_bytes.saturating_add(bytes);
        let change = if item.len() == 11 && item[2..].bytes().all(|b| b == b'+') {
            Change::Restored
        } else {
            Change::Replaced
        };
        tree.record(change, name.to_owned(), bytes);
    }
    let stats = parse_stats(text);
    let count = |k: &str| {
        stats
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    tree.unchanged = Tally {
        count: count("files").saturating_sub(itemized),
        bytes: count("total_size").saturating_sub(itemized_bytes),
    };
    tree
}

/// The bytes of an entry about to be deleted: a file's size, a link's
/// target length, nothing for a folder.
fn deleted_size(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => 0,
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// rsync prints unusual bytes of a name as `\#ooo` (octal).
fn unescape(name: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(unescape_bytes(name.as_bytes()))
}

/// [`unescape`] of raw bytes.
fn unescape_bytes(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'#')
            && let Some(oct) = b.get(i + 2..i + 5)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(oct.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
            i += 5;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_is_classified() {
        let out = "created directory x\nward-item *deleting   0 gone.txt\nward-item .d..t...... 4096 ./\nward-item >f.s....... 6 changed.txt\nward-item >f+++++++++ 4 new.txt\nward-item hf+++++++++ 4 hl.txt\nward-item cL+++++++++ 7 sym\nward-item cd+++++++++ 4096 sub\\#012x/\n\nNumber of files: 9 (reg: 5, dir: 3, link: 1)\nTotal file size: 26 bytes\n";
        let t = classify(out, "/nonexistent", true);
        assert_eq!((t.restored.count, t.restored.bytes), (4, 15));
        assert_eq!((t.replaced.count, t.replaced.bytes), (2, 6));
        assert_eq!((t.deleted.count, t.deleted.bytes), (1, 0));
        assert_eq!((t.unchanged.count, t.unchanged.bytes), (3, 5));
        assert_eq!(unescape("sub\\#012x"), std::ffi::OsString::from("sub\nx"));
    }

    #[test]
    fn the_dry_run_names_what_would_change_in_place_as_bytes() {
        let mut lines = ItemLines::default();
        let out = b"ward-item .f...p..... 3 a b\xff\nward-item >f..t...... 3 moved\nward-item hf..t...... 3 sub/c\nward-item .d..t...... 4096 sub/\n\nNumber of files: 4 (reg: 3, dir: 1)\n";
        lines.read(out);
        let names: Vec<&[u8]> = lines.items.iter().map(|i| i.rel.as_slice()).collect();
        assert_eq!(names, [&b"a b\xff"[..], b"sub/c"]);
        assert!(lines.stats_seen);
        let mut quiet = ItemLines::default();
        quiet.read(b"");
        assert!(!quiet.stats_seen);
    }

    #[test]
    fn the_dry_run_is_the_copy_with_dry_run_flags() {
        let p: RsyncParams =
            serde_json::from_value(serde_json::json!({"src": "a", "dest": "b"})).expect("params");
        let argv = p.argv_dry_run("a", "b");
        assert!(argv.contains(&"--dry-run".to_owned()), "{argv:?}");
        assert!(!argv.contains(&"--info=progress2".to_owned()), "{argv:?}");
        assert!(argv.contains(&"--delete".to_owned()) && argv.contains(&"-H".to_owned()));
        assert_eq!(argv[argv.len() - 3..], ["--", "a/", "b"]);
    }

    #[test]
    fn progress2_updates_are_counted_and_kept_out_of_the_log() {
        let progress = std::sync::Arc::new(crate::progress::Progress::default());
        let mut p = Progress2 {
            pending: Vec::new(),
            progress: progress.clone(),
        };
        let mut kept = Vec::new();
        let out = "\r         32,768   0%    0.00kB/s    0:00:00  \r        200,000   3%  159.48MB/s    0:00:00 (xfr#1, ir-chk=29/31)\r   400,000   6%  1MB/s  0:00:00 (xfr#2, to-chk=28/31)\n\nNumber of files: 31\n";
        // Cut anywhere: records may span chunks.
        for piece in out.as_bytes().chunks(7) {
            p.feed(piece, &mut kept);
        }
        p.feed(b"tail", &mut kept);
        p.feed(&[], &mut kept);
        assert_eq!(
            String::from_utf8_lossy(&kept),
            "\nNumber of files: 31\ntail"
        );
        let s = progress.sample();
        assert_eq!((s.bytes, s.files, s.files_total), (400_000, 3, Some(31)));
        // Incremental recursion: a count so far, no total.
        p.feed(
            b"\r 1  1%  1MB/s 0:00:00 (xfr#2, ir-chk=10/40)\r",
            &mut kept,
        );
        assert_eq!(progress.sample().files_total, None);
        assert_eq!(parse_progress2("Number of files: 31"), None);
    }

    #[test]
    fn reads_rsync_stats() {
        let out = "\nNumber of files: 1,234 (reg: 1,200, dir: 34)\nNumber of created files: 10\nNumber of deleted files: 2\nNumber of regular files transferred: 12\nTotal file size: 5,678,901 bytes\nTotal transferred file size: 1,024 bytes\nTotal bytes sent: 2,048\nTotal bytes received: 99\n";
        let s = parse_stats(out);
        assert_eq!(s["files"], 1234);
        assert_eq!(s["files_transferred"], 12);
        assert_eq!(s["total_size"], 5678901);
        assert_eq!(s["files_deleted"], 2);
    }

    #[test]
    fn paths_come_after_double_dash() {
        let p: RsyncParams =
            serde_json::from_value(serde_json::json!({"src": "a", "dest": "b", "args": ["-v"]}))
                .expect("params");
        let argv = p.argv("a", "b");
        assert_eq!(argv[argv.len() - 3..], ["--", "a/", "b"]);
    }

    #[test]
    fn option_like_paths_and_hosts_are_refused() {
        assert!(path_problem("src", "--rsh=sh -c x h:").is_some());
        assert!(path_problem("src", "u@-oProxyCommand=x:/y").is_some());
        assert!(path_problem("src", "-oProxyCommand=x:/y").is_some());
        assert!(path_problem("src", "./-x").is_none());
        assert!(path_problem("src", "/srv/-x").is_none());
        assert!(path_problem("src", "u@host:-x").is_none());
    }

    #[test]
    fn remote_paths_are_recognised() {
        assert!(is_remote("backup:/srv/x"));
        assert!(is_remote("user@host:x"));
        assert!(!is_remote("/srv/a:b"));
        assert!(!is_remote("relative/dir"));
    }
}
