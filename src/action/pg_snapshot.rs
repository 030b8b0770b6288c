//! `pg.snapshot`: take a consistent point of every database and hold it
//! for a later `pg.dump`.
//!
//! For each database one native connection opens a `REPEATABLE READ READ
//! ONLY` transaction and exports its snapshot (`pg_export_snapshot()`).
//! The connections stay open after the step succeeds, in a process-wide
//! registry keyed by run id and step id, so that a `pg.dump` started later
//! (e.g. after the service was started again) can dump exactly what the
//! databases held at this point: `pg_dump --snapshot=<id>`. A snapshot can
//! only be imported in the database it was exported from, hence one held
//! connection per database. They are released when the dump that uses
//! them succeeds, and in any case when ward's process ends (the server
//! then ends the transactions). A held point never outlives its ward:
//! `state/recovery.rs` (rule 7) runs its window again on resume.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::params::{PgConn, conn_problems, name_like_option};
use super::{Action, ActionCtx, ActionError, ActionOutput, ActionResult, ParamProblem};
use crate::pg;
use crate::pg::LIST_DATABASES;

/// Takes and holds an exported snapshot of each database.
pub struct PgSnapshot;

/// Parameters of `pg.snapshot`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgSnapshotParams {
    /// How to reach the server (`dbname`: where the list of databases is read).
    #[serde(default)]
    pub db: PgConn,
    /// The databases to take the point of (default: every database that
    /// allows connections, `template0` excepted, as `pg_dumpall` dumps them).
    pub databases: Option<Vec<String>>,
}

/// One database's exported snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbPoint {
    /// The database.
    pub db: String,
    /// What `pg_export_snapshot()` returned (for `pg_dump --snapshot`).
    pub snapshot: String,
    /// Its tables' row estimates, read on the same connection just before
    /// the point (`None` if they could not be read: the point does not
    /// depend on them).
    pub estimates: Option<pg::RowEstimates>,
}

impl DbPoint {
    /// `[{"db": ..., "snapshot": ...}]`, as the step details and the dump's
    /// side file record a point.
    pub fn json(points: &[DbPoint]) -> serde_json::Value {
        points
            .iter()
            .map(|pt| serde_json::json!({ "db": pt.db, "snapshot": pt.snapshot }))
            .collect()
    }
}

/// A point held by this process: the snapshots, and the thread that keeps
/// their transactions open until it is told to end them.
struct Held {
    points: Vec<DbPoint>,
    /// Dropping or sending ends the transactions.
    release: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), PointError>>>,
}

impl Held {
    /// Ends the transactions and waits for the thread that held them.
    fn end(mut self) -> Result<(), PointError> {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(PointError::ThreadPanicked),
            None => Ok(()),
        }
    }
}

/// Why a point could not be taken or ended. Clone: the thread that holds
/// the point both reports it to the step and returns it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PointError {
    /// The thread's runtime could not be started.
    #[error("cannot start a runtime: {0}")]
    Runtime(Arc<std::io::Error>),
    /// A database could not be connected to.
    #[error("cannot connect to database {db:?}: {}", pg::native_error(error))]
    Connect {
        /// The database.
        db: String,
        /// Why.
        error: Arc<tokio_postgres::Error>,
    },
    /// The list of databases could not be read.
    #[error("cannot list the databases: {}", pg::native_error(.0))]
    List(Arc<tokio_postgres::Error>),
    /// A database's snapshot could not be exported.
    #[error(
        "cannot export a snapshot of database {db:?}: {}",
        pg::native_error(error)
    )]
    Export {
        /// The database.
        db: String,
        /// Why.
        error: Arc<tokio_postgres::Error>,
    },
    /// A held transaction could not be committed (the first such error).
    #[error("cannot end a held transaction: {0}")]
    End(Arc<tokio_postgres::Error>),
    /// The thread holding the point panicked.
    #[error("the thread holding the point stopped unexpectedly")]
    ThreadPanicked,
}

/// Held points of this process, by (run id, step id).
static HELD: Mutex<BTreeMap<(String, String), Held>> = Mutex::new(BTreeMap::new());

fn take_held(run_id: &str, step: &str) -> Option<Held> {
    HELD.lock()
        .ok()?
        .remove(&(run_id.to_owned(), step.to_owned()))
}

/// The snapshots that step `step` of run `run_id` holds in this process.
pub fn held(run_id: &str, step: &str) -> Option<Vec<DbPoint>> {
    HELD.lock()
        .ok()?
        .get(&(run_id.to_owned(), step.to_owned()))
        .map(|h| h.points.clone())
}

/// Ends the transactions of a held point (after its dump). `Ok(false)` if
/// none was held.
pub fn release(run_id: &str, step: &str) -> Result<bool, PointError> {
    match take_held(run_id, step) {
        Some(h) => h.end().map(|()| true),
        None => Ok(false),
    }
}

impl Action for PgSnapshot {
    const NAME: &'static str = "pg.snapshot";
    const SUMMARY: &'static str =
        "take a consistent point of every database and hold it for a later pg.dump";
    type Params = PgSnapshotParams;

    fn check(p: &PgSnapshotParams) -> Vec<ParamProblem> {
        let mut out = conn_problems(&p.db);
        if let Some(dbs) = &p.databases {
            if dbs.is_empty() {
                out.push(
                    ParamProblem::new("databases", "`databases` is an empty list")
                        .help("list the databases, or leave `databases` out to take every one"),
                );
            }
            for (i, d) in dbs.iter().enumerate() {
                if d.trim().is_empty() {
                    out.push(ParamProblem::new(
                        "databases",
                        "a name in `databases` is empty",
                    ));
                } else if d == "template0" {
                    out.push(
                        ParamProblem::new(
                            "databases",
                            "`template0` does not allow connections and is never dumped",
                        )
                        .help("remove it from `databases`"),
                    );
                } else if dbs[..i].contains(d) {
                    out.push(ParamProblem::new(
                        "databases",
                        format!("`{d}` is listed twice in `databases`"),
                    ));
                }
                out.extend(name_like_option("databases", d));
            }
        }
        out
    }

    fn perform(p: &PgSnapshotParams, ctx: &ActionCtx) -> ActionResult {
        // A retry of this step in the same process replaces its point.
        if let Some(old) = take_held(&ctx.attempt.run_id, &ctx.attempt.step) {
            let _ = old.end();
        }
        let cfg = pg::native_config(&p.db, &ctx.attempt.env, &ctx.attempt.cwd)?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        let databases = p.databases.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ward-point-{}", ctx.attempt.step))
            .spawn(move || hold(cfg, databases, ready_tx, release_rx))
            .map_err(|e| ActionError::new(format!("cannot start a thread: {e}")))?;
        let mut held = Held {
            points: Vec::new(),
            release: Some(release_tx),
            thread: Some(thread),
        };
        let points = loop {
            match ready_rx.recv_timeout(Duration::from_millis(20)) {
                Ok(Ok(points)) => break points,
                Ok(Err(e)) => {
                    let _ = held.end();
                    return Err(ActionError::new(format!(
                        "{e}; no point was taken (every transaction opened for it was ended)"
                    )));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if ctx.cancelled() {
                        // The thread ends what it opened once its connect returns.
                        drop(held.release.take());
                        return Err(ActionError::stopped());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let e = match held.end() {
                        Err(e) => e.to_string(),
                        Ok(()) => "the thread holding the point ended".to_owned(),
                    };
                    return Err(ActionError::new(format!("{e}; no point was taken")));
                }
            }
        };
        for pt in &points {
            ctx.log(format!("{}: snapshot {} held", pt.db, pt.snapshot));
        }
        held.points = points.clone();
        let mut registry = HELD
            .lock()
            .map_err(|_| ActionError::new("the registry of held points is poisoned"))?;
        registry.insert((ctx.attempt.run_id.clone(), ctx.attempt.step.clone()), held);
        drop(registry);
        let names: Vec<&str> = points.iter().map(|pt| pt.db.as_str()).collect();
        Ok(ActionOutput {
            summary: Some(format!(
                "consistent point of {} held: {}",
                count(points.len()),
                names.join(", ")
            )),
            details: serde_json::json!({
                "databases": DbPoint::json(&points),
                "taken": chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f").to_string(),
            }),
            ..ActionOutput::default()
        })
    }

    fn inspect(
        p: &PgSnapshotParams,
        ctx: &super::inspect::ProbeCtx<'_>,
    ) -> Vec<super::inspect::Check> {
        vec![super::inspect::pg_server(&p.db, ctx)]
    }

    fn describe(p: &PgSnapshotParams) -> String {
        let which = match &p.databases {
            Some(d) => d.join(", "),
            None => "every database".to_owned(),
        };
        format!(
            "export and hold a snapshot of {which} ({}) until the pg.dump that uses it ends",
            p.db.describe()
        )
    }
}

/// `1 database`, `3 databases`.
pub(super) fn count(n: usize) -> String {
    if n == 1 {
        "1 database".to_owned()
    } else {
        format!("{n} databases")
    }
}

type Ready = std::sync::mpsc::Sender<Result<Vec<DbPoint>, PointError>>;

/// The body of the thread that holds a point: lists the databases (unless
/// given), opens one transaction per database and exports its snapshot,
/// reports them on `ready`, then keeps the connections until `release`
/// fires (or its sender is dropped) and commits.
fn hold(
    cfg: tokio_postgres::Config,
    databases: Option<Vec<String>>,
    ready: Ready,
    release: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), PointError> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let e = PointError::Runtime(Arc::new(e));
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    runtime.block_on(async move {
        let opened = open_all(&cfg, databases).await;
        let clients = match opened {
            Ok((clients, points)) => {
                if ready.send(Ok(points)).is_err() {
                    // The step was stopped meanwhile: end at once.
                    return end_all(clients).await;
                }
                clients
            }
            Err(e) => {
                let _ = ready.send(Err(e.clone()));
                return Err(e);
            }
        };
        let _ = release.await;
        end_all(clients).await
    })
}

type Client = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

async fn connect(cfg: &tokio_postgres::Config, db: &str) -> Result<Client, PointError> {
    let mut cfg = cfg.clone();
    cfg.dbname(db);
    let (client, connection) =
        cfg.connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| PointError::Connect {
                db: db.to_owned(),
                error: Arc::new(e),
            })?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, task))
}

async fn open_all(
    cfg: &tokio_postgres::Config,
    databases: Option<Vec<String>>,
) -> Result<(Vec<Client>, Vec<DbPoint>), PointError> {
    let databases = match databases {
        Some(d) => d,
        None => {
            let entry = cfg.get_dbname().unwrap_or("postgres").to_owned();
            let (client, task) = connect(cfg, &entry).await?;
            let rows = client
                .simple_query(LIST_DATABASES)
                .await
                .map_err(|e| PointError::List(Arc::new(e)))?;
            drop(client);
            let _ = task.await;
            rows.iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                    _ => None,
                })
                .collect()
        }
    };
    let mut clients = Vec::new();
    let mut points = Vec::new();
    for db in databases {
        let taken = async {
            let (client, task) = connect(cfg, &db).await?;
            // Before the transaction: an error here must not abort the
            // one whose snapshot pg_dump imports.
            let estimates = pg::row_estimates(&client, &db).await.ok();
            let export = async {
                client
                    .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?;
                client
                    .query_one("SELECT pg_export_snapshot()", &[])
                    .await?
                    .try_get::<_, String>(0)
            }
            .await;
            match export {
                Ok(id) => Ok(((client, task), id, estimates)),
                Err(e) => Err(PointError::Export {
                    db: db.clone(),
                    error: Arc::new(e),
                }),
            }
        }
        .await;
        match taken {
            Ok((client, snapshot, estimates)) => {
                clients.push(client);
                points.push(DbPoint {
                    db,
                    snapshot,
                    estimates,
                });
            }
            Err(e) => {
                let _ = end_all(clients).await;
                return Err(e);
            }
        }
    }
    Ok((clients, points))
}

/// Commits every held transaction (read only: nothing to keep) and closes
/// the connections.
async fn end_all(clients: Vec<Client>) -> Result<(), PointError> {
    let mut first_error = None;
    for (client, task) in clients {
        if let Err(e) = client.batch_execute("COMMIT").await {
            first_error.get_or_insert_with(|| PointError::End(Arc::new(e)));
        }
        drop(client);
        let _ = task.await;
    }
    first_error.map_or(Ok(()), Err)
}
