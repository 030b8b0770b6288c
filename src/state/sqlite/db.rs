//! The SQLite database itself: opening, creating, migrating, reading and
//! committing, all synchronous; `mod.rs` calls it under a mutex.
//!
//! WAL journal, `synchronous=FULL` (every commit is fsynced before ward
//! acts on it), foreign keys on, and a busy timeout so `ward status` can
//! read while a run writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    Connection, ErrorCode, OpenFlags, OptionalExtension, Row, TransactionBehavior, params,
};

use super::super::records::{
    AttemptOutcome, AttemptRecord, Change, ItemControl, ItemControlled, ItemRecord, ItemState,
    NewRun, NewStep, NoteKind, Recorded, RunRecord, RunState, StepRecord, StepState, Unreadable,
    UnrunRun,
};
use super::super::schema::{self, Upgrade};
use super::super::{EventKind, EventRecord, RunFilter, StateError, private};
use super::migrations::MIGRATIONS;

/// A run-state database in one SQLite file, used from one thread.
pub struct Db {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl Db {
    /// Opens the existing database at `path` (never creates one: see
    /// [`Db::create`]) and, with `write`, migrates it. Without
    /// `write` (read commands) nothing is changed: an older database is
    /// refused with [`StateError::NeedsUpgrade`]. The caller has checked
    /// the folder and the file (`StatePaths::open`, [`check_is_wards`]).
    pub fn open(path: &Path, write: bool) -> Result<Db, StateError> {
        let conn = connect(path)?;
        let err = |source| damaged_or(path, source);
        if write {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(err)?;
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
        };
        migrate(&mut db.conn, path, write)?;
        Ok(db)
    }

    /// Creates a new database at `path`, whole or not at all: it is built
    /// under a temporary name and linked into place, so no process ever
    /// sees a half-made (say, empty) database there, and an empty file at
    /// `path` can be refused as damaged. If another ward creates it at the
    /// same moment, its database is kept and this one dropped.
    pub fn create(path: &Path) -> Result<(), StateError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map_or_else(|| "ward.db".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(
            ".{name}.new-{}-{:04x}",
            std::process::id(),
            fastrand::u16(..)
        ));
        let guard = RemoveOnDrop(tmp.clone());
        drop(private::open_file(
            &tmp,
            private::FileUse::ReadWrite,
            "new state database",
        )?);
        {
            let mut conn = connect(&tmp)?;
            let err = |source| sqlite_err(&tmp, source);
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(err)?;
            migrate(&mut conn, &tmp, true)?;
            // Persistent in the file; the -wal is merged and removed on close.
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(err)?;
            conn.close().map_err(|(_, source)| err(source))?;
        }
        let io = |op, source| StateError::Io {
            op,
            path: tmp.clone(),
            source,
        };
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("cannot sync", e))?;
        match private::link_into_place(&tmp, path) {
            Ok(()) => {}
            // Another ward created it first: use that one.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StateError::Io {
                    op: "cannot create",
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        }
        drop(guard);
        private::sync_dir(dir)
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        sqlite_err(&self.path, source)
    }
}

/// Removes a temporary file when dropped (success or not).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        for suffix in ["-journal", "-wal", "-shm"] {
            let mut side = self.0.clone().into_os_string();
            side.push(suffix);
            let _ = std::fs::remove_file(side);
        }
    }
}

/// A connection to an existing file (never creating one); the busy
/// timeout comes first, since everything after it (even switching to WAL)
/// may find the file busy. (Not SQLITE_OPEN_NOFOLLOW: it refuses a link
/// anywhere in the path, such as a symlinked /var/lib; `private.rs` has
/// checked every link on the way and refuses a database that is one.)
fn connect(path: &Path) -> Result<Connection, StateError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| damaged_or(path, source))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|source| damaged_or(path, source))?;
    Ok(conn)
}

/// The tables every version of ward's schema has.
const WARD_TABLES: [&str; 4] = ["runs", "steps", "attempts", "events"];

/// Refuses an SQLite file that is not ward's database, looking through a
/// read-only connection before anything may change it (a mode, the
/// journal mode, a migration): ward always links a whole, migrated
/// database into place, so one without ward's tables (or with
/// `user_version` 0) is another program's, or an empty one nobody made
/// for ward.
pub fn check_is_wards(path: &Path) -> Result<(), StateError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| damaged_or(path, source))?;
    let err = |source| damaged_or(path, source);
    conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut q| {
            q.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(err)?;
    drop(conn);
    let has_wards = WARD_TABLES.iter().all(|t| tables.iter().any(|n| n == t));
    if has_wards && version > 0 {
        return Ok(());
    }
    let problem = if tables.is_empty() {
        "it has no tables".to_owned()
    } else {
        tables.retain(|t| !WARD_TABLES.contains(&t.as_str()));
        let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        if shown.is_empty() {
            format!("it has ward's tables but schema version {version}")
        } else {
            format!(
                "it has other tables: {}{}",
                shown.join(", "),
                if tables.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            )
        }
    };
    Err(StateError::Foreign {
        db: shown(path),
        problem,
    })
}

/// The database as the operator names it.
pub(super) fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// A file that is not a usable SQLite database, with how to move it aside
/// (its -wal/-shm files belong to it).
pub(super) fn damaged(path: &Path, problem: String) -> StateError {
    let p = path.display();
    StateError::Damaged {
        db: shown(path),
        problem,
        fix: format!(
            "To keep it for inspection and start a new history: `mv {p} {p}.broken` (and its \
             -wal/-shm files, if any), then run again"
        ),
    }
}

/// A file that is not SQLite, or a corrupt one, is [`StateError::Damaged`]
/// (with the hint to move it aside); anything else stays an SQLite error.
fn damaged_or(path: &Path, source: rusqlite::Error) -> StateError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            damaged(path, source.to_string())
        }
        _ => sqlite_err(path, source),
    }
}

/// An SQLite error, with the cause when SQLite gives none: "unable to
/// open database file" on a read-only or inode-full file system says
/// nothing about why (SQLite cannot make its -wal/-shm/-journal files).
pub(super) fn sqlite_err(path: &Path, source: rusqlite::Error) -> StateError {
    let vague = matches!(
        source.sqlite_error_code(),
        Some(
            ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
        )
    );
    let detail = match vague.then(|| private::why_unwritable(path)).flatten() {
        Some(cause) => format!("{source}: {cause}"),
        None => source.to_string(),
    };
    StateError::Backend {
        db: shown(path),
        detail,
    }
}

/// Brings the schema up to date (with `write`; without it an older
/// database is refused), by the neutral rule of `state/schema.rs`. All
/// pending migrations run in one `BEGIN IMMEDIATE` transaction that reads
/// `user_version` again once it holds the write lock, so two wards opening
/// an older database at once migrate it once, and the second finds it done.
fn migrate(conn: &mut Connection, path: &Path, write: bool) -> Result<(), StateError> {
    let err = |source| damaged_or(path, source);
    let db = shown(path);
    let version = |c: &Connection| -> Result<Upgrade, StateError> {
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        schema::upgrade(&db, v, write)
    };
    // Up to date (the usual case): no write lock needed.
    if version(conn)? == Upgrade::None {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let Upgrade::From(from) = version(&tx)? else {
        return Ok(());
    };
    for sql in MIGRATIONS.iter().skip(from as usize) {
        tx.execute_batch(sql).map_err(err)?;
    }
    tx.pragma_update(None, "user_version", schema::CURRENT)
        .map_err(err)?;
    tx.commit().map_err(err)
}

const RUN_COLUMNS: &str = "id, playbook_name, playbook_path, playbook_hash, playbook_text, lock_name, \
     vars_json, overrides_json, facts_json, state, host, pid, ward_version, started_at, finished_at, \
     resumes, message, max_age_ms, preconditions_json, slot_at";

fn run_row(path: &Path, r: &Row<'_>) -> rusqlite::Result<Result<RunRecord, StateError>> {
    let state: String = r.get(9)?;
    let Some(state) = RunState::parse(&state) else {
        return Ok(Err(StateError::Corrupt {
            db: shown(path),
            message: format!("unknown run state `{state}`"),
        }));
    };
    let preconditions = match r.get::<_, Option<String>>(18)? {
        None => None,
        Some(text) => match serde_json::from_str(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                return Ok(Err(StateError::Corrupt {
                    db: shown(path),
                    message: format!(
                        "run {}: unreadable preconditions record: {e}",
                        r.get::<_, String>(0)?
                    ),
                }));
            }
        },
    };
    Ok(Ok(RunRecord {
        id: r.get(0)?,
        playbook_name: r.get(1)?,
        playbook_path: r.get(2)?,
        playbook_hash: r.get(3)?,
        playbook_text: r.get(4)?,
        lock_name: r.get(5)?,
        vars: decode(r.get(6)?),
        overrides: decode(r.get(7)?),
        facts: decode(r.get(8)?),
        state,
        host: r.get(10)?,
        pid: r.get(11)?,
        ward_version: r.get(12)?,
        started_at: r.get(13)?,
        finished_at: r.get(14)?,
        resumes: r.get(15)?,
        message: r.get(16)?,
        max_age_ms: r.get(17)?,
        preconditions,
        slot_at: r.get(19)?,
    }))
}

/// The store's operations, one transaction each (see `state::Store`).
impl Db {
    pub(super) fn create_run(&mut self, run: &NewRun, steps: &[NewStep]) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = |source| sqlite_err(&path, source);
        let tx = self.conn.transaction().map_err(err)?;
        // A failed precondition: the run is recorded skipped, in this same
        // transaction, so no ward ever finds it `running` (or resumable).
        let skipped = run.preconditions.as_ref().and_then(|p| p.skip_reason());
        let state = if skipped.is_some() {
            RunState::Skipped
        } else {
            RunState::Running
        };
        let finished = skipped.as_ref().map(|_| run.started_at);
        tx.execute(
            "INSERT INTO runs (id, playbook_name, playbook_path, playbook_hash, playbook_text, lock_name, \
             vars_json, overrides_json, facts_json, state, host, pid, ward_version, started_at, \
             max_age_ms, preconditions_json, finished_at, message) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            params![
                run.id,
                run.playbook_name,
                run.playbook_path,
                run.playbook_hash,
                run.playbook_text,
                run.lock_name,
                json(&run.vars).map_err(err)?,
                json(&run.overrides).map_err(err)?,
                json(&run.facts).map_err(err)?,
                state.as_str(),
                run.host,
                run.pid,
                run.ward_version,
                run.started_at,
                run.max_age_ms,
                run.preconditions.as_ref().map(json).transpose().map_err(err)?,
                finished,
                skipped
            ],
        )
        .map_err(err)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO steps (run_id, step_id, position, definition_json, state, compensation, \
                     reason, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            let (step_state, reason) = match &skipped {
                Some(_) => (
                    StepState::Skipped,
                    Some("not run: the run's preconditions were not met"),
                ),
                None => (StepState::Pending, None),
            };
            for s in steps {
                insert
                    .execute(params![
                        run.id,
                        s.id,
                        s.position as i64,
                        s.definition,
                        step_state.as_str(),
                        s.compensation,
                        reason,
                        finished
                    ])
                    .map_err(err)?;
            }
            tx.execute(
                "INSERT INTO events (run_id, at, kind, message) VALUES (?1, ?2, 'run-started', ?3)",
                params![
                    run.id,
                    run.started_at,
                    format!("pid {} on {}", run.pid, run.host)
                ],
            )
            .map_err(err)?;
            if let Some(p) = &run.preconditions {
                let message = if p.skipped_by_operator {
                    "not checked: --skip-preconditions".to_owned()
                } else {
                    let passed = p.checks.iter().filter(|c| c.passed).count();
                    format!("{passed} of {} held", p.checks.len())
                };
                tx.execute(
                    "INSERT INTO events (run_id, at, kind, message) VALUES (?1, ?2, 'preconditions', ?3)",
                    params![run.id, run.started_at, message],
                )
                .map_err(err)?;
            }
            if let Some(reason) = &skipped {
                tx.execute(
                    "INSERT INTO events (run_id, at, kind, message) VALUES (?1, ?2, 'run-skipped', ?3)",
                    params![run.id, run.started_at, reason],
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    pub(super) fn record_unrun(&mut self, run: &UnrunRun) -> Result<bool, StateError> {
        let path = self.path.clone();
        let err = |source| sqlite_err(&path, source);
        let tx = self.conn.transaction().map_err(err)?;
        // A missed slot already recorded (the unique index on playbook
        // name and slot) is left as it is.
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO runs (id, playbook_name, playbook_path, playbook_hash, \
                 playbook_text, lock_name, vars_json, overrides_json, facts_json, state, host, pid, \
                 ward_version, started_at, finished_at, message, max_age_ms, slot_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, '{}', '{}', 'null', ?7, ?8, ?9, ?10, ?11, ?11, ?12, \
                 ?13, ?14)",
                params![
                    run.id,
                    run.playbook_name,
                    run.playbook_path,
                    run.playbook_hash,
                    run.playbook_text,
                    run.lock_name,
                    run.state.as_str(),
                    run.host,
                    run.pid,
                    run.ward_version,
                    run.at,
                    run.message,
                    run.max_age_ms,
                    run.slot_at
                ],
            )
            .map_err(err)?;
        if inserted == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO events (run_id, at, kind, message) VALUES (?1, ?2, ?3, ?4)",
            params![run.id, run.at, format!("run-{}", run.state), run.message],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    pub(super) fn apply(&mut self, run_id: &str, changes: &[Change]) -> Result<(), StateError> {
        if changes.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| sqlite_err(&path, source);
        let tx = self.conn.transaction().map_err(err)?;
        for change in changes {
            apply_one(&tx, run_id, change).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub(super) fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1");
        self.conn
            .query_row(&sql, [id], |r| run_row(&self.path, r))
            .optional()
            .map_err(|e| self.err(e))?
            .transpose()
    }

    pub(super) fn runs(
        &self,
        playbook: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StateError> {
        self.runs_matching(&RunFilter {
            playbook: playbook.map(str::to_owned),
            limit,
            ..RunFilter::default()
        })
    }

    pub(super) fn runs_matching(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, StateError> {
        // The states are ward's own fixed words, not the operator's text,
        // so they can be written into the query.
        let states = if filter.states.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = filter
                .states
                .iter()
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            format!(" AND state IN ({})", list.join(", "))
        };
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR playbook_name = ?1) \
             AND (?2 IS NULL OR started_at >= ?2) AND (?3 IS NULL OR started_at < ?3){states} \
             ORDER BY started_at DESC, id DESC LIMIT ?4"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![filter.playbook, filter.since_ms, filter.until_ms, limit],
                |r| run_row(&self.path, r),
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.err(e))??);
        }
        Ok(out)
    }

    pub(super) fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT step_id, position, definition_json, state, reason, attempts, exit_code, \
                 started_at, finished_at, log_path, compensation, unflushed FROM steps WHERE run_id = ?1 ORDER BY position",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                let state: String = r.get(3)?;
                Ok((
                    state,
                    StepRecord {
                        id: r.get(0)?,
                        position: r.get::<_, i64>(1)? as usize,
                        definition: r.get(2)?,
                        state: StepState::Pending,
                        reason: r.get(4)?,
                        attempts: r.get(5)?,
                        exit_code: r.get(6)?,
                        started_at: r.get(7)?,
                        finished_at: r.get(8)?,
                        log_path: r.get(9)?,
                        compensation: r.get(10)?,
                        unflushed: None,
                    },
                    r.get::<_, Option<String>>(11)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (state, mut rec, unflushed) = row.map_err(|e| self.err(e))?;
            rec.unflushed = match unflushed {
                None => None,
                Some(json) => {
                    Some(
                        serde_json::from_str(&json).map_err(|e| StateError::Corrupt {
                            db: shown(&self.path),
                            message: format!(
                                "step `{}`: unreadable `unflushed` record: {e}",
                                rec.id
                            ),
                        })?,
                    )
                }
            };
            rec.state = StepState::parse(&state).ok_or_else(|| StateError::Corrupt {
                db: shown(&self.path),
                message: format!("unknown step state `{state}`"),
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    pub(super) fn attempts(
        &self,
        run_id: &str,
        step: Option<&str>,
    ) -> Result<Vec<AttemptRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.step_id, a.attempt, a.started_at, a.finished_at, a.exit_code, a.signal, a.outcome, \
                 a.message, a.log_path, a.details FROM attempts a JOIN steps s ON s.run_id = a.run_id AND s.step_id = a.step_id \
                 WHERE a.run_id = ?1 AND (?2 IS NULL OR a.step_id = ?2) ORDER BY a.started_at, s.position, a.attempt",
            )
            .map_err(|e| self.err(e))?;
        let path = self.path.clone();
        let rows = stmt
            .query_map(params![run_id, step], |r| {
                let outcome = match r.get::<_, Option<String>>(6)? {
                    None => None,
                    Some(text) => match AttemptOutcome::parse(&text) {
                        Some(o) => Some(o),
                        None => {
                            return Ok(Err(StateError::Corrupt {
                                db: shown(&path),
                                message: format!("unknown attempt outcome `{text}`"),
                            }));
                        }
                    },
                };
                Ok(Ok(AttemptRecord {
                    step_id: r.get(0)?,
                    attempt: r.get(1)?,
                    started_at: r.get(2)?,
                    finished_at: r.get(3)?,
                    exit_code: r.get(4)?,
                    signal: r.get(5)?,
                    outcome,
                    message: r.get(7)?,
                    log_path: r.get(8)?,
                    details: r
                        .get::<_, Option<String>>(9)?
                        .and_then(|d| serde_json::from_str(&d).ok()),
                }))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?
            .into_iter()
            .collect()
    }

    pub(super) fn items(
        &self,
        run_id: &str,
        step: Option<&str>,
        state: Option<ItemState>,
    ) -> Result<Vec<ItemRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT i.step_id, i.item_key, i.position, i.item_json, i.state, i.attempts, \
                 i.exit_code, i.message, i.started_at, i.finished_at, i.log_path, i.worker \
                 FROM items i JOIN steps s ON s.run_id = i.run_id AND s.step_id = i.step_id \
                 WHERE i.run_id = ?1 AND (?2 IS NULL OR i.step_id = ?2) \
                 AND (?3 IS NULL OR i.state = ?3) ORDER BY s.position, i.position",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id, step, state.map(ItemState::as_str)], |r| {
                Ok((
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    ItemRecord {
                        step_id: r.get(0)?,
                        key: r.get(1)?,
                        position: r.get::<_, i64>(2)? as usize,
                        item: serde_json::Value::Null,
                        state: ItemState::Pending,
                        attempts: r.get(5)?,
                        exit_code: r.get(6)?,
                        message: r.get(7)?,
                        started_at: r.get(8)?,
                        finished_at: r.get(9)?,
                        log_path: r.get(10)?,
                        worker: r.get(11)?,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (json, state, mut rec) = row.map_err(|e| self.err(e))?;
            // An item that cannot be read back cannot be run again as it
            // was: a damaged record, never silently another item.
            rec.item = serde_json::from_str(&json).map_err(|e| StateError::Corrupt {
                db: shown(&self.path),
                message: format!(
                    "step `{}`, item `{}`: unreadable item record: {e}",
                    rec.step_id, rec.key
                ),
            })?;
            rec.state = ItemState::parse(&state).ok_or_else(|| StateError::Corrupt {
                db: shown(&self.path),
                message: format!("unknown item state `{state}`"),
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// The item controls recorded after event `after`, and the run's
    /// last event number. Both use the `events_by_run` index: a lookup and
    /// a short range, cheap enough to ask a few times a second.
    pub(super) fn item_controls(
        &self,
        run_id: &str,
        after: i64,
    ) -> Result<(i64, Vec<ItemControlled>), StateError> {
        let last: i64 = self
            .conn
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if last <= after {
            return Ok((last, Vec::new()));
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, step_id, kind, message FROM events \
                 WHERE run_id = ?1 AND seq > ?2 AND seq <= ?3 \
                 AND kind IN ('item-paused', 'item-unpaused', 'item-retried') ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id, after, last], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, step, kind, key) = row.map_err(|e| self.err(e))?;
            if let (Some(step), Some(key), Some(control)) =
                (step, key, ItemControl::from_event_kind(&kind))
            {
                out.push(ItemControlled {
                    seq,
                    step,
                    key,
                    control,
                });
            }
        }
        Ok((last, out))
    }

    pub(super) fn events(&self, run_id: &str) -> Result<Vec<EventRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, at, step_id, kind, message FROM events WHERE run_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(EventRecord {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    step_id: r.get(2)?,
                    kind: EventKind::parse(&r.get::<_, String>(3)?),
                    message: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    pub(super) fn last_succeeded(&self, playbook: &str) -> Result<Option<RunRecord>, StateError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE playbook_name = ?1 AND state = 'succeeded' \
             ORDER BY finished_at DESC, id DESC LIMIT 1"
        );
        self.conn
            .query_row(&sql, [playbook], |r| run_row(&self.path, r))
            .optional()
            .map_err(|e| self.err(e))?
            .transpose()
    }

    pub(super) fn playbook_names(&mut self) -> Result<Vec<String>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT playbook_name FROM runs ORDER BY playbook_name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    pub(super) fn running_with_lock(&self, lock: &str) -> Result<Vec<RunRecord>, StateError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state = 'running' AND lock_name = ?1 ORDER BY started_at"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([lock], |r| run_row(&self.path, r))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(|e| self.err(e))??);
        }
        Ok(out)
    }
}

fn event(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    at: i64,
    step: Option<&str>,
    kind: &str,
    message: Option<&str>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO events (run_id, at, step_id, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![run_id, at, step, kind, message])?;
    Ok(())
}

/// A note's kind as the events table names it.
fn note_kind(kind: NoteKind) -> &'static str {
    kind.as_str()
}

/// A value as the JSON text its column holds.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// A column's JSON text as a value; text that is no such value is kept as
/// why, for what needs the value to say (see [`Recorded`]).
fn decode<T: serde::de::DeserializeOwned>(text: String) -> Recorded<T> {
    serde_json::from_str(&text).map_err(|e| Unreadable(e.to_string()))
}

fn apply_one(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    change: &Change,
) -> rusqlite::Result<()> {
    match change {
        Change::Run { state, message, at } => {
            let finished = (*state != RunState::Running).then_some(*at);
            tx.prepare_cached(
                "UPDATE runs SET state = ?2, message = ?3, finished_at = ?4 WHERE id = ?1",
            )?
            .execute(params![run_id, state.as_str(), message, finished])?;
            event(
                tx,
                run_id,
                *at,
                None,
                &format!("run-{state}"),
                message.as_deref(),
            )
        }
        Change::Resumed { pid, host, at } => {
            tx.prepare_cached(
                "UPDATE runs SET state = 'running', pid = ?2, host = ?3, resumes = resumes + 1, \
                 finished_at = NULL, message = NULL WHERE id = ?1",
            )?
            .execute(params![run_id, pid, host])?;
            event(
                tx,
                run_id,
                *at,
                None,
                "run-resumed",
                Some(&format!("pid {pid} on {host}")),
            )
        }
        Change::AttemptStarted {
            step,
            attempt,
            log_path,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE steps SET state = 'running', reason = NULL, attempts = ?3, log_path = ?4, \
                 started_at = COALESCE(started_at, ?5), finished_at = NULL, exit_code = NULL, unflushed = NULL \
                 WHERE run_id = ?1 AND step_id = ?2",
            )?
            .execute(params![run_id, step, attempt, log_path, at])?;
            tx.prepare_cached(
                "INSERT INTO attempts (run_id, step_id, attempt, started_at, log_path) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![run_id, step, attempt, at, log_path])?;
            event(
                tx,
                run_id,
                *at,
                Some(step),
                "attempt-started",
                Some(&format!("attempt {attempt}")),
            )
        }
        Change::AttemptFinished {
            step,
            attempt,
            state,
            outcome,
            exit_code,
            signal,
            message,
            details,
            at,
        } => {
            let finished = state.is_terminal().then_some(*at);
            tx.prepare_cached(
                "UPDATE steps SET state = ?3, reason = ?4, exit_code = ?5, finished_at = ?6 \
                 WHERE run_id = ?1 AND step_id = ?2",
            )?
            .execute(params![
                run_id,
                step,
                state.as_str(),
                message,
                exit_code,
                finished
            ])?;
            tx.prepare_cached(
                "UPDATE attempts SET finished_at = ?4, exit_code = ?5, signal = ?6, outcome = ?7, message = ?8, \
                 details = ?9 WHERE run_id = ?1 AND step_id = ?2 AND attempt = ?3",
            )?
            .execute(params![
                run_id,
                step,
                attempt,
                at,
                exit_code,
                signal,
                outcome.as_str(),
                message,
                details.as_ref().map(json).transpose()?
            ])?;
            event(
                tx,
                run_id,
                *at,
                Some(step),
                &format!("attempt-{outcome}"),
                message.as_deref(),
            )
        }
        Change::Note { kind, message, at } => {
            event(tx, run_id, *at, None, note_kind(*kind), Some(message))
        }
        Change::Durability { step, unflushed } => {
            // Never recorded as "": which output still needs a flush is what
            // a resume after a power cut relies on; a failure fails the commit.
            let text = unflushed.as_ref().map(json).transpose()?;
            tx.prepare_cached(
                "UPDATE steps SET unflushed = ?3 WHERE run_id = ?1 AND step_id = ?2",
            )?
            .execute(params![run_id, step, text])?;
            Ok(())
        }
        Change::ItemsListed { step, items } => {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO items (run_id, step_id, item_key, position, item_json, state, \
                 priority) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
            )?;
            for item in items {
                insert.execute(params![
                    run_id,
                    step,
                    item.key,
                    i64::try_from(item.position).unwrap_or(i64::MAX),
                    json(&item.value)?,
                    item.priority
                ])?;
            }
            Ok(())
        }
        Change::ItemStarted {
            step,
            key,
            attempt,
            log_path,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE items SET state = 'running', attempts = ?4, log_path = ?5, started_at = ?6, \
                 finished_at = NULL, exit_code = NULL, message = NULL \
                 WHERE run_id = ?1 AND step_id = ?2 AND item_key = ?3",
            )?
            .execute(params![run_id, step, key, attempt, log_path, at])?;
            Ok(())
        }
        Change::ItemFinished {
            step,
            key,
            state,
            exit_code,
            message,
            at,
        } => {
            let finished = (*state != ItemState::Pending).then_some(*at);
            // An item an operator paused meanwhile (`ward pause` from
            // another process) stays paused when the run's ward, which
            // had not noticed yet, would skip it or put it back to pending;
            // only the end of an attempt it ran overrides the pause.
            tx.prepare_cached(
                "UPDATE items SET state = ?4, exit_code = ?5, message = ?6, finished_at = ?7 \
                 WHERE run_id = ?1 AND step_id = ?2 AND item_key = ?3 \
                 AND NOT (state = 'paused' AND ?4 IN ('skipped', 'pending'))",
            )?
            .execute(params![
                run_id,
                step,
                key,
                state.as_str(),
                exit_code,
                message,
                finished
            ])?;
            Ok(())
        }
        Change::Offered {
            step,
            tags,
            max_parallel,
            at,
        } => {
            // Kept for the one logical schema; no worker reads SQLite.
            tx.prepare_cached(
                "INSERT INTO offers (run_id, step_id, tags_json, max_parallel, state, opened_at) \
                 VALUES (?1, ?2, ?3, ?4, 'open', ?5) ON CONFLICT (run_id, step_id) DO UPDATE \
                 SET tags_json = excluded.tags_json, max_parallel = excluded.max_parallel, \
                 state = 'open', opened_at = excluded.opened_at, closed_at = NULL",
            )?
            .execute(params![
                run_id,
                step,
                json(tags)?,
                i64::try_from(*max_parallel).unwrap_or(i64::MAX),
                at
            ])?;
            Ok(())
        }
        Change::OfferClosed {
            step,
            stop,
            skip,
            at,
        } => {
            tx.prepare_cached(
                "UPDATE offers SET state = ?3, closed_at = ?4 WHERE run_id = ?1 AND step_id = ?2",
            )?
            .execute(params![
                run_id,
                step,
                if *stop { "stopping" } else { "closed" },
                at
            ])?;
            if let Some(why) = skip {
                tx.prepare_cached(
                    "UPDATE items SET state = 'skipped', message = ?3, finished_at = ?4 \
                     WHERE run_id = ?1 AND step_id = ?2 AND state = 'pending'",
                )?
                .execute(params![run_id, step, why, at])?;
            }
            Ok(())
        }
        Change::ItemControl {
            step,
            key,
            control,
            at,
        } => {
            let message = match control {
                ItemControl::Pause => Some("paused with `ward pause`".to_owned()),
                ItemControl::Unpause => None,
                ItemControl::Retry => Some("to run again: `ward retry`".to_owned()),
            };
            // Only from the state the control expects: an item that started
            // or ended since the operator looked is left as it is.
            let changed = tx
                .prepare_cached(
                    "UPDATE items SET state = ?5, message = ?6, finished_at = NULL \
                     WHERE run_id = ?1 AND step_id = ?2 AND item_key = ?3 AND state = ?4",
                )?
                .execute(params![
                    run_id,
                    step,
                    key,
                    control.from().as_str(),
                    control.to().as_str(),
                    message
                ])?;
            if changed == 1 {
                event(tx, run_id, *at, Some(step), control.event_kind(), Some(key))?;
            }
            Ok(())
        }
        Change::Step {
            step,
            state,
            reason,
            at,
        } => {
            let finished = state.is_terminal().then_some(*at);
            tx.prepare_cached(
                "UPDATE steps SET state = ?3, reason = ?4, finished_at = ?5, unflushed = NULL \
                 WHERE run_id = ?1 AND step_id = ?2",
            )?
            .execute(params![run_id, step, state.as_str(), reason, finished])?;
            event(
                tx,
                run_id,
                *at,
                Some(step),
                &format!("step-{state}"),
                reason.as_deref(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database at schema version 1, as an older ward left it.
    fn old_database(path: &Path) {
        let conn = Connection::open(path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch(MIGRATIONS[0]).expect("migration 1");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
    }

    #[test]
    fn two_wards_upgrading_one_database_at_once_both_succeed() {
        for trial in 0..30 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("ward.db");
            old_database(&path);
            let start = std::sync::Arc::new(std::sync::Barrier::new(2));
            let openers: Vec<_> = (0..2)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Db::open(&path, true).map(|_| ())
                    })
                })
                .collect();
            for o in openers {
                let result = o.join().expect("thread");
                assert!(result.is_ok(), "trial {trial}: {result:?}");
            }
            let conn = Connection::open(&path).expect("open");
            let v: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .expect("version");
            assert_eq!(v, MIGRATIONS.len() as i64);
        }
    }

    #[test]
    fn an_item_control_changes_only_an_item_in_its_from_state_and_is_read_back_once() {
        use crate::state::{ItemControl, NewItem};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ward.db");
        Db::create(&path).expect("create");
        let mut db = Db::open(&path, true).expect("open");
        let step = NewStep {
            id: "s".into(),
            position: 0,
            definition: "{}".into(),
            compensation: false,
        };
        db.create_run(&super::super::tests::new_run("r1"), &[step])
            .expect("run");
        let item = |key: &str, position| NewItem {
            key: key.into(),
            position,
            value: serde_json::json!(key),
            priority: 0.0,
        };
        let listed = Change::ItemsListed {
            step: "s".into(),
            items: vec![item("a", 0), item("b", 1)],
        };
        db.apply("r1", &[listed]).expect("listed");
        let (cursor, none) = db.item_controls("r1", i64::MAX).expect("cursor");
        assert!(none.is_empty());
        let control = |key: &str, control| Change::ItemControl {
            step: "s".into(),
            key: key.into(),
            control,
            at: 5,
        };
        // `b` is pending, not failed: its retry changes nothing and is not
        // recorded; `a`'s pause is.
        db.apply(
            "r1",
            &[
                control("a", ItemControl::Pause),
                control("b", ItemControl::Retry),
            ],
        )
        .expect("controls");
        let state = |db: &Db, key: &str| {
            db.items("r1", None, None)
                .expect("items")
                .into_iter()
                .find(|i| i.key == key)
                .map(|i| i.state)
        };
        assert_eq!(state(&db, "a"), Some(ItemState::Paused));
        assert_eq!(state(&db, "b"), Some(ItemState::Pending));
        let (last, seen) = db.item_controls("r1", cursor).expect("controls");
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].key.as_str(), seen[0].control),
            ("a", ItemControl::Pause)
        );
        assert!(db.item_controls("r1", last).expect("again").1.is_empty());
        // The run's ward, which had not seen the pause, skips it: it stays
        // paused. Only an attempt it started overrides it.
        let skipped = Change::ItemFinished {
            step: "s".into(),
            key: "a".into(),
            state: ItemState::Skipped,
            exit_code: None,
            message: None,
            at: 6,
        };
        db.apply("r1", &[skipped]).expect("skip");
        assert_eq!(state(&db, "a"), Some(ItemState::Paused));
        db.apply("r1", &[control("a", ItemControl::Unpause)])
            .expect("unpause");
        assert_eq!(state(&db, "a"), Some(ItemState::Pending));
    }
}
