//! Preconditions, checked before a run starts: free space, paths, a
//! command, a TCP port, processes that must not run, mains power.
//!
//! At the level of `execute/` (it reads `plan/`, `state/` records and
//! `procs`). Every check is read-only for ward: it looks at the system and
//! changes nothing (a `command` is the operator's own program, run with
//! its output kept in the run's `preconditions.log`). All are checked, in
//! order, even after one failed, so the record names every reason.

mod power;

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::model::{ByteSize, MinFree};
use crate::plan::{Check, ResolvedPrecondition};
use crate::procs;
use crate::state::{AttemptOutcome, AttemptRecord, CheckRecord, PreconditionsRecord};

pub use power::{POWER_SUPPLY_DIR, TEST_POWER_SUPPLY_ENV, on_ac_power};

/// The log file of the `command` checks, in the run's log folder.
pub const LOG_NAME: &str = "preconditions.log";

/// The last successful run of the playbook, for `min: 1.5x last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastRun {
    /// Not looked up: no check needs it.
    NotNeeded,
    /// The playbook never succeeded.
    Never,
    /// Its last successful run, and the bytes it recorded (`None`: it
    /// recorded no size, see [`run_size`]).
    Found {
        /// Its id.
        run_id: String,
        /// Its size.
        bytes: Option<u64>,
    },
}

/// What the checks need from around them.
pub struct Preflight<'a> {
    /// Relative paths are taken from here (the playbook's folder, as steps).
    pub work_dir: &'a Path,
    /// The run's log folder (made only if a `command` check prints).
    pub log_dir: &'a Path,
    /// The run id (`WARD_RUN_ID` of `command` checks).
    pub run_id: &'a str,
    /// The last successful run, for multiples of its size.
    pub last: LastRun,
}

/// True if some check needs the size of the last successful run.
pub fn needs_last_run(preconditions: &[ResolvedPrecondition]) -> bool {
    preconditions.iter().any(|p| {
        matches!(
            p.check,
            Check::FreeSpace {
                min: MinFree::TimesLast(_),
                ..
            }
        )
    })
}

/// The size of a run: the bytes its succeeded attempts recorded as the
/// data they wrote. An `rsync` step's `total_size` (the size of the tree
/// it copied, from `--stats`), a dump's `size` (`pg.dump`, `pg.dumpall`:
/// the file written), summed. A `snapshot.hardlink`'s `bytes` count only
/// in a run with no `rsync` step: its files are hard links of the copy, so
/// counting both would count the copy twice. `None` when the run recorded
/// none of these.
pub fn run_size(attempts: &[AttemptRecord]) -> Option<u64> {
    let ok = || {
        attempts
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
            .filter_map(|a| a.details.as_ref())
    };
    let field = |d: &serde_json::Value, k: &str| d.get(k).and_then(serde_json::Value::as_u64);
    let mut copies = None;
    for d in ok() {
        let bytes =
            field(d, "total_size").or_else(|| d.get("sha256").and_then(|_| field(d, "size")));
        if let Some(b) = bytes {
            copies = Some(copies.unwrap_or(0u64).saturating_add(b));
        }
    }
    let has_rsync = ok().any(|d| d.get("total_size").is_some());
    if has_rsync {
        return copies;
    }
    let snapshots = ok()
        .filter(|d| d.get("snapshot").is_some())
        .filter_map(|d| field(d, "bytes"))
        .fold(None, |sum: Option<u64>, b| {
            Some(sum.unwrap_or(0).saturating_add(b))
        });
    match (copies, snapshots) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    }
}

/// Checks every precondition in order (all of them, also after a failure).
pub fn check_all(
    preconditions: &[ResolvedPrecondition],
    ctx: &Preflight<'_>,
) -> PreconditionsRecord {
    let mut log = CommandLog::new(ctx.log_dir);
    let checks = preconditions
        .iter()
        .map(|p| {
            let (passed, detail) = match check(&p.check, ctx, &mut log) {
                Ok(found) => (true, found),
                Err(why) => (false, why),
            };
            tracing::info!(
                "precondition {}: {}",
                p.check.kind().name(),
                if passed {
                    "passed"
                } else {
                    "failed (the run will be recorded skipped)"
                }
            );
            CheckRecord {
                check: p.check.describe(),
                passed,
                detail,
            }
        })
        .collect();
    PreconditionsRecord {
        skipped_by_operator: false,
        checks,
        log_path: log.written.then(|| log.path.display().to_string()),
    }
}

/// One check: `Ok(what was found)` if it holds, `Err(why not)` otherwise.
fn check(check: &Check, ctx: &Preflight<'_>, log: &mut CommandLog) -> Result<String, String> {
    match check {
        Check::FreeSpace { path, min } => free_space(&resolve(ctx.work_dir, path), *min, &ctx.last),
        Check::PathExists(path) => {
            let full = resolve(ctx.work_dir, path);
            match std::fs::metadata(&full) {
                Ok(m) if m.is_dir() => Ok("a folder".into()),
                Ok(_) => Ok("exists".into()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(format!("{} does not exist", full.display()))
                }
                Err(e) => Err(format!("cannot look at {}: {e}", full.display())),
            }
        }
        Check::PathAbsent(path) => {
            let full = resolve(ctx.work_dir, path);
            // Another user must not be able to block (or unblock) the run:
            // a folder they could write is refused.
            match crate::fs::restore_marker::blocking(&full)? {
                None => Ok("absent".into()),
                Some((said, _)) => Err(said),
            }
        }
        Check::Command { argv, timeout } => command(argv, timeout.std(), ctx, log),
        Check::Tcp {
            host,
            port,
            timeout,
        } => tcp(host, *port, timeout.std()),
        Check::NotRunning(list) => {
            let mut watch = procs::GoneWatch::record(list).map_err(|e| e.to_string())?;
            let found = watch.still();
            if found.is_empty() {
                Ok("none running".into())
            } else {
                Err(format!("running: {}", procs::describe(&found)))
            }
        }
        Check::OnAcPower => on_ac_power(&power::supply_dir()),
    }
}

fn resolve(work_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        work_dir.join(p)
    }
}

fn free_space(path: &Path, min: MinFree, last: &LastRun) -> Result<String, String> {
    let st =
        rustix::fs::statvfs(path).map_err(|e| format!("cannot look at {}: {e}", path.display()))?;
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let (need, note) = match min {
        MinFree::Size(s) => (s.0, String::new()),
        MinFree::TimesLast(factor) => match last {
            LastRun::Found {
                run_id,
                bytes: Some(bytes),
            } => (
                (*bytes as f64 * factor).ceil() as u64,
                format!(", {factor}x the {} of run {run_id}", ByteSize(*bytes)),
            ),
            LastRun::Found {
                run_id,
                bytes: None,
            } => {
                return Ok(format!(
                    "{} free; passed: run {run_id}, the last successful one, recorded no size to compare with",
                    ByteSize(free)
                ));
            }
            LastRun::Never | LastRun::NotNeeded => {
                return Ok(format!(
                    "{} free; passed: no successful run yet to compare with",
                    ByteSize(free)
                ));
            }
        },
    };
    let text = format!("{} free, {} needed{note}", ByteSize(free), ByteSize(need));
    if free >= need { Ok(text) } else { Err(text) }
}

fn tcp(host: &str, port: u16, timeout: Duration) -> Result<String, String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut why = Vec::new();
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(_) => return Ok(format!("connected to {addr}")),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => why.push(format!(
                "{addr}: no answer within {}",
                crate::model::Duration(timeout)
            )),
            Err(e) if addrs.len() == 1 => why.push(e.to_string()),
            Err(e) => why.push(format!("{addr}: {e}")),
        }
    }
    if why.is_empty() {
        why.push(format!("{host} has no address"));
    }
    Err(why.join("; "))
}

/// The log of the `command` checks, made when one is run.
struct CommandLog {
    dir: PathBuf,
    path: PathBuf,
    written: bool,
}

impl CommandLog {
    fn new(dir: &Path) -> CommandLog {
        CommandLog {
            dir: dir.to_path_buf(),
            path: dir.join(LOG_NAME),
            written: false,
        }
    }

    /// The log file, opened for appending, with a header for `argv`.
    fn open(&mut self, argv: &[String]) -> Result<std::fs::File, String> {
        crate::state::private::ensure_log_dir(&self.dir)
            .and_then(|()| crate::state::private::open_log(&self.path))
            .and_then(|mut f| {
                writeln!(f, "== precondition: command {}", argv.join(" "))?;
                Ok(f)
            })
            .inspect(|_| self.written = true)
            .map_err(|e| format!("cannot write its log {}: {e}", self.path.display()))
    }
}

fn command(
    argv: &[String],
    timeout: Duration,
    ctx: &Preflight<'_>,
    log: &mut CommandLog,
) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let file = log.open(argv)?;
    let err_file = file
        .try_clone()
        .map_err(|e| format!("cannot write its log: {e}"))?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        crate::process::new_command(program)
            .args(args)
            .current_dir(ctx.work_dir)
            .env("WARD_RUN_ID", ctx.run_id)
            .env("WARD_PRECONDITION", "1")
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err_file)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?
    };
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                stop_group(&mut child);
                return Err(format!(
                    "did not finish within {}, stopped; output in {}",
                    crate::model::Duration(timeout),
                    log.path.display()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for {program}: {e}")),
        }
    };
    if status.success() {
        Ok("exit 0".into())
    } else {
        Err(format!(
            "{}, output in {}",
            describe_exit(&status),
            log.path.display()
        ))
    }
}

fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "ended abnormally".into(),
    }
}

/// SIGTERM to the command's group, SIGKILL after 2 s, then reap it.
fn stop_group(child: &mut std::process::Child) {
    use rustix::process::{Pid, Signal, kill_process_group};
    let Some(pgid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    let _ = kill_process_group(pgid, Signal::TERM);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            // The leader is gone; the rest of its group must go too.
            let _ = kill_process_group(pgid, Signal::KILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = kill_process_group(pgid, Signal::KILL);
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(details: serde_json::Value, ok: bool) -> AttemptRecord {
        AttemptRecord {
            step_id: "s".into(),
            attempt: 1,
            started_at: 0,
            finished_at: Some(1),
            exit_code: None,
            signal: None,
            outcome: Some(if ok {
                AttemptOutcome::Succeeded
            } else {
                AttemptOutcome::Failed
            }),
            message: None,
            log_path: String::new(),
            details: Some(details),
        }
    }

    #[test]
    fn a_runs_size_counts_copies_and_dumps_not_snapshots_of_the_copy() {
        let rsync = attempt(serde_json::json!({"total_size": 1000, "files": 3}), true);
        let dump = attempt(serde_json::json!({"size": 200, "sha256": "ab"}), true);
        let snap = attempt(serde_json::json!({"snapshot": "/s/x", "bytes": 1000}), true);
        let failed = attempt(serde_json::json!({"total_size": 99}), false);
        assert_eq!(
            run_size(&[rsync.clone(), dump.clone(), snap.clone(), failed.clone()]),
            Some(1200)
        );
        // No copy: the snapshot's files are the data.
        assert_eq!(run_size(&[snap, dump.clone()]), Some(1200));
        assert_eq!(run_size(&[dump]), Some(200));
        assert_eq!(run_size(&[failed]), None);
        assert_eq!(run_size(&[]), None);
    }

    #[test]
    fn free_space_compares_with_a_size_or_the_last_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tiny = MinFree::Size(ByteSize(1));
        assert!(free_space(dir.path(), tiny, &LastRun::NotNeeded).is_ok());
        let huge = MinFree::Size(ByteSize(u64::MAX / 2));
        let why = free_space(dir.path(), huge, &LastRun::NotNeeded).expect_err("too little");
        assert!(why.contains("needed"), "{why}");
        let twice = MinFree::TimesLast(2.0);
        let never = free_space(dir.path(), twice, &LastRun::Never).expect("passes");
        assert!(never.contains("no successful run yet"), "{never}");
        let unknown = LastRun::Found {
            run_id: "r1".into(),
            bytes: None,
        };
        let note = free_space(dir.path(), twice, &unknown).expect("passes");
        assert!(note.contains("recorded no size"), "{note}");
        let big = LastRun::Found {
            run_id: "r1".into(),
            bytes: Some(u64::MAX / 4),
        };
        let why = free_space(dir.path(), twice, &big).expect_err("too little");
        assert!(why.contains("2x the") && why.contains("run r1"), "{why}");
        assert!(free_space(&dir.path().join("missing"), tiny, &LastRun::NotNeeded).is_err());
    }
}
