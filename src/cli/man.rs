//! `ward man`: manual pages in roff, generated from the clap definitions.
//!
//! Without `--out`, the page for `ward` goes to standard output
//! (`ward man | man -l -`). With `--out DIR`, DIR receives `ward.1` and one
//! `ward-<command>.1` per command, each written under a temporary name,
//! fsynced and renamed (a reader never sees half a page).

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use super::Cli;
use crate::error::{WardError, exit};

/// Prints the page, or writes all pages into `out`.
pub fn man(out: Option<&Path>) -> Result<i32, WardError> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Building fills in the display names (`ward-run`) the pages are named by.
    cmd.build();
    match out {
        None => {
            let page = render(cmd)?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&page)?;
            stdout.flush()?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot create the folder {}: {e}", dir.display()),
                )
            })?;
            write_pages(cmd, dir)?;
        }
    }
    Ok(exit::OK)
}

/// The page of one command, in roff.
fn render(cmd: clap::Command) -> Result<Vec<u8>, WardError> {
    let mut page = Vec::new();
    let mut man = clap_mangen::Man::new(cmd);
    if let Some(date) = option_env!("WARD_COMMIT_DATE") {
        man = man.date(date);
    }
    man.render(&mut page)?;
    Ok(page)
}

/// Writes `cmd`'s page and those of its subcommands into `dir`.
fn write_pages(cmd: clap::Command, dir: &Path) -> Result<(), WardError> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let page = render(cmd)?;
    crate::fs::write_atomic(&path, &page, 0o644)
        .map_err(|e| WardError::Output(std::io::Error::other(e.to_string())))?;
    Ok(())
}
