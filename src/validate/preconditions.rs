//! Renders the templates of `preconditions:` and types each check, with
//! the place of every bad value (as action parameters are: rendered at the
//! node level first, typed afterwards).

use serde::Deserialize;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{Duration, MinFree, Playbook, Precondition, PreconditionKind};
use crate::procs::{self, ProcMatchList};
use crate::source::Span;
use crate::template::{TemplateContext, Templates};
use crate::yaml::{Node, NodeKind, from_node};

/// How long a `command` precondition may take unless it says.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration(std::time::Duration::from_secs(60));
/// How long a `tcp` precondition waits for a connection unless it says.
pub const DEFAULT_TCP_TIMEOUT: Duration = Duration(std::time::Duration::from_secs(5));

/// A precondition with its templates rendered and its value typed.
#[derive(Clone, Debug)]
pub struct ResolvedPrecondition {
    /// What to check.
    pub check: Check,
    /// Where the entry is written.
    pub span: Span,
}

/// What a precondition checks.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// At least `min` bytes free for an unprivileged user on `path`'s file system.
    FreeSpace {
        /// A path on the file system (relative: to the playbook's folder).
        path: String,
        /// How much must be free.
        min: MinFree,
    },
    /// `path` exists (symlinks followed).
    PathExists(String),
    /// `path` does not exist, in a folder only root or ward's user can write.
    PathAbsent(String),
    /// `argv` exits 0 within `timeout`.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
        /// Its time limit.
        timeout: Duration,
    },
    /// A TCP connection to `host:port` opens within `timeout`.
    Tcp {
        /// Host name or address (without brackets for IPv6).
        host: String,
        /// Port.
        port: u16,
        /// Connect time limit.
        timeout: Duration,
    },
    /// No process matches.
    NotRunning(ProcMatchList),
    /// The machine runs on mains power (or has no battery).
    OnAcPower,
}

impl Check {
    /// The key that names it.
    pub fn kind(&self) -> PreconditionKind {
        match self {
            Check::FreeSpace { .. } => PreconditionKind::FreeSpace,
            Check::PathExists(_) => PreconditionKind::PathExists,
            Check::PathAbsent(_) => PreconditionKind::PathAbsent,
            Check::Command { .. } => PreconditionKind::Command,
            Check::Tcp { .. } => PreconditionKind::Tcp,
            Check::NotRunning(_) => PreconditionKind::NotRunning,
            Check::OnAcPower => PreconditionKind::OnAcPower,
        }
    }

    /// The check in one line, as plans, messages and the state show it:
    /// `free_space /srv/backup >= 10.0G`, `tcp db:5432`.
    pub fn describe(&self) -> String {
        let name = self.kind().name();
        match self {
            Check::FreeSpace { path, min } => format!("{name} {path} >= {min}"),
            Check::PathExists(path) | Check::PathAbsent(path) => format!("{name} {path}"),
            Check::Command { argv, .. } => format!(
                "{name} {}",
                argv.iter()
                    .map(|a| crate::shell::quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Check::Tcp { host, port, .. } if host.contains(':') => {
                format!("{name} [{host}]:{port}")
            }
            Check::Tcp { host, port, .. } => format!("{name} {host}:{port}"),
            Check::NotRunning(list) => format!("{name} {}", procs::describe_list(list)),
            Check::OnAcPower => name.to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreeSpaceDoc {
    path: String,
    min: MinFree,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandDoc {
    argv: Vec<String>,
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpDoc {
    address: String,
    timeout: Option<Duration>,
}

/// Renders and types every precondition; problems go to `diags`, and a
/// precondition with one is left out.
pub(super) fn resolve_all(
    playbook: &Playbook,
    ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Vec<ResolvedPrecondition> {
    playbook
        .preconditions
        .iter()
        .filter_map(|p| resolve(p, playbook, ctx, templates, diags))
        .collect()
}

fn resolve(
    p: &Precondition,
    playbook: &Playbook,
    ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Option<ResolvedPrecondition> {
    let kind = p.kind.value;
    let name = kind.name();
    let mut names = std::collections::HashSet::new();
    templates.node_names(&p.value, &mut names);
    if ctx.reads_unrendered(&names) {
        // The var's own error says why.
        return None;
    }
    let what = || format!("precondition `{name}`");
    let node = match templates.render_node(
        &p.value,
        &ctx.value,
        &ctx.secrets,
        &playbook.source,
        &what,
    ) {
        Ok((n, tainted)) if tainted.is_empty() => n,
        Ok((_, tainted)) => {
            for (span, used) in tainted {
                diags.push(
                    Diagnostic::error(
                        "secret-in-parameter",
                        span,
                        format!(
                            "precondition `{name}` uses {}; preconditions are shown and recorded with the run",
                            used.describe()
                        ),
                    )
                    .with_help(
                        "check with a `command` that reads the secret from a file or its environment",
                    ),
                );
            }
            return None;
        }
        Err(errors) => {
            diags.extend(errors);
            return None;
        }
    };
    let before = diags.error_count();
    let check = typed(kind, &node, diags)?;
    for (span, message, help) in problems(&check, &node) {
        diags.push(
            Diagnostic::error(
                "invalid-value",
                span,
                format!("precondition `{name}`: {message}"),
            )
            .with_help(help),
        );
    }
    (diags.error_count() == before).then_some(ResolvedPrecondition {
        check,
        span: p.span,
    })
}

/// Reads a typed value, reporting a shape error at its place.
fn read<T: serde::de::DeserializeOwned>(
    kind: PreconditionKind,
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<T> {
    match from_node::<T>(node) {
        Ok(v) => Some(v),
        Err(e) => {
            let message = match e.code {
                "unknown-key" | "missing-key" | "duplicate-key" => {
                    format!("{} in precondition `{}`", e.message, kind.name())
                }
                _ => format!("invalid precondition `{}`: {}", kind.name(), e.message),
            };
            let help = e
                .help
                .unwrap_or_else(|| crate::parse::precondition_example(kind).to_owned());
            diags.push(
                Diagnostic::error(e.code, e.span.unwrap_or(node.span), message).with_help(help),
            );
            None
        }
    }
}

fn typed(kind: PreconditionKind, node: &Node, diags: &mut Diagnostics) -> Option<Check> {
    let is_map = matches!(node.kind, NodeKind::Map(_));
    Some(match kind {
        PreconditionKind::FreeSpace => {
            let d: FreeSpaceDoc = read(kind, node, diags)?;
            Check::FreeSpace {
                path: d.path,
                min: d.min,
            }
        }
        PreconditionKind::PathExists => Check::PathExists(read(kind, node, diags)?),
        PreconditionKind::PathAbsent => Check::PathAbsent(read(kind, node, diags)?),
        PreconditionKind::Command if is_map => {
            let d: CommandDoc = read(kind, node, diags)?;
            Check::Command {
                argv: d.argv,
                timeout: d.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            }
        }
        PreconditionKind::Command => Check::Command {
            argv: read(kind, node, diags)?,
            timeout: DEFAULT_COMMAND_TIMEOUT,
        },
        PreconditionKind::Tcp => {
            let (address, timeout, at) = if is_map {
                let d: TcpDoc = read(kind, node, diags)?;
                let at = node
                    .as_map()
                    .and_then(|m| m.iter().find(|e| e.key.as_str() == Some("address")))
                    .map_or(node.span, |e| e.value.span);
                (d.address, d.timeout.unwrap_or(DEFAULT_TCP_TIMEOUT), at)
            } else {
                (read(kind, node, diags)?, DEFAULT_TCP_TIMEOUT, node.span)
            };
            match split_address(&address) {
                Ok((host, port)) => Check::Tcp {
                    host,
                    port,
                    timeout,
                },
                Err(message) => {
                    diags.push(
                        Diagnostic::error(
                            "invalid-value",
                            at,
                            format!("precondition `tcp`: {message}"),
                        )
                        .with_help("write `host:port`, e.g. `db.example:5432` or `[::1]:22`"),
                    );
                    return None;
                }
            }
        }
        PreconditionKind::NotRunning => Check::NotRunning(read(kind, node, diags)?),
        PreconditionKind::OnAcPower => {
            if read::<bool>(kind, node, diags)? {
                Check::OnAcPower
            } else {
                diags.push(
                    Diagnostic::error(
                        "invalid-value",
                        node.span,
                        "precondition `on_ac_power: false` checks nothing",
                    )
                    .with_help("write `on_ac_power: true`, or leave the check out"),
                );
                return None;
            }
        }
    })
}

/// `host:port` or `[v6]:port` into its parts.
fn split_address(text: &str) -> Result<(String, u16), String> {
    let t = text.trim();
    let Some((host, port)) = t.rsplit_once(':') else {
        return Err(format!("`{t}` has no port"));
    };
    let host = match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .ok_or_else(|| format!("`{t}`: an IPv6 address needs its closing `]`"))?,
        None if host.contains(':') => {
            return Err(format!("`{t}`: write an IPv6 address in brackets"));
        }
        None => host,
    };
    if host.is_empty() {
        return Err(format!("`{t}` has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_owned(), p)),
        _ => Err(format!("`{port}` in `{t}` is not a port (1-65535)")),
    }
}

/// Problems of a typed check: (place, what, what to do).
fn problems(check: &Check, node: &Node) -> Vec<(Span, String, String)> {
    let at = |key: &str| {
        node.as_map()
            .and_then(|m| m.iter().find(|e| e.key.as_str() == Some(key)))
            .map_or(node.span, |e| e.value.span)
    };
    let mut out = Vec::new();
    match check {
        Check::FreeSpace { path, .. } if path.trim().is_empty() => out.push((
            at("path"),
            "`path` is empty".into(),
            "give a path on the file system to check, e.g. the backup folder".into(),
        )),
        Check::PathAbsent(path) if path.trim().is_empty() => out.push((
            node.span,
            "the path is empty".into(),
            "give the path that must not exist, e.g. a restore's marker".into(),
        )),
        Check::PathExists(path) if path.trim().is_empty() => out.push((
            node.span,
            "the path is empty".into(),
            "give the path that must exist, e.g. a mount point".into(),
        )),
        Check::Command { argv, timeout } => {
            let argv_at = if node.as_map().is_some() {
                at("argv")
            } else {
                node.span
            };
            if argv.first().is_none_or(|p| p.trim().is_empty()) {
                out.push((
                    argv_at,
                    "the command is empty".into(),
                    "give the program and its arguments, e.g. `[pg_isready, -h, db]`".into(),
                ));
            }
            if timeout.std().is_zero() {
                out.push((
                    at("timeout"),
                    "`timeout` is 0".into(),
                    "give the command time to run, e.g. `30s`".into(),
                ));
            }
        }
        Check::Tcp { timeout, .. } if timeout.std().is_zero() => out.push((
            at("timeout"),
            "`timeout` is 0".into(),
            "give the connection time, e.g. `3s`".into(),
        )),
        Check::NotRunning(list) => {
            if list.0.is_empty() {
                out.push((
                    node.span,
                    "names no process".into(),
                    "give a process name or a matcher `{name, cmdline, user, pidfile}`".into(),
                ));
            }
            for p in procs::list_problems("not_running", list) {
                let message = p
                    .message
                    .strip_prefix("`not_running`: ")
                    .map_or_else(|| p.message.clone(), str::to_owned);
                out.push((node.span, message, p.help.to_owned()));
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_address("db:5432"), Ok(("db".into(), 5432)));
        assert_eq!(split_address("[::1]:22"), Ok(("::1".into(), 22)));
        assert!(split_address("db").is_err());
        assert!(split_address("::1:22").is_err());
        assert!(split_address("db:0").is_err());
        assert!(split_address("db:http").is_err());
        assert!(split_address(":22").is_err());
    }
}
