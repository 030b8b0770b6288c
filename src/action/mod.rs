//! Built-in actions: one file per action behind the [`Action`] trait, and a
//! registry that finds them by name.
//!
//! Each action declares its parameters as a typed struct. `ward validate`
//! renders a step's `with:` templates, deserializes them into that struct
//! (errors point at the exact key), then runs the action's own semantic
//! checks; `ward plan` shows [`Action::describe`].
//!
//! At run time the executor calls [`Action::perform`] on a blocking thread with
//! an [`ActionCtx`] (log, cancellation, environment, facts); `ward plan`
//! calls the read-only [`Action::probe`] to show what would happen, and
//! `ward probe` the read-only [`Action::inspect`] to check a step against
//! the real system without doing it (dry run as one more backend of each
//! action, see [`inspect`]).

mod context;
mod folder_lock;
pub mod inspect;
mod params;
mod pg_dump;
mod pg_dumpall;
mod pg_query;
mod pg_restore;
mod pg_snapshot;
mod rotate;
mod rsync;
mod rsync_since;
mod service_start;
mod service_stop;
mod snapshot_hardlink;
mod verify;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::yaml::{DeError, Node, from_node};

pub use crate::process::{Finished, Running, describe_status};
pub use context::{ActionCtx, ActionError, ActionOutput, ActionResult};
pub use params::PgConn;
pub use pg_dump::{PgDump, PgDumpParams};
pub use pg_dumpall::{PgDumpall, PgDumpallParams};
pub use pg_query::{PgQuery, PgQueryParams};
pub use pg_restore::{PgRestore, PgRestoreParams};
pub use pg_snapshot::{PgSnapshot, PgSnapshotParams};
pub use rotate::{Rotate, RotateParams};
pub use rsync::{Rsync, RsyncMode, RsyncParams, Vanished};
pub use service_start::{ServiceStart, ServiceStartParams};
pub use service_stop::{ServiceStop, ServiceStopParams};
pub use snapshot_hardlink::{SnapshotHardlink, SnapshotHardlinkParams, SnapshotStrategy};
pub use verify::{Verify, VerifyParams};

/// A problem with an action's parameters that their types do not catch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter the problem is about (used to point at it), or "" for the whole `with`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: Option<String>,
}

impl ParamProblem {
    /// A problem with parameter `key`.
    pub fn new(key: &'static str, message: impl Into<String>) -> ParamProblem {
        ParamProblem {
            key,
            message: message.into(),
            help: None,
        }
    }

    /// Adds advice.
    pub fn help(mut self, help: impl Into<String>) -> ParamProblem {
        self.help = Some(help.into());
        self
    }
}

/// A built-in action.
pub trait Action: 'static {
    /// The name used in `action:`.
    const NAME: &'static str;
    /// One line for `ward plan` and the docs.
    const SUMMARY: &'static str;
    /// The typed `with:` parameters.
    type Params: DeserializeOwned + Serialize + JsonSchema + fmt::Debug + Send + Sync + 'static;

    /// Checks what the types cannot (e.g. "exactly one of `unit` or `stop`").
    fn check(params: &Self::Params) -> Vec<ParamProblem>;

    /// What the step will do, in one line, after templating.
    fn describe(params: &Self::Params) -> String;

    /// Does the work. Runs on a blocking thread; must return soon after
    /// `ctx.cancelled()` becomes true.
    fn perform(params: &Self::Params, ctx: &ActionCtx) -> ActionResult;

    /// What would happen now, read-only (for plans and dry runs): lines
    /// such as "would delete snapshots/2026-10-01". Empty if nothing to add.
    fn probe(
        _params: &Self::Params,
        _work_dir: &std::path::Path,
        _facts: &crate::template::RunFacts,
    ) -> Vec<String> {
        Vec::new()
    }

    /// Checks, read-only, what the step needs of the real system (for
    /// `ward probe`): programs, folders, free space, servers, the data it
    /// would read, and what it would change. Must write nothing and start
    /// no program but well-known tools' `--version` or their own dry run.
    fn inspect(_params: &Self::Params, _ctx: &inspect::ProbeCtx<'_>) -> Vec<inspect::Check> {
        Vec::new()
    }

    /// The paths the step writes (as given, relative to the playbook's
    /// folder): a later step's probe of them waits for the run.
    fn writes(_params: &Self::Params) -> Vec<String> {
        Vec::new()
    }
}

/// Parameters of some action, type-erased so steps of different actions can
/// sit in one list.
pub trait ActionParams: fmt::Debug + Send + Sync {
    /// The action's name.
    fn action(&self) -> &'static str;
    /// One line for plans.
    fn describe(&self) -> String;
    /// The parameters as JSON (for `ward plan --format json`).
    fn to_json(&self) -> serde_json::Value;
    /// Access to the typed parameters.
    fn as_any(&self) -> &dyn Any;
    /// Carries out the action (see [`Action::perform`]).
    fn perform(&self, ctx: &ActionCtx) -> ActionResult;
    /// Read-only preview (see [`Action::probe`]).
    fn probe(&self, work_dir: &std::path::Path, facts: &crate::template::RunFacts) -> Vec<String>;
    /// Read-only checks against the real system (see [`Action::inspect`]).
    fn inspect(&self, ctx: &inspect::ProbeCtx<'_>) -> Vec<inspect::Check>;
    /// The paths the step writes (see [`Action::writes`]).
    fn writes(&self) -> Vec<String>;
}

struct Typed<A: Action>(A::Params);

impl<A: Action> fmt::Debug for Typed<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<A: Action> ActionParams for Typed<A> {
    fn action(&self) -> &'static str {
        A::NAME
    }
    fn describe(&self) -> String {
        A::describe(&self.0)
    }
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or(serde_json::Value::Null)
    }
    fn as_any(&self) -> &dyn Any {
        &self.0
    }
    fn perform(&self, ctx: &ActionCtx) -> ActionResult {
        A::perform(&self.0, ctx)
    }
    fn probe(&self, work_dir: &std::path::Path, facts: &crate::template::RunFacts) -> Vec<String> {
        A::probe(&self.0, work_dir, facts)
    }
    fn inspect(&self, ctx: &inspect::ProbeCtx<'_>) -> Vec<inspect::Check> {
        A::inspect(&self.0, ctx)
    }
    fn writes(&self) -> Vec<String> {
        A::writes(&self.0)
    }
}

/// Why an action's parameters were refused.
#[derive(Debug)]
pub enum ParamsError {
    /// The parameters do not fit the typed struct.
    Shape(DeError),
    /// The parameters fit but make no sense together.
    Problems(Vec<ParamProblem>),
}

/// One entry of the registry.
pub struct ActionDef {
    /// The name used in `action:`.
    pub name: &'static str,
    /// One line for plans and docs.
    pub summary: &'static str,
    /// Reads and checks rendered `with:` parameters.
    pub parse: fn(&Node) -> Result<Arc<dyn ActionParams>, ParamsError>,
    /// JSON Schema of the parameters.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

fn parse<A: Action>(with: &Node) -> Result<Arc<dyn ActionParams>, ParamsError> {
    let params: A::Params = from_node(with).map_err(ParamsError::Shape)?;
    let problems = A::check(&params);
    if problems.is_empty() {
        Ok(Arc::new(Typed::<A>(params)))
    } else {
        Err(ParamsError::Problems(problems))
    }
}

fn schema<A: Action>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<A::Params>()
}

const fn def<A: Action>() -> ActionDef {
    ActionDef {
        name: A::NAME,
        summary: A::SUMMARY,
        parse: parse::<A>,
        schema: schema::<A>,
    }
}

/// Every built-in action, in the order the docs list them.
pub static REGISTRY: &[ActionDef] = &[
    def::<ServiceStop>(),
    def::<ServiceStart>(),
    def::<PgDumpall>(),
    def::<PgSnapshot>(),
    def::<PgDump>(),
    def::<PgRestore>(),
    def::<PgQuery>(),
    def::<Rsync>(),
    def::<SnapshotHardlink>(),
    def::<Rotate>(),
    def::<Verify>(),
];

/// Finds a built-in action by name.
pub fn lookup(name: &str) -> Option<&'static ActionDef> {
    REGISTRY.iter().find(|d| d.name == name)
}

/// The names of all built-in actions.
pub fn names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|d| d.name)
}
