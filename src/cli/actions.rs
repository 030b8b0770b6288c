//! `ward actions`

use std::io::Write;

use crate::action::REGISTRY;
use crate::error::{WardError, exit};

pub(super) fn actions() -> Result<i32, WardError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let width = REGISTRY.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for def in REGISTRY {
        writeln!(out, "{:<width$}  {}", def.name, def.summary)?;
    }
    writeln!(out)?;
    writeln!(out, "Parameters: `ward schema` or docs/actions.md.")?;
    Ok(exit::OK)
}
