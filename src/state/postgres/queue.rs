//! The queue's statements (`state/queue.rs`): claims, finishes and
//! counts of the items handed to `ward worker`s. Each write is one
//! transaction, fenced by the worker's own lease (strict: not expired),
//! so a worker that counts itself lost records nothing more.

use tokio_postgres::{Client, Transaction};

use super::super::StateError;
use super::super::queue::{Claimed, ItemCounts, ItemEnd, Offer, OfferState, WorkerId};
use super::super::records::ItemState;
use super::conn::{Fail, commit_failed, fail};
use super::lease::WORKER_PREFIX;

fn corrupt(shown: &str, message: String) -> Fail {
    Fail::State(super::db::corrupt(shown, message))
}

/// Fails unless the worker's lease is still its own and not expired
/// (`FOR SHARE`: nobody changes the row until the commit).
async fn fence(tx: &Transaction<'_>, shown: &str, worker: &WorkerId) -> Result<(), Fail> {
    let live = tx
        .query_opt(
            "SELECT 1 FROM ward.leases WHERE name = $1 AND expires_at > now() FOR SHARE",
            &[&worker.lease_name()],
        )
        .await
        .map_err(fail(shown))?;
    if live.is_none() {
        return Err(Fail::State(StateError::LeaseLost {
            db: shown.to_owned(),
            detail: format!(
                "the lease of worker {} ran out: its items may be claimed by other workers, so \
                 it records nothing more",
                worker.id
            ),
        }));
    }
    Ok(())
}

pub async fn offers(client: &Client, shown: &str, run: Option<&str>) -> Result<Vec<Offer>, Fail> {
    let rows = client
        .query(
            "SELECT o.run_id, o.step_id, o.tags_json, o.max_parallel, o.state \
             FROM ward.offers o JOIN ward.runs r ON r.id = o.run_id \
             WHERE o.state <> 'closed' AND r.state = 'running' \
             AND ($1::text IS NULL OR o.run_id = $1) ORDER BY o.opened_at, o.run_id, o.step_id",
            &[&run],
        )
        .await
        .map_err(fail(shown))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let (run_id, step_id): (String, String) = (r.get(0), r.get(1));
        let tags: String = r.get(2);
        let tags = serde_json::from_str(&tags)
            .map_err(|e| corrupt(shown, format!("offer of {run_id}/{step_id}: tags: {e}")))?;
        let state: String = r.get(4);
        out.push(Offer {
            tags,
            max_parallel: usize::try_from(r.get::<_, i64>(3)).unwrap_or(1).max(1),
            state: OfferState::parse(&state).ok_or_else(|| {
                corrupt(
                    shown,
                    format!("offer of {run_id}/{step_id}: state `{state}`"),
                )
            })?,
            run_id,
            step_id,
        });
    }
    Ok(out)
}

/// The claim: the offer is read `FOR SHARE` (closing it waits for this
/// commit, and then skips only what is still pending); the items are
/// taken in priority order, `SKIP LOCKED` so that workers claiming at once
/// take different items without waiting for each other. Taken are pending
/// items, running ones whose worker's lease ran out (recorded `expired`
/// for that worker), and running ones claimed by this very worker that it
/// no longer runs (a claim whose commit it did not hear back from).
/// The lease is looked at in a sub-select, not a join: an item another
/// worker claimed (and committed) after this statement's snapshot is
/// checked again on its new row when it is locked, and a join would check
/// it against the lease row (none: the item was pending) joined before,
/// taking a live worker's fresh claim for an expired one.
/// What a claim asks for.
pub struct Claim<'a> {
    pub worker: &'a WorkerId,
    pub run: &'a str,
    pub step: &'a str,
    /// At most this many items.
    pub n: usize,
    /// The keys the worker runs now.
    pub running: &'a [String],
    /// The run's log folder on the worker's host.
    pub logs: &'a str,
    /// Unix ms.
    pub at: i64,
}

async fn claim_in(tx: &Transaction<'_>, shown: &str, c: &Claim<'_>) -> Result<Vec<Claimed>, Fail> {
    let Claim {
        worker,
        run,
        step,
        n,
        running,
        logs,
        at,
    } = *c;
    if n == 0 {
        return Ok(Vec::new());
    }
    let open = tx
        .query_opt(
            "SELECT 1 FROM ward.offers WHERE run_id = $1 AND step_id = $2 AND state = 'open' \
             FOR SHARE",
            &[&run, &step],
        )
        .await
        .map_err(fail(shown))?;
    if open.is_none() {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(n).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            "WITH picked AS ( \
               SELECT i.item_key, i.state AS was_state, i.worker AS was \
               FROM ward.items i \
               WHERE i.run_id = $1 AND i.step_id = $2 AND i.state IN ('pending', 'running') \
               AND (i.state = 'pending' \
                    OR (i.worker IS NOT NULL AND i.worker <> $4 AND NOT EXISTS ( \
                        SELECT 1 FROM ward.leases l \
                        WHERE l.name = $7 || i.worker AND l.expires_at > now())) \
                    OR (i.worker = $4 AND NOT (i.item_key = ANY($6)))) \
               ORDER BY i.priority DESC, i.position LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE ward.items t SET state = 'running', worker = $4, attempts = t.attempts + 1, \
               started_at = $5, finished_at = NULL, exit_code = NULL, message = NULL, \
               log_path = $8 || '/' || t.step_id || '.item-' || (t.position + 1) || '.' \
                 || (t.attempts + 1) || '.log' \
             FROM picked p WHERE t.run_id = $1 AND t.step_id = $2 AND t.item_key = p.item_key \
             RETURNING t.item_key, t.position, t.item_json, t.attempts, p.was_state, p.was, \
               (SELECT l.host FROM ward.leases l WHERE l.name = $7 || p.was), \
               (SELECT l.pid FROM ward.leases l WHERE l.name = $7 || p.was)",
            &[
                &run,
                &step,
                &limit,
                &worker.id,
                &at,
                &running,
                &WORKER_PREFIX,
                &logs,
            ],
        )
        .await
        .map_err(fail(shown))?;
    let mut out = Vec::with_capacity(rows.len());
    let mut log = ClaimLog::default();
    for r in &rows {
        let key: String = r.get(0);
        let attempt = u32::try_from(r.get::<_, i64>(3)).unwrap_or(u32::MAX);
        let was_state: String = r.get(4);
        let was: Option<String> = r.get(5);
        let text: String = r.get(2);
        let item = serde_json::from_str(&text).map_err(|e| {
            corrupt(
                shown,
                format!("step `{step}`, item `{key}`: unreadable item record: {e}"),
            )
        })?;
        let expired_from = match (was_state.as_str(), was) {
            ("running", Some(w)) if w != worker.id => {
                let host: Option<String> = r.get(6);
                let pid: Option<i64> = r.get(7);
                log.push(
                    &key,
                    &w,
                    host.as_deref().unwrap_or(""),
                    pid.unwrap_or(0),
                    i64::from(attempt) - 1,
                    "expired",
                    Some("running"),
                );
                Some(w)
            }
            _ => None,
        };
        log.push(
            &key,
            &worker.id,
            &worker.host,
            i64::from(worker.pid),
            i64::from(attempt),
            "claimed",
            None,
        );
        out.push(Claimed {
            position: usize::try_from(r.get::<_, i64>(1)).unwrap_or(0),
            key,
            item,
            attempt,
            expired_from,
        });
    }
    log.insert(tx, shown, run, step, at).await?;
    Ok(out)
}

/// One turn of a worker on one step, in one transaction (one WAL flush):
/// the ends of its items recorded, then up to `c.n` new items claimed.
pub async fn exchange(
    client: &mut Client,
    shown: &str,
    c: &Claim<'_>,
    ends: &[ItemEnd],
) -> Result<(Vec<bool>, Vec<Claimed>), Fail> {
    let tx = client.transaction().await.map_err(fail(shown))?;
    fence(&tx, shown, c.worker).await?;
    let kept = finish_in(&tx, shown, c.worker, c.run, c.step, ends).await?;
    let claimed = claim_in(&tx, shown, c).await?;
    tx.commit().await.map_err(|e| commit_failed(shown, &e))?;
    Ok((kept, claimed))
}

/// Records the ends of the worker's items that are still its claims (same
/// worker, same attempt, still `running`): one statement for the batch.
async fn finish_in(
    tx: &Transaction<'_>,
    shown: &str,
    worker: &WorkerId,
    run: &str,
    step: &str,
    ends: &[ItemEnd],
) -> Result<Vec<bool>, Fail> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = ends.iter().map(|e| e.key.as_str()).collect();
    let attempts: Vec<i64> = ends.iter().map(|e| i64::from(e.attempt)).collect();
    let states: Vec<&str> = ends.iter().map(|e| e.state.as_str()).collect();
    let codes: Vec<Option<i32>> = ends.iter().map(|e| e.exit_code).collect();
    let messages: Vec<Option<String>> = ends
        .iter()
        .map(|e| e.message.as_deref().map(|m| m.replace('\0', "\u{FFFD}")))
        .collect();
    let finished: Vec<Option<i64>> = ends
        .iter()
        .map(|e| (e.state != ItemState::Pending).then_some(e.at))
        .collect();
    let rows = tx
        .query(
            "UPDATE ward.items t SET state = u.s, exit_code = u.c, message = u.m, \
               finished_at = u.f \
             FROM unnest($4::text[], $5::bigint[], $6::text[], $7::int4[], $8::text[], \
               $9::bigint[]) AS u (k, a, s, c, m, f) \
             WHERE t.run_id = $1 AND t.step_id = $2 AND t.item_key = u.k AND t.worker = $3 \
               AND t.attempts = u.a AND t.state = 'running' \
             RETURNING t.item_key",
            &[
                &run, &step, &worker.id, &keys, &attempts, &states, &codes, &messages, &finished,
            ],
        )
        .await
        .map_err(fail(shown))?;
    let kept: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut log = ClaimLog::default();
    let mut out = Vec::with_capacity(ends.len());
    for e in ends {
        let ours = kept.contains(&e.key);
        log.push(
            &e.key,
            &worker.id,
            &worker.host,
            i64::from(worker.pid),
            i64::from(e.attempt),
            if ours { "released" } else { "lost" },
            Some(e.state.as_str()),
        );
        out.push(ours);
    }
    let at = ends.iter().map(|e| e.at).max().unwrap_or(0);
    log.insert(tx, shown, run, step, at).await?;
    Ok(out)
}

pub async fn counts(
    client: &Client,
    shown: &str,
    run: &str,
    step: &str,
) -> Result<(ItemCounts, Option<OfferState>), Fail> {
    let rows = client
        .query(
            "SELECT state, count(*) FROM ward.items WHERE run_id = $1 AND step_id = $2 \
             GROUP BY state",
            &[&run, &step],
        )
        .await
        .map_err(fail(shown))?;
    let mut counts = ItemCounts::default();
    for r in &rows {
        let state: String = r.get(0);
        let n: i64 = r.get(1);
        let state = ItemState::parse(&state)
            .ok_or_else(|| corrupt(shown, format!("unknown item state `{state}`")))?;
        counts.add(state, usize::try_from(n).unwrap_or(0));
    }
    let offer = client
        .query_opt(
            "SELECT state FROM ward.offers WHERE run_id = $1 AND step_id = $2",
            &[&run, &step],
        )
        .await
        .map_err(fail(shown))?
        .and_then(|r| OfferState::parse(r.get(0)));
    Ok((counts, offer))
}

/// Rows of `ward.claims` to insert in one statement.
#[derive(Default)]
struct ClaimLog {
    keys: Vec<String>,
    workers: Vec<String>,
    hosts: Vec<String>,
    pids: Vec<i64>,
    attempts: Vec<i64>,
    kinds: Vec<&'static str>,
    states: Vec<Option<&'static str>>,
}

impl ClaimLog {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        key: &str,
        worker: &str,
        host: &str,
        pid: i64,
        attempt: i64,
        kind: &'static str,
        state: Option<&'static str>,
    ) {
        self.keys.push(key.to_owned());
        self.workers.push(worker.to_owned());
        self.hosts.push(host.to_owned());
        self.pids.push(pid);
        self.attempts.push(attempt);
        self.kinds.push(kind);
        self.states.push(state);
    }

    async fn insert(
        &self,
        tx: &Transaction<'_>,
        shown: &str,
        run: &str,
        step: &str,
        at: i64,
    ) -> Result<(), Fail> {
        if self.keys.is_empty() {
            return Ok(());
        }
        tx.execute(
            "INSERT INTO ward.claims (run_id, step_id, item_key, worker, host, pid, attempt, \
             kind, state, at) SELECT $1, $2, k, w, h, p, a, d, s, $10 FROM unnest($3::text[], \
             $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::text[], $9::text[]) \
             AS u (k, w, h, p, a, d, s)",
            &[
                &run,
                &step,
                &self.keys,
                &self.workers,
                &self.hosts,
                &self.pids,
                &self.attempts,
                &self.kinds,
                &self.states,
                &at,
            ],
        )
        .await
        .map_err(fail(shown))?;
        Ok(())
    }
}
