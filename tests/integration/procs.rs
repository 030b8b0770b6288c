//! Process matchers of `service.stop`/`service.start`: one instance's
//! processes among another's with the same names (issue 11, item 1).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{Scratch, alive, repo_path, wait_for};
use crate::system::FoSystem;

/// A second instance with the same process names (another folder) runs
/// beside the first: the first's backup, told its command lines, stops and
/// waits only for its own scheduler and agent, and leaves the other's alone.
#[test]
fn a_second_instance_does_not_hold_the_stop_of_the_first() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let other = sys.start_foreign(None);
    let other_agent = other.agent_pid().expect("foreign agent");
    let other_scheduler = other.scheduler_pid().expect("foreign scheduler");
    let own = format!("{}/", sys.root.join("bin").display());
    let run = s
        .ward()
        .arg("run")
        .arg(repo_path("playbooks/fossology/backup-gold.yml"))
        .args(sys.vars(&s.path().join("backup")))
        .args(["--var", &format!("agents_cmdline={own}")])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        alive(&other_agent),
        "the other instance's agent was touched"
    );
    assert!(
        alive(&other_scheduler),
        "the other instance's scheduler was touched"
    );
    assert!(sys.scheduler_up(), "own scheduler started again");
}

/// The FOSSology playbooks told the user: the other instance runs as
/// `nobody`, this one as ward's own user.
#[test]
fn a_fossology_backup_told_its_user_ignores_another_users_instance() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let other = sys.start_foreign(Some("nobody"));
    let other_agent = other.agent_pid().expect("foreign agent");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let run = s
        .ward()
        .arg("run")
        .arg(repo_path("playbooks/fossology/backup-gold.yml"))
        .args(sys.vars(&s.path().join("backup")))
        .args(["--var", &format!("agents_user={me}")])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(alive(&other_agent), "nobody's agent was touched");
    assert!(sys.scheduler_up(), "own scheduler started again");
}

/// The same with a step of its own, by uid and by user name.
#[test]
fn matching_by_user_leaves_another_users_processes_alone() {
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    let other = sys.start_foreign(Some("nobody"));
    let other_agent = other.agent_pid().expect("foreign agent");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    s.write(
        "stop.yml",
        &format!(
            "ward: 1\nname: stop\nsteps:\n  - id: stop\n    action: service.stop\n    with:\n      stop: [\"{}\", --kill]\n      wait_gone: {{ name: [{}, {}], user: \"{me}\" }}\n      timeout: 2m\n",
            sys.scheduler.display(),
            sys.scheduler_name,
            sys.agent_name
        ),
    );
    let run = s.ward().args(["run", "stop.yml"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!sys.scheduler_running());
    assert!(alive(&other_agent), "nobody's agent was touched");

    // By name the other user's agent counts, and holds the step.
    s.write(
        "by-name.yml",
        &format!(
            "ward: 1\nname: by-name\nsteps:\n  - id: stop\n    action: service.stop\n    with: {{ stop: [\"true\"], wait_gone: [{}], timeout: 300ms }}\n",
            sys.agent_name
        ),
    );
    let run = s.ward().args(["run", "by-name.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains(&format!("(pid {other_agent})")),
        "{}",
        run.stderr
    );

    // A user name works as well as a uid.
    s.write(
        "by-user-name.yml",
        &format!(
            "ward: 1\nname: by-user-name\nsteps:\n  - id: stop\n    action: service.stop\n    with: {{ stop: [\"true\"], wait_gone: {{ name: {}, user: nobody }}, timeout: 300ms }}\n",
            sys.agent_name
        ),
    );
    let run = s
        .ward()
        .args(["run", "by-user-name.yml"])
        .run()
        .expect_code(1);
    assert!(
        run.stderr.contains(&format!("(pid {other_agent})")),
        "{}",
        run.stderr
    );
}

/// Writes an executable script.
fn script(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// `pidfile`: the scheduler dies at once, its agent (reparented) finishes
/// its work a moment later. The tree recorded before the stop still holds
/// the agent, so the step waits for it; a process with the same name
/// outside the tree does not count.
#[test]
fn a_pidfile_tree_recorded_before_the_stop_waits_for_reparented_agents() {
    let s = Scratch::new();
    let tag = format!("{:04x}", fastrand::u16(..));
    let agent_name = format!("agent_{tag}");
    let agent = s.path().join(&agent_name);
    std::fs::copy("/bin/sleep", &agent).expect("agent");
    let pidfile = s.path().join("sched.pid");
    let agent_pidfile = s.path().join("agent.pid");
    let sched = s.path().join(format!("sched_{tag}"));
    script(
        &sched,
        &format!(
            "#!/bin/bash\necho $$ > {p}\n{a} 3 &\necho $! > {ap}\nwait\n",
            p = pidfile.display(),
            a = agent.display(),
            ap = agent_pidfile.display()
        ),
    );
    let mut scheduler = Command::new(&sched).spawn().expect("scheduler");
    assert!(wait_for(10, || std::fs::read_to_string(&agent_pidfile)
        .is_ok_and(|p| p.ends_with('\n'))));
    let agent_pid = std::fs::read_to_string(&agent_pidfile)
        .expect("agent pid")
        .trim()
        .to_owned();
    // Not in the tree: same name, never ends on its own.
    let mut outsider = Command::new(&agent).arg("300").spawn().expect("outsider");
    s.write(
        "stop.yml",
        &format!(
            "ward: 1\nname: stop\nsteps:\n  - id: stop\n    action: service.stop\n    with: {{ stop: [kill, \"{}\"], wait_gone: {{ name: {agent_name}, pidfile: \"{}\" }}, timeout: 2m }}\n",
            scheduler.id(),
            pidfile.display()
        ),
    );
    // Reap the scheduler once killed, so that it is gone rather than a zombie.
    let reaper = std::thread::spawn(move || scheduler.wait());
    let run = s.ward().args(["run", "stop.yml"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !alive(&agent_pid),
        "the step ended while the reparented agent was still at work"
    );
    assert!(alive(&outsider.id().to_string()));
    let log = s
        .ward()
        .args(["log", "last", "stop"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(log.contains("1 descendant(s) recorded"), "{log}");
    reaper.join().expect("join").expect("reap");
    outsider.kill().expect("kill");
    outsider.wait().expect("reap");
}

/// `wait_up` with a pid file: a launcher named like the daemon that forks
/// and exits (its fork keeps the name) does not count; the daemon whose
/// pid the file holds does.
#[test]
fn wait_up_with_a_pidfile_is_not_fooled_by_the_launcher() {
    let s = Scratch::new();
    let name = format!("daemon_{:04x}", fastrand::u16(..));
    let launcher = s.path().join(&name);
    let pidfile = s.path().join("daemon.pid");
    let leftover = s.path().join("leftover.pid");
    // The launcher's fork lingers under the daemon's name; the daemon
    // itself fails to start, so nothing writes the pid file.
    script(
        &launcher,
        &format!(
            "#!/bin/bash\n( echo $BASHPID > {l}; while true; do sleep 0.2; done ) > /dev/null 2>&1 &\nexit 0\n",
            l = leftover.display()
        ),
    );
    let kill_leftover = || {
        if let Ok(pid) = std::fs::read_to_string(&leftover) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    };
    s.write(
        "by-name.yml",
        &format!(
            "ward: 1\nname: by-name\nsteps:\n  - id: start\n    action: service.start\n    with: {{ start: [\"{}\"], wait_up: {name}, timeout: 5s }}\n",
            launcher.display()
        ),
    );
    // By name alone the launcher's fork passes for the daemon.
    s.ward().args(["run", "by-name.yml"]).run().expect_code(0);
    kill_leftover();
    s.write(
        "by-pidfile.yml",
        &format!(
            "ward: 1\nname: by-pidfile\nsteps:\n  - id: start\n    action: service.start\n    with: {{ start: [\"{}\"], wait_up: {{ name: {name}, pidfile: \"{}\" }}, timeout: 1s }}\n",
            launcher.display(),
            pidfile.display()
        ),
    );
    let run = s
        .ward()
        .args(["run", "by-pidfile.yml"])
        .run()
        .expect_code(1);
    kill_leftover();
    assert!(
        run.stderr.contains(&format!(
            "process `{{name: {name}, pidfile: {}}}` is not running 1s after",
            pidfile.display()
        )),
        "{}",
        run.stderr
    );

    // A launcher that starts the daemon and writes its pid file passes.
    script(
        &launcher,
        &format!(
            "#!/bin/bash\n( echo $BASHPID > {p}; exec -a {name} sleep 300 ) > /dev/null 2>&1 &\nexit 0\n",
            p = pidfile.display()
        ),
    );
    let run = s.ward().args(["run", "by-pidfile.yml"]).run();
    let daemon = std::fs::read_to_string(&pidfile).unwrap_or_default();
    if !daemon.trim().is_empty() {
        let _ = Command::new("kill").arg(daemon.trim()).status();
    }
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Every new criterion is checked before the run, with the place and what
/// to give instead.
#[test]
fn matchers_are_validated_with_clear_errors() {
    let s = Scratch::new();
    let p = s.write(
        "bad.yml",
        "ward: 1\nname: bad\nsteps:\n  - id: stop\n    action: service.stop\n    with:\n      stop: [\"true\"]\n      wait_gone: [fo_scheduler, { cmdline: \"\" }, {}, { user: \"a b\", pidfile: run/x.pid }]\n  - id: start\n    action: service.start\n    with: { start: [\"true\"], wait_up: { name: [] } }\n  - id: typo\n    action: service.start\n    with: { start: [\"true\"], wait_up: { cmd: x } }\n",
    );
    let out = s.ward().arg("validate").arg(&p).run().expect_code(2);
    for want in [
        "`wait_gone` item 2 ({cmdline: \"\"}): `cmdline` is empty",
        "`wait_gone` item 3 ({}): the mapping has no criterion",
        "`user` \"a b\" is not a user name or uid",
        "`pidfile` \"run/x.pid\" is not an absolute path",
        "`wait_up`: `name` is an empty list",
        "cmd",
    ] {
        assert!(out.stderr.contains(want), "{want}: {}", out.stderr);
    }

    // A user that does not exist is found at run time, named.
    s.write(
        "nouser.yml",
        "ward: 1\nname: nouser\nsteps:\n  - id: stop\n    action: service.stop\n    with: { stop: [\"true\"], wait_gone: { name: x, user: no-such-user-ward } }\n",
    );
    let run = s.ward().args(["run", "nouser.yml"]).run().expect_code(1);
    assert!(
        run.stderr
            .contains("user `no-such-user-ward` is not in /etc/passwd"),
        "{}",
        run.stderr
    );
}
