//! Durable file writes: a temp file beside the destination, fsynced and
//! renamed into place, and the folder fsynced after.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::FsError;

/// Writes `bytes` to `dest` atomically: a temp file in the same folder,
/// fsync, rename, fsync of the folder. `mode` applies to the new file.
pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let mut tmp = AtomicFile::create(dest, mode)?;
    tmp.file()
        .write_all(bytes)
        .map_err(|e| FsError::new(format!("cannot write {}: {e}", dest.display())))?;
    tmp.commit()
}

/// A file written under a temporary name and renamed into place on
/// [`commit`](AtomicFile::commit); dropped without commit, it is removed.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates `.<name>.ward-tmp-<random>` next to `dest`.
    pub fn create(dest: &Path, mode: u32) -> Result<AtomicFile, FsError> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = dest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dest
            .file_name()
            .ok_or_else(|| FsError::new(format!("{} is not a file name", dest.display())))?;
        let tmp = dir.join(format!(
            ".{}.ward-tmp-{:08x}",
            name.to_string_lossy(),
            fastrand::u32(..)
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| FsError::new(format!("cannot create {}: {e}", tmp.display())))?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            dest: dest.to_path_buf(),
        })
    }

    /// The open temp file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is open until commit")
    }

    /// fsync, rename over `dest`, fsync the folder.
    pub fn commit(mut self) -> Result<(), FsError> {
        let file = self.file.take().expect("file is open until commit");
        file.sync_all()
            .map_err(|e| FsError::new(format!("cannot fsync {}: {e}", self.tmp.display())))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| {
            FsError::new(format!("cannot rename into {}: {e}", self.dest.display()))
        })?;
        sync_dir(self.dest.parent().unwrap_or(Path::new(".")))?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// fsyncs a folder so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new(format!("cannot fsync folder {}: {e}", dir.display())))
}
