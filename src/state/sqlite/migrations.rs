//! How the SQLite store migrates: one SQL batch per version of the logical
//! schema (`state/schema.rs`).
//!
//! `PRAGMA user_version` holds the number of migrations applied. The
//! pending ones run once, in order, in one `BEGIN IMMEDIATE` transaction
//! (see `db.rs`). Never edit a published migration: add a new one.

/// The migrations, in order; index + 1 is the version they bring the database to.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, steps, attempts, events. Steps and attempts are clustered on
    // their keys (WITHOUT ROWID): a checkpoint touches one page per table.
    r#"
    CREATE TABLE runs (
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
        pid             INTEGER NOT NULL,
        ward_version    TEXT NOT NULL,
        started_at      INTEGER NOT NULL,
        finished_at     INTEGER,
        resumes         INTEGER NOT NULL DEFAULT 0,
        message         TEXT
    );
    CREATE INDEX runs_by_playbook ON runs (playbook_name, started_at);
    CREATE INDEX runs_by_state ON runs (state, lock_name);

    CREATE TABLE steps (
        run_id          TEXT NOT NULL REFERENCES runs (id),
        step_id         TEXT NOT NULL,
        position        INTEGER NOT NULL,
        definition_json TEXT NOT NULL,
        state           TEXT NOT NULL,
        reason          TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        exit_code       INTEGER,
        started_at      INTEGER,
        finished_at     INTEGER,
        log_path        TEXT,
        compensation    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, step_id)
    ) WITHOUT ROWID;

    CREATE TABLE attempts (
        run_id      TEXT NOT NULL,
        step_id     TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        exit_code   INTEGER,
        signal      INTEGER,
        outcome     TEXT,
        message     TEXT,
        details     TEXT,
        log_path    TEXT NOT NULL,
        PRIMARY KEY (run_id, step_id, attempt),
        FOREIGN KEY (run_id, step_id) REFERENCES steps (run_id, step_id)
    ) WITHOUT ROWID;

    -- Run-level happenings (start, resume, end, crash reclaim, notes). Step
    -- transitions live in `steps` and `attempts`; repeating them here would
    -- cost pages in every commit of the hot path.
    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY,
        run_id  TEXT NOT NULL REFERENCES runs (id),
        at      INTEGER NOT NULL,
        step_id TEXT,
        kind    TEXT NOT NULL,
        message TEXT
    );
    CREATE INDEX events_by_run ON events (run_id, seq);
    "#,
    // 2: output of a succeeded step that is not yet flushed to disk (JSON
    // `{boot_id, paths}`), see state/recovery.rs rule 6.
    r#"
    ALTER TABLE steps ADD COLUMN unflushed TEXT;
    "#,
    // 3: the playbook's `max_age` (ms) with each run, so `ward check` works
    // without the playbook file; what the preconditions found (JSON
    // `{skipped_by_operator, checks: [{check, passed, detail}], log_path}`).
    // A run whose preconditions failed has state `skipped`.
    r#"
    ALTER TABLE runs ADD COLUMN max_age_ms INTEGER;
    ALTER TABLE runs ADD COLUMN preconditions_json TEXT;
    CREATE INDEX runs_by_playbook_state ON runs (playbook_name, state, finished_at);
    "#,
    // 4: a slot of the schedule that passed without a run is recorded as a
    // run in state `missed` (no steps) with the slot's instant (Unix ms);
    // the unique index makes "each missed slot once" the database's rule.
    r#"
    ALTER TABLE runs ADD COLUMN slot_at INTEGER;
    CREATE UNIQUE INDEX runs_by_slot ON runs (playbook_name, slot_at) WHERE slot_at IS NOT NULL;
    "#,
    // 5: each playbook's `history:` policy as its latest run recorded it
    // (NULL numbers: the default), so `ward prune` applies it without the
    // playbook file; `run_id` and `recorded_at` say which run last changed
    // it. See state/retention.rs.
    r#"
    CREATE TABLE history_policies (
        playbook_name TEXT PRIMARY KEY,
        keep_days     INTEGER,
        keep_runs     INTEGER,
        run_id        TEXT NOT NULL,
        recorded_at   INTEGER NOT NULL
    );
    "#,
    // 6: each item of a `for_each` step (fan-out), keyed by its stable id
    // within the step, so a resume finds what each item did. Clustered on
    // that key like steps: a checkpoint touches one page. `item_json` is
    // the item itself, so a resume runs the items it recorded even if the
    // `lines:` file changed since. No per-item rows in `events`: with
    // thousands of items they would cost a page per checkpoint each.
    r#"
    CREATE TABLE items (
        run_id      TEXT NOT NULL,
        step_id     TEXT NOT NULL,
        item_key    TEXT NOT NULL,
        position    INTEGER NOT NULL,
        item_json   TEXT NOT NULL,
        state       TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        exit_code   INTEGER,
        message     TEXT,
        started_at  INTEGER,
        finished_at INTEGER,
        log_path    TEXT,
        PRIMARY KEY (run_id, step_id, item_key),
        FOREIGN KEY (run_id, step_id) REFERENCES steps (run_id, step_id)
    ) WITHOUT ROWID;
    "#,
    // 7: items handed to `ward worker`s (a shared store's queue; SQLite
    // keeps the same tables so the logical schema is one, and they stay
    // empty: workers need PostgreSQL). `priority` is kept so that a claim
    // can take the highest first; `worker` is the claimant of a running
    // item. `offers`: a step whose items workers may claim, and whether
    // they still may. `claims`: every claim and release, with host and pid.
    r#"
    ALTER TABLE items ADD COLUMN priority REAL NOT NULL DEFAULT 0;
    ALTER TABLE items ADD COLUMN worker TEXT;
    CREATE TABLE offers (
        run_id       TEXT NOT NULL,
        step_id      TEXT NOT NULL,
        tags_json    TEXT NOT NULL,
        max_parallel INTEGER NOT NULL,
        state        TEXT NOT NULL,
        opened_at    INTEGER NOT NULL,
        closed_at    INTEGER,
        PRIMARY KEY (run_id, step_id),
        FOREIGN KEY (run_id, step_id) REFERENCES steps (run_id, step_id)
    );
    CREATE TABLE claims (
        seq      INTEGER PRIMARY KEY,
        run_id   TEXT NOT NULL,
        step_id  TEXT NOT NULL,
        item_key TEXT NOT NULL,
        worker   TEXT NOT NULL,
        host     TEXT NOT NULL,
        pid      INTEGER NOT NULL,
        attempt  INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        state    TEXT,
        at       INTEGER NOT NULL
    );
    CREATE INDEX claims_by_run ON claims (run_id, seq);
    "#,
];

// One migration per version of the logical schema, no more, no less.
const _: () = assert!(MIGRATIONS.len() as i64 == super::super::schema::CURRENT);
