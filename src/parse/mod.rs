//! From a file on disk to the spanned [`Playbook`] model.
//!
//! Reading is bounded (size, nodes, depth) and decoding goes on after an
//! error, so one `ward validate` reports every mistake at once.

mod fields;
mod notify;
mod playbook;
mod precondition;
mod rehearse;
mod restore;
mod step;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::Diagnostics;
use crate::model::Playbook;
use crate::source::SourceFile;
use crate::yaml::{self, Limits};

pub use fields::{DEFAULTS_KEYS, PLAYBOOK_KEYS, STEP_KEYS, is_identifier, is_name};
pub(crate) use precondition::example as precondition_example;
pub use step::is_tag;

/// Largest playbook file ward reads. A 5,000-step playbook is about 1 MiB.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Why a playbook file could not be read at all (problems inside a file
/// that was read are diagnostics).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read playbook {}: {source}", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is a directory.
    #[error("{} is a directory, not a playbook file", path.display())]
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The file is larger than ward reads.
    #[error("playbook {} is larger than {limit} bytes; refusing to read it", path.display())]
    TooLarge {
        /// The path given.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not UTF-8 text.
    #[error("playbook {} is not UTF-8 text (invalid byte at offset {offset})", path.display())]
    NotUtf8 {
        /// The path given.
        path: PathBuf,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
}

/// Reads a playbook file, refusing files that are too large or not UTF-8.
pub fn read_source(path: &Path) -> Result<Arc<SourceFile>, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(ReadError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::new();
    // Read at most one byte past the limit so a growing or lying file is also caught.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
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
