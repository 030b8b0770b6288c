//! The logical schema, whatever the backend: its versions, and the one rule
//! for what opening a database of some version does.
//!
//! Every backend keeps its own migrations (SQLite's are in
//! `sqlite/migrations.rs`), exactly one per version below, and records how
//! many it applied (SQLite in `PRAGMA user_version`). Never edit a
//! published version: add a new one, to every backend, with a fixture
//! database of the old version in tests/fixtures/state/.

use super::StateError;

/// What each schema version brings, in order; version N is `VERSIONS[N-1]`.
pub const VERSIONS: &[&str] = &[
    "runs, steps, attempts and events",
    "steps.unflushed: output of a succeeded step not yet flushed to disk (recovery rule 6)",
    "runs.max_age_ms and runs.preconditions_json: `max_age` for `ward check`, what the \
     preconditions found (run state `skipped`)",
    "runs.slot_at: the schedule slot a `missed` run stands for, each (playbook name, slot) \
     recorded once (run state `missed`)",
    "history_policies: each playbook's `history:` policy as its latest run recorded it \
     (`ward prune`)",
    "items: each item of a `for_each` step with its state, attempts and exit code \
     (`ward items`)",
    "items.priority and items.worker, offers, claims: `for_each` items handed to `ward worker`s \
     (a step's offer, each item's claimant, every claim and release with host and pid)",
];

/// The version this ward writes.
pub const CURRENT: i64 = VERSIONS.len() as i64;

/// What to do with a database found at schema version `found`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// It is up to date.
    None,
    /// Apply the migrations after `from` (a write).
    From(i64),
}

/// The rule for a database at version `found` opened by a command that may
/// (`write`) or may not change it: a newer one is refused (upgrade ward),
/// an older one is upgraded by writers and refused by readers (an upgrade
/// is a write, and read commands never write).
pub fn upgrade(db: &str, found: i64, write: bool) -> Result<Upgrade, StateError> {
    if found > CURRENT {
        return Err(StateError::TooNew {
            db: db.to_owned(),
            found,
            supported: CURRENT,
        });
    }
    if found == CURRENT {
        return Ok(Upgrade::None);
    }
    if !write {
        return Err(StateError::NeedsUpgrade {
            db: db.to_owned(),
            found,
            supported: CURRENT,
        });
    }
    Ok(Upgrade::From(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_is_refused_older_is_upgraded_only_by_writers() {
        assert!(matches!(
            upgrade("d", CURRENT + 1, true),
            Err(StateError::TooNew { .. })
        ));
        assert_eq!(upgrade("d", CURRENT, false).ok(), Some(Upgrade::None));
        assert!(matches!(
            upgrade("d", 1, false),
            Err(StateError::NeedsUpgrade { .. })
        ));
        assert_eq!(upgrade("d", 1, true).ok(), Some(Upgrade::From(1)));
    }
}
