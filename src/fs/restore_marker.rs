//! The marker a restore leaves while it is unfinished (`restore.marker`,
//! docs/playbook.md "Restore"): written before its first step, removed
//! only when every step succeeded. Backups refuse to start while it is
//! there (`path_absent`), and `service.start` with `blocked_by` refuses to
//! start a service (unless the restore itself starts it).

use std::path::Path;

/// What the marker holds.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// The restore's run.
    pub run_id: String,
    /// Its playbook.
    pub playbook: String,
    /// The snapshot it restores.
    pub snapshot: String,
    /// When the restore started (local time).
    pub started: String,
}

/// Refuses a marker path in a folder another user could write (they could
/// plant or remove it): every folder on the way must be safe by
/// [`crate::fs::trust::resolve`]'s rule, and the marker's folder itself
/// must belong to root or to the user running ward and not be writable by
/// group or others (a sticky shared folder is not enough: others could
/// plant a marker in it).
pub fn trusted_marker_folder(path: &Path) -> Result<(), String> {
    use crate::fs::trust::{Untrusted, folder_of, owned_by_us, resolve, writable_by_others};
    use std::os::unix::fs::MetadataExt;
    let dir = folder_of(path);
    let real = resolve(dir, false).map_err(|why| match why {
        Untrusted::Owner { path, uid, link } => format!(
            "the {} {} on the way to the marker's folder {} belongs to {}, who could put or \
             remove the marker: put it in a folder whose every parent belongs to root or \
             ward's user",
            if link { "link" } else { "folder" },
            path.display(),
            dir.display(),
            crate::state::private::describe_uid(uid)
        ),
        Untrusted::OpenToOthers { path, mode } => format!(
            "the folder {} on the way to the marker's folder {} can be written by other users \
             (mode {mode:o}, not sticky): they could replace the marker's folder; `chmod go-w {}` \
             or put the marker elsewhere",
            path.display(),
            dir.display(),
            path.display()
        ),
        other => format!("cannot read the marker's folder {}: {other}", dir.display()),
    })?;
    let meta =
        std::fs::metadata(&real).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if !owned_by_us(meta.uid()) {
        return Err(format!(
            "the marker's folder {} belongs to {}, not to root or the user running ward; \
             another user could put or remove the marker there: put it in a folder of ward's user",
            dir.display(),
            crate::state::private::describe_uid(meta.uid())
        ));
    }
    if writable_by_others(meta.mode()) {
        return Err(format!(
            "the marker's folder {} can be written by other users (mode {:o}): they could put or \
             remove the marker; use a folder only ward's user can write (chmod go-w)",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Writes the marker (atomically) before the restore's first step.
pub fn write_marker(path: &Path, marker: &Marker) -> Result<(), String> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    trusted_marker_folder(path)?;
    let text = serde_json::to_vec_pretty(marker).map_err(|e| e.to_string())?;
    super::write_atomic(path, &text, 0o644).map_err(|e| e.to_string())
}

/// Removes the marker once every step succeeded.
pub fn remove_marker(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    super::sync_dir(dir).map_err(|e| e.to_string())
}

/// More than any marker ward writes.
const MAX_MARKER: u64 = 64 * 1024;

/// The marker at `path`, if there is one: what it says in words, and the
/// run it names (`None` when it cannot be read as ward's).
pub fn read_marker(path: &Path) -> Option<(String, Option<String>)> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Not followed: a link (even a dangling one) or a fifo at the path is
    // something there, and reading through it could hang or read a device.
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some((format!("{} (unreadable: {e})", path.display()), None)),
    };
    if !meta.is_file() {
        return Some((
            format!(
                "{} exists ({}, not a ward marker)",
                path.display(),
                if meta.is_symlink() {
                    "a symbolic link"
                } else if meta.is_dir() {
                    "a folder"
                } else {
                    "not a regular file"
                }
            ),
            None,
        ));
    }
    if meta.len() > MAX_MARKER {
        // A marker is a few hundred bytes; a bigger file is not ward's.
        return Some((
            format!(
                "{} exists ({} bytes, not a ward marker)",
                path.display(),
                meta.len()
            ),
            None,
        ));
    }
    let mut text = String::new();
    let read = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
        // It may have grown since.
        .and_then(|f| f.take(MAX_MARKER).read_to_string(&mut text));
    match read {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some((format!("{} (unreadable: {e})", path.display()), None)),
    }
    match serde_json::from_str::<Marker>(&text) {
        Ok(m) => Some((
            format!(
                "{}: restore run {} of playbook `{}` from {} started {} and has not finished",
                path.display(),
                m.run_id,
                m.playbook,
                m.snapshot,
                m.started
            ),
            Some(m.run_id),
        )),
        Err(_) => Some((
            format!("{} exists (not a ward marker)", path.display()),
            None,
        )),
    }
}

/// What blocks a start or a backup: `Ok(None)` when there is no marker
/// (its folder missing counts: nothing was ever written there),
/// `Ok(Some((what it says, its run)))` when there is one, `Err` when the
/// folder could be written by another user (refused).
pub fn blocking(path: &Path) -> Result<Option<(String, Option<String>)>, String> {
    // Missing only counts as absent when nobody else could have removed
    // it: the way to it is checked first.
    if let Err(crate::fs::trust::Untrusted::Missing { .. }) =
        crate::fs::trust::resolve(crate::fs::trust::folder_of(path), false)
    {
        return Ok(None);
    }
    trusted_marker_folder(path)?;
    Ok(read_marker(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anything_at_the_marker_path_blocks_without_being_followed_or_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("restore.marker");
        assert!(blocking(&path).expect("trusted").is_none());
        // A dangling link is something there, not an absent marker.
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &path).expect("link");
        let (said, run) = blocking(&path).expect("trusted").expect("blocks");
        assert!(said.contains("symbolic link"), "{said}");
        assert!(run.is_none());
        std::fs::remove_file(&path).expect("rm");
        // A fifo is not opened (that would wait for a writer forever).
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let (said, _) = blocking(&path).expect("trusted").expect("blocks");
        assert!(said.contains("not a regular file"), "{said}");
        std::fs::remove_file(&path).expect("rm");
        // A huge file whose start looks like a marker is not read whole.
        let marker = Marker {
            run_id: "r1".into(),
            playbook: "p".into(),
            snapshot: "s".into(),
            started: "t".into(),
        };
        let mut text = serde_json::to_vec(&marker).expect("json");
        text.resize(MAX_MARKER as usize + 10, b' ');
        std::fs::write(&path, &text).expect("write");
        let (said, run) = blocking(&path).expect("trusted").expect("blocks");
        assert!(said.contains("not a ward marker"), "{said}");
        assert!(run.is_none());
        // A real one names its run.
        write_marker(&path, &marker).expect("write marker");
        let (_, run) = blocking(&path).expect("trusted").expect("blocks");
        assert_eq!(run.as_deref(), Some("r1"));
    }

    #[test]
    fn a_marker_folder_below_a_folder_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        let own = open.join("ward");
        std::fs::create_dir_all(&own).expect("mkdir");
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let path = own.join("restore.marker");
        assert!(blocking(&path).expect("trusted").is_none());
        // Anyone could now rename `ward` away and put their own folder,
        // holding a marker (or none), in its place.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let why = blocking(&path).expect_err("refused");
        assert!(why.contains("on the way to the marker's folder"), "{why}");
        assert!(why.contains(&open.display().to_string()), "{why}");
        // Sticky, as /tmp: others cannot move `ward`.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert!(blocking(&path).expect("trusted").is_none());
    }
}
