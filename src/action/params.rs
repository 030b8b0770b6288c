//! What several actions share: parameter checks and defaults, and the
//! run's time.

use super::ParamProblem;
use crate::compress::Compression;
pub use crate::pg::PgConn;

/// What is wrong with a connection, for validation: a connection string
/// that does not parse, or a host, user or database that starts with `-`.
pub fn conn_problems(conn: &PgConn) -> Vec<ParamProblem> {
    use crate::pg::{is_conninfo, keywords};
    let words = match keywords(conn) {
        Ok(w) => w,
        Err(e) => {
            return vec![ParamProblem::new("db", e.to_string()).help(
                "give `dbname` as a name or a connection string such as \
                 `dbname=app sslmode=require`, and the password in `db.passfile`",
            )];
        }
    };
    words
        .iter()
        .filter(|(k, v)| {
            matches!(k.as_str(), "host" | "user" | "dbname" | "service") && v.starts_with('-')
        })
        .map(|(k, v)| {
            ParamProblem::new(
                "db",
                format!("`db.{k}` starts with `-`: {v:?} would be read as an option"),
            )
            .help("a host, role or database name cannot start with `-`")
        })
        .chain(
            words
                .iter()
                .filter(|(k, v)| k == "dbname" && is_conninfo(v))
                .map(|_| {
                    ParamProblem::new(
                        "db",
                        "the database name in `db.dbname` is itself a connection string",
                    )
                }),
        )
        .collect()
}

/// What the dump actions check alike: `dest` names a file, `level` suits
/// the compression.
pub fn file_problems(dest: &str, compress: Compression, level: Option<u32>) -> Vec<ParamProblem> {
    let mut out: Vec<ParamProblem> = non_empty("dest", dest).into_iter().collect();
    if dest.ends_with('/') {
        out.push(
            ParamProblem::new("dest", "`dest` must be a file name, not a folder")
                .help("e.g. `/backup/db/dump.sql.gz`"),
        );
    }
    if let Some(level) = level {
        let range = compress.levels();
        if !range.contains(&level) {
            out.push(ParamProblem::new(
                "level",
                format!(
                    "level {level} is not valid for {}: use {}-{}",
                    compress.as_str(),
                    range.start(),
                    range.end()
                ),
            ));
        }
    }
    out
}

/// Default name of the `latest` symlink.
pub fn default_latest() -> String {
    "latest".into()
}

/// Checks a name that must be one path component.
pub fn component_problem(key: &'static str, name: &str) -> Option<super::ParamProblem> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        Some(super::ParamProblem::new(
            key,
            format!("`{key}` must be a plain name inside `dir`, not `{name}`"),
        ))
    } else {
        None
    }
}

/// The run's time (`ward.timestamp`), now if it cannot be read.
pub fn facts_now(facts: &crate::template::RunFacts) -> chrono::NaiveDateTime {
    chrono::NaiveDateTime::parse_from_str(&facts.timestamp, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|_| chrono::Local::now().naive_local())
}

/// A process-match parameter's problems (from [`crate::procs`]) as
/// problems with parameter `key`.
pub fn proc_problems(
    key: &'static str,
    problems: Vec<crate::procs::SpecProblem>,
) -> Vec<super::ParamProblem> {
    problems
        .into_iter()
        .map(|p| super::ParamProblem::new(key, p.message).help(p.help))
        .collect()
}

/// Checks that a path parameter is not empty.
pub fn non_empty(key: &'static str, value: &str) -> Option<super::ParamProblem> {
    value
        .trim()
        .is_empty()
        .then(|| super::ParamProblem::new(key, format!("`{key}` is empty")))
}

/// Checks an argv parameter: not empty, no empty program.
pub fn argv_problem(key: &'static str, argv: &[String]) -> Option<super::ParamProblem> {
    match argv.first() {
        None => Some(
            super::ParamProblem::new(key, format!("`{key}` is an empty command"))
                .help("write e.g. `[/usr/bin/fo_scheduler, --kill]`"),
        ),
        Some(p) if p.trim().is_empty() => Some(super::ParamProblem::new(
            key,
            format!("the program in `{key}` is empty"),
        )),
        _ => None,
    }
}

/// Refuses a value that a program would read as an option. Paths and names
/// reach rsync, systemctl and libpq tools as arguments; one that starts
/// with `-` (`--rsh=sh -c ...`, say, from a `--var`) would run a command.
/// Validation calls this on the rendered value (so a template's result is
/// refused before any step runs), and actions call it again just before
/// they start the program.
pub fn option_like(key: &'static str, value: &str) -> Option<super::ParamProblem> {
    value.starts_with('-').then(|| {
        super::ParamProblem::new(
            key,
            format!("`{key}` starts with `-`: {value:?} would be read as an option"),
        )
        .help(format!(
            "a path or name cannot start with `-`; for a relative path write `./{value}`"
        ))
    })
}

/// As [`option_like`], for a name (a systemd unit) rather than a path.
pub fn name_like_option(key: &'static str, value: &str) -> Option<super::ParamProblem> {
    option_like(key, value)
        .map(|p| super::ParamProblem { help: None, ..p }.help("a name cannot start with `-`"))
}

/// [`name_like_option`] at run time, as the step's error: the last guard
/// before a program starts.
pub fn refuse_option_like(key: &'static str, value: &str) -> Result<(), super::ActionError> {
    match name_like_option(key, value) {
        Some(p) => Err(super::ActionError::new(format!(
            "{}; nothing was run",
            p.message
        ))),
        None => Ok(()),
    }
}

/// Reports the arguments in `args` that a program would read as one of the
/// `forbidden` options (`(flag, why)`), the way getopt reads them: a long
/// option also by an abbreviation (`--fil=x` is `--file=x`) and a short one
/// also inside a cluster (`-cf x` holds `-f`). `short_with_value` lists the
/// short options that take a value, whose rest of the cluster is that value
/// (`-Ufoo` is the user `foo`, not `-f`).
pub fn forbidden_args(
    key: &'static str,
    args: &[String],
    forbidden: &[(&str, &str)],
    short_with_value: &str,
) -> Vec<super::ParamProblem> {
    let refused = |f: &str, why: &str| {
        super::ParamProblem::new(key, format!("`{f}` is not allowed in `{key}`"))
            .help(why.to_owned())
    };
    let mut out = Vec::new();
    for arg in args {
        if let Some(long) = arg.strip_prefix("--") {
            let name = long.split('=').next().unwrap_or(long);
            if name.is_empty() {
                continue;
            }
            if let Some((f, why)) = forbidden.iter().find(|(f, _)| {
                f.strip_prefix("--")
                    .is_some_and(|full| full.starts_with(name))
            }) {
                out.push(refused(f, why));
            }
        } else if let Some(cluster) = arg.strip_prefix('-') {
            for c in cluster.chars() {
                let flag = format!("-{c}");
                if let Some((f, why)) = forbidden.iter().find(|(f, _)| *f == flag) {
                    out.push(refused(f, why));
                    break;
                }
                if short_with_value.contains(c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod forbidden_tests {
    use super::forbidden_args;

    const FORBIDDEN: &[(&str, &str)] = &[("-f", "no"), ("--file", "no"), ("--database", "no")];

    fn refused(args: &[&str]) -> usize {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        forbidden_args("args", &args, FORBIDDEN, "fU").len()
    }

    #[test]
    fn options_are_read_as_getopt_reads_them() {
        for bad in [
            "-f",
            "-f/tmp/x",
            "-cf/tmp/x",
            "--file=/x",
            "--fil=/x",
            "--f",
            "--datab=x",
        ] {
            assert_eq!(refused(&[bad]), 1, "{bad}");
        }
        for fine in [
            "-c",
            "-Ufoo",
            "-U",
            "--clean",
            "--data-only",
            "x-f",
            "--",
            "-",
        ] {
            assert_eq!(refused(&[fine]), 0, "{fine}");
        }
    }
}
