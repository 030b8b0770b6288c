//! The store's statements: what `sqlite/db.rs` and `sqlite/retention.rs`
//! do, in PostgreSQL's SQL, one transaction per write. Every function
//! here is work that can be done again on a new connection if the old one
//! is lost before its commit is sent ([`Fail::Lost`]); a failed `COMMIT`
//! is final (`conn::commit_failed`).

use std::collections::BTreeMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Transaction};

use super::super::records::{
    AttemptOutcome, AttemptRecord, Change, ItemControl, ItemControlled, ItemRecord, ItemState,
    NewRun, NewStep, Recorded, RunRecord, RunState, StepRecord, StepState, Unreadable, UnrunRun,
};
use super::super::retention::{self, PruneRequest, PrunedRun, Retention, RunBrief};
use super::super::{EventKind, EventRecord, RunFilter, StateError};
use super::conn::{Fail, commit_failed, fail};

// Text is ordered by bytes (`COLLATE "C"`), as SQLite orders it, whatever
// the database's collation: run ids and playbook names list the same on
// both stores.

/// A step listing at least this many items refreshes the items' planner
/// statistics (`Change::ItemsListed`).
const ANALYZE_FROM: usize = 100;

/// The run columns, in the order [`run_row`] reads them.
const RUN_COLUMNS: &str = "id, playbook_name, playbook_path, playbook_hash, playbook_text, lock_name, \
     vars_json, overrides_json, facts_json, state, host, pid, ward_version, started_at, finished_at, \
     resumes, message, max_age_ms, preconditions_json, slot_at";

pub(super) fn corrupt(shown: &str, message: String) -> StateError {
    StateError::Corrupt {
        db: shown.to_owned(),
        message,
    }
}

/// Column `i` of a row, or a [`StateError::Corrupt`] saying which.
fn get<'r, T: tokio_postgres::types::FromSql<'r>>(
    shown: &str,
    r: &'r Row,
    i: usize,
) -> Result<T, StateError> {
    r.try_get(i)
        .map_err(|e| corrupt(shown, format!("column {i}: {e}")))
}

/// A whole number column as the record's type (a pid, a count).
fn int<T: TryFrom<i64>>(shown: &str, r: &Row, i: usize) -> Result<T, StateError> {
    let v: i64 = get(shown, r, i)?;
    T::try_from(v).map_err(|_| corrupt(shown, format!("column {i}: {v} is out of range")))
}

fn opt_int<T: TryFrom<i64>>(shown: &str, r: &Row, i: usize) -> Result<Option<T>, StateError> {
    match get::<Option<i64>>(shown, r, i)? {
        None => Ok(None),
        Some(v) => T::try_from(v)
            .map(Some)
            .map_err(|_| corrupt(shown, format!("column {i}: {v} is out of range"))),
    }
}

/// A value as the JSON text its column holds.
fn json<T: serde::Serialize + ?Sized>(shown: &str, value: &T) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|e| corrupt(shown, format!("cannot encode: {e}")))
}

/// A column's JSON text as a value (see [`Recorded`]).
fn decode<T: serde::de::DeserializeOwned>(text: String) -> Recorded<T> {
    serde_json::from_str(&text).map_err(|e| Unreadable(e.to_string()))
}

fn clamp(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn run_row(shown: &str, r: &Row) -> Result<RunRecord, StateError> {
    let state: String = get(shown, r, 9)?;
    let state = RunState::parse(&state)
        .ok_or_else(|| corrupt(shown, format!("unknown run state `{state}`")))?;
    let id: String = get(shown, r, 0)?;
    let preconditions = match get::<Option<String>>(shown, r, 18)? {
        None => None,
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
            corrupt(
                shown,
                format!("run {id}: unreadable preconditions record: {e}"),
            )
        })?),
    };
    Ok(RunRecord {
        playbook_name: get(shown, r, 1)?,
        playbook_path: get(shown, r, 2)?,
        playbook_hash: get(shown, r, 3)?,
        playbook_text: get(shown, r, 4)?,
        lock_name: get(shown, r, 5)?,
        vars: decode(get(shown, r, 6)?),
        overrides: decode(get(shown, r, 7)?),
        facts: decode(get(shown, r, 8)?),
        state,
        host: get(shown, r, 10)?,
        pid: int(shown, r, 11)?,
        ward_version: get(shown, r, 12)?,
        started_at: get(shown, r, 13)?,
        finished_at: get(shown, r, 14)?,
        resumes: int(shown, r, 15)?,
        message: get(shown, r, 16)?,
        max_age_ms: get(shown, r, 17)?,
        preconditions,
        slot_at: get(shown, r, 19)?,
        id,
    })
}

fn run_rows(shown: &str, rows: &[Row]) -> Result<Vec<RunRecord>, StateError> {
    rows.iter().map(|r| run_row(shown, r)).collect()
}

/// Text as PostgreSQL can hold it: a NUL byte (which `TEXT` refuses,
/// failing the whole transaction, so the run would lose its state over
/// one line of a `lines:` file or one message) becomes U+FFFD, as an
/// undecodable byte does. Item keys and messages only; JSON escapes NUL.
fn no_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// [`no_nul`] of an optional text.
fn no_nul_opt(s: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    s.map(no_nul)
}

/// The first key of the per-run lock (`lock_run`): "ward" in ASCII.
const RUN_LOCK_CLASS: i32 = 0x7761_7264;

/// Takes the run's write lock until the commit (a transaction lock; taking
/// it again in the same transaction costs nothing). Every write to a run
/// takes it first (`apply`, and any transaction that records an event):
/// - a run's events then commit in the order of their numbers: an
///   identity hands out numbers when rows are inserted, not when they
///   commit, so a `ward pause` numbered 100 could otherwise commit after
///   the run's own event 101, and a running ward that had read up to 101
///   (`item_controls`) would never see it;
/// - and the run's ward and a `ward pause|unpause|retry` never deadlock on
///   an item's row and the events, since both take this first.
///
/// Two keys, so it never meets the migration's one-key lock.
async fn lock_run(tx: &Transaction<'_>, shown: &str, run_id: &str) -> Result<(), Fail> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&RUN_LOCK_CLASS, &run_id],
    )
    .await
    .map_err(fail(shown))?;
    Ok(())
}

async fn event(
    tx: &Transaction<'_>,
    shown: &str,
    run_id: &str,
    at: i64,
    step: Option<&str>,
    kind: &str,
    message: Option<&str>,
) -> Result<(), Fail> {
    lock_run(tx, shown, run_id).await?;
    let message = no_nul_opt(message);
    let message = message.as_deref();
    tx.execute(
        "INSERT INTO ward.events (run_id, at, step_id, kind, message) VALUES ($1, $2, $3, $4, $5)",
        &[&run_id, &at, &step, &kind, &message],
    )
    .await
    .map_err(fail(shown))?;
    Ok(())
}

/// Fails unless this process still holds every lease of `tokens` (as
/// `(name, token)`), and keeps them held until the commit (`FOR SHARE`: a
/// takeover waits for it). The fence that keeps a holder whose lease
/// expired and was taken from writing beside the new holder.
async fn fence(tx: &Transaction<'_>, shown: &str, tokens: &[(String, i64)]) -> Result<(), Fail> {
    if tokens.is_empty() {
        return Ok(());
    }
    let wanted: Vec<i64> = tokens.iter().map(|(_, t)| *t).collect();
    let rows = tx
        .query(
            "SELECT token FROM ward.leases WHERE token = ANY($1) FOR SHARE",
            &[&wanted],
        )
        .await
        .map_err(fail(shown))?;
    let found: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    if let Some((name, _)) = tokens.iter().find(|(_, t)| !found.contains(t)) {
        return Err(Fail::State(super::lease::lost_error(shown, name)));
    }
    Ok(())
}

pub async fn create_run(
    client: &mut Client,
    shown: &str,
    run: &NewRun,
    steps: &[NewStep],
    tokens: &[(String, i64)],
) -> Result<(), Fail> {
    let tx = client.transaction().await.map_err(fail(shown))?;
    fence(&tx, shown, tokens).await?;
    let skipped = run.preconditions.as_ref().and_then(|p| p.skip_reason());
    let state = if skipped.is_some() {
        RunState::Skipped
    } else {
        RunState::Running
    };
    let finished = skipped.as_ref().map(|_| run.started_at);
    let preconditions = run
        .preconditions
        .as_ref()
        .map(|p| json(shown, p))
        .transpose()?;
    let params: [&(dyn ToSql + Sync); 18] = [
        &run.id,
        &run.playbook_name,
        &run.playbook_path,
        &run.playbook_hash,
        &run.playbook_text,
        &run.lock_name,
        &json(shown, &run.vars)?,
        &json(shown, &run.overrides)?,
        &json(shown, &run.facts)?,
        &state.as_str(),
        &run.host,
        &i64::from(run.pid),
        &run.ward_version,
        &run.started_at,
        &run.max_age_ms,
        &preconditions,
        &finished,
        &skipped,
    ];
    tx.execute(
        "INSERT INTO ward.runs (id, playbook_name, playbook_path, playbook_hash, playbook_text, \
         lock_name, vars_json, overrides_json, facts_json, state, host, pid, ward_version, \
         started_at, max_age_ms, preconditions_json, finished_at, message) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        &params,
    )
    .await
    .map_err(fail(shown))?;
    let (step_state, reason) = match &skipped {
        Some(_) => (
            StepState::Skipped,
            Some("not run: the run's preconditions were not met"),
        ),
        None => (StepState::Pending, None),
    };
    let insert = tx
        .prepare(
            "INSERT INTO ward.steps (run_id, step_id, position, definition_json, state, \
             compensation, reason, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await
        .map_err(fail(shown))?;
    for s in steps {
        tx.execute(
            &insert,
            &[
                &run.id,
                &s.id,
                &clamp(s.position),
                &s.definition,
                &step_state.as_str(),
                &s.compensation,
                &reason,
                &finished,
            ],
        )
        .await
        .map_err(fail(shown))?;
    }
    let started = format!("pid {} on {}", run.pid, run.host);
    event(
        &tx,
        shown,
        &run.id,
        run.started_at,
        None,
        "run-started",
        Some(&started),
    )
    .await?;
    if let Some(p) = &run.preconditions {
        let message = if p.skipped_by_operator {
            "not checked: --skip-preconditions".to_owned()
        } else {
            let passed = p.checks.iter().filter(|c| c.passed).count();
            format!("{passed} of {} held", p.checks.len())
        };
        event(
            &tx,
            shown,
            &run.id,
            run.started_at,
            None,
            "preconditions",
            Some(&message),
        )
        .await?;
    }
    if let Some(reason) = &skipped {
        event(
            &tx,
            shown,
            &run.id,
            run.started_at,
            None,
            "run-skipped",
            Some(reason),
        )
        .await?;
    }
    tx.commit().await.map_err(|e| commit_failed(shown, &e))
}

pub async fn record_unrun(client: &mut Client, shown: &str, run: &UnrunRun) -> Result<bool, Fail> {
    let tx = client.transaction().await.map_err(fail(shown))?;
    // A missed slot already recorded (the unique index on playbook name
    // and slot) is left as it is.
    let params: [&(dyn ToSql + Sync); 14] = [
        &run.id,
        &run.playbook_name,
        &run.playbook_path,
        &run.playbook_hash,
        &run.playbook_text,
        &run.lock_name,
        &run.state.as_str(),
        &run.host,
        &i64::from(run.pid),
        &run.ward_version,
        &run.at,
        &run.message,
        &run.max_age_ms,
        &run.slot_at,
    ];
    let inserted = tx
        .execute(
            "INSERT INTO ward.runs (id, playbook_name, playbook_path, playbook_hash, \
             playbook_text, lock_name, vars_json, overrides_json, facts_json, state, host, pid, \
             ward_version, started_at, finished_at, message, max_age_ms, slot_at) \
             VALUES ($1, $2, $3, $4, $5, $6, '{}', '{}', 'null', $7, $8, $9, $10, $11, $11, $12, \
             $13, $14) ON CONFLICT DO NOTHING",
            &params,
        )
        .await
        .map_err(fail(shown))?;
    if inserted == 0 {
        return Ok(false);
    }
    let kind = format!("run-{}", run.state);
    event(&tx, shown, &run.id, run.at, None, &kind, Some(&run.message)).await?;
    tx.commit().await.map_err(|e| commit_failed(shown, &e))?;
    Ok(true)
}

pub async fn apply(
    client: &mut Client,
    shown: &str,
    run_id: &str,
    changes: &[Change],
    tokens: &[(String, i64)],
) -> Result<(), Fail> {
    let tx = client.transaction().await.map_err(fail(shown))?;
    fence(&tx, shown, tokens).await?;
    lock_run(&tx, shown, run_id).await?;
    for change in changes {
        apply_one(&tx, shown, run_id, change).await?;
    }
    tx.commit().await.map_err(|e| commit_failed(shown, &e))
}

/// One change, as `sqlite/db.rs` `apply_one` makes it. No wildcard arm: a
/// new `Change` variant must be handled here too.
async fn apply_one(
    tx: &Transaction<'_>,
    shown: &str,
    run_id: &str,
    change: &Change,
) -> Result<(), Fail> {
    let exec = async |sql: &str, params: &[&(dyn ToSql + Sync)]| -> Result<u64, Fail> {
        tx.execute(sql, params).await.map_err(fail(shown))
    };
    match change {
        Change::Run { state, message, at } => {
            let finished = (*state != RunState::Running).then_some(*at);
            let text = no_nul_opt(message.as_deref());
            let text = text.as_deref();
            exec(
                "UPDATE ward.runs SET state = $2, message = $3, finished_at = $4 WHERE id = $1",
                &[&run_id, &state.as_str(), &text, &finished],
            )
            .await?;
            let kind = format!("run-{state}");
            event(tx, shown, run_id, *at, None, &kind, message.as_deref()).await
        }
        Change::Resumed { pid, host, at } => {
            exec(
                "UPDATE ward.runs SET state = 'running', pid = $2, host = $3, \
                 resumes = resumes + 1, finished_at = NULL, message = NULL WHERE id = $1",
                &[&run_id, &i64::from(*pid), host],
            )
            .await?;
            let message = format!("pid {pid} on {host}");
            event(tx, shown, run_id, *at, None, "run-resumed", Some(&message)).await
        }
        Change::AttemptStarted {
            step,
            attempt,
            log_path,
            at,
        } => {
            let attempt = i64::from(*attempt);
            exec(
                "UPDATE ward.steps SET state = 'running', reason = NULL, attempts = $3, \
                 log_path = $4, started_at = COALESCE(started_at, $5), finished_at = NULL, \
                 exit_code = NULL, unflushed = NULL WHERE run_id = $1 AND step_id = $2",
                &[&run_id, step, &attempt, log_path, at],
            )
            .await?;
            exec(
                "INSERT INTO ward.attempts (run_id, step_id, attempt, started_at, log_path) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&run_id, step, &attempt, at, log_path],
            )
            .await?;
            let message = format!("attempt {attempt}");
            event(
                tx,
                shown,
                run_id,
                *at,
                Some(step),
                "attempt-started",
                Some(&message),
            )
            .await
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
            let text = no_nul_opt(message.as_deref());
            let text = text.as_deref();
            exec(
                "UPDATE ward.steps SET state = $3, reason = $4, exit_code = $5, finished_at = $6 \
                 WHERE run_id = $1 AND step_id = $2",
                &[&run_id, step, &state.as_str(), &text, exit_code, &finished],
            )
            .await?;
            let details = details.as_ref().map(|d| json(shown, d)).transpose()?;
            exec(
                "UPDATE ward.attempts SET finished_at = $4, exit_code = $5, signal = $6, \
                 outcome = $7, message = $8, details = $9 \
                 WHERE run_id = $1 AND step_id = $2 AND attempt = $3",
                &[
                    &run_id,
                    step,
                    &i64::from(*attempt),
                    at,
                    exit_code,
                    signal,
                    &outcome.as_str(),
                    &text,
                    &details,
                ],
            )
            .await?;
            let kind = format!("attempt-{outcome}");
            event(
                tx,
                shown,
                run_id,
                *at,
                Some(step),
                &kind,
                message.as_deref(),
            )
            .await
        }
        Change::Note { kind, message, at } => {
            event(tx, shown, run_id, *at, None, kind.as_str(), Some(message)).await
        }
        Change::Durability { step, unflushed } => {
            // Never recorded as "": a failure fails the commit.
            let text = unflushed.as_ref().map(|u| json(shown, u)).transpose()?;
            exec(
                "UPDATE ward.steps SET unflushed = $3 WHERE run_id = $1 AND step_id = $2",
                &[&run_id, step, &text],
            )
            .await?;
            Ok(())
        }
        Change::ItemsListed { step, items } => {
            if items.is_empty() {
                return Ok(());
            }
            // One statement for the whole list (thousands of items would
            // otherwise be thousands of round trips): arrays unnested.
            let keys: Vec<std::borrow::Cow<'_, str>> =
                items.iter().map(|i| no_nul(&i.key)).collect();
            let keys: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
            let positions: Vec<i64> = items.iter().map(|i| clamp(i.position)).collect();
            let values = items
                .iter()
                .map(|i| json(shown, &i.value))
                .collect::<Result<Vec<String>, StateError>>()?;
            let priorities: Vec<f64> = items.iter().map(|i| i.priority).collect();
            exec(
                "INSERT INTO ward.items (run_id, step_id, item_key, position, item_json, state, \
                 priority) SELECT $1, $2, k, p, v, 'pending', r FROM unnest($3::text[], \
                 $4::bigint[], $5::text[], $6::float8[]) AS u (k, p, v, r) ON CONFLICT DO NOTHING",
                &[&run_id, step, &keys, &positions, &values, &priorities],
            )
            .await?;
            // Fresh statistics for the new rows: without them the planner
            // takes a step's thousands of items for one, and a worker's
            // claim reads them all through the primary key and sorts them
            // (milliseconds per claim, growing with the list) instead of
            // walking the claimable index in priority order. A role that
            // does not own the table gets a warning, not an error.
            if items.len() >= ANALYZE_FROM {
                exec("ANALYZE ward.items", &[]).await?;
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
            let key = no_nul(key);
            let key = key.as_ref();
            exec(
                "UPDATE ward.items SET state = 'running', attempts = $4, log_path = $5, \
                 started_at = $6, finished_at = NULL, exit_code = NULL, message = NULL \
                 WHERE run_id = $1 AND step_id = $2 AND item_key = $3",
                &[&run_id, step, &key, &i64::from(*attempt), log_path, at],
            )
            .await?;
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
            let key = no_nul(key);
            let key = key.as_ref();
            let text = no_nul_opt(message.as_deref());
            let text = text.as_deref();
            // An item an operator paused meanwhile stays paused when the
            // run's ward, which had not noticed yet, would skip it or put
            // it back to pending (as in the SQLite store).
            exec(
                "UPDATE ward.items SET state = $4, exit_code = $5, message = $6, finished_at = $7 \
                 WHERE run_id = $1 AND step_id = $2 AND item_key = $3 \
                 AND NOT (state = 'paused' AND $4 IN ('skipped', 'pending'))",
                &[
                    &run_id,
                    step,
                    &key,
                    &state.as_str(),
                    exit_code,
                    &text,
                    &finished,
                ],
            )
            .await?;
            Ok(())
        }
        Change::ItemControl {
            step,
            key,
            control,
            at,
        } => {
            let message = match control {
                ItemControl::Pause => Some("paused with `ward pause`"),
                ItemControl::Unpause => None,
                ItemControl::Retry => Some("to run again: `ward retry`"),
            };
            // Only from the state the control expects: an item that
            // started or ended since the operator looked is left as it is.
            let key = no_nul(key);
            let key = key.as_ref();
            let changed = exec(
                "UPDATE ward.items SET state = $5, message = $6, finished_at = NULL \
                 WHERE run_id = $1 AND step_id = $2 AND item_key = $3 AND state = $4",
                &[
                    &run_id,
                    step,
                    &key,
                    &control.from().as_str(),
                    &control.to().as_str(),
                    &message,
                ],
            )
            .await?;
            if changed == 1 {
                event(
                    tx,
                    shown,
                    run_id,
                    *at,
                    Some(step),
                    control.event_kind(),
                    Some(key),
                )
                .await?;
            }
            Ok(())
        }
        Change::Offered {
            step,
            tags,
            max_parallel,
            at,
        } => {
            let tags = json(shown, tags)?;
            exec(
                "INSERT INTO ward.offers (run_id, step_id, tags_json, max_parallel, state, \
                 opened_at) VALUES ($1, $2, $3, $4, 'open', $5) ON CONFLICT (run_id, step_id) \
                 DO UPDATE SET tags_json = excluded.tags_json, max_parallel = \
                 excluded.max_parallel, state = 'open', opened_at = excluded.opened_at, \
                 closed_at = NULL",
                &[&run_id, step, &tags, &clamp(*max_parallel), at],
            )
            .await?;
            event(tx, shown, run_id, *at, Some(step), "offer-opened", None).await
        }
        Change::OfferClosed {
            step,
            stop,
            skip,
            at,
        } => {
            let state = if *stop { "stopping" } else { "closed" };
            exec(
                "UPDATE ward.offers SET state = $3, closed_at = $4 \
                 WHERE run_id = $1 AND step_id = $2",
                &[&run_id, step, &state, at],
            )
            .await?;
            if let Some(why) = skip {
                // Only those still pending: a claim that committed first
                // made its item `running`, and its worker records its end.
                let why = no_nul(why);
                exec(
                    "UPDATE ward.items SET state = 'skipped', message = $3, finished_at = $4 \
                     WHERE run_id = $1 AND step_id = $2 AND state = 'pending'",
                    &[&run_id, step, &why.as_ref(), at],
                )
                .await?;
            }
            event(
                tx,
                shown,
                run_id,
                *at,
                Some(step),
                "offer-closed",
                Some(state),
            )
            .await
        }
        Change::Step {
            step,
            state,
            reason,
            at,
        } => {
            let finished = state.is_terminal().then_some(*at);
            exec(
                "UPDATE ward.steps SET state = $3, reason = $4, finished_at = $5, unflushed = NULL \
                 WHERE run_id = $1 AND step_id = $2",
                &[&run_id, step, &state.as_str(), reason, &finished],
            )
            .await?;
            let kind = format!("step-{state}");
            event(tx, shown, run_id, *at, Some(step), &kind, reason.as_deref()).await
        }
    }
}

pub async fn run(client: &Client, shown: &str, id: &str) -> Result<Option<RunRecord>, Fail> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM ward.runs WHERE id = $1");
    let row = client.query_opt(&sql, &[&id]).await.map_err(fail(shown))?;
    Ok(row.map(|r| run_row(shown, &r)).transpose()?)
}

pub async fn runs_matching(
    client: &Client,
    shown: &str,
    filter: &RunFilter,
) -> Result<Vec<RunRecord>, Fail> {
    let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM ward.runs WHERE ($1::text IS NULL OR playbook_name = $1) \
         AND ($2::bigint IS NULL OR started_at >= $2) AND ($3::bigint IS NULL OR started_at < $3) \
         AND (cardinality($4::text[]) = 0 OR state = ANY($4)) \
         ORDER BY started_at DESC, id COLLATE \"C\" DESC LIMIT $5"
    );
    let rows = client
        .query(
            &sql,
            &[
                &filter.playbook,
                &filter.since_ms,
                &filter.until_ms,
                &states,
                &clamp(filter.limit),
            ],
        )
        .await
        .map_err(fail(shown))?;
    Ok(run_rows(shown, &rows)?)
}

pub async fn steps(client: &Client, shown: &str, run_id: &str) -> Result<Vec<StepRecord>, Fail> {
    let rows = client
        .query(
            "SELECT step_id, position, definition_json, state, reason, attempts, exit_code, \
             started_at, finished_at, log_path, compensation, unflushed FROM ward.steps \
             WHERE run_id = $1 ORDER BY position",
            &[&run_id],
        )
        .await
        .map_err(fail(shown))?;
    let mut out = Vec::new();
    for r in &rows {
        let id: String = get(shown, r, 0)?;
        let state: String = get(shown, r, 3)?;
        let unflushed = match get::<Option<String>>(shown, r, 11)? {
            None => None,
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                corrupt(
                    shown,
                    format!("step `{id}`: unreadable `unflushed` record: {e}"),
                )
            })?),
        };
        out.push(StepRecord {
            position: int(shown, r, 1)?,
            definition: get(shown, r, 2)?,
            state: StepState::parse(&state)
                .ok_or_else(|| corrupt(shown, format!("unknown step state `{state}`")))?,
            reason: get(shown, r, 4)?,
            attempts: int(shown, r, 5)?,
            exit_code: get(shown, r, 6)?,
            started_at: get(shown, r, 7)?,
            finished_at: get(shown, r, 8)?,
            log_path: get(shown, r, 9)?,
            compensation: get(shown, r, 10)?,
            unflushed,
            id,
        });
    }
    Ok(out)
}

pub async fn attempts(
    client: &Client,
    shown: &str,
    run_id: &str,
    step: Option<&str>,
) -> Result<Vec<AttemptRecord>, Fail> {
    let rows = client
        .query(
            "SELECT a.step_id, a.attempt, a.started_at, a.finished_at, a.exit_code, a.signal, \
             a.outcome, a.message, a.log_path, a.details FROM ward.attempts a \
             JOIN ward.steps s ON s.run_id = a.run_id AND s.step_id = a.step_id \
             WHERE a.run_id = $1 AND ($2::text IS NULL OR a.step_id = $2) \
             ORDER BY a.started_at, s.position, a.attempt",
            &[&run_id, &step],
        )
        .await
        .map_err(fail(shown))?;
    let mut out = Vec::new();
    for r in &rows {
        let outcome = match get::<Option<String>>(shown, r, 6)? {
            None => None,
            Some(text) => Some(
                AttemptOutcome::parse(&text)
                    .ok_or_else(|| corrupt(shown, format!("unknown attempt outcome `{text}`")))?,
            ),
        };
        out.push(AttemptRecord {
            step_id: get(shown, r, 0)?,
            attempt: int(shown, r, 1)?,
            started_at: get(shown, r, 2)?,
            finished_at: get(shown, r, 3)?,
            exit_code: get(shown, r, 4)?,
            signal: get(shown, r, 5)?,
            outcome,
            message: get(shown, r, 7)?,
            log_path: get(shown, r, 8)?,
            details: get::<Option<String>>(shown, r, 9)?
                .and_then(|d| serde_json::from_str(&d).ok()),
        });
    }
    Ok(out)
}

pub async fn items(
    client: &Client,
    shown: &str,
    run_id: &str,
    step: Option<&str>,
    state: Option<ItemState>,
) -> Result<Vec<ItemRecord>, Fail> {
    let rows = client
        .query(
            "SELECT i.step_id, i.item_key, i.position, i.item_json, i.state, i.attempts, \
             i.exit_code, i.message, i.started_at, i.finished_at, i.log_path, i.worker \
             FROM ward.items i JOIN ward.steps s ON s.run_id = i.run_id AND s.step_id = i.step_id \
             WHERE i.run_id = $1 AND ($2::text IS NULL OR i.step_id = $2) \
             AND ($3::text IS NULL OR i.state = $3) ORDER BY s.position, i.position",
            &[&run_id, &step, &state.map(ItemState::as_str)],
        )
        .await
        .map_err(fail(shown))?;
    let mut out = Vec::new();
    for r in &rows {
        let step_id: String = get(shown, r, 0)?;
        let key: String = get(shown, r, 1)?;
        let text: String = get(shown, r, 3)?;
        // An item that cannot be read back cannot be run again as it was.
        let item = serde_json::from_str(&text).map_err(|e| {
            corrupt(
                shown,
                format!("step `{step_id}`, item `{key}`: unreadable item record: {e}"),
            )
        })?;
        let state: String = get(shown, r, 4)?;
        out.push(ItemRecord {
            position: int(shown, r, 2)?,
            item,
            state: ItemState::parse(&state)
                .ok_or_else(|| corrupt(shown, format!("unknown item state `{state}`")))?,
            attempts: int(shown, r, 5)?,
            exit_code: get(shown, r, 6)?,
            message: get(shown, r, 7)?,
            started_at: get(shown, r, 8)?,
            finished_at: get(shown, r, 9)?,
            log_path: get(shown, r, 10)?,
            worker: get(shown, r, 11)?,
            step_id,
            key,
        });
    }
    Ok(out)
}

pub async fn events(client: &Client, shown: &str, run_id: &str) -> Result<Vec<EventRecord>, Fail> {
    let rows = client
        .query(
            "SELECT seq, at, step_id, kind, message FROM ward.events WHERE run_id = $1 ORDER BY seq",
            &[&run_id],
        )
        .await
        .map_err(fail(shown))?;
    let mut out = Vec::new();
    for r in &rows {
        out.push(EventRecord {
            seq: get(shown, r, 0)?,
            at: get(shown, r, 1)?,
            step_id: get(shown, r, 2)?,
            kind: EventKind::parse(&get::<String>(shown, r, 3)?),
            message: get(shown, r, 4)?,
        });
    }
    Ok(out)
}

/// The item controls recorded after event `after`, and the run's last
/// event number (see `event` for why that number is safe to read up to).
pub async fn item_controls(
    client: &Client,
    shown: &str,
    run_id: &str,
    after: i64,
) -> Result<(i64, Vec<ItemControlled>), Fail> {
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(seq), 0) FROM ward.events WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .map_err(fail(shown))?;
    let last: i64 = get(shown, &row, 0)?;
    if last <= after {
        return Ok((last, Vec::new()));
    }
    let rows = client
        .query(
            "SELECT seq, step_id, kind, message FROM ward.events \
             WHERE run_id = $1 AND seq > $2 AND seq <= $3 \
             AND kind IN ('item-paused', 'item-unpaused', 'item-retried') ORDER BY seq",
            &[&run_id, &after, &last],
        )
        .await
        .map_err(fail(shown))?;
    let mut out = Vec::new();
    for r in &rows {
        let step: Option<String> = get(shown, r, 1)?;
        let kind: String = get(shown, r, 2)?;
        let key: Option<String> = get(shown, r, 3)?;
        if let (Some(step), Some(key), Some(control)) =
            (step, key, ItemControl::from_event_kind(&kind))
        {
            out.push(ItemControlled {
                seq: get(shown, r, 0)?,
                step,
                key,
                control,
            });
        }
    }
    Ok((last, out))
}

pub async fn running_with_lock(
    client: &Client,
    shown: &str,
    lock: &str,
) -> Result<Vec<RunRecord>, Fail> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM ward.runs WHERE state = 'running' AND lock_name = $1 \
         ORDER BY started_at, id COLLATE \"C\""
    );
    let rows = client.query(&sql, &[&lock]).await.map_err(fail(shown))?;
    Ok(run_rows(shown, &rows)?)
}

pub async fn last_succeeded(
    client: &Client,
    shown: &str,
    playbook: &str,
) -> Result<Option<RunRecord>, Fail> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM ward.runs WHERE playbook_name = $1 AND state = 'succeeded' \
         ORDER BY finished_at DESC NULLS LAST, id COLLATE \"C\" DESC LIMIT 1"
    );
    let row = client
        .query_opt(&sql, &[&playbook])
        .await
        .map_err(fail(shown))?;
    Ok(row.map(|r| run_row(shown, &r)).transpose()?)
}

pub async fn strings(client: &Client, shown: &str, sql: &str) -> Result<Vec<String>, Fail> {
    let rows = client.query(sql, &[]).await.map_err(fail(shown))?;
    Ok(rows
        .iter()
        .map(|r| get(shown, r, 0))
        .collect::<Result<_, _>>()?)
}

/// `sqlite/retention.rs` `prune_runs`: the runs are read after `runs` is
/// locked against writes (`EXCLUSIVE` lets readers on), so no ward starts,
/// resumes or ends a run between the choice and the delete.
pub async fn prune_runs(
    client: &mut Client,
    shown: &str,
    request: &PruneRequest,
) -> Result<Vec<PrunedRun>, Fail> {
    let tx = client.transaction().await.map_err(fail(shown))?;
    tx.batch_execute("LOCK TABLE ward.runs IN EXCLUSIVE MODE")
        .await
        .map_err(fail(shown))?;
    if let Some(r) = &request.record {
        let days = r.policy.map(|p| i64::from(p.keep_days));
        let runs = r.policy.map(|p| i64::from(p.keep_runs));
        // Written only when the policy changed: no commit of nothing.
        tx.execute(
            "INSERT INTO ward.history_policies (playbook_name, keep_days, keep_runs, run_id, \
             recorded_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (playbook_name) DO UPDATE SET \
             keep_days = excluded.keep_days, keep_runs = excluded.keep_runs, \
             run_id = excluded.run_id, recorded_at = excluded.recorded_at \
             WHERE ward.history_policies.keep_days IS DISTINCT FROM excluded.keep_days \
             OR ward.history_policies.keep_runs IS DISTINCT FROM excluded.keep_runs",
            &[&r.playbook, &days, &runs, &r.run_id, &r.at],
        )
        .await
        .map_err(fail(shown))?;
    }
    let mut policies = BTreeMap::new();
    for r in tx
        .query(
            "SELECT playbook_name, keep_days, keep_runs FROM ward.history_policies",
            &[],
        )
        .await
        .map_err(fail(shown))?
    {
        let default = Retention::DEFAULT;
        let name: String = get(shown, &r, 0)?;
        policies.insert(
            name,
            Retention {
                keep_days: opt_int(shown, &r, 1)?.unwrap_or(default.keep_days),
                keep_runs: opt_int(shown, &r, 2)?.unwrap_or(default.keep_runs),
            },
        );
    }
    let mut runs = Vec::new();
    for r in tx
        .query(
            "SELECT id, playbook_name, state, started_at, finished_at FROM ward.runs \
             WHERE $1::text IS NULL OR playbook_name = $1",
            &[&request.playbook],
        )
        .await
        .map_err(fail(shown))?
    {
        let id: String = get(shown, &r, 0)?;
        let state: String = get(shown, &r, 2)?;
        let state = RunState::parse(&state)
            .ok_or_else(|| corrupt(shown, format!("run {id}: unknown run state `{state}`")))?;
        runs.push(RunBrief {
            playbook_name: get(shown, &r, 1)?,
            state,
            started_at: get(shown, &r, 3)?,
            finished_at: get(shown, &r, 4)?,
            id,
        });
    }
    let out = retention::pruned(&runs, &policies, request);
    if request.apply && !out.is_empty() {
        let ids: Vec<&str> = out.iter().map(|r| r.id.as_str()).collect();
        // Children first: the foreign keys.
        for sql in [
            "DELETE FROM ward.claims WHERE run_id = ANY($1)",
            "DELETE FROM ward.offers WHERE run_id = ANY($1)",
            "DELETE FROM ward.items WHERE run_id = ANY($1)",
            "DELETE FROM ward.attempts WHERE run_id = ANY($1)",
            "DELETE FROM ward.steps WHERE run_id = ANY($1)",
            "DELETE FROM ward.events WHERE run_id = ANY($1)",
            "DELETE FROM ward.runs WHERE id = ANY($1)",
        ] {
            tx.execute(sql, &[&ids]).await.map_err(fail(shown))?;
        }
    }
    tx.commit().await.map_err(|e| commit_failed(shown, &e))?;
    Ok(out)
}
