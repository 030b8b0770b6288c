//! The guarantee ward relies on: a signal sent to the parent's process
//! group while a child started with `start_by_fork` is still in that group
//! (between its creation and its own `setpgid`) runs the parent's handler
//! in the child, which is harmless, instead of killing the child at exec.
//!
//! The race cannot be forced, so the test makes it likely: in a process
//! group of its own (a copy of this test binary), one thread sends SIGUSR1
//! to the group without pause while another starts children that move to
//! their own groups. Started by posix_spawn (remove the hook to see it),
//! some of them die of SIGUSR1; started by fork, none may.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const CHILD_MODE: &str = "WARD_FORK_TEST_SIGNAL_STORM";
const CHILDREN: usize = 1000;

#[test]
fn a_group_signal_before_exec_does_not_kill_the_child() {
    if std::env::var_os(CHILD_MODE).is_some() {
        storm();
        return;
    }
    // The storm hits every process in the group: give it a group of its own.
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_group_signal_before_exec_does_not_kill_the_child",
            "--nocapture",
        ])
        .env(CHILD_MODE, "1")
        .process_group(0)
        .output()
        .expect("test binary runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn storm() {
    // A handler for SIGUSR1 in this process, as ward has for SIGTERM.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let _usr1 = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
            .expect("SIGUSR1 handler")
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                rustix::process::kill_current_process_group(rustix::process::Signal::USR1)
                    .expect("signal the group");
                sent += 1;
            }
            sent
        })
    };
    let mut killed = 0;
    for _ in 0..CHILDREN {
        let mut cmd = Command::new("true");
        cmd.process_group(0);
        ward_fork::start_by_fork(&mut cmd);
        let status = cmd.status().expect("true runs");
        if status.signal() == Some(rustix::process::Signal::USR1.as_raw()) {
            killed += 1;
        } else {
            assert!(status.success(), "{status}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().expect("sender");
    assert_eq!(
        killed, 0,
        "{killed} of {CHILDREN} children died of SIGUSR1 sent to the group ({sent} sent)"
    );
    eprintln!("{CHILDREN} children, {sent} group signals, none killed");
}
