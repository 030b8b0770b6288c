//! Progress while a run goes on: live lines at a real pseudo-terminal,
//! periodic plain lines with `--progress` without one (and at `TERM=dumb`),
//! and silence under cron.

use std::ffi::CStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};

use crate::harness::Scratch;

/// A pseudo-terminal of 120x30: the master (read by the test) and the
/// slave (ward's stdout and stderr).
pub(crate) fn open_pty() -> (File, File) {
    // SAFETY: plain libc calls on a descriptor this function owns; every
    // result is checked.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = OwnedFd::from_raw_fd(master);
        use std::os::fd::AsRawFd;
        let fd = master.as_raw_fd();
        assert_eq!(libc::grantpt(fd), 0, "grantpt");
        assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 256];
        assert_eq!(
            libc::ptsname_r(fd, name.as_mut_ptr(), name.len()),
            0,
            "ptsname_r"
        );
        let name = CStr::from_ptr(name.as_ptr())
            .to_str()
            .expect("pty name")
            .to_owned();
        let size = libc::winsize {
            ws_row: 30,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(libc::ioctl(fd, libc::TIOCSWINSZ, &size), 0, "TIOCSWINSZ");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(&name)
            .expect("open the pty's slave");
        (File::from(master), slave)
    }
}

/// Runs `ward` with its stdout and stderr on a pseudo-terminal and returns
/// its exit code and everything it wrote there.
fn run_at_terminal(mut cmd: Command) -> (i32, String) {
    let (mut master, slave) = open_pty();
    cmd.stdin(Stdio::null())
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave);
    let mut child = cmd.spawn().expect("ward starts");
    // The only slave descriptors left are ward's: reading ends (EIO) when it exits.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
        all
    });
    let status = child.wait().expect("wait");
    let out = reader.join().expect("reader");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

/// 200 files of 16 kB: with `--bwlimit=1000` rsync takes about 3 s.
fn slow_copy(s: &Scratch) {
    let big = s.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    for i in 0..200 {
        std::fs::write(big.join(format!("f{i:03}")), vec![b'x'; 16 * 1024]).expect("write");
    }
}

const PARALLEL: &str = "\
ward: 1
name: live
steps:
  - id: copy
    action: rsync
    with: { src: big, dest: out, args: [--bwlimit=1000] }
  - id: wait
    run: \"echo waiting; sleep 2.5; echo waited\"
  - id: last
    needs: [copy, wait]
    run: \"true\"
";

#[test]
fn a_terminal_shows_a_live_line_per_running_step() {
    let s = Scratch::new();
    slow_copy(&s);
    s.write("p.yml", PARALLEL);
    let (code, out) = run_at_terminal(
        s.ward()
            .env("TERM", "xterm")
            .args(["run", "p.yml"])
            .command(),
    );
    assert_eq!(code, 0, "{out}");
    // Two steps run at once: two live lines, erased together (cursor up
    // two lines, clear to the end) before they are drawn again.
    assert!(
        out.contains("\x1b[2A\x1b[J"),
        "no redraw of two lines:\n{out:?}"
    );
    // N/M done, the step, its elapsed time in whole seconds.
    assert!(
        out.contains("[0/3] wait 1s"),
        "no live line for `wait`:\n{out:?}"
    );
    assert!(
        out.contains("[0/3] copy 1s · copying · "),
        "no live line for `copy`:\n{out:?}"
    );
    // rsync's own counts: files of the list and bytes so far, then an ETA
    // from the list's total.
    let copy_line = out
        .split(['\r', '\n'])
        .find(|l| l.contains("[0/3] copy 2s") && l.contains("files") && l.contains("ETA"))
        .unwrap_or_else(|| panic!("no files/ETA in the copy's line:\n{out:?}"));
    assert!(copy_line.contains(" of 201 files"), "{copy_line}");
    assert!(copy_line.contains(" MB"), "{copy_line}");
    // Step output still comes through, above the live lines.
    assert!(out.contains("wait │ waited"), "{out:?}");
    // The summary stays, and no live line is left below it.
    let tail = out.trim_end();
    let last = tail.rsplit(['\r', '\n']).next().unwrap_or("");
    assert!(
        last.starts_with("run ") && last.contains(" succeeded in "),
        "{out:?}"
    );
    // NO_COLOR (the harness sets it): no colour codes, only cursor moves.
    assert!(
        !out.contains("\x1b[34m") && !out.contains("\x1b[1m"),
        "{out:?}"
    );
}

#[test]
fn a_dumb_terminal_gets_plain_lines_and_no_redraw() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: dumb\nsteps:\n  - id: slow\n    run: \"sleep 1.5\"\n",
    );
    let mut cmd = s
        .ward()
        .env("TERM", "dumb")
        .env("WARD_PROGRESS_INTERVAL_MS", "400")
        .args(["run", "p.yml"])
        .command();
    // Colour would be allowed but for TERM=dumb.
    cmd.env_remove("NO_COLOR");
    let (code, out) = run_at_terminal(cmd);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains('\x1b'), "escape codes at TERM=dumb:\n{out:?}");
    assert!(out.contains("[0/1] slow running 0s"), "{out:?}");
    assert!(out.contains("[0/1] slow running 1s"), "{out:?}");
    assert!(out.contains(" succeeded in "), "{out:?}");
}

#[test]
fn progress_without_a_terminal_prints_plain_lines_now_and_then() {
    let s = Scratch::new();
    slow_copy(&s);
    s.write(
        "p.yml",
        "ward: 1\nname: plain\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: big, dest: out, args: [--bwlimit=1000] }\n",
    );
    let run = s
        .ward()
        .env("WARD_PROGRESS_INTERVAL_MS", "1000")
        .args(["run", "--progress", "p.yml"])
        .run()
        .expect_code(0);
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("[0/1] copy running "))
        .collect();
    // About 3 s of copying, a line a second.
    assert!(lines.len() >= 2, "{}", run.stdout);
    assert!(
        lines[0].starts_with("[0/1] copy running 1s, copying, "),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" of 201 files, ") && l.contains(" MB")),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\x1b'), "{}", run.stdout);
    assert!(!run.stdout.contains('\r'), "{}", run.stdout);
    // rsync's progress updates are not in the step's log; its --stats are.
    let log = find_log(&s.path().join("state"), "copy").expect("the copy's log");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("Number of files: 201"), "{text}");
    assert!(!text.contains("to-chk=") && !text.contains('\r'), "{text}");
}

/// The first log file named after `step` below `dir`.
fn find_log(dir: &std::path::Path, step: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(found) = find_log(&p, step) {
                return Some(found);
            }
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(step) && n.ends_with(".log"))
        {
            return Some(p);
        }
    }
    None
}

#[test]
fn cron_hears_nothing_of_a_slow_run_that_succeeds() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: cron\nsteps:\n  - id: slow\n    run: \"echo out; sleep 1\"\n",
    );
    // No terminal and no --progress: the quiet reporter, even with a short period.
    let run = s
        .ward()
        .env("WARD_PROGRESS_INTERVAL_MS", "100")
        .args(["run", "p.yml"])
        .run()
        .expect_code(0);
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "");
}

/// A wrapper around `real` that waits `before` seconds, runs it, then
/// waits `after` seconds (keeping its output open): a slow dump or restore.
fn slow_wrapper(
    s: &Scratch,
    name: &str,
    real: &std::path::Path,
    before: &str,
    after: &str,
) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = s.write(
        name,
        &format!(
            "#!/bin/sh\nsleep {before}\n{} \"$@\"\nstatus=$?\nsleep {after}\nexit $status\n",
            real.display()
        ),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

#[test]
fn dump_and_restore_show_the_bytes_they_move() {
    let c = crate::pg_cluster::Cluster::start();
    c.psql("postgres", "CREATE DATABASE shop");
    c.psql(
        "shop",
        "CREATE TABLE items AS SELECT g AS id, repeat('x', 20) AS name FROM generate_series(1, 100000) g",
    );
    let s = Scratch::new();
    let dumpall = slow_wrapper(&s, "dumpall", &c.bin().join("pg_dumpall"), "0", "1.5");
    // psql starts reading late: ward has read only part of the file meanwhile.
    let psql = slow_wrapper(&s, "psql", &c.bin().join("psql"), "1.5", "0");
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: pgp\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {conn}, dest: all.sql, compress: none, args: [--clean, --if-exists], program: {dumpall} }}\n  - id: restore\n    needs: [dump]\n    action: pg.restore\n    with: {{ db: {conn}, src: all.sql, force: true, program: {psql} }}\n",
            conn = c.conn()
        ),
    );
    let run = s
        .ward()
        .env("WARD_PROGRESS_INTERVAL_MS", "500")
        .args(["run", "--progress", "p.yml"])
        .run()
        .expect_code(0);
    let size = std::fs::metadata(s.path().join("all.sql"))
        .expect("dump")
        .len();
    assert!(size > 2_000_000, "{size}");
    // The dump: bytes so far, no total (and so no ETA).
    let dumping: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("[0/2] dump running "))
        .collect();
    assert!(
        dumping
            .iter()
            .any(|l| l.contains(", dumping, ") && l.ends_with(" MB")),
        "{}",
        run.stdout
    );
    // The restore: bytes read of the file's size, part of it.
    let restoring = run
        .stdout
        .lines()
        .find(|l| l.starts_with("[1/2] restore running 1s, restoring, "))
        .unwrap_or_else(|| panic!("{}", run.stdout));
    let pct: u64 = restoring
        .rsplit_once('(')
        .and_then(|(_, p)| p.split_once('%'))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or_else(|| panic!("{restoring}"));
    assert!(pct < 100, "{restoring}");
    assert_eq!(c.psql("shop", "SELECT count(*) FROM items"), "100000");
}

#[test]
fn a_compensation_after_a_failure_has_its_live_line_too() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: undo\nsteps:\n  - id: a\n    run: \"true\"\n    compensate: undo\n  - id: b\n    needs: [a]\n    run: \"false\"\n  - id: undo\n    run: \"sleep 1.5\"\n",
    );
    let (code, out) = run_at_terminal(
        s.ward()
            .env("TERM", "xterm")
            .args(["run", "p.yml"])
            .command(),
    );
    assert_eq!(code, 1, "{out}");
    // Done: `a` and `b`; the compensation is counted on top of the run's steps.
    assert!(
        out.contains("[2/3] undo 1s"),
        "no live line for the compensation:\n{out:?}"
    );
    assert!(out.contains(" failed"), "{out:?}");
}

/// A `for_each` step's live line counts its items as they end (done of
/// the list, failed, a rate), without a line per item.
#[test]
fn a_fan_out_step_shows_its_items_done_and_failed_at_a_terminal() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: each\nsteps:\n  - id: each\n    for_each: [a, b, c, d, e, f, g, h]\n    \
         max_parallel: 1\n    run: \"sleep 0.4; test {{ item }} != c\"\n",
    );
    let (code, out) = run_at_terminal(
        s.ward()
            .env("TERM", "xterm")
            .args(["run", "p.yml"])
            .command(),
    );
    assert_eq!(code, 10, "only items failed: {out}");
    let line = out
        .split(['\r', '\n'])
        .find(|l| l.contains("[0/1] each") && l.contains("/8 items") && l.contains("1 failed"))
        .unwrap_or_else(|| panic!("no live line counting the items:\n{out:?}"));
    assert!(line.contains("items/s"), "{line}");
    // Counted, never printed per item while the step runs (the failed
    // step's log, a line per item, is shown after it ends).
    let running = out.split("✘ each failed").next().unwrap_or("");
    assert!(!running.contains("item 3 `c`"), "{out:?}");
}
