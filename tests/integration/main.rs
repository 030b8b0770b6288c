//! Integration tests: they drive the real `ward` binary on real files.

mod fossology;
mod fs_actions;
mod fuzz;
mod harness;
// Shared with the benchmarks; each uses a different part.
mod hostile;
mod injection;
mod invalid_fixtures;
mod pg;
#[allow(dead_code)]
#[path = "../support/pg_cluster.rs"]
mod pg_cluster;
mod plan;
mod resume;
mod run;
mod shipped_playbooks;
#[allow(dead_code)]
#[path = "../support/fossology.rs"]
mod system;
mod validate;
