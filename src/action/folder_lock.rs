//! The lock of a snapshot folder, `<dir>/.ward-snapshot.lock`, taken by
//! `snapshot.hardlink` and `rotate` for as long as they change the folder.
//!
//! Without it a rotation could delete the base an incremental snapshot
//! is linking against, or two rotations could both pick the same oldest
//! snapshot and fail each other half-way (one's rename aside finds it
//! gone, or both delete the same leftover). `verify` does not take it: it
//! reads one named snapshot and says so when that is gone.

use std::path::Path;

use super::{ActionCtx, ActionError};

/// Holds `<dir>/.ward-snapshot.lock` (a `flock`, freed by the kernel if
/// ward dies) until dropped, waiting while another run holds it. `what`
/// says what this run does there, for the log of the one that waits.
pub(super) fn lock_folder(
    dir: &Path,
    ctx: &ActionCtx,
    what: &str,
) -> Result<std::fs::File, ActionError> {
    use rustix::fs::{FlockOperation, flock};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(".ward-snapshot.lock");
    // No symlink is followed: a planted link must not make root create or
    // lock a file elsewhere.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|e| ActionError::new(format!("cannot open {}: {e}", path.display())))?;
    let mut told = false;
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                if told {
                    ctx.log(format!("{} is free now; {what}", dir.display()));
                }
                return Ok(file);
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if !told {
                    ctx.log(format!(
                        "another run is making a snapshot in or rotating {} (it holds {}); \
                         waiting for it",
                        dir.display(),
                        path.display()
                    ));
                    told = true;
                }
                if ctx.cancelled() {
                    return Err(ActionError::stopped());
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                return Err(ActionError::new(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )));
            }
        }
    }
}
