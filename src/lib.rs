//! ward runs declarative backup and restore playbooks.
//!
//! The pipeline reads off the modules, parse -> validate -> plan ->
//! execute -> state, with report beside them: [`yaml`] and [`parse`] read
//! a file into the spanned [`model`]; [`validate`] checks it as a whole and
//! renders templates ([`template`]); [`plan`] builds the [`plan::Plan`]
//! (DAG, layers, resolved steps, resume fingerprint); [`execute`] runs a
//! plan, checkpointing every step in the [`state`] store; [`report`] prints
//! diagnostics, plans and runs. Built-in actions live in [`action`], one
//! file each, over the libraries in [`fs`], [`compress`], [`artifact`],
//! [`procs`], [`pg`] and [`process`]. The top is where the stages meet:
//! [`check_file`] (read -> parse -> validate -> plan), [`session`] (from a
//! plan to an outcome: store, lease, crash reclaim, executor) and [`cli`].
//! docs/design.md has the module map and the order of imports.

#![forbid(unsafe_code)]

pub mod action;
pub mod artifact;
pub mod cli;
pub mod clock;
pub mod compress;
pub mod diagnostic;
pub mod error;
pub mod execute;
pub mod fs;
pub mod host;
pub mod model;
pub mod notify;
pub mod parse;
pub mod pg;
pub mod plan;
pub mod preflight;
pub mod process;
pub mod procs;
pub mod progress;
pub mod rehearse;
pub mod report;
pub mod restore;
pub mod schedule;
pub mod schema;
pub mod session;
pub mod shell;
pub mod source;
pub mod state;
pub mod template;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use diagnostic::{Diagnostic, Diagnostics};
use error::WardError;
use plan::Plan;
use source::SourceFile;
use template::RunFacts;

/// The outcome of reading, validating and planning one playbook file.
pub struct Checked {
    /// The file's text (for rendering diagnostics).
    pub source: Arc<SourceFile>,
    /// Every problem found, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The plan, if there were no errors.
    pub plan: Option<Plan>,
}

/// Reads, parses, validates and plans a playbook. `Err` only for files that could
/// not be read at all; problems inside the file are in `diagnostics`.
/// `overrides` are `--var` pairs as [`cli::vars`] reads them.
pub fn check_file(
    path: &Path,
    overrides: &[(String, String)],
    run_id: &str,
) -> Result<Checked, WardError> {
    let now = clock::now().map_err(|e| error::WardError::Usage(e.to_string()))?;
    check_file_with(path, overrides, RunFacts::new(now, run_id, path))
}

/// As [`check_file`], with given `ward.*` facts (a resume reuses the run's).
pub fn check_file_with(
    path: &Path,
    overrides: &[(String, String)],
    facts: RunFacts,
) -> Result<Checked, WardError> {
    let source = parse::read_source(path)?;
    let mut diags = Diagnostics::default();
    let plan = parse::parse(source.clone(), &mut diags)
        .map(|playbook| validate::validate(playbook, overrides, facts, &mut diags))
        .and_then(|validated| plan::build(validated, &mut diags));
    let plan = if diags.has_errors() { None } else { plan };
    Ok(Checked {
        source,
        diagnostics: diags.into_sorted(),
        plan,
    })
}

/// Reads a YAML file as JSON (YAML 1.2 scalars), e.g. to check a playbook
/// against the JSON Schema with other tools.
pub fn yaml_file_as_json(path: &Path) -> Result<serde_json::Value, YamlJsonError> {
    let source = parse::read_source(path)?;
    let (root, diags) = yaml::load(source.text(), yaml::Limits::default());
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        return Err(YamlJsonError::Yaml {
            path: path.to_path_buf(),
            span: d.span,
            message: d.message.clone(),
        });
    }
    let root = root.ok_or_else(|| YamlJsonError::Empty {
        path: path.to_path_buf(),
    })?;
    Ok(yaml::from_node(&root)?)
}

/// Why [`yaml_file_as_json`] cannot read a file.
#[derive(Debug, thiserror::Error)]
pub enum YamlJsonError {
    /// The file cannot be read.
    #[error(transparent)]
    Read(#[from] parse::ReadError),
    /// The YAML does not load: its first error.
    #[error("{}:{span}: {message}", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// Where.
        span: source::Span,
        /// What.
        message: String,
    },
    /// The file holds no document.
    #[error("{}: empty document", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The document cannot be a JSON value.
    #[error(transparent)]
    Value(#[from] yaml::DeError),
}
