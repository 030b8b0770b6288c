//! `pg.restore`: load a `pg.dumpall` file back into a cluster.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{PgConn, non_empty};
use super::{Action, ParamProblem};

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
        non_empty("src", &p.src).into_iter().collect()
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
