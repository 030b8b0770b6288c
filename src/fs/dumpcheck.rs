//! Dumps checked to their last line: every dump of a backup set is
//! decompressed completely (gzip, also multi-member; zstd; plain) and its
//! SQL read for the marks pg_dump and pg_dumpall leave, so that a dump cut
//! short or damaged is found when the set is verified, not when it is
//! restored. A sha256 only proves the file is the one written; this
//! proves what was written is whole.
//!
//! What a complete plain dump looks like (the formats ward writes):
//!
//! - `pg.dumpall`: pg_dumpall's output, whose last line is
//!   `-- PostgreSQL database cluster dump complete`;
//! - `pg.dump` (the point of a `pg.snapshot`): pg_dumpall's globals, then
//!   one pg_dump part per database, then ward's own last line
//!   `-- PostgreSQL database cluster dump complete (ward pg.dump)`;
//! - a single database's pg_dump (not written by ward, checked if found):
//!   `-- PostgreSQL database dump complete`.
//!
//! In every one, each pg_dump part (`-- PostgreSQL database dump`) must
//! end with its own completion line before the next starts, and every
//! `COPY ... FROM stdin;` block with its `\.`. Only comment, empty and
//! `\unrestrict` lines (newer pg_dump) may follow the last completion line.
//! Lines inside COPY blocks are rows, never taken for marks.
//!
//! ward writes no custom-format archive (`pg.dump` refuses `--format`);
//! one found is reported unchecked, not damaged.
//!
//! Streaming, constant memory (a 1 MiB buffer and at most 1 MiB of one
//! line), no temp files: a dump of any size is checked.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Serialize;

use super::FsError;
use super::manifest::{Manifest, ManifestEntry, SIDECAR_SUFFIX};

/// pg_dumpall's last line (ward's `pg.dump` adds ` (ward pg.dump)`).
pub const CLUSTER_COMPLETE: &str = "-- PostgreSQL database cluster dump complete";
/// pg_dump's last line, ending each database's part.
pub const DATABASE_COMPLETE: &str = "-- PostgreSQL database dump complete";
/// pg_dump's first mark, starting each database's part.
const DATABASE_START: &str = "-- PostgreSQL database dump";
/// pg_dumpall's first mark.
const CLUSTER_START: &str = "-- PostgreSQL database cluster dump";

/// The longest line kept whole outside COPY rows (a COPY line names every
/// column); longer lines are SQL that is no mark.
const LINE_CAP: usize = 1 << 20;
/// How much of the last line a message quotes.
const QUOTE: usize = 120;

/// What kind of complete dump a file is, by its last mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpKind {
    /// pg_dumpall's output (`pg.dumpall`).
    Cluster,
    /// ward's `pg.dump` file (globals and each database of a point).
    WardPoint,
    /// One database's pg_dump output.
    Database,
}

/// Why a dump is not whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// It could not be opened or read (not its content's fault).
    Unreadable,
    /// The compressed data ends before its end (a cut file).
    Truncated,
    /// The compressed data is damaged (bad block, checksum mismatch,
    /// bytes after its end).
    Corrupt,
    /// It decompresses, but the SQL stops before the dump's last line.
    Incomplete,
    /// It is whole, but not the size its side file recorded.
    SizeMismatch,
}

impl Problem {
    /// What the operator should do about it.
    pub fn advice(self) -> &'static str {
        match self {
            Problem::Unreadable => "check the file's owner, mode and the disk, then verify again",
            Problem::Truncated | Problem::Incomplete => {
                "it cannot restore everything: do not rely on it; run the dump again (a new \
                 backup) and keep the last set whose dumps verify"
            }
            Problem::Corrupt => {
                "its bytes were damaged after it was written (disk, copy): restore it from \
                 another copy of this set or use an older set, and run the dump again"
            }
            Problem::SizeMismatch => {
                "it is not the file the dump step wrote: find out what replaced it; use an \
                 older set whose dumps verify"
            }
        }
    }

    /// The word for the problem.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Unreadable => "unreadable",
            Problem::Truncated => "truncated",
            Problem::Corrupt => "corrupt",
            Problem::Incomplete => "incomplete",
            Problem::SizeMismatch => "size mismatch",
        }
    }
}

/// Where and why a dump went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Damage {
    /// What is wrong.
    pub problem: Problem,
    /// The byte of the decompressed SQL where it went wrong (as far as
    /// it could be read).
    pub offset: u64,
    /// The byte of the file where decompression stopped (compressed
    /// dumps; `None` for plain ones, where it is `offset`).
    pub compressed_offset: Option<u64>,
    /// What was found there.
    pub detail: String,
}

/// A dump read to its end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Complete {
    /// By its last mark.
    pub kind: DumpKind,
    /// `gzip`, `zstd` or `plain`.
    pub compression: &'static str,
    /// Bytes of SQL.
    pub raw_bytes: u64,
    /// Bytes of the file.
    pub file_bytes: u64,
    /// pg_dump parts (databases) ended by their completion line.
    pub databases: u64,
    /// COPY blocks (tables with data) ended by `\.`.
    pub tables: u64,
}

/// How one dump came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Whole.
    Complete(Complete),
    /// Not whole: where and why.
    Damaged(Damage),
    /// Not a format this check reads (the reason).
    Unchecked {
        /// Why.
        reason: String,
    },
}

/// One dump of a set and how it came out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DumpCheck {
    /// The dump's path (in the set, or as given).
    pub path: String,
    /// Its outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl DumpCheck {
    /// True unless damaged.
    pub fn ok(&self) -> bool {
        !matches!(self.outcome, Outcome::Damaged(_))
    }
}

impl std::fmt::Display for DumpCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Complete(c) => write!(
                f,
                "{}: complete ({}, {}, {} bytes of SQL, {} database part(s), {} COPY block(s))",
                self.path,
                match c.kind {
                    DumpKind::Cluster => "pg_dumpall",
                    DumpKind::WardPoint => "ward pg.dump",
                    DumpKind::Database => "pg_dump",
                },
                c.compression,
                c.raw_bytes,
                c.databases,
                c.tables
            ),
            Outcome::Damaged(d) if d.problem == Problem::SizeMismatch => write!(
                f,
                "{}: {}: {}; {}",
                self.path,
                d.problem.as_str(),
                d.detail,
                d.problem.advice()
            ),
            Outcome::Damaged(d) => {
                write!(
                    f,
                    "{}: {} at byte {} of its SQL",
                    self.path,
                    d.problem.as_str(),
                    d.offset
                )?;
                if let Some(c) = d.compressed_offset {
                    write!(f, " (byte {c} of the compressed file)")?;
                }
                write!(f, ": {}; {}", d.detail, d.problem.advice())
            }
            Outcome::Unchecked { reason } => write!(f, "{}: not checked: {reason}", self.path),
        }
    }
}

/// What the side file recorded, to compare with what was read.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// The file's size (`size`).
    pub file_bytes: Option<u64>,
    /// The SQL's size (`raw_bytes`).
    pub raw_bytes: Option<u64>,
    /// Databases that must each have a complete part (`pg.dump`'s point).
    pub databases: Vec<String>,
}

impl Expected {
    /// From a dump's side file (`<dump>.ward.json`).
    pub fn from_side_file(v: &serde_json::Value) -> Expected {
        let databases = v
            .pointer("/point/databases")
            .and_then(|d| d.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.get("db").and_then(|n| n.as_str()).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Expected {
            file_bytes: v.get("size").and_then(serde_json::Value::as_u64),
            raw_bytes: v.get("raw_bytes").and_then(serde_json::Value::as_u64),
            databases,
        }
    }
}

/// A buffered reader that counts what its consumer took (the compressed
/// bytes the decompressor used).
struct CountedBuf<R> {
    inner: BufReader<R>,
    consumed: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountedBuf<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.consumed.set(self.consumed.get() + n as u64);
        Ok(n)
    }
}

impl<R: Read> BufRead for CountedBuf<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.consumed.set(self.consumed.get() + n as u64);
        self.inner.consume(n);
    }
}

/// Checks one dump read from `input` (the file's bytes). `cancelled` is
/// asked between buffers; `on_read` gets the file bytes consumed since
/// its last call (for a progress line). Only a cancellation is an `Err`.
pub fn check_reader(
    input: impl Read,
    expected: &Expected,
    cancelled: &dyn Fn() -> bool,
    on_read: &mut dyn FnMut(u64),
) -> Result<Outcome, FsError> {
    let consumed = Rc::new(Cell::new(0u64));
    let counted = CountedBuf {
        inner: BufReader::with_capacity(256 * 1024, input),
        consumed: consumed.clone(),
    };
    let (mut sql, compression) = match crate::compress::decoder_buffered(counted) {
        Ok(d) => d,
        Err(e) => {
            return Ok(Outcome::Damaged(Damage {
                problem: Problem::Unreadable,
                offset: 0,
                compressed_offset: Some(consumed.get()),
                detail: format!("cannot read it: {e}"),
            }));
        }
    };
    let plain = compression == "plain";
    let at_file = |consumed: u64| (!plain).then_some(consumed);
    let mut scan = Scanner::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut reported = 0u64;
    loop {
        if cancelled() {
            return Err(FsError::Stopped);
        }
        let n = match sql.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The file's own read errors carry an OS error; the
                // decompressors' do not.
                let problem = if e.raw_os_error().is_some() || plain {
                    Problem::Unreadable
                } else if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Problem::Truncated
                } else {
                    Problem::Corrupt
                };
                let detail = match problem {
                    Problem::Truncated => format!(
                        "the {compression} data ends before its end ({e}): the file was cut short"
                    ),
                    Problem::Corrupt => format!("the {compression} data is damaged: {e}"),
                    _ => format!("cannot read it: {e}"),
                };
                return Ok(Outcome::Damaged(Damage {
                    problem,
                    offset: scan.total,
                    compressed_offset: at_file(consumed.get()),
                    detail,
                }));
            }
        };
        if scan.total == 0 && buf[..n].starts_with(b"PGDMP") {
            return Ok(Outcome::Unchecked {
                reason: "a pg_dump custom-format archive (ward writes plain SQL dumps only); \
                         check it with `pg_restore --list`"
                    .into(),
            });
        }
        if let Some(d) = scan.feed(&buf[..n]) {
            return Ok(Outcome::Damaged(Damage {
                compressed_offset: at_file(consumed.get()),
                ..d
            }));
        }
        on_read(consumed.get() - reported);
        reported = consumed.get();
    }
    drop(sql);
    let file_bytes = consumed.get();
    // What the decompressor left unread (e.g. trailing bytes zstd stops
    // before) is not part of a dump ward wrote.
    let raw = scan.total;
    let ended = match scan.finish() {
        Ok(k) => k,
        Err(d) => {
            return Ok(Outcome::Damaged(Damage {
                compressed_offset: at_file(file_bytes),
                ..d
            }));
        }
    };
    if let Some(missing) = expected
        .databases
        .iter()
        .find(|db| !ended.databases.contains(&comment_safe(db)))
    {
        return Ok(Outcome::Damaged(Damage {
            problem: Problem::Incomplete,
            offset: raw,
            compressed_offset: at_file(file_bytes),
            detail: format!(
                "database {missing:?} of the point its side file records has no complete part"
            ),
        }));
    }
    if let Some(want) = expected.raw_bytes.filter(|w| *w != raw) {
        return Ok(Outcome::Damaged(Damage {
            problem: Problem::SizeMismatch,
            offset: raw.min(want),
            compressed_offset: at_file(file_bytes),
            detail: format!("it holds {raw} bytes of SQL, its side file says {want}"),
        }));
    }
    if let Some(want) = expected.file_bytes.filter(|w| *w != file_bytes) {
        return Ok(Outcome::Damaged(Damage {
            problem: Problem::SizeMismatch,
            offset: raw,
            compressed_offset: at_file(file_bytes),
            detail: format!("the file is {file_bytes} bytes, its side file says {want}"),
        }));
    }
    Ok(Outcome::Complete(Complete {
        kind: ended.kind,
        compression,
        raw_bytes: raw,
        file_bytes,
        databases: ended.databases.len() as u64,
        tables: ended.tables,
    }))
}

/// What a whole dump's SQL held.
struct Ended {
    kind: DumpKind,
    /// Databases whose part completed (`?` for a part with no name).
    databases: Vec<String>,
    /// COPY blocks ended.
    tables: u64,
}

/// A database name as ward writes it in a comment line (`pg.dump`).
fn comment_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Reads the SQL line by line, in pieces of any size.
#[derive(Default)]
struct Scanner {
    /// Bytes of SQL so far.
    total: u64,
    /// The current line (up to its cap) and where it starts.
    line: Vec<u8>,
    line_start: u64,
    line_long: bool,
    /// Inside a COPY block: its table and where it starts.
    copying: Option<(String, u64)>,
    /// A pg_dump part started (at this byte) and not yet complete.
    part: Option<u64>,
    /// The database of the part (from `-- Database "X" dump`).
    db: Option<String>,
    /// Databases whose part completed (their names, `?` if unnamed).
    done: Vec<String>,
    /// COPY blocks ended.
    tables: u64,
    /// pg_dumpall's first mark was seen: the file must end with its last.
    cluster: bool,
    /// The last line that is not empty, `--` or `\unrestrict`, with its
    /// start (quoted in messages; decides the kind).
    last: Vec<u8>,
    last_start: u64,
    last_long: bool,
}

impl Scanner {
    /// Takes the next bytes; a structural problem found in them ends the
    /// check.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<Damage> {
        while !bytes.is_empty() {
            let (piece, ends) = match bytes.iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            let cap = if self.copying.is_some() { 4 } else { LINE_CAP };
            let room = cap.saturating_sub(self.line.len());
            self.line.extend_from_slice(&piece[..piece.len().min(room)]);
            self.line_long |= piece.len() > room;
            self.total += piece.len() as u64;
            bytes = &bytes[piece.len()..];
            if ends {
                self.total += 1;
                bytes = &bytes[1..];
                if let Some(d) = self.end_line() {
                    return Some(d);
                }
            }
        }
        None
    }

    /// The current line is whole.
    fn end_line(&mut self) -> Option<Damage> {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let start = self.line_start;
        let long = std::mem::take(&mut self.line_long);
        self.line_start = self.total;
        if self.copying.is_some() {
            if !long && line == b"\\." {
                self.copying = None;
                self.tables += 1;
            }
            self.line = line;
            self.line.clear();
            return None;
        }
        let trivial = line.is_empty() || line == b"--" || line.starts_with(b"\\unrestrict ");
        if !trivial {
            self.last.clear();
            self.last
                .extend_from_slice(&line[..line.len().min(LINE_CAP)]);
            self.last_start = start;
            self.last_long = long;
        }
        if long {
            self.line = line;
            self.line.clear();
            return None;
        }
        let text = String::from_utf8_lossy(&line);
        if text == CLUSTER_START {
            self.cluster = true;
        } else if text == DATABASE_START {
            if let Some(open) = self.part {
                return Some(Damage {
                    problem: Problem::Incomplete,
                    offset: start,
                    compressed_offset: None,
                    detail: format!(
                        "the part of database {} (from byte {open}) ends without pg_dump's \
                         completion line `{DATABASE_COMPLETE}`: another part starts here",
                        self.db_name()
                    ),
                });
            }
            self.part = Some(start);
        } else if text == DATABASE_COMPLETE {
            self.part = None;
            self.done.push(self.db_name());
        } else if let Some(name) = text
            .strip_prefix("-- Database \"")
            .and_then(|r| r.strip_suffix("\" dump"))
        {
            self.db = Some(name.to_owned());
        } else if let Some(rest) = text.strip_prefix("COPY ")
            && text.ends_with(" FROM stdin;")
        {
            let table = rest.split(" (").next().unwrap_or(rest);
            let table = table.strip_suffix(" FROM stdin;").unwrap_or(table);
            self.copying = Some((table.to_owned(), start));
        }
        self.line = line;
        self.line.clear();
        None
    }

    fn db_name(&self) -> String {
        self.db.clone().unwrap_or_else(|| "?".to_owned())
    }

    /// The input ended: what the dump is, or where it stops short.
    fn finish(mut self) -> Result<Ended, Damage> {
        let end = self.total;
        let short = |detail: String| Damage {
            problem: Problem::Incomplete,
            offset: end,
            compressed_offset: None,
            detail,
        };
        if !self.line.is_empty() || self.line_long {
            // A last line without its newline: pg_dump ends every line.
            let unfinished = String::from_utf8_lossy(&self.line).into_owned();
            if self.copying.is_none() {
                return Err(short(format!(
                    "the SQL stops in the middle of a line (from byte {}): `{}`",
                    self.line_start,
                    quote(&unfinished)
                )));
            }
        }
        if let Some((table, from)) = self.copying.take() {
            return Err(short(format!(
                "the SQL stops inside the rows of table {table} of database {} (its COPY \
                 block starts at byte {from})",
                self.db_name()
            )));
        }
        if let Some(from) = self.part {
            return Err(short(format!(
                "the SQL stops inside the part of database {} (from byte {from}), before \
                 pg_dump's completion line `{DATABASE_COMPLETE}`",
                self.db_name()
            )));
        }
        let last = String::from_utf8_lossy(&self.last);
        let kind = if self.last_long {
            None
        } else if last == CLUSTER_COMPLETE {
            Some(DumpKind::Cluster)
        } else if last == format!("{CLUSTER_COMPLETE} (ward pg.dump)") {
            Some(DumpKind::WardPoint)
        } else if last == DATABASE_COMPLETE && !self.cluster {
            // A pg_dumpall file cut right after one database's part ends
            // like a single database's dump: not for a cluster's.
            Some(DumpKind::Database)
        } else {
            None
        };
        match kind {
            Some(kind) => Ok(Ended {
                kind,
                databases: self.done,
                tables: self.tables,
            }),
            None if end == 0 => Err(short("it holds no SQL at all".into())),
            None => Err(short(format!(
                "the SQL ends without pg_dumpall's completion line `{CLUSTER_COMPLETE}` (nor \
                 pg_dump's `{DATABASE_COMPLETE}`); its last line, at byte {}, is `{}`",
                self.last_start,
                quote(&last)
            ))),
        }
    }
}

/// The start of a line, for a message.
fn quote(line: &str) -> String {
    let mut out: String = line
        .chars()
        .take(QUOTE)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if line.chars().count() > QUOTE {
        out.push_str("...");
    }
    out
}

/// Opens `rel` below `root` for reading: a regular file only (a FIFO put
/// in its place must not hang the check), no symlink followed.
fn open_below(root: &Path, rel: &[u8]) -> Result<std::fs::File, String> {
    open_file_below(root, rel).map_err(|e| e.to_string())
}

/// Opens the regular file `rel` below the folder `root` for reading,
/// following no symlink: neither a folder on the way (each is opened by
/// name with `O_NOFOLLOW`, so a folder swapped for a symlink by whoever
/// can write the tree leads nowhere else) nor the file itself. Opened
/// `O_NONBLOCK`: a FIFO put in the file's place must not hang the reader;
/// anything but a regular file is refused (`InvalidInput`; a symlink is
/// `ELOOP`). A name that is gone is `NotFound`.
pub(super) fn open_file_below(root: &Path, rel: &[u8]) -> std::io::Result<std::fs::File> {
    use rustix::fs::{FileType, Mode, OFlags};
    let io = |e: rustix::io::Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let mut dir = rustix::fs::openat(
        rustix::fs::CWD,
        root,
        dir_flags - OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(io)?;
    let parts: Vec<&[u8]> = rel
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    let Some((name, folders)) = parts.split_last() else {
        return Err(std::io::Error::other("an empty path"));
    };
    for part in folders.iter().chain(std::iter::once(name)) {
        if *part == b".." {
            return Err(std::io::Error::other("a path with `..`"));
        }
    }
    for part in folders {
        dir = rustix::fs::openat(&dir, *part, dir_flags, Mode::empty()).map_err(io)?;
    }
    let fd = rustix::fs::openat(
        &dir,
        *name,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .map_err(io)?;
    let st = rustix::fs::fstat(&fd).map_err(io)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(std::fs::File::from(fd))
}

/// Checks the dump file at `path` (outside any set).
pub fn check_file(
    path: &Path,
    expected: &Expected,
    cancelled: &dyn Fn() -> bool,
) -> Result<DumpCheck, FsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display().to_string();
    // A regular file only, opened without waiting: a FIFO or a device
    // (`/dev/zero`) given or linked here must not hang the check.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .and_then(|f| {
            if f.metadata()?.is_file() {
                Ok(f)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file",
                ))
            }
        });
    let outcome = match opened {
        Ok(f) => check_reader(f, expected, cancelled, &mut |_| {})?,
        Err(e) => unreadable(e.to_string()),
    };
    Ok(DumpCheck {
        path: shown,
        outcome,
    })
}

fn unreadable(why: String) -> Outcome {
    Outcome::Damaged(Damage {
        problem: Problem::Unreadable,
        offset: 0,
        compressed_offset: None,
        detail: format!("cannot open it: {why}"),
    })
}

/// A dump of a set: where it is and what its side file recorded.
struct Found<'a> {
    entry: &'a ManifestEntry,
    expected: Expected,
}

/// The dumps of a set: the files whose side files (`<dump>.ward.json`)
/// the manifest lists, with what the side files recorded (the manifest's
/// `dumps`). A side file whose dump the manifest does not list comes
/// back unchecked.
fn dumps_of(m: &Manifest) -> (Vec<Found<'_>>, Vec<DumpCheck>) {
    let by_path: HashMap<Vec<u8>, &ManifestEntry> =
        m.entries.iter().map(|e| (e.rel_bytes(), e)).collect();
    let mut found = Vec::new();
    let mut orphans = Vec::new();
    for side in m.entries.iter().filter(|e| e.kind == "file") {
        let rel = side.rel_bytes();
        let Some(dump_rel) = rel.strip_suffix(SIDECAR_SUFFIX.as_bytes()) else {
            continue;
        };
        let Some(entry) = by_path.get(dump_rel).filter(|e| e.kind == "file") else {
            orphans.push(DumpCheck {
                path: side.path[..side.path.len().saturating_sub(SIDECAR_SUFFIX.len())].to_owned(),
                outcome: Outcome::Unchecked {
                    reason: "the manifest lists its side file but not the dump".into(),
                },
            });
            continue;
        };
        let name = dump_rel
            .rsplit(|b| *b == b'/')
            .next()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        // The side file of this dump: same file name and, where both are
        // recorded, the same hash (two folders may hold the same name).
        let file_is =
            |d: &&serde_json::Value| d.get("file").and_then(|f| f.as_str()) == Some(&name);
        let side_json = m
            .dumps
            .iter()
            .filter(file_is)
            .find(|d| {
                d.get("sha256")
                    .and_then(|s| s.as_str())
                    .is_some_and(|s| entry.sha256.as_deref() == Some(s))
            })
            .or_else(|| m.dumps.iter().find(file_is));
        found.push(Found {
            entry,
            expected: side_json.map(Expected::from_side_file).unwrap_or_default(),
        });
    }
    (found, orphans)
}

/// Checks every dump of the set at `set` (see [`dumps_of`]): a dump that
/// lives in the base of an incremental set is read there. `progress` gets
/// the phase "checking dumps", the files' total size and the bytes read.
pub fn check_set(
    set: &Path,
    m: &Manifest,
    cancelled: &dyn Fn() -> bool,
    progress: &crate::progress::Progress,
) -> Result<Vec<DumpCheck>, FsError> {
    let (found, mut out) = dumps_of(m);
    if found.is_empty() {
        return Ok(out);
    }
    let base: Option<PathBuf> = m
        .base
        .as_ref()
        .and_then(|b| set.parent().map(|p| p.join(b)));
    progress.restart(
        "checking dumps",
        Some(found.len() as u64),
        Some(found.iter().filter_map(|f| f.entry.size).sum()),
    );
    for f in found {
        let root = match (&base, f.entry.in_base) {
            (Some(b), true) => b.as_path(),
            _ => set,
        };
        let outcome = match open_below(root, &f.entry.rel_bytes()) {
            Ok(file) => check_reader(file, &f.expected, cancelled, &mut |n| {
                progress.add_bytes(n);
            })?,
            Err(e) => unreadable(e),
        };
        progress.add_files(1);
        out.push(DumpCheck {
            path: f.entry.path.clone(),
            outcome,
        });
    }
    Ok(out)
}

/// One line for the dumps that are not damaged: how many are whole, and
/// each one not checked with its reason.
pub fn summary(checks: &[DumpCheck]) -> String {
    let whole = checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Complete(_)))
        .count();
    let mut out = format!("{whole} dump(s) whole to their last line");
    for c in checks
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Unchecked { .. }))
    {
        out.push_str(&format!("; {c}"));
    }
    out
}

/// The damaged dumps of `checks` as one message for a failed step, or
/// `None` if none is damaged.
pub fn failure(set: &Path, checks: &[DumpCheck]) -> Option<String> {
    let bad: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| set.join(&c.path).display().to_string() + &c.to_string()[c.path.len()..])
        .collect();
    match bad.len() {
        0 => None,
        1 => Some(format!(
            "a dump in {} is not whole: {}",
            set.display(),
            bad[0]
        )),
        n => Some(format!(
            "{n} dumps in {} are not whole: {}",
            set.display(),
            bad.join("; ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const GLOBALS: &str = "--\n-- PostgreSQL database cluster dump\n--\n\nCREATE ROLE a;\n\n";

    fn part(db: &str, rows: usize) -> String {
        let mut s = format!(
            "--\n-- Database \"{db}\" dump\n--\n\n--\n{DATABASE_START}\n--\n\nCREATE TABLE t (x int);\n\
             COPY public.t (x) FROM stdin;\n"
        );
        for i in 0..rows {
            s.push_str(&format!("{i}\n"));
        }
        // A row that looks like a mark is a row.
        s.push_str("-- PostgreSQL database dump complete\n\\.\n\n");
        s.push_str(&format!(
            "--\n{DATABASE_COMPLETE}\n--\n\n\\unrestrict abc\n\n"
        ));
        s
    }

    fn dumpall(rows: usize) -> String {
        format!(
            "{GLOBALS}{}{}--\n{CLUSTER_COMPLETE}\n--\n\n",
            part("template1", 0),
            part("shop", rows)
        )
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).expect("gzip");
        e.finish().expect("gzip")
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
        e.include_checksum(true).expect("checksum");
        e.write_all(data).expect("zstd");
        e.finish().expect("zstd")
    }

    fn check(bytes: &[u8]) -> Outcome {
        check_reader(bytes, &Expected::default(), &|| false, &mut |_| {}).expect("not cancelled")
    }

    fn damage(bytes: &[u8]) -> Damage {
        match check(bytes) {
            Outcome::Damaged(d) => d,
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn a_whole_dump_passes_plain_gzip_multimember_and_zstd() {
        let sql = dumpall(20_000);
        let mut multi = gzip(&sql.as_bytes()[..1000]);
        multi.extend(gzip(&sql.as_bytes()[1000..]));
        for (bytes, compression) in [
            (sql.as_bytes().to_vec(), "plain"),
            (gzip(sql.as_bytes()), "gzip"),
            (multi, "gzip"),
            (zstd(sql.as_bytes()), "zstd"),
        ] {
            match check(&bytes) {
                Outcome::Complete(c) => {
                    assert_eq!(c.kind, DumpKind::Cluster);
                    assert_eq!(c.compression, compression);
                    assert_eq!(c.raw_bytes, sql.len() as u64);
                    assert_eq!(c.file_bytes, bytes.len() as u64);
                    assert_eq!((c.databases, c.tables), (2, 2));
                }
                other => panic!("{compression}: {other:?}"),
            }
        }
        let ward = format!(
            "{GLOBALS}--\n{CLUSTER_COMPLETE}\n--\n\n{}--\n{CLUSTER_COMPLETE} (ward pg.dump)\n--\n\n",
            part("shop", 3)
        );
        assert!(matches!(
            check(ward.as_bytes()),
            Outcome::Complete(Complete {
                kind: DumpKind::WardPoint,
                ..
            })
        ));
        let one = part("shop", 3);
        assert!(matches!(
            check(one.as_bytes()),
            Outcome::Complete(Complete {
                kind: DumpKind::Database,
                ..
            })
        ));
    }

    #[test]
    fn sql_cut_anywhere_is_incomplete_with_its_offset() {
        let sql = dumpall(50);
        let copy_at = sql.rfind("COPY public.t").expect("copy") as u64;
        // Cut at every line end: each prefix short of the last mark fails.
        let complete_at = sql.rfind(CLUSTER_COMPLETE).expect("mark");
        for (i, _) in sql.match_indices('\n').filter(|(i, _)| *i < complete_at) {
            let cut = &sql.as_bytes()[..=i];
            let d = damage(cut);
            assert_eq!(d.problem, Problem::Incomplete, "cut at {i}");
            assert_eq!(d.offset, cut.len() as u64);
            assert_eq!(d.compressed_offset, None);
        }
        let inside_rows = &sql.as_bytes()[..copy_at as usize + 40];
        let d = damage(&gzip(inside_rows));
        assert!(
            d.detail.contains(&format!(
                "rows of table public.t of database shop (its COPY block starts at byte {copy_at})"
            )),
            "{}",
            d.detail
        );
        assert_eq!(d.compressed_offset, Some(gzip(inside_rows).len() as u64));
        let without_last = &sql[..complete_at];
        let d = damage(without_last.as_bytes());
        assert!(
            d.detail.contains("without pg_dumpall's completion line"),
            "{}",
            d.detail
        );
        assert!(damage(b"").detail.contains("no SQL at all"));
    }

    #[test]
    fn cut_or_damaged_compressed_data_says_where() {
        let sql: String = dumpall(200_000);
        for (name, whole) in [
            ("gzip", gzip(sql.as_bytes())),
            ("zstd", zstd(sql.as_bytes())),
        ] {
            let cut = &whole[..whole.len() / 2];
            let d = damage(cut);
            assert_eq!(d.problem, Problem::Truncated, "{name}: {d:?}");
            assert!(d.offset > 0 && d.offset < sql.len() as u64, "{name}: {d:?}");
            assert_eq!(d.compressed_offset, Some(cut.len() as u64), "{name}");
            let mut bad = whole.clone();
            let mid = bad.len() / 2;
            for b in &mut bad[mid..mid + 64] {
                *b ^= 0x5a;
            }
            let d = damage(&bad);
            assert_eq!(d.problem, Problem::Corrupt, "{name}: {d:?}");
            let at = d.compressed_offset.expect("compressed offset");
            assert!(
                at >= (mid as u64).saturating_sub(65_536) && at <= whole.len() as u64,
                "{name}: {d:?}"
            );
        }
        let mut trailing = gzip(sql.as_bytes());
        trailing.extend_from_slice(&[b'x'; 64]);
        assert_eq!(damage(&trailing).problem, Problem::Corrupt);
    }

    #[test]
    fn side_file_sizes_and_point_databases_are_compared() {
        let sql = dumpall(5);
        let gz = gzip(sql.as_bytes());
        let run = |e: Expected| check_reader(&gz[..], &e, &|| false, &mut |_| {}).expect("ran");
        let good = Expected {
            file_bytes: Some(gz.len() as u64),
            raw_bytes: Some(sql.len() as u64),
            databases: vec!["shop".into()],
        };
        assert!(matches!(run(good.clone()), Outcome::Complete(_)));
        let wrong_raw = Expected {
            raw_bytes: Some(1),
            ..good.clone()
        };
        assert!(matches!(
            run(wrong_raw),
            Outcome::Damaged(Damage {
                problem: Problem::SizeMismatch,
                ..
            })
        ));
        let missing_db = Expected {
            databases: vec!["shop".into(), "audit".into()],
            ..good
        };
        match run(missing_db) {
            Outcome::Damaged(d) => assert!(d.detail.contains("\"audit\""), "{}", d.detail),
            other => panic!("{other:?}"),
        }
        let side = serde_json::json!({"size": 10, "raw_bytes": 20, "point": {"databases": [{"db": "a", "snapshot": "x"}]}});
        let e = Expected::from_side_file(&side);
        assert_eq!(
            (e.file_bytes, e.raw_bytes, e.databases),
            (Some(10), Some(20), vec!["a".to_owned()])
        );
    }

    #[test]
    fn a_dump_given_as_a_fifo_or_device_is_unreadable_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("all.sql.gz");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo.as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("fifo");
        for path in [fifo.as_path(), Path::new("/dev/zero")] {
            let c = check_file(path, &Expected::default(), &|| false).expect("checked");
            assert!(
                matches!(&c.outcome, Outcome::Damaged(d) if d.problem == Problem::Unreadable),
                "{c}"
            );
        }
    }

    #[test]
    fn a_custom_archive_is_unchecked_and_cancel_stops() {
        assert!(matches!(check(b"PGDMP\x01\x0e"), Outcome::Unchecked { .. }));
        let e = check_reader(&b"x\n"[..], &Expected::default(), &|| true, &mut |_| {});
        assert_eq!(e, Err(FsError::Stopped));
    }

    #[test]
    fn the_summary_counts_whole_dumps_and_names_unchecked_ones() {
        let checks = [
            DumpCheck {
                path: "a.sql.gz".into(),
                outcome: check(&gzip(dumpall(1).as_bytes())),
            },
            DumpCheck {
                path: "b.dump".into(),
                outcome: check(b"PGDMP"),
            },
        ];
        let text = summary(&checks);
        assert!(
            text.starts_with("1 dump(s) whole to their last line; b.dump: not checked: a pg_dump custom-format archive"),
            "{text}"
        );
        assert_eq!(failure(Path::new("/s"), &checks), None);
    }

    #[test]
    fn the_message_names_path_offsets_and_what_to_do() {
        let c = DumpCheck {
            path: "db/all.sql.gz".into(),
            outcome: Outcome::Damaged(Damage {
                problem: Problem::Truncated,
                offset: 10,
                compressed_offset: Some(4),
                detail: "cut".into(),
            }),
        };
        let text = failure(Path::new("/b/set"), &[c]).expect("damaged");
        assert_eq!(
            text,
            format!(
                "a dump in /b/set is not whole: /b/set/db/all.sql.gz: truncated at byte 10 of \
                 its SQL (byte 4 of the compressed file): cut; {}",
                Problem::Truncated.advice()
            )
        );
    }
}
