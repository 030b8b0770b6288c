//! `pg.dumpall`: dump a whole PostgreSQL cluster into a compressed file.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{PgConn, conn_problems, file_problems, forbidden_args};
use super::{Action, ActionCtx, ActionOutput, ActionResult, ParamProblem};
use crate::artifact::{DumpFile, Written};
use crate::compress::Compression;
use crate::pg;

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

/// Arguments that leave databases' data out of the dump (its row
/// estimates would not describe it).
const PARTIAL: &[(&str, &str)] = &[
    ("-g", ""),
    ("--globals-only", ""),
    ("-r", ""),
    ("--roles-only", ""),
    ("-t", ""),
    ("--tablespaces-only", ""),
    ("-s", ""),
    ("--schema-only", ""),
    ("--exclude-database", ""),
];

impl Action for PgDumpall {
    const NAME: &'static str = "pg.dumpall";
    const SUMMARY: &'static str =
        "dump every database of a PostgreSQL cluster into a compressed file";
    type Params = PgDumpallParams;

    fn check(p: &PgDumpallParams) -> Vec<ParamProblem> {
        let mut out = file_problems(&p.dest, p.compress, p.level);
        out.extend(forbidden_args(
            "args",
            &p.args,
            FORBIDDEN_ARGS,
            SHORT_WITH_VALUE,
        ));
        out.extend(conn_problems(&p.db));
        out
    }

    fn perform(p: &PgDumpallParams, ctx: &ActionCtx) -> ActionResult {
        let dest = ctx.path(&p.dest);
        // Connection parameters go through the environment (never argv);
        // only the first database is an option, as pg_dumpall ignores
        // PGDATABASE. `-w`: never prompt for a password.
        let pg::ToolConn { env, dbname } = pg::tool_env(&p.db, &ctx.attempt.cwd)?;
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
        // The databases and their tables' row estimates, read just before
        // the dump (cheap: catalogs only), for a rehearsal to compare
        // restored row counts with. Not the dump's business to fail on.
        let whole = forbidden_args("args", &p.args, PARTIAL, SHORT_WITH_VALUE).is_empty();
        // Another `program` (a wrapper, `ssh ...`) may reach another server
        // than `db` says: its estimates would describe the wrong cluster.
        let direct = p.program.as_deref().is_none_or(|prog| {
            std::path::Path::new(prog).file_name() == Some("pg_dumpall".as_ref())
        });
        let estimates = match pg::native_config(&p.db, &ctx.attempt.env, &ctx.attempt.cwd) {
            Ok(cfg) if whole && direct => pg::cluster_row_estimates(&cfg),
            Ok(_) if !direct => Err("`program` is not pg_dumpall itself".to_owned()),
            Ok(_) => Err("the dump is not of every database's data".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        let mut extra = serde_json::Map::new();
        match estimates {
            Ok(e) => {
                extra.insert("databases".into(), serde_json::json!(e));
            }
            Err(e) => ctx.log(format!("no row estimates in the side file: {e}")),
        }
        // No total: how big a dump comes out is known when it is done.
        ctx.progress().restart("dumping", None, None);
        let mut file = DumpFile::create(&dest, p.compress, p.level, ctx.threads)?
            .counted(ctx.progress_handle());
        if let Err(e) = file.stream(
            || ctx.spawn(&argv, &env, true).map_err(|e| e.0),
            ctx.cancel_cell(),
            ctx.attempt.kill_grace,
        ) {
            return Err(file.error(e, "pg_dumpall failed").into());
        }
        let Written {
            info,
            sha256,
            size,
            raw,
        } = file.finish(p.min_bytes, ctx.origin(extra))?;
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

    fn inspect(
        p: &PgDumpallParams,
        ctx: &super::inspect::ProbeCtx<'_>,
    ) -> Vec<super::inspect::Check> {
        use super::inspect;
        let program = p.program.clone().unwrap_or_else(|| "pg_dumpall".into());
        let dest = ctx.path(&p.dest);
        let folder = dest.parent().unwrap_or(&dest).to_path_buf();
        // The last dump at `dest` is the best guess of the next one's size.
        let need = std::fs::metadata(&dest).ok().map(|m| {
            (
                m.len(),
                format!("the size of the dump now at {}", dest.display()),
            )
        });
        vec![
            inspect::program(&program, true, ctx),
            inspect::pg_server(&p.db, ctx),
            inspect::writable_folder("dest", &folder, ctx),
            inspect::free_space(&folder, need),
        ]
    }

    fn writes(p: &PgDumpallParams) -> Vec<String> {
        vec![p.dest.clone()]
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
