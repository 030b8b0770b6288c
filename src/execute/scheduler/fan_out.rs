//! `for_each` steps: one attempt per item, each item checkpointed.
//!
//! A fan-out step starts like any step (one step attempt, recorded
//! `running`); then `next_items` starts its items, up to the step's
//! `max_parallel` at once, and records each item's start and end in the
//! same turn-by-turn commits as steps (`Change::Item*`). The step ends when
//! no item runs and none can start: `succeeded` if every item succeeded.
//!
//! Why a resume never runs a succeeded item again: an item is recorded
//! `succeeded` only after its process ended well, and a resume takes the
//! items the run recorded (not the list again) and starts only those not
//! recorded `succeeded`. The last item's end and the step's end are pushed
//! in the same scheduler turn, so they are committed together: a step
//! whose recorded items all succeeded was itself recorded `succeeded`. If
//! a resume runs such a step again anyway, the crash rules reopened its
//! window (state/recovery.rs, rules 4, 6, 7), and then all its items run
//! again, as the window's other steps do.

#[path = "lists.rs"]
mod lists;
#[path = "remote.rs"]
mod remote;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::super::events::{Event, StepEnd};
use super::super::item::{ActionEnv, ItemRun, start_item};
use super::super::process::{AttemptEnd, AttemptResult, Cancel, Exit};
use super::{Done, Scheduler, failure_message};
use crate::model::When;
use crate::plan::{ItemWork, Items};
use crate::state::{
    AttemptOutcome, Change, ItemControl, ItemControlled, ItemState, NewItem, StepState, Store,
};

/// How often the run's ward wakes to ask the store for item controls
/// (`ward pause|unpause|retry` from other processes) while items run and
/// none ends: it also asks once per scheduler turn (a launch batch, which
/// already costs a commit), before it starts items. Each ask is one
/// indexed lookup of the run's last event, and reads the control events
/// since the last ask only when there are new events.
pub(super) const CONTROL_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// A `for_each` step in progress.
pub(super) struct Fan {
    /// Its items, in the order they start (list order, or by `priority:`).
    items: Vec<FanItem>,
    /// Items of this step running now.
    running: usize,
    /// Items that failed in this attempt of the step (for `max_failed`).
    failed: usize,
    /// Items before this one are not pending (only a stop puts one back to
    /// pending, and then none starts; an unpause or a retry moves this
    /// back to it): each turn looks from here, not through the whole list.
    next: usize,
    /// The step's attempt (one per run or resume).
    attempt: u32,
    /// The step attempt's log: one line per item that ended.
    log: PathBuf,
    /// When the step started, for its duration.
    started: Instant,
    /// `workers:`: `ward worker`s run the items, and this ward watches
    /// them in the store (`remote.rs`); `items` is filled only at the end.
    remote: Option<remote::Remote>,
}

/// One item, as the scheduler tracks it.
struct FanItem {
    key: String,
    position: usize,
    value: serde_json::Value,
    state: ItemState,
    attempts: u32,
    /// Why it failed (the first failure is quoted in the step's message).
    message: Option<String>,
    /// Its `priority:` (0 without one); the list is sorted by it.
    priority: f64,
}

/// An item to start now.
pub(super) struct ItemLaunch {
    pub step: usize,
    item: usize,
    attempt: u32,
    log: PathBuf,
    work: ItemWork,
}

/// Why a fan-out step could not list its items.
#[derive(Debug, thiserror::Error)]
pub(super) enum ListError {
    #[error("cannot read its `for_each` file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "items {first} and {second} both have the key `{key}`; each item needs its own id \
         (set `key:` to something unique, e.g. `key: \"{{{{ item.name }}}}\"`)"
    )]
    DuplicateKey {
        key: String,
        first: usize,
        second: usize,
    },
    #[error("item {position} has an empty key; each item needs an id")]
    EmptyKey { position: usize },
    #[error("{0}")]
    Key(String),
    #[error("{0}")]
    Priority(String),
    #[error(
        "its `for_each` file {} is {what}, not a regular file; write the list to a file first",
        path.display()
    )]
    NotAFile { path: PathBuf, what: &'static str },
    #[error(
        "its `for_each` file {} is larger than {} MiB; split the list into several steps",
        path.display(),
        MAX_LINES_FILE >> 20
    )]
    TooLarge { path: PathBuf },
    #[error(
        "its `for_each` file {}:{line} is not UTF-8 text (bytes {bytes}); items are \
         text: convert the file (e.g. with `iconv -t UTF-8`) or list names some other way",
        path.display()
    )]
    NotText {
        path: PathBuf,
        line: usize,
        bytes: String,
    },
    #[error(
        "its `for_each` {place}:{line}:{column} is not JSON: {error}; fix it there (items are \
         a JSON array, e.g. `[\"alice\", {{\"name\": \"bob\"}}]`)"
    )]
    Json {
        place: String,
        line: usize,
        column: usize,
        error: String,
    },
    #[error(
        "its `for_each` {place} holds {found}{}, not a JSON array of items; write `[...]`, or \
         name the array inside with `at:` (e.g. `at: /users`)",
        at_text(at)
    )]
    NotArray {
        place: String,
        at: String,
        found: &'static str,
    },
    #[error(
        "its `for_each` {place} has nothing at `at: {at}`; check the JSON pointer (`/users`, \
         `/data/0/names`)"
    )]
    NoPointer { place: String, at: String },
    #[error("its `for_each` CSV file {}:{line}: {why}", path.display())]
    Csv {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{0}")]
    Command(String),
    /// A `pg_query` source's connection or query failed.
    #[error("{0}")]
    Query(String),
}

fn at_text(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!(" at `{at}`")
    }
}

/// The largest list read (a file, or a command's output), in bytes:
/// `WARD_TEST_FOR_EACH_LIMIT` lowers it, for tests only (never raises it).
fn list_limit() -> u64 {
    std::env::var("WARD_TEST_FOR_EACH_LIMIT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(MAX_LINES_FILE, |n| n.min(MAX_LINES_FILE))
}

/// How long a `for_each.command` or `pg_query` may run when its step has
/// no `timeout:`. It only lists names, and the step's items wait for it.
const LIST_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A JSON list problem, placed.
fn json_error(place: String, at: &str, p: lists::JsonProblem) -> ListError {
    match p {
        lists::JsonProblem::Syntax {
            line,
            column,
            error,
        } => ListError::Json {
            place,
            line,
            column,
            error,
        },
        lists::JsonProblem::NoPointer => ListError::NoPointer {
            place,
            at: at.to_owned(),
        },
        lists::JsonProblem::NotArray(found) => ListError::NotArray {
            place,
            at: at.to_owned(),
            found,
        },
    }
}

/// What listing a step's items gives at once: the values, or a command
/// or query to run first.
enum Listed {
    Values(Vec<serde_json::Value>),
    Command(Listing),
}

/// A `for_each` command or query to run for a step's list, on a blocking
/// thread of its own (`lists::run_command` or `pg::fetch_rows` waits for
/// it), so that the scheduler's loop goes on meanwhile.
pub(super) struct Listing {
    /// What to run.
    source: ListSource,
    pub(super) cwd: PathBuf,
    pub(super) env: Vec<(String, String)>,
    pub(super) timeout: std::time::Duration,
}

/// What a [`Listing`] runs.
enum ListSource {
    /// A program; its output is a JSON array with `json`, else one item
    /// per line.
    Command { argv: Vec<String>, json: bool },
    /// SQL on a server; each row is an item.
    PgQuery { sql: String, db: crate::pg::PgConn },
}

impl Listing {
    /// Runs the command (or query) and reads its output as the list's
    /// values; `stop` set makes it kill the command (cancel the query) and
    /// fail.
    pub(super) fn list(
        &self,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Vec<serde_json::Value>, ListError> {
        let (argv, json) = match &self.source {
            ListSource::Command { argv, json } => (argv, *json),
            ListSource::PgQuery { sql, db } => return self.query(sql, db, stop),
        };
        let out = lists::run_command(argv, &self.cwd, &self.env, self.timeout, list_limit(), stop)
            .map_err(ListError::Command)?;
        Self::values(argv, json, out)
    }

    /// The rows of a `pg_query` source, each an object of its columns (as
    /// pg.query saves them). The connection takes its password as pg.query
    /// does (`passfile`, `PGPASSFILE`, `PGPASSWORD` of the step's `env:` or
    /// ward's); no message below can hold it (server and client errors do
    /// not carry it, and `describe` leaves it out).
    fn query(
        &self,
        sql: &str,
        db: &crate::pg::PgConn,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<Vec<serde_json::Value>, ListError> {
        use crate::pg::RowsError;
        let on = format!("{} ({})", crate::pg::database_name(db), db.describe());
        let cfg = crate::pg::native_config(db, &self.env, &self.cwd).map_err(|e| {
            ListError::Query(format!(
                "its `for_each` query cannot use `for_each.pg_query.db`: {e}"
            ))
        })?;
        let bounds = crate::pg::RowBounds {
            max_bytes: Some(list_limit()),
            timeout: Some(self.timeout),
            stop: Some(stop),
        };
        crate::pg::fetch_rows(&cfg, sql, bounds).map_err(|e| {
            ListError::Query(match e {
                RowsError::Connect(why) => format!(
                    "its `for_each` query cannot connect to PostgreSQL on {on}: {why}; check \
                     `for_each.pg_query.db`, that the server takes connections, and the \
                     password in `db.passfile` or `PGPASSWORD`"
                ),
                RowsError::Query(why) => format!(
                    "its `for_each` query failed on {on}: {why}; fix `for_each.pg_query.sql` \
                     (or grant the role what the query reads)"
                ),
                RowsError::TooLarge(n) => format!(
                    "its `for_each` query on {on} gave rows of more than {n} bytes; list fewer \
                     items per step (a narrower `WHERE`, or several steps)"
                ),
                RowsError::TimedOut(t) => format!(
                    "its `for_each` query on {on} did not end within {}s; it was cancelled (a \
                     longer step `timeout:` gives it more time)",
                    t.as_secs()
                ),
                RowsError::Stopped => {
                    format!("its `for_each` query on {on} was cancelled: ward was asked to stop")
                }
                RowsError::Runtime(why) => {
                    format!("its `for_each` query could not start: {why}")
                }
            })
        })
    }

    /// The values a command's output holds.
    fn values(
        argv: &[String],
        json: bool,
        out: Vec<u8>,
    ) -> Result<Vec<serde_json::Value>, ListError> {
        let shown = format!("command `{}` output", argv.join(" "));
        let text = String::from_utf8(out).map_err(|e| {
            let bad = not_text(Path::new(""), e.as_bytes(), e.utf8_error());
            ListError::Command(match bad {
                ListError::NotText { line, bytes, .. } => format!(
                    "its `for_each` command `{}` printed text that is not UTF-8 on line {line} \
                     (bytes {bytes}); items are text",
                    argv.join(" ")
                ),
                other => other.to_string(),
            })
        })?;
        if json {
            lists::json_items(&text, "").map_err(|p| json_error(shown, "", p))
        } else {
            Ok(lists::line_items(&text))
        }
    }
}

/// The largest `lines:` file read (a million items of 64 bytes): read whole
/// into memory and each item recorded in the state, so a runaway file (a
/// log, `/dev/zero` through a symlink) fails the step instead of ward.
const MAX_LINES_FILE: u64 = 64 << 20;

/// A `lines:` file's text. It is opened without blocking and must be a
/// regular file (after symlinks): reading a FIFO or a terminal would block
/// the scheduler, and with it the signals that could stop ward.
fn read_lines_file(path: &Path) -> Result<String, ListError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read = |error| ListError::Read {
        path: path.to_owned(),
        error,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK (libc is no dependency of ward; rustix has the flag).
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a folder"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a device"
        };
        return Err(ListError::NotAFile {
            path: path.to_owned(),
            what,
        });
    }
    let limit = list_limit();
    if meta.len() > limit {
        return Err(ListError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut bytes = Vec::new();
    // A file that grows while it is read is cut at the limit, and refused.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > limit {
        return Err(ListError::TooLarge {
            path: path.to_owned(),
        });
    }
    String::from_utf8(bytes).map_err(|e| not_text(path, e.as_bytes(), e.utf8_error()))
}

/// Names the line of a `lines:` file that is not UTF-8 and shows its first
/// bad bytes, so that the operator can find it (a Latin-1 user name, a
/// binary file given by mistake).
fn not_text(path: &Path, bytes: &[u8], e: std::str::Utf8Error) -> ListError {
    let at = e.valid_up_to();
    let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let bad = e.error_len().unwrap_or(bytes.len() - at).min(4);
    ListError::NotText {
        path: path.to_owned(),
        line,
        bytes: bytes[at..at + bad]
            .iter()
            .map(|b| format!("{b:#04x}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

impl Scheduler<'_, '_> {
    /// Starts fan-out step `i`: its step attempt, then its items (listed
    /// now, or as a resumed run recorded them). A list that cannot be made
    /// (an unreadable file, two items with one key) fails the step before
    /// any item runs.
    pub(super) fn start_fan(&mut self, i: usize) {
        let (_, attempt, log) = self.start_attempt(i);
        let step = &self.steps[i];
        self.reporter.event(&Event::StepStarted {
            step: &step.id,
            attempt,
            of: 1,
            progress: None,
        });
        let recorded = self.recorded_items.remove(&step.id).unwrap_or_default();
        if !recorded.is_empty() {
            match self.resumed_items(i, recorded) {
                Ok(items) => {
                    let kept = items
                        .iter()
                        .filter(|it| it.state == ItemState::Succeeded)
                        .count();
                    if kept > 0 {
                        self.reporter.event(&Event::ItemsKept {
                            step: &self.steps[i].id,
                            kept,
                            total: items.len(),
                        });
                    }
                    self.start_items_of(i, attempt, log, items);
                }
                Err(e) => self.fan_failed_to_start(i, attempt, &log, e.to_string()),
            }
            return;
        }
        let items = match self.list_values(i) {
            Ok(Listed::Values(values)) => self.items_of(i, values),
            Ok(Listed::Command(listing)) => {
                // Run on a task: the loop goes on taking signals and
                // output meanwhile (`listed` takes it from there).
                self.listings.push((i, attempt, log, listing));
                return;
            }
            Err(e) => Err(e),
        };
        self.begin_items(i, attempt, log, items);
    }

    /// A `for_each` command of step `i` ended (or could not run, or was
    /// stopped): its output becomes the step's items, or the step fails
    /// before any item ran.
    pub(super) fn listed(
        &mut self,
        i: usize,
        attempt: u32,
        log: PathBuf,
        values: Result<Vec<serde_json::Value>, ListError>,
    ) {
        let items = values.and_then(|values| self.items_of(i, values));
        self.begin_items(i, attempt, log, items);
    }

    /// Records a freshly listed step's items and lets them start, or fails
    /// the step when its list could not be made.
    fn begin_items(
        &mut self,
        i: usize,
        attempt: u32,
        log: PathBuf,
        items: Result<Vec<FanItem>, ListError>,
    ) {
        let items = match items {
            Ok(items) => items,
            Err(e) => {
                self.fan_failed_to_start(i, attempt, &log, e.to_string());
                return;
            }
        };
        self.changes.push(Change::ItemsListed {
            step: self.steps[i].id.clone(),
            items: items
                .iter()
                .map(|it| NewItem {
                    key: it.key.clone(),
                    position: it.position,
                    value: it.value.clone(),
                    priority: it.priority,
                })
                .collect(),
        });
        self.start_items_of(i, attempt, log, items);
    }

    /// Step `i`'s items (listed now or as recorded) may start.
    fn start_items_of(&mut self, i: usize, attempt: u32, log: PathBuf, items: Vec<FanItem>) {
        let remote = self.offer(i, &items);
        self.fans[i] = Some(Fan {
            // The workers' records are the truth from here on.
            items: if remote.is_some() { Vec::new() } else { items },
            running: 0,
            failed: 0,
            next: 0,
            attempt,
            log,
            started: Instant::now(),
            remote,
        });
    }

    /// A resumed step's items as recorded: succeeded ones stay done, the
    /// rest are pending again (all of them when the step was reopened, see
    /// the module's comment).
    fn resumed_items(
        &mut self,
        i: usize,
        recorded: Vec<crate::state::ItemRecord>,
    ) -> Result<Vec<FanItem>, ListError> {
        let reopened = recorded.iter().all(|r| r.state == ItemState::Succeeded);
        let step_id = self.steps[i].id.clone();
        let mut items = Vec::with_capacity(recorded.len());
        let remote = self.steps[i]
            .fan_out
            .as_ref()
            .is_some_and(|f| f.workers.is_some());
        for r in recorded {
            let keep = r.state == ItemState::Succeeded && !reopened;
            let state = if keep {
                ItemState::Succeeded
            } else if remote && r.state == ItemState::Running {
                // Claimed by a worker, which may still run it: it records
                // its end, or its claim runs out and another worker takes
                // it (state/queue.rs).
                ItemState::Running
            } else if r.state == ItemState::Paused {
                // Paused stays paused until `ward unpause`, across resumes.
                ItemState::Paused
            } else {
                ItemState::Pending
            };
            if r.state != state {
                self.changes.push(Change::ItemFinished {
                    step: step_id.clone(),
                    key: r.key.clone(),
                    state,
                    exit_code: None,
                    message: Some(format!("runs again: it was {} before the resume", r.state)),
                    at: crate::clock::wall_ms(),
                });
            }
            items.push(FanItem {
                key: r.key,
                position: r.position,
                value: r.item,
                state,
                attempts: r.attempts,
                message: None,
                priority: 0.0,
            });
        }
        items.sort_by_key(|it| it.position);
        self.order_by_priority(i, &mut items)?;
        Ok(items)
    }

    /// Puts the items in the order they start: higher `priority` first,
    /// ties in list order (a stable sort of the list). On a resume the
    /// priorities are computed again from the recorded items, with the
    /// run's recorded variables and facts, so they are the same as when
    /// the run started (a changed playbook is refused before that).
    fn order_by_priority(&self, i: usize, items: &mut [FanItem]) -> Result<(), ListError> {
        let fan = self.steps[i].fan_out.as_ref().expect("a for_each step");
        if fan.priority.is_none() {
            return Ok(());
        }
        for it in items.iter_mut() {
            it.priority = fan
                .each
                .priority(&it.key, &it.value)
                .map_err(ListError::Priority)?;
        }
        items.sort_by(|a, b| b.priority.total_cmp(&a.priority));
        Ok(())
    }

    /// The list of step `i`: its values, or for a `command:` or `pg_query:`
    /// source what to run (on a task of the scheduler's loop, see
    /// [`Listing`]).
    fn list_values(&self, i: usize) -> Result<Listed, ListError> {
        let fan = self.steps[i].fan_out.as_ref().expect("a for_each step");
        let values: Vec<serde_json::Value> = match &fan.items {
            Items::List(items) => items.clone(),
            Items::Lines(path) => {
                let path = self.resolve(path);
                // One item per line; blank lines (a trailing newline, a
                // spacer) are no items.
                lists::line_items(&read_lines_file(&path)?)
            }
            Items::Json { path, at } => {
                let full = self.resolve(path);
                let text = read_lines_file(&full)?;
                lists::json_items(&text, at)
                    .map_err(|p| json_error(format!("file {}", full.display()), at, p))?
            }
            Items::Csv {
                path,
                delimiter,
                header,
            } => {
                let full = self.resolve(path);
                let text = read_lines_file(&full)?;
                lists::csv_items(&text, *delimiter, *header).map_err(|p| ListError::Csv {
                    path: full,
                    line: p.line,
                    why: p.why,
                })?
            }
            Items::Command { argv, json } => {
                return Ok(Listed::Command(self.listing(
                    i,
                    ListSource::Command {
                        argv: argv.clone(),
                        json: *json,
                    },
                )));
            }
            Items::PgQuery { sql, db } => {
                return Ok(Listed::Command(self.listing(
                    i,
                    ListSource::PgQuery {
                        sql: sql.clone(),
                        db: db.clone(),
                    },
                )));
            }
        };
        Ok(Listed::Values(values))
    }

    /// What runs to list step `i`'s items: `source` in the playbook's
    /// folder, within the step's `timeout` (default [`LIST_COMMAND_TIMEOUT`]),
    /// with ward's variables for the step and those of its `env:` that do
    /// not depend on an item (a `PGPASSWORD` there reaches a query).
    fn listing(&self, i: usize, source: ListSource) -> Listing {
        let step = &self.steps[i];
        let fan = step.fan_out.as_ref().expect("a for_each step");
        let keep = fan.each.env_without_item();
        let mut env = self
            .attempt_spec(i, self.attempts[i], Path::new(""), None)
            .env;
        let base = env.len() - step.env.len();
        let mut k = 0;
        env.retain(|(name, _)| {
            k += 1;
            k <= base || keep.contains(name)
        });
        Listing {
            source,
            cwd: self.options.work_dir.clone(),
            env,
            timeout: step.timeout.map_or(LIST_COMMAND_TIMEOUT, |t| t.std()),
        }
    }

    /// The items of step `i` made of its list's values, each with its key
    /// (keys must be unique), in the order they start.
    fn items_of(
        &self,
        i: usize,
        values: Vec<serde_json::Value>,
    ) -> Result<Vec<FanItem>, ListError> {
        let fan = self.steps[i].fan_out.as_ref().expect("a for_each step");
        let mut seen: HashMap<String, usize> = HashMap::with_capacity(values.len());
        let mut items = Vec::with_capacity(values.len());
        for (position, value) in values.into_iter().enumerate() {
            let key = fan.each.key(&value).map_err(ListError::Key)?;
            if key.is_empty() {
                return Err(ListError::EmptyKey {
                    position: position + 1,
                });
            }
            if let Some(first) = seen.insert(key.clone(), position) {
                return Err(ListError::DuplicateKey {
                    key,
                    first: first + 1,
                    second: position + 1,
                });
            }
            items.push(FanItem {
                key,
                position,
                value,
                state: ItemState::Pending,
                attempts: 0,
                message: None,
                priority: 0.0,
            });
        }
        self.order_by_priority(i, &mut items)?;
        Ok(items)
    }

    /// The step's attempt fails before any item ran.
    fn fan_failed_to_start(&mut self, i: usize, attempt: u32, log: &Path, why: String) {
        self.running -= 1;
        let elapsed = std::time::Duration::ZERO;
        self.end_fan_attempt(i, attempt, log, StepState::Failed, why, None, elapsed);
    }

    /// Takes in the item controls recorded since the last look (each turn
    /// while items of the run are listed or run): a paused item that has
    /// not started is held back, an unpaused or retried one may start
    /// again, in the step that runs its items or, for a step not started
    /// yet, in what the resumed run recorded. A store that cannot be read
    /// now is asked again at the next turn.
    pub(super) async fn take_controls(&mut self, store: &mut dyn Store) {
        if self.fans.iter().all(Option::is_none) && self.recorded_items.is_empty() {
            return;
        }
        let controls = match store.item_controls(self.run_id, self.control_seq).await {
            Ok((last, controls)) => {
                self.control_seq = last;
                controls
            }
            Err(e) => {
                tracing::warn!("cannot read the run's item controls: {e}");
                return;
            }
        };
        for c in controls {
            self.take_control(&c);
        }
    }

    fn take_control(&mut self, c: &ItemControlled) {
        if let Some(recorded) = self.recorded_items.get_mut(&c.step) {
            if let Some(r) = recorded.iter_mut().find(|r| r.key == c.key) {
                r.state = c.control.to();
            }
            return;
        }
        let Some(i) = self.steps.iter().position(|st| st.id == c.step) else {
            return;
        };
        let Some(fan) = self.fans[i].as_mut() else {
            // Its step is not running items: the next resume takes it in.
            return;
        };
        let Some(k) = fan.items.iter().position(|it| it.key == c.key) else {
            return;
        };
        let item = &mut fan.items[k];
        match (c.control, item.state) {
            (ItemControl::Pause, ItemState::Pending) => item.state = ItemState::Paused,
            (ItemControl::Unpause, ItemState::Paused) | (ItemControl::Retry, ItemState::Failed) => {
                if item.state == ItemState::Failed {
                    fan.failed = fan.failed.saturating_sub(1);
                }
                item.state = ItemState::Pending;
                item.message = None;
                // It may be before the cursor of items left to start.
                fan.next = fan.next.min(k);
            }
            (ItemControl::Pause, ItemState::Running) => {
                // The pause and the item's start crossed: it runs to its
                // end (recorded `running`, then its outcome).
                let line = format!(
                    "item {} `{}`: paused as it started; it runs to its end\n",
                    item.position + 1,
                    item.key
                );
                if let Ok(mut f) = crate::state::private::open_log(&fan.log) {
                    let _ = std::io::Write::write_all(&mut f, line.as_bytes());
                }
            }
            _ => {}
        }
    }

    /// Starts what items can start now and ends the fan-out steps that are
    /// done. Returns the items to spawn, and whether a step ended (its
    /// dependents may then be decided).
    pub(super) fn next_items(&mut self) -> (Vec<ItemLaunch>, bool) {
        let mut launch = Vec::new();
        let mut ended = false;
        for i in 0..self.steps.len() {
            let Some(mut fan) = self.fans[i].take() else {
                continue;
            };
            if let Some(r) = &fan.remote {
                if r.done {
                    self.finish_fan(i, fan);
                    ended = true;
                } else {
                    self.fans[i] = Some(fan);
                }
                continue;
            }
            self.start_items(i, &mut fan, &mut launch);
            if fan.running == 0 && !self.can_start_more(i, &fan) {
                self.finish_fan(i, fan);
                ended = true;
            } else {
                self.fans[i] = Some(fan);
            }
        }
        (launch, ended)
    }

    /// Why no more items of step `i` start, if so: ward stops or abandons,
    /// the state is lost, or (for a normal step) the run failed elsewhere.
    fn stop_reason(&self, i: usize) -> Option<String> {
        if self.abandoned.is_some() {
            return Some("not started: ward abandoned the run".into());
        }
        if let Some(sig) = self.interrupted
            && self.steps[i].when != When::Always
        {
            return Some(format!(
                "not started: ward was interrupted ({})",
                sig.name()
            ));
        }
        if self.state_lost.is_some() {
            return Some("not started: the state could not be recorded".into());
        }
        match &self.failure {
            Some(f) if self.steps[i].when == When::Success => {
                Some(format!("not started: the run has failed ({f})"))
            }
            _ => None,
        }
    }

    /// `max_failed:` of step `i` and its bound, when more items failed.
    fn past_max_failed(&self, i: usize, fan: &Fan) -> Option<(crate::model::MaxFailed, usize)> {
        let max = self.steps[i].fan_out.as_ref()?.max_failed?;
        let bound = max.bound(fan.items.len());
        (fan.failed > bound).then_some((max, bound))
    }

    fn can_start_more(&self, i: usize, fan: &Fan) -> bool {
        self.stop_reason(i).is_none()
            && self.past_max_failed(i, fan).is_none()
            && fan.items[fan.next..]
                .iter()
                .any(|it| it.state == ItemState::Pending)
    }

    fn start_items(&mut self, i: usize, fan: &mut Fan, launch: &mut Vec<ItemLaunch>) {
        let Some(spec) = self.steps[i].fan_out.as_ref() else {
            return;
        };
        if let Some(reason) = self.stop_reason(i) {
            // Left pending after a signal or a lost state (a resume runs
            // them); skipped, with the reason, after a failure elsewhere.
            if self.failure.is_some() && self.interrupted.is_none() && self.state_lost.is_none() {
                for it in fan
                    .items
                    .iter_mut()
                    .filter(|it| it.state == ItemState::Pending)
                {
                    it.state = ItemState::Skipped;
                    self.changes.push(Change::ItemFinished {
                        step: self.steps[i].id.clone(),
                        key: it.key.clone(),
                        state: ItemState::Skipped,
                        exit_code: None,
                        message: Some(reason.clone()),
                        at: crate::clock::wall_ms(),
                    });
                }
            }
            return;
        }
        if self.past_max_failed(i, fan).is_some() {
            // No new item; those running finish, the rest stay pending.
            return;
        }
        let each = spec.each.clone();
        let bound = spec.max_failed.map(|m| m.bound(fan.items.len()));
        while fan.next < fan.items.len() && fan.items[fan.next].state != ItemState::Pending {
            fan.next += 1;
        }
        let from = fan.next;
        for (k, it) in fan.items.iter_mut().enumerate().skip(from) {
            if fan.running >= spec.max_parallel {
                break;
            }
            if it.state != ItemState::Pending {
                continue;
            }
            let work = match each.work(&it.value) {
                Ok(work) => work,
                Err(why) => {
                    it.state = ItemState::Failed;
                    fan.failed += 1;
                    it.message = Some(why.clone());
                    self.changes.push(Change::ItemFinished {
                        step: self.steps[i].id.clone(),
                        key: it.key.clone(),
                        state: ItemState::Failed,
                        exit_code: None,
                        message: Some(why),
                        at: crate::clock::wall_ms(),
                    });
                    if bound.is_some_and(|b| fan.failed > b) {
                        break;
                    }
                    continue;
                }
            };
            it.attempts += 1;
            it.state = ItemState::Running;
            fan.running += 1;
            let log = self.options.log_dir.join(format!(
                "{}.item-{}.{}.log",
                self.steps[i].id,
                it.position + 1,
                it.attempts
            ));
            self.changes.push(Change::ItemStarted {
                step: self.steps[i].id.clone(),
                key: it.key.clone(),
                attempt: it.attempts,
                log_path: log.display().to_string(),
                at: crate::clock::wall_ms(),
            });
            launch.push(ItemLaunch {
                step: i,
                item: k,
                attempt: it.attempts,
                log,
                work,
            });
        }
    }

    /// Starts an item's attempt (a process, or an action) as a task that
    /// ends in `Done::Item`.
    pub(super) fn spawn_item(
        &self,
        launch: ItemLaunch,
        tasks: &mut JoinSet<Done>,
        echo: Option<mpsc::UnboundedSender<(usize, String)>>,
        cancel: watch::Receiver<Cancel>,
    ) {
        let ItemLaunch {
            step,
            item,
            attempt,
            log,
            work,
        } = launch;
        let fan = self.fans[step].as_ref().expect("a started for_each step");
        let it = &fan.items[item];
        let spec = ItemRun {
            run_id: self.run_id,
            playbook: &self.v.playbook.name.value,
            step: &self.steps[step],
            index: step,
            step_attempt: fan.attempt,
            position: it.position,
            key: &it.key,
            attempt,
            work: &work,
            log: &log,
            cwd: &self.options.work_dir,
            kill_grace: self.options.kill_grace,
            shield: self.is_finalizer(step) || self.interrupted.is_some(),
            mask: self.mask.clone(),
        }
        .attempt(echo);
        let env = ActionEnv {
            facts: self.v.facts.clone(),
            playbook_hash: self.playbook_hash.clone(),
            copies_dir: self.options.copies_dir.clone(),
        };
        let running = start_item(&self.steps[step], spec, &work, env, cancel);
        tasks.spawn(async move {
            Done::Item {
                step,
                item,
                log,
                result: running.await,
            }
        });
    }

    /// An item's attempt ended: record its state (a stopped one is pending
    /// again, for a resume).
    pub(super) fn item_done(&mut self, i: usize, k: usize, log: &Path, r: &AttemptResult) {
        let Some(mut fan) = self.fans[i].take() else {
            return;
        };
        fan.running -= 1;
        if !r.left_behind.is_empty() {
            self.report_left_behind(i, log, &r.left_behind);
        }
        let step = &self.steps[i];
        let ok = matches!(r.end, AttemptEnd::Exited(Exit::Code(c)) if step.ok_codes.contains(&c));
        let (state, message) = if ok {
            (ItemState::Succeeded, None)
        } else if matches!(r.end, AttemptEnd::Stopped { .. }) {
            let why = match self.interrupted {
                Some(sig) => format!("stopped because ward was interrupted ({})", sig.name()),
                None => "stopped because the state could not be recorded".to_owned(),
            };
            (ItemState::Pending, Some(why))
        } else {
            (ItemState::Failed, Some(failure_message(r, step, "stopped")))
        };
        if state == ItemState::Failed {
            fan.failed += 1;
        }
        let total = fan.items.len();
        let item = &mut fan.items[k];
        item.state = state;
        item.message.clone_from(&message);
        let line = format!(
            "item {} `{}`: {state}{}; log {}\n",
            item.position + 1,
            item.key,
            message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
            log.display()
        );
        // The step's log is a summary, best effort like any output.
        if let Ok(mut f) = crate::state::private::open_log(&fan.log) {
            let _ = std::io::Write::write_all(&mut f, line.as_bytes());
        }
        // `on_item:`: the notifier only queues; it sends on its own threads.
        if let Some(notifier) = &self.options.item_notifier {
            notifier.item_ended(super::super::events::ItemEnded {
                run_id: self.run_id,
                step: &step.id,
                key: &item.key,
                item: &item.value,
                state,
                message: message.as_deref(),
                step_log: &fan.log,
            });
        }
        self.changes.push(Change::ItemFinished {
            step: step.id.clone(),
            key: item.key.clone(),
            state,
            exit_code: r.end.exit_code(),
            message,
            at: crate::clock::wall_ms(),
        });
        // Counted by the progress display, never printed per item.
        self.reporter.event(&Event::ItemFinished {
            step: &step.id,
            key: &item.key,
            state,
            total,
        });
        self.fans[i] = Some(fan);
    }

    /// No item of step `i` runs and none will start: the step ends.
    fn finish_fan(&mut self, i: usize, fan: Fan) {
        self.running -= 1;
        let count = |s: ItemState| fan.items.iter().filter(|it| it.state == s).count();
        let (total, failed, left, skipped, paused) = (
            fan.items.len(),
            count(ItemState::Failed),
            count(ItemState::Pending),
            count(ItemState::Skipped),
            count(ItemState::Paused),
        );
        let paused_note = if paused > 0 {
            format!(
                "; {paused} paused (`ward unpause{} {} ITEM...`, then `ward resume`)",
                self.options.state_flag, self.run_id
            )
        } else {
            String::new()
        };
        let bound = self.past_max_failed(i, &fan);
        let (state, message) = if let Some((max, bound)) = bound {
            self.items_failed.insert(i);
            self.item_failed = true;
            (
                StepState::Failed,
                format!(
                    "{} items failed, more than `max_failed: {max}` allows ({bound} of {total}); \
                     {left} items were not started; `ward items{} {} --status failed` lists the \
                     failed ones, `ward resume` runs them and the rest{paused_note}",
                    fan.failed, self.options.state_flag, self.run_id
                ),
            )
        } else if failed > 0 {
            self.items_failed.insert(i);
            self.item_failed = true;
            let first = fan
                .items
                .iter()
                .find(|it| it.state == ItemState::Failed)
                .map(|it| {
                    format!(
                        " (first: `{}`: {})",
                        it.key,
                        it.message.as_deref().unwrap_or("failed")
                    )
                })
                .unwrap_or_default();
            (
                StepState::Failed,
                format!(
                    "{failed} of {total} items failed{first}; `ward items{} {} --status failed` \
                     lists them, `ward resume` runs them again{paused_note}",
                    self.options.state_flag, self.run_id
                ),
            )
        } else if left > 0 {
            (
                StepState::Interrupted,
                format!(
                    "{left} of {total} items did not finish; `ward resume` runs them{paused_note}"
                ),
            )
        } else if paused > 0 && skipped == 0 {
            // Not done: the step fails (its dependents do not run) as if
            // items had failed, exit 10; a resume after `ward unpause` runs
            // the paused items.
            self.items_failed.insert(i);
            self.item_failed = true;
            (
                StepState::Failed,
                format!(
                    "{paused} of {total} items are paused and did not run; `ward unpause{} {} \
                     ITEM...`, then `ward resume`, runs them",
                    self.options.state_flag, self.run_id
                ),
            )
        } else if skipped > 0 {
            // Its own items did not fail: the run's exit code is decided by
            // the failure that stopped them (exit 10 if that was items too).
            self.items_failed.insert(i);
            (
                StepState::Failed,
                format!("{skipped} of {total} items were not started: the run failed{paused_note}"),
            )
        } else {
            (StepState::Succeeded, format!("{total} items succeeded"))
        };
        let summary = serde_json::json!({
            "items": total,
            "succeeded": count(ItemState::Succeeded),
            "failed": failed,
            "pending": left,
            "skipped": skipped,
            "paused": paused,
        });
        let elapsed = fan.started.elapsed();
        self.end_fan_attempt(
            i,
            fan.attempt,
            &fan.log,
            state,
            message,
            Some(summary),
            elapsed,
        );
    }

    /// Records and reports the end of a fan-out step's attempt.
    #[allow(clippy::too_many_arguments)]
    fn end_fan_attempt(
        &mut self,
        i: usize,
        attempt: u32,
        log: &Path,
        state: StepState,
        message: String,
        details: Option<serde_json::Value>,
        elapsed: std::time::Duration,
    ) {
        let step = &self.steps[i];
        let outcome = match state {
            StepState::Succeeded => AttemptOutcome::Succeeded,
            StepState::Interrupted => AttemptOutcome::Interrupted,
            _ => AttemptOutcome::Failed,
        };
        self.reporter.event(&Event::StepFinished(StepEnd {
            step: &step.id,
            state,
            attempt,
            elapsed,
            exit_code: None,
            message: (state != StepState::Succeeded).then_some(message.as_str()),
            log,
            will_retry: false,
        }));
        self.state[i] = state;
        match state {
            StepState::Succeeded => self.finished_order.push(i),
            StepState::Failed if self.failure.is_none() => {
                self.failure = Some(format!("step `{}` failed: {message}", step.id));
            }
            _ => {}
        }
        self.changes.push(Change::AttemptFinished {
            step: step.id.clone(),
            attempt,
            state,
            outcome,
            exit_code: None,
            signal: None,
            message: Some(message),
            details,
            at: crate::clock::wall_ms(),
        });
    }
}
