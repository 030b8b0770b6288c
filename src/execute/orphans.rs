//! Step processes left behind: by a ward that died, and by a step that
//! ended but started something in the background.
//!
//! A `kill -9` or a crash of ward does not stop its children: they run in
//! their own process groups. Before a crashed run is resumed, its leftovers
//! must be stopped, or the old and the new attempt of a step would run at
//! once. Every child ward starts carries `WARD_RUN_ID=<run>` in its
//! environment, so leftovers are found through /proc without trusting
//! recorded pids (which the kernel may have reused).
//!
//! Within a run, a step that ran `(cmd &)` or `setsid cmd &` escapes its
//! process group. ward is the child subreaper of its steps, so such a
//! process is handed to ward when its parent ends; it also carries
//! `WARD_ATTEMPT_ID=<run>/<step>/<n>`, which tells which attempt left it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// The step id in a process's `WARD_ATTEMPT_ID=<run>/<step>/<n>`, if any.
fn attempt_step(environ: &[u8]) -> Option<String> {
    let prefix = format!("{ATTEMPT_VAR}=");
    let var = environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(prefix.as_bytes()))?;
    let text = std::str::from_utf8(var).ok()?;
    let mut parts = text.split('/');
    parts.next()?;
    parts.next().map(str::to_owned)
}

/// Process groups whose processes carry `WARD_RUN_ID=run_id`, except those
/// started by a step for which `keep(step_id)` holds (a service that
/// `service.start` started must survive a resume of its run).
pub fn find(run_id: &str, keep: &dyn Fn(&str) -> bool) -> BTreeSet<i32> {
    let needle = format!("WARD_RUN_ID={run_id}");
    let my_group = group_and_session(std::process::id() as i32).map(|(group, _)| group);
    let mut groups = BTreeSet::new();
    for (pid, dir) in crate::procs::other_processes() {
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
            || attempt_step(&environ).is_some_and(|step| keep(&step))
        {
            continue;
        }
        // A group id of 0 is a group led from outside ward's PID
        // namespace: it cannot be signalled from here (0 would mean ward's
        // own group), so it is never collected.
        if let Some((group, _)) = group_and_session(pid)
            && group > 0
            && Some(group) != my_group
        {
            groups.insert(group);
        }
    }
    groups
}

/// Stops every leftover process group of `run_id` (but what steps for
/// which `keep` holds started): SIGTERM, then SIGKILL after `grace`.
/// Returns how many groups it found.
pub fn stop(run_id: &str, grace: Duration, keep: &dyn Fn(&str) -> bool) -> usize {
    let groups = find(run_id, keep);
    for g in &groups {
        if let Some(pgid) = Pid::from_raw(*g) {
            let _ = kill_process_group(pgid, Signal::TERM);
        }
    }
    let deadline = Instant::now() + grace;
    while !find(run_id, keep).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for g in find(run_id, keep) {
        if let Some(pgid) = Pid::from_raw(g) {
            let _ = kill_process_group(pgid, Signal::KILL);
        }
    }
    // Give the kernel a moment to reap, so nothing writes after we resume.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !find(run_id, keep).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    groups.len()
}

/// The environment variable that names an attempt: `<run>/<step>/<n>`.
/// Every process an attempt starts inherits it (unless it clears its
/// environment), so what the attempt left behind can be told apart from
/// the processes of other steps running at the same time.
pub const ATTEMPT_VAR: &str = "WARD_ATTEMPT_ID";

/// The value of [`ATTEMPT_VAR`] for one attempt.
pub fn attempt_id(run_id: &str, step: &str, attempt: u32) -> String {
    format!("{run_id}/{step}/{attempt}")
}

/// A process an attempt left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftBehind {
    /// Its pid.
    pub pid: i32,
    /// Its name (`comm`).
    pub name: String,
}

impl std::fmt::Display for LeftBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// One process's `state`, `ppid`, `pgrp` and `session` from /proc/PID/stat
/// (the name may hold spaces and parentheses, so parse after the last `)`).
fn stat(pid: i32) -> Option<(char, i32, i32, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let mut num = || fields.next()?.parse::<i32>().ok();
    Some((state, num()?, num()?, num()?))
}

/// The process group and session of `pid`, read from /proc rather than
/// asked with getpgid/getsid: in a container whose session or group is led
/// from outside its PID namespace the kernel reports them as 0, which
/// rustix's wrappers treat as impossible (they assert a positive id).
fn group_and_session(pid: i32) -> Option<(i32, i32)> {
    stat(pid).map(|(_, _, group, session)| (group, session))
}

fn carries(dir: &Path, needle: &str) -> bool {
    std::fs::read(dir.join("environ")).is_ok_and(|environ| {
        environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
    })
}

/// ward's direct children (its own and the orphans handed to it), from
/// /proc/self/task/*/children; `None` where the kernel does not offer it.
fn direct_children() -> Option<Vec<i32>> {
    let mut pids = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).ok()?;
        pids.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    Some(pids)
}

/// Live processes whose environment carries `WARD_ATTEMPT_ID=attempt`.
pub fn left_behind(attempt: &str) -> Vec<LeftBehind> {
    let needle = format!("{ATTEMPT_VAR}={attempt}");
    let mut found = Vec::new();
    for (pid, dir) in crate::procs::other_processes() {
        if !carries(&dir, &needle) || !crate::procs::running(pid) {
            continue;
        }
        let name = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end().to_owned())
            .unwrap_or_else(|_| "?".into());
        found.push(LeftBehind { pid, name });
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// Cheap first look, a few small /proc reads (the executor makes it on its
/// own thread, for every attempt): when the attempt's process ended, the
/// topmost of anything it left running was handed to ward (its reaper). If
/// no live child of ward carries the attempt's marker, nothing was left,
/// and the whole of /proc need not be read. True when something may be
/// left (or the kernel does not list children).
pub fn maybe_left_behind(attempt: &str) -> bool {
    let needle = format!("{ATTEMPT_VAR}={attempt}");
    direct_children().is_none_or(|children| {
        children.iter().any(|&pid| {
            crate::procs::running(pid) && carries(&PathBuf::from(format!("/proc/{pid}")), &needle)
        })
    })
}

/// Stops what an attempt left running (its step's process has ended):
/// SIGTERM, then SIGKILL to what is still there after `grace`; reaps those
/// that were handed to ward. Returns what it found, for the log. The
/// executor calls it only after [`maybe_left_behind`] said yes, so it goes
/// straight to the full look.
pub fn stop_left_behind(attempt: &str, grace: Duration) -> Vec<LeftBehind> {
    let found = left_behind(attempt);
    if found.is_empty() {
        reap_orphans();
        return found;
    }
    let signal = |sig: Signal| {
        for p in left_behind(attempt) {
            if let Some(pid) = Pid::from_raw(p.pid) {
                // ESRCH (it ended meanwhile) is fine.
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
    };
    signal(Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        reap_orphans();
        if left_behind(attempt).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !left_behind(attempt).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    reap_orphans();
    reap_these(&found);
    found
}

/// Waits for each of `stopped` that was handed to ward to be reaped, so
/// that the next step cannot see it (a zombie still answers `kill -0`).
/// [`reap_orphans`] finds them through /proc/*/task/*/children, which the
/// kernel documents as unreliable while children change, and a process
/// just reparented to ward can be missing from it: these pids are known,
/// so they are waited for by pid. One that is not ward's child is left to
/// its parent; each gets at most a second.
fn reap_these(stopped: &[LeftBehind]) {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let deadline = Instant::now() + Duration::from_secs(1);
    for p in stopped {
        while Instant::now() < deadline {
            match stat(p.pid) {
                // Gone entirely.
                None => break,
                Some(('Z', ppid, _, _)) if ppid == me => {
                    if let Some(pid) = Pid::from_raw(p.pid) {
                        let _ = rustix::process::waitpid(
                            Some(pid),
                            rustix::process::WaitOptions::NOHANG,
                        );
                    }
                }
                // Someone else's zombie: its parent reaps it.
                Some(('Z', _, _, _)) => break,
                // Still ending.
                Some(_) => {}
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Makes ward the reaper of its orphaned descendants: a process a step
/// started in the background (`(cmd &)`, `setsid cmd`) is handed to ward,
/// not to init, when its parent ends, so ward can find and wait for it.
pub fn become_subreaper() {
    // Not fatal: without it, leftovers are still found by their marker;
    // only their exit status is collected by init instead.
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
}

/// Waits for ward's children that ended and that ward did not start
/// itself (orphans handed to it as their reaper), so they do not stay
/// zombies. Children ward started are left to their own waits: each is a
/// process group leader in ward's session (it is started with its own
/// group and, being a leader, cannot leave the session), while an orphan
/// is in another group (`(cmd &)`) or another session (`setsid`).
pub fn reap_orphans() {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let my_session = group_and_session(me).map_or(0, |(_, session)| session);
    let candidates = direct_children().unwrap_or_else(|| {
        crate::procs::other_processes()
            .map(|(pid, _)| pid)
            .collect()
    });
    for pid in candidates {
        let Some((state, ppid, pgrp, session)) = stat(pid) else {
            continue;
        };
        if state != 'Z' || ppid != me || (pgrp == pid && session == my_session) {
            continue;
        }
        if let Some(p) = Pid::from_raw(pid) {
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_is_read_from_the_attempt_marker() {
        let environ = b"PATH=/bin\0WARD_ATTEMPT_ID=20261201-0000-abcd/start-scheduler/3\0X=1\0";
        assert_eq!(attempt_step(environ).as_deref(), Some("start-scheduler"));
        assert_eq!(attempt_step(b"PATH=/bin\0WARD_RUN_ID=r\0"), None);
    }

    #[test]
    fn a_background_child_of_this_process_is_found_by_its_marker() {
        let marker = attempt_id("unit-test", &format!("s{}", std::process::id()), 1);
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(ATTEMPT_VAR, &marker)
            .spawn()
            .expect("sleep");
        // Until the child's exec is complete, /proc shows the parent's name
        // or an empty environment; look again for a while (bounded).
        let mut found = left_behind(&marker);
        for _ in 0..400 {
            if !found.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            found = left_behind(&marker);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pid, child.id() as i32);
        assert_eq!(found[0].name, "sleep");
        assert!(left_behind(&marker).is_empty());
    }
}
