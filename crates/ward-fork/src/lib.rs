//! Makes `std::process::Command` start its child by fork and exec, never
//! by posix_spawn. This is the only crate of ward that may use `unsafe`;
//! ward itself is `#![forbid(unsafe_code)]`.
//!
//! # Why ward needs fork
//!
//! GNU `timeout` sends SIGTERM to ward and then to ward's whole process
//! group. ward answers the first by starting its `when: always`
//! finalizers, each in a process group of its own. A child being started
//! at that moment is still in ward's group until it moves to its own, so
//! it can catch the second, group-wide SIGTERM:
//!
//! - with posix_spawn (what std uses when it can), glibc blocks signals in
//!   the new child, resets every handled signal to its default action and
//!   unblocks them right before exec: the pending SIGTERM then kills the
//!   finalizer the first SIGTERM just started;
//! - with fork, the child keeps ward's handlers until exec, so a signal
//!   caught before it left the group only runs ward's (async-signal-safe)
//!   handler in the child, and the program then starts normally.
//!
//! std uses fork+exec whenever a pre-exec hook is registered, since the hook
//! must run in the child between the two. The hook here does nothing.
//!
//! # What else would force fork, and why not that
//!
//! std also falls back to fork for `uid`, `gid`, `groups`, `chroot`, an
//! explicit `PATH` with a bare program name, or a pidfd request. None is a
//! harmless no-op: `uid` makes a root child drop its supplementary groups;
//! `gid` is a real `setgid` in the child, which changes the real and saved
//! group of a privileged process whose real and effective group differ and
//! fails (so the finalizer would not start) where the group is unmapped in
//! a user namespace; `groups`, `chroot` and pidfds are unstable; the `PATH`
//! rule does not apply to a program given by path. An empty hook changes
//! nothing in the child but the way it is made.

#![deny(missing_docs)]

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd` start its child by fork and exec (see the crate docs).
///
/// The child then costs a fork (about three times a posix_spawn on Linux),
/// and std's lock on the environment is held for the fork.
pub fn start_by_fork(cmd: &mut Command) {
    // SAFETY: `pre_exec` requires the closure to be async-signal-safe and
    // to leave the child in a state where exec is sound, because it runs
    // in the child between fork and exec (where another thread of the
    // parent may have held a lock). An empty closure touches no memory,
    // takes no lock, allocates nothing and calls nothing.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_runs_as_without_the_hook() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo $0 $1", "ward", "fork"]);
        start_by_fork(&mut cmd);
        let out = cmd.output().expect("sh runs");
        assert!(out.status.success());
        assert_eq!(out.stdout, b"ward fork\n");
    }

    #[test]
    fn a_missing_program_is_still_an_error_from_spawn() {
        let mut cmd = Command::new("/nonexistent/ward-fork-test");
        start_by_fork(&mut cmd);
        let err = cmd.spawn().expect_err("no such program");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
