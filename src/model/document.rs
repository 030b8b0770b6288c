//! The file format as JSON Schema sees it.
//!
//! These types exist to generate `schemas/playbook.schema.json` (and the
//! editor hovers that come from their doc comments); the parser in
//! `parse/` reads the same keys into the spanned model. A test keeps the two
//! key lists equal.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Duration, MinFree, RetryPolicy, When};

/// A ward playbook: ordered, dependent backup or restore steps.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "ward playbook", extend("$id" = "https://ward.invalid/schemas/playbook.schema.json"))]
pub struct PlaybookDoc {
    /// Format version; this ward reads version 1.
    #[schemars(range(min = 1, max = 1))]
    pub ward: u32,
    /// Playbook name: lower-case letters, digits, `-` and `_`; at most 128.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"), length(max = 128))]
    pub name: String,
    /// What the playbook is for.
    pub description: Option<String>,
    /// Template variables, overridable with `--var name=value`. String values may use earlier variables.
    pub vars: Option<BTreeMap<String, serde_json::Value>>,
    /// Settings applied to every step that does not set its own.
    pub defaults: Option<DefaultsDoc>,
    /// How many steps may run at the same time (default 4).
    #[schemars(range(min = 1))]
    pub max_parallel: Option<u32>,
    /// Name of the run lock; runs sharing a lock never overlap (default: the playbook name).
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_.-]*$"))]
    pub lock: Option<String>,
    /// The steps, in the order they are listed in plans when nothing else decides.
    #[schemars(length(min = 1))]
    pub steps: Vec<StepDoc>,
    /// When to run, as a crontab time: five fields (minute hour day-of-month
    /// month day-of-week) with names, ranges, lists and steps, or a macro
    /// (`@daily`, `@hourly`, ...), e.g. `30 2 * * *`. Read in `timezone`.
    /// `ward next` shows the next times, `ward cron install` installs it.
    #[schemars(
        regex(
            pattern = r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*,/-]+(\s+[0-9A-Za-z*,/-]+){4})\s*$"
        ),
        example = "30 2 * * *"
    )]
    pub schedule: Option<String>,
    /// At most this long a scheduled run waits at random before it starts,
    /// to spread load (e.g. `20m`).
    pub jitter: Option<Duration>,
    /// What a scheduled run (`ward run --if-due`) does while the previous
    /// run still holds the lock: `skip` (default: exit 3, recorded
    /// `skipped`), `queue` (wait, at most until the next fire time, then
    /// run) or `latest` (wait like `queue`; of several waiting, only the
    /// newest runs).
    pub overlap: Option<super::Overlap>,
    /// The IANA time zone `schedule` is read in, e.g. `Europe/Berlin`
    /// (default: the system's).
    #[schemars(length(min = 1), example = "Europe/Berlin")]
    pub timezone: Option<String>,
    /// Who hears about a run: `email`, `command`, `ping` (docs/notify.md).
    pub notify: Option<super::notify::NotifyDoc>,
    /// A Prometheus text file written after each run (node_exporter's textfile collector).
    pub metrics: Option<String>,
    /// Checks made in order before any step runs, without side effects. If
    /// one fails, no step runs and the run is recorded `skipped` (exit 6).
    pub preconditions: Option<Vec<PreconditionDoc>>,
    /// How old the last successful run may be before `ward check` calls the
    /// playbook stale, e.g. `26h` for a nightly backup.
    pub max_age: Option<Duration>,
    /// How long runs and their logs are kept in the state: a run is removed
    /// (by `ward prune`, and after each run) only when it is older than
    /// `keep_days` and not among the newest `keep_runs` runs of the
    /// playbook. Default: 90 days, 50 runs.
    pub history: Option<super::History>,
    /// How `ward rehearse` restores into a sandbox: which variables are
    /// restore targets and PostgreSQL settings, which steps are fenced,
    /// extra checks (docs/playbook.md, "Rehearse").
    pub rehearse: Option<super::rehearse::RehearseDoc>,
    /// A restore playbook: the snapshots folder, the variable `--snapshot`
    /// sets, the guards checked against the snapshot's manifest before any
    /// step runs, and the marker left while a restore is unfinished.
    pub restore: Option<super::RestoreSpec>,
}

/// One precondition: a mapping with exactly one of these keys.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PreconditionDoc {
    /// Free space on the file system holding `path` (for an unprivileged user).
    FreeSpace(FreeSpaceDoc),
    /// A path that must exist (symlinks followed); relative to the playbook's folder.
    PathExists(String),
    /// A path that must not exist (e.g. a restore's marker), in a folder only root or ward's user can write.
    PathAbsent(String),
    /// A program that must exit 0 (stdout and stderr go to the run's `preconditions.log`).
    Command(CommandDoc),
    /// `host:port` that must accept a TCP connection.
    Tcp(TcpDoc),
    /// Processes that must not be running: a name, a matcher `{name, cmdline, user, pidfile}` or a list (as `service.stop`'s `wait_gone`).
    NotRunning(NotRunningDoc),
    /// `true`: the machine must be on mains power (a machine without battery always is).
    OnAcPower(bool),
}

/// `free_space: {path, min}`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreeSpaceDoc {
    /// A path on the file system to check.
    pub path: String,
    /// A size (`10G`, `500M`) or a multiple of the last successful run's size (`1.5x last`).
    pub min: MinFree,
}

/// An argv, or `{argv, timeout}`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum CommandDoc {
    /// The program and its arguments (time limit 60s).
    Argv(Vec<String>),
    /// With a time limit.
    Full {
        /// The program and its arguments.
        argv: Vec<String>,
        /// Time limit (default 60s).
        timeout: Option<Duration>,
    },
}

/// `host:port`, or `{address, timeout}`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TcpDoc {
    /// `host:port` or `[v6]:port` (connect time limit 5s).
    Address(String),
    /// With a connect time limit.
    Full {
        /// `host:port`.
        address: String,
        /// Connect time limit (default 5s).
        timeout: Option<Duration>,
    },
}

/// A process name, a matcher, or a list of them.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NotRunningDoc {
    /// A process name (as in /proc/PID/comm or argv[0]).
    Name(String),
    /// A matcher; every criterion given must hold.
    Matcher(ProcMatcherDoc),
    /// Several names or matchers.
    List(Vec<NotRunningDoc>),
}

/// Which processes: every criterion given must hold.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcMatcherDoc {
    /// Process name(s).
    pub name: Option<StepRefs>,
    /// Text the command line must contain.
    pub cmdline: Option<String>,
    /// User name or uid.
    pub user: Option<String>,
    /// A pid file: its process and descendants.
    pub pidfile: Option<String>,
}

/// Settings applied to every step that does not set its own.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsDoc {
    /// Time limit for one attempt of a step.
    pub timeout: Option<Duration>,
    /// Retry policy for failed steps.
    pub retry: Option<RetryDoc>,
}

/// A number of retries (`0` = try once) or a full policy.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RetryDoc {
    /// Number of retries after the first attempt.
    Count(u32),
    /// A full retry policy.
    Policy(RetryPolicy),
}

/// A list of step ids, or a single id.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StepRefs {
    /// One step id.
    One(String),
    /// Several step ids.
    Many(Vec<String>),
}

/// One step. Exactly one of `action`, `run` or `cmd`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepDoc {
    /// Unique id: lower-case letters, digits, `-` and `_`; at most 128.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]*$"), length(max = 128))]
    pub id: String,
    /// Name shown in plans and progress output.
    pub name: Option<String>,
    /// A built-in action (parameters under `with`).
    pub action: Option<String>,
    /// Parameters of the action.
    pub with: Option<serde_json::Map<String, serde_json::Value>>,
    /// A shell line, run by `bash -o errexit -o nounset -o pipefail -c`. Use `{{ value | quote }}` for untrusted values.
    pub run: Option<String>,
    /// An argv run directly, without a shell.
    #[schemars(length(min = 1))]
    pub cmd: Option<Vec<String>>,
    /// Steps that must have succeeded before this one runs.
    pub needs: Option<StepRefs>,
    /// Steps that must have finished (whatever their result) before this one runs.
    pub after: Option<StepRefs>,
    /// When the step runs: `success` (default), `failure` or `always`.
    pub when: Option<When>,
    /// A template expression; when false the step is skipped.
    #[serde(rename = "if")]
    pub condition: Option<String>,
    /// Environment variables for the step's process.
    pub env: Option<BTreeMap<String, String>>,
    /// Time limit for one attempt.
    pub timeout: Option<Duration>,
    /// Retry policy, or a number of retries (`0` = try once).
    pub retry: Option<RetryDoc>,
    /// A step to run if this step succeeded but the run later fails.
    pub compensate: Option<String>,
    /// A path; if it exists, the step counts as already done and is skipped.
    pub creates: Option<String>,
    /// Exit codes that count as success (default `[0]`).
    #[schemars(length(min = 1))]
    pub ok_codes: Option<Vec<i32>>,
    /// Leave running the processes the step started in the background
    /// (default `false`: ward stops them when the step ends).
    pub keep_children: Option<bool>,
    /// Ask the operator before the step starts: the question, or
    /// `{prompt, word}`; the operator types `word` (default: the playbook's
    /// name). Without a terminal the run needs `--yes` (else exit 8).
    pub confirm: Option<ConfirmDoc>,
    /// Run the step once per item, with `{{ item }}` in its templates: a
    /// list, one template giving a list (`"{{ users }}"`), `{lines: FILE}`,
    /// `{json: FILE}`, `{csv: FILE}` or `{command: [ARGV...]}`
    /// (docs/playbook.md, "Fan-out").
    pub for_each: Option<ForEachDoc>,
    /// With `for_each`: a template giving each item's stable id (default:
    /// the item's own text). Ids must be unique within the step.
    #[schemars(length(min = 1))]
    pub key: Option<String>,
    /// With `for_each`: how many items of this step run at once (default:
    /// the playbook's `max_parallel`).
    #[schemars(range(min = 1))]
    pub max_parallel: Option<u32>,
    /// With `for_each`: a template giving each item a number; higher runs
    /// first, ties in list order.
    #[schemars(length(min = 1))]
    pub priority: Option<String>,
    /// With `for_each`: once more items than this failed (a number, or a
    /// percentage of the step's items such as `"10%"`), no new item starts.
    pub max_failed: Option<MaxFailedDoc>,
    /// With `for_each`: a mail and/or a command per item as it ends
    /// (templates with `{{ item }}`); the mail goes through `notify.email`'s
    /// server.
    pub on_item: Option<OnItemDoc>,
    /// With `for_each`: `ward worker` processes run the items, claimed from
    /// a shared PostgreSQL state (`true`, or `{tags: [...]}` that a worker
    /// must all carry); the run's own ward only lists and watches them.
    pub workers: Option<WorkersDoc>,
}

/// `workers:` of a fan-out step.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum WorkersDoc {
    /// `true`: any worker; `false`: none (the run's ward runs them).
    On(bool),
    /// Only workers started with every one of these `--tag`s.
    Tags {
        /// The tags.
        #[schemars(inner(regex(pattern = r"^[A-Za-z0-9._-]{1,64}$")))]
        tags: Vec<String>,
    },
}

/// `on_item:` of a `for_each` step.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnItemDoc {
    /// Which item ends send (default `[failed]`).
    #[schemars(length(min = 1))]
    pub on: Option<Vec<crate::model::ItemEnd>>,
    /// A mail per item, through the server of `notify.email`.
    pub email: Option<OnItemEmailDoc>,
    /// A program run per item (no shell), the item's end as JSON on stdin.
    #[schemars(length(min = 1))]
    pub command: Option<Vec<String>>,
}

/// `on_item.email`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnItemEmailDoc {
    /// Recipients (templates), one or a list.
    pub to: crate::model::notify::MailboxesDoc,
    /// Subject (template; default names the step, the item and its end).
    pub subject: Option<String>,
    /// Body (template; default names the item, its end, the run and the host).
    pub body: Option<String>,
}

/// `max_failed:`: a number of items or a percentage of them.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MaxFailedDoc {
    /// A number of failed items.
    Count(u32),
    /// A percentage of the step's items, `0%` to `100%`.
    Percent(#[schemars(regex(pattern = r"^\s*(100|[1-9]?[0-9])\s*%\s*$"))] String),
}

/// `for_each:`: where a fan-out step's items come from.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ForEachDoc {
    /// The items themselves.
    List(Vec<serde_json::Value>),
    /// One template that gives a list, e.g. `"{{ users }}"`.
    Template(String),
    /// One item per non-blank line of a file (read when the step starts).
    Lines(LinesDoc),
    /// The JSON array in a file (read when the step starts).
    Json(JsonDoc),
    /// The rows of a CSV file (read when the step starts).
    Csv(CsvDoc),
    /// What a program prints (run when the step starts).
    Command(ListCommandDoc),
    /// The rows of a PostgreSQL query (run when the step starts).
    PgQuery(PgQueryListDoc),
}

/// `for_each: {pg_query: {sql: SQL, db: {...}}}`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgQueryListDoc {
    /// The query and the server, as `pg.query` takes them (no password:
    /// a passfile or `PGPASSWORD`).
    pub pg_query: PgQueryDoc,
}

/// The query of a `for_each.pg_query`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgQueryDoc {
    /// The SQL; each row is an item, an object keyed by column name (may
    /// use variables, not `item`).
    #[schemars(length(min = 1))]
    pub sql: String,
    /// How to reach the server (`dbname` is the database to query).
    pub db: Option<crate::pg::PgConn>,
}

/// `for_each: {lines: FILE}`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinesDoc {
    /// The file, relative to the playbook's folder (may be a template).
    pub lines: String,
}

/// `for_each: {json: FILE, at: POINTER}`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonDoc {
    /// The file, relative to the playbook's folder (may be a template); it
    /// holds a JSON array of items (text, numbers or objects).
    #[schemars(length(min = 1))]
    pub json: String,
    /// A JSON pointer to the array inside the document, e.g. `/users`.
    #[schemars(regex(pattern = r"^(/.*)?$"))]
    pub at: Option<String>,
}

/// `for_each: {csv: FILE, delimiter: C, header: B}`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvDoc {
    /// The file, relative to the playbook's folder (may be a template).
    #[schemars(length(min = 1))]
    pub csv: String,
    /// The field separator, one character (default `,`).
    #[schemars(length(min = 1, max = 1))]
    pub delimiter: Option<String>,
    /// `true` (default): the first row names the fields and each item is an
    /// object; `false`: each row is a list of its fields.
    pub header: Option<bool>,
}

/// `for_each: {command: [PROGRAM, ARG...], format: lines|json}`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListCommandDoc {
    /// The program and its arguments (templates), run without a shell in
    /// the playbook's folder, within the step's `timeout` (default 60s).
    #[schemars(length(min = 1))]
    pub command: Vec<String>,
    /// How its output is read: one item per non-blank line (default) or a
    /// JSON array.
    pub format: Option<ListFormatDoc>,
}

/// How a `for_each.command`'s output is read.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListFormatDoc {
    /// One item per non-blank line.
    Lines,
    /// A JSON array.
    Json,
}

/// `confirm:`: a question, or a question and the word to type.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ConfirmDoc {
    /// The question; the word to type is the playbook's name.
    Prompt(String),
    /// The question and the word.
    Full {
        /// The question.
        prompt: String,
        /// The word the operator types to go on.
        word: Option<String>,
    },
}
