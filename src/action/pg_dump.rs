//! `pg.dump`: dump every database at the consistent point a `pg.snapshot`
//! step holds, into one compressed file that `pg.restore` loads exactly
//! like a `pg.dumpall` file.
//!
//! The file is `pg_dumpall --globals-only` (roles, tablespaces: read live,
//! as no snapshot covers them) followed, per database, by `pg_dump
//! --snapshot=<id>` in plain format: with `--create` (and `--clean` when
//! asked), except for `template1` and `postgres`, which exist in every
//! cluster and get a `\connect` line instead, as `pg_dumpall` does.

use super::params::{PgConn, conn_problems, file_problems, forbidden_args, non_empty};
use super::pg_snapshot::{self, DbPoint};
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
use crate::artifact::{DumpFile, Written};
use crate::compress::Compression;
use crate::pg;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
        let mut out = file_problems(&p.dest, p.compress, p.level);
        out.extend(non_empty("snapshot", &p.snapshot));
        out.extend(p.bin_dir.as_deref().and_then(|d| non_empty("bin_dir", d)));
        out.extend(forbidden_args(
            "args",
            &p.args,
            FORBIDDEN_ARGS,
            SHORT_WITH_VALUE,
        ));
        out.extend(conn_problems(&p.db));
        out
    }

    fn perform(p: &PgDumpParams, ctx: &ActionCtx) -> ActionResult {
        let Some(points) = pg_snapshot::held(&ctx.attempt.run_id, &p.snapshot) else {
            return Err(ActionError::new(format!(
                "the consistent point of step `{}` is not held by this ward (it ends with the \
                 process that took it); nothing was dumped. Run the playbook again (or resume \
                 it: the window that takes the point runs again)",
                p.snapshot
            )));
        };
        let dest = ctx.path(&p.dest);
        let pg::ToolConn { env, dbname } = pg::tool_env(&p.db, &ctx.attempt.cwd)?;
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
        // No total: how big a dump comes out is known when it is done.
        ctx.progress().restart("dumping", None, None);
        let mut file = DumpFile::create(&dest, p.compress, p.level, ctx.threads)?
            .counted(ctx.progress_handle());
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

        // Globals: roles and tablespaces, read live (no snapshot covers them).
        let mut argv = vec![program("pg_dumpall"), "-w".into(), "--globals-only".into()];
        if let Some(d) = &dbname {
            argv.push(format!("--database={d}"));
        }
        argv.extend(p.args.iter().cloned());
        ctx.log(format!("running: {}", argv.join(" ")));
        if let Err(e) = file.stream(
            || ctx.spawn(&argv, &env, true).map_err(|e| e.0),
            ctx.cancel_cell(),
            ctx.attempt.kill_grace,
        ) {
            return Err(file.error(e, "pg_dumpall --globals-only failed").into());
        }

        for DbPoint { db, snapshot, .. } in &points {
            ctx.check()?;
            let template = db == "template1" || db == "postgres";
            let mut head = format!("--\n-- Database \"{}\" dump\n--\n\n", comment_safe(db));
            if template && !clean {
                head.push_str(&format!("\\connect {db}\n\n"));
            }
            if let Err(e) = file.write_text(&head) {
                return Err(file.error(e, "").into());
            }
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
            ctx.log(format!("running: {}", argv.join(" ")));
            if let Err(e) = file.stream(
                || ctx.spawn(&argv, &db_env, true).map_err(|e| e.0),
                ctx.cancel_cell(),
                ctx.attempt.kill_grace,
            ) {
                return Err(file
                    .error(e, &format!("pg_dump of database {db:?} failed"))
                    .into());
            }
        }
        let tail = "--\n-- PostgreSQL database cluster dump complete (ward pg.dump)\n--\n\n";
        if let Err(e) = file.write_text(tail) {
            return Err(file.error(e, "").into());
        }
        let mut point = serde_json::Map::new();
        point.insert(
            "point".into(),
            serde_json::json!({
                "step": p.snapshot,
                "databases": DbPoint::json(&points),
            }),
        );
        // The databases and their tables' row estimates, read at the
        // point (for a rehearsal to compare restored counts with).
        let estimates: Vec<_> = points
            .iter()
            .filter_map(|pt| pt.estimates.clone())
            .collect();
        if estimates.len() == points.len() {
            point.insert("databases".into(), serde_json::json!(estimates));
        } else {
            ctx.log(
                "the row estimates of some databases could not be read; the side file has none",
            );
        }
        let Written {
            info,
            sha256,
            size,
            raw,
        } = file.finish(p.min_bytes, ctx.origin(point))?;
        // The point has served: end its transactions now rather than at exit.
        let warning = match pg_snapshot::release(&ctx.attempt.run_id, &p.snapshot) {
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
                pg_snapshot::count(points.len()),
                p.snapshot,
                &sha256[..16]
            )),
            details: info,
            warning,
            ..ActionOutput::default()
        })
    }

    fn inspect(p: &PgDumpParams, ctx: &super::inspect::ProbeCtx<'_>) -> Vec<super::inspect::Check> {
        use super::inspect::{self, Check};
        let tool = |name: &str| match &p.bin_dir {
            Some(dir) => std::path::Path::new(dir).join(name).display().to_string(),
            None => name.to_owned(),
        };
        let dest = ctx.path(&p.dest);
        let folder = dest.parent().unwrap_or(&dest).to_path_buf();
        let need = std::fs::metadata(&dest).ok().map(|m| {
            (
                m.len(),
                format!("the size of the dump now at {}", dest.display()),
            )
        });
        vec![
            inspect::program(&tool("pg_dump"), true, ctx),
            inspect::program(&tool("pg_dumpall"), true, ctx),
            inspect::pg_server(&p.db, ctx),
            Check::unknown(
                "snapshot",
                format!(
                    "the consistent point is taken by step `{}` during the run",
                    p.snapshot
                ),
            ),
            inspect::writable_folder("dest", &folder, ctx),
            inspect::free_space(&folder, need),
        ]
    }

    fn writes(p: &PgDumpParams) -> Vec<String> {
        vec![p.dest.clone()]
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

/// A database name as it may stand in an SQL comment line.
fn comment_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
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
