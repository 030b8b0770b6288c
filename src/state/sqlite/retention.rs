//! The SQLite store's side of `state/retention.rs`: the policies table,
//! and the pruning of runs in one `BEGIN IMMEDIATE` transaction (the runs
//! are read under the write lock, so no other ward changes them between
//! the choice and the delete).

use std::collections::BTreeMap;

use rusqlite::{TransactionBehavior, params};

use super::super::StateError;
use super::super::records::RunState;
#[cfg(test)]
use super::super::retention::PolicyRecord;
use super::super::retention::{self, PruneRequest, PrunedRun, Retention, RunBrief};
use super::db::{Db, sqlite_err};

impl Db {
    pub(super) fn prune_runs(
        &mut self,
        request: &PruneRequest,
    ) -> Result<Vec<PrunedRun>, StateError> {
        let path = self.path.clone();
        let err = |source| sqlite_err(&path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        // Written only when the policy changed: a prune that removes
        // nothing then commits nothing (no fsync at the end of every run).
        if let Some(r) = &request.record {
            tx.execute(
                "INSERT INTO history_policies (playbook_name, keep_days, keep_runs, run_id, recorded_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (playbook_name) DO UPDATE SET \
                 keep_days = excluded.keep_days, keep_runs = excluded.keep_runs, \
                 run_id = excluded.run_id, recorded_at = excluded.recorded_at \
                 WHERE keep_days IS NOT excluded.keep_days OR keep_runs IS NOT excluded.keep_runs",
                params![
                    r.playbook,
                    r.policy.map(|p| p.keep_days),
                    r.policy.map(|p| p.keep_runs),
                    r.run_id,
                    r.at
                ],
            )
            .map_err(err)?;
        }
        let mut policies = BTreeMap::new();
        {
            let mut q = tx
                .prepare("SELECT playbook_name, keep_days, keep_runs FROM history_policies")
                .map_err(err)?;
            let rows = q
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<u32>>(1)?,
                        r.get::<_, Option<u32>>(2)?,
                    ))
                })
                .map_err(err)?;
            for row in rows {
                let (name, days, runs) = row.map_err(err)?;
                let default = Retention::DEFAULT;
                policies.insert(
                    name,
                    Retention {
                        keep_days: days.unwrap_or(default.keep_days),
                        keep_runs: runs.unwrap_or(default.keep_runs),
                    },
                );
            }
        }
        let mut runs = Vec::new();
        {
            let mut q = tx
                .prepare(
                    "SELECT id, playbook_name, state, started_at, finished_at FROM runs \
                     WHERE ?1 IS NULL OR playbook_name = ?1",
                )
                .map_err(err)?;
            let rows = q
                .query_map([&request.playbook], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })
                .map_err(err)?;
            for row in rows {
                let (id, playbook_name, state, started_at, finished_at) = row.map_err(err)?;
                let state = RunState::parse(&state).ok_or_else(|| StateError::Corrupt {
                    db: path.display().to_string(),
                    message: format!("run {id}: unknown run state `{state}`"),
                })?;
                runs.push(RunBrief {
                    id,
                    playbook_name,
                    state,
                    started_at,
                    finished_at,
                });
            }
        }
        let out = retention::pruned(&runs, &policies, request);
        if request.apply {
            // Children first: attempts and items reference steps, steps
            // and events reference runs (foreign keys are on).
            for sql in [
                "DELETE FROM claims WHERE run_id = ?1",
                "DELETE FROM offers WHERE run_id = ?1",
                "DELETE FROM items WHERE run_id = ?1",
                "DELETE FROM attempts WHERE run_id = ?1",
                "DELETE FROM steps WHERE run_id = ?1",
                "DELETE FROM events WHERE run_id = ?1",
                "DELETE FROM runs WHERE id = ?1",
            ] {
                let mut delete = tx.prepare(sql).map_err(err)?;
                for r in &out {
                    delete.execute([&r.id]).map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    pub(super) fn run_ids(&mut self) -> Result<Vec<String>, StateError> {
        let path = self.path.clone();
        let err = |source| sqlite_err(&path, source);
        let mut q = self.conn.prepare("SELECT id FROM runs").map_err(err)?;
        let rows = q.query_map([], |r| r.get::<_, String>(0)).map_err(err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::sqlite::StatePaths;
    use crate::state::{Access, Change};
    use std::collections::BTreeSet;

    #[test]
    fn a_prune_deletes_every_row_of_a_run_and_keeps_the_policy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = StatePaths {
            db: dir.path().join("ward.db"),
        };
        let mut db = paths.open(Access::Create).expect("open");
        for (id, day) in [("20260101-000000-0001", 1), ("20260102-000000-0002", 2)] {
            let mut run = crate::state::sqlite::tests::new_run(id);
            run.started_at = day * 86_400_000;
            let step = crate::state::NewStep {
                id: "a".into(),
                position: 0,
                definition: "{}".into(),
                compensation: false,
            };
            db.create_run(&run, &[step]).expect("create");
            let changes = [
                Change::AttemptStarted {
                    step: "a".into(),
                    attempt: 1,
                    log_path: "x".into(),
                    at: 1,
                },
                Change::Run {
                    state: RunState::Succeeded,
                    message: None,
                    at: day * 86_400_000 + 1,
                },
            ];
            db.apply(id, &changes).expect("apply");
        }
        let record = PolicyRecord {
            playbook: "p".into(),
            policy: Some(Retention {
                keep_days: 0,
                keep_runs: 0,
            }),
            run_id: "20260102-000000-0002".into(),
            at: 5,
        };
        let request = PruneRequest {
            playbook: None,
            now_ms: 100 * 86_400_000,
            protect: BTreeSet::new(),
            apply: false,
            record: Some(record),
        };
        let dry = db.prune_runs(&request).expect("dry");
        assert_eq!(dry.len(), 1);
        assert_eq!(db.run_ids().expect("ids").len(), 2);
        let request = PruneRequest {
            apply: true,
            record: None,
            ..request
        };
        // The policy was recorded by the first call.
        let gone = db.prune_runs(&request).expect("prune");
        assert_eq!(gone[0].id, "20260101-000000-0001");
        assert_eq!(gone[0].policy.keep_runs, 0);
        assert_eq!(db.run_ids().expect("ids"), ["20260102-000000-0002"]);
        for table in ["steps", "attempts", "events"] {
            let n: i64 = db
                .conn
                .query_row(
                    &format!("SELECT count(*) FROM {table} WHERE run_id = ?1"),
                    ["20260101-000000-0001"],
                    |r| r.get(0),
                )
                .expect("count");
            assert_eq!(n, 0, "{table}");
        }
    }
}
