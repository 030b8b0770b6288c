//! `restore:`: what a restore playbook restores from, and what must match
//! before it changes anything (docs/playbook.md, "Restore").

use schemars::JsonSchema;
use serde::Deserialize;

use crate::source::Span;
use crate::yaml::Node;

/// `restore:` as written (templates are rendered by validation, which
/// reads it as a [`RestoreSpec`]).
#[derive(Clone, Debug)]
pub struct Restore {
    /// The mapping.
    pub node: Node,
    /// Where it is written.
    pub span: Span,
}

/// `restore:` with its templates rendered.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreSpec {
    /// The folder that holds the snapshots (`snapshot.hardlink`'s `dir`).
    pub snapshots: String,
    /// The variable `--snapshot` (or the list at a terminal) sets to the
    /// chosen snapshot's folder; it must be one of `vars:`, whose value is
    /// the default without a terminal.
    pub snapshot_var: String,
    /// What the snapshot's manifest must say before anything changes.
    #[serde(default)]
    pub guards: Guards,
    /// A file written before the first step and removed only when every
    /// step succeeded: while it is there the system is being restored.
    pub marker: Option<String>,
}

/// `restore.guards`: each one refuses a snapshot whose manifest does not
/// match, unless overridden with `--override NAME`. `format` is always
/// checked.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    /// `true`: the snapshot must have been made on this host.
    #[serde(default)]
    pub host: bool,
    /// The PostgreSQL server the restore writes to: its major version must
    /// be the one of the dumps in the snapshot.
    pub postgres: Option<PostgresGuard>,
    /// The names of the backup playbooks whose snapshots this playbook
    /// restores.
    pub playbook: Option<Vec<String>>,
    /// The scope the snapshot must have (`snapshot.hardlink`'s `scope`,
    /// e.g. `full` or `gold-only`).
    pub scope: Option<String>,
}

/// `restore.guards.postgres`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresGuard {
    /// How to reach the server (as the `db` of the `pg.*` actions).
    #[serde(default)]
    pub db: crate::pg::PgConn,
    /// What to do when no server answers: `refuse` (the default) or `pass`
    /// (for a restore that sets up the server itself, e.g. `initdb`).
    #[serde(default)]
    pub no_server: NoServer,
}

/// `no_server:` of the postgres guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NoServer {
    /// No server answering is a mismatch.
    #[default]
    Refuse,
    /// No server answering passes (the restore creates one).
    Pass,
}

/// The guard names `--override` takes.
pub const GUARD_NAMES: &[&str] = &["host", "postgres", "playbook", "scope", "format"];
