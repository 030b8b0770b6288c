//! `ward verify SET`: check a backup set against its manifest (read-only).

use std::io::Write;

use super::VerifyArgs;
use crate::error::{WardError, exit};
use crate::fs::manifest;
use crate::report::Style;

pub(super) fn verify(args: &VerifyArgs) -> Result<i32, WardError> {
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
    let compared = found.and_then(|found| {
        let mismatches = manifest::compare(
            &set,
            &found.manifest,
            found.in_tree,
            !args.no_hashes,
            crate::fs::default_threads(),
            &crate::progress::Progress::default(),
        )?;
        // Issue 16: every dump read to its last line (not with --no-hashes).
        let dumps = if args.no_hashes {
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
    let damaged = crate::fs::dumpcheck::failure(&set, &dumps);
    let ok = mismatches.is_empty() && damaged.is_none();
    if args.json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "set": set,
                "ok": ok,
                "dumps": dumps,
                "entries": m.entries.len(),
                "hashed": m.entries.iter().filter(|e| e.sha256.is_some()).count(),
                "mismatches": mismatches,
            }),
        )
        .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else if ok {
        let hashed = m.entries.iter().filter(|e| e.sha256.is_some()).count();
        writeln!(
            out,
            "ok: {}: {} entries match its manifest{}",
            set.display(),
            m.entries.len(),
            if args.no_hashes {
                " (sizes only)".to_owned()
            } else {
                format!(", {hashed} hashes checked")
            }
        )?;
        if !dumps.is_empty() {
            writeln!(out, "ok: {}", crate::fs::dumpcheck::summary(&dumps))?;
        }
    } else {
        for mm in &mismatches {
            writeln!(out, "{:<9} {}  ({})", mm.kind, mm.path, mm.detail)?;
        }
        if let Some(msg) = &damaged {
            writeln!(out, "{}: {msg}", Style::stdout().error("damaged"))?;
        }
        writeln!(
            out,
            "{}: {}: {} problem(s)",
            Style::stdout().error("failed"),
            set.display(),
            mismatches.len() + dumps.iter().filter(|d| !d.ok()).count()
        )?;
    }
    out.flush()?;
    Ok(if ok { exit::OK } else { exit::FAILED })
}
