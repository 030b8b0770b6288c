//! Integration tests: they drive the real `ward` binary on real files.

mod fossology;
mod fs_actions;
mod harness;
mod hostile;
mod invalid_fixtures;
mod pg;
mod plan;
mod resume;
mod run;
mod shipped_playbooks;
mod validate;
