//! `notify.command`: a program run with the run's summary as JSON on its
//! stdin, in its own process group, killed with it at its timeout.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::model::notify::CommandHook;

/// Output of the program kept for the error message.
const KEEP: usize = 16 * 1024;

/// Runs the hook; `json` goes to its stdin. Its group is killed only at
/// the timeout, while its leader is not yet reaped (so the group id cannot
/// have been reused). `hide` names environment
/// variables it must not inherit (the SMTP password's). The error is one line.
pub fn run(hook: &CommandHook, json: &[u8], work_dir: &Path, hide: &[&str]) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let program = &hook.argv[0];
    let mut cmd = crate::process::new_command(program);
    cmd.args(&hook.argv[1..])
        .current_dir(work_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for name in hide {
        cmd.env_remove(name);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let group = child.id();
    let feeder = child.stdin.take().map(|mut stdin| {
        let json = json.to_vec();
        // A program that does not read its stdin is fine: the broken pipe is ignored.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&json);
        })
    });
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = Instant::now() + hook.timeout.std();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for `{program}`: {e}")),
        }
    };
    let status = match status {
        Some(s) => s,
        None => {
            kill_group(group);
            let _ = child.wait();
            return Err(format!(
                "`{program}` did not finish within {}; it was killed",
                hook.timeout
            ));
        }
    };
    // Not joined: a process the program left behind may hold the pipes
    // open; the threads end with it (or with ward).
    drop((feeder, out));
    let stderr = err
        .and_then(|rx| rx.recv_timeout(Duration::from_secs(1)).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    let how = match status.code() {
        Some(c) => format!("exited with code {c}"),
        None => "was killed by a signal".to_owned(),
    };
    Err(format!("`{program}` {how}{last}"))
}

/// Reads a pipe to its end on a thread, keeping the last [`KEEP`] bytes.
fn drain(mut pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * KEEP {
                        kept.drain(..kept.len() - KEEP);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(kept);
    });
    rx
}

fn kill_group(leader: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(leader as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}
