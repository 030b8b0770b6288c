//! The fence's second half: before a rehearsal runs anything, every step
//! that still runs as written must write only inside the sandbox.
//!
//! A target variable that the playbook forgot to list in
//! `rehearse.targets` (or a path written as a literal) would otherwise make
//! the "rehearsal" restore into production. So each action step's written
//! paths ([`crate::action::ActionParams::writes`], plus `rotate`'s folder,
//! which it deletes from) must lie inside a sandbox folder, and each
//! PostgreSQL step must connect to the sandbox's cluster (its socket
//! folder and port, no `hostaddr`/`service` that could lead elsewhere).
//! `run:`/`cmd:` steps cannot be known: they are listed as not fenced, for
//! the output to say so loudly.

use std::path::{Component, Path, PathBuf};

use crate::action::{
    PgConn, PgDumpParams, PgDumpallParams, PgQueryParams, PgRestoreParams, PgSnapshotParams,
    RotateParams,
};
use crate::plan::{Plan, ResolvedBody};

use super::{Fenced, Sandbox};

/// A step that would reach outside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escape {
    /// The step id.
    pub step: String,
    /// What it would reach, and what to do.
    pub why: String,
}

/// What the guard found: steps that escape (the rehearsal is refused) and
/// `run:`/`cmd:` steps whose writes nobody can know (they run as written).
#[derive(Debug, Default)]
pub struct Guarded {
    /// Steps refused.
    pub escapes: Vec<Escape>,
    /// `run:`/`cmd:` steps that run unfenced.
    pub unfenced: Vec<String>,
}

/// `path` with `.` and `..` taken out, without asking the file system (the
/// path may not exist yet; the sandbox's folders are fresh and hold no
/// symlinks before the run).
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The playbook variable whose value `fits` (the longest such value: the
/// most precise), to name in the advice.
fn var_with(plan: &Plan, fits: impl Fn(&str) -> bool) -> Option<String> {
    plan.vars
        .iter()
        .filter_map(|(name, v)| Some((name, v.as_str()?)))
        .filter(|(_, v)| v.len() > 1 && fits(v))
        .max_by_key(|(_, v)| v.len())
        .map(|(name, _)| name.clone())
}

/// The connection of a PostgreSQL action's parameters.
fn conn_of(any: &dyn std::any::Any) -> Option<&PgConn> {
    if let Some(p) = any.downcast_ref::<PgRestoreParams>() {
        return Some(&p.db);
    }
    if let Some(p) = any.downcast_ref::<PgQueryParams>() {
        return Some(&p.db);
    }
    if let Some(p) = any.downcast_ref::<PgSnapshotParams>() {
        return Some(&p.db);
    }
    if let Some(p) = any.downcast_ref::<PgDumpParams>() {
        return Some(&p.db);
    }
    any.downcast_ref::<PgDumpallParams>().map(|p| &p.db)
}

/// Why `conn` is not the sandbox's cluster, if it is not.
fn conn_escape(conn: &PgConn, sandbox: &Sandbox) -> Option<String> {
    let words = match crate::pg::keywords(conn) {
        Ok(w) => w,
        Err(e) => return Some(format!("its connection cannot be read ({e})")),
    };
    let word = |k: &str| {
        words
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let Some(c) = &sandbox.cluster else {
        return Some(
            "it connects to PostgreSQL, but the playbook's `rehearse:` has no `postgres:` \
             section, so the rehearsal has no cluster of its own; add `rehearse.postgres` \
             naming the variables of its host and port"
                .into(),
        );
    };
    for k in ["hostaddr", "service"] {
        if let Some(v) = word(k) {
            return Some(format!(
                "its connection sets `{k}={v}`, which could lead past the sandbox's cluster; \
                 leave `{k}` out"
            ));
        }
    }
    let socket = c.socket.display().to_string();
    let port = c.port.to_string();
    match (word("host"), word("port")) {
        (Some(h), Some(p)) if h == socket && p == port => None,
        (h, p) => Some(format!(
            "it connects to {}:{}, not to the sandbox's cluster ({socket}:{port}); give its \
             `db.host` and `db.port` as the variables named in `rehearse.postgres`",
            h.unwrap_or("the default host ($PGHOST)"),
            p.unwrap_or("the default port ($PGPORT)")
        )),
    }
}

/// Checks the fenced plan (see the module's notes). `fenced` are the steps
/// [`super::fence`] replaced; they are not checked.
pub fn check(plan: &Plan, sandbox: &Sandbox, fenced: &[Fenced]) -> Guarded {
    let work_dir = PathBuf::from(&plan.facts.playbook_dir);
    let inside: Vec<PathBuf> = sandbox
        .targets
        .iter()
        .map(|(_, d)| lexical(&work_dir.join(d)))
        .collect();
    let mut out = Guarded::default();
    for step in &plan.steps {
        if fenced.iter().any(|f| f.id == step.id) {
            continue;
        }
        let p = match &step.body {
            ResolvedBody::Action(p) => p,
            ResolvedBody::Run(_) | ResolvedBody::Cmd(_) => {
                out.unfenced.push(step.id.clone());
                continue;
            }
        };
        let mut written = p.writes();
        if let Some(r) = p.as_any().downcast_ref::<RotateParams>() {
            written.push(r.dir.clone());
        }
        for path in &written {
            let full = lexical(&work_dir.join(path));
            if inside.iter().any(|d| full.starts_with(d)) {
                continue;
            }
            let hint = match var_with(plan, |v| path.starts_with(v)) {
                Some(var) => format!("add `{var}` to `rehearse.targets`"),
                None => "give that path through a variable and list the variable in \
                         `rehearse.targets`, or list the step in `rehearse.fence`"
                    .into(),
            };
            out.escapes.push(Escape {
                step: step.id.clone(),
                why: format!(
                    "{} writes {}, which is outside the sandbox: {hint}",
                    p.action(),
                    full.display()
                ),
            });
        }
        if let Some(conn) = conn_of(p.as_any())
            && let Some(why) = conn_escape(conn, sandbox)
        {
            let host = crate::pg::keywords(conn)
                .ok()
                .and_then(|w| w.into_iter().find(|(k, _)| k == "host"))
                .map(|(_, v)| v);
            let hint = match host.and_then(|h| var_with(plan, |v| v == h)) {
                Some(v) => format!(" (its host comes from `{v}`: name it in `rehearse.postgres`)"),
                None => String::new(),
            };
            out.escapes.push(Escape {
                step: step.id.clone(),
                why: format!("{}: {why}{hint}", p.action()),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_cannot_climb_out_of_a_target() {
        let t = Path::new("/s/targets/dest");
        assert!(!lexical(&t.join("../../../etc")).starts_with(t));
        assert!(lexical(&t.join("./a/../b")).starts_with(t));
        assert!(!lexical(Path::new("/s/targets/dest-other")).starts_with(t));
    }
}
