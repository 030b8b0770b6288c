//! Integration tests: they drive the real `ward` binary on real files.

mod catchup;
mod children;
mod cli_surface;
mod compare;
mod dumpcheck;
mod exit_codes;
mod fanout;
mod fanout_control;
mod fanout_notify;
mod fanout_pg;
mod fanout_report;
mod fanout_sources;
mod finalizers;
mod fossology;
mod fossology_conf;
mod fossology_repair;
mod fs_actions;
mod fuzz;
mod guided;
mod harness;
mod hash_all;
mod history;
mod history_stamp;
// Shared with the benchmarks; each uses a different part.
mod hostile;
mod injection;
mod invalid_fixtures;
mod limits;
mod notify;
mod output_snapshots;
mod pg;
#[allow(dead_code)]
#[path = "../support/pg_cluster.rs"]
mod pg_cluster;
mod pg_snapshot;
mod pg_store;
mod pg_store_redteam;
mod plan;
mod preconditions;
mod probe;
mod procs;
mod progress;
mod prune;
mod quickstart;
mod read_commands;
mod redteam16;
mod rehearse;
mod report;
mod reporting;
mod resume;
mod rotate_explain;
mod rotate_unlinks;
mod rsync_changed;
mod run;
mod schedule;
mod secrets;
mod shipped_playbooks;
mod snapshots;
mod state_trust;
mod state_upgrade;
#[allow(dead_code)]
#[path = "../support/fossology.rs"]
mod system;
mod validate;
mod vars;
mod verify_read;
mod workers;
mod workers_redteam;
