//! Finding processes through /proc (no `ps`, no shell): by name, command
//! line, user and process tree.
//!
//! A library below the actions (it imports nothing from `crate::action`):
//! `service.stop`/`service.start` and the orphan search use it.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// One name or a list of names (`wait_gone: fo_scheduler` or `[a, b]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StringList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StringList, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringList, E> {
                Ok(StringList(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringList(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for StringList {
    fn schema_name() -> Cow<'static, str> {
        "StringList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
}

/// Which processes a `wait_gone`/`wait_up` entry means. A plain string is
/// a name (as before); a mapping narrows the match so that another
/// instance of the same software on the host does not count. Every given
/// criterion must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcSpec {
    /// Process name(s), as in /proc/PID/comm or the base name of argv[0]; any one matches.
    pub name: Option<StringList>,
    /// Text that must occur in the command line (its arguments joined by single spaces), e.g. the instance's config folder.
    pub cmdline: Option<String>,
    /// The user the process runs as (effective uid): a user name from /etc/passwd or a numeric uid.
    pub user: Option<String>,
    /// A pid file: only the pid in it and its descendants match. For `wait_gone` the tree is recorded before the stop command runs, so processes reparented after their parent exits still count.
    pub pidfile: Option<String>,
}

/// One `wait_gone`/`wait_up` entry: a name, or a [`ProcSpec`] mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ProcMatch {
    /// A process name (the form accepted before matchers existed).
    Name(String),
    /// A mapping of criteria.
    Spec(ProcSpec),
}

/// One matcher or a list of them (`wait_gone: fo_scheduler`, `[a, b]`,
/// `{name: [a, b], user: fossy}` or a list mixing names and mappings).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ProcMatchList(pub Vec<ProcMatch>);

struct MatchVisitor;

impl<'de> Visitor<'de> for MatchVisitor {
    type Value = ProcMatch;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a process name or a mapping with name, cmdline, user and/or pidfile")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ProcMatch, E> {
        Ok(ProcMatch::Name(v.to_owned()))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ProcMatch, A::Error> {
        ProcSpec::deserialize(de::value::MapAccessDeserializer::new(map)).map(ProcMatch::Spec)
    }
}

impl<'de> Deserialize<'de> for ProcMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ProcMatch, D::Error> {
        d.deserialize_any(MatchVisitor)
    }
}

impl<'de> Deserialize<'de> for ProcMatchList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ProcMatchList, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ProcMatchList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a process name, a matcher mapping, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ProcMatchList, E> {
                MatchVisitor.visit_str(v).map(|m| ProcMatchList(vec![m]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ProcMatchList, A::Error> {
                MatchVisitor.visit_map(map).map(|m| ProcMatchList(vec![m]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ProcMatchList, A::Error> {
                let mut out = Vec::new();
                while let Some(m) = seq.next_element::<ProcMatch>()? {
                    out.push(m);
                }
                Ok(ProcMatchList(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ProcMatch {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProcMatch".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let spec = g.subschema_for::<ProcSpec>();
        json_schema!({ "anyOf": [ { "type": "string" }, spec ] })
    }
}

impl JsonSchema for ProcMatchList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProcMatchList".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let one = g.subschema_for::<ProcMatch>();
        json_schema!({ "anyOf": [ one.clone(), { "type": "array", "items": one } ] })
    }
}

impl ProcMatch {
    /// The criteria; a plain name is `{name: NAME}`.
    fn spec(&self) -> ProcSpec {
        match self {
            ProcMatch::Name(n) => ProcSpec {
                name: Some(StringList(vec![n.clone()])),
                ..ProcSpec::default()
            },
            ProcMatch::Spec(s) => s.clone(),
        }
    }

    /// `nomos` or `{name: nomos|ojo, cmdline: "/etc/a", user: fossy}` for plans and messages.
    pub fn describe(&self) -> String {
        match self {
            ProcMatch::Name(n) => n.clone(),
            ProcMatch::Spec(s) => {
                let mut parts = Vec::new();
                if let Some(n) = &s.name {
                    parts.push(format!("name: {}", n.0.join("|")));
                }
                if let Some(c) = &s.cmdline {
                    parts.push(format!("cmdline: {c:?}"));
                }
                if let Some(u) = &s.user {
                    parts.push(format!("user: {u}"));
                }
                if let Some(p) = &s.pidfile {
                    parts.push(format!("pidfile: {p}"));
                }
                format!("{{{}}}", parts.join(", "))
            }
        }
    }

    /// What is wrong with this entry; `at` names it in messages
    /// (`wait_gone` item 2, `wait_up`).
    pub fn problems(&self, at: &str) -> Vec<SpecProblem> {
        let s = self.spec();
        let mut out = Vec::new();
        let mut bad = |msg: String, help: &'static str| {
            out.push(SpecProblem {
                message: format!("{at}: {msg}"),
                help,
            });
        };
        if s == ProcSpec::default() {
            bad(
                "the mapping has no criterion, so it would match every process".into(),
                "give at least one of `name`, `cmdline`, `user`, `pidfile`",
            );
        }
        if let Some(names) = &s.name {
            if names.0.is_empty() {
                bad(
                    "`name` is an empty list".into(),
                    "give a process name, or leave `name` out",
                );
            }
            if names.0.iter().any(|n| n.trim().is_empty()) {
                bad(
                    "contains an empty process name".into(),
                    "give the name as in /proc/PID/comm, e.g. `fo_scheduler`",
                );
            }
        }
        if s.cmdline.as_deref().is_some_and(|c| c.trim().is_empty()) {
            bad(
                "`cmdline` is empty, so it would match every command line".into(),
                "give text that only this instance's command lines contain, e.g. its config folder, or leave `cmdline` out",
            );
        }
        if let Some(u) = &s.user
            && (u.trim().is_empty() || u.contains([':', '/']) || u.chars().any(char::is_whitespace))
        {
            bad(
                format!("`user` {u:?} is not a user name or uid"),
                "give a user name such as `fossy` or a numeric uid such as `999`",
            );
        }
        if let Some(p) = &s.pidfile
            && !p.starts_with('/')
        {
            bad(
                format!("`pidfile` {p:?} is not an absolute path"),
                "give the full path of the pid file, e.g. `/run/fossology/fo_scheduler.pid`",
            );
        }
        out
    }
}

/// Something wrong with a [`ProcMatch`]: what, and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// What is wrong, naming the entry.
    pub message: String,
    /// What to do.
    pub help: &'static str,
}

/// Problems of every entry of a list parameter (`wait_gone`); `key` names
/// the parameter in messages.
pub fn list_problems(key: &str, list: &ProcMatchList) -> Vec<SpecProblem> {
    list.0
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            let at = if list.0.len() == 1 {
                format!("`{key}`")
            } else {
                format!("`{key}` item {} ({})", i + 1, m.describe())
            };
            m.problems(&at)
        })
        .collect()
}

/// A process as /proc shows it.
#[derive(Clone, Debug)]
struct Proc {
    pid: i32,
    ppid: i32,
    /// Start time in clock ticks since boot: with the pid, it tells a
    /// recorded process from a later one that reused its pid.
    start: u64,
    zombie: bool,
    uid: Option<u32>,
    comm: String,
    args: Vec<String>,
}

impl Proc {
    fn read(pid: i32, dir: &Path) -> Option<Proc> {
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // The name in parentheses may hold spaces and `)`: fields after the last `)`.
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = *fields.first()?;
        let ppid = fields.get(1)?.parse().ok()?;
        let start = fields.get(19)?.parse().ok()?;
        let uid = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
            });
        let comm = std::fs::read_to_string(dir.join("comm"))
            .map(|c| c.trim_end_matches('\n').to_owned())
            .unwrap_or_default();
        let args = std::fs::read(dir.join("cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Some(Proc {
            pid,
            ppid,
            start,
            zombie: state == "Z" || state == "X",
            uid,
            comm,
            args,
        })
    }

    fn key(&self) -> (i32, u64) {
        (self.pid, self.start)
    }

    fn found(&self) -> Found {
        Found {
            pid: self.pid,
            name: if self.comm.is_empty() {
                self.args.first().cloned().unwrap_or_default()
            } else {
                self.comm.clone()
            },
        }
    }
}

/// Every process but ward itself, by pid.
fn snapshot() -> BTreeMap<i32, Proc> {
    other_processes()
        .filter_map(|(pid, dir)| Proc::read(pid, &dir).map(|p| (pid, p)))
        .collect()
}

/// A matcher with its user resolved to a uid.
#[derive(Clone, Debug)]
struct Resolved {
    names: Option<Vec<String>>,
    cmdline: Option<String>,
    uid: Option<u32>,
    pidfile: Option<String>,
}

impl Resolved {
    fn new(m: &ProcMatch) -> Result<Resolved, ProcError> {
        let s = m.spec();
        let uid = match &s.user {
            None => None,
            Some(u) => Some(match u.parse::<u32>() {
                Ok(n) => n,
                Err(_) => uid_of(u)?,
            }),
        };
        Ok(Resolved {
            names: s.name.map(|n| n.0),
            cmdline: s.cmdline,
            uid,
            pidfile: s.pidfile,
        })
    }

    /// Name, command line and user criteria (not the tree).
    fn accepts(&self, p: &Proc) -> bool {
        if let Some(names) = &self.names {
            let base = p
                .args
                .first()
                .and_then(|a| a.rsplit('/').next())
                .unwrap_or("");
            if !names.iter().any(|n| name_matches(n, &p.comm, base)) {
                return false;
            }
        }
        let cmdline_ok = self
            .cmdline
            .as_ref()
            .is_none_or(|c| p.args.join(" ").contains(c.as_str()));
        cmdline_ok && self.uid.is_none_or(|uid| p.uid == Some(uid))
    }
}

/// The kernel keeps at most 15 bytes of a process name in `comm`.
const COMM_LEN: usize = 15;

fn name_matches(name: &str, comm: &str, argv0_base: &str) -> bool {
    let short: String = name.chars().take(COMM_LEN).collect();
    let comm_match = !comm.is_empty() && (comm == name || (name.len() > COMM_LEN && comm == short));
    comm_match || (!argv0_base.is_empty() && argv0_base == name)
}

/// The uid of a user name from /etc/passwd (users only in LDAP and the like
/// are given by uid instead).
fn uid_of(user: &str) -> Result<u32, ProcError> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|source| ProcError::Passwd {
        user: user.to_owned(),
        source,
    })?;
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(user)).then(|| f.nth(1).and_then(|u| u.parse().ok()))?
        })
        .ok_or_else(|| ProcError::UnknownUser(user.to_owned()))
}

/// The pid in a pid file; None when the file does not exist or is still
/// empty (a daemon creates it before it writes its pid).
fn read_pidfile(path: &str) -> Result<Option<i32>, ProcError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => match text.trim().parse::<i32>() {
            // init's tree is every process on the host.
            Ok(1) => Err(ProcError::PidfileInit(path.to_owned())),
            Ok(pid) if pid > 0 => Ok(Some(pid)),
            _ => Err(ProcError::PidfileNotPid {
                path: path.to_owned(),
                holds: text.chars().take(40).collect(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ProcError::PidfileUnreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Why a matcher cannot be looked for: its user or its pid file. Neither
/// mends itself, so a caller that waits stops waiting.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// /etc/passwd could not be read to find a user name.
    #[error("cannot read /etc/passwd to find user `{user}`: {source}")]
    Passwd {
        /// The user name.
        user: String,
        /// Why.
        source: std::io::Error,
    },
    /// The user name is not in /etc/passwd.
    #[error("user `{0}` is not in /etc/passwd; give the user's numeric uid instead")]
    UnknownUser(String),
    /// The pid file names init, whose tree is every process on the host.
    #[error("pid file {0} names pid 1 (init), whose descendants are every process")]
    PidfileInit(String),
    /// The pid file holds something else than a pid.
    #[error("pid file {path} does not hold a pid (it holds {holds:?})")]
    PidfileNotPid {
        /// The pid file.
        path: String,
        /// Its first 40 characters.
        holds: String,
    },
    /// The pid file exists but cannot be read.
    #[error("cannot read pid file {path}: {source}")]
    PidfileUnreadable {
        /// The pid file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// What `wait_gone` waits for: processes matched afresh at each look, and
/// for `pidfile` entries the process tree recorded before the stop.
pub struct GoneWatch {
    items: Vec<(Resolved, Option<Tree>)>,
    /// What was recorded, for the log.
    pub notes: Vec<String>,
}

impl GoneWatch {
    /// Resolves users and records each pid file's process tree. Call it
    /// before the stop command runs: afterwards the scheduler may be gone
    /// and its agents reparented, out of reach of the tree.
    pub fn record(list: &ProcMatchList) -> Result<GoneWatch, ProcError> {
        let snap = snapshot();
        let mut items = Vec::new();
        let mut notes = Vec::new();
        for m in &list.0 {
            let r = Resolved::new(m)?;
            let tree = match &r.pidfile {
                None => None,
                Some(path) => {
                    let mut tree = BTreeSet::new();
                    match read_pidfile(path)? {
                        None => notes.push(format!(
                            "pid file {path} does not exist: no process tree of it to wait for"
                        )),
                        Some(pid) => match snap.get(&pid) {
                            Some(p) if !p.zombie => {
                                tree.insert(p.key());
                                grow(&mut tree, &snap);
                                notes.push(format!(
                                    "pid file {path}: pid {pid} and {} descendant(s) recorded",
                                    tree.len() - 1
                                ));
                            }
                            _ => notes.push(format!(
                                "pid file {path} names pid {pid}, which is not running"
                            )),
                        },
                    }
                    Some(tree)
                }
            };
            items.push((r, tree));
        }
        Ok(GoneWatch { items, notes })
    }

    /// The matched processes that are still alive.
    pub fn still(&mut self) -> Vec<Found> {
        let snap = snapshot();
        let mut out: BTreeMap<i32, Found> = BTreeMap::new();
        for (r, tree) in &mut self.items {
            match tree {
                Some(tree) => {
                    tree.retain(|k| snap.get(&k.0).is_some_and(|p| p.key() == *k && !p.zombie));
                    // A child forked after the record belongs to the tree too.
                    grow(tree, &snap);
                    for k in tree.iter() {
                        if let Some(p) = snap.get(&k.0).filter(|p| r.accepts(p)) {
                            out.insert(p.pid, p.found());
                        }
                    }
                }
                None => {
                    for p in snap.values().filter(|p| !p.zombie && r.accepts(p)) {
                        out.insert(p.pid, p.found());
                    }
                }
            }
        }
        out.into_values().collect()
    }
}

/// A recorded process tree: (pid, start time) of each member.
type Tree = BTreeSet<(i32, u64)>;

/// Adds every live descendant of the tree's processes.
fn grow(tree: &mut BTreeSet<(i32, u64)>, snap: &BTreeMap<i32, Proc>) {
    loop {
        let pids: BTreeSet<i32> = tree.iter().map(|k| k.0).collect();
        let before = tree.len();
        for p in snap.values() {
            if !p.zombie && pids.contains(&p.ppid) {
                tree.insert(p.key());
            }
        }
        if tree.len() == before {
            return;
        }
    }
}

/// True while any of `found` still runs (a zombie has ended): one read of
/// `/proc/<pid>/stat` each, cheap enough to repeat every few milliseconds
/// between the full looks of [`GoneWatch::still`], which read four files
/// of every process on the host. A pid reused meanwhile only delays the
/// answer until the next full look.
pub fn any_running(found: &[Found]) -> bool {
    found.iter().any(|f| running(f.pid))
}

/// True while `pid` exists and has not ended (a zombie has): one read of
/// its `/proc/<pid>/stat`.
pub fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// A live, non-zombie process that `m` matches; for a `pidfile` matcher,
/// the process whose pid is in the file (and only when the other criteria
/// hold for it), so a launcher that shares the daemon's name does not count.
pub fn up(m: &ProcMatch) -> Result<Option<Found>, ProcError> {
    let r = Resolved::new(m)?;
    let snap = snapshot();
    let hit = match &r.pidfile {
        Some(path) => read_pidfile(path)?
            .and_then(|pid| snap.get(&pid))
            .filter(|p| !p.zombie && r.accepts(p)),
        None => snap.values().find(|p| !p.zombie && r.accepts(p)),
    };
    Ok(hit.map(Proc::found))
}

/// A running process that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// Its pid.
    pub pid: i32,
    /// Its name (comm).
    pub name: String,
}

/// Every process but ward itself: its pid and its /proc folder.
pub(crate) fn other_processes() -> impl Iterator<Item = (i32, std::path::PathBuf)> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .parse::<i32>()
                .ok()
                .map(|pid| (pid, e.path()))
        })
        .filter(move |(pid, _)| *pid != me)
}

/// `name (pid 12), other (pid 34)` for messages.
pub fn describe(found: &[Found]) -> String {
    found
        .iter()
        .map(|f| format!("{} (pid {})", f.name, f.pid))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `a, {name: b, user: fossy}` for plans and messages.
pub fn describe_list(list: &ProcMatchList) -> String {
    list.0
        .iter()
        .map(ProcMatch::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_by_name_and_not_after_it_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let list = ProcMatchList(vec![ProcMatch::Name("sleep".to_owned())]);
        // Until the exec is complete the child still has the test's name.
        let mut w = GoneWatch::record(&list).expect("record");
        for _ in 0..400 {
            if w.still().iter().any(|f| f.pid == child.id() as i32) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            w = GoneWatch::record(&list).expect("record");
        }
        assert!(w.still().iter().any(|f| f.pid == child.id() as i32));
        child.kill().expect("kill");
        child.wait().expect("wait");
        assert!(!w.still().iter().any(|f| f.pid == child.id() as i32));
    }

    #[test]
    fn a_cmdline_narrows_a_name() {
        let mut child = std::process::Command::new("sleep")
            .arg("31.5")
            .spawn()
            .expect("sleep");
        let spec = |c: &str| {
            ProcMatch::Spec(ProcSpec {
                name: Some(StringList(vec!["sleep".into()])),
                cmdline: Some(c.into()),
                ..ProcSpec::default()
            })
        };
        let pid = child.id() as i32;
        // spawn() returns once the exec has begun, a moment before the
        // kernel sets the new name and arguments: look again (bounded).
        let mut seen = None;
        for _ in 0..400 {
            seen = up(&spec("sleep 31.5")).expect("up").map(|f| f.pid);
            if seen.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(seen, Some(pid));
        assert!(up(&spec("sleep 31.6")).expect("up").map(|f| f.pid) != Some(pid));
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    #[test]
    fn a_pid_file_is_read_as_a_pid_or_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.pid");
        let p = path.to_str().expect("utf-8");
        assert_eq!(read_pidfile(p).expect("missing"), None);
        std::fs::write(&path, "").expect("write");
        assert_eq!(read_pidfile(p).expect("not written yet"), None);
        std::fs::write(&path, "4711\n").expect("write");
        assert_eq!(read_pidfile(p).expect("a pid"), Some(4711));
        std::fs::write(&path, "1").expect("write");
        assert_eq!(
            read_pidfile(p).expect_err("init").to_string(),
            format!("pid file {p} names pid 1 (init), whose descendants are every process")
        );
        for bad in ["-3\n", "0", "abc"] {
            std::fs::write(&path, bad).expect("write");
            let e = read_pidfile(p).expect_err(bad);
            assert_eq!(
                e.to_string(),
                format!("pid file {p} does not hold a pid (it holds {bad:?})")
            );
        }
    }

    #[test]
    fn empty_criteria_are_refused() {
        let m = ProcMatch::Spec(ProcSpec {
            cmdline: Some(" ".into()),
            pidfile: Some("run/x.pid".into()),
            ..ProcSpec::default()
        });
        let p = m.problems("`wait_up`");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].message.contains("`cmdline` is empty"));
        assert!(p[1].message.contains("not an absolute path"));
    }
}
