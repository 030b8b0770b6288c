//! `pg.dumpall`: dump a whole PostgreSQL cluster into a compressed file.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::compress::encoder;
use super::manifest::SIDECAR_SUFFIX;
use super::params::{Compression, PgConn, forbidden_args, non_empty};
use super::{
    Action, ActionCtx, ActionError, ActionOutput, ActionResult, AtomicFile, ParamProblem,
    describe_status, pg,
};

/// Runs `pg_dumpall` and compresses its output in-process into `dest`
/// (temp name, fsync, rename, mode 0600); both the dump's and the
/// compressor's status are checked.
pub struct PgDumpall;

/// Parameters of `pg.dumpall`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgDumpallParams {
    /// The file to write, e.g. `/backup/db/fossology.sql.gz`.
    pub dest: String,
    /// How to reach the server.
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
    /// Extra arguments for pg_dumpall (e.g. `[--clean]`).
    #[serde(default)]
    pub args: Vec<String>,
    /// The pg_dumpall program (default: `pg_dumpall` on PATH).
    pub program: Option<String>,
}

fn default_min_bytes() -> u64 {
    1024
}

/// pg_dumpall's short options that take a value (`-Ufoo`: `foo` is the
/// value, not more options).
const SHORT_WITH_VALUE: &str = "fEdShlpU";

/// Arguments that would break the in-process pipeline or leak a password.
const FORBIDDEN_ARGS: &[(&str, &str)] = &[
    ("-f", "ward writes the file itself (atomically); remove it"),
    (
        "--file",
        "ward writes the file itself (atomically); remove it",
    ),
    (
        "-W",
        "a password prompt would hang an unattended run; use `db.passfile` or PGPASSWORD in `env`",
    ),
    (
        "--password",
        "a password prompt would hang an unattended run; use `db.passfile` or PGPASSWORD in `env`",
    ),
    (
        "-d",
        "give the connection in `db` (a connection string in `db.dbname`): it reaches pg_dumpall \
         through the environment, where a password is not visible to other users",
    ),
    (
        "--dbname",
        "give the connection in `db` (a connection string in `db.dbname`): it reaches pg_dumpall \
         through the environment, where a password is not visible to other users",
    ),
    ("-l", "give the database in `db.dbname`"),
    ("--database", "give the database in `db.dbname`"),
];

impl Action for PgDumpall {
    const NAME: &'static str = "pg.dumpall";
    const SUMMARY: &'static str =
        "dump every database of a PostgreSQL cluster into a compressed file";
    type Params = PgDumpallParams;

    fn check(p: &PgDumpallParams) -> Vec<ParamProblem> {
        let mut out: Vec<ParamProblem> = non_empty("dest", &p.dest).into_iter().collect();
        if p.dest.ends_with('/') {
            out.push(
                ParamProblem::new("dest", "`dest` must be a file name, not a folder")
                    .help("e.g. `/backup/db/dump.sql.gz`"),
            );
        }
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

    fn run(p: &PgDumpallParams, ctx: &ActionCtx) -> ActionResult {
        let dest = ctx.path(&p.dest);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ActionError::new(format!("cannot create {}: {e}", dir.display())))?;
        }
        // Connection parameters go through the environment (never argv);
        // only the first database is an option, as pg_dumpall ignores
        // PGDATABASE. `-w`: never prompt for a password.
        let pg::ToolConn { env, dbname } = pg::tool_env(&p.db, ctx)?;
        let mut argv = vec![
            p.program.clone().unwrap_or_else(|| "pg_dumpall".into()),
            "-w".into(),
        ];
        if let Some(d) = dbname {
            argv.push(format!("--database={d}"));
        }
        argv.extend(p.args.iter().cloned());
        ctx.log(format!(
            "running: {} | {} > {}",
            argv.join(" "),
            p.compress.as_str(),
            dest.display()
        ));
        let mut out = AtomicFile::create(&dest, 0o600)?;
        let sink = Hashing {
            file: out.file().try_clone().map_err(|e| {
                ActionError::new(format!("cannot open {} for writing: {e}", dest.display()))
            })?,
            dest: dest.clone(),
            state: Arc::new(Mutex::new(HashState::default())),
        };
        let state = sink.state.clone();
        // The first error of ward's own write to the file, if any: it names
        // the real cause (e.g. a full disk) when the compressor or the
        // pipeline fails after it.
        let write_error = || state.lock().ok().and_then(|s| s.write_error.clone());
        let mut running = ctx.spawn(&argv, &env, true)?;
        let mut stdout = running
            .child
            .stdout
            .take()
            .ok_or_else(|| ActionError::new("pg_dumpall has no output pipe"))?;
        // Compress on this thread while a watchdog stops the dump if the step is cancelled.
        let done = std::sync::atomic::AtomicBool::new(false);
        let compressed: Result<(u64, String), Stage> = std::thread::scope(|scope| {
            let group = &running;
            let done = &done;
            scope.spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    if ctx.cancelled() {
                        group.signal(rustix::process::Signal::TERM);
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
            let result = (|| {
                let mut enc =
                    encoder(p.compress, p.level, ctx.threads, sink).map_err(Stage::Out)?;
                let mut buf = vec![0u8; 1 << 20];
                let mut raw: u64 = 0;
                let mut head = Vec::new();
                loop {
                    let n = stdout.read(&mut buf).map_err(Stage::In)?;
                    if n == 0 {
                        break;
                    }
                    if head.len() < 65536 {
                        head.extend_from_slice(&buf[..n.min(65536 - head.len())]);
                    }
                    raw += n as u64;
                    enc.write_all(&buf[..n]).map_err(Stage::Out)?;
                }
                enc.finish().map_err(Stage::Out)?;
                Ok((raw, server_version(&head)))
            })();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            result
        });
        drop(stdout);
        if let Err(Stage::Out(_)) = &compressed {
            // ward stopped reading: the dump would die of a broken pipe at
            // its next write, or go on with work nobody reads. Stop it now.
            running.signal(rustix::process::Signal::TERM);
        }
        let status = running.wait(ctx)?;
        // Both stages are checked. A failure to write or compress the file
        // comes first: the dump's own failure is then only its broken pipe.
        let (raw, version) = match compressed {
            Err(Stage::Out(e)) => {
                let cause = write_error()
                    .unwrap_or_else(|| format!("cannot compress into {}: {e}", dest.display()));
                return Err(ActionError::new(format!(
                    "{cause}; the partial file was removed, an earlier dump there is unchanged"
                )));
            }
            // Stopped by the watchdog: say so, not "killed by signal 15".
            _ if ctx.cancelled() => return Err(ActionError::stopped()),
            _ if !status.success() => {
                return Err(ActionError::new(format!(
                    "pg_dumpall failed ({}); nothing was written to {} (see the step's log)",
                    describe_status(&status),
                    dest.display()
                )));
            }
            Err(Stage::In(e)) => {
                return Err(ActionError::new(format!(
                    "cannot read pg_dumpall's output: {e}; nothing was written to {}",
                    dest.display()
                )));
            }
            Ok(done) => done,
        };
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
        });
        let sidecar = dest.with_file_name(format!("{file_name}{SIDECAR_SUFFIX}"));
        pg::write_file(
            &sidecar,
            serde_json::to_string_pretty(&info)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        Ok(ActionOutput {
            summary: Some(format!(
                "{}: {size} bytes ({raw} bytes of SQL), sha256 {}",
                dest.display(),
                &sha256[..16]
            )),
            details: info,
            ..ActionOutput::default()
        })
    }

    fn describe(p: &PgDumpallParams) -> String {
        let level = p.level.map(|l| format!(" -{l}")).unwrap_or_default();
        format!(
            "pg_dumpall ({}) | {}{level} > {} (atomic, 0600, at least {} bytes)",
            p.db.describe(),
            p.compress.as_str(),
            p.dest,
            p.min_bytes
        )
    }
}

/// Where the pipeline broke: reading the dump, or compressing and writing it.
enum Stage {
    In(std::io::Error),
    Out(std::io::Error),
}

/// What [`Hashing`] shares with the action.
#[derive(Default)]
struct HashState {
    hash: Sha256,
    size: u64,
    /// The first write error, as the message for the operator.
    write_error: Option<String>,
}

/// Counts and hashes what goes into the dump file, and keeps its first
/// write error with the path (`dest`).
struct Hashing {
    file: std::fs::File,
    dest: std::path::PathBuf,
    state: Arc<Mutex<HashState>>,
}

impl Hashing {
    fn failed(&self, e: std::io::Error) -> std::io::Error {
        if let Ok(mut s) = self.state.lock() {
            s.write_error
                .get_or_insert_with(|| format!("cannot write {}: {e}", self.dest.display()));
        }
        e
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf).map_err(|e| self.failed(e))?;
        if let Ok(mut s) = self.state.lock() {
            s.hash.update(&buf[..n]);
            s.size += n as u64;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().map_err(|e| self.failed(e))
    }
}

/// The server version from pg_dumpall's header (`-- Dumped from database version 15.18 ...`).
fn server_version(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| l.strip_prefix("-- Dumped from database version "))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}
