//! `ward completions SHELL`: the shell's completion script, generated from
//! the same clap definitions that parse the command line (so it cannot
//! drift from them), printed on standard output.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use crate::error::{WardError, exit};

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> Result<i32, WardError> {
    let mut cmd = Cli::command();
    // Rendered into memory first: a failed write is then one error, not a
    // half script followed by a panic inside the generator.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "ward", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(exit::OK)
}
