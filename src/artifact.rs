//! The file the dump actions write (`pg.dumpall`, `pg.dump`): the output
//! of one or more programs, compressed in-process into a temp file that is
//! hashed as it is written, checked for a minimum size, fsynced and renamed
//! into place (mode 0600), with a `.ward.json` side file beside it that
//! `verify` and `pg.restore` read. Every program's exit status is checked;
//! nothing reaches `dest` unless all of them and the compressor succeeded.
//!
//! A library below the actions (it imports nothing from `crate::action`);
//! it builds on [`crate::compress`], [`crate::fs`] and [`crate::process`],
//! and its errors are [`FsError`]s.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::compress::{Compression, Finish, encoder};
use crate::fs::manifest::SIDECAR_SUFFIX;
use crate::fs::{AtomicFile, FsError};
use crate::process::{Cancel, CancelCell, Running, describe_status};

/// Why a part of the file failed.
pub enum Stage {
    /// Compressing or writing the file.
    Out(std::io::Error),
    /// The step was told to stop.
    Stopped,
    /// The program failed or its output could not be read.
    Failed(ProgramError),
}

/// Why a program's output could not be added to the file.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// It could not be started: the caller's reason.
    #[error("{0}")]
    NotStarted(Box<dyn std::error::Error + Send + Sync>),
    /// It was started without a pipe for its standard output.
    #[error("{0} has no output pipe")]
    NoOutputPipe(String),
    /// Its output could not be read.
    #[error("cannot read its output: {0}")]
    Read(std::io::Error),
    /// It could not be waited for.
    #[error("cannot wait for `{program}`: {source}")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It ended with a failure.
    #[error("{}", describe_status(.0))]
    Status(std::process::ExitStatus),
}

/// A dump file being written (see the module docs).
pub struct DumpFile {
    dest: PathBuf,
    compress: Compression,
    out: AtomicFile,
    enc: Box<dyn Finish>,
    state: Arc<Mutex<HashState>>,
    /// Bytes of SQL before compression.
    raw: u64,
    /// The server version, from the first program header that names it.
    version: String,
}

/// What was written, once it is in place.
pub struct Written {
    /// The side file's content (also the step's details).
    pub info: serde_json::Value,
    /// sha256 of the file, hex.
    pub sha256: String,
    /// Bytes in the file.
    pub size: u64,
    /// Bytes of SQL before compression.
    pub raw: u64,
}

impl DumpFile {
    /// Starts `dest` under a temp name beside it (its folder is created);
    /// a parallel compressor may use `threads`.
    pub fn create(
        dest: &Path,
        compress: Compression,
        level: Option<u32>,
        threads: usize,
    ) -> Result<DumpFile, FsError> {
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| FsError::new(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut out = AtomicFile::create(dest, 0o600)?;
        let sink = Hashing {
            file: out.file().try_clone().map_err(|e| {
                FsError::new(format!("cannot open {} for writing: {e}", dest.display()))
            })?,
            dest: dest.to_path_buf(),
            state: Arc::new(Mutex::new(HashState::default())),
        };
        let state = sink.state.clone();
        let enc = encoder(compress, level, threads, sink)
            .map_err(|e| FsError::new(format!("cannot start the compressor: {e}")))?;
        Ok(DumpFile {
            dest: dest.to_path_buf(),
            compress,
            out,
            enc,
            state,
            raw: 0,
            version: String::new(),
        })
    }

    /// Adds text of ward's own (a `\connect` line, a comment).
    /// Adds every byte written from now on (before compression) to
    /// `progress`, for the step's progress line.
    pub fn counted(self, progress: Arc<crate::progress::Progress>) -> DumpFile {
        DumpFile {
            enc: Box::new(crate::compress::Counted::new(self.enc, progress)),
            ..self
        }
    }

    pub fn write_text(&mut self, text: &str) -> Result<(), Stage> {
        self.enc.write_all(text.as_bytes()).map_err(Stage::Out)?;
        self.raw += text.len() as u64;
        Ok(())
    }

    /// Adds the standard output of the program `start` starts (with its
    /// stdout piped), or fails with the reason it could not start. The
    /// program's status is checked; a failure to write the file stops it
    /// (it would otherwise die of a broken pipe at its next write, or go on
    /// with work nobody reads), and so does `cancel` being raised (a
    /// watchdog thread); it is waited for as [`Running::wait`] says.
    pub fn stream<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        &mut self,
        start: impl FnOnce() -> Result<Running, E>,
        cancel: &CancelCell,
        kill_grace: std::time::Duration,
    ) -> Result<(), Stage> {
        let mut running = start().map_err(|e| Stage::Failed(ProgramError::NotStarted(e.into())))?;
        let mut stdout = running.child.stdout.take().ok_or_else(|| {
            Stage::Failed(ProgramError::NoOutputPipe(running.program().to_owned()))
        })?;
        let cancelled = || cancel.level() != Cancel::No;
        let done = AtomicBool::new(false);
        let want_head = self.version.is_empty();
        let enc = &mut self.enc;
        let copied: Result<(u64, Vec<u8>), Stage> = std::thread::scope(|scope| {
            let group = &running;
            let done = &done;
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if cancelled() {
                        group.signal(rustix::process::Signal::TERM);
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
            let result = (|| {
                let mut buf = vec![0u8; 1 << 20];
                let mut head = Vec::new();
                let mut total = 0u64;
                loop {
                    let n = stdout
                        .read(&mut buf)
                        .map_err(|e| Stage::Failed(ProgramError::Read(e)))?;
                    if n == 0 {
                        return Ok((total, head));
                    }
                    if want_head && head.len() < 65536 {
                        head.extend_from_slice(&buf[..n.min(65536 - head.len())]);
                    }
                    total += n as u64;
                    enc.write_all(&buf[..n]).map_err(Stage::Out)?;
                }
            })();
            done.store(true, Ordering::Relaxed);
            result
        });
        drop(stdout);
        if let Err(Stage::Out(_)) = &copied {
            running.signal(rustix::process::Signal::TERM);
        }
        let status = running.wait(cancel, kill_grace).map_err(|source| {
            Stage::Failed(ProgramError::Wait {
                program: running.program().to_owned(),
                source,
            })
        })?;
        // A failure to write the file comes first: the program's own
        // failure is then only its broken pipe.
        let (n, head) = match copied {
            Err(Stage::Out(e)) => return Err(Stage::Out(e)),
            // Stopped by the watchdog: say so, not "killed by signal 15".
            _ if cancelled() => return Err(Stage::Stopped),
            _ if !status.success() => return Err(Stage::Failed(ProgramError::Status(status))),
            other => other?,
        };
        self.raw += n;
        if want_head {
            self.version = server_version(&head);
        }
        Ok(())
    }

    /// The step's error for a part that failed; `what` names the part
    /// (`pg_dumpall failed`).
    pub fn error(&self, stage: Stage, what: &str) -> FsError {
        match stage {
            Stage::Out(e) => {
                // ward's own first write error names the real cause (e.g. a
                // full disk) when the compressor failed after it.
                let cause = self
                    .state
                    .lock()
                    .ok()
                    .and_then(|s| s.write_error.clone())
                    .unwrap_or_else(|| {
                        format!("cannot compress into {}: {e}", self.dest.display())
                    });
                FsError::new(format!(
                    "{cause}; the partial file was removed, an earlier dump there is unchanged"
                ))
            }
            Stage::Stopped => FsError::Stopped,
            Stage::Failed(m) => FsError::new(format!(
                "{what} ({m}); nothing was written to {} (see the step's log)",
                self.dest.display()
            )),
        }
    }

    /// Ends the compression, checks `min_bytes`, puts the file in place and
    /// writes its side file, with `extra` fields added to it (the action's:
    /// host, run id, ...).
    pub fn finish(
        self,
        min_bytes: u64,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Written, FsError> {
        let DumpFile {
            dest,
            compress,
            out,
            enc,
            state,
            raw,
            version,
        } = self;
        if let Err(e) = enc.finish() {
            let cause = state
                .lock()
                .ok()
                .and_then(|s| s.write_error.clone())
                .unwrap_or_else(|| format!("cannot compress into {}: {e}", dest.display()));
            return Err(FsError::new(format!(
                "{cause}; the partial file was removed, an earlier dump there is unchanged"
            )));
        }
        if raw < min_bytes {
            return Err(FsError::new(format!(
                "the dump is only {raw} bytes, less than min_bytes {min_bytes}; nothing was written to {}",
                dest.display()
            )));
        }
        out.commit()?;
        let (hash, size) = {
            let guard = state
                .lock()
                .map_err(|_| FsError::new("hash state poisoned"))?;
            (guard.hash.clone().finalize(), guard.size)
        };
        let sha256: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut info = serde_json::json!({
            "file": file_name,
            "sha256": sha256,
            "size": size,
            "raw_bytes": raw,
            "compression": compress.as_str(),
            "server_version": if version.is_empty() { None } else { Some(version) },
            "created": chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        });
        if let Some(fields) = info.as_object_mut() {
            fields.extend(extra);
        }
        let text = serde_json::to_string_pretty(&info)
            .map_err(|e| FsError::new(format!("cannot describe the dump: {e}")))?;
        let sidecar = dest.with_file_name(format!("{file_name}{SIDECAR_SUFFIX}"));
        crate::fs::write_atomic(&sidecar, text.as_bytes(), 0o600)?;
        Ok(Written {
            info,
            sha256,
            size,
            raw,
        })
    }
}

/// What [`Hashing`] shares with the dump file.
#[derive(Default)]
struct HashState {
    hash: Sha256,
    size: u64,
    /// The first write error, as the message for the operator.
    write_error: Option<String>,
}

/// Counts and hashes what goes into the file, and keeps its first write
/// error with the path.
struct Hashing {
    file: std::fs::File,
    dest: PathBuf,
    state: Arc<Mutex<HashState>>,
}

impl Hashing {
    fn failed(&self, e: std::io::Error) -> std::io::Error {
        if let Ok(mut s) = self.state.lock() {
            s.write_error
                .get_or_insert_with(|| format!("cannot write {}: {e}", self.dest.display()));
        }
        e
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf).map_err(|e| self.failed(e))?;
        if let Ok(mut s) = self.state.lock() {
            s.hash.update(&buf[..n]);
            s.size += n as u64;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().map_err(|e| self.failed(e))
    }
}

/// The server version from a dump's header (`-- Dumped from database
/// version 15.18 ...`).
fn server_version(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| l.strip_prefix("-- Dumped from database version "))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;
    use std::time::Duration;

    use super::*;
    use crate::process::command;

    fn sh(script: &str, stdout: Stdio) -> std::io::Result<Running> {
        let argv = ["-c".to_owned(), script.to_owned()];
        let mut cmd = command("sh", &argv, &[], Path::new("/"), false);
        cmd.stdout(stdout);
        Running::start(&mut cmd, "sh")
    }

    #[test]
    fn a_program_that_fails_or_cannot_start_says_why_and_nothing_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("all.sql.gz");
        let mut file = DumpFile::create(&dest, Compression::Gzip, None, 1).expect("create");
        let cancel = CancelCell::default();
        let grace = Duration::from_secs(1);
        let said = |file: &DumpFile, r: Result<(), Stage>| {
            let stage = r.expect_err("the part fails");
            file.error(stage, "pg_dumpall failed").to_string()
        };
        let nothing = format!(
            "; nothing was written to {} (see the step's log)",
            dest.display()
        );
        let r = file.stream(|| Err("cannot start `pg_dumpall`: gone"), &cancel, grace);
        assert_eq!(
            said(&file, r),
            format!("pg_dumpall failed (cannot start `pg_dumpall`: gone){nothing}")
        );
        let r = file.stream(|| sh("exit 3", Stdio::piped()), &cancel, grace);
        assert_eq!(
            said(&file, r),
            format!("pg_dumpall failed (exit code 3){nothing}")
        );
        let r = file.stream(|| sh("true", Stdio::null()), &cancel, grace);
        assert_eq!(
            said(&file, r),
            format!("pg_dumpall failed (sh has no output pipe){nothing}")
        );
        let r = file.stream(|| sh("echo select 1", Stdio::piped()), &cancel, grace);
        assert!(r.is_ok(), "a program that succeeds adds its output");
        drop(file);
        assert!(!dest.exists(), "nothing reaches dest unless finished");
    }
}
