//! What a rotation records for the next snapshot: which files it unlinked
//! a name of while they were unchanged since the latest snapshot's
//! manifest proved their hashes, and the window of the file system's clock
//! its unlinks fall in ([`crate::fs::manifest::Unlinks`]). Every unlink
//! moves the ctime of the file it unlinks a name of; the latest snapshot
//! and `current` share those files, so without this record the next
//! snapshot would read (hash) nearly the whole tree again after every
//! rotation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::fs::clock::FsClock;
use crate::fs::manifest::{self, UnlinkWindow, Unlinks};
use crate::fs::snapshots::{Listing, carried_from, wards_own};
use crate::fs::tree::Identity;

/// A rotation's watch over its unlinks: started before its first unlink,
/// shown every file it unlinks ([`Watch::observe`]), finished after its
/// last ([`Watch::finish`]).
pub(super) struct Watch {
    /// The snapshot the next one takes its hashes from.
    set: PathBuf,
    /// What is recorded beside it already for the same manifest (earlier
    /// rotations), else nothing yet for it.
    unlinks: Unlinks,
    /// The identity its manifest recorded for each file, by (dev, ino).
    recorded: HashMap<(u64, u64), Identity>,
    clock: FsClock,
    /// The file system's clock before the first unlink.
    from: i64,
    /// What the unlinks showed of each recorded file.
    seen: Mutex<HashMap<(u64, u64), Seen>>,
}

/// What the stats before a file's unlinks showed, over all its names.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// One showed the recorded identity (or one an earlier rotation's
    /// window accepts): unchanged since the manifest's proof up to then.
    unchanged: bool,
    /// One showed anything but that or a ctime this rotation's own unlinks
    /// may have left (same inode, size and mtime, ctime at or after
    /// `from`), or the file's last name: the file is not recorded.
    other: bool,
}

impl Watch {
    /// Starts watching a rotation of `dir` that deletes `deleting`: finds
    /// the snapshot the next snapshot will take its hashes from (as
    /// `snapshot.hardlink` picks it, among the snapshots kept), loads the
    /// identities its manifest recorded, and reads the file system's clock
    /// (last: before the first unlink). Err says why nothing is recorded.
    pub(super) fn start(
        dir: &Path,
        listing: &Listing,
        deleting: &[String],
    ) -> Result<Watch, String> {
        let Some(kept) = carried_from(listing, |name| deleting.iter().any(|d| d == name)) else {
            return Err("no complete snapshot is kept".into());
        };
        let set = dir.join(&kept.name);
        let previous = match manifest::previous(&set) {
            Ok(Some(p)) => p,
            Ok(None) => return Err(format!("{} has no manifest", set.display())),
            Err(e) => {
                return Err(format!(
                    "the manifest of {} cannot be used ({e})",
                    set.display()
                ));
            }
        };
        // The same check as the next snapshot's: a manifest that is not
        // ward's own is not used there, so nothing is recorded for it.
        match std::fs::symlink_metadata(&previous.path) {
            Ok(meta) if wards_own(&meta) => {}
            Ok(_) => {
                return Err(format!(
                    "the manifest {} is not ward's own (another owner, or others may write it)",
                    previous.path.display()
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", previous.path.display())),
        }
        let mut recorded = previous.carry.identities();
        if recorded.is_empty() {
            return Err(format!(
                "the manifest {} records no file identities",
                previous.path.display()
            ));
        }
        // Earlier rotations since that manifest: their windows go on
        // counting (a file one of them accepted is unchanged for this one
        // too); a file that is not ward's own or is of another manifest
        // is replaced.
        let unlinks = manifest::read_unlinks(&set, &previous.checksum)
            .ok()
            .flatten()
            .unwrap_or_else(|| Unlinks::new(&previous.checksum));
        let clock = FsClock::open(dir);
        let from = clock.now().ok_or_else(|| {
            format!(
                "the file system's clock cannot be read in {}",
                dir.display()
            )
        })?;
        // A recorded ctime at or after `from` (a clock stepped back) could
        // not be told from one this rotation's unlinks leave.
        recorded.retain(|_, id| id.ctime_ns < from);
        Ok(Watch {
            set,
            unlinks,
            recorded,
            clock,
            from,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// A file this rotation unlinked a name of, as its stat just before
    /// that unlink showed it.
    pub(super) fn observe(&self, st: &rustix::fs::Stat) {
        let id = Identity::of(st);
        let Some(r) = self.recorded.get(&(id.dev, id.ino)) else {
            return;
        };
        let unchanged = id == *r || self.unlinks.accepts(r, &id);
        let moved_here = (id.size, id.mtime_ns) == (r.size, r.mtime_ns) && id.ctime_ns >= self.from;
        // The last name: the inode is freed, and its number may be given
        // to a new file, which no record may stand for.
        let last_name = st.st_nlink <= 1;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = seen.entry((id.dev, id.ino)).or_default();
        if last_name || !(unchanged || moved_here) {
            s.other = true;
        } else if unchanged {
            s.unchanged = true;
        }
    }

    /// After the rotation's last unlink: reads the clock once every unlink
    /// is behind it (`to`), waits for it to tick past that (so that any
    /// later change gets a later ctime), and writes the window beside the
    /// snapshot (added to the earlier ones for the same manifest). Returns
    /// the line to log.
    pub(super) fn finish(self) -> String {
        let Some(to) = self.clock.now() else {
            return "nothing recorded for the next snapshot: the file system's clock cannot be read"
                .into();
        };
        if self.clock.after(to).is_none() {
            return "nothing recorded for the next snapshot: the file system's clock did not tick"
                .into();
        }
        let seen = self
            .seen
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut inodes: Vec<(u64, u64)> = seen
            .into_iter()
            .filter(|(_, s)| s.unchanged && !s.other)
            .map(|(k, _)| k)
            .collect();
        if inodes.is_empty() {
            return format!(
                "no file of {} lost a name unchanged: nothing recorded for the next snapshot",
                self.set.display()
            );
        }
        inodes.sort_unstable();
        let n = inodes.len();
        let mut unlinks = self.unlinks;
        unlinks.windows.push(UnlinkWindow {
            from: self.from,
            to,
            inodes,
        });
        let shown = manifest::unlinks_path(&self.set).map_or_else(
            || self.set.display().to_string(),
            |p| p.display().to_string(),
        );
        match manifest::write_unlinks(&self.set, &unlinks) {
            Ok(()) => format!(
                "{n} files of {} lost a name unchanged: recorded in {shown}, so that the next \
                 snapshot does not read them again for the change time the unlinks moved",
                self.set.display()
            ),
            Err(e) => format!(
                "cannot record which files lost a name unchanged ({e}); the next snapshot reads \
                 them again"
            ),
        }
    }
}
