//! `pg.restore`: load a `pg.dumpall` file back into a cluster.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::io::{BufRead, BufReader, Write};

use super::params::{PgConn, conn_problems, non_empty};
use super::{
    Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem, describe_status,
};
use crate::compress::decoder;
use crate::pg;

/// Streams a dump (decompressed in-process) into `psql -v ON_ERROR_STOP=1`;
/// refuses a cluster that already holds user databases unless `force`.
pub struct PgRestore;

/// Parameters of `pg.restore`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgRestoreParams {
    /// The dump file (`.gz`, `.zst` or plain SQL; detected from its content).
    pub src: String,
    /// How to reach the server.
    #[serde(default)]
    pub db: PgConn,
    /// Restore even if the cluster already has user databases.
    #[serde(default)]
    pub force: bool,
    /// The psql program (default: `psql` on PATH).
    pub program: Option<String>,
}

impl Action for PgRestore {
    const NAME: &'static str = "pg.restore";
    const SUMMARY: &'static str = "restore a pg.dumpall file into a PostgreSQL cluster";
    type Params = PgRestoreParams;

    fn check(p: &PgRestoreParams) -> Vec<ParamProblem> {
        non_empty("src", &p.src)
            .into_iter()
            .chain(conn_problems(&p.db))
            .collect()
    }

    fn perform(p: &PgRestoreParams, ctx: &ActionCtx) -> ActionResult {
        let src = ctx.path(&p.src);
        let file = std::fs::File::open(&src)
            .map_err(|e| ActionError::new(format!("cannot open dump {}: {e}", src.display())))?;
        let psql = p.program.clone().unwrap_or_else(|| "psql".into());
        // Connection parameters go through the environment, never argv.
        let pg::ToolConn { mut env, dbname } = pg::tool_env(&p.db, &ctx.attempt.cwd)?;
        if dbname.is_none() {
            env.push(("PGDATABASE".into(), "postgres".into()));
        }
        if !p.force {
            let existing = user_databases(ctx, &psql, &env)?;
            if !existing.is_empty() {
                return Err(ActionError::new(format!(
                    "the cluster already has databases {}; nothing was changed. To restore over \
                     them, run again with {} (the dump drops and re-creates them if it was made \
                     with --clean)",
                    existing.join(", "),
                    ctx.how_to_set("force", "true")
                )));
            }
        }
        // The file's size is the total: what is read of it (compressed) is
        // what is done, so the ETA is a real one.
        let size = file.metadata().map(|m| m.len()).ok();
        ctx.progress().restart("restoring", None, size);
        let file = crate::compress::Counted::new(file, ctx.progress_handle());
        let (input, kind) = decoder(file)
            .map_err(|e| ActionError::new(format!("cannot read {}: {e}", src.display())))?;
        let argv = vec![
            psql,
            "-X".into(),
            "-w".into(),
            "-q".into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
            "-f".into(),
            "-".into(),
        ];
        ctx.log(format!(
            "restoring {} ({kind}) with: {}",
            src.display(),
            argv.join(" ")
        ));
        let mut running = ctx.spawn_with(&argv, &env, true, false)?;
        let mut stdin = running
            .child
            .stdin
            .take()
            .ok_or_else(|| ActionError::new("psql has no input pipe"))?;
        let fed: Result<u64, ActionError> = (|| {
            let mut reader = BufReader::with_capacity(1 << 20, input);
            let mut line = Vec::new();
            let mut total = 0u64;
            loop {
                ctx.check()?;
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| ActionError::new(format!("cannot read {}: {e}", src.display())))?;
                if n == 0 {
                    return Ok(total);
                }
                total += n as u64;
                let out = tolerate_existing_role(&line);
                if stdin.write_all(out.as_deref().unwrap_or(&line)).is_err() {
                    // psql stopped reading (ON_ERROR_STOP); its status says why.
                    return Ok(total);
                }
            }
        })();
        drop(stdin);
        let status = ctx.wait(&mut running)?;
        let total = fed?;
        if !status.success() {
            return Err(ActionError::new(format!(
                "psql stopped at the first error ({}); see the step's log for the statement",
                describe_status(&status)
            )));
        }
        Ok(ActionOutput {
            summary: Some(format!(
                "restored {} ({kind}, {total} bytes of SQL)",
                src.display()
            )),
            details: serde_json::json!({ "src": src.display().to_string(), "format": kind, "sql_bytes": total }),
            ..ActionOutput::default()
        })
    }

    fn inspect(
        p: &PgRestoreParams,
        ctx: &super::inspect::ProbeCtx<'_>,
    ) -> Vec<super::inspect::Check> {
        inspect_restore(p, ctx)
    }

    fn describe(p: &PgRestoreParams) -> String {
        let guard = if p.force {
            "even into a non-empty cluster"
        } else {
            "only into an empty cluster"
        };
        format!(
            "{} | psql -v ON_ERROR_STOP=1 ({}), {guard}",
            p.src,
            p.db.describe()
        )
    }
}

/// Databases other than postgres and the templates.
fn user_databases(
    ctx: &ActionCtx,
    psql: &str,
    env: &[(String, String)],
) -> Result<Vec<String>, ActionError> {
    let mut argv = vec![
        psql.to_owned(),
        "-X".into(),
        "-w".into(),
        "-A".into(),
        "-t".into(),
    ];
    argv.extend([
        "-c".into(),
        "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY 1".into(),
    ]);
    let done = ctx.run_program(&argv, env, true)?;
    if !done.status.success() {
        return Err(ActionError::new(format!(
            "cannot connect to check that the cluster is empty ({}); see the step's log",
            describe_status(&done.status)
        )));
    }
    Ok(String::from_utf8_lossy(&done.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// pg_dumpall writes `CREATE ROLE name;` for every role, including the
/// one that runs the restore, which always exists; with `--clean` it also
/// writes `DROP ROLE IF EXISTS name;`, which fails for the current user.
/// With ON_ERROR_STOP either would stop every restore, so exactly these two
/// statements are rewritten: create the role unless it exists, drop it
/// unless it is the current user. Everything else is fed unchanged.
fn tolerate_existing_role(line: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(line).ok()?;
    let (create, rest) = match (
        text.strip_prefix("CREATE ROLE "),
        text.strip_prefix("DROP ROLE IF EXISTS "),
    ) {
        (Some(r), _) => (true, r),
        (_, Some(r)) => (false, r),
        _ => return None,
    };
    let name = rest.trim_end().strip_suffix(';')?;
    let quoted = name.starts_with('"') && name.ends_with('"') && name.len() >= 2;
    if name.is_empty() || (!quoted && name.contains(|c: char| c.is_whitespace() || c == ';')) {
        return None;
    }
    let literal = if quoted {
        name[1..name.len() - 1].replace("\"\"", "\"")
    } else {
        name.to_owned()
    }
    .replace('\'', "''");
    let body = if create {
        format!(
            "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{literal}') THEN CREATE ROLE {name}; END IF;"
        )
    } else {
        format!("IF '{literal}' <> current_user THEN DROP ROLE IF EXISTS {name}; END IF;")
    };
    Some(format!("DO $ward$BEGIN {body} END$ward$;\n").into_bytes())
}

/// The probe of a restore: the dump (and the databases it creates), psql,
/// the server, and which of its databases the restore would replace.
fn inspect_restore(
    p: &PgRestoreParams,
    ctx: &super::inspect::ProbeCtx<'_>,
) -> Vec<super::inspect::Check> {
    use super::inspect::{self, Check, Verdict};
    let src = ctx.path(&p.src);
    let mut dump = inspect::readable_file("dump", &src, ctx);
    let in_dump = if dump.verdict == Verdict::Pass {
        match dump_databases(&src) {
            Ok(names) => {
                dump.detail = format!(
                    "{}; creates {}",
                    dump.detail,
                    if names.is_empty() {
                        "no database".to_owned()
                    } else {
                        names.join(", ")
                    }
                );
                Some(names)
            }
            Err(why) => {
                dump = Check::fail("dump", why);
                None
            }
        }
    } else {
        None
    };
    let mut out = vec![dump];
    let psql = p.program.clone().unwrap_or_else(|| "psql".into());
    out.push(inspect::program(&psql, true, ctx));
    let mut conn = p.db.clone();
    // psql is started with PGDATABASE=postgres when `db` names none.
    if conn.dbname.is_none() {
        conn.dbname = Some("postgres".into());
    }
    match inspect::pg_read(&conn, &[USER_DATABASES], ctx) {
        Err(why) => out.push(Check::fail("postgres", why)),
        Ok(found) => {
            out.push(Check::pass(
                "postgres",
                format!("{}: PostgreSQL {}", conn.describe(), found.version),
            ));
            let existing = found.rows.into_iter().next().unwrap_or_default();
            out.push(replaced_databases(&existing, in_dump.as_deref(), p.force));
        }
    }
    out
}

/// What the restore would do to the cluster's databases.
fn replaced_databases(
    existing: &[String],
    in_dump: Option<&[String]>,
    force: bool,
) -> super::inspect::Check {
    use super::inspect::{Check, Verdict};
    if existing.is_empty() {
        return Check::pass(
            "databases",
            "the cluster has no user databases: nothing is replaced",
        );
    }
    if !force {
        return Check::fail(
            "databases",
            format!(
                "the cluster already has databases {}: the restore refuses a non-empty cluster unless `force` is set",
                existing.join(", ")
            ),
        );
    }
    let (replaced, kept): (Vec<&String>, Vec<&String>) = existing
        .iter()
        .partition(|d| in_dump.is_none_or(|names| names.contains(d)));
    let list = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
    let mut detail = format!("would replace {}", list(&replaced));
    if in_dump.is_none() {
        detail = format!(
            "may replace {} (the dump's databases are not known)",
            list(&replaced)
        );
    }
    if !kept.is_empty() {
        detail.push_str(&format!("; left as they are: {}", list(&kept)));
    }
    Check::new("databases", Verdict::Warn, detail)
}

/// The databases other than postgres and the templates.
const USER_DATABASES: &str = "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY 1";

/// The user databases a dump creates (its `CREATE DATABASE` lines; not
/// `postgres` and the templates, which a `--clean` dump also names), read
/// through its compression.
fn dump_databases(src: &std::path::Path) -> Result<Vec<String>, String> {
    let file =
        std::fs::File::open(src).map_err(|e| format!("cannot open {}: {e}", src.display()))?;
    let (input, _) = decoder(file).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let mut names = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        if n == 0 {
            return Ok(names);
        }
        if let Some(rest) = line.strip_prefix(b"CREATE DATABASE ") {
            let rest = String::from_utf8_lossy(rest);
            let name = if let Some(q) = rest.strip_prefix('"') {
                q.split('"').next().unwrap_or_default().to_owned()
            } else {
                rest.split([' ', ';', '\n'])
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            };
            // Every cluster has these: only user databases are named.
            let always = ["postgres", "template0", "template1"].contains(&name.as_str());
            if !name.is_empty() && !always && !names.contains(&name) {
                names.push(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tolerate_existing_role;

    #[test]
    fn only_bare_create_role_is_rewritten() {
        let out = tolerate_existing_role(b"CREATE ROLE postgres;\n").expect("rewritten");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("rolname = 'postgres'") && text.contains("CREATE ROLE postgres;"));
        assert!(tolerate_existing_role(b"CREATE ROLE \"Odd Name\";\n").is_some());
        assert!(tolerate_existing_role(b"CREATE ROLE x WITH LOGIN;\n").is_none());
        assert!(tolerate_existing_role(b"ALTER ROLE postgres WITH SUPERUSER;\n").is_none());
        assert!(tolerate_existing_role(b"INSERT INTO t VALUES ('CREATE ROLE x;');\n").is_none());
        let drop = String::from_utf8(
            tolerate_existing_role(b"DROP ROLE IF EXISTS postgres;\n").expect("drop"),
        )
        .expect("utf8");
        assert!(
            drop.contains("'postgres' <> current_user THEN DROP ROLE IF EXISTS postgres;"),
            "{drop}"
        );
    }
}
