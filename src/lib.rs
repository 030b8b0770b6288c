//! ward runs declarative backup and restore playbooks.
//!
//! The pipeline reads off the modules: [`yaml`] and [`parse`] read a file
//! into the spanned [`model`]; [`validate`] checks it as a whole and renders
//! templates; [`plan`] builds the DAG; [`report`] prints diagnostics and
//! plans. Built-in actions live in [`action`], one file each.

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
pub mod model;
pub mod parse;
pub mod pg;
pub mod plan;
pub mod process;
pub mod procs;
pub mod report;
pub mod run;
pub mod schema;
pub mod source;
pub mod state;
pub mod template;
pub mod validate;
pub mod yaml;

use std::path::Path;
use std::sync::Arc;

use diagnostic::{Diagnostic, Diagnostics};
use error::WardError;
use source::SourceFile;
use template::RunFacts;
use validate::Validated;

/// The outcome of reading and validating one playbook file.
pub struct Checked {
    /// The file's text (for rendering diagnostics).
    pub source: Arc<SourceFile>,
    /// Every problem found, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The validated playbook, if there were no errors.
    pub validated: Option<Validated>,
}

/// Reads, parses and validates a playbook. `Err` only for files that could
/// not be read at all; problems inside the file are in `diagnostics`.
pub fn check_file(
    path: &Path,
    overrides: &[(String, String)],
    run_id: &str,
) -> Result<Checked, WardError> {
    let now = clock::now()?;
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
    let validated = parse::parse(source.clone(), &mut diags)
        .and_then(|playbook| validate::validate(playbook, overrides, facts, &mut diags));
    let validated = if diags.has_errors() { None } else { validated };
    Ok(Checked {
        source,
        diagnostics: diags.into_sorted(),
        validated,
    })
}

/// Reads a YAML file as JSON (YAML 1.2 scalars), e.g. to check a playbook
/// against the JSON Schema with other tools. Errors are rendered as text.
pub fn yaml_file_as_json(path: &Path) -> Result<serde_json::Value, String> {
    let source = parse::read_source(path).map_err(|e| e.to_string())?;
    let (root, diags) = yaml::load(source.text(), yaml::Limits::default());
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        return Err(format!("{}:{}: {}", path.display(), d.span, d.message));
    }
    let root = root.ok_or_else(|| format!("{}: empty document", path.display()))?;
    yaml::from_node(&root).map_err(|e| e.message)
}
