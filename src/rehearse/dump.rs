//! The rows a plain SQL dump (pg_dumpall, or pg_dump's plain format)
//! loads into each table: its `COPY ... FROM stdin;` blocks counted, per
//! database (`\connect`). The dump is the record of what was backed up, so
//! the restored tables are compared with it; `pg.dumpall`'s side file
//! records no row counts, and this also covers dumps made before ward.

use std::io::BufRead;
use std::path::Path;

/// One table's rows in a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableRows {
    /// The database the rows go to.
    pub db: String,
    /// The table as the COPY line names it (`public.upload`, quoted parts kept).
    pub table: String,
    /// How many rows.
    pub rows: u64,
}

/// Reads the (compressed or plain) dump at `path` and counts its COPY rows.
/// An unreadable or damaged file is an error with the reason.
pub fn table_rows(path: &Path) -> Result<Vec<TableRows>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let (input, _) = crate::compress::decoder(file)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    count(std::io::BufReader::new(input))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Counts the COPY rows of a dump's text.
pub fn count(mut input: impl BufRead) -> std::io::Result<Vec<TableRows>> {
    let mut out = Vec::new();
    let mut db = "postgres".to_owned();
    let mut copying: Option<TableRows> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(t) = copying.as_mut() {
            if text == "\\." {
                out.extend(copying.take());
            } else {
                t.rows += 1;
            }
            continue;
        }
        if let Some(rest) = text.strip_prefix("\\connect ") {
            db = connect_target(rest);
        } else if let Some(rest) = text.strip_prefix("COPY ")
            && text.ends_with(" FROM stdin;")
        {
            let table = rest.split(" (").next().unwrap_or(rest);
            let table = table.strip_suffix(" FROM stdin;").unwrap_or(table);
            copying = Some(TableRows {
                db: db.clone(),
                table: table.to_owned(),
                rows: 0,
            });
        }
    }
    if let Some(t) = copying {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "the dump ends inside the rows of {} (database {}): it is truncated",
                t.table, t.db
            ),
        ));
    }
    Ok(out)
}

/// The database of a `\connect` line: `fossology`, `"odd name"`, or
/// `-reuse-previous=on "dbname='fossology'"` as pg_dump writes it.
fn connect_target(rest: &str) -> String {
    let rest = rest.trim();
    let rest = rest
        .strip_prefix("-reuse-previous=on ")
        .unwrap_or(rest)
        .trim();
    if let Some(inner) = rest
        .strip_prefix("\"dbname='")
        .and_then(|r| r.strip_suffix("'\""))
    {
        return inner.replace("\\'", "'").replace("\\\\", "\\");
    }
    if let Some(inner) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return inner.replace("\"\"", "\"");
    }
    rest.split_whitespace().next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rows_per_database_and_table() {
        let dump = "\\connect template1\n\\connect postgres\nCOPY public.a (x) FROM stdin;\n1\n2\n\\.\n\
                    \\connect -reuse-previous=on \"dbname='app'\"\nCOPY public.b (x, y) FROM stdin;\n\\.\n\
                    COPY public.\"C\" (x) FROM stdin;\n1\n\\.\n\\connect other\n";
        let rows = count(dump.as_bytes()).expect("count");
        assert_eq!(
            rows,
            [
                TableRows {
                    db: "postgres".into(),
                    table: "public.a".into(),
                    rows: 2
                },
                TableRows {
                    db: "app".into(),
                    table: "public.b".into(),
                    rows: 0
                },
                TableRows {
                    db: "app".into(),
                    table: "public.\"C\"".into(),
                    rows: 1
                },
            ]
        );
    }

    #[test]
    fn a_dump_cut_inside_rows_is_an_error() {
        let e = count("COPY public.a (x) FROM stdin;\n1\n".as_bytes()).expect_err("truncated");
        assert!(e.to_string().contains("truncated"), "{e}");
    }
}
