//! `ward verify SET`: check a backup set against its manifest (read-only:
//! it writes no marker), and `ward verify --status DIR`: what the last
//! verify of each snapshot in a folder found.

use std::io::Write;
use std::path::Path;

use super::VerifyArgs;
use crate::error::{WardError, exit};
use crate::fs::manifest;
use crate::fs::verified::{self, Depth, Marker, Read1, ReadShare};
use crate::report::Style;

pub(super) fn verify(args: &VerifyArgs) -> Result<i32, WardError> {
    if args.status {
        return status(args);
    }
    let share = match (&args.read, args.no_hashes) {
        (Some(r), _) => ReadShare::parse(r).map_err(|e| WardError::Usage(format!("--read {e}")))?,
        (None, true) => ReadShare::None,
        (None, false) => ReadShare::All,
    };
    let today = crate::clock::now()
        .map_err(|e| WardError::Usage(e.to_string()))?
        .date();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (set, found) = match std::fs::canonicalize(&args.set) {
        Ok(set) => {
            let found = match &args.manifest {
                Some(path) => manifest::load_from(&set, path),
                None => manifest::load(&set),
            };
            (set, found)
        }
        Err(e) => (
            args.set.clone(),
            Err(crate::fs::FsError::new(format!(
                "cannot open backup set {}: {e}",
                args.set.display()
            ))),
        ),
    };
    let depth = verified::depth_for(share, &set, today);
    let compared = found.and_then(|found| {
        let mismatches = manifest::compare(
            &set,
            &found.manifest,
            found.in_tree,
            &depth,
            crate::fs::default_threads(),
            &crate::progress::Progress::default(),
        )?;
        // Every dump read to its last line (not when reading no content).
        let dumps = if depth == Depth::Structure {
            Vec::new()
        } else {
            crate::fs::dumpcheck::check_set(
                &set,
                &found.manifest,
                &|| false,
                &crate::progress::Progress::default(),
            )?
        };
        Ok((found.manifest, mismatches, dumps))
    });
    // No manifest, a damaged one, or a check that could not be completed:
    // the set is not verified.
    let (m, mismatches, dumps) = match compared {
        Ok(compared) => compared,
        Err(e) => {
            if args.json {
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({"set": set, "ok": false, "error": e.to_string()}),
                )
                .map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                eprintln!("{}: {e}", Style::stderr().error("error"));
            }
            out.flush()?;
            return Ok(exit::FAILED);
        }
    };
    let hashed = m
        .entries
        .iter()
        .filter(|e| e.sha256.is_some() && depth.reads(&e.rel_bytes()))
        .count();
    let slice = match depth {
        Depth::Slice { k, n } => Some(format!("{k}/{n}")),
        _ => None,
    };
    let damaged = crate::fs::dumpcheck::failure(&set, &dumps);
    let ok = mismatches.is_empty() && damaged.is_none();
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "set": set,
                "ok": ok,
                "dumps": dumps,
                "level": depth.level(),
                "slice": slice,
                "entries": m.entries.len(),
                "hashed": hashed,
                "mismatches": mismatches,
            }),
        )
        .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else if ok {
        writeln!(
            out,
            "ok: {}: {} entries match its manifest{}",
            set.display(),
            m.entries.len(),
            match depth {
                Depth::Structure => " (sizes only)".to_owned(),
                Depth::Full => format!(", {hashed} hashes checked"),
                Depth::Slice { k, n } => format!(", slice {k}/{n}: {hashed} hashes checked"),
            }
        )?;
        if !dumps.is_empty() {
            writeln!(out, "ok: {}", plain(&crate::fs::dumpcheck::summary(&dumps)))?;
        }
    } else {
        for mm in &mismatches {
            writeln!(
                out,
                "{:<9} {}  ({})",
                mm.kind,
                plain(&mm.path),
                plain(&mm.detail)
            )?;
        }
        if mismatches.iter().any(|m| m.shared) {
            writeln!(out, "{}.", verified::SHARED_NOTE)?;
        }
        if let Some(msg) = &damaged {
            writeln!(out, "{}: {}", Style::stdout().error("damaged"), plain(msg))?;
        }
        writeln!(
            out,
            "{}: {}: {} problem(s){}",
            Style::stdout().error("failed"),
            set.display(),
            mismatches.len() + dumps.iter().filter(|d| !d.ok()).count(),
            slice.map_or(String::new(), |s| format!(" (read back: slice {s})"))
        )?;
    }
    out.flush()?;
    Ok(if ok { exit::OK } else { exit::FAILED })
}

/// `text` for a terminal: names of files in a backup set are chosen by
/// whoever wrote the source, and a name (or a marker's text that quotes
/// it) with escape sequences must not drive the operator's terminal.
fn plain(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A marker's local time (`YYYY-MM-DDTHH:MM:SS`) as RFC 3339, as the other
/// read commands write times; the text as it is if it is not a time.
fn rfc3339(at: &str) -> serde_json::Value {
    chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .and_then(|t| t.and_local_timezone(chrono::Local).earliest())
        .and_then(|t| crate::report::rfc3339(t.timestamp_millis()))
        .map_or_else(
            || serde_json::Value::String(at.to_owned()),
            serde_json::Value::String,
        )
}

fn read_json(r: &Read1) -> serde_json::Value {
    serde_json::json!({
        "slice": r.slice,
        "at": rfc3339(&r.at),
        "ok": r.ok,
        "problems": r.problems,
        "set": r.set,
    })
}

fn marker_json(m: &Marker) -> serde_json::Value {
    serde_json::json!({
        "level": m.level,
        "slice": m.slice,
        "at": rfc3339(&m.at),
        "ok": m.ok,
        "problems": m.problems,
        "error": m.error,
        "run_id": m.run_id,
        "slices": m.slices.as_ref().map(|s| serde_json::json!({
            "n": s.n,
            "last": s.last.iter().map(read_json).collect::<Vec<_>>(),
        })),
        "full": m.full.as_ref().map(read_json),
    })
}

/// One line of what a read found.
fn found_text(r: &Read1) -> String {
    if r.ok {
        format!("{}  ok  (on {})", plain(&r.at), plain(&r.set))
    } else {
        format!(
            "{}  {} problem(s)  (on {})",
            plain(&r.at),
            r.problems,
            plain(&r.set)
        )
    }
}

/// `ward verify --status DIR`.
fn status(args: &VerifyArgs) -> Result<i32, WardError> {
    let dir = std::fs::canonicalize(&args.set)
        .ok()
        .filter(|d| d.is_dir())
        .ok_or_else(|| {
            WardError::Usage(format!("{} is not a snapshots folder", args.set.display()))
        })?;
    let dir: &Path = &dir;
    let listing =
        crate::fs::snapshots::list(dir, "latest").map_err(|e| WardError::Usage(e.to_string()))?;
    let mut snaps = listing.snapshots;
    snaps.sort_by(|a, b| a.age_order().cmp(&b.age_order()));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut rows = Vec::new();
    for s in &snaps {
        let path = dir.join(&s.name);
        let marker = verified::path(&path).map(|p| verified::read(&p));
        let (marker, unreadable) = match marker {
            Some(Ok(m)) => (m, None),
            Some(Err(e)) => (None, Some(e.to_string())),
            None => (None, None),
        };
        rows.push((s, marker, unreadable));
    }
    if args.json {
        let list: Vec<serde_json::Value> = rows
            .iter()
            .map(|(s, m, unreadable)| {
                serde_json::json!({
                    "name": s.name,
                    "complete": s.complete,
                    "verified": s.verified,
                    "last_verify": m.as_ref().map(marker_json),
                    "marker_error": unreadable,
                })
            })
            .collect();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "dir": dir, "snapshots": list }),
        )
        .map_err(std::io::Error::from)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(exit::OK);
    }
    let style = Style::stdout();
    if rows.is_empty() {
        writeln!(out, "no snapshots in {}", dir.display())?;
    }
    for (s, m, unreadable) in &rows {
        let state = match (m, s.verified) {
            (_, true) => "verified",
            (Some(m), false) if m.ok => "stale",
            (Some(_), false) => "FAILED",
            (None, false) if unreadable.is_some() => "unreadable",
            (None, false) => "not verified",
        };
        let shown = format!("{state:<13}");
        let shown = if state == "FAILED" || state == "unreadable" {
            style.error(&shown)
        } else {
            shown
        };
        let level = m.as_ref().map_or(String::new(), |m| match &m.slice {
            Some(slice) => plain(&format!("{} {slice}", m.level)),
            None => plain(&m.level),
        });
        let when = m.as_ref().map_or(String::new(), |m| plain(&m.at));
        writeln!(out, "{:<20} {shown} {level:<13} {when}", plain(&s.name))?;
        if state == "stale" {
            writeln!(
                out,
                "    passed, but of another manifest than the one beside it now"
            )?;
        }
        if let Some(e) = unreadable {
            writeln!(out, "    {}", plain(e))?;
        }
        let Some(m) = m else { continue };
        if !m.ok {
            match &m.error {
                Some(e) => writeln!(out, "    {}", plain(e))?,
                None => writeln!(out, "    {} problem(s)", m.problems)?,
            }
        }
        if let Some(full) = &m.full {
            writeln!(out, "    full read   {}", found_text(full))?;
        }
        if let Some(slices) = &m.slices {
            for k in 1..=slices.n {
                match slices.last.iter().find(|r| r.slice == Some(k)) {
                    Some(r) => writeln!(
                        out,
                        "    slice {:<5} {}",
                        format!("{k}/{}", slices.n),
                        found_text(r)
                    )?,
                    None => writeln!(
                        out,
                        "    slice {:<5} never read",
                        format!("{k}/{}", slices.n)
                    )?,
                }
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
