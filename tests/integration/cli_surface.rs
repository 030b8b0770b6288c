//! The command line's own surface: shell completions, the manual page,
//! `--help`'s exit codes and environment, `--version`'s commit, and `-v`.

use std::process::Command;

use crate::harness::{Scratch, repo_root, ward};

/// The subcommands, as `ward --help` lists them (so a new one is covered
/// without touching this file).
fn subcommands() -> Vec<String> {
    let help = ward().arg("--help").run().expect_code(0).stdout;
    let listed: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .expect("`ward --help` has a Commands section")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|name| name != "help")
        .collect();
    for known in ["validate", "run", "resume", "status", "completions", "man"] {
        assert!(listed.iter().any(|s| s == known), "{known} in {listed:?}");
    }
    listed
}

/// True when `program` can be started here.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_subcommand_and_state() {
    let subcommands = subcommands();
    for (shell, state) in [
        ("bash", "--state"),
        ("zsh", "--state"),
        ("fish", "-l state"),
    ] {
        let script = ward()
            .args(["completions", shell])
            .run()
            .expect_code(0)
            .stdout;
        assert!(script.contains(state), "{shell}: no `{state}`");
        let verbose = state.replace("state", "verbose");
        assert!(script.contains(&verbose), "{shell}: no `{verbose}`");
        for sub in &subcommands {
            assert!(
                script.contains(sub.as_str()),
                "{shell} completion lacks `{sub}`"
            );
        }
    }
    ward().args(["completions", "tcsh"]).run().expect_code(2);
}

#[test]
fn the_bash_completion_loads_and_completes_subcommands_and_flags() {
    if !have("bash") {
        eprintln!("skipped: no bash");
        return;
    }
    let s = Scratch::new();
    let script = ward()
        .args(["completions", "bash"])
        .run()
        .expect_code(0)
        .stdout;
    let file = s.write("ward.bash", &script);
    // The completion function run the way bash runs it on <Tab>.
    let complete = |words: &str| {
        let out = Command::new("bash")
            .arg("--norc")
            .arg("-c")
            .arg(format!(
                "source {}; complete -p ward; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
                 COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
                 _ward ward \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                file.display()
            ))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let subs = complete("ward re");
    assert!(subs.starts_with("complete "), "{subs}");
    assert!(subs.contains("-F _ward ward"), "{subs}");
    assert!(subs.lines().any(|l| l == "resume"), "{subs}");
    let flags = complete("ward resume --");
    for flag in ["--last", "--state", "--allow-changed", "--verbose"] {
        assert!(flags.lines().any(|l| l == flag), "{flag} in {flags}");
    }
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand() {
    let page = ward().arg("man").run().expect_code(0).stdout;
    assert!(page.contains(".TH ward 1"), "{page}");
    assert!(page.contains(".SH SUBCOMMANDS"));
    assert!(
        page.contains("Exit codes"),
        "the --help epilogue is in the page"
    );
    for sub in subcommands() {
        assert!(
            page.contains(&format!("ward\\-{sub}(1)")),
            "page lacks ward-{sub}(1)"
        );
    }
    if have("groff") {
        let s = Scratch::new();
        let file = s.write("ward.1", &page);
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&file)
            .output()
            .expect("groff runs");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "groff warns about the page"
        );
    }
}

#[test]
fn man_out_writes_one_page_per_subcommand_and_no_temp_files() {
    let s = Scratch::new();
    let dir = s.path().join("man/man1");
    ward().args(["man", "--out"]).arg(&dir).run().expect_code(0);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the folder was created")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = subcommands()
        .iter()
        .map(|s| format!("ward-{s}.1"))
        .collect();
    expected.push("ward.1".to_owned());
    expected.sort();
    assert_eq!(names, expected);
    let run = std::fs::read_to_string(dir.join("ward-run.1")).expect("ward-run.1");
    assert!(run.contains(".TH ward-run 1"), "{run}");
    assert!(run.contains("\\-\\-if\\-due"), "{run}");
    // Written again over the old pages (a reinstall) without trouble.
    ward().args(["man", "--out"]).arg(&dir).run().expect_code(0);
    assert_eq!(
        std::fs::read_dir(&dir).expect("dir").count(),
        expected.len()
    );
    // A file where the folder should be is an error with a code, not a panic.
    let blocked = s.write("blocked", "");
    let run = ward()
        .args(["man", "--out"])
        .arg(&blocked)
        .run()
        .expect_code(1);
    assert!(run.stderr.contains("blocked"), "{}", run.stderr);
}

#[test]
fn help_lists_every_exit_code_and_the_environment() {
    let help = ward().arg("--help").run().expect_code(0).stdout;
    let codes = help
        .split("Exit codes:\n")
        .nth(1)
        .expect("an Exit codes section");
    for (code, _) in ward::error::exit::ALL {
        assert!(
            codes
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{code} "))),
            "exit {code} missing from --help"
        );
    }
    for var in ["WARD_STATE", "NO_COLOR", "WARD_NOW", "WARD_KILL_GRACE"] {
        assert!(help.contains(var), "{var} missing from --help");
    }
    assert!(help.contains("Examples:"));
    // `-h` stays short.
    let short = ward().arg("-h").run().expect_code(0).stdout;
    assert!(!short.contains("Exit codes:"), "{short}");
    for sub in ["run", "resume", "plan"] {
        let help = ward().args([sub, "--help"]).run().expect_code(0).stdout;
        assert!(
            help.contains(&format!("Examples:\n  ward {sub} ")),
            "{sub} --help:\n{help}"
        );
    }
}

#[test]
fn version_names_the_commit_when_built_from_git() {
    let version = ward().arg("--version").run().expect_code(0).stdout;
    let expected = format!("ward {}", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version}");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(repo_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    // As build.rs: only a checkout whose top is this crate counts.
    let top = git(&["rev-parse", "--show-toplevel"])
        .and_then(|t| std::fs::canonicalize(t).ok())
        .filter(|t| Some(t) == std::fs::canonicalize(repo_root()).ok().as_ref());
    match top.and_then(|_| git(&["rev-parse", "--short", "HEAD"])) {
        Some(hash) => {
            assert!(
                version.starts_with(&format!("{expected} ({hash}")),
                "`{}` does not name HEAD {hash}",
                version.trim()
            );
        }
        // A tarball or no git: the plain version.
        _ => assert_eq!(version.trim(), expected),
    }
}

/// Fails at `b` until `flag` exists.
const FAILS_UNTIL_FLAG: &str = "\
ward: 1
name: verbose
steps:
  - id: a
    run: echo a >> a.out
  - id: b
    needs: [a]
    run: test -e flag
  - id: c
    needs: [b]
    env:
      DB_PASSWORD: hunter2-secret
    run: echo c
";

#[test]
fn verbose_resume_says_why_a_finished_step_is_not_run_again() {
    let s = Scratch::new();
    s.write("p.yml", FAILS_UNTIL_FLAG);
    let first = s.ward().args(["-v", "run", "p.yml"]).run().expect_code(1);
    assert!(
        first
            .stderr
            .contains("step `c` skipped: needs `b`, which failed"),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("lock `verbose` taken"),
        "{}",
        first.stderr
    );
    assert!(
        first.stderr.contains("$WARD_STATE"),
        "which state and why:\n{}",
        first.stderr
    );
    s.write("flag", "");
    let resumed = s
        .ward()
        .args(["resume", "--last", "-v"])
        .run()
        .expect_code(0);
    let err = &resumed.stderr;
    assert!(
        err.contains("resume: step `a` is not run again: recorded succeeded"),
        "{err}"
    );
    assert!(
        err.contains("resume: step `b` will run: recorded failed"),
        "{err}"
    );
    assert!(err.contains("0 of 3 steps differ"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "a secret in the diagnostics:\n{err}"
    );
    assert_eq!(s.read("a.out"), "a\n", "`a` ran once");
    // -vv adds detail; the fingerprint checks are debug level.
    let s2 = Scratch::new();
    s2.write("p.yml", FAILS_UNTIL_FLAG);
    let quiet = s2.ward().args(["run", "p.yml"]).run().expect_code(1);
    s2.write("flag", "");
    let plain = s2.ward().args(["resume", "--last"]).run().expect_code(0);
    for out in [&quiet.stderr, &plain.stderr] {
        assert!(!out.contains("INFO"), "without -v nothing extra:\n{out}");
        assert!(!out.contains("not run again"), "{out}");
    }
}

#[test]
fn very_verbose_shows_the_fingerprint_checks() {
    let s = Scratch::new();
    s.write("p.yml", FAILS_UNTIL_FLAG);
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    s.write("flag", "");
    let resumed = s
        .ward()
        .args(["-vv", "resume", "--last"])
        .run()
        .expect_code(0);
    assert!(
        resumed
            .stderr
            .contains("step `a` has the fingerprint the run recorded"),
        "{}",
        resumed.stderr
    );
    assert!(resumed.stderr.contains("DEBUG"), "{}", resumed.stderr);
}

#[test]
fn verbose_says_whether_a_scheduled_run_is_due_and_what_preconditions_found() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: nightly\nschedule: \"0 2 * * *\"\npreconditions:\n  - path_exists: .\n  \
         - command: [sh, -c, \"test -n sekrit-token\"]\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    let first = s
        .ward()
        .args(["-v", "run", "--if-due", "--no-jitter", "p.yml"])
        .run()
        .expect_code(0);
    let err = &first.stderr;
    assert!(err.contains("--if-due: due:"), "{err}");
    assert!(err.contains("precondition path_exists: passed"), "{err}");
    assert!(err.contains("precondition command: passed"), "{err}");
    // The command line of a check is not repeated: it may carry a value.
    assert!(!err.contains("sekrit"), "{err}");
    let second = s
        .ward()
        .args(["-v", "run", "--if-due", "--no-jitter", "p.yml"])
        .run()
        .expect_code(0);
    assert!(
        second
            .stderr
            .contains("--if-due: not due: playbook `nightly`")
            && second.stderr.contains("succeeded"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("lock `nightly` taken"),
        "{}",
        second.stderr
    );
}
