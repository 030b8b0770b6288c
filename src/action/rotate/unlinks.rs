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
use crate::fs::snapshots::{Listing, carried_from, own_previous};
use crate::fs::tree::Identity;

/// A rotation's watch over its unlinks: started before its first unlink,
/// shown every file it unlinks ([`Watch::observe`]), finished after its
/// last ([`Watch::finish`]). The latest snapshot's manifest is read on a
/// thread of the lowest priority while the deletion runs (reading it
/// first made a rotation of 100,000 files twice as long); what the
/// unlinks showed is kept until then and judged at the end.
pub(super) struct Watch {
    /// The snapshot the next one takes its hashes from.
    set: PathBuf,
    /// Its manifest's identities and earlier windows, being read.
    loading: std::thread::JoinHandle<Result<Loaded, String>>,
    clock: FsClock,
    /// The file system's clock before the first unlink.
    from: i64,
    /// Each unlinked file's identity just before the unlink, and whether
    /// that was its last name.
    shown: Mutex<Vec<(Identity, bool)>>,
}

/// What the next snapshot will compare with: the identity the manifest
/// recorded for each file, by (dev, ino), and what earlier rotations
/// since that manifest recorded beside it (else nothing yet for it).
struct Loaded {
    recorded: HashMap<(u64, u64), Identity>,
    unlinks: Unlinks,
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

/// Reads what the manifest of `set` recorded (see [`Loaded`]); Err says
/// why nothing is recorded.
fn load(set: &Path) -> Result<Loaded, String> {
    // The same rule as the next snapshot's: a manifest it would not use
    // gets nothing recorded for it.
    let previous = own_previous(set)?;
    let recorded = previous.carry.identities();
    if recorded.is_empty() {
        return Err(format!(
            "the manifest {} records no file identities",
            previous.path.display()
        ));
    }
    // Earlier rotations since that manifest: their windows go on counting
    // (a file one of them accepted is unchanged for this one too); a file
    // that is not ward's own or is of another manifest is replaced.
    let unlinks = manifest::read_unlinks(set, &previous.checksum)
        .ok()
        .flatten()
        .unwrap_or_else(|| Unlinks::new(&previous.checksum));
    Ok(Loaded { recorded, unlinks })
}

impl Watch {
    /// Starts watching a rotation of `dir` that deletes `deleting`: finds
    /// the snapshot the next snapshot will take its hashes from (as
    /// `snapshot.hardlink` picks it, among the snapshots kept), starts
    /// reading the identities its manifest recorded, and reads the file
    /// system's clock (last: before the first unlink). Err says why
    /// nothing is recorded.
    pub(super) fn start(
        dir: &Path,
        listing: &Listing,
        deleting: &[String],
    ) -> Result<Watch, String> {
        let Some(kept) = carried_from(listing, |name| deleting.iter().any(|d| d == name)) else {
            return Err("no complete snapshot is kept".into());
        };
        let set = dir.join(&kept.name);
        let clock = FsClock::open(dir);
        let from = clock.now().ok_or_else(|| {
            format!(
                "the file system's clock cannot be read in {}",
                dir.display()
            )
        })?;
        let loading = {
            let set = set.clone();
            std::thread::spawn(move || {
                // The lowest priority: it fills the moments the deletion
                // waits and never takes a core from it.
                let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
                load(&set)
            })
        };
        Ok(Watch {
            set,
            loading,
            clock,
            from,
            shown: Mutex::new(Vec::new()),
        })
    }

    /// A file this rotation unlinked a name of, as its stat just before
    /// that unlink showed it.
    pub(super) fn observe(&self, st: &rustix::fs::Stat) {
        // The last name: the inode is freed, and its number may be given
        // to a new file, which no record may stand for.
        let last_name = st.st_nlink <= 1;
        self.shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((Identity::of(st), last_name));
    }

    /// What the unlinks showed of each recorded file, for a rotation whose
    /// first unlink came after `from`.
    fn judge(
        from: i64,
        loaded: &Loaded,
        shown: Vec<(Identity, bool)>,
    ) -> HashMap<(u64, u64), Seen> {
        let mut seen: HashMap<(u64, u64), Seen> = HashMap::new();
        for (id, last_name) in shown {
            let Some(r) = loaded.recorded.get(&(id.dev, id.ino)) else {
                continue;
            };
            let unchanged = id == *r || loaded.unlinks.accepts(r, &id);
            let moved_here = (id.size, id.mtime_ns) == (r.size, r.mtime_ns) && id.ctime_ns >= from;
            let s = seen.entry((id.dev, id.ino)).or_default();
            if last_name || !(unchanged || moved_here) {
                s.other = true;
            } else if unchanged {
                s.unchanged = true;
            }
        }
        seen
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
        let loaded = match self.loading.join() {
            Ok(Ok(mut loaded)) => {
                // A recorded ctime at or after `from` (a clock stepped
                // back) could not be told from one this rotation's unlinks
                // leave.
                loaded.recorded.retain(|_, id| id.ctime_ns < self.from);
                loaded
            }
            Ok(Err(why)) => {
                return format!(
                    "not recording which files the deletions left unchanged: {why}; the next \
                     snapshot reads the files they unlinked a name of again"
                );
            }
            Err(_) => {
                return "not recording which files the deletions left unchanged: reading the \
                        manifest failed; the next snapshot reads the files they unlinked a name \
                        of again"
                    .into();
            }
        };
        let shown = std::mem::take(
            &mut *self
                .shown
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let seen = Watch::judge(self.from, &loaded, shown);
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
        let mut unlinks = loaded.unlinks;
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
