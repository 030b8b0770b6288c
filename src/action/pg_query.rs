//! `pg.query`: run SQL and keep the rows for later steps.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{PgConn, non_empty};
use super::{Action, ParamProblem};

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
            .collect()
    }

    fn describe(p: &PgQueryParams) -> String {
        let sql: String = p.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let db = p.db.dbname.as_deref().unwrap_or("postgres");
        match &p.save {
            Some(path) => format!("query {db} ({}): {sql} -> {path}", p.db.describe()),
            None => format!("query {db} ({}): {sql}", p.db.describe()),
        }
    }
}
