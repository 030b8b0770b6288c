//! The PostgreSQL store's run lock: a row of `ward.leases` (name, run id,
//! host, boot, pid, since, a random token, `expires_at` by the server's
//! clock), kept alive by a heartbeat.
//!
//! Each lease has a keeper: an OS thread of its own, with its own
//! current-thread runtime and its own connection, so that the heartbeat
//! goes on whatever the run's runtime is doing (a long synchronous
//! action, a slow transaction on the store's connection). The keeper
//! takes the row (one transaction, the row locked `FOR UPDATE`: race-free
//! between hosts), renews it every [`HEARTBEAT`], and on release sets it
//! expired (the row keeps naming its last holder, as a lock file does).
//!
//! A row is free when it expired, or when its holder was a ward of this
//! very host, boot and pid namespace whose pid is gone (a `kill -9`: the
//! local case is as quick as SQLite's file lock; other hosts, and other
//! containers of this machine, wait for the expiry).
//!
//! If a renewal finds the row taken (this ward could not renew for a whole
//! [`LEASE`] and another took it), the lease is lost: the keeper logs it as
//! an error and marks it, and from then on every write of this store fails
//! (`apply` says the lock was taken), so the executor records nothing more
//! and stops as it does when its state cannot be written. Each write also
//! checks, in its own transaction, that the row still holds this lease's
//! token (`FOR SHARE`, so a takeover waits for the commit): two holders
//! never both write.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_postgres::Client;

use super::super::StateError;
use super::super::lease::{LeaseError, LeaseGuard, LeaseHolder};
use super::conn;

/// How long a lease lasts without renewal: long enough that a busy
/// server, a short network outage or a PostgreSQL restart (about 15 s of
/// reconnecting, `conn::RECONNECT_TRIES`) does not lose it; short enough
/// that a host that died frees its locks within a minute.
pub const LEASE: Duration = Duration::from_secs(60);

/// How often the keeper renews: six chances before the lease expires.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// For tests only: the lease in milliseconds (the heartbeat is a sixth of
/// it), so that an expiry can be waited for.
pub const LEASE_ENV: &str = "WARD_TEST_PG_LEASE_MS";

/// Leases of `ward worker`s are named `worker/<id>`: their items may be
/// claimed by others once the lease expired, so the lease is strict. A
/// renewal after the expiry fails (the worker is lost even if nobody took
/// its items yet), and a worker that could not renew for half the lease
/// counts itself lost: it stops its items before any other worker may
/// claim them (the other half is for the kill grace).
pub const WORKER_PREFIX: &str = "worker/";

pub fn lease_length() -> Duration {
    std::env::var(LEASE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms >= 100)
        .map_or(LEASE, Duration::from_millis)
}

/// The leases this store holds (name, token), shared with their keepers.
#[derive(Clone, Default)]
pub struct Held(Arc<Mutex<Vec<HeldLease>>>);

struct HeldLease {
    name: String,
    token: i64,
    lost: Arc<AtomicBool>,
}

impl Held {
    /// The tokens a write must find still held, or the first lease lost.
    pub fn tokens(&self, shown: &str) -> Result<Vec<(String, i64)>, StateError> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = held.iter().find(|l| l.lost.load(Ordering::SeqCst)) {
            return Err(lost_error(shown, &l.name));
        }
        Ok(held.iter().map(|l| (l.name.clone(), l.token)).collect())
    }

    fn remove(&self, token: i64) {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|l| l.token != token);
    }
}

/// Why a write is refused after its run lock was taken over.
pub fn lost_error(shown: &str, name: &str) -> StateError {
    StateError::LeaseLost {
        db: shown.to_owned(),
        detail: format!(
            "the run lock `{name}` was lost: this ward could not renew it for {}s and another \
             run took it; nothing more is recorded for this run (it is left `running`, and \
             the run that took the lock records it `crashed`)",
            lease_length().as_secs()
        ),
    }
}

/// What a keeper needs.
pub struct Request {
    pub target: conn::Target,
    pub shown: String,
    pub name: String,
    pub holder: LeaseHolder,
    pub boot_id: String,
    pub hostname: String,
}

/// Takes the lease `request.name` without waiting, or says who holds it.
pub async fn acquire(request: Request, held: Held) -> Result<PgLease, LeaseError> {
    let (answer_tx, answer_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel();
    let lost = Arc::new(AtomicBool::new(false));
    let (name, shown) = (request.name.clone(), request.shown.clone());
    let keeper_lost = lost.clone();
    std::thread::Builder::new()
        .name(format!("ward-lease-{}", request.name))
        .spawn(move || keeper(request, answer_tx, stop_rx, keeper_lost))
        .map_err(|e| {
            LeaseError::State(StateError::Backend {
                db: shown.clone(),
                detail: format!("cannot start the lease keeper: {e}"),
            })
        })?;
    let token = answer_rx.await.map_err(|_| {
        LeaseError::State(StateError::Backend {
            db: shown.clone(),
            detail: "the lease keeper ended without an answer".to_owned(),
        })
    })??;
    held.0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(HeldLease { name, token, lost });
    Ok(PgLease {
        stop: Some(stop_tx),
        held,
        token,
    })
}

/// A held lease; dropping it tells the keeper to release it (without
/// waiting: if the process ends first, the row expires, or the next ward
/// of this host finds the pid gone).
#[derive(Debug)]
pub struct PgLease {
    stop: Option<oneshot::Sender<StopMessage>>,
    held: Held,
    token: i64,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Held")
    }
}

impl LeaseGuard for PgLease {
    fn release(
        mut self: Box<Self>,
    ) -> Pin<Box<dyn Future<Output = Result<(), StateError>> + Send>> {
        let (done_tx, done_rx) = oneshot::channel();
        let sent = self.stop.take().map(|s| s.send(Some(done_tx)).is_ok());
        self.held.remove(self.token);
        Box::pin(async move {
            if sent == Some(true) {
                // A keeper that ended (its lease lost) has nothing to release.
                if let Ok(result) = done_rx.await {
                    return result;
                }
            }
            Ok(())
        })
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(None);
        }
        self.held.remove(self.token);
    }
}

type Answer = oneshot::Sender<Result<i64, LeaseError>>;
/// Release the lease, and (when `Some`) say how it went.
type StopMessage = Option<oneshot::Sender<Result<(), StateError>>>;
type Stop = oneshot::Receiver<StopMessage>;

/// The keeper thread: take, renew, release.
fn keeper(request: Request, answer: Answer, stop: Stop, lost: Arc<AtomicBool>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = answer.send(Err(LeaseError::State(StateError::Backend {
                db: request.shown.clone(),
                detail: format!("cannot start the lease keeper: {e}"),
            })));
            return;
        }
    };
    runtime.block_on(keep(request, answer, stop, lost));
}

async fn keep(request: Request, answer: Answer, mut stop: Stop, lost: Arc<AtomicBool>) {
    let length = lease_length();
    let beat = if length == LEASE {
        HEARTBEAT
    } else {
        length / 6
    };
    let mut client = match conn::connect(&request.target, &request.shown, length / 2).await {
        Ok(c) => c,
        Err(e) => {
            let _ = answer.send(Err(LeaseError::State(e)));
            return;
        }
    };
    let token = match take(&mut client, &request, length).await {
        Ok(token) => token,
        Err(e) => {
            let _ = answer.send(Err(e));
            return;
        }
    };
    if answer.send(Ok(token)).is_err() {
        // Nobody waits for it any more: give it back.
        let _ = release(&client, &request, token).await;
        return;
    }
    let mut client = Some(client);
    let mut renewed = Instant::now();
    let mut warned = false;
    let strict = request.name.starts_with(WORKER_PREFIX);
    loop {
        tokio::select! {
            message = &mut stop => {
                let mut result = match &client {
                    Some(c) if !c.is_closed() => release(c, &request, token).await,
                    _ => Err(None),
                };
                if result.is_err() {
                    // The connection went away (a server restart): once more
                    // on a new one.
                    result = match conn::connect(&request.target, &request.shown, length / 2).await {
                        Ok(c) => release(&c, &request, token).await,
                        Err(e) => Err(Some(e)),
                    };
                }
                if let Err(e) = &result {
                    // The run's end is recorded: a lease that could not be
                    // given back only keeps others out until it expires.
                    let why = e.as_ref().map_or_else(String::new, |e| format!(": {e}"));
                    tracing::warn!(
                        "run lock `{}` not released{why}; it is free again in at most {}s",
                        request.name,
                        length.as_secs()
                    );
                }
                if let Ok(Some(done)) = message {
                    let _ = done.send(Ok(()));
                }
                return;
            }
            () = tokio::time::sleep(beat) => {}
        }
        if strict && renewed.elapsed() >= length / 2 {
            lost.store(true, Ordering::SeqCst);
            tracing::error!(
                "worker lease `{}` not renewed for {}s: this worker stops its items, which \
                 other workers may claim once the lease ran out",
                request.name,
                renewed.elapsed().as_secs()
            );
            return;
        }
        if client.as_ref().is_none_or(Client::is_closed) {
            client = conn::connect(&request.target, &request.shown, length / 4)
                .await
                .ok();
        }
        let Some(c) = &client else {
            if renewed.elapsed() >= length && !warned {
                warned = true;
                tracing::error!(
                    "run lock `{}`: not renewed for {}s ({} cannot be reached); another host \
                     may take it now",
                    request.name,
                    length.as_secs(),
                    request.shown
                );
            }
            continue;
        };
        let sent = Instant::now();
        match renew(c, &request, token, length, strict).await {
            Ok(true) => {
                // From before the ask: the server's expiry is later still.
                renewed = sent;
                warned = false;
            }
            Ok(false) if strict => {
                lost.store(true, Ordering::SeqCst);
                tracing::error!(
                    "worker lease `{}` expired before it was renewed: this worker stops its \
                     items, which other workers may claim now",
                    request.name
                );
                return;
            }
            Ok(false) => {
                lost.store(true, Ordering::SeqCst);
                let who = holder(c, &request.name)
                    .await
                    .ok()
                    .flatten()
                    .map_or_else(|| "nobody now".to_owned(), |h| describe(&h));
                tracing::error!(
                    "run lock `{}` LOST: it expired before this ward (run {}) could renew it \
                     and was taken by {who}; this run records nothing more",
                    request.name,
                    request.holder.run_id
                );
                eprintln!(
                    "error: the run lock `{}` was taken over by {who} after this ward could not \
                     renew it for {}s; this run (run {}) records nothing more",
                    request.name,
                    length.as_secs(),
                    request.holder.run_id
                );
                return;
            }
            Err(_) => client = None,
        }
    }
}

fn describe(h: &LeaseHolder) -> String {
    format!("run {} (pid {} on {})", h.run_id, h.pid, h.host)
}

const ROW: &str = "SELECT run_id, pid, host, since, boot_id, expires_at <= now() \
     FROM ward.leases WHERE name = $1";

fn holder_of(row: &tokio_postgres::Row) -> LeaseHolder {
    LeaseHolder {
        run_id: row.get(0),
        pid: u32::try_from(row.get::<_, i64>(1)).unwrap_or(0),
        host: row.get(2),
        since: row.get(3),
    }
}

async fn holder(client: &Client, name: &str) -> Result<Option<LeaseHolder>, tokio_postgres::Error> {
    Ok(client
        .query_opt(ROW, &[&name])
        .await?
        .as_ref()
        .map(holder_of))
}

/// True when `pid` is no process of this host.
fn pid_gone(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// The `boot_id` a lease row records: the boot id and this process's pid
/// namespace. Containers of one machine share its boot id (and may share
/// its host name), not their pids: a pid free in one namespace may be a
/// live ward in another, so only a ward of the same boot *and* namespace
/// may call the holder gone. Empty (never "gone here") when the boot id
/// or the namespace is unknown.
fn boot_and_namespace(boot: &str) -> String {
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if boot.is_empty() || ns.is_empty() {
        String::new()
    } else {
        format!("{boot} {ns}")
    }
}

/// Takes the row in one transaction: an absent row is inserted (a
/// concurrent insert by another host makes this one wait for it, then
/// find it held); a present one is locked `FOR UPDATE`, so of two hosts
/// taking an expired lease at once, the second sees the first's row.
async fn take(client: &mut Client, r: &Request, length: Duration) -> Result<i64, LeaseError> {
    let err = |e: tokio_postgres::Error| LeaseError::State(conn::backend(&r.shown, &e));
    let token = fastrand::i64(..);
    let ms = i64::try_from(length.as_millis()).unwrap_or(i64::MAX);
    let pid = i64::from(r.holder.pid);
    let boot_id = boot_and_namespace(&r.boot_id);
    let tx = client.transaction().await.map_err(err)?;
    // Never wait long for the row: a holder in the middle of a write
    // holds it `FOR SHARE` for a moment; one that holds it longer is
    // frozen, and its transaction ends by the server's idle timeout.
    let wait = length.as_millis().clamp(1, 5000);
    tx.batch_execute(&format!("SET LOCAL lock_timeout = {wait}"))
        .await
        .map_err(err)?;
    let row = match tx.query_opt(&format!("{ROW} FOR UPDATE"), &[&r.name]).await {
        Ok(row) => row,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
            drop(tx);
            return Err(LeaseError::Held {
                name: r.name.clone(),
                holder: holder(client, &r.name).await.map_err(err)?,
            });
        }
        Err(e) => return Err(err(e)),
    };
    let taken = match row {
        None => {
            tx.execute(
                "INSERT INTO ward.leases (name, run_id, host, boot_id, pid, since, token, \
                 expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, \
                 now() + $8::bigint * interval '1 millisecond') ON CONFLICT (name) DO NOTHING",
                &[
                    &r.name,
                    &r.holder.run_id,
                    &r.holder.host,
                    &boot_id,
                    &pid,
                    &r.holder.since,
                    &token,
                    &ms,
                ],
            )
            .await
            .map_err(err)?
                == 1
        }
        Some(row) => {
            let expired: bool = row.get(5);
            let (host, boot): (String, String) = (row.get(2), row.get(4));
            let was = holder_of(&row);
            let dead_here = host == r.hostname
                && !boot.is_empty()
                && boot == boot_id
                && was.pid != r.holder.pid
                && pid_gone(was.pid);
            if expired || dead_here {
                if !expired {
                    tracing::info!(
                        "lock `{}`: its holder, pid {} of this host, is gone",
                        r.name,
                        was.pid
                    );
                }
                tx.execute(
                    "UPDATE ward.leases SET run_id = $2, host = $3, boot_id = $4, pid = $5, \
                     since = $6, token = $7, expires_at = now() + $8::bigint * interval '1 millisecond' \
                     WHERE name = $1",
                    &[
                        &r.name,
                        &r.holder.run_id,
                        &r.holder.host,
                        &boot_id,
                        &pid,
                        &r.holder.since,
                        &token,
                        &ms,
                    ],
                )
                .await
                .map_err(err)?;
                true
            } else {
                false
            }
        }
    };
    if !taken {
        drop(tx);
        let holder = holder(client, &r.name).await.map_err(err)?;
        return Err(LeaseError::Held {
            name: r.name.clone(),
            holder,
        });
    }
    tx.commit().await.map_err(err)?;
    tracing::info!("lock `{}` taken (lease of {}s)", r.name, length.as_secs());
    Ok(token)
}

/// Extends the lease; false when the row no longer holds this token.
async fn renew(
    client: &Client,
    r: &Request,
    token: i64,
    length: Duration,
    strict: bool,
) -> Result<bool, tokio_postgres::Error> {
    let ms = i64::try_from(length.as_millis()).unwrap_or(i64::MAX);
    let n = client
        .execute(
            "UPDATE ward.leases SET expires_at = now() + $3::bigint * interval '1 millisecond' \
             WHERE name = $1 AND token = $2 AND (NOT $4 OR expires_at > now())",
            &[&r.name, &token, &ms, &strict],
        )
        .await?;
    Ok(n == 1)
}

/// Gives the lease back: expired now, still naming its last holder.
async fn release(client: &Client, r: &Request, token: i64) -> Result<(), Option<StateError>> {
    client
        .execute(
            "UPDATE ward.leases SET expires_at = now() WHERE name = $1 AND token = $2",
            &[&r.name, &token],
        )
        .await
        .map_err(|e| Some(conn::backend(&r.shown, &e)))?;
    tracing::info!("lock `{}` released", r.name);
    Ok(())
}
