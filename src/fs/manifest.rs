//! The manifest: what a backup set holds, and checking a set against it.
//!
//! Written by `snapshot.hardlink` next to each snapshot, as
//! `<dir>/.<name>.manifest.json`, so that every file of the tree (a user's
//! own `manifest.json` too) is in the snapshot; read by `verify`, `rotate`,
//! restores and `ward verify`. Snapshots made before the manifest moved out
//! of the tree keep it as `<snapshot>/manifest.json`; that one is used only
//! when no manifest sits next to the snapshot and it is ward's (format tag
//! and a valid self-checksum). The manifest carries a checksum of its own
//! content, so a damaged manifest is reported as such instead of as a
//! damaged backup.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

use super::FsError;
use super::clock::FsClock;
use super::tree::{
    Entry, Identity, Kind, at, child_rel, join, map_chunks, nanos, open_dir, open_file_below,
    open_level_errno, poisoned, read_names, walk,
};
use super::verified::Depth;

/// The manifest's name inside snapshots made before it moved next to them.
pub const LEGACY_FILE_NAME: &str = "manifest.json";
/// `<dir>/.<name>` + this: the manifest of snapshot `<dir>/<name>`.
pub const SUFFIX: &str = ".manifest.json";
/// The format tag.
pub const FORMAT: &str = "ward-manifest/1";
/// Side files written next to dumps by `pg.dumpall`, merged into manifests.
pub const SIDECAR_SUFFIX: &str = ".ward.json";

/// A backup set's manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always `ward-manifest/1`.
    pub format: String,
    /// The snapshot's name.
    pub name: String,
    /// When the snapshot was completed (local time).
    pub created: String,
    /// Host that made it.
    pub host: String,
    /// ward's version.
    pub ward_version: String,
    /// The run that made it.
    pub run_id: String,
    /// sha256 of the playbook file.
    pub playbook_hash: String,
    /// PostgreSQL server version, from the dumps in the set.
    pub postgres_version: Option<String>,
    /// Number of regular files.
    pub files: u64,
    /// Bytes in regular files (hard-linked files counted once).
    pub bytes: u64,
    /// `sample` or `all`: which files have a recorded sha256.
    pub hash: String,
    /// The dumps in the set (their side files).
    pub dumps: Vec<serde_json::Value>,
    /// `full`, `base` (a full snapshot of a base-incremental series) or `incremental`.
    #[serde(default = "full_kind")]
    pub kind: String,
    /// For incremental snapshots: the base snapshot (a sibling folder) holding the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// The name of the playbook that made it (absent in manifests written
    /// before ward recorded it; restore guards then say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    /// What the backup holds, in the playbook's words (`snapshot.hardlink`'s
    /// `scope`, e.g. `full`, `gold-only`); absent when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The tree the snapshot was made from (absent in manifests written
    /// before ward recorded it): the next snapshot reuses this manifest's
    /// hashes only if it is made from the same tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// Every entry, sorted by path.
    pub entries: Vec<ManifestEntry>,
    /// sha256 of this manifest with `checksum` empty.
    pub checksum: String,
}

/// One entry of a manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the set (lossy if not UTF-8, see `path_hex`).
    pub path: String,
    /// The exact path bytes, hex, when the path is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    /// `file`, `dir`, `symlink` or `special`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size of regular files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Permission bits.
    pub mode: u32,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Content hash, for sampled (or all) files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The content lives in the base snapshot (incremental snapshots only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_base: bool,
    /// Owner (absent in manifests written before ward recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group (absent in manifests written before ward recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// Modification time, nanoseconds since the epoch (files and symlinks;
    /// absent in manifests written before ward recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<i64>,
    /// Identity of the file's inode when the manifest was written
    /// (`dev`, `ino`, `ctime_ns`): a later snapshot whose file still has
    /// this identity (and size and mtime) takes its hash from here
    /// instead of reading it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<u64>,
    /// See `dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ino: Option<u64>,
    /// See `dev`: the inode's change time, nanoseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i64>,
}

/// The tree a snapshot was made from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Source {
    /// Its path, resolved (for people; `dev` and `ino` decide).
    pub path: String,
    /// Device of its root folder.
    pub dev: u64,
    /// Inode of its root folder.
    pub ino: u64,
}

impl Source {
    /// The identity of the folder at `path`.
    pub fn of(path: &Path) -> Result<Source, FsError> {
        use std::os::unix::fs::MetadataExt;
        let real = std::fs::canonicalize(path)
            .map_err(|e| FsError::new(format!("cannot read {}: {e}", path.display())))?;
        let meta = std::fs::metadata(&real)
            .map_err(|e| FsError::new(format!("cannot read {}: {e}", real.display())))?;
        Ok(Source {
            path: real.display().to_string(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

fn full_kind() -> String {
    "full".to_owned()
}

impl ManifestEntry {
    /// The entry's path as bytes.
    pub fn rel_bytes(&self) -> Vec<u8> {
        match &self.path_hex {
            Some(hex) => unhex_path(hex),
            None => self.path.as_bytes().to_vec(),
        }
    }
}

/// The bytes of a path written as hex (`path_hex`).
fn unhex_path(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .filter_map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// Lower-case hex of `bytes` (every hash and non-UTF-8 path of a manifest:
/// 100,000 of them per snapshot, so without a `format!` per byte).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The 32 bytes of a sha256 written as 64 hex digits (either case); None
/// if `text` is anything else.
fn unhex32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let value = |d: u8| char::from(d).to_digit(16).map(|v| v as u8);
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (value(pair[0])? << 4) | value(pair[1])?;
    }
    Some(out)
}

/// sha256 of a file's content, as hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_of(std::fs::File::open(path)?).map(|sum| hex(&sum))
}

/// sha256 of everything `f` reads.
fn sha256_of(mut f: impl Read) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Deterministic 1-in-32 sample by path, so repeated snapshots hash the
/// same files and a verify can be compared across days.
fn sampled(rel: &[u8]) -> bool {
    Sha256::digest(rel)[0] < 8
}

/// Everything needed to write a manifest besides the entries.
pub struct ManifestInfo {
    /// Snapshot name.
    pub name: String,
    /// Host.
    pub host: String,
    /// Run id.
    pub run_id: String,
    /// Playbook hash.
    pub playbook_hash: String,
    /// Hash every file (true) or a sample (false).
    pub hash_all: bool,
    /// `full`, `base` or `incremental`.
    pub kind: &'static str,
    /// The base of an incremental snapshot: its name and folder.
    pub base: Option<(String, PathBuf)>,
    /// The playbook's name.
    pub playbook: Option<String>,
    /// `scope`, as given.
    pub scope: Option<String>,
    /// The tree the snapshot is made from.
    pub source: Option<Source>,
    /// Hashes the previous snapshot's manifest recorded (empty: none).
    pub carry: Carry,
}

/// The hashes of a previous manifest of the same tree, by path, each with
/// the identity of the file it was recorded for (see [`build`]).
///
/// Kept as one sorted list (paths in one buffer) rather than a map: a
/// snapshot's entries come sorted by path as well, so [`build_counted`]
/// finds each file's record by walking both lists forward, with no hashing
/// of 100,000 paths and no allocation per file.
#[derive(Debug, Default)]
pub struct Carry {
    /// The recorded paths, one after the other.
    paths: Vec<u8>,
    /// One per reusable hash, sorted by path, no path twice.
    files: Vec<Recorded>,
    /// The ctime moves of rotations since the manifest was written, each
    /// an unlink of a name of a file unchanged until then (see
    /// [`Unlinks::accepts`]); empty: none accepted.
    unlinks: Unlinks,
}

/// A reusable hash: the file's path (a range of [`Carry::paths`]), the
/// identity it was recorded with, and the hash.
#[derive(Clone, Copy, Debug)]
struct Recorded {
    path: (usize, usize),
    id: Identity,
    sum: [u8; 32],
}

impl Carry {
    /// The hashes of `m` that can be reused: regular files with a hash and
    /// a complete identity (manifests written before ward recorded
    /// identities have none).
    pub fn from_manifest(m: &Manifest) -> Carry {
        let mut carry = Carry::default();
        for e in m.entries.iter().filter(|e| e.kind == "file") {
            let rel = e.rel_bytes();
            carry.add(
                &rel,
                e.dev,
                e.ino,
                e.size,
                e.mtime_ns,
                e.ctime_ns,
                e.sha256.as_deref(),
            );
        }
        carry.sorted()
    }

    /// Records one file of a manifest, if it has everything a reuse needs.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        rel: &[u8],
        dev: Option<u64>,
        ino: Option<u64>,
        size: Option<u64>,
        mtime_ns: Option<i64>,
        ctime_ns: Option<i64>,
        sha256: Option<&str>,
    ) {
        let (Some(dev), Some(ino), Some(size), Some(mtime_ns), Some(ctime_ns)) =
            (dev, ino, size, mtime_ns, ctime_ns)
        else {
            return;
        };
        // Only a well-formed hash is carried: a manifest's content is
        // checksummed, not signed.
        let Some(sum) = sha256.and_then(unhex32) else {
            return;
        };
        let start = self.paths.len();
        self.paths.extend_from_slice(rel);
        self.files.push(Recorded {
            path: (start, self.paths.len()),
            id: Identity {
                dev,
                ino,
                size,
                mtime_ns,
                ctime_ns,
            },
            sum,
        });
    }

    /// Sorts the records by path (ward writes manifests sorted, so this is
    /// a check) and drops every path recorded twice: no manifest ward
    /// wrote has one, and which record would be right is not known.
    fn sorted(mut self) -> Carry {
        let paths = std::mem::take(&mut self.paths);
        let path = |r: &Recorded| &paths[r.path.0..r.path.1];
        if !self.files.windows(2).all(|w| path(&w[0]) < path(&w[1])) {
            self.files.sort_by(|a, b| path(a).cmp(path(b)));
            let files = std::mem::take(&mut self.files);
            let twice = |i: usize| {
                (i > 0 && path(&files[i - 1]) == path(&files[i]))
                    || files.get(i + 1).is_some_and(|n| path(n) == path(&files[i]))
            };
            self.files = (0..files.len())
                .filter(|&i| !twice(i))
                .map(|i| files[i])
                .collect();
        }
        self.paths = paths;
        self
    }

    /// Accepts, besides the recorded identities, the ctime moves that
    /// `unlinks` records (rotations since the manifest was written; the
    /// caller checked it is of this manifest and ward's own).
    pub fn accept_unlinks(&mut self, unlinks: Unlinks) {
        self.unlinks = unlinks;
    }

    /// The identity recorded for each file, by (device, inode), for a
    /// rotation to compare with what it unlinks. A file recorded with two
    /// different identities under two names is left out: which one holds
    /// is not known.
    pub fn identities(&self) -> HashMap<(u64, u64), Identity> {
        let mut out: HashMap<(u64, u64), Option<Identity>> = HashMap::new();
        for r in &self.files {
            out.entry((r.id.dev, r.id.ino))
                .and_modify(|known| {
                    if *known != Some(r.id) {
                        *known = None;
                    }
                })
                .or_insert(Some(r.id));
        }
        out.into_iter()
            .filter_map(|(k, id)| Some((k, id?)))
            .collect()
    }

    /// How many hashes can be reused.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// No hash can be reused.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn path(&self, r: &Recorded) -> &[u8] {
        &self.paths[r.path.0..r.path.1]
    }

    /// The record of `rel`.
    fn get(&self, rel: &[u8]) -> Option<&Recorded> {
        self.files
            .binary_search_by(|r| self.path(r).cmp(rel))
            .ok()
            .map(|i| &self.files[i])
    }

    /// The record of `rel`, for callers that ask in path order: `cursor`
    /// only moves forward, so a whole tree costs one pass over the records.
    /// Asked out of order, it searches.
    fn get_from(&self, cursor: &mut usize, rel: &[u8]) -> Option<&Recorded> {
        if *cursor > 0
            && self
                .files
                .get(*cursor - 1)
                .is_some_and(|r| self.path(r) >= rel)
        {
            return self.get(rel);
        }
        while self.files.get(*cursor).is_some_and(|r| self.path(r) < rel) {
            *cursor += 1;
        }
        let found = self.files.get(*cursor).filter(|r| self.path(r) == rel)?;
        *cursor += 1;
        Some(found)
    }

    /// The recorded hash of `e`, if the file is the one it was recorded
    /// for (see [`Carry::reusable`]).
    #[cfg(test)]
    fn hash_of(&self, e: &Entry) -> Option<[u8; 32]> {
        self.reusable(self.get(&e.rel)?, e)
    }

    /// `recorded`'s hash if `e` is the file it was recorded for: the
    /// identity seen before this snapshot linked it is exactly the
    /// recorded one (or differs only by a ctime a rotation's unlink left,
    /// [`Unlinks::accepts`]), and the link changed nothing but the change
    /// time (the same inode, size and mtime after it).
    fn reusable(&self, recorded: &Recorded, e: &Entry) -> Option<[u8; 32]> {
        let seen = e.seen?;
        let now = e.identity();
        ((recorded.id == seen || self.unlinks.accepts(&recorded.id, &seen))
            && (now.dev, now.ino, now.size, now.mtime_ns)
                == (seen.dev, seen.ino, seen.size, seen.mtime_ns))
            .then_some(recorded.sum)
    }

    /// The recorded hash of a file with several names in the tree (`names`,
    /// all linked by this snapshot), and the ctime its last link left. Each
    /// link of a name moves the ctime the later names see, so the rule of
    /// [`Carry::reusable`] becomes: every name was recorded with the same
    /// identity and hash, size and mtime never changed, and every ctime
    /// seen before a link is the recorded one or one that an earlier link
    /// of the same file left. Then nothing but this snapshot's links
    /// touched the file between the stats (a change between a name's stat
    /// and its link is the exception of [`build_counted`]).
    fn hash_of_names(&self, names: &[&Entry]) -> Option<([u8; 32], i64)> {
        let first = names.first()?;
        let recorded = self.get(&first.rel)?;
        let unchanged = |id: &Identity| {
            (id.dev, id.ino, id.size, id.mtime_ns)
                == (
                    recorded.id.dev,
                    recorded.id.ino,
                    recorded.id.size,
                    recorded.id.mtime_ns,
                )
        };
        let left: Vec<i64> = names.iter().map(|e| e.identity().ctime_ns).collect();
        for (i, e) in names.iter().enumerate() {
            let seen = e.seen?;
            let r = self.get(&e.rel)?;
            let after_earlier_link = left
                .iter()
                .enumerate()
                .any(|(j, &c)| j != i && c == seen.ctime_ns && c <= left[i]);
            if r.id != recorded.id
                || r.sum != recorded.sum
                || !unchanged(&seen)
                || !unchanged(&e.identity())
                || !(seen.ctime_ns == recorded.id.ctime_ns
                    || after_earlier_link
                    || self.unlinks.accepts(&recorded.id, &seen))
            {
                return None;
            }
        }
        Some((recorded.sum, *left.iter().max()?))
    }
}

/// How the hashes of a manifest were come by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Files read and hashed.
    pub read: u64,
    /// Files whose hash was taken from the previous manifest (not read).
    pub carried: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Files that kept changing while they were read: recorded without a
    /// hash (their paths).
    pub unstable: Vec<String>,
    /// The file system's clock could not be read (no `O_TMPFILE` and no
    /// writable folder next to the snapshot): no change time was recorded
    /// for the files read, so the next snapshot reads them again (carried
    /// hashes need no clock).
    pub no_clock: bool,
}

/// Builds the manifest of the tree at `root` from its entries, hashing the
/// sampled (or all) files with `threads` workers. `progress` gets the
/// phase "hashing", its totals, and each file hashed.
pub fn build(
    root: &Path,
    entries: &[Entry],
    info: &ManifestInfo,
    threads: usize,
    cancelled: &AtomicBool,
    progress: &crate::progress::Progress,
) -> Result<Manifest, FsError> {
    build_counted(root, entries, info, threads, cancelled, progress).map(|(m, _)| m)
}

/// What a file's hash was proven with: the hash (None: the file kept
/// changing while it was read) and the file's metadata at that moment.
struct Hashed {
    sum: Option<[u8; 32]>,
    id: Identity,
    mode: u32,
    uid: u32,
    gid: u32,
    carried: bool,
    /// The recorded change time can be compared next time (see [`build_counted`]).
    ctime_proven: bool,
}

impl Hashed {
    fn read(sum: Option<[u8; 32]>, st: &rustix::fs::Stat, ctime_proven: bool) -> Hashed {
        Hashed {
            sum,
            id: Identity::of(st),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            carried: false,
            ctime_proven,
        }
    }
}

/// Attempts at reading a file that changes while it is read.
const READ_ATTEMPTS: usize = 3;

/// [`build`], also saying how many files were read and how many hashes
/// were carried from `info.carry`.
///
/// Why a carried hash is right (docs/design.md, "Every file hashed"): a
/// hash is recorded with the file's identity (dev, ino, size, mtime,
/// ctime), and taken again later only where the file still has exactly
/// that identity. Every change to an inode (a write, a truncate, setting
/// its mtime back, a chmod, a link or unlink) sets its ctime to the file
/// system's clock, which nobody can set back (short of stepping the
/// system clock back). So the recorded ctime must be one that any change
/// after the hash was proven right moves away from:
///
/// - The stamp `S` is the file system's clock read after every file was
///   linked, waiting for it to tick once more: every link's ctime is
///   before `S`, and every change after `S` gets a ctime at or after it.
/// - A file read here is opened after `S`, and its metadata is read before
///   and after its content. The hash counts only if both are the same and
///   the ctime is before `S`: nothing changed it while it was read (a
///   change then would have a ctime at or after `S`), and any later change
///   moves its ctime. That ctime is recorded.
/// - A carried hash needs the file's identity before this snapshot linked
///   it to be exactly the recorded one (unchanged since it was proven),
///   and the link to have changed nothing but the ctime (same inode, size
///   and mtime, read by `link_tree_since` right after the link). The ctime
///   left by this snapshot's link is recorded: the next snapshot, before
///   its own link, sees exactly that ctime if nothing touched the file
///   since, and any change after the link moves it. The file is not
///   looked at again after `S`: the snapshot shares its inode with the
///   source, so a change after the link is a change to the snapshot
///   itself, like one after the snapshot is complete; `verify` reports
///   either, and the moved ctime makes the next snapshot read the file.
///
/// What is not caught (documented): a change that keeps size and mtime
/// (mtime set back) made in the instant between the pre-link `stat` and
/// the link, or within the same clock tick as the link.
///
/// A rotation between two snapshots unlinks a name of most files (the old
/// snapshot it deletes shares them), which moves their ctime. `rotate`
/// stats each file just before its unlink and lists, with the window of
/// the file system's clock its unlinks fall in, the files whose stat was
/// exactly the recorded identity ([`Unlinks`], beside the snapshot this
/// one carries from). A seen ctime later than the recorded one, inside
/// such a window, with the same inode, size and mtime, then counts as
/// unchanged ([`Unlinks::accepts`]): the pre-unlink stat proves the file
/// unchanged from its recorded proof up to its unlink, and the unlink
/// moved the ctime into the window; any change after the rotation gets a
/// later ctime. Not caught: a change keeping size and mtime made during
/// the rotation after the file's own pre-unlink stat (the same kind of
/// gap as the link's, as long as the rotation). Any other unlink or link
/// of another name makes the next snapshot read the file again, as it
/// cannot tell that from a write.
pub fn build_counted(
    root: &Path,
    entries: &[Entry],
    info: &ManifestInfo,
    threads: usize,
    cancelled: &AtomicBool,
    progress: &crate::progress::Progress,
) -> Result<(Manifest, HashStats), FsError> {
    let mut dumps = Vec::new();
    let mut known: HashMap<Vec<u8>, String> = HashMap::new();
    // Files are opened relative to the trees' folders: any depth works.
    let root_fd = open_dir(root)?;
    let base_fd = match &info.base {
        Some((_, base)) => Some(open_dir(base)?),
        None => None,
    };
    for e in entries
        .iter()
        .filter(|e| e.kind == Kind::File && e.rel.ends_with(SIDECAR_SUFFIX.as_bytes()))
    {
        let mut bytes = Vec::new();
        let read = open_file_below(root_fd.as_fd(), &e.rel)
            .map_err(std::io::Error::from)
            .and_then(|mut f| f.read_to_end(&mut bytes));
        if let Ok(v) = read
            .map_err(|_| ())
            .and_then(|_| serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|_| ()))
        {
            let dump_rel = e.rel[..e.rel.len() - SIDECAR_SUFFIX.len()].to_vec();
            if let Some(sum) = v.get("sha256").and_then(|s| s.as_str()) {
                known.insert(dump_rel, sum.to_owned());
            }
            dumps.push(v);
        }
    }
    let postgres_version = dumps.iter().find_map(|d| {
        d.get("server_version")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    });

    // Files with several names in the tree, by inode (see
    // `hash_of_names`): found by sorting (device, inode) pairs.
    let mut inodes: Vec<(u64, u64, usize)> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == Kind::File)
        .map(|(i, e)| (e.dev, e.ino, i))
        .collect();
    inodes.sort_unstable();
    let mut names: HashMap<(u64, u64), Vec<&Entry>> = HashMap::new();
    for group in inodes.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        if group.len() > 1 && !info.carry.is_empty() {
            let linked: Vec<&Entry> = group
                .iter()
                .map(|&(_, _, i)| &entries[i])
                .filter(|e| !e.in_base)
                .collect();
            names.insert((group[0].0, group[0].1), linked);
        }
    }
    // Each file that gets a hash: carried from the previous manifest
    // (decided here, nothing to read) or read by a worker below.
    let mut hashed: Vec<Option<Hashed>> = std::iter::repeat_with(|| None)
        .take(entries.len())
        .collect();
    let mut reads: Vec<usize> = Vec::new();
    let mut cursor = 0;
    for (i, e) in entries.iter().enumerate() {
        if e.kind != Kind::File || known.contains_key(&e.rel) || !(info.hash_all || sampled(&e.rel))
        {
            continue;
        }
        // Asked in path order (both lists are sorted by path).
        let recorded = info.carry.get_from(&mut cursor, &e.rel);
        let carried = match names.get(&(e.dev, e.ino)) {
            Some(names) if names.len() > 1 && !e.in_base => info.carry.hash_of_names(names),
            _ => recorded
                .and_then(|r| info.carry.reusable(r, e))
                .map(|sum| (sum, e.identity().ctime_ns)),
        };
        match carried {
            Some((sum, ctime)) => {
                hashed[i] = Some(Hashed {
                    sum: Some(sum),
                    id: Identity {
                        ctime_ns: ctime,
                        ..e.identity()
                    },
                    mode: e.mode,
                    uid: e.uid,
                    gid: e.gid,
                    carried: true,
                    ctime_proven: true,
                });
            }
            None => reads.push(i),
        }
    }
    let read_bytes: u64 = reads.iter().map(|&i| entries[i].size).sum();
    let carried = hashed.iter().filter(|h| h.is_some()).count() as u64;
    progress.restart(
        "hashing",
        Some(carried + reads.len() as u64),
        Some(read_bytes),
    );
    progress.add_files(carried);
    let clock = FsClock::open(root);
    // After every link (the entries are complete), one tick later.
    let stamp = if reads.is_empty() {
        None
    } else {
        clock.now().and_then(|linked| clock.after(linked))
    };
    let threads = threads.max(1);
    type Part = Result<Vec<(usize, Hashed)>, FsError>;
    // Each worker takes every n-th file.
    let parts: Vec<Part> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (reads, clock) = (&reads, &clock);
                let (root_fd, base_fd) = (&root_fd, &base_fd);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for &i in reads.iter().skip(t).step_by(threads) {
                        if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
                            return Err(FsError::Stopped);
                        }
                        let e = &entries[i];
                        let (from, from_fd) = match (&info.base, base_fd, e.in_base) {
                            (Some((_, base)), Some(fd), true) => (base.as_path(), fd.as_fd()),
                            _ => (root, root_fd.as_fd()),
                        };
                        let h = read_stable(from_fd, &e.rel, stamp, clock).map_err(|err| {
                            FsError::new(format!(
                                "cannot hash {}: {err}",
                                join(from, &e.rel).display()
                            ))
                        })?;
                        progress.add_bytes(h.id.size);
                        progress.add_files(1);
                        out.push((i, h));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(FsError::new("a hashing thread panicked")))
            })
            .collect()
    });
    for part in parts {
        for (i, h) in part? {
            hashed[i] = Some(h);
        }
    }
    let mut stats = HashStats {
        no_clock: stamp.is_none() && !reads.is_empty(),
        ..HashStats::default()
    };

    let mut files = 0;
    let manifest_entries = entries
        .iter()
        .zip(&hashed)
        .map(|(e, hashed)| {
            let utf8 = std::str::from_utf8(&e.rel).ok();
            let path = utf8.map_or_else(
                || String::from_utf8_lossy(&e.rel).into_owned(),
                str::to_owned,
            );
            // What the entry records of the file: the metadata read when
            // its hash was proven right, else the walk's.
            let mut out = ManifestEntry {
                path_hex: utf8.is_none().then(|| hex(&e.rel)),
                kind: String::new(),
                size: None,
                mode: e.mode,
                target: None,
                sha256: None,
                in_base: e.in_base,
                uid: Some(e.uid),
                gid: Some(e.gid),
                mtime_ns: None,
                dev: None,
                ino: None,
                ctime_ns: None,
                path,
            };
            let mtime = nanos(e.mtime, e.mtime_nsec);
            match &e.kind {
                Kind::File => {
                    let (id, mode, uid, gid, sum, ctime) = match hashed {
                        Some(h) => {
                            if h.sum.is_none() {
                                stats.unstable.push(out.path.clone());
                            } else if h.carried {
                                stats.carried += 1;
                            } else {
                                stats.read += 1;
                                stats.bytes_read += h.id.size;
                            }
                            let ctime =
                                (h.ctime_proven && h.sum.is_some()).then_some(h.id.ctime_ns);
                            let sum = h.sum.as_ref().map(|s| hex(s));
                            (h.id, h.mode, h.uid, h.gid, sum, ctime)
                        }
                        None => {
                            let id = e.identity();
                            let sum = known.get(&e.rel).cloned();
                            (id, e.mode, e.uid, e.gid, sum, Some(id.ctime_ns))
                        }
                    };
                    files += 1;
                    out.kind = "file".into();
                    out.size = Some(id.size);
                    out.mode = mode;
                    out.uid = Some(uid);
                    out.gid = Some(gid);
                    out.sha256 = sum;
                    out.mtime_ns = Some(id.mtime_ns);
                    out.dev = Some(id.dev);
                    out.ino = Some(id.ino);
                    out.ctime_ns = ctime;
                }
                Kind::Dir => out.kind = "dir".into(),
                Kind::Symlink(t) => {
                    out.kind = "symlink".into();
                    out.target = Some(String::from_utf8_lossy(t).into_owned());
                    out.mtime_ns = Some(mtime);
                }
                Kind::Special => out.kind = "special".into(),
            }
            out
        })
        .collect::<Vec<_>>();
    // Bytes in regular files, each file (inode) once.
    let mut inodes: Vec<(u64, u64, u64)> = manifest_entries
        .iter()
        .filter_map(|e| Some((e.dev?, e.ino?, e.size?)))
        .collect();
    inodes.sort_unstable();
    inodes.dedup_by_key(|&mut (dev, ino, _)| (dev, ino));
    let bytes = inodes.iter().map(|&(_, _, size)| size).sum();
    let m = Manifest {
        format: FORMAT.to_owned(),
        name: info.name.clone(),
        created: chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        host: info.host.clone(),
        ward_version: env!("CARGO_PKG_VERSION").to_owned(),
        run_id: info.run_id.clone(),
        playbook_hash: info.playbook_hash.clone(),
        postgres_version,
        files,
        bytes,
        hash: if info.hash_all { "all" } else { "sample" }.to_owned(),
        dumps,
        kind: info.kind.to_owned(),
        base: info.base.as_ref().map(|(name, _)| name.clone()),
        playbook: info.playbook.clone(),
        scope: info.scope.clone(),
        source: info.source.clone(),
        entries: manifest_entries,
        checksum: String::new(),
    };
    Ok((m, stats))
}

/// Reads and hashes `rel` below `holder`, proving that the hash is the
/// content's (see [`build_counted`]): the file's metadata is the same
/// before and after the read, and its ctime is before the stamp (read
/// again after the clock has passed it, when it is not). A file that
/// keeps changing gets no hash. Without a stamp (no clock), the hash is
/// kept when the metadata did not change, but its ctime is not trusted.
fn read_stable(
    holder: BorrowedFd<'_>,
    rel: &[u8],
    stamp: Option<i64>,
    clock: &FsClock,
) -> std::io::Result<Hashed> {
    use rustix::fs::fstat;
    let mut stamp = stamp;
    let mut last = None;
    for _ in 0..READ_ATTEMPTS {
        let file = open_file_below(holder, rel)?;
        let before = fstat(&file)?;
        let sum = sha256_of(&file)?;
        let after = fstat(&file)?;
        let same = Identity::of(&before) == Identity::of(&after)
            && (before.st_mode, before.st_uid, before.st_gid)
                == (after.st_mode, after.st_uid, after.st_gid);
        let ctime = Identity::of(&before).ctime_ns;
        match stamp {
            Some(s) if same && ctime < s => {
                return Ok(Hashed::read(Some(sum), &before, true));
            }
            None if same => {
                return Ok(Hashed::read(Some(sum), &before, false));
            }
            _ => {}
        }
        // Changed during the snapshot: read again once the clock has
        // passed its latest change.
        let latest = ctime.max(Identity::of(&after).ctime_ns);
        stamp = clock.after(latest);
        last = Some(after);
    }
    let Some(st) = last else {
        return Err(std::io::Error::other("not read"));
    };
    Ok(Hashed::read(None, &st, false))
}

/// How a manifest's JSON ends: the checksum is its last field.
const CHECKSUM_KEY: &[u8] = br#""checksum":""#;

/// The manifest as compact JSON with its checksum filled in: the sha256 of
/// the same JSON with an empty checksum (the last field). The entries
/// (nearly all of a 100,000-entry manifest) are written on up to `threads`
/// threads, each its share, and joined; the bytes are exactly
/// `serde_json::to_vec`'s.
pub fn encode(m: &mut Manifest) -> Result<Vec<u8>, FsError> {
    let failed = |e: serde_json::Error| FsError::new(format!("cannot encode manifest: {e}"));
    m.checksum.clear();
    let entries = std::mem::take(&mut m.entries);
    let head = serde_json::to_vec(m);
    m.entries = entries;
    let mut bytes = head.map_err(failed)?;
    // The entries come last before the checksum: `..."entries":[],"checksum":""}`.
    let tail = br#"],"checksum":""}"#;
    if !bytes.ends_with(br#""entries":[],"checksum":""}"#) {
        return Err(FsError::new(
            "manifest encoding changed: the entries and the checksum are not the last fields",
        ));
    }
    bytes.truncate(bytes.len() - tail.len());
    let threads = if m.entries.len() < 4096 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    };
    let share = m.entries.len().div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<u8>, serde_json::Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = m
            .entries
            .chunks(share)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut out = Vec::with_capacity(chunk.len() * 256);
                    for (i, e) in chunk.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        serde_json::to_writer(&mut out, e)?;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(serde::ser::Error::custom("an encoding thread panicked"))
                })
            })
            .collect()
    });
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            bytes.push(b',');
        }
        bytes.extend_from_slice(&part.map_err(failed)?);
    }
    bytes.extend_from_slice(tail);
    let sum = hex(&Sha256::digest(&bytes));
    bytes.truncate(bytes.len() - br#""}"#.len());
    bytes.extend_from_slice(sum.as_bytes());
    bytes.extend_from_slice(br#""}"#);
    m.checksum = sum;
    Ok(bytes)
}

/// The checksum at the end of `bytes` if the bytes are what [`encode`]
/// wrote with it: their sha256, with the checksum's value left empty, is
/// that checksum. This checks a manifest without encoding it again; a
/// manifest written another way (another JSON layout) is checked by
/// [`read`] the long way.
fn encoded_checksum(bytes: &[u8]) -> Option<&str> {
    let (body, end) = bytes.split_at_checked(bytes.len().checked_sub(66)?)?;
    let recorded = end.strip_suffix(br#""}"#)?;
    if !body.ends_with(CHECKSUM_KEY) {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(br#""}"#);
    let recorded = std::str::from_utf8(recorded).ok()?;
    (hex(&hasher.finalize()) == recorded).then_some(recorded)
}

/// Reads a manifest and checks its own checksum.
pub fn read(path: &Path) -> Result<Manifest, FsError> {
    let bytes = std::fs::read(path)
        .map_err(|e| FsError::new(format!("cannot read manifest {}: {e}", path.display())))?;
    let mut m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| FsError::new(format!("manifest {} is corrupt: {e}", path.display())))?;
    if m.format != FORMAT {
        return Err(FsError::new(format!(
            "manifest {} has unknown format `{}`",
            path.display(),
            m.format
        )));
    }
    if encoded_checksum(&bytes) == Some(m.checksum.as_str()) {
        return Ok(m);
    }
    let recorded = std::mem::take(&mut m.checksum);
    let actual =
        hex(&Sha256::digest(serde_json::to_vec(&m).map_err(|e| {
            FsError::new(format!("cannot encode manifest: {e}"))
        })?));
    if actual != recorded {
        return Err(FsError::new(format!(
            "manifest {} is corrupt: its checksum does not match its content",
            path.display()
        )));
    }
    m.checksum = recorded;
    Ok(m)
}

/// What the next snapshot takes from the previous one's manifest.
#[derive(Debug)]
pub struct Previous {
    /// The manifest file.
    pub path: PathBuf,
    /// The tree it was made from, if recorded.
    pub source: Option<Source>,
    /// Its reusable hashes.
    pub carry: Carry,
    /// Its checksum (checked): what a `.NAME.unlinks.json` names it by.
    pub checksum: String,
}

/// The parts of a manifest [`previous`] reads: strings borrowed from the
/// file's bytes where they need no unescaping, every other field skipped.
#[derive(Deserialize)]
struct Sketch<'a> {
    #[serde(borrow)]
    format: Cow<'a, str>,
    #[serde(default)]
    source: Option<Source>,
    #[serde(borrow)]
    entries: Vec<EntrySketch<'a>>,
}

/// See [`Sketch`].
#[derive(Deserialize)]
struct EntrySketch<'a> {
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(default, borrow)]
    path_hex: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default, borrow)]
    sha256: Option<Cow<'a, str>>,
    #[serde(default)]
    dev: Option<u64>,
    #[serde(default)]
    ino: Option<u64>,
    #[serde(default)]
    mtime_ns: Option<i64>,
    #[serde(default)]
    ctime_ns: Option<i64>,
}

/// The manifest of `set` as far as the next snapshot of the same tree
/// needs it (where it is, the tree, the reusable hashes), found and checked
/// as [`find`] does: None if the set has no manifest, an error if it is
/// damaged. A manifest [`encode`] wrote is checked and read in one pass
/// over its bytes, without building every entry (a fifth of the time of a
/// full [`read`] on 100,000 entries).
pub fn previous(set: &Path) -> Result<Option<Previous>, FsError> {
    let Some(path) = located(set) else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path);
    let quick = bytes.as_ref().ok().and_then(|bytes| {
        let checksum = encoded_checksum(bytes)?;
        let sketch: Sketch<'_> = serde_json::from_slice(bytes).ok()?;
        (sketch.format == FORMAT).then_some((sketch, checksum.to_owned()))
    });
    let Some((sketch, checksum)) = quick else {
        // Damaged, unreadable, or written another way: the full read says which.
        return Ok(find(set)?.map(|found| Previous {
            carry: Carry::from_manifest(&found.manifest),
            source: found.manifest.source,
            path: found.path,
            checksum: found.manifest.checksum,
        }));
    };
    let mut carry = Carry::default();
    for e in sketch.entries.iter().filter(|e| e.kind == "file") {
        let hexed;
        let rel = match &e.path_hex {
            Some(h) => {
                hexed = unhex_path(h);
                hexed.as_slice()
            }
            None => e.path.as_bytes(),
        };
        carry.add(
            rel,
            e.dev,
            e.ino,
            e.size,
            e.mtime_ns,
            e.ctime_ns,
            e.sha256.as_deref(),
        );
    }
    Ok(Some(Previous {
        path,
        source: sketch.source,
        carry: carry.sorted(),
        checksum,
    }))
}

/// The ending of `<dir>/.<name>.unlinks.json`, beside a snapshot.
pub const UNLINKS_SUFFIX: &str = ".unlinks.json";

/// The format tag of a `.NAME.unlinks.json`.
pub const UNLINKS_FORMAT: &str = "ward-unlinks/1";

/// What rotations did to the files of a snapshot since its manifest was
/// written: `rotate` writes it beside the snapshot the next one takes its
/// hashes from (`<dir>/.<name>.unlinks.json`), and that next snapshot
/// accepts the ctime moves it records ([`Unlinks::accepts`]).
///
/// Deleting an old snapshot unlinks a name of every file it shares with
/// the latest one and with `current`, and each unlink moves the file's
/// ctime: without this, the next snapshot could not tell those moves from
/// writes and would read the whole tree again after every rotation.
/// Each window is one rotation: the file system's clock before its first
/// unlink (`from`) and once every unlink was done (`to`), and the files
/// (device, inode) whose stat just before an unlink was the identity the
/// manifest recorded (or one an earlier window accepts): unchanged from
/// the manifest's proof up to that unlink.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Unlinks {
    /// [`UNLINKS_FORMAT`].
    pub format: String,
    /// The checksum of the manifest whose identities the windows were
    /// compared with: another manifest (a snapshot made again under the
    /// same name) makes the file count for nothing.
    pub manifest_checksum: String,
    /// One per rotation since the manifest was written, oldest first.
    pub windows: Vec<UnlinkWindow>,
}

/// One rotation's unlinks (see [`Unlinks`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnlinkWindow {
    /// The file system's clock before the rotation's first unlink (ns).
    pub from: i64,
    /// The clock after its last unlink (ns); every later change of a file
    /// gets a later ctime.
    pub to: i64,
    /// (device, inode) of the files it unlinked a name of unchanged,
    /// sorted.
    pub inodes: Vec<(u64, u64)>,
}

impl Unlinks {
    /// No window yet, for the manifest with this checksum.
    pub fn new(manifest_checksum: &str) -> Unlinks {
        Unlinks {
            format: UNLINKS_FORMAT.to_owned(),
            manifest_checksum: manifest_checksum.to_owned(),
            windows: Vec::new(),
        }
    }

    /// Whether `seen` is the file recorded as `recorded` with nothing
    /// changed but the ctime a rotation's unlink left: the same inode,
    /// size and mtime, a ctime later than the recorded one and within a
    /// window that lists the inode. Proof and gap: docs/design.md, "What
    /// a rotation's unlinks leave".
    pub fn accepts(&self, recorded: &Identity, seen: &Identity) -> bool {
        (seen.dev, seen.ino, seen.size, seen.mtime_ns)
            == (recorded.dev, recorded.ino, recorded.size, recorded.mtime_ns)
            && seen.ctime_ns > recorded.ctime_ns
            && self.windows.iter().any(|w| {
                (w.from..=w.to).contains(&seen.ctime_ns)
                    && w.inodes.binary_search(&(seen.dev, seen.ino)).is_ok()
            })
    }
}

/// `<dir>/.<name>.unlinks.json`, beside the set `<dir>/<name>`.
pub fn unlinks_path(set: &Path) -> Option<PathBuf> {
    let name = set.file_name()?;
    let mut file = std::ffi::OsString::from(".");
    file.push(name);
    file.push(UNLINKS_SUFFIX);
    Some(set.parent()?.join(file))
}

/// The unlinks file of `set` if it counts: None if there is none; an error
/// saying why it does not count if it is not ward's own (see
/// [`super::snapshots::wards_own`]), cannot be read or parsed, or is of
/// another manifest than the one with `checksum`.
pub fn read_unlinks(set: &Path, checksum: &str) -> Result<Option<Unlinks>, String> {
    let Some(path) = unlinks_path(set) else {
        return Ok(None);
    };
    let shown = path.display();
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
        Ok(meta) if !meta.is_file() || !super::snapshots::wards_own(&meta) => {
            return Err(format!(
                "{shown} is not ward's own (not a plain file, another owner, or others may write it)"
            ));
        }
        Ok(_) => {}
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mut unlinks: Unlinks =
        serde_json::from_slice(&bytes).map_err(|e| format!("{shown} is damaged: {e}"))?;
    if unlinks.format != UNLINKS_FORMAT {
        return Err(format!("{shown} has unknown format `{}`", unlinks.format));
    }
    if unlinks.manifest_checksum != checksum {
        return Err(format!(
            "{shown} is of another manifest than the one beside {} (its checksum differs)",
            set.display()
        ));
    }
    // Searched by halves: sorted here, whatever the file holds.
    for w in &mut unlinks.windows {
        w.inodes.sort_unstable();
        w.inodes.dedup();
    }
    Ok(Some(unlinks))
}

/// Writes the unlinks file of `set` (temp file, fsync, rename; mode 0644).
pub fn write_unlinks(set: &Path, unlinks: &Unlinks) -> Result<(), FsError> {
    let path = unlinks_path(set)
        .ok_or_else(|| FsError::new(format!("{} is not a folder with a name", set.display())))?;
    let bytes = serde_json::to_vec(unlinks)
        .map_err(|e| FsError::new(format!("cannot encode {}: {e}", path.display())))?;
    write_file(&path, &bytes, 0o644)
}

/// `<dir>/.<name>.manifest.json`, where the manifest of the set `<dir>/<name>` lives.
pub fn outside_path(set: &Path) -> Option<PathBuf> {
    let name = set.file_name()?;
    let mut file = std::ffi::OsString::from(".");
    file.push(name);
    file.push(SUFFIX);
    Some(set.parent()?.join(file))
}

/// A set's manifest and where it was found.
#[derive(Debug)]
pub struct Found {
    /// The manifest, its checksum checked.
    pub manifest: Manifest,
    /// The file it was read from.
    pub path: PathBuf,
    /// It is the legacy `manifest.json` inside the set (not a set file).
    pub in_tree: bool,
}

/// Finds the manifest of `set`: next to it, else a legacy one inside it.
/// `Ok(Err(why))`: the set has no ward manifest; `Err`: the manifest next
/// to it exists but cannot be read or is damaged.
fn lookup(set: &Path) -> Result<Result<Found, Absent>, FsError> {
    let Some(outside) = outside_path(set) else {
        return Ok(Err(Absent::NoName(set.to_path_buf())));
    };
    match std::fs::symlink_metadata(&outside) {
        Ok(_) => {
            return Ok(Ok(Found {
                manifest: read(&outside)?,
                path: outside,
                in_tree: false,
            }));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(FsError::new(format!(
                "cannot read manifest {}: {e}",
                outside.display()
            )));
        }
    }
    let legacy = set.join(LEGACY_FILE_NAME);
    if !legacy.is_file() {
        return Ok(Err(Absent::Missing(outside)));
    }
    // A file of the user's tree may carry the legacy name: it counts only
    // if it is ward's own format with a valid checksum.
    Ok(match read(&legacy) {
        Ok(manifest) => Ok(Found {
            manifest,
            path: legacy,
            in_tree: true,
        }),
        Err(error) => Err(Absent::NotWard {
            outside,
            legacy,
            error,
        }),
    })
}

/// Why a set has no ward manifest (where ward looked).
#[derive(Debug, thiserror::Error)]
enum Absent {
    /// The set's path has no last component to name a manifest after.
    #[error("{} is not a folder with a name", .0.display())]
    NoName(PathBuf),
    /// No manifest next to the set, nor one inside it.
    #[error("{} does not exist", .0.display())]
    Missing(PathBuf),
    /// No manifest next to the set, and the file inside it with the
    /// legacy name is not ward's.
    #[error("{} does not exist and {} is not a ward manifest ({error})", outside.display(), legacy.display())]
    NotWard {
        /// Where the manifest would be next to the set.
        outside: PathBuf,
        /// The file inside the set.
        legacy: PathBuf,
        /// Why it is not a ward manifest.
        error: FsError,
    },
}

/// The manifest of `set`, or an error that says where ward looked.
pub fn load(set: &Path) -> Result<Found, FsError> {
    lookup(set)?.map_err(|why| {
        FsError::new(format!(
            "{} has no manifest: {why}; it is not a complete ward snapshot",
            set.display()
        ))
    })
}

/// The manifest of `set`, None if the set has none at all (for callers
/// that look for snapshots among ordinary folders).
pub fn find(set: &Path) -> Result<Option<Found>, FsError> {
    Ok(lookup(set)?.ok())
}

/// The manifest of `set` read from `path` (given by the user): it counts
/// as the legacy in-tree manifest when it is `set/manifest.json`.
pub fn load_from(set: &Path, path: &Path) -> Result<Found, FsError> {
    let in_tree = std::fs::canonicalize(path).is_ok_and(|real| real == set.join(LEGACY_FILE_NAME));
    Ok(Found {
        manifest: read(path)?,
        path: path.to_path_buf(),
        in_tree,
    })
}

/// True if `set` has a manifest (the snapshot was completed): one next
/// to it, or a valid legacy one inside it.
pub fn present(set: &Path) -> bool {
    outside_path(set).is_some_and(|p| std::fs::symlink_metadata(p).is_ok())
        || matches!(lookup(set), Ok(Ok(_)))
}

/// The checksum a manifest file records, read from its last bytes (the
/// checksum is its last field) without reading or checking the rest: cheap
/// enough to tell, for every snapshot of a folder, whether its verified
/// marker is of the manifest beside it. None if the tail is not a checksum.
pub fn recorded_checksum(path: &Path) -> Option<String> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let tail = 96.min(len);
    f.seek(SeekFrom::Start(len - tail)).ok()?;
    let mut bytes = Vec::new();
    f.take(tail).read_to_end(&mut bytes).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?.trim_end();
    let (_, sum) = text.strip_suffix("\"}")?.rsplit_once(r#""checksum":""#)?;
    (sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sum.to_owned())
}

/// Where the manifest of `set` is (next to it, else a legacy one inside),
/// without reading it.
pub fn located(set: &Path) -> Option<PathBuf> {
    let outside = outside_path(set)?;
    if std::fs::symlink_metadata(&outside).is_ok() {
        return Some(outside);
    }
    let legacy = set.join(LEGACY_FILE_NAME);
    legacy.is_file().then_some(legacy)
}

/// Writes `bytes` to `dest` under a temp name, fsync, rename, folder
/// fsync; every error names the file and what failed.
pub fn write_file(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    use std::io::Write;
    let mut f = super::AtomicFile::create(dest, mode)?;
    f.file()
        .write_all(bytes)
        .map_err(|e| FsError::new(format!("cannot write {}: {e}", dest.display())))?;
    f.commit()
}

/// What kind of difference a [`Mismatch`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MismatchKind {
    /// In the manifest, not on disk.
    Missing,
    /// On disk with another type, size, target, mode or content.
    Changed,
    /// A file shorter than recorded.
    Truncated,
    /// On disk, not in the manifest.
    Extra,
}

impl MismatchKind {
    /// The word shown to the operator and written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::Missing => "missing",
            MismatchKind::Changed => "changed",
            MismatchKind::Truncated => "truncated",
            MismatchKind::Extra => "extra",
        }
    }
}

impl std::fmt::Display for MismatchKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that `{:<9}` lines up the verify report's columns.
        f.pad(self.as_str())
    }
}

/// One difference between a backup set and its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// What differs.
    pub kind: MismatchKind,
    /// The path, relative to the set.
    pub path: String,
    /// Details.
    pub detail: String,
    /// The content changed and the file has other names (hard links): the
    /// one physical copy is shared, so every snapshot (and `current`)
    /// holding the file has the same damage.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

impl Mismatch {
    fn new(kind: MismatchKind, path: &str, detail: impl Into<String>) -> Mismatch {
        Mismatch {
            kind,
            path: path.to_owned(),
            detail: detail.into(),
            shared: false,
        }
    }

    /// The entry `e` is not where the manifest says.
    fn missing(e: &ManifestEntry) -> Mismatch {
        Mismatch::new(
            MismatchKind::Missing,
            &e.path,
            format!("{} not found", e.kind),
        )
    }
}

/// Compares the set at `root` with `m`: every entry must exist with the
/// same type, size, mode (owner, group and mtime where the manifest
/// records them) and, where a sha256 is recorded and `depth` reads the
/// file, content; nothing else
/// may exist but, when `in_tree` (a legacy snapshot), the manifest itself.
///
/// One walk over the set with `threads` workers: each name a folder lists
/// is looked up in the manifest, checked from its folder's descriptor
/// (one name, no path to resolve) and entered if it is an expected folder,
/// or reported extra. Entries the walk never met are missing. Entries of
/// an incremental set that live in its base are checked there by path.
/// Mismatches come in manifest order, extras last (sorted).
///
/// `progress` counts the entries checked and the bytes hashed, of totals
/// that the manifest gives.
pub fn compare(
    root: &Path,
    m: &Manifest,
    in_tree: bool,
    depth: &Depth,
    threads: usize,
    progress: &crate::progress::Progress,
) -> Result<Vec<Mismatch>, FsError> {
    let base_root = m
        .base
        .as_ref()
        .and_then(|b| root.parent().map(|p| p.join(b)));
    if let (Some(name), Some(b)) = (&m.base, &base_root)
        && !present(b)
    {
        return Ok(vec![Mismatch::new(
            MismatchKind::Missing,
            &format!("../{name}"),
            "the base snapshot this incremental snapshot builds on is gone",
        )]);
    }
    let in_base = |e: &ManifestEntry| base_root.is_some() && e.in_base;
    let hashed = |e: &ManifestEntry| match &e.sha256 {
        Some(_) if depth.reads(&e.rel_bytes()) => e.size.unwrap_or(0),
        _ => 0,
    };
    progress.restart(
        "checking",
        Some(m.entries.len() as u64),
        (*depth != Depth::Structure).then(|| m.entries.iter().map(hashed).sum()),
    );
    // Entries stored in this set (not in its base), by path: anything else
    // found in the set is extra.
    let stored: HashMap<Vec<u8>, usize> = m
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| !in_base(e))
        .map(|(i, e)| (e.rel_bytes(), i))
        .collect();
    if let Err(e) = open_dir(root) {
        return Ok(vec![Mismatch::new(
            MismatchKind::Missing,
            ".",
            e.to_string(),
        )]);
    }
    // A base that cannot be opened: its entries are reported missing.
    let base_fd = base_root.as_deref().and_then(|b| open_dir(b).ok());
    let from_base: Vec<(usize, &ManifestEntry)> = m
        .entries
        .iter()
        .enumerate()
        .filter(|(_, e)| in_base(e))
        .collect();
    let (walked, based) = std::thread::scope(|scope| {
        let walked = scope.spawn(|| walk_set(root, m, &stored, in_tree, depth, threads, progress));
        let based = map_chunks(&from_base, threads, |part| {
            let mut out = Vec::new();
            for (i, e) in part {
                let mut found = Vec::new();
                match &base_fd {
                    Some(b) => check_entry(b.as_fd(), e, depth, &mut found),
                    None => found.push(Mismatch::missing(e)),
                }
                progress.add_files(1);
                progress.add_bytes(hashed(e));
                out.extend(found.into_iter().map(|mm| (*i, mm)));
            }
            out
        });
        (walked.join(), based)
    });
    let Walked {
        mut found,
        seen,
        mut extra,
    } = walked_or_error(root, walked)?;
    found.extend(based.into_iter().flatten());
    for (i, e) in m.entries.iter().enumerate() {
        if !in_base(e) && !seen[i] {
            found.push((i, Mismatch::missing(e)));
        }
    }
    found.sort_by_key(|(i, _)| *i);
    extra.sort();
    let mut out: Vec<Mismatch> = found.into_iter().map(|(_, mm)| mm).collect();
    out.extend(extra.into_iter().map(|rel| {
        Mismatch::new(
            MismatchKind::Extra,
            &String::from_utf8_lossy(&rel),
            "not in the manifest",
        )
    }));
    Ok(out)
}

/// What one walk over a set found.
struct Walked {
    /// Mismatches of manifest entries, with the entry's index.
    found: Vec<(usize, Mismatch)>,
    /// Which entries the walk met.
    seen: Vec<bool>,
    /// Paths not in the manifest.
    extra: Vec<Vec<u8>>,
}

/// Walks the set once (see [`compare`]).
fn walk_set(
    root: &Path,
    m: &Manifest,
    stored: &HashMap<Vec<u8>, usize>,
    in_tree: bool,
    depth: &Depth,
    threads: usize,
    progress: &crate::progress::Progress,
) -> Result<Walked, FsError> {
    use rustix::fs::{AtFlags, FileType, statat};
    use rustix::io::Errno;
    use std::sync::Mutex;
    let walked = Mutex::new(Walked {
        found: Vec::new(),
        seen: vec![false; m.entries.len()],
        extra: Vec::new(),
    });
    let unscanned = |e: &dyn std::fmt::Display| {
        FsError::new(format!(
            "{e}; files not in the manifest cannot be ruled out there, so the set is not verified"
        ))
    };
    walk(
        threads,
        &AtomicBool::new(false),
        |rel, parent: Option<&std::sync::Arc<Option<OwnedFd>>>| {
            let parent_fd = match parent.map(|p| p.as_ref().as_ref()) {
                Some(None) => return Ok((None, Vec::new())),
                Some(Some(fd)) => Some(fd.as_fd()),
                None => None,
            };
            let fd = match open_level_errno(root, rel, parent_fd) {
                Ok(fd) => fd,
                // Gone or replaced since its folder was read: its entries
                // were not met, so they are reported missing.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) if !rel.is_empty() => {
                    return Ok((None, Vec::new()));
                }
                Err(e) => {
                    return Err(unscanned(&format_args!(
                        "cannot open folder {}: {e}",
                        join(root, rel).display()
                    )));
                }
            };
            let names = read_names(&fd, &join(root, rel)).map_err(|e| unscanned(&e))?;
            let mut subdirs = Vec::new();
            let mut found = Vec::new();
            let mut met = Vec::new();
            let mut extra = Vec::new();
            for (name, _) in names {
                let bytes = name.to_bytes();
                if in_tree && rel.is_empty() && bytes == LEGACY_FILE_NAME.as_bytes() {
                    continue;
                }
                let child = child_rel(rel, bytes);
                let Some(&i) = stored.get(child.as_slice()) else {
                    extra.push(child);
                    continue;
                };
                met.push(i);
                let e = &m.entries[i];
                let st = match statat(&fd, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(err) => {
                        found.push((
                            i,
                            Mismatch::new(
                                MismatchKind::Missing,
                                &e.path,
                                format!("{} not found: {err}", e.kind),
                            ),
                        ));
                        continue;
                    }
                };
                let mut out = Vec::new();
                let read = e.sha256.is_some() && depth.reads(&child);
                compare_found(e, &st, fd.as_fd(), &name, read, &mut out);
                if let (true, Some(size)) = (read, e.size) {
                    progress.add_bytes(size);
                }
                found.extend(out.into_iter().map(|mm| (i, mm)));
                // A folder is entered even where it differs (its mode, or a
                // folder where a file was): what is in it is checked too.
                if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory {
                    subdirs.push(child);
                }
            }
            let mut all = walked
                .lock()
                .map_err(|_| poisoned("the result of the check"))?;
            progress.add_files(met.len() as u64);
            all.found.extend(found);
            all.extra.extend(extra);
            for i in met {
                all.seen[i] = true;
            }
            drop(all);
            Ok((Some(fd), subdirs))
        },
    )?;
    walked
        .into_inner()
        .map_err(|_| poisoned("the result of the check"))
}

/// Checks one manifest entry, found by path below `holder` (the base of
/// an incremental set), adding what differs to `out`.
fn check_entry(holder: BorrowedFd<'_>, e: &ManifestEntry, depth: &Depth, out: &mut Vec<Mismatch>) {
    use rustix::fs::{AtFlags, statat};
    let rel = e.rel_bytes();
    let hashes = depth.reads(&rel);
    let found = at(holder, &rel).and_then(|place| {
        statat(place.dir(), place.name(), AtFlags::SYMLINK_NOFOLLOW).map(|st| (place, st))
    });
    match found {
        Ok((place, st)) => compare_found(e, &st, place.dir(), place.name(), hashes, out),
        Err(_) => out.push(Mismatch::missing(e)),
    }
}

/// Compares what was found at `name` in the folder `dir` (its metadata
/// `st`) with the manifest entry `e`, its content too if `hashes` (and a
/// sha256 is recorded); the first difference goes to `out`. Owner, group
/// and mtime are compared only where the manifest recorded them (older
/// manifests did not).
fn compare_found(
    e: &ManifestEntry,
    st: &rustix::fs::Stat,
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    hashes: bool,
    out: &mut Vec<Mismatch>,
) {
    use rustix::fs::{FileType, readlinkat};
    let changed = |detail: String| Mismatch::new(MismatchKind::Changed, &e.path, detail);
    let actual = match FileType::from_raw_mode(st.st_mode as _) {
        FileType::Directory => "dir",
        FileType::RegularFile => "file",
        FileType::Symlink => "symlink",
        _ => "special",
    };
    if actual != e.kind {
        out.push(changed(format!("is a {actual}, was a {}", e.kind)));
        return;
    }
    let len = st.st_size as u64;
    if let Some(size) = e.size {
        if len < size {
            out.push(Mismatch::new(
                MismatchKind::Truncated,
                &e.path,
                format!("{len} bytes, was {size}"),
            ));
            return;
        }
        if len > size {
            out.push(changed(format!("{len} bytes, was {size}")));
            return;
        }
    }
    if let Some(target) = &e.target {
        let now = readlinkat(dir, name, Vec::new())
            .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
            .unwrap_or_default();
        if &now != target {
            out.push(changed(format!("points to {now}, was {target}")));
            return;
        }
    }
    let mode = st.st_mode & 0o7777;
    if mode != e.mode && actual != "symlink" {
        out.push(changed(format!("mode {mode:o}, was {:o}", e.mode)));
        return;
    }
    if let Some(uid) = e.uid
        && st.st_uid != uid
    {
        out.push(changed(format!("owner {}, was {uid}", st.st_uid)));
        return;
    }
    if let Some(gid) = e.gid
        && st.st_gid != gid
    {
        out.push(changed(format!("group {}, was {gid}", st.st_gid)));
        return;
    }
    let mut mtime_moved = None;
    if let Some(mtime) = e.mtime_ns {
        // `time_t` is narrower than i64 on some targets: the cast is for them.
        #[allow(clippy::unnecessary_cast)]
        let now = (st.st_mtime as i64)
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec as i64);
        if now != mtime {
            // Not the end of the check: damage that also moved the mtime
            // (a write) must still be reported as content, with whether
            // every snapshot shares it.
            mtime_moved = Some(format!("mtime {now} ns, was {mtime} ns"));
        }
    }
    let before = out.len();
    if let (true, Some(sum)) = (hashes, &e.sha256) {
        let now = rustix::fs::openat(
            dir,
            name,
            // Non-blocking: a file swapped for a fifo must not hang the
            // check (a regular file reads the same either way).
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::CLOEXEC
                | rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::NONBLOCK,
            rustix::fs::Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .and_then(|fd| sha256_of(std::fs::File::from(fd)))
        .map(|now| hex(&now));
        match now {
            Ok(now) if &now == sum => {}
            // A hard-linked snapshot shares its unchanged files with the
            // snapshots before and after it and with `current`: one
            // physical copy, so the damage is in all of them at once.
            Ok(_) if st.st_nlink > 1 => out.push(Mismatch {
                shared: true,
                ..changed(format!(
                    "content differs (sha256); the file has {} names (hard links): the damage \
                     is shared by every snapshot (and `current`) holding this file",
                    st.st_nlink
                ))
            }),
            Ok(_) => out.push(changed("content differs (sha256)".into())),
            Err(err) => out.push(changed(format!("unreadable: {err}"))),
        }
    }
    if out.len() == before
        && let Some(moved) = mtime_moved
    {
        out.push(changed(moved));
    }
}

/// The result of the walk, from its joined thread. A walk that failed or
/// panicked proves nothing: the set is not verified (it never reads as
/// "no differences").
fn walked_or_error<T>(
    root: &Path,
    joined: std::thread::Result<Result<T, FsError>>,
) -> Result<T, FsError> {
    joined.unwrap_or_else(|_| {
        Err(FsError::new(format!(
            "the check of {} panicked (a bug in ward); the set is not verified",
            root.display()
        )))
    })
}

/// Builds, under `view`, the complete tree of `prefix` (a folder of the
/// set, "" for all of it) of an incremental set: folders created, every
/// other entry hard-linked from the set or from its base. Used to restore
/// from an incremental snapshot with the ordinary rsync action.
pub fn materialize(m: &Manifest, set: &Path, prefix: &str, view: &Path) -> Result<(), FsError> {
    use rustix::fs::{AtFlags, Mode, chmodat, linkat, mkdirat};
    let base = m
        .base
        .as_ref()
        .and_then(|b| set.parent().map(|p| p.join(b)))
        .ok_or_else(|| FsError::new(format!("{} is not an incremental snapshot", set.display())))?;
    let prefix = prefix.trim_matches('/');
    std::fs::create_dir_all(view)
        .map_err(|e| FsError::new(format!("cannot create {}: {e}", view.display())))?;
    // Relative to open folders, so a tree of any depth can be restored.
    let (view_fd, set_fd, base_fd) = (open_dir(view)?, open_dir(set)?, open_dir(&base)?);
    for e in &m.entries {
        let rel = e.rel_bytes();
        let rel_str = String::from_utf8_lossy(&rel);
        let inner: &[u8] = if prefix.is_empty() {
            &rel
        } else if rel_str.starts_with(prefix) && rel.get(prefix.len()) == Some(&b'/') {
            &rel[prefix.len() + 1..]
        } else {
            continue;
        };
        let to = || join(view, inner);
        let place = at(view_fd.as_fd(), inner)
            .map_err(|err| FsError::new(format!("cannot open {}: {err}", to().display())))?;
        if e.kind == "dir" {
            let mode = Mode::from_raw_mode(e.mode as _);
            mkdirat(place.dir(), place.name(), mode)
                .and_then(|()| chmodat(place.dir(), place.name(), mode, AtFlags::empty()))
                .map_err(|err| FsError::new(format!("cannot create {}: {err}", to().display())))?;
            continue;
        }
        let (holder, holder_fd) = if e.in_base {
            (base.as_path(), base_fd.as_fd())
        } else {
            (set, set_fd.as_fd())
        };
        let from = || join(holder, &rel);
        let source = at(holder_fd, &rel)
            .map_err(|err| FsError::new(format!("cannot open {}: {err}", from().display())))?;
        linkat(
            source.dir(),
            source.name(),
            place.dir(),
            place.name(),
            AtFlags::empty(),
        )
        .map_err(|err| {
            FsError::new(format!(
                "cannot link {} to {}: {err}",
                from().display(),
                to().display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linking_hashing_and_checking_count_up_to_their_totals() {
        use crate::progress::Progress;
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        for (i, sub) in ["a", "a/b", "c"].iter().enumerate() {
            std::fs::create_dir_all(src.join(sub)).expect("mkdir");
            std::fs::write(src.join(sub).join("f"), vec![b'x'; 1000 * (i + 1)]).expect("write");
        }
        let set = dir.path().join("set");
        let progress = Progress::default();
        let stop = AtomicBool::new(false);
        let entries =
            crate::fs::tree::link_tree_since(&src, None, &set, 2, &stop, &progress).expect("link");
        // 3 folders and 3 files, counted folder by folder.
        assert_eq!(progress.sample().files, 6);
        let info = ManifestInfo {
            name: "set".into(),
            host: "h".into(),
            run_id: "r".into(),
            playbook_hash: "p".into(),
            hash_all: true,
            kind: "full",
            base: None,
            playbook: None,
            scope: None,
            source: None,
            carry: Carry::default(),
        };
        let m = build(&set, &entries, &info, 2, &stop, &progress).expect("build");
        let s = progress.sample();
        assert_eq!(s.phase, Some("hashing"));
        assert_eq!((s.files, s.files_total), (3, Some(3)));
        assert_eq!((s.bytes, s.bytes_total), (6000, Some(6000)));
        let found = compare(&set, &m, false, &Depth::Full, 2, &progress).expect("compare");
        assert!(found.is_empty(), "{found:?}");
        let s = progress.sample();
        assert_eq!(s.phase, Some("checking"));
        assert_eq!((s.files, s.files_total), (6, Some(6)));
        assert_eq!((s.bytes, s.bytes_total), (6000, Some(6000)));
        // Without hashes the bytes have no total (nothing is read).
        compare(&set, &m, false, &Depth::Structure, 2, &progress).expect("compare");
        assert_eq!(progress.sample().bytes_total, None);
    }

    #[test]
    fn owner_group_and_mtime_are_checked_where_recorded_and_skipped_where_not() {
        use crate::progress::Progress;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        for name in ["a", "b", "c", "d"] {
            std::fs::write(src.join(name), name).expect("write");
        }
        let set = dir.path().join("set");
        let progress = Progress::default();
        let stop = AtomicBool::new(false);
        let entries =
            crate::fs::tree::link_tree_since(&src, None, &set, 1, &stop, &progress).expect("link");
        let info = ManifestInfo {
            name: "set".into(),
            host: "h".into(),
            run_id: "r".into(),
            playbook_hash: "p".into(),
            hash_all: true,
            kind: "full",
            base: None,
            playbook: None,
            scope: None,
            source: None,
            carry: Carry::default(),
        };
        let mut m = build(&set, &entries, &info, 1, &stop, &progress).expect("build");
        let meta = |name: &str| std::fs::symlink_metadata(set.join(name)).expect("stat");
        let mtime = |name: &str| meta(name).mtime() * 1_000_000_000 + meta(name).mtime_nsec();
        for e in &mut m.entries {
            match e.path.as_str() {
                // Recorded and right.
                "a" => {
                    e.uid = Some(meta("a").uid());
                    e.gid = Some(meta("a").gid());
                    e.mtime_ns = Some(mtime("a"));
                }
                "b" => e.uid = Some(meta("b").uid() + 1),
                "c" => e.mtime_ns = Some(mtime("c") - 1),
                "d" => e.gid = Some(meta("d").gid() + 1),
                _ => {}
            }
        }
        let found = compare(&set, &m, false, &Depth::Structure, 1, &progress).expect("compare");
        let shown: Vec<String> = found
            .iter()
            .map(|mm| format!("{} {}", mm.path, mm.detail.split(' ').next().unwrap_or("")))
            .collect();
        assert_eq!(shown, ["b owner", "c mtime", "d group"], "{found:?}");
    }

    #[test]
    fn a_check_that_panicked_is_an_error_not_an_empty_list() {
        let root = Path::new("/backups/2026-11-23");
        let joined = std::thread::spawn(|| -> Result<Vec<Vec<u8>>, FsError> {
            panic!("a check that broke")
        })
        .join();
        let err = walked_or_error(root, joined).expect_err("a panicked check must not pass");
        assert!(
            err.to_string().contains("/backups/2026-11-23")
                && err.to_string().contains("not verified"),
            "{err}"
        );
        let failed =
            walked_or_error::<Vec<u8>>(root, Ok(Err(FsError::new("cannot open folder x"))));
        assert!(failed.is_err());
        let found = walked_or_error(root, Ok(Ok(vec![b"extra".to_vec()]))).expect("found");
        assert_eq!(found, vec![b"extra".to_vec()]);
    }

    #[test]
    fn a_set_without_a_manifest_says_where_ward_looked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = dir.path().join("2026-11-23");
        std::fs::create_dir(&set).expect("set");
        let outside = dir.path().join(".2026-11-23.manifest.json");
        let why = |set: &Path| {
            load(set)
                .expect_err("no manifest")
                .to_string()
                .replace(&dir.path().display().to_string(), "D")
        };
        let tail = "; it is not a complete ward snapshot";
        assert_eq!(
            why(&set),
            format!(
                "D/2026-11-23 has no manifest: D/.2026-11-23.manifest.json does not exist{tail}"
            )
        );
        assert!(find(&set).expect("find").is_none());
        std::fs::write(set.join(LEGACY_FILE_NAME), "{}").expect("user file");
        let not_ward = why(&set);
        assert!(
            not_ward.starts_with(
                "D/2026-11-23 has no manifest: D/.2026-11-23.manifest.json does not exist \
                 and D/2026-11-23/manifest.json is not a ward manifest ("
            ) && not_ward.ends_with(&format!("){tail}")),
            "{not_ward}"
        );
        assert!(find(&set).expect("find").is_none());
        assert_eq!(
            why(Path::new("/")),
            format!("/ has no manifest: / is not a folder with a name{tail}")
        );
        std::fs::write(&outside, "{}").expect("damaged");
        assert!(find(&set).is_err(), "a damaged manifest next to the set");
    }
}

#[cfg(test)]
mod carry_tests {
    use super::*;
    use crate::fs::tree::link_tree_since;
    use crate::progress::Progress;
    use std::os::unix::fs::MetadataExt;

    fn info(name: &str, carry: Carry) -> ManifestInfo {
        ManifestInfo {
            name: name.into(),
            host: "h".into(),
            run_id: "r".into(),
            playbook_hash: "p".into(),
            hash_all: true,
            kind: "full",
            base: None,
            playbook: None,
            scope: None,
            source: None,
            carry,
        }
    }

    /// Links `src` to `dir/name` and builds its manifest, reusing `prev`'s hashes.
    fn snapshot(
        src: &Path,
        dir: &Path,
        name: &str,
        prev: Option<&Manifest>,
    ) -> (Manifest, HashStats) {
        let carry = prev.map(Carry::from_manifest).unwrap_or_default();
        snapshot_with(src, dir, name, carry)
    }

    /// [`snapshot`] with the given hashes to reuse.
    fn snapshot_with(src: &Path, dir: &Path, name: &str, carry: Carry) -> (Manifest, HashStats) {
        let (stop, progress) = (AtomicBool::new(false), Progress::default());
        let set = dir.join(name);
        let entries = link_tree_since(src, None, &set, 2, &stop, &progress).expect("link");
        build_counted(&set, &entries, &info(name, carry), 2, &stop, &progress).expect("build")
    }

    /// Two snapshots in `dir` of a tree of `a`, `b`, `c` and `gold/x`
    /// (also named `files/x`), then a rotation deleting the first one, with
    /// the window it would record listing `a`, `b` and `x`; after it, `b`
    /// rewritten with its size and mtime kept. The source, the second
    /// snapshot's manifest and stats, and the recorded unlinks.
    fn rotated(dir: &Path) -> (PathBuf, Manifest, HashStats, Unlinks) {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("gold")).expect("mkdir");
        std::fs::create_dir_all(src.join("files")).expect("mkdir");
        for name in ["a", "b", "c", "gold/x"] {
            std::fs::write(src.join(name), name).expect("write");
        }
        std::fs::hard_link(src.join("gold/x"), src.join("files/x")).expect("link");
        let (m1, _) = snapshot(&src, dir, "s1", None);
        let (m2, s2) = snapshot(&src, dir, "s2", Some(&m1));
        // The rotation: deleting s1 unlinks a name of every file.
        let clock = crate::fs::clock::FsClock::open(dir);
        let from = clock.now().expect("clock");
        crate::fs::tree::remove_tree(&dir.join("s1"), 2, &AtomicBool::new(false)).expect("remove");
        let to = clock.now().expect("clock");
        clock.after(to).expect("tick");
        let ino = |path: &str| {
            let e = m2.entries.iter().find(|e| e.path == path).expect("entry");
            (e.dev.expect("dev"), e.ino.expect("ino"))
        };
        let mut inodes = vec![ino("a"), ino("b"), ino("gold/x")];
        inodes.sort_unstable();
        let mut unlinks = Unlinks::new(&m2.checksum);
        unlinks.windows.push(UnlinkWindow { from, to, inodes });
        // After the rotation: `b` rewritten with its size and mtime kept.
        let f = src.join("b");
        let mtime = std::fs::metadata(&f)
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(&f, "B").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_modified(mtime))
            .expect("set mtime back");
        (src, m2, s2, unlinks)
    }

    #[test]
    fn a_change_time_a_rotations_unlink_left_counts_only_in_its_window_for_its_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, m2, s2, unlinks) = rotated(dir.path());
        assert_eq!((s2.read, s2.carried), (0, 5));
        assert_eq!(Carry::from_manifest(&m2).identities().len(), 4);
        let (from, to) = (unlinks.windows[0].from, unlinks.windows[0].to);

        // What the window accepts: the unlinked, unchanged file `a`; not
        // `b` (changed after the window), nor `c` (not listed).
        let seen = |path: &str| {
            let m = std::fs::metadata(src.join(path)).expect("meta");
            Identity {
                dev: m.dev(),
                ino: m.ino(),
                size: m.len(),
                mtime_ns: nanos(m.mtime(), m.mtime_nsec()),
                ctime_ns: nanos(m.ctime(), m.ctime_nsec()),
            }
        };
        let recorded = |path: &str| {
            let e = m2.entries.iter().find(|e| e.path == path).expect("entry");
            Identity {
                dev: e.dev.expect("dev"),
                ino: e.ino.expect("ino"),
                size: e.size.expect("size"),
                mtime_ns: e.mtime_ns.expect("mtime"),
                ctime_ns: e.ctime_ns.expect("ctime"),
            }
        };
        assert!(unlinks.accepts(&recorded("a"), &seen("a")));
        assert!(
            !unlinks.accepts(&recorded("a"), &recorded("a")),
            "not later than recorded"
        );
        let mut late = unlinks.clone();
        late.windows[0].to = i64::MAX;
        assert!(
            !unlinks.accepts(&recorded("b"), &seen("b")),
            "changed after the window"
        );
        assert!(
            late.accepts(&recorded("b"), &seen("b")),
            "inside a longer window"
        );
        assert!(!late.accepts(&recorded("c"), &seen("c")), "not listed");
        let mut moved = seen("a");
        moved.ctime_ns = from;
        assert!(unlinks.accepts(&recorded("a"), &moved));
        moved.ctime_ns = from - 1;
        assert!(
            !unlinks.accepts(&recorded("a"), &moved),
            "before the window"
        );
        moved.ctime_ns = to;
        moved.size += 1;
        assert!(!unlinks.accepts(&recorded("a"), &moved), "another size");
    }

    #[test]
    fn after_a_rotation_the_files_it_unlinked_unchanged_keep_their_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, m2, _, unlinks) = rotated(dir.path());
        let mut carry = Carry::from_manifest(&m2);
        carry.accept_unlinks(unlinks);
        let (m3, s3) = snapshot_with(&src, dir.path(), "s3", carry);
        // `a` and both names of `x` carried; `b` (changed) and `c` (not
        // listed) read.
        assert_eq!((s3.read, s3.carried), (2, 3));
        assert_eq!(sum(&m3, "b"), Some(sha(b"B")));
        assert_eq!(sum(&m3, "files/x"), Some(sha(b"gold/x")));
        // The ctime recorded is the one this snapshot's link left.
        let now = std::fs::metadata(src.join("a")).expect("meta");
        let a = m3.entries.iter().find(|e| e.path == "a").expect("a");
        assert_eq!(a.ctime_ns, Some(nanos(now.ctime(), now.ctime_nsec())));
    }

    fn sum(m: &Manifest, path: &str) -> Option<String> {
        m.entries
            .iter()
            .find(|e| e.path == path)
            .and_then(|e| e.sha256.clone())
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    #[test]
    fn unchanged_files_keep_their_hash_and_changed_ones_are_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
        for (name, body) in [("a/one", "one"), ("a/b/two", "two"), ("three", "three")] {
            std::fs::write(src.join(name), body).expect("write");
        }
        std::os::unix::fs::symlink("three", src.join("link")).expect("symlink");
        let (m1, s1) = snapshot(&src, dir.path(), "s1", None);
        assert_eq!((s1.read, s1.carried), (3, 0));
        for e in m1.entries.iter().filter(|e| e.kind == "file") {
            assert!(
                e.sha256.is_some() && e.dev.is_some() && e.ino.is_some(),
                "{e:?}"
            );
            assert!(
                e.ctime_ns.is_some() && e.mtime_ns.is_some() && e.uid.is_some(),
                "{e:?}"
            );
        }
        let link = m1.entries.iter().find(|e| e.path == "link").expect("link");
        assert!(link.mtime_ns.is_some() && link.ctime_ns.is_none());
        // The recorded ctime is the one the link left, which the next
        // snapshot sees before its own link.
        let now = std::fs::metadata(src.join("three")).expect("meta");
        let three = m1
            .entries
            .iter()
            .find(|e| e.path == "three")
            .expect("three");
        assert_eq!(
            three.ctime_ns,
            Some(now.ctime() * 1_000_000_000 + now.ctime_nsec())
        );

        let (m2, s2) = snapshot(&src, dir.path(), "s2", Some(&m1));
        assert_eq!((s2.read, s2.carried), (0, 3));
        assert_eq!(sum(&m2, "a/one"), Some(sha(b"one")));

        // Same size, mtime set back: only the ctime tells.
        let f = src.join("a/one");
        let mtime = std::fs::metadata(&f)
            .expect("meta")
            .modified()
            .expect("mtime");
        std::fs::write(&f, "ONE").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_modified(mtime))
            .expect("set mtime back");
        let (m3, s3) = snapshot(&src, dir.path(), "s3", Some(&m2));
        assert_eq!((s3.read, s3.carried), (1, 2));
        assert_eq!(sum(&m3, "a/one"), Some(sha(b"ONE")));
        // Nothing of it differs from what is there.
        let found = compare(
            &dir.path().join("s3"),
            &m3,
            false,
            &Depth::Full,
            2,
            &Progress::default(),
        )
        .expect("compare");
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_file_with_several_names_keeps_its_hash_though_each_link_moves_its_ctime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("gold")).expect("mkdir");
        std::fs::create_dir_all(src.join("files")).expect("mkdir");
        std::fs::write(src.join("gold/archive"), "archive").expect("write");
        std::fs::hard_link(src.join("gold/archive"), src.join("files/archive")).expect("link");
        std::fs::write(src.join("other"), "other").expect("write");
        let (m1, s1) = snapshot(&src, dir.path(), "s1", None);
        assert_eq!((s1.read, s1.carried), (3, 0));
        let (m2, s2) = snapshot(&src, dir.path(), "s2", Some(&m1));
        assert_eq!((s2.read, s2.carried), (0, 3));
        let (m3, s3) = snapshot(&src, dir.path(), "s3", Some(&m2));
        assert_eq!((s3.read, s3.carried), (0, 3));
        // Both names of the edited file are read again.
        let f = src.join("gold/archive");
        let mtime = std::fs::metadata(&f)
            .expect("meta")
            .modified()
            .expect("mtime");
        std::fs::write(&f, "ARCHIVE").expect("write");
        std::fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_modified(mtime))
            .expect("set mtime back");
        let (m4, s4) = snapshot(&src, dir.path(), "s4", Some(&m3));
        assert_eq!((s4.read, s4.carried), (2, 1));
        assert_eq!(sum(&m4, "files/archive"), Some(sha(b"ARCHIVE")));
        assert_eq!(sum(&m4, "gold/archive"), Some(sha(b"ARCHIVE")));
    }

    #[test]
    fn a_hash_is_carried_only_for_the_identity_it_was_recorded_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("f"), "data").expect("write");
        let (m1, _) = snapshot(&src, dir.path(), "s1", None);
        let e1 = m1
            .entries
            .iter()
            .find(|e| e.path == "f")
            .expect("f")
            .clone();
        let entries = link_tree_since(
            &src,
            None,
            &dir.path().join("s2"),
            1,
            &AtomicBool::new(false),
            &Progress::default(),
        )
        .expect("link");
        let e = entries.iter().find(|e| e.rel == b"f").expect("f");
        let with = |change: &dyn Fn(&mut ManifestEntry)| {
            let mut m = m1.clone();
            for x in m.entries.iter_mut().filter(|x| x.path == "f") {
                change(x);
            }
            Carry::from_manifest(&m).hash_of(e).map(|s| hex(&s))
        };
        assert_eq!(with(&|_| {}), e1.sha256);
        for change in [
            &(|x: &mut ManifestEntry| x.dev = x.dev.map(|d| d + 1)) as &dyn Fn(&mut ManifestEntry),
            &|x| x.ino = x.ino.map(|i| i + 1),
            &|x| x.size = x.size.map(|s| s + 1),
            &|x| x.mtime_ns = x.mtime_ns.map(|t| t + 1),
            &|x| x.ctime_ns = x.ctime_ns.map(|t| t - 1),
            // A manifest written before identities were recorded.
            &|x| x.ctime_ns = None,
            &|x| x.sha256 = Some("not a hash".into()),
        ] {
            assert_eq!(with(change), None);
        }
    }

    #[test]
    fn a_manifest_without_identities_still_reads_and_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(src.join("f"), "data").expect("write");
        let (mut m, _) = snapshot(&src, dir.path(), "s1", None);
        m.source = None;
        for e in &mut m.entries {
            (e.uid, e.gid, e.mtime_ns, e.dev, e.ino, e.ctime_ns) =
                (None, None, None, None, None, None);
        }
        let bytes = encode(&mut m).expect("encode");
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(
            !text.contains("ctime_ns") && !text.contains("\"source\""),
            "{text}"
        );
        let path = dir.path().join(".s1.manifest.json");
        std::fs::write(&path, &bytes).expect("write");
        let old = read(&path).expect("an old manifest reads");
        assert!(Carry::from_manifest(&old).is_empty());
        let found = compare(
            &dir.path().join("s1"),
            &old,
            false,
            &Depth::Full,
            2,
            &Progress::default(),
        )
        .expect("compare");
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn the_encoding_is_serde_jsons_and_reads_back_the_quick_way_and_the_long_way() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        // More entries than one encoding thread takes, and a name that is
        // not UTF-8 (written as hex).
        for d in 0..10 {
            std::fs::create_dir_all(src.join(format!("d{d}"))).expect("mkdir");
            for f in 0..500 {
                std::fs::write(src.join(format!("d{d}/f{f}")), format!("{d}-{f}")).expect("write");
            }
        }
        let odd = std::ffi::OsStr::from_bytes(b"odd-\xff-\"quoted\"");
        std::fs::write(src.join(odd), "odd").expect("write");
        let (mut m, _) = snapshot(&src, dir.path(), "s1", None);
        let bytes = encode(&mut m).expect("encode");

        let mut plain = m.clone();
        plain.checksum.clear();
        let reference = serde_json::to_vec(&plain).expect("json");
        assert_eq!(m.checksum, sha(&reference));
        let mut expected = reference[..reference.len() - 2].to_vec();
        expected.extend_from_slice(m.checksum.as_bytes());
        expected.extend_from_slice(b"\"}");
        assert!(
            bytes == expected,
            "encode differs from serde_json's encoding"
        );

        let set = dir.path().join("s1");
        let path = outside_path(&set).expect("path");
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(read(&path).expect("read"), m);
        let recorded = |c: &Carry| {
            c.files
                .iter()
                .map(|r| (c.path(r).to_vec(), r.id, r.sum))
                .collect::<Vec<_>>()
        };
        let quick = previous(&set).expect("previous").expect("found");
        assert_eq!(quick.path, path);
        assert_eq!(quick.source, m.source);
        assert_eq!(quick.carry.len(), 5001);
        assert_eq!(recorded(&quick.carry), recorded(&Carry::from_manifest(&m)));

        // Another JSON layout with a right checksum reads the long way.
        std::fs::write(&path, serde_json::to_vec_pretty(&m).expect("json")).expect("write");
        assert_eq!(read(&path).expect("read"), m);
        let long = previous(&set).expect("previous").expect("found");
        assert_eq!(recorded(&long.carry), recorded(&quick.carry));

        // One hash changed: damaged, both ways.
        let text = String::from_utf8(bytes).expect("utf8");
        let some = m
            .entries
            .iter()
            .find_map(|e| e.sha256.clone())
            .expect("a hash");
        let mut other = some.clone().into_bytes();
        other[0] = if other[0] == b'0' { b'1' } else { b'0' };
        let damaged = text.replacen(&some, std::str::from_utf8(&other).expect("hex"), 1);
        std::fs::write(&path, damaged).expect("write");
        assert!(read(&path).is_err());
        assert!(previous(&set).is_err());
    }

    #[test]
    fn the_file_system_clock_ticks_past_every_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("set");
        std::fs::create_dir(&root).expect("mkdir");
        let before = std::fs::metadata(&root).expect("meta");
        let clock = FsClock::open(&root);
        std::fs::write(dir.path().join("changed"), "x").expect("write");
        let meta = std::fs::metadata(dir.path().join("changed")).expect("meta");
        let changed = nanos(meta.ctime(), meta.ctime_nsec());
        let later = clock.after(changed).expect("the clock ticks");
        assert!(later > changed);
        // Reading the clock leaves nothing in the set, nor touches it.
        assert_eq!(std::fs::read_dir(&root).expect("list").count(), 0);
        let after = std::fs::metadata(&root).expect("meta");
        assert_eq!(
            (before.mtime(), before.mtime_nsec()),
            (after.mtime(), after.mtime_nsec())
        );
    }
}
