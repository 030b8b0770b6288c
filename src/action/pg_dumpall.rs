//! `pg.dumpall`: dump a whole PostgreSQL cluster into a compressed file.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{Compression, PgConn, non_empty};
use super::{Action, ParamProblem};

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
];

/// Reports arguments from `FORBIDDEN_ARGS` found in `args`.
pub(super) fn forbidden_args(
    key: &'static str,
    args: &[String],
    forbidden: &[(&str, &str)],
) -> Vec<ParamProblem> {
    args.iter()
        .filter_map(|a| {
            let flag = a.split('=').next().unwrap_or(a);
            forbidden.iter().find(|(f, _)| *f == flag).map(|(f, why)| {
                ParamProblem::new(key, format!("`{f}` is not allowed in `{key}`")).help(*why)
            })
        })
        .collect()
}

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
        out.extend(forbidden_args("args", &p.args, FORBIDDEN_ARGS));
        out
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
