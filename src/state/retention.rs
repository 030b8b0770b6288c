//! History that does not grow forever: which runs the state gives up, and
//! the removal of their logs (docs/playbook.md, "History"; `ward prune`).
//!
//! The choice is one pure function, [`select`], that every backend calls
//! inside the transaction that deletes the rows, over the runs it read in
//! that same transaction: a run that another ward starts, resumes or ends
//! meanwhile is seen as it is at the commit, not as it was a moment before.
//! Logs are files in the local state folder whatever the backend, so their
//! removal lives here, after the commit: a crash between the two leaves
//! logs without a run, which the next prune removes ([`prune`]'s sweep).
//!
//! A run is removed only when it is older than `keep_days` AND not among
//! the newest `keep_runs` runs of its playbook; whatever the policy, these
//! are kept, because other commands read them and must answer after a
//! prune exactly as before it:
//!
//! 1. the newest run of each playbook: `ward check` reads the `max_age` it
//!    recorded, `--if-due` records missed slots after it (so a slot is
//!    never recorded twice), `ward resume --last` resumes the newest run,
//!    and its `history:` policy is the playbook's;
//! 2. the last successful run (newest by end, as `last_succeeded`, and
//!    newest by start, as `--if-due` looks): `ward check`'s age, the
//!    preconditions' `1.5x last`, the mail's "last success";
//! 3. the last failed run, so the last failure can still be looked at;
//! 4. every run recorded `running` (alive, or dead and not yet reclaimed):
//!    `--if-due` and `overlap:` read them, their process may be writing;
//! 5. the newest unfinished run (failed, interrupted, crashed, running):
//!    the run an operator is about to `ward resume`; and the run the mail
//!    of its resumption will name as the one before it;
//! 6. the newest run that ran or was missed (not `running`, not
//!    `skipped`): the next run's mail compares itself with it (`recovered`);
//! 7. any run a lease names (the run lock's last holder), so a run whose
//!    lease was just taken is never pruned under it.
//!
//! Older failed runs are resumable only while the policy keeps them.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{RunState, StateError, Store, private};

/// A playbook's `history:` policy as the state records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Runs started within this many days are kept.
    pub keep_days: u32,
    /// The newest this many runs of the playbook are kept.
    pub keep_runs: u32,
}

impl Retention {
    /// The policy of a playbook without `history:` (or whose runs were
    /// recorded by a ward without it).
    pub const DEFAULT: Retention = Retention {
        keep_days: 90,
        keep_runs: 50,
    };
}

/// One day in milliseconds.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A run as retention sees it.
#[derive(Clone, Debug)]
pub struct RunBrief {
    /// Run id.
    pub id: String,
    /// Its playbook's `name:`.
    pub playbook_name: String,
    /// Its state.
    pub state: RunState,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub finished_at: Option<i64>,
}

/// What the store is asked to prune.
#[derive(Clone, Debug)]
pub struct PruneRequest {
    /// Only runs of this playbook (all when `None`).
    pub playbook: Option<String>,
    /// "Now", Unix ms (the real clock: a `WARD_NOW` rehearsal of next
    /// year must not empty this year's history).
    pub now_ms: i64,
    /// Runs kept whatever the policy (rule 7: the leases' holders).
    pub protect: BTreeSet<String>,
    /// Delete them; without it, only say which would go (`--dry-run`).
    pub apply: bool,
    /// A playbook's policy to record first, in the same transaction (the
    /// end of a run); the prune then applies it.
    pub record: Option<PolicyRecord>,
}

/// A playbook's `history:` as a run records it.
#[derive(Clone, Debug)]
pub struct PolicyRecord {
    /// The playbook's `name:`.
    pub playbook: String,
    /// Its `history:` (`None`: not written, the default applies, even
    /// when a later ward's default differs).
    pub policy: Option<Retention>,
    /// The run that recorded it.
    pub run_id: String,
    /// Unix ms.
    pub at: i64,
}

/// A run that was (or, in a dry run, would be) removed.
#[derive(Clone, Debug, Serialize)]
pub struct PrunedRun {
    /// Run id.
    pub id: String,
    /// Its playbook's `name:`.
    pub playbook: String,
    /// Its state.
    pub state: RunState,
    /// Unix ms.
    pub started_at: i64,
    /// The policy that let it go.
    pub policy: Retention,
}

/// The runs of `runs` (of any playbooks) that the policies let go, as
/// indexes into `runs`. `policies` maps a playbook name to its recorded
/// policy; a playbook without one has [`Retention::DEFAULT`].
pub fn select(
    runs: &[RunBrief],
    policies: &BTreeMap<String, Retention>,
    protect: &BTreeSet<String>,
    now_ms: i64,
) -> Vec<usize> {
    let mut by_playbook: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in runs.iter().enumerate() {
        by_playbook.entry(&r.playbook_name).or_default().push(i);
    }
    let mut out = Vec::new();
    for (name, mut group) in by_playbook {
        // Newest first, as `Store::runs` orders them.
        group.sort_by(|&a, &b| {
            let (a, b) = (&runs[a], &runs[b]);
            (b.started_at, &b.id).cmp(&(a.started_at, &a.id))
        });
        let policy = policies.get(name).copied().unwrap_or(Retention::DEFAULT);
        let kept = kept_of(runs, &group, policy, protect, now_ms);
        out.extend(group.into_iter().filter(|i| !kept.contains(i)));
    }
    out.sort_unstable();
    out
}

/// The runs of `runs` that the policies let go ([`select`]), as a store's
/// `prune_runs` returns them: each with its policy, oldest first. Every
/// backend reads its runs and policies its own way, then asks this.
pub fn pruned(
    runs: &[RunBrief],
    policies: &BTreeMap<String, Retention>,
    request: &PruneRequest,
) -> Vec<PrunedRun> {
    let mut out: Vec<PrunedRun> = select(runs, policies, &request.protect, request.now_ms)
        .into_iter()
        .map(|i| {
            let r = &runs[i];
            PrunedRun {
                id: r.id.clone(),
                playbook: r.playbook_name.clone(),
                state: r.state,
                started_at: r.started_at,
                policy: policies
                    .get(&r.playbook_name)
                    .copied()
                    .unwrap_or(Retention::DEFAULT),
            }
        })
        .collect();
    out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    out
}

/// The runs of one playbook's `group` (newest first) that stay.
fn kept_of(
    runs: &[RunBrief],
    group: &[usize],
    policy: Retention,
    protect: &BTreeSet<String>,
    now_ms: i64,
) -> BTreeSet<usize> {
    let since = now_ms.saturating_sub(i64::from(policy.keep_days).saturating_mul(DAY_MS));
    let unfinished = |s: RunState| {
        matches!(
            s,
            RunState::Failed | RunState::Interrupted | RunState::Crashed | RunState::Running
        )
    };
    let ran_or_missed = |s: RunState| !matches!(s, RunState::Running | RunState::Skipped);
    let first =
        |want: &dyn Fn(RunState) -> bool| group.iter().copied().find(|&i| want(runs[i].state));
    let mut kept = BTreeSet::new();
    for (n, &i) in group.iter().enumerate() {
        let r = &runs[i];
        let by_policy = n < policy.keep_runs as usize || r.started_at >= since;
        // Rules 4 and 7.
        if by_policy || r.state == RunState::Running || protect.contains(&r.id) {
            kept.insert(i);
        }
    }
    // Rule 1.
    kept.extend(group.first().copied());
    // Rule 2, by end (as `last_succeeded`) and by start.
    kept.extend(
        group
            .iter()
            .copied()
            .filter(|&i| runs[i].state == RunState::Succeeded)
            .max_by(|&a, &b| {
                let key = |i: usize| (runs[i].finished_at.unwrap_or(i64::MIN), &runs[i].id);
                key(a).cmp(&key(b))
            }),
    );
    kept.extend(first(&|s| s == RunState::Succeeded));
    // Rule 3.
    kept.extend(first(&|s| s == RunState::Failed));
    // Rule 6.
    kept.extend(first(&ran_or_missed));
    // Rule 5: the newest unfinished run, and the run its resumption's mail
    // names as the previous one (as `notify::summary` finds it).
    if let Some(u) = first(&unfinished) {
        kept.insert(u);
        let at = runs[u].started_at;
        kept.extend(
            group
                .iter()
                .copied()
                .find(|&i| i != u && ran_or_missed(runs[i].state) && runs[i].started_at <= at),
        );
    }
    kept
}

/// True for a name ward gives a run (`YYYYMMDD-HHMMSS-xxxxxxxx`, local start
/// time and eight hex digits, four before 2026-12; see
/// `session::run_id_at`): only folders so
/// named under `logs/` are ever removed.
pub fn is_run_id(name: &str) -> bool {
    let b = name.as_bytes();
    // 4 hex digits before 2026-12, 8 since.
    (b.len() == 20 || b.len() == 24)
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'-'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'-'
        && b[16..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// The log files of one run folder that were (or would be) removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LogsRemoved {
    /// The run id (the folder's name under `logs/`).
    pub run_id: String,
    /// Log files removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// What was left alone in the folder: anything ward does not write
    /// there (a symlink, a folder, another user's file, another name). The
    /// folder stays while something is left.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
}

/// What a prune did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    /// Nothing was removed: this is what would be.
    pub dry_run: bool,
    /// Runs removed, oldest first, with their logs.
    pub runs: Vec<PrunedRunWithLogs>,
    /// Log folders of runs the state does not hold (left by a crash
    /// between a prune's commit and its log removal, or by a ward killed
    /// before it recorded its run).
    pub orphan_logs: Vec<LogsRemoved>,
    /// Why log folders of runs the state does not hold were left alone,
    /// when they were: other state databases share this folder's `logs/`,
    /// so a run this one does not hold may be theirs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep_skipped: Option<String>,
}

/// A removed run and its logs.
#[derive(Clone, Debug, Serialize)]
pub struct PrunedRunWithLogs {
    /// The run.
    #[serde(flatten)]
    pub run: PrunedRun,
    /// Its logs.
    pub logs: LogsRemoved,
}

impl PruneReport {
    /// Log files removed, in all.
    pub fn files(&self) -> u64 {
        self.all_logs().map(|l| l.files).sum()
    }

    /// Bytes of log files removed, in all.
    pub fn bytes(&self) -> u64 {
        self.all_logs().map(|l| l.bytes).sum()
    }

    fn all_logs(&self) -> impl Iterator<Item = &LogsRemoved> {
        self.runs.iter().map(|r| &r.logs).chain(&self.orphan_logs)
    }

    /// Orphan folders where something was (or would be) removed: not
    /// those where everything was left alone (they are warned about).
    pub fn orphans_removed(&self) -> impl Iterator<Item = &LogsRemoved> {
        self.orphan_logs
            .iter()
            .filter(|o| o.files > 0 || o.left.is_empty())
    }

    /// Folders where something ward did not write was left alone.
    pub fn left(&self) -> impl Iterator<Item = &LogsRemoved> {
        self.all_logs().filter(|l| !l.left.is_empty())
    }
}

/// How [`prune`] is asked.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Only runs of this playbook.
    pub playbook: Option<String>,
    /// Remove nothing; report what would go.
    pub dry_run: bool,
    /// Also remove log folders whose run the state does not hold (they
    /// belong to no playbook: `ward prune --playbook` leaves them).
    pub sweep: bool,
    /// "Now", Unix ms.
    pub now_ms: i64,
    /// The policy a run just recorded (see [`PruneRequest::record`]).
    pub record: Option<PolicyRecord>,
}

/// Applies each playbook's recorded policy: removes the runs it lets go
/// (rows in one transaction), then their logs, then (with `sweep`) log
/// folders of runs the state does not hold.
pub async fn prune(store: &mut dyn Store, opts: &PruneOptions) -> Result<PruneReport, StateError> {
    let protect: BTreeSet<String> = store.lease_holders().await?.into_iter().collect();
    let request = PruneRequest {
        playbook: opts.playbook.clone(),
        now_ms: opts.now_ms,
        protect,
        apply: !opts.dry_run,
        record: opts.record.clone(),
    };
    let pruned = store.prune_runs(&request).await?;
    let logs = logs_folder(store)?;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    for run in pruned {
        // An id that is not ward's (a damaged or edited database) never
        // names a path to remove.
        let removed = if is_run_id(&run.id) {
            clear_run_logs(&logs, &run.id, !opts.dry_run)?
        } else {
            LogsRemoved {
                run_id: run.id.clone(),
                ..LogsRemoved::default()
            }
        };
        report.runs.push(PrunedRunWithLogs { run, logs: removed });
    }
    if opts.sweep {
        let others = other_databases(store);
        if others.is_empty() {
            report.orphan_logs = sweep_orphans(store, &logs, &report, !opts.dry_run).await?;
        } else {
            report.sweep_skipped = Some(format!(
                "log folders of runs not recorded in {} were left alone: {} in {} also \
                 keep{} logs there, and their runs are not known here; give each state \
                 database a folder of its own",
                store.describe(),
                others.join(", "),
                store.folder().display(),
                if others.len() == 1 { "s its" } else { " their" },
            ));
        }
    }
    Ok(report)
}

/// The other SQLite state databases in this state's folder (by file name).
/// Every database in a folder writes its logs to the same `logs/`, so a
/// log folder whose run this database does not hold may be one of theirs,
/// not an orphan. Anything that cannot be read counts as no database.
fn other_databases(store: &dyn Store) -> Vec<String> {
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";
    let own = Path::new(store.describe())
        .file_name()
        .map(|n| n.to_owned());
    let Ok(entries) = std::fs::read_dir(store.folder()) else {
        return Vec::new();
    };
    let mut others: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| own.as_deref() != Some(e.file_name().as_os_str()))
        .filter(|e| {
            let mut head = [0u8; 16];
            std::fs::File::open(e.path())
                .and_then(|mut f| io::Read::read_exact(&mut f, &mut head))
                .is_ok_and(|()| &head == MAGIC)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    others.sort();
    others
}

/// `<state folder>/logs`, if it is the private folder ward made (checked
/// when the store opened; checked again here, never followed if a link).
fn logs_folder(store: &dyn Store) -> Result<Option<PathBuf>, StateError> {
    let logs = store.folder().join("logs");
    match std::fs::symlink_metadata(&logs) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            op: "cannot read",
            path: logs,
            source,
        }),
        Ok(_) => {
            private::check_dir(&logs, "logs folder")?;
            Ok(Some(logs))
        }
    }
}

/// Removes the log folders under `logs` whose run the state does not hold
/// and no lease names. The order matters: the folders are listed first,
/// then the leases read, then the runs: a ward starting now takes its
/// lease (naming its run) before it writes a log, and records its run
/// before it lets the lease go, so a folder listed here is either a
/// lease's, or its run is recorded by the time the runs are read, or it
/// is truly left over.
async fn sweep_orphans(
    store: &dyn Store,
    logs: &Option<PathBuf>,
    report: &PruneReport,
    apply: bool,
) -> Result<Vec<LogsRemoved>, StateError> {
    let Some(logs) = logs else {
        return Ok(Vec::new());
    };
    let io_err = |source| StateError::Io {
        op: "cannot list",
        path: logs.clone(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(logs).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if let Some(name) = entry.file_name().to_str()
            && is_run_id(name)
        {
            names.push(name.to_owned());
        }
    }
    let holders: BTreeSet<String> = store.lease_holders().await?.into_iter().collect();
    let recorded: BTreeSet<String> = store.run_ids().await?.into_iter().collect();
    // In a dry run, the runs it would remove are still recorded; their
    // folders are listed with them, not again as orphans.
    let pruned: BTreeSet<&str> = report.runs.iter().map(|r| r.run.id.as_str()).collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        if recorded.contains(&name) || holders.contains(&name) || pruned.contains(name.as_str()) {
            continue;
        }
        out.push(clear_run_logs(&Some(logs.clone()), &name, apply)?);
    }
    Ok(out)
}

/// Removes (with `apply`) or measures the log files of run `id` under
/// `logs`: regular files of this user named `*.log`, directly in the
/// folder. Nothing is followed: a symlink (the folder itself, or a file in
/// it) is left where it is, and so is anything else ward does not write
/// there; the folder goes once empty.
fn clear_run_logs(
    logs: &Option<PathBuf>,
    id: &str,
    apply: bool,
) -> Result<LogsRemoved, StateError> {
    let mut out = LogsRemoved {
        run_id: id.to_owned(),
        ..LogsRemoved::default()
    };
    let Some(logs) = logs else {
        return Ok(out);
    };
    let dir = logs.join(id);
    let err = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { op, path, source }
    };
    let meta = match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        other => other.map_err(err("cannot read", &dir))?,
    };
    let me = private::euid();
    if !meta.file_type().is_dir() || meta.uid() != me {
        out.left.push(id.to_owned());
        return Ok(out);
    }
    // Another prune may be removing the same folder (its runs' logs after
    // its commit, or the same orphans): what is gone is not an error.
    let entries = match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        other => other.map_err(err("cannot list", &dir))?,
    };
    for entry in entries {
        let entry = entry.map_err(err("cannot list", &dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        // Of the entry itself: `DirEntry::metadata` never follows a link.
        let m = match entry.metadata() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => other.map_err(err("cannot read", &path))?,
        };
        let wards = m.file_type().is_file()
            && m.uid() == me
            && name.ends_with(".log")
            && !name.starts_with('.');
        if !wards {
            out.left.push(format!("{id}/{name}"));
            continue;
        }
        out.files += 1;
        out.bytes += m.len();
        if apply {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other.map_err(err("cannot remove", &path))?,
            }
        }
    }
    out.left.sort();
    if apply && out.left.is_empty() {
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other.map_err(err("cannot remove", &dir))?,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = DAY_MS;

    fn brief(id: &str, state: RunState, day: i64) -> RunBrief {
        RunBrief {
            id: id.into(),
            playbook_name: "p".into(),
            state,
            started_at: day * DAY,
            finished_at: (state != RunState::Running).then_some(day * DAY + 1),
        }
    }

    fn removed(runs: &[RunBrief], policy: Retention, now_day: i64) -> Vec<&str> {
        let policies = BTreeMap::from([("p".to_owned(), policy)]);
        select(runs, &policies, &BTreeSet::new(), now_day * DAY)
            .into_iter()
            .map(|i| runs[i].id.as_str())
            .collect()
    }

    #[test]
    fn a_run_goes_only_when_old_and_beyond_the_count() {
        use RunState::Succeeded as S;
        let runs: Vec<RunBrief> = (0..10).map(|d| brief(&format!("r{d}"), S, d)).collect();
        let policy = Retention {
            keep_days: 3,
            keep_runs: 5,
        };
        // Day 10: within 3 days are r7..r9; the newest 5 are r5..r9.
        assert_eq!(removed(&runs, policy, 10), ["r0", "r1", "r2", "r3", "r4"]);
        let policy = Retention {
            keep_days: 8,
            keep_runs: 2,
        };
        assert_eq!(removed(&runs, policy, 10), ["r0", "r1"]);
    }

    #[test]
    fn the_runs_other_commands_read_stay_whatever_the_policy() {
        use RunState::*;
        let runs = vec![
            brief("ok-old", Succeeded, 1),
            brief("failed-old", Failed, 2),
            brief("running-old", Running, 3),
            brief("interrupted", Interrupted, 4),
            brief("skipped", Skipped, 5),
            brief("crashed", Crashed, 6),
            brief("skipped-new", Skipped, 7),
        ];
        let none = Retention {
            keep_days: 0,
            keep_runs: 0,
        };
        // Kept: the newest (skipped-new), the last success (ok-old), the last
        // failure (failed-old), running-old, the newest unfinished (crashed)
        // and the run before it that ran (interrupted); the newest that ran
        // is crashed too.
        assert_eq!(removed(&runs, none, 100), ["skipped"]);
        let mut protect = BTreeSet::new();
        protect.insert("skipped".to_owned());
        let policies = BTreeMap::from([("p".to_owned(), none)]);
        assert!(select(&runs, &policies, &protect, 100 * DAY).is_empty());
    }

    #[test]
    fn each_playbook_has_its_own_policy_and_the_default_without_one() {
        let mut runs = Vec::new();
        for d in 0..60 {
            let mut r = brief(&format!("q{d:02}"), RunState::Succeeded, d);
            r.playbook_name = "q".into();
            runs.push(r);
        }
        // 60 runs of q, the oldest 200 days ago: the default keeps 50.
        let gone = select(&runs, &BTreeMap::new(), &BTreeSet::new(), 260 * DAY);
        assert_eq!(gone.len(), 10);
        assert_eq!(runs[gone[9]].id, "q09");
    }

    #[test]
    fn run_ids_are_wards_names_only() {
        assert!(is_run_id("20261202-040000-00af"));
        assert!(is_run_id("20261202-040000-00af12cd"));
        assert!(!is_run_id("20261202-040000-00af1"));
        assert!(!is_run_id("20261202-040000-00AF"));
        assert!(!is_run_id("../20261202-040000"));
        assert!(!is_run_id("20261202-040000-00af/.."));
        assert!(!is_run_id("x0261202-040000-00af"));
    }
}
