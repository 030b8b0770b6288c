//! The PostgreSQL store (`--state postgres://...`): the runs of many hosts
//! in one database, with the same logical schema and versions as SQLite
//! (`migrations.rs`), through tokio-postgres (pure Rust, no libpq).
//!
//! Calls are real futures on the caller's runtime: one connection, under
//! an async mutex (writes are one transaction each, as SQLite's). A
//! connection lost before a commit is sent is made again, with pauses
//! ([`conn::RECONNECT_TRIES`]), and the work done again from its start; a
//! connection lost during `COMMIT` fails the call, since the commit may
//! have happened. The run lock is a lease row kept by a thread of its own
//! (`lease.rs`). Logs, lock tickets and the fingerprint key stay in a
//! private local folder (`folder`, chosen by `location.rs`).

mod conn;
mod db;
mod lease;
mod migrations;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::host::HostIdentity;
use super::lease::{Lease, LeaseFuture, LeaseHolder};
use super::records::{
    AttemptRecord, Change, ItemRecord, ItemState, NewRun, NewStep, RunRecord, StepRecord, UnrunRun,
};
use super::retention::{PruneRequest, PrunedRun};
use super::{Access, EventRecord, RunFilter, StateError, Store, StoreFuture};
use conn::Fail;

/// A run-state database in PostgreSQL.
pub struct PgStore {
    target: conn::Target,
    /// The connection; `None` after it was lost, until the next call makes
    /// a new one.
    client: Arc<Mutex<Option<Client>>>,
    /// The address as it may be shown (password masked).
    shown: Arc<str>,
    folder: PathBuf,
    host: HostIdentity,
    held: lease::Held,
}

/// Does `$work` (an expression using `client: &mut Client`) on the store's
/// connection, again on a new one when the old was lost before a commit
/// was sent.
macro_rules! with_client {
    ($store:expr, |$client:ident| $work:expr) => {{
        let (target, shown, slot) = (
            $store.target.clone(),
            $store.shown.clone(),
            $store.client.clone(),
        );
        async move {
            let mut slot = slot.lock().await;
            let mut tries = 0;
            loop {
                if slot.as_ref().is_none_or(Client::is_closed) {
                    match conn::connect(&target, &shown, lease::lease_length() / 2).await {
                        Ok(c) => *slot = Some(c),
                        Err(e) if tries >= conn::RECONNECT_TRIES => return Err(e),
                        Err(e) => {
                            tries += 1;
                            tracing::warn!(
                                "state: {e}; trying again ({tries} of {})",
                                conn::RECONNECT_TRIES
                            );
                            tokio::time::sleep(conn::pause(tries)).await;
                            continue;
                        }
                    }
                }
                let Some($client) = slot.as_mut() else {
                    continue;
                };
                let shown: &str = &shown;
                let result: Result<_, Fail> = $work(shown).await;
                match result {
                    Ok(v) => return Ok(v),
                    Err(Fail::State(e)) => return Err(e),
                    Err(Fail::Lost(e)) if tries >= conn::RECONNECT_TRIES => {
                        return Err(StateError::Backend {
                            db: shown.to_owned(),
                            detail: format!(
                                "the connection was lost and could not be made again: {}",
                                crate::pg::native_error(&e)
                            ),
                        });
                    }
                    Err(Fail::Lost(e)) => {
                        tries += 1;
                        tracing::warn!(
                            "state: connection to {shown} lost ({}); reconnecting ({tries} of {})",
                            crate::pg::native_error(&e),
                            conn::RECONNECT_TRIES
                        );
                        *slot = None;
                        tokio::time::sleep(conn::pause(tries)).await;
                    }
                }
            }
        }
    }};
}

impl PgStore {
    /// Connects to `address` and checks or migrates its schema (creating
    /// it only for [`Access::Create`]; read commands never change it).
    /// `folder` is the local state folder, already checked.
    pub async fn open(
        address: &str,
        shown: String,
        folder: PathBuf,
        access: Access,
        host: HostIdentity,
    ) -> Result<PgStore, StateError> {
        let target = conn::config(address, &shown)?;
        let store = PgStore {
            target,
            client: Arc::new(Mutex::new(None)),
            shown: shown.into(),
            folder,
            host,
            held: lease::Held::default(),
        };
        // The first connection is not tried again: a wrong address,
        // password or certificate is said at once. Only a connection lost
        // later (a server restarting under a run) is made again.
        let first = conn::connect(&store.target, &store.shown, lease::lease_length() / 2).await?;
        *store.client.lock().await = Some(first);
        let (create, write) = (access == Access::Create, access != Access::Read);
        with_client!(store, |client| async |shown: &str| {
            if write {
                migrations::migrate(client, shown, create, true).await
            } else {
                migrations::migrate(client, shown, false, false).await
            }
        })
        .await?;
        Ok(store)
    }
}

impl Store for PgStore {
    fn describe(&self) -> &str {
        &self.shown
    }

    fn folder(&self) -> &Path {
        &self.folder
    }

    fn host(&self) -> &HostIdentity {
        &self.host
    }

    fn acquire_lease<'a>(&'a self, name: &'a str, holder: &'a LeaseHolder) -> LeaseFuture<'a> {
        let request = lease::Request {
            target: self.target.clone(),
            shown: self.shown.to_string(),
            name: name.to_owned(),
            holder: holder.clone(),
            boot_id: self.host.boot_id.clone(),
            hostname: self.host.hostname.clone(),
        };
        let held = self.held.clone();
        Box::pin(async move {
            let guard = lease::acquire(request, held).await?;
            Ok(Lease::new(name, Box::new(guard)))
        })
    }

    fn create_run(&mut self, run: NewRun, steps: Vec<NewStep>) -> StoreFuture<'_, ()> {
        let held = self.held.clone();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            let tokens = held.tokens(shown)?;
            db::create_run(client, shown, &run, &steps, &tokens).await
        }))
    }

    fn record_unrun(&mut self, run: UnrunRun) -> StoreFuture<'_, bool> {
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::record_unrun(client, shown, &run).await
        }))
    }

    fn apply(&mut self, run_id: &str, changes: Vec<Change>) -> StoreFuture<'_, ()> {
        if changes.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let (run_id, held) = (run_id.to_owned(), self.held.clone());
        Box::pin(with_client!(self, |client| async |shown: &str| {
            let tokens = held.tokens(shown)?;
            db::apply(client, shown, &run_id, &changes, &tokens).await
        }))
    }

    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        let id = id.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::run(client, shown, &id).await
        }))
    }

    fn runs(&self, playbook: Option<&str>, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        self.runs_matching(&RunFilter {
            playbook: playbook.map(str::to_owned),
            limit,
            ..RunFilter::default()
        })
    }

    fn runs_matching(&self, filter: &RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        let filter = filter.clone();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::runs_matching(client, shown, &filter).await
        }))
    }

    fn steps(&self, run_id: &str) -> StoreFuture<'_, Vec<StepRecord>> {
        let run_id = run_id.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::steps(client, shown, &run_id).await
        }))
    }

    fn attempts(&self, run_id: &str, step: Option<&str>) -> StoreFuture<'_, Vec<AttemptRecord>> {
        let (run_id, step) = (run_id.to_owned(), step.map(str::to_owned));
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::attempts(client, shown, &run_id, step.as_deref()).await
        }))
    }

    fn items(
        &self,
        run_id: &str,
        step: Option<&str>,
        state: Option<ItemState>,
    ) -> StoreFuture<'_, Vec<ItemRecord>> {
        let (run_id, step) = (run_id.to_owned(), step.map(str::to_owned));
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::items(client, shown, &run_id, step.as_deref(), state).await
        }))
    }

    fn events(&self, run_id: &str) -> StoreFuture<'_, Vec<EventRecord>> {
        let run_id = run_id.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::events(client, shown, &run_id).await
        }))
    }

    fn running_with_lock(&self, lock: &str) -> StoreFuture<'_, Vec<RunRecord>> {
        let lock = lock.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::running_with_lock(client, shown, &lock).await
        }))
    }

    fn last_succeeded(&self, playbook: &str) -> StoreFuture<'_, Option<RunRecord>> {
        let playbook = playbook.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::last_succeeded(client, shown, &playbook).await
        }))
    }

    fn playbook_names(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::strings(
                client,
                shown,
                "SELECT DISTINCT playbook_name FROM ward.runs ORDER BY playbook_name COLLATE \"C\"",
            )
            .await
        }))
    }

    fn prune_runs(&mut self, request: &PruneRequest) -> StoreFuture<'_, Vec<PrunedRun>> {
        let request = request.clone();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::prune_runs(client, shown, &request).await
        }))
    }

    fn run_ids(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::strings(client, shown, "SELECT id FROM ward.runs").await
        }))
    }

    fn lease_holders(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::strings(
                client,
                shown,
                "SELECT run_id FROM ward.leases ORDER BY name",
            )
            .await
        }))
    }
}
