//! Read-only checks of a step against the real system, for `ward probe`:
//! the typed result ([`Check`], [`Verdict`], [`TreeDiff`]), what a step
//! is probed with ([`ProbeCtx`]), and the checks several actions share
//! (a program and its version, a folder that must be writable, free space,
//! a PostgreSQL server and its version).
//!
//! Dry run is a backend here, not a flag: each action says in its own
//! file, through [`super::Action::inspect`], how it is checked without
//! being done. Nothing in this file writes: folders are tested with
//! `access(2)`, space with `statvfs(2)`, a server with one read-only
//! connection; the only programs started are well-known tools asked for
//! `--version` (never a step's own command).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::model::ByteSize;
use crate::pg::{self, PgConn};
use crate::template::RunFacts;

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// It holds.
    Pass,
    /// It holds, but the operator should look (e.g. data would be replaced).
    Warn,
    /// It does not hold: the run would fail here (or do harm).
    Fail,
    /// It cannot be known before the run (an earlier step makes what it needs).
    Unknown,
}

impl Verdict {
    /// The word shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One read-only check of a step.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What was checked, e.g. `program rsync`, `dest`, `postgres`.
    pub subject: String,
    /// What it found.
    pub verdict: Verdict,
    /// In words: the version, the free space, why it fails.
    pub detail: String,
    /// For a copy: what it would change in its destination tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeDiff>,
}

impl Check {
    /// A check without a tree.
    pub fn new(subject: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> Check {
        Check {
            subject: subject.into(),
            verdict,
            detail: detail.into(),
            tree: None,
        }
    }

    /// Passed.
    pub fn pass(subject: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(subject, Verdict::Pass, detail)
    }

    /// Failed.
    pub fn fail(subject: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(subject, Verdict::Fail, detail)
    }

    /// Cannot be known before the run.
    pub fn unknown(subject: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(subject, Verdict::Unknown, detail)
    }
}

/// A count of entries and their bytes (regular files and symlinks; a
/// folder counts as an entry of no bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Entries.
    pub count: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes = self.bytes.saturating_add(bytes);
    }
}

/// How an entry of a destination tree would change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Not in the destination: it would be created.
    Restored,
    /// In the destination, different: it would be replaced (content or attributes).
    Replaced,
    /// Only in the destination: it would be deleted.
    Deleted,
}

/// One entry that would change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TreeEntry {
    /// How.
    pub change: Change,
    /// Relative to the tree (as rsync prints it: a folder ends with `/`,
    /// unusual bytes as `\#ooo`).
    pub path: String,
    /// Its bytes (0 for a folder).
    pub bytes: u64,
}

/// What a copy would do to its destination tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TreeDiff {
    /// The destination.
    pub dest: String,
    /// Entries that would be created.
    pub restored: Tally,
    /// Entries that would be replaced.
    pub replaced: Tally,
    /// Entries that would be deleted.
    pub deleted: Tally,
    /// Source entries left as they are.
    pub unchanged: Tally,
    /// Every entry that would change, in rsync's order.
    pub entries: Vec<TreeEntry>,
}

impl TreeDiff {
    /// Counts an entry that would change.
    pub fn record(&mut self, change: Change, path: String, bytes: u64) {
        match change {
            Change::Restored => self.restored.add(bytes),
            Change::Replaced => self.replaced.add(bytes),
            Change::Deleted => self.deleted.add(bytes),
        }
        self.entries.push(TreeEntry {
            change,
            path,
            bytes,
        });
    }

    /// One line: the four counts with their bytes.
    pub fn summary(&self) -> String {
        let part = |word: &str, t: Tally| format!("{word} {} ({})", t.count, ByteSize(t.bytes));
        [
            part("restored", self.restored),
            part("replaced", self.replaced),
            part("deleted", self.deleted),
            part("unchanged", self.unchanged),
        ]
        .join(", ")
    }
}

/// What a step is probed with.
pub struct ProbeCtx<'a> {
    /// The step's id.
    pub step: &'a str,
    /// Relative paths are taken from here (the playbook's folder).
    pub work_dir: &'a Path,
    /// The `ward.*` facts the plan was rendered with.
    pub facts: &'a RunFacts,
    /// The step's environment (`env:`), rendered.
    pub env: &'a [(String, String)],
    /// What the steps this one waits for write during a run (resolved
    /// paths, with the step's id): a check of such a path cannot be
    /// decided before the run.
    pub earlier: &'a [(PathBuf, String)],
    /// The `run:`/`cmd:` steps this one waits for: what they write cannot
    /// be known, so a path missing now may be theirs to make.
    pub commands: &'a [String],
}

impl ProbeCtx<'_> {
    /// A path parameter resolved against the playbook's folder.
    pub fn path(&self, p: &str) -> PathBuf {
        self.work_dir.join(p)
    }

    /// The earlier step that writes `path`, in it or below it.
    pub fn made_by(&self, path: &Path) -> Option<&str> {
        self.earlier
            .iter()
            .find(|(w, _)| path.starts_with(w) || w.starts_with(path))
            .map(|(_, step)| step.as_str())
    }

    /// Why a path that does not exist now is not (yet) a failure: the
    /// earlier step that makes it, or the earlier commands that may.
    pub fn missing_but(&self, path: &Path) -> Option<String> {
        if let Some(step) = self.made_by(path) {
            return Some(format!("step `{step}` makes it during the run"));
        }
        let names: Vec<String> = self.commands.iter().map(|c| format!("`{c}`")).collect();
        match names.len() {
            0 => None,
            1 => Some(format!(
                "command step {} runs before and may make it (probe cannot tell what commands write)",
                names[0]
            )),
            _ => Some(format!(
                "command steps {} run before and may make it (probe cannot tell what commands write)",
                names.join(", ")
            )),
        }
    }

    /// The `PATH` the step's programs are looked up in.
    fn search_path(&self) -> Option<std::ffi::OsString> {
        self.env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.into())
            .or_else(|| std::env::var_os("PATH"))
    }
}

/// Where `program` would be found: a path with a `/` (against the
/// playbook's folder), else the first executable of that name on `PATH`.
pub fn find_program(program: &str, ctx: &ProbeCtx<'_>) -> Result<PathBuf, String> {
    if program.contains('/') {
        let p = ctx.path(program);
        return match std::fs::metadata(&p) {
            Ok(m) if m.is_file() && executable(&p) => Ok(p),
            Ok(m) if m.is_file() => Err(format!("{} is not executable", p.display())),
            Ok(_) => Err(format!("{} is not a file", p.display())),
            Err(e) => Err(format!("{}: {e}", p.display())),
        };
    }
    let path = ctx.search_path().unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| ctx.work_dir.join(d).join(program))
        .find(|p| p.is_file() && executable(p))
        .ok_or_else(|| format!("`{program}` is not on PATH"))
}

fn executable(p: &Path) -> bool {
    rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok()
}

/// A program a step starts: found and executable. With `version`, it is
/// also asked `--version` (only for well-known tools: a step's own
/// program is never started) and the first line is shown.
pub fn program(program: &str, version: bool, ctx: &ProbeCtx<'_>) -> Check {
    let subject = format!("program {program}");
    let found = match find_program(program, ctx) {
        Ok(p) => p,
        Err(why) => return Check::fail(subject, why),
    };
    if !version {
        return Check::pass(subject, found.display().to_string());
    }
    match version_of(&found) {
        Ok(v) => Check::pass(subject, format!("{} ({v})", found.display())),
        Err(why) => Check::new(
            subject,
            Verdict::Warn,
            format!("{}: `--version` {why}", found.display()),
        ),
    }
}

/// The first non-empty line `program --version` prints, waiting 10 s at most.
fn version_of(program: &Path) -> Result<String, String> {
    let mut child = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("does not start: {e}"))?;
    let mut out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.take(64 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() > Duration::from_secs(10) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("did not answer within 10s".into());
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let text = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned();
    if status.success() && !line.is_empty() {
        Ok(line)
    } else {
        Err(format!("failed ({status})"))
    }
}

/// The nearest folder at or above `path` that exists.
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors()
        .find(|a| !a.as_os_str().is_empty() && std::fs::symlink_metadata(a).is_ok())
}

/// A folder the step writes into: writable if it exists, else creatable
/// (its nearest existing parent writable). Tested with `access(2)`, which
/// also says when the file system is read-only; nothing is written.
pub fn writable_folder(subject: &str, dir: &Path, ctx: &ProbeCtx<'_>) -> Check {
    use rustix::fs::Access;
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Check::fail(subject, format!("{shown} is not a folder")),
        Ok(_) => {
            return match rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK) {
                Ok(()) => Check::pass(subject, format!("{shown} is writable")),
                Err(e) => Check::fail(subject, format!("{shown} is not writable: {e}")),
            };
        }
        Err(_) => {}
    }
    if let Some(step) = ctx.made_by(dir) {
        return Check::unknown(
            subject,
            format!("{shown} does not exist yet; step `{step}` makes it during the run"),
        );
    }
    let now = creatable_folder(subject, dir);
    match ctx.missing_but(dir) {
        // Not creatable now, but an earlier command may make it (or what is above it).
        Some(why) if now.verdict == Verdict::Fail => Check::unknown(
            subject,
            format!("{shown} does not exist yet; {why} (now: {})", now.detail),
        ),
        _ => now,
    }
}

/// A folder that does not exist: whether it can be created now.
fn creatable_folder(subject: &str, dir: &Path) -> Check {
    use rustix::fs::Access;
    let shown = dir.display();
    let Some(parent) = existing_ancestor(dir) else {
        return Check::fail(subject, format!("no folder above {shown} exists"));
    };
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => {}
        _ => {
            return Check::fail(
                subject,
                format!(
                    "{shown} cannot be created: {} is not a folder",
                    parent.display()
                ),
            );
        }
    }
    match rustix::fs::access(parent, Access::WRITE_OK | Access::EXEC_OK) {
        Ok(()) => Check::pass(
            subject,
            format!(
                "{shown} does not exist; it will be created in {}",
                parent.display()
            ),
        ),
        Err(e) => Check::fail(
            subject,
            format!(
                "{shown} does not exist and cannot be created: {} is not writable: {e}",
                parent.display()
            ),
        ),
    }
}

/// Free space where `path` is (or would be), against `need` bytes when
/// known (`why`: where the figure comes from).
pub fn free_space(path: &Path, need: Option<(u64, String)>) -> Check {
    let Some(at) = existing_ancestor(path) else {
        return Check::unknown(
            "free space",
            format!("no folder above {} exists", path.display()),
        );
    };
    let st = match rustix::fs::statvfs(at) {
        Ok(st) => st,
        Err(e) => {
            return Check::fail(
                "free space",
                format!("cannot look at {}: {e}", at.display()),
            );
        }
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    match need {
        None => Check::pass(
            "free space",
            format!("{} free at {}", ByteSize(free), at.display()),
        ),
        Some((need, why)) => {
            let text = format!(
                "{} free at {}, {} expected ({why})",
                ByteSize(free),
                at.display(),
                ByteSize(need)
            );
            if free >= need {
                Check::pass("free space", text)
            } else {
                Check::fail("free space", text)
            }
        }
    }
}

/// A file a step reads: it exists and is readable; its size.
pub fn readable_file(subject: &str, file: &Path, ctx: &ProbeCtx<'_>) -> Check {
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => match std::fs::File::open(file) {
            Ok(_) => Check::pass(
                subject,
                format!("{} ({})", file.display(), ByteSize(m.len())),
            ),
            Err(e) => Check::fail(subject, format!("{} cannot be read: {e}", file.display())),
        },
        Ok(_) => Check::fail(subject, format!("{} is not a file", file.display())),
        Err(_) if ctx.missing_but(file).is_some() => Check::unknown(
            subject,
            format!(
                "{} does not exist yet; {}",
                file.display(),
                ctx.missing_but(file).unwrap_or_default()
            ),
        ),
        Err(e) => Check::fail(subject, format!("{}: {e}", file.display())),
    }
}

/// A folder a step reads: it exists (following links, as the step does).
pub fn existing_folder(subject: &str, dir: &Path, ctx: &ProbeCtx<'_>) -> Check {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Check::pass(subject, format!("{} exists", dir.display())),
        Ok(_) => Check::fail(subject, format!("{} is not a folder", dir.display())),
        Err(_) if ctx.missing_but(dir).is_some() => Check::unknown(
            subject,
            format!(
                "{} does not exist yet; {}",
                dir.display(),
                ctx.missing_but(dir).unwrap_or_default()
            ),
        ),
        Err(e) => Check::fail(subject, format!("{}: {e}", dir.display())),
    }
}

/// What a read-only session on a server found.
pub struct PgFound {
    /// `SHOW server_version`.
    pub version: String,
    /// The first column of each further query's rows.
    pub rows: Vec<Vec<String>>,
}

/// Connects as the step would (its parameters, its `env`), reads the
/// server's version and runs `queries` (read-only ones) in a read-only
/// transaction. The error is in words, without any password.
pub fn pg_read(conn: &PgConn, queries: &[&str], ctx: &ProbeCtx<'_>) -> Result<PgFound, String> {
    let mut cfg = pg::native_config(conn, ctx.env, ctx.work_dir).map_err(|e| e.to_string())?;
    cfg.connect_timeout(Duration::from_secs(10));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    // The connect timeout covers the socket only: a server that accepts
    // and then never answers (overloaded, a proxy, a wrong port on
    // something else), or a query held by a lock, would hang the probe.
    let work = async {
        let (client, connection) = cfg.connect(tokio_postgres::NoTls).await.map_err(|e| {
            format!(
                "cannot connect to {}: {}",
                conn.describe(),
                pg::native_error(&e)
            )
        })?;
        let task = tokio::spawn(connection);
        let first = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<String> {
            msgs.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect()
        };
        let run = |sql: String| {
            let client = &client;
            async move {
                client
                    .simple_query(&sql)
                    .await
                    .map_err(|e| format!("query failed: {}", pg::native_error(&e)))
            }
        };
        run("BEGIN READ ONLY".into()).await?;
        let version = first(run("SHOW server_version".into()).await?)
            .into_iter()
            .next()
            .unwrap_or_default();
        let mut rows = Vec::new();
        for q in queries {
            rows.push(first(run((*q).to_owned()).await?));
        }
        run("ROLLBACK".into()).await?;
        drop(client);
        let _ = task.await;
        Ok(PgFound { version, rows })
    };
    // (The timer is made inside the runtime: it needs its clock.)
    let whole = runtime.block_on(async { tokio::time::timeout(PG_PROBE_TIMEOUT, work).await });
    whole.unwrap_or_else(|_| {
        Err(format!(
            "{} did not answer within {}s (the server is overloaded, or what listens there \
             is not PostgreSQL); nothing was changed",
            conn.describe(),
            PG_PROBE_TIMEOUT.as_secs()
        ))
    })
}

/// How long a probe waits for a server, connecting and querying together.
const PG_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// The server a step connects to: reachable with its credentials, and its version.
pub fn pg_server(conn: &PgConn, ctx: &ProbeCtx<'_>) -> Check {
    match pg_read(conn, &[], ctx) {
        Ok(found) => Check::pass(
            "postgres",
            format!("{}: PostgreSQL {}", conn.describe(), found.version),
        ),
        Err(why) => Check::fail("postgres", why),
    }
}

/// A service's stop or start: the systemd unit known to systemctl
/// (`systemctl show`, read-only), or the command's program present (never
/// started).
pub fn service(unit: Option<&str>, command: Option<&[String]>, ctx: &ProbeCtx<'_>) -> Check {
    match (unit, command) {
        (Some(unit), _) => {
            let systemctl = match find_program("systemctl", ctx) {
                Ok(p) => p,
                Err(why) => return Check::fail(format!("unit {unit}"), why),
            };
            let out = Command::new(&systemctl)
                .args(["show", "--property=LoadState", "--value", "--", unit])
                .stdin(Stdio::null())
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    let state = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                    if state == "loaded" {
                        Check::pass(format!("unit {unit}"), "known to systemd (loaded)")
                    } else {
                        Check::fail(
                            format!("unit {unit}"),
                            format!("systemd does not know it (LoadState={state})"),
                        )
                    }
                }
                Ok(o) => Check::fail(
                    format!("unit {unit}"),
                    format!(
                        "`systemctl show` failed: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ),
                ),
                Err(e) => Check::fail(format!("unit {unit}"), format!("systemctl: {e}")),
            }
        }
        (_, Some(argv)) => match argv.first() {
            Some(first) => program(first, false, ctx),
            None => Check::fail("command", "empty command"),
        },
        _ => Check::fail("command", "no `unit` and no command"),
    }
}

/// A command a `cmd:` step (or a service) runs: its program present and
/// executable; for `bash`/`sh` and a script argument, the script readable.
/// Nothing is started.
pub fn command(argv: &[String], ctx: &ProbeCtx<'_>) -> Vec<Check> {
    let Some(first) = argv.first() else {
        return vec![Check::fail("command", "empty command")];
    };
    let mut out = vec![program(first, false, ctx)];
    let shell = Path::new(first)
        .file_name()
        .is_some_and(|n| n == "bash" || n == "sh");
    if shell && let Some(script) = argv.get(1).filter(|a| !a.starts_with('-')) {
        out.push(readable_file("script", &ctx.path(script), ctx));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(
        dir: &'a Path,
        facts: &'a RunFacts,
        earlier: &'a [(PathBuf, String)],
    ) -> ProbeCtx<'a> {
        ProbeCtx {
            step: "s",
            work_dir: dir,
            facts,
            env: &[],
            earlier,
            commands: &[],
        }
    }

    #[test]
    fn folders_are_judged_without_writing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let facts = RunFacts::new(
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .expect("date"),
            "r",
            &dir.path().join("p.yml"),
        );
        let earlier = [(dir.path().join("made"), "maker".to_owned())];
        let c = ctx(dir.path(), &facts, &earlier);
        assert_eq!(
            writable_folder("dest", dir.path(), &c).verdict,
            Verdict::Pass
        );
        let new = writable_folder("dest", &dir.path().join("a/b"), &c);
        assert_eq!(new.verdict, Verdict::Pass, "{}", new.detail);
        assert!(new.detail.contains("will be created"), "{}", new.detail);
        let later = writable_folder("dest", &dir.path().join("made/x"), &c);
        assert_eq!(later.verdict, Verdict::Unknown);
        assert!(later.detail.contains("`maker`"), "{}", later.detail);
        std::fs::write(dir.path().join("f"), "x").expect("file");
        assert_eq!(
            writable_folder("dest", &dir.path().join("f/x"), &c).verdict,
            Verdict::Fail
        );
        // Nothing was made.
        assert!(!dir.path().join("a").exists());
        let none = program("surely-not-a-program-ward", true, &c);
        assert_eq!(none.verdict, Verdict::Fail);
        assert!(none.detail.contains("not on PATH"), "{}", none.detail);
        // After a command step, a missing folder may be the command's to
        // make: unknown, naming it; one that exists is still judged.
        let commands = ["fill".to_owned()];
        let c = ProbeCtx {
            commands: &commands,
            ..ctx(dir.path(), &facts, &earlier)
        };
        let maybe = existing_folder("src", &dir.path().join("filled"), &c);
        assert_eq!(maybe.verdict, Verdict::Unknown, "{}", maybe.detail);
        assert!(maybe.detail.contains("`fill`"), "{}", maybe.detail);
        assert_eq!(
            existing_folder("src", dir.path(), &c).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn a_tree_summary_has_the_four_counts() {
        let mut t = TreeDiff::default();
        t.record(Change::Restored, "a".into(), 4);
        t.record(Change::Deleted, "b".into(), 7);
        t.unchanged = Tally { count: 2, bytes: 5 };
        assert_eq!(
            t.summary(),
            "restored 1 (4B), replaced 0 (0B), deleted 1 (7B), unchanged 2 (5B)"
        );
    }
}
