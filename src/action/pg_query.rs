//! `pg.query`: run SQL and keep the rows for later steps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{PgConn, conn_problems, non_empty};
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
use crate::pg;

/// Runs SQL over a native PostgreSQL connection and saves the rows as JSON.
pub struct PgQuery;

/// Parameters of `pg.query`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgQueryParams {
    /// The SQL to run.
    pub sql: String,
    /// How to reach the server (`dbname` is the database to query).
    #[serde(default)]
    pub db: PgConn,
    /// A file to write the rows to, as a JSON array of objects (atomically).
    pub save: Option<String>,
}

impl Action for PgQuery {
    const NAME: &'static str = "pg.query";
    const SUMMARY: &'static str = "run SQL and save the rows as JSON";
    type Params = PgQueryParams;

    fn check(p: &PgQueryParams) -> Vec<ParamProblem> {
        non_empty("sql", &p.sql)
            .into_iter()
            .chain(p.save.as_deref().and_then(|s| non_empty("save", s)))
            .chain(conn_problems(&p.db))
            .collect()
    }

    fn perform(p: &PgQueryParams, ctx: &ActionCtx) -> ActionResult {
        let cfg = pg::native_config(&p.db, &ctx.attempt.env, &ctx.attempt.cwd)?;
        // No bounds of its own: the step's `timeout` stops the action.
        let rows = pg::fetch_rows(&cfg, &p.sql, pg::RowBounds::default())
            .map_err(|e| ActionError::new(e.to_string()))?;
        let count = rows.len();
        if let Some(save) = &p.save {
            let path = ctx.path(save);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ActionError::new(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let json = serde_json::to_vec_pretty(&rows)
                .map_err(|e| ActionError::new(format!("cannot encode rows: {e}")))?;
            crate::fs::write_atomic(&path, &json, 0o600)?;
            ctx.log(format!("{count} row(s) saved to {}", path.display()));
        }
        Ok(ActionOutput {
            summary: Some(format!("{count} row(s)")),
            details: serde_json::json!({ "rows": count }),
            ..ActionOutput::default()
        })
    }

    fn inspect(
        p: &PgQueryParams,
        ctx: &super::inspect::ProbeCtx<'_>,
    ) -> Vec<super::inspect::Check> {
        use super::inspect;
        let mut out = vec![inspect::pg_server(&p.db, ctx)];
        if let Some(save) = &p.save {
            let file = ctx.path(save);
            let folder = file.parent().unwrap_or(&file).to_path_buf();
            out.push(inspect::writable_folder("save", &folder, ctx));
        }
        out
    }

    fn writes(p: &PgQueryParams) -> Vec<String> {
        p.save.iter().cloned().collect()
    }

    fn describe(p: &PgQueryParams) -> String {
        let sql: String = p.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        // The database's name only: a connection string may hold a password.
        let db = pg::database_name(&p.db);
        match &p.save {
            Some(path) => format!("query {db} ({}): {sql} -> {path}", p.db.describe()),
            None => format!("query {db} ({}): {sql}", p.db.describe()),
        }
    }
}
