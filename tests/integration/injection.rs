//! Values that a program would read as options are refused before anything
//! runs: a `src` of `--rsh=sh -c "touch x" h:` must never reach rsync as
//! an option (issue 10, item 2). Real rsync; the payload would create `x`.

use crate::harness::{Run, Scratch};

const PAYLOAD: &str = "--rsh=sh -c \"touch x\" h:";

fn rsync_playbook(s: &Scratch) {
    std::fs::create_dir_all(s.path().join("src")).expect("src");
    s.write(
        "p.yml",
        "ward: 1\nname: inj\nvars:\n  src: src\n  dest: out\nsteps:\n  - id: copy\n    action: rsync\n    with:\n      src: \"{{ src }}\"\n      dest: \"{{ dest }}\"\n",
    );
}

fn assert_refused(run: &Run, s: &Scratch, key: &str, line: u32) {
    assert!(
        run.stderr.contains(&format!("`{key}` starts with `-`")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("p.yml:{line}:")),
        "points at the value: {}",
        run.stderr
    );
    assert!(!s.path().join("x").exists(), "the payload ran");
}

#[test]
fn rsync_src_from_a_var_is_never_an_option() {
    let s = Scratch::new();
    rsync_playbook(&s);
    // With a remote `dest`, rsync would start the "remote shell" `sh -c "touch x"`.
    let run = s
        .ward()
        .args(["run", "p.yml", "--var"])
        .arg(format!("src={PAYLOAD}"))
        .args(["--var", "dest=h:y"])
        .run()
        .expect_code(2);
    assert_refused(&run, &s, "src", 10);
    assert!(
        s.step_states_if_any().is_empty(),
        "nothing was started or recorded"
    );
}

#[test]
fn rsync_dest_from_a_var_is_never_an_option() {
    let s = Scratch::new();
    rsync_playbook(&s);
    let run = s
        .ward()
        .args(["run", "p.yml", "--var", "src=h:y", "--var"])
        .arg(format!("dest={PAYLOAD}"))
        .run()
        .expect_code(2);
    assert_refused(&run, &s, "dest", 11);
}

#[test]
fn rsync_remote_host_that_is_an_option_is_refused() {
    let s = Scratch::new();
    rsync_playbook(&s);
    let run = s
        .ward()
        .args([
            "validate",
            "p.yml",
            "--var",
            "src=me@-oProxyCommand=touch x:/srv",
        ])
        .run()
        .expect_code(2);
    assert!(
        run.stderr.contains("the host in `src` starts with `-`"),
        "{}",
        run.stderr
    );
}

#[test]
fn literal_option_like_path_is_refused_at_validate_with_its_place() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: inj\nsteps:\n  - id: copy\n    action: rsync\n    with:\n      src: src\n      dest: --delete-excluded\n",
    );
    let run = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    assert!(run.stderr.contains("p.yml:8:13"), "{}", run.stderr);
    assert!(
        run.stderr.contains("`dest` starts with `-`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("./--delete-excluded"), "{}", run.stderr);
}

#[test]
fn systemctl_unit_from_a_var_is_never_an_option() {
    let s = Scratch::new();
    for (action, line) in [("service.stop", 8), ("service.start", 8)] {
        s.write(
            "p.yml",
            &format!(
                "ward: 1\nname: inj\nvars:\n  unit: fossology\nsteps:\n  - id: svc\n    action: {action}\n    with: {{ unit: \"{{{{ unit }}}}\" }}\n"
            ),
        );
        // `-H host` would make systemctl act on another machine over ssh.
        let run = s
            .ward()
            .args(["run", "p.yml", "--var", "unit=-Hroot@elsewhere"])
            .run()
            .expect_code(2);
        assert!(
            run.stderr.contains("`unit` starts with `-`"),
            "{action}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!("p.yml:{line}:")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn pg_dumpall_args_are_read_as_getopt_reads_them() {
    let s = Scratch::new();
    // Abbreviated long options and short-option clusters are the same
    // options to pg_dumpall: `-cf/tmp/x` writes a file, `--datab` picks a
    // database; `-Ufoo` is only a user name.
    for (arg, flag) in [
        ("-cf/tmp/x", "-f"),
        ("--fil=/tmp/x", "--file"),
        ("-cW", "-W"),
        ("--datab=foo", "--database"),
        ("-dfoo", "-d"),
    ] {
        s.write(
            "p.yml",
            &format!(
                "ward: 1\nname: d\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ dest: out/all.sql.gz, args: [\"{arg}\"] }}\n"
            ),
        );
        let run = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("`{flag}` is not allowed in `args`")),
            "{arg}: {}",
            run.stderr
        );
    }
    s.write(
        "p.yml",
        "ward: 1\nname: d\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: { dest: out/all.sql.gz, args: [\"-Ufoo\", \"--clean\", \"--data-only\"] }\n",
    );
    s.ward().args(["validate", "p.yml"]).run().expect_code(0);
}
