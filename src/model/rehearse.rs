//! `rehearse:`: how `ward rehearse` turns a restore playbook into a
//! rehearsal in a sandbox (docs/playbook.md, "Rehearse").
//!
//! The playbook names which of its variables point at what a restore
//! overwrites (`targets`), which ones say where PostgreSQL is (`postgres`),
//! which steps must never run in a rehearsal (`fence`), fixed values for a
//! rehearsal (`vars`) and extra checks. Nothing here runs anything: the
//! sandbox lives in `crate::rehearse`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::Spanned;
use crate::source::Span;

/// A playbook's `rehearse:` section, as parsed.
#[derive(Clone, Debug)]
pub struct Rehearse {
    /// Where `rehearse:` is written.
    pub span: Span,
    /// Variables whose folders a rehearsal replaces with fresh, empty
    /// folders inside the sandbox.
    pub targets: Vec<Spanned<String>>,
    /// Variables that get the sandbox cluster's socket folder, port and user.
    pub postgres: Option<RehearsePostgres>,
    /// Step ids replaced by a read-only check in a rehearsal (every
    /// `service.stop` and `service.start` step is fenced anyway).
    pub fence: Vec<Spanned<String>>,
    /// Fixed values for a rehearsal (`--var` still wins).
    pub vars: Vec<(Spanned<String>, String)>,
    /// Checks made after the run, besides the built-in ones.
    pub checks: Vec<RehearseCheck>,
    /// Compare each restored table's row count with its dump (default
    /// true; false for playbooks whose later steps add rows by design).
    pub row_counts: bool,
}

/// `rehearse.postgres`: the names of the variables that say where the
/// restore's PostgreSQL is.
#[derive(Clone, Debug)]
pub struct RehearsePostgres {
    /// The variable holding the host (gets the sandbox's socket folder).
    pub host: Spanned<String>,
    /// The variable holding the port.
    pub port: Option<Spanned<String>>,
    /// The variable holding the user (gets `postgres`, the sandbox's superuser).
    pub user: Option<Spanned<String>>,
}

/// One entry of `rehearse.checks`.
#[derive(Clone, Debug)]
pub struct RehearseCheck {
    /// `name:`, else made from what it checks.
    pub name: Option<String>,
    /// What it checks.
    pub kind: RehearseCheckKind,
    /// Where it is written.
    pub span: Span,
}

/// What a [`RehearseCheck`] checks.
#[derive(Clone, Debug)]
pub enum RehearseCheckKind {
    /// A query in the sandbox cluster whose one value must be `expect`.
    Sql {
        /// The database (default `postgres`).
        db: String,
        /// The query.
        query: String,
        /// The expected value, as text.
        expect: String,
    },
    /// A path that must exist inside a target's sandbox folder.
    Exists {
        /// The target variable.
        target: Spanned<String>,
        /// The path, relative to the target's folder.
        path: String,
    },
}

/// `rehearse:` as JSON Schema sees it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RehearseDoc {
    /// Variables (names in `vars:`) whose folders the restore writes: a
    /// rehearsal gives each a fresh, empty folder inside its sandbox.
    pub targets: Option<Vec<String>>,
    /// Variables (names in `vars:`) that say where the restore's
    /// PostgreSQL is: a rehearsal sets them to its own cluster.
    pub postgres: Option<RehearsePostgresDoc>,
    /// Step ids a rehearsal must not run (they would touch production):
    /// replaced by a read-only check that their program exists. Every
    /// `service.stop` and `service.start` step is fenced anyway.
    pub fence: Option<Vec<String>>,
    /// Values of variables for a rehearsal only (a `--var` still wins).
    pub vars: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Checks made after the rehearsal's run, besides verifying the
    /// restored folders and counting the restored tables' rows.
    pub checks: Option<Vec<RehearseCheckDoc>>,
    /// Compare each table's row count in the sandbox with the rows its
    /// dump holds, after the run (default true; false when later steps of
    /// the playbook add rows by design, e.g. re-queued jobs).
    pub row_counts: Option<bool>,
}

/// `rehearse.postgres` as JSON Schema sees it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RehearsePostgresDoc {
    /// The variable holding the host or socket folder.
    pub host: String,
    /// The variable holding the port.
    pub port: Option<String>,
    /// The variable holding the user.
    pub user: Option<String>,
}

/// One `rehearse.checks` entry: either `sql` (with `expect`) or `exists`
/// (with `target`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RehearseCheckDoc {
    /// What the check is called in the report.
    pub name: Option<String>,
    /// A query run in the sandbox cluster; its single value must equal `expect`.
    pub sql: Option<String>,
    /// The database `sql` runs in (default `postgres`).
    pub db: Option<String>,
    /// The value `sql` must return, as text.
    pub expect: Option<String>,
    /// A path, relative to the folder of `target`, that must exist after the run.
    pub exists: Option<String>,
    /// The target variable `exists` is relative to.
    pub target: Option<String>,
}

/// Keys allowed in `rehearse:`.
pub const REHEARSE_KEYS: &[&str] = &[
    "targets",
    "postgres",
    "fence",
    "vars",
    "checks",
    "row_counts",
];
