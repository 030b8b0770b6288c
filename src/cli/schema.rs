//! `ward schema`

use std::io::Write;

use crate::error::{WardError, exit};

pub(super) fn schema() -> Result<i32, WardError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    serde_json::to_writer_pretty(&mut out, &crate::schema::playbook_schema())
        .map_err(std::io::Error::from)?;
    writeln!(out)?;
    out.flush()?;
    Ok(exit::OK)
}
