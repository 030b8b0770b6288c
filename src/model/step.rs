use super::{Duration, RetryPolicy, Spanned, When};
use crate::source::Span;
use crate::yaml::Node;

/// One step of a playbook, as written (templates not yet rendered).
#[derive(Clone, Debug)]
pub struct Step {
    /// `id:`, unique, `[a-z0-9][a-z0-9_-]*`.
    pub id: Spanned<String>,
    /// `name:` for display.
    pub name: Option<String>,
    /// What the step does: an action, a shell line or an argv.
    pub body: StepBody,
    /// `needs:` steps that must have succeeded.
    pub needs: Vec<Spanned<String>>,
    /// `after:` steps that must have finished, whatever their result.
    pub after: Vec<Spanned<String>>,
    /// `when:` success, failure or always.
    pub when: Spanned<When>,
    /// `if:`, a template expression; false means the step is skipped.
    pub condition: Option<Spanned<String>>,
    /// `env:` variables for the child process (values may be templates).
    pub env: Vec<(Spanned<String>, Node)>,
    /// `timeout:` for one attempt.
    pub timeout: Option<Spanned<Duration>>,
    /// `retry:` policy.
    pub retry: Option<Spanned<RetryPolicy>>,
    /// `compensate:`, a step to run if this one succeeded but the run fails.
    pub compensate: Option<Spanned<String>>,
    /// `creates:`, a path whose existence means the step is already done.
    pub creates: Option<Node>,
    /// `ok_codes:`, exit codes that count as success (default `[0]`).
    pub ok_codes: Option<Spanned<Vec<i32>>>,
    /// `keep_children:`, true to leave running what the step started in
    /// the background (by default ward stops it when the step ends).
    pub keep_children: Option<Spanned<bool>>,
    /// `confirm:`, a question the operator answers by typing a word before
    /// the step starts (docs/playbook.md, "Confirm").
    pub confirm: Option<Confirm>,
    /// `for_each:` with `key:` and `max_parallel:`: the step runs once per
    /// item (docs/playbook.md, "Fan-out").
    pub for_each: Option<ForEach>,
    /// `on_item:`, a notification per item of a `for_each` step as it ends
    /// (docs/playbook.md, "Fan-out").
    pub on_item: Option<OnItem>,
    /// The whole step mapping.
    pub span: Span,
}

/// `on_item:` of a `for_each` step as written: which item ends are told,
/// and how (templates, rendered per item with the item's context).
#[derive(Clone, Debug)]
pub struct OnItem {
    /// `on:`, the item ends that send (default: failed only).
    pub on: Vec<ItemEnd>,
    /// `email:`, a mail sent through the playbook's `notify.email` server.
    pub email: Option<ItemEmail>,
    /// `command:`, an argv (no shell) run per item, as `notify.command`.
    pub command: Option<Vec<Node>>,
    /// The `on_item` value.
    pub span: Span,
}

/// An item end `on_item.on` can name: the states that end an item.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ItemEnd {
    /// The item's process ended well.
    Succeeded,
    /// The item's process failed (exit code, signal, timeout).
    Failed,
}

/// `on_item.email`: who gets the mail and what it says (templates).
#[derive(Clone, Debug)]
pub struct ItemEmail {
    /// `to:`, one mailbox template or a list of them.
    pub to: Vec<Node>,
    /// `subject:` (default: names the step, the item and its end).
    pub subject: Option<Node>,
    /// `body:` (default: the item, its end, the run id and the host).
    pub body: Option<Node>,
    /// The `email` value.
    pub span: Span,
}

impl OnItem {
    /// Every template, with the field it is in (checked for secrets and
    /// rendered per item).
    pub fn nodes(&self) -> Vec<(&'static str, &Node)> {
        let mut out = Vec::new();
        if let Some(e) = &self.email {
            out.extend(e.to.iter().map(|n| ("on_item.email.to", n)));
            out.extend(e.subject.iter().map(|n| ("on_item.email.subject", n)));
            out.extend(e.body.iter().map(|n| ("on_item.email.body", n)));
        }
        if let Some(c) = &self.command {
            out.extend(c.iter().map(|n| ("on_item.command", n)));
        }
        out
    }
}

/// A fan-out step's work list as written: where the items come from, how
/// each is named, how many run at once.
#[derive(Clone, Debug)]
pub struct ForEach {
    /// Where the items come from.
    pub source: ItemSource,
    /// `key:`, a template giving each item's stable id (`None`: the item's
    /// own text).
    pub key: Option<Node>,
    /// `max_parallel:`, how many items of this step run at once.
    pub max_parallel: Option<Spanned<usize>>,
    /// `priority:`, a template giving each item a number; higher runs first.
    pub priority: Option<Node>,
    /// `max_failed:`, past how many failed items no new item starts.
    pub max_failed: Option<Spanned<MaxFailed>>,
    /// `workers:`: the items are run by `ward worker` processes (which
    /// must carry all these tags), not by the run's ward.
    pub workers: Option<Spanned<Vec<String>>>,
    /// The `for_each` value.
    pub span: Span,
}

/// `max_failed:` of a fan-out step: once more items than this failed, no
/// new item of the step starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxFailed {
    /// `N`: more than N failed items.
    Count(usize),
    /// `P%`: more than P percent of the step's items (0 to 100).
    Percent(u8),
}

impl MaxFailed {
    /// The largest number of failed items still allowed among `total`.
    pub fn bound(self, total: usize) -> usize {
        match self {
            MaxFailed::Count(n) => n,
            // Rounded down: `10%` of 15 items allows 1 failure, stops at 2.
            MaxFailed::Percent(p) => total * usize::from(p) / 100,
        }
    }
}

impl std::fmt::Display for MaxFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxFailed::Count(n) => write!(f, "{n}"),
            MaxFailed::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Where a fan-out step's items come from.
#[derive(Clone, Debug)]
pub enum ItemSource {
    /// A YAML list, or one template (`"{{ users }}"`) that must give a list;
    /// rendered during validation.
    List(Node),
    /// `{ lines: PATH }`: the non-empty lines of a file, read when the step
    /// starts (an earlier step may write it). PATH may be a template.
    Lines(Node),
    /// `{ json: PATH, at: POINTER }`: a JSON array in a file (or the array
    /// at a JSON pointer in it), read when the step starts.
    Json {
        /// The file (may be a template).
        path: Node,
        /// `at:`, a JSON pointer (`/users`) to the array in the document.
        at: Option<Spanned<String>>,
    },
    /// `{ csv: PATH, delimiter: C, header: B }`: the rows of a CSV file
    /// (RFC 4180), read when the step starts.
    Csv {
        /// The file (may be a template).
        path: Node,
        /// `delimiter:`, one character (default `,`).
        delimiter: Option<Spanned<char>>,
        /// `header:` false: rows are lists, not objects keyed by the first row.
        header: Option<Spanned<bool>>,
    },
    /// `{ command: [ARGV...], format: lines|json }`: what a program prints,
    /// run when the step starts (argv elements may be templates).
    Command {
        /// The program and its arguments, no shell.
        argv: Vec<Node>,
        /// `format: json`: its output is a JSON array (default: lines).
        json: bool,
    },
    /// `{ pg_query: { sql: SQL, db: CONN } }`: the rows of a query, run
    /// when the step starts (`sql` and `db`'s values may be templates).
    PgQuery {
        /// `sql:`, text that is not empty.
        sql: Node,
        /// `db:`, pg.query's connection mapping (checked once rendered).
        db: Option<Node>,
    },
}

impl ItemSource {
    /// The nodes that are templates (checked for secrets, rendered).
    pub fn nodes(&self) -> Vec<&Node> {
        match self {
            ItemSource::List(n)
            | ItemSource::Lines(n)
            | ItemSource::Json { path: n, .. }
            | ItemSource::Csv { path: n, .. } => vec![n],
            ItemSource::Command { argv, .. } => argv.iter().collect(),
            ItemSource::PgQuery { sql, db } => std::iter::once(sql).chain(db).collect(),
        }
    }
}

/// Exactly one of `action:`, `run:` or `cmd:`.
#[derive(Clone, Debug)]
pub enum StepBody {
    /// A built-in action with its `with:` parameters.
    Action {
        /// The action name, e.g. `rsync`.
        name: Spanned<String>,
        /// The parameters as written (rendered and type-checked later).
        with: Option<Node>,
        /// Where problems with `with` as a whole are shown: the `with` key,
        /// or the action name when there is no `with`.
        anchor: Span,
    },
    /// A shell line run by bash with errexit, nounset and pipefail.
    Run(Node),
    /// An argv run directly, without a shell.
    Cmd(Vec<Node>),
}

impl StepBody {
    /// `action`, `run` or `cmd`.
    pub fn kind(&self) -> &'static str {
        match self {
            StepBody::Action { .. } => "action",
            StepBody::Run(_) => "run",
            StepBody::Cmd(_) => "cmd",
        }
    }
}

/// `confirm:` as written: the question (a template) and the word to type
/// (a template; `None`: the playbook's name).
#[derive(Clone, Debug)]
pub struct Confirm {
    /// The question shown before the step starts.
    pub prompt: Node,
    /// The word the operator types to go on.
    pub word: Option<Node>,
    /// The `confirm` value.
    pub span: Span,
}

#[cfg(test)]
mod tests {
    use super::MaxFailed;

    #[test]
    fn a_percentage_bound_is_rounded_down_and_a_count_is_itself() {
        assert_eq!(MaxFailed::Count(3).bound(1000), 3);
        assert_eq!(MaxFailed::Percent(10).bound(15), 1);
        assert_eq!(MaxFailed::Percent(20).bound(10), 2);
        assert_eq!(MaxFailed::Percent(0).bound(10), 0);
        assert_eq!(MaxFailed::Percent(100).bound(7), 7);
        assert_eq!(MaxFailed::Percent(50).to_string(), "50%");
    }
}
