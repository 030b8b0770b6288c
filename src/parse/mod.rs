//! From a file on disk to the spanned [`Playbook`] model.
//!
//! Reading is bounded (size, nodes, depth) and decoding goes on after an
//! error, so one `ward validate` reports every mistake at once.

mod fields;
mod playbook;
mod step;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use crate::diagnostic::Diagnostics;
use crate::error::WardError;
use crate::model::Playbook;
use crate::source::SourceFile;
use crate::yaml::{self, Limits};

pub use fields::{DEFAULTS_KEYS, PLAYBOOK_KEYS, STEP_KEYS, is_identifier, is_name};

/// Largest playbook file ward reads. A 5,000-step playbook is about 1 MiB.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Reads a playbook file, refusing files that are too large or not UTF-8.
pub fn read_source(path: &Path) -> Result<Arc<SourceFile>, WardError> {
    let io_err = |source| WardError::ReadPlaybook {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(WardError::PlaybookIsDirectory {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    // Read at most one byte past the limit so a growing or lying file is also caught.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(WardError::PlaybookTooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| WardError::PlaybookNotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    Ok(SourceFile::new(path, text))
}

/// Parses a playbook's text. Returns the model if it could be built (it may
/// still have errors in `diagnostics`) and every problem found.
pub fn parse(source: Arc<SourceFile>, diagnostics: &mut Diagnostics) -> Option<Playbook> {
    let (root, yaml_diags) = yaml::load(source.text(), Limits::default());
    diagnostics.extend(yaml_diags);
    let root = root?;
    playbook::decode(source, &root, diagnostics)
}
