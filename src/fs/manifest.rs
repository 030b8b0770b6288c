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

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};

use super::FsError;
use super::tree::{
    Entry, Kind, at, child_rel, join, map_chunks, open_dir, open_file_below, open_level_errno,
    poisoned, read_names, walk,
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

fn full_kind() -> String {
    "full".to_owned()
}

impl ManifestEntry {
    /// The entry's path as bytes.
    pub fn rel_bytes(&self) -> Vec<u8> {
        match &self.path_hex {
            Some(hex) => (0..hex.len())
                .step_by(2)
                .filter_map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect(),
            None => self.path.as_bytes().to_vec(),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file's content, as hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_of(std::fs::File::open(path)?)
}

/// sha256 of everything `f` reads, as hex.
fn sha256_of(mut f: impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
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

    // Hash in parallel: each worker takes every n-th file to hash.
    let to_hash: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            e.kind == Kind::File
                && !known.contains_key(&e.rel)
                && (info.hash_all || sampled(&e.rel))
        })
        .collect();
    progress.restart(
        "hashing",
        Some(to_hash.len() as u64),
        Some(to_hash.iter().map(|e| e.size).sum()),
    );
    let threads = threads.max(1);
    type Hashed = Result<Vec<(Vec<u8>, String)>, FsError>;
    let hashed: Vec<Hashed> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let to_hash = &to_hash;
                let (root_fd, base_fd) = (&root_fd, &base_fd);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for e in to_hash.iter().skip(t).step_by(threads) {
                        if cancelled.load(std::sync::atomic::Ordering::Relaxed) {
                            return Err(FsError::Stopped);
                        }
                        let (from, from_fd) = match (&info.base, &base_fd, e.in_base) {
                            (Some((_, base)), Some(fd), true) => (base.as_path(), fd.as_fd()),
                            _ => (root, root_fd.as_fd()),
                        };
                        let sum = open_file_below(from_fd, &e.rel)
                            .map_err(std::io::Error::from)
                            .and_then(sha256_of)
                            .map_err(|err| {
                                FsError::new(format!(
                                    "cannot hash {}: {err}",
                                    join(from, &e.rel).display()
                                ))
                            })?;
                        out.push((e.rel.clone(), sum));
                        progress.add_files(1);
                        progress.add_bytes(e.size);
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
    for part in hashed {
        known.extend(part?);
    }

    let mut seen_inodes = HashSet::new();
    let mut files = 0;
    let mut bytes = 0;
    let manifest_entries = entries
        .iter()
        .map(|e| {
            let (kind, size, target) = match &e.kind {
                Kind::File => {
                    files += 1;
                    if seen_inodes.insert(e.ino) {
                        bytes += e.size;
                    }
                    ("file", Some(e.size), None)
                }
                Kind::Dir => ("dir", None, None),
                Kind::Symlink(t) => (
                    "symlink",
                    None,
                    Some(String::from_utf8_lossy(t).into_owned()),
                ),
                Kind::Special => ("special", None, None),
            };
            let utf8 = std::str::from_utf8(&e.rel).ok();
            ManifestEntry {
                path: utf8.map_or_else(
                    || String::from_utf8_lossy(&e.rel).into_owned(),
                    str::to_owned,
                ),
                path_hex: utf8.is_none().then(|| hex(&e.rel)),
                kind: kind.to_owned(),
                size,
                mode: e.mode,
                target,
                sha256: known.get(&e.rel).cloned(),
                in_base: e.in_base,
                uid: None,
                gid: None,
                mtime_ns: None,
                dev: None,
                ino: None,
                ctime_ns: None,
            }
        })
        .collect();
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
        entries: manifest_entries,
        checksum: String::new(),
    };
    Ok(m)
}

/// The manifest as compact JSON with its checksum filled in: the sha256 of
/// the same JSON with an empty checksum (the last field). One serialization
/// of a 100,000-entry manifest, no copy.
pub fn encode(m: &mut Manifest) -> Result<Vec<u8>, FsError> {
    m.checksum.clear();
    let mut bytes =
        serde_json::to_vec(m).map_err(|e| FsError::new(format!("cannot encode manifest: {e}")))?;
    let sum = hex(&Sha256::digest(&bytes));
    let tail = br#""checksum":""}"#;
    if !bytes.ends_with(tail) {
        return Err(FsError::new(
            "manifest encoding changed: checksum is not the last field",
        ));
    }
    bytes.truncate(bytes.len() - tail.len());
    bytes.extend_from_slice(format!(r#""checksum":"{sum}"}}"#).as_bytes());
    m.checksum = sum;
    Ok(bytes)
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
    if let Some(mtime) = e.mtime_ns {
        // `time_t` is narrower than i64 on some targets: the cast is for them.
        #[allow(clippy::unnecessary_cast)]
        let now = (st.st_mtime as i64)
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec as i64);
        if now != mtime {
            out.push(changed(format!("mtime {now} ns, was {mtime} ns")));
            return;
        }
    }
    if let (true, Some(sum)) = (hashes, &e.sha256) {
        let now = rustix::fs::openat(
            dir,
            name,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::NOFOLLOW,
            rustix::fs::Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .and_then(|fd| sha256_of(std::fs::File::from(fd)));
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
