//! How the PostgreSQL store migrates: one SQL batch per version of the
//! logical schema (`state/schema.rs`), the same versions as SQLite's
//! (`sqlite/migrations.rs`), in PostgreSQL's types: whole numbers
//! `BIGINT` (exit codes and signals `INTEGER`), flags `BOOLEAN`, JSON kept
//! as the same `TEXT` SQLite keeps, so both stores read back byte for byte
//! what was written.
//!
//! Everything lives in the schema `ward` of the database the address
//! names, so ward's tables never meet another program's `runs` or
//! `events`. `ward.schema_version` holds the number of migrations applied
//! (SQLite's `user_version`). The pending ones run in one transaction that
//! first takes a transaction-scoped advisory lock ([`MIGRATION_LOCK`]) and
//! only then reads the version: two hosts starting at once against an
//! empty database migrate it once, and the second finds it done. Never
//! edit a published migration: add a new one, here and to SQLite.

use tokio_postgres::Client;

use super::super::StateError;
use super::super::schema::{self, Upgrade};
use super::conn::{Fail, backend, fail};

/// The key of `pg_advisory_xact_lock` that migrations take (any fixed
/// number other programs are unlikely to use: "ward" in ASCII, then 17,
/// the issue).
pub const MIGRATION_LOCK: i64 = 0x7761_7264_0000_0017;

/// The schema, made before the first migration only when absent: `CREATE SCHEMA IF NOT EXISTS`
/// asks for `CREATE` on the database even when the schema exists, which a
/// role given only its own schema lacks.
const SCHEMA: &str = "DO $$ BEGIN \
     IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'ward') THEN \
     CREATE SCHEMA ward; END IF; END $$;";

/// The version table, made before the first migration.
const BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS ward.schema_version (version BIGINT NOT NULL); \
     INSERT INTO ward.schema_version (version) \
     SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM ward.schema_version);";

/// The migrations, in order; index + 1 is the version they bring the database to.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, steps, attempts, events; and the run locks (`leases`), which
    // SQLite keeps as lock files instead. `expires_at` is the server's
    // clock, so hosts whose clocks differ agree on when a lease expired.
    r#"
    CREATE TABLE ward.runs (
        id              TEXT PRIMARY KEY,
        playbook_name   TEXT NOT NULL,
        playbook_path   TEXT NOT NULL,
        playbook_hash   TEXT NOT NULL,
        playbook_text   TEXT NOT NULL,
        lock_name       TEXT NOT NULL,
        vars_json       TEXT NOT NULL,
        overrides_json  TEXT NOT NULL,
        facts_json      TEXT NOT NULL,
        state           TEXT NOT NULL,
        host            TEXT NOT NULL,
        pid             BIGINT NOT NULL,
        ward_version    TEXT NOT NULL,
        started_at      BIGINT NOT NULL,
        finished_at     BIGINT,
        resumes         BIGINT NOT NULL DEFAULT 0,
        message         TEXT
    );
    CREATE INDEX runs_by_playbook ON ward.runs (playbook_name, started_at);
    CREATE INDEX runs_by_state ON ward.runs (state, lock_name);

    CREATE TABLE ward.steps (
        run_id          TEXT NOT NULL REFERENCES ward.runs (id),
        step_id         TEXT NOT NULL,
        position        BIGINT NOT NULL,
        definition_json TEXT NOT NULL,
        state           TEXT NOT NULL,
        reason          TEXT,
        attempts        BIGINT NOT NULL DEFAULT 0,
        exit_code       INTEGER,
        started_at      BIGINT,
        finished_at     BIGINT,
        log_path        TEXT,
        compensation    BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (run_id, step_id)
    );

    CREATE TABLE ward.attempts (
        run_id      TEXT NOT NULL,
        step_id     TEXT NOT NULL,
        attempt     BIGINT NOT NULL,
        started_at  BIGINT NOT NULL,
        finished_at BIGINT,
        exit_code   INTEGER,
        signal      INTEGER,
        outcome     TEXT,
        message     TEXT,
        details     TEXT,
        log_path    TEXT NOT NULL,
        PRIMARY KEY (run_id, step_id, attempt),
        FOREIGN KEY (run_id, step_id) REFERENCES ward.steps (run_id, step_id)
    );

    CREATE TABLE ward.events (
        seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id  TEXT NOT NULL REFERENCES ward.runs (id),
        at      BIGINT NOT NULL,
        step_id TEXT,
        kind    TEXT NOT NULL,
        message TEXT
    );
    CREATE INDEX events_by_run ON ward.events (run_id, seq);

    CREATE TABLE ward.leases (
        name        TEXT PRIMARY KEY,
        run_id      TEXT NOT NULL,
        host        TEXT NOT NULL,
        boot_id     TEXT NOT NULL,
        pid         BIGINT NOT NULL,
        since       TEXT NOT NULL,
        token       BIGINT NOT NULL,
        expires_at  TIMESTAMPTZ NOT NULL
    );
    "#,
    // 2: output of a succeeded step not yet flushed (state/recovery.rs rule 6).
    r#"
    ALTER TABLE ward.steps ADD COLUMN unflushed TEXT;
    "#,
    // 3: `max_age` with each run; what the preconditions found.
    r#"
    ALTER TABLE ward.runs ADD COLUMN max_age_ms BIGINT;
    ALTER TABLE ward.runs ADD COLUMN preconditions_json TEXT;
    CREATE INDEX runs_by_playbook_state ON ward.runs (playbook_name, state, finished_at);
    "#,
    // 4: a `missed` run's slot, each (playbook name, slot) once.
    r#"
    ALTER TABLE ward.runs ADD COLUMN slot_at BIGINT;
    CREATE UNIQUE INDEX runs_by_slot ON ward.runs (playbook_name, slot_at) WHERE slot_at IS NOT NULL;
    "#,
    // 5: each playbook's `history:` policy as its latest run recorded it.
    r#"
    CREATE TABLE ward.history_policies (
        playbook_name TEXT PRIMARY KEY,
        keep_days     BIGINT,
        keep_runs     BIGINT,
        run_id        TEXT NOT NULL,
        recorded_at   BIGINT NOT NULL
    );
    "#,
    // 6: each item of a `for_each` step.
    r#"
    CREATE TABLE ward.items (
        run_id      TEXT NOT NULL,
        step_id     TEXT NOT NULL,
        item_key    TEXT NOT NULL,
        position    BIGINT NOT NULL,
        item_json   TEXT NOT NULL,
        state       TEXT NOT NULL,
        attempts    BIGINT NOT NULL DEFAULT 0,
        exit_code   INTEGER,
        message     TEXT,
        started_at  BIGINT,
        finished_at BIGINT,
        log_path    TEXT,
        PRIMARY KEY (run_id, step_id, item_key),
        FOREIGN KEY (run_id, step_id) REFERENCES ward.steps (run_id, step_id)
    );
    "#,
    // 7: items handed to `ward worker`s (state/queue.rs). The partial index
    // is what a claim walks: the step's items that may be claimed, highest
    // priority first, so a claim reads a few index entries however many
    // items already ended.
    r#"
    ALTER TABLE ward.items ADD COLUMN priority DOUBLE PRECISION NOT NULL DEFAULT 0;
    ALTER TABLE ward.items ADD COLUMN worker TEXT;
    CREATE INDEX items_claimable ON ward.items (run_id, step_id, priority DESC, position)
        WHERE state IN ('pending', 'running');
    CREATE TABLE ward.offers (
        run_id       TEXT NOT NULL,
        step_id      TEXT NOT NULL,
        tags_json    TEXT NOT NULL,
        max_parallel BIGINT NOT NULL,
        state        TEXT NOT NULL,
        opened_at    BIGINT NOT NULL,
        closed_at    BIGINT,
        PRIMARY KEY (run_id, step_id),
        FOREIGN KEY (run_id, step_id) REFERENCES ward.steps (run_id, step_id)
    );
    CREATE TABLE ward.claims (
        seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id   TEXT NOT NULL,
        step_id  TEXT NOT NULL,
        item_key TEXT NOT NULL,
        worker   TEXT NOT NULL,
        host     TEXT NOT NULL,
        pid      BIGINT NOT NULL,
        attempt  BIGINT NOT NULL,
        kind     TEXT NOT NULL,
        state    TEXT,
        at       BIGINT NOT NULL
    );
    CREATE INDEX claims_by_run ON ward.claims (run_id, seq);
    "#,
];

// One migration per version of the logical schema, no more, no less.
const _: () = assert!(MIGRATIONS.len() as i64 == schema::CURRENT);

/// What the database holds before anything is changed.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No schema `ward`: a database ward never used.
    Nothing,
    /// ward's schema at this version.
    Version(i64),
}

/// Looks without changing anything: refuses a schema `ward` that is not
/// ward's (no version table, or other tables only). An empty schema `ward`
/// is a database ward never used: a DBA who grants no `CREATE` on the
/// database makes it for ward's role (`CREATE SCHEMA ward AUTHORIZATION
/// ...`), and ward fills it as it would an empty database.
pub async fn inspect(client: &Client, shown: &str) -> Result<Found, Fail> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'ward'), \
             to_regclass('ward.schema_version') IS NOT NULL, \
             EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'ward') \
             OR EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                     WHERE n.nspname = 'ward') \
             OR EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace \
                     WHERE n.nspname = 'ward')",
            &[],
        )
        .await
        .map_err(fail(shown))?;
    let (schema, versioned, anything): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    if !schema || !anything {
        return Ok(Found::Nothing);
    }
    if !versioned {
        return Err(Fail::State(StateError::Foreign {
            db: shown.to_owned(),
            problem: "it has a schema `ward` without ward's `ward.schema_version` table".to_owned(),
        }));
    }
    let foreign = |problem: String| {
        Fail::State(StateError::Foreign {
            db: shown.to_owned(),
            problem,
        })
    };
    // Another program's table of that name: its `version` is read only
    // once it is known to be ward's whole number.
    let kind: Option<String> = client
        .query_opt(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'ward.schema_version'::regclass AND attname = 'version' \
             AND NOT attisdropped",
            &[],
        )
        .await
        .map_err(fail(shown))?
        .map(|row| row.get(0));
    if kind.as_deref() != Some("bigint") {
        return Err(foreign(
            "its `ward.schema_version` table is not ward's: it has no whole-number column \
             `version`"
                .to_owned(),
        ));
    }
    let version: i64 = client
        .query_one("SELECT max(version) FROM ward.schema_version", &[])
        .await
        .map_err(fail(shown))?
        .try_get::<_, Option<i64>>(0)
        .map_err(|e| Fail::State(backend(shown, &e)))?
        .unwrap_or(0);
    if version < 0 {
        return Err(foreign(format!(
            "its `ward.schema_version` says version {version}"
        )));
    }
    let row = client
        .query_one(
            "SELECT to_regclass('ward.runs') IS NOT NULL, \
             EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = 'ward' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                     AND c.relname <> 'schema_version')",
            &[],
        )
        .await
        .map_err(fail(shown))?;
    let (runs, others): (bool, bool) = (row.get(0), row.get(1));
    if version >= 1 && !runs {
        return Err(foreign(format!(
            "its `ward.schema_version` says version {version}, but ward's table `ward.runs` \
             is not there"
        )));
    }
    // Version 0 is a migration that never committed: nothing else is
    // ward's yet, so other tables are another program's.
    if version == 0 && others {
        return Err(foreign(
            "its schema `ward` holds tables ward did not make".to_owned(),
        ));
    }
    Ok(Found::Version(version))
}

/// Brings the schema to [`schema::CURRENT`] (creating it with `create`),
/// by the neutral rule of `state/schema.rs`; without `write`, an older
/// schema is refused and nothing changes.
pub async fn migrate(
    client: &mut Client,
    shown: &str,
    create: bool,
    write: bool,
) -> Result<(), Fail> {
    match inspect(client, shown).await? {
        Found::Nothing if !create => {
            return Err(Fail::State(StateError::Missing {
                db: shown.to_owned(),
                missing: None,
            }));
        }
        Found::Nothing => {}
        Found::Version(v) => {
            if schema::upgrade(shown, v, write)? == Upgrade::None {
                return Ok(());
            }
        }
    }
    let tx = client.transaction().await.map_err(fail(shown))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail(shown))?;
    tx.batch_execute(SCHEMA).await.map_err(fail(shown))?;
    tx.batch_execute(BOOTSTRAP).await.map_err(fail(shown))?;
    let from: i64 = tx
        .query_one("SELECT max(version) FROM ward.schema_version", &[])
        .await
        .map_err(fail(shown))?
        .get(0);
    let Upgrade::From(from) = schema::upgrade(shown, from, true)? else {
        // Another ward did it while this one waited for the lock.
        return Ok(());
    };
    for sql in MIGRATIONS.iter().skip(from as usize) {
        tx.batch_execute(sql).await.map_err(fail(shown))?;
    }
    tx.execute(
        "UPDATE ward.schema_version SET version = $1",
        &[&schema::CURRENT],
    )
    .await
    .map_err(fail(shown))?;
    tx.commit()
        .await
        .map_err(|e| super::conn::commit_failed(shown, &e))?;
    tracing::info!(
        "state: {shown} migrated from schema version {from} to {}",
        schema::CURRENT
    );
    Ok(())
}
