//! `pg.dump`: dump every database at the consistent point a `pg.snapshot`
//! step holds, into one compressed file that `pg.restore` loads exactly
//! like a `pg.dumpall` file.
//!
//! The file is `pg_dumpall --globals-only` (roles, tablespaces: read live,
//! as no snapshot covers them) followed, per database, by `pg_dump
//! --snapshot=<id>` in plain format: with `--create` (and `--clean` when
//! asked), except for `template1` and `postgres`, which exist in every
//! cluster and get a `\connect` line instead, as `pg_dumpall` does.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::compress::{Finish, encoder};
use super::manifest::SIDECAR_SUFFIX;
use super::params::{Compression, PgConn, forbidden_args, non_empty};
use super::pg_snapshot::{self, DbPoint};
use super::{
    Action, ActionCtx, ActionError, ActionOutput, ActionResult, AtomicFile, ParamProblem,
    describe_status, pg,
};

/// Dumps the databases of a held point (see the module docs).
pub struct PgDump;

/// Parameters of `pg.dump`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgDumpParams {
    /// The file to write, e.g. `/backup/db/fossology.sql.gz`.
    pub dest: String,
    /// The id of the `pg.snapshot` step whose point is dumped (a step this
    /// one needs).
    pub snapshot: String,
    /// How to reach the server (the one the snapshot step took its point of).
    #[serde(default)]
    pub db: PgConn,
    /// `gzip` (default), `pgzip` (parallel gzip), `zstd` or `none`.
    #[serde(default)]
    pub compress: Compression,
    /// Compression level (gzip 1-9, zstd 1-19).
    pub level: Option<u32>,
    /// A dump smaller than this many bytes (uncompressed) fails the step.
    #[serde(default = "default_min_bytes")]
    pub min_bytes: u64,
    /// Extra arguments for pg_dumpall (globals) and pg_dump (each database),
    /// e.g. `[--clean, --if-exists]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// The folder holding `pg_dump` and `pg_dumpall` (default: PATH).
    pub bin_dir: Option<String>,
}

fn default_min_bytes() -> u64 {
    1024
}

/// Short options of pg_dump or pg_dumpall that take a value.
const SHORT_WITH_VALUE: &str = "fFjnNtTeEhpUSZdl";

const FILE: &str = "ward writes the file itself (atomically); remove it";
const PROMPT: &str =
    "a password prompt would hang an unattended run; use `db.passfile` or PGPASSWORD in `env`";
const CONN: &str = "give the connection in `db`: it reaches pg_dump through the environment, \
                    where a password is not visible to other users";
const SHAPE: &str = "ward chooses it: the file must read like a pg_dumpall file";
const WHICH: &str = "the databases are the ones the `pg.snapshot` step took (its `databases`)";

/// Arguments that would break the file's shape, the point, or leak a password.
const FORBIDDEN_ARGS: &[(&str, &str)] = &[
    ("-f", FILE),
    ("--file", FILE),
    ("-W", PROMPT),
    ("--password", PROMPT),
    ("-d", CONN),
    ("--dbname", CONN),
    ("-l", CONN),
    ("--database", CONN),
    ("-F", SHAPE),
    ("--format", SHAPE),
    ("-C", SHAPE),
    ("--create", SHAPE),
    ("-j", SHAPE),
    ("--jobs", SHAPE),
    (
        "--snapshot",
        "the snapshot comes from the `pg.snapshot` step",
    ),
    ("-g", SHAPE),
    ("--globals-only", SHAPE),
    ("-r", SHAPE),
    ("--roles-only", SHAPE),
    ("-t", SHAPE),
    ("--tablespaces-only", SHAPE),
    ("--exclude-database", WHICH),
];

impl Action for PgDump {
    const NAME: &'static str = "pg.dump";
    const SUMMARY: &'static str =
        "dump every database at a pg.snapshot's point into a pg_dumpall-style compressed file";
    type Params = PgDumpParams;

    fn check(p: &PgDumpParams) -> Vec<ParamProblem> {
        let mut out: Vec<ParamProblem> = non_empty("dest", &p.dest).into_iter().collect();
        if p.dest.ends_with('/') {
            out.push(
                ParamProblem::new("dest", "`dest` must be a file name, not a folder")
                    .help("e.g. `/backup/db/dump.sql.gz`"),
            );
        }
        out.extend(non_empty("snapshot", &p.snapshot));
        out.extend(p.bin_dir.as_deref().and_then(|d| non_empty("bin_dir", d)));
        if let Some(level) = p.level {
            let range = p.compress.levels();
            if !range.contains(&level) {
                out.push(ParamProblem::new(
                    "level",
                    format!(
                        "level {level} is not valid for {}: use {}-{}",
                        p.compress.as_str(),
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        out.extend(forbidden_args(
            "args",
            &p.args,
            FORBIDDEN_ARGS,
            SHORT_WITH_VALUE,
        ));
        out.extend(pg::conn_problems(&p.db));
        out
    }

    fn run(p: &PgDumpParams, ctx: &ActionCtx) -> ActionResult {
        let Some(points) = pg_snapshot::held(&ctx.run_id, &p.snapshot) else {
            return Err(ActionError::new(format!(
                "the consistent point of step `{}` is not held by this ward (it ends with the \
                 process that took it); nothing was dumped. Run the playbook again (or resume \
                 it: the window that takes the point runs again)",
                p.snapshot
            )));
        };
        let dest = ctx.path(&p.dest);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ActionError::new(format!("cannot create {}: {e}", dir.display())))?;
        }
        let pg::ToolConn { env, dbname } = pg::tool_env(&p.db, ctx)?;
        let program = |name: &str| match &p.bin_dir {
            Some(dir) => ctx.path(dir).join(name).display().to_string(),
            None => name.to_owned(),
        };
        let clean = !forbidden_args(
            "args",
            &p.args,
            &[("-c", ""), ("--clean", "")],
            SHORT_WITH_VALUE,
        )
        .is_empty();
        let mut out = AtomicFile::create(&dest, 0o600)?;
        let sink = Sink {
            file: out
                .file()
                .try_clone()
                .map_err(|e| ActionError::new(format!("cannot open {}: {e}", dest.display())))?,
            dest: dest.clone(),
            state: Arc::new(Mutex::new(SinkState::default())),
        };
        let state = sink.state.clone();
        let write_error = || state.lock().ok().and_then(|s| s.write_error.clone());
        let mut enc = encoder(p.compress, p.level, ctx.threads, sink)
            .map_err(|e| ActionError::new(format!("cannot start the compressor: {e}")))?;
        let mut raw: u64 = 0;
        let mut version = String::new();
        ctx.log(format!(
            "dumping {} at the point of step `{}` | {} > {}",
            points
                .iter()
                .map(|pt| pt.db.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            p.snapshot,
            p.compress.as_str(),
            dest.display()
        ));
        let fail = |e: Stage, what: &str| -> ActionError {
            match e {
                Stage::Out(e) => {
                    let cause = write_error()
                        .unwrap_or_else(|| format!("cannot compress into {}: {e}", dest.display()));
                    ActionError::new(format!(
                        "{cause}; the partial file was removed, an earlier dump there is unchanged"
                    ))
                }
                Stage::Stopped => ActionError::stopped(),
                Stage::Failed(m) => ActionError::new(format!(
                    "{what}: {m}; nothing was written to {} (see the step's log)",
                    dest.display()
                )),
            }
        };

        // Globals: roles and tablespaces, read live (no snapshot covers them).
        let mut argv = vec![program("pg_dumpall"), "-w".into(), "--globals-only".into()];
        if let Some(d) = &dbname {
            argv.push(format!("--database={d}"));
        }
        argv.extend(p.args.iter().cloned());
        raw += stream(ctx, &argv, &env, &mut enc, None)
            .map_err(|e| fail(e, "pg_dumpall --globals-only failed"))?;

        for DbPoint { db, snapshot } in &points {
            ctx.check()?;
            let template = db == "template1" || db == "postgres";
            let mut head = format!("--\n-- Database \"{}\" dump\n--\n\n", comment_safe(db));
            if template && !clean {
                head.push_str(&format!("\\connect {db}\n\n"));
            }
            enc.write_all(head.as_bytes())
                .map_err(|e| fail(Stage::Out(e), ""))?;
            raw += head.len() as u64;
            // The database reaches pg_dump through PGDATABASE (never read as
            // a connection string or an option).
            let mut db_env = env.clone();
            db_env.retain(|(k, _)| k != "PGDATABASE");
            db_env.push(("PGDATABASE".into(), db.clone()));
            let mut argv = vec![
                program("pg_dump"),
                "-w".into(),
                "--format=plain".into(),
                format!("--snapshot={snapshot}"),
            ];
            // With `--clean` (in `args`), template1 and postgres are dropped
            // and created again too, as pg_dumpall has them.
            if !template || clean {
                argv.push("--create".into());
            }
            argv.extend(p.args.iter().cloned());
            let mut header = Vec::new();
            raw += stream(ctx, &argv, &db_env, &mut enc, Some(&mut header))
                .map_err(|e| fail(e, &format!("pg_dump of database {db:?} failed")))?;
            if version.is_empty() {
                version = server_version(&header);
            }
        }
        let tail = "--\n-- PostgreSQL database cluster dump complete (ward pg.dump)\n--\n\n";
        enc.write_all(tail.as_bytes())
            .map_err(|e| fail(Stage::Out(e), ""))?;
        raw += tail.len() as u64;
        enc.finish().map_err(|e| fail(Stage::Out(e), ""))?;
        if raw < p.min_bytes {
            return Err(ActionError::new(format!(
                "the dump is only {raw} bytes, less than min_bytes {}; nothing was written to {}",
                p.min_bytes,
                dest.display()
            )));
        }
        out.commit()?;
        let (hash, size) = {
            let guard = state
                .lock()
                .map_err(|_| ActionError::new("hash state poisoned"))?;
            (guard.hash.clone().finalize(), guard.size)
        };
        let sha256: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = serde_json::json!({
            "file": file_name,
            "sha256": sha256,
            "size": size,
            "raw_bytes": raw,
            "compression": p.compress.as_str(),
            "server_version": if version.is_empty() { None } else { Some(version.clone()) },
            "created": chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
            "host": ctx.facts.host,
            "run_id": ctx.run_id,
            "point": {
                "step": p.snapshot,
                "databases": points
                    .iter()
                    .map(|pt| serde_json::json!({ "db": pt.db, "snapshot": pt.snapshot }))
                    .collect::<Vec<_>>(),
            },
        });
        let sidecar = dest.with_file_name(format!("{file_name}{SIDECAR_SUFFIX}"));
        pg::write_file(
            &sidecar,
            serde_json::to_string_pretty(&info)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        // The point has served: end its transactions now rather than at exit.
        let warning = match pg_snapshot::release(&ctx.run_id, &p.snapshot) {
            Ok(_) => None,
            Err(e) => Some(format!(
                "the point of `{}` was not ended cleanly: {e}",
                p.snapshot
            )),
        };
        ctx.log(format!("the point of step `{}` was released", p.snapshot));
        Ok(ActionOutput {
            summary: Some(format!(
                "{}: {size} bytes ({raw} bytes of SQL, {} at the point of `{}`), sha256 {}",
                dest.display(),
                match points.len() {
                    1 => "1 database".to_owned(),
                    n => format!("{n} databases"),
                },
                p.snapshot,
                &sha256[..16]
            )),
            details: info,
            warning,
            ..ActionOutput::default()
        })
    }

    fn describe(p: &PgDumpParams) -> String {
        let level = p.level.map(|l| format!(" -{l}")).unwrap_or_default();
        format!(
            "pg_dumpall --globals-only + pg_dump --snapshot (point of `{}`) ({}) | {}{level} > {} \
             (atomic, 0600, at least {} bytes)",
            p.snapshot,
            p.db.describe(),
            p.compress.as_str(),
            p.dest,
            p.min_bytes
        )
    }
}

/// Why one program's part of the file failed.
enum Stage {
    /// Compressing or writing the file.
    Out(std::io::Error),
    /// The step was told to stop.
    Stopped,
    /// The program failed or its output could not be read.
    Failed(String),
}

/// Runs `argv` and copies its stdout into `enc`; returns the bytes copied.
/// The first 64 KiB go to `head` if given. The program's status is checked;
/// a failure to write stops it.
fn stream(
    ctx: &ActionCtx,
    argv: &[String],
    env: &[(String, String)],
    enc: &mut Box<dyn Finish>,
    mut head: Option<&mut Vec<u8>>,
) -> Result<u64, Stage> {
    ctx.log(format!("running: {}", argv.join(" ")));
    let mut running = ctx.spawn(argv, env, true).map_err(|e| Stage::Failed(e.0))?;
    let mut stdout = running
        .child
        .stdout
        .take()
        .ok_or_else(|| Stage::Failed(format!("{} has no output pipe", argv[0])))?;
    let done = AtomicBool::new(false);
    let copied: Result<u64, Stage> = std::thread::scope(|scope| {
        let group = &running;
        let done = &done;
        scope.spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if ctx.cancelled() {
                    group.signal(rustix::process::Signal::TERM);
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        let result = (|| {
            let mut buf = vec![0u8; 1 << 20];
            let mut n_total = 0u64;
            loop {
                let n = stdout.read(&mut buf).map_err(|e| {
                    Stage::Failed(format!("cannot read the output of {}: {e}", argv[0]))
                })?;
                if n == 0 {
                    return Ok(n_total);
                }
                if let Some(h) = head.as_deref_mut()
                    && h.len() < 65536
                {
                    h.extend_from_slice(&buf[..n.min(65536 - h.len())]);
                }
                n_total += n as u64;
                enc.write_all(&buf[..n]).map_err(Stage::Out)?;
            }
        })();
        done.store(true, Ordering::Relaxed);
        result
    });
    drop(stdout);
    if let Err(Stage::Out(_)) = &copied {
        running.signal(rustix::process::Signal::TERM);
    }
    let status = running.wait(ctx).map_err(|e| Stage::Failed(e.0))?;
    match copied {
        Err(Stage::Out(e)) => Err(Stage::Out(e)),
        _ if ctx.cancelled() => Err(Stage::Stopped),
        _ if !status.success() => Err(Stage::Failed(describe_status(&status))),
        other => other,
    }
}

/// A database name as it may stand in an SQL comment line.
fn comment_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The server version from pg_dump's header.
fn server_version(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| l.strip_prefix("-- Dumped from database version "))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// What [`Sink`] shares with the action.
#[derive(Default)]
struct SinkState {
    hash: Sha256,
    size: u64,
    /// The first write error, as the message for the operator.
    write_error: Option<String>,
}

/// Counts and hashes what goes into the dump file, and keeps its first
/// write error with the path.
struct Sink {
    file: std::fs::File,
    dest: std::path::PathBuf,
    state: Arc<Mutex<SinkState>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.write(buf) {
            Ok(n) => {
                if let Ok(mut s) = self.state.lock() {
                    s.hash.update(&buf[..n]);
                    s.size += n as u64;
                }
                Ok(n)
            }
            Err(e) => {
                if let Ok(mut s) = self.state.lock() {
                    s.write_error.get_or_insert_with(|| {
                        format!("cannot write {}: {e}", self.dest.display())
                    });
                }
                Err(e)
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(args: &[&str]) -> PgDumpParams {
        PgDumpParams {
            dest: "db.sql.gz".into(),
            snapshot: "point".into(),
            db: PgConn::default(),
            compress: Compression::Gzip,
            level: None,
            min_bytes: 1,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            bin_dir: None,
        }
    }

    #[test]
    fn args_that_change_the_file_are_refused() {
        for bad in [
            "--create",
            "-Fc",
            "--snapshot=x",
            "-j4",
            "-g",
            "--file=x",
            "-dx",
        ] {
            assert!(!PgDump::check(&params(&[bad])).is_empty(), "{bad}");
        }
        for fine in ["--clean", "--if-exists", "-c", "--no-owner", "-Upostgres"] {
            assert!(PgDump::check(&params(&[fine])).is_empty(), "{fine}");
        }
    }

    #[test]
    fn comment_names_cannot_break_the_line() {
        assert_eq!(comment_safe("a\nDROP"), "a?DROP");
    }
}
