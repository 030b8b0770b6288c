//! Which store `--state` (else `$WARD_STATE`, else the default place)
//! names, and opening it: the one place that knows every backend.
//!
//! A value with a `scheme://` is a store address; anything else is the
//! path of an SQLite database. A new backend adds its scheme to
//! [`Location`] and its arm to [`open`].
//!
//! A PostgreSQL state keeps its logs, lock tickets and fingerprint key in
//! a local folder ([`pg_folder`]): `$WARD_STATE_FOLDER`, else a folder of
//! its own, named after the database's address, in the default state
//! folder (`/var/lib/ward/` for root, `$XDG_STATE_HOME/ward/` else). Of
//! its own because `ward prune` removes the log folders whose run its
//! store does not know: an SQLite state and a PostgreSQL one (or two
//! PostgreSQL databases) sharing one `logs/` would remove each other's.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::host::HostIdentity;
use super::postgres::PgStore;
use super::sqlite::{SqliteStore, StatePaths};
use super::{Access, StateError, Store, private};

/// A store, as `--state` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: its address (`postgres://` or
    /// `postgresql://`, password and all; shown only through [`redacted`]).
    Postgres(String),
}

/// The environment variable that names the local folder of a PostgreSQL
/// state (logs, lock tickets, the fingerprint key).
pub const FOLDER_ENV: &str = "WARD_STATE_FOLDER";

/// Opens the state `--state` names (`given`), else `$WARD_STATE`, else the
/// default place, after checking what its backend checks (SQLite: that no
/// other user can change the state folder); only [`Access::Create`]
/// (`ward run`) creates a missing database.
pub async fn open(given: Option<&Path>, access: Access) -> Result<Box<dyn Store>, StateError> {
    let host = HostIdentity::current();
    let store: Box<dyn Store> = match locate(given)? {
        Location::Sqlite(db) => {
            tracing::info!("state: opening {} ({access:?})", db.display());
            Box::new(SqliteStore::open(StatePaths { db }, access, host).await?)
        }
        Location::Postgres(address) => {
            let shown = redacted(&address);
            tracing::info!("state: opening {shown} ({access:?})");
            let folder = pg_folder(&address)?;
            local_folder(&folder, access)?;
            Box::new(PgStore::open(&address, shown, folder, access, host).await?)
        }
    };
    Ok(super::fault::wrap(store))
}

/// `--state`, else `$WARD_STATE`, else `/var/lib/ward/ward.db` for root,
/// else `$XDG_STATE_HOME/ward/ward.db` (default `~/.local/state`).
pub fn locate(given: Option<&Path>) -> Result<Location, StateError> {
    if let Some(value) = given {
        tracing::info!("state: the database given by --state");
        let location = parse(value.as_os_str())?;
        if let Location::Postgres(address) = &location
            && has_password(address)
        {
            warn_argv_password();
        }
        return Ok(location);
    }
    if let Some(value) = std::env::var_os("WARD_STATE").filter(|v| !v.is_empty()) {
        tracing::info!("state: the database named by $WARD_STATE (no --state given)");
        return parse(&value);
    }
    if rustix::process::geteuid().is_root() {
        tracing::info!("state: root's default database (no --state, no $WARD_STATE)");
    } else {
        tracing::info!(
            "state: the default database under $XDG_STATE_HOME or ~/.local/state (no --state, no $WARD_STATE)"
        );
    }
    Ok(Location::Sqlite(default_folder().join("ward.db")))
}

/// The default state folder: `/var/lib/ward` for root, else
/// `$XDG_STATE_HOME/ward` (default `~/.local/state/ward`).
fn default_folder() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/ward");
    }
    // The XDG spec: a relative path is invalid and must be ignored
    // (it would put the state wherever ward happens to be started).
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ward")
}

/// The local folder of the PostgreSQL state at `address`:
/// `$WARD_STATE_FOLDER` (absolute), else `<default state folder>/pg-<host>-<port>-<database>`
/// (characters other than letters, digits, `.`, `_` and `-` become `_`;
/// never the user or password).
pub fn pg_folder(address: &str) -> Result<PathBuf, StateError> {
    if let Some(folder) = std::env::var_os(FOLDER_ENV).filter(|v| !v.is_empty()) {
        let folder = PathBuf::from(folder);
        if !folder.is_absolute() {
            return Err(StateError::Unsupported {
                value: folder.display().to_string(),
                why: format!("${FOLDER_ENV} must be an absolute path"),
            });
        }
        return Ok(folder);
    }
    let words = crate::pg::parse_conninfo(address).unwrap_or_default();
    let word = |k: &str| {
        words
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let host = word("host")
        .or_else(|| std::env::var("PGHOST").ok())
        .unwrap_or_else(|| "local".to_owned());
    let port = word("port")
        .or_else(|| std::env::var("PGPORT").ok())
        .unwrap_or_else(|| "5432".to_owned());
    // As the server reads it: without a database, the user's name (so
    // `postgres://alice@db/` and `postgres://bob@db/` are two databases).
    let db = word("dbname")
        .or_else(|| std::env::var("PGDATABASE").ok())
        .or_else(|| word("user"))
        .or_else(|| std::env::var("PGUSER").ok())
        .unwrap_or_else(|| "postgres".to_owned());
    let exact = format!("pg-{host}-{port}-{db}");
    let mut name: String = exact
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Two databases whose names differ only in replaced characters
    // (`wärd` and `wörd`, `a b` and `a_b`) must not share a folder: `ward
    // prune` of one would remove the other's logs. A replaced name gets a
    // short hash of the exact host, port and database.
    if name != exact {
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(format!("{host}\0{port}\0{db}").as_bytes());
        let short: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
        name = format!("{name}-{short}");
    }
    Ok(default_folder().join(name))
}

/// Checks (and, for writers, makes) a PostgreSQL state's local folder as
/// the SQLite state folder is checked: private to this user on the whole
/// way (`private.rs`), with private `locks/` and `logs/`. Read commands
/// create nothing; a missing folder just has no logs.
fn local_folder(folder: &Path, access: Access) -> Result<(), StateError> {
    if access == Access::Read && std::fs::symlink_metadata(folder).is_err() {
        return Ok(());
    }
    private::trusted_folder(folder, folder, access != Access::Read)?;
    for (path, what) in [
        (folder.join("locks"), "locks folder"),
        (folder.join("logs"), "logs folder"),
    ] {
        if access == Access::Read {
            private::check_dir(&path, what)?;
        } else {
            private::ensure_dir(&path, what)?;
        }
    }
    Ok(())
}

/// True when the address itself holds a password (`user:secret@`, or a
/// `password=` parameter).
pub fn has_password(address: &str) -> bool {
    redacted(address) != address
}

/// Warns (once per process) that a password given with `--state` is on
/// the command line, which other local users can read (`ps`, `/proc`).
fn warn_argv_password() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "warning: the --state address holds a password, which other users of this machine \
             can read in the process list; use $PGPASSWORD, a passfile (~/.pgpass) or \
             $WARD_STATE instead"
        );
    }
}

/// Reads one `--state` value: `scheme://...` names a store by address,
/// anything else is a path (so `postgres://db/ward` never becomes a file
/// named `ward` in a folder `postgres:`).
pub fn parse(value: &OsStr) -> Result<Location, StateError> {
    let bytes = value.as_encoded_bytes();
    let Some(scheme) = scheme(bytes) else {
        return Ok(Location::Sqlite(PathBuf::from(value)));
    };
    let shown = redacted(&value.to_string_lossy());
    match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => {
            let Some(address) = value.to_str() else {
                return Err(StateError::Unsupported {
                    value: shown,
                    why: "a PostgreSQL address must be UTF-8".to_owned(),
                });
            };
            // tokio-postgres and `pg.rs` read the lower-case schemes.
            let rest = &address[scheme.len()..];
            let scheme = scheme.to_ascii_lowercase();
            Ok(Location::Postgres(format!("{scheme}{rest}")))
        }
        other => Err(StateError::Unsupported {
            value: shown,
            why: format!(
                "ward knows no state store of scheme `{other}`; the state is an SQLite \
                 database (pass its file path; a value with `://` is read as an address, not a \
                 path) or a PostgreSQL database (`postgres://...`)"
            ),
        }),
    }
}

/// A `--state` value as hints may repeat it: a path as it is, an address
/// with its password masked ([`redacted`]).
pub fn shown(value: &Path) -> String {
    let text = value.to_string_lossy();
    match scheme(value.as_os_str().as_encoded_bytes()) {
        Some(_) => redacted(&text),
        None => text.into_owned(),
    }
}

/// The scheme of `scheme://...` (RFC 3986: a letter, then letters, digits,
/// `+`, `-`, `.`), or `None` for a path.
fn scheme(bytes: &[u8]) -> Option<&str> {
    let end = bytes.windows(3).position(|w| w == b"://")?;
    let scheme = &bytes[..end];
    let first = scheme.first()?;
    let valid = first.is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    valid.then(|| std::str::from_utf8(scheme).ok()).flatten()
}

/// An address as it may be shown: a password in it (`user:secret@host`,
/// or a `password=` / `sslpassword=` parameter) becomes `********`.
///
/// The user part ends at the *last* `@`: a password typed without
/// percent-encoding may hold `/`, `?`, `#` or `@`, and cutting at the first
/// of those would show it. Masking too much is harmless here.
fn redacted(address: &str) -> String {
    let Some((scheme, rest)) = address.split_once("://") else {
        return address.to_owned();
    };
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at..]),
        None => (None, rest),
    };
    let mut shown = format!("{scheme}://");
    if let Some(info) = userinfo {
        match info.split_once(':') {
            Some((user, _)) => {
                shown.push_str(user);
                shown.push_str(":********");
            }
            None => shown.push_str(info),
        }
    }
    // Parameters whose name says password keep their name only.
    match after.split_once('?') {
        Some((before, query)) => {
            shown.push_str(before);
            shown.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.to_ascii_lowercase().contains("pass") => {
                        format!("{key}=********")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            shown.push_str(&params.join("&"));
        }
        None => shown.push_str(after),
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_repeat_paths_as_they_are_and_addresses_masked() {
        assert_eq!(
            shown(Path::new("/var/lib/ward/ward.db")),
            "/var/lib/ward/ward.db"
        );
        assert_eq!(shown(Path::new("a://b")), "a://b");
        let address = shown(Path::new("postgres://ward:s3cret@db/ward"));
        assert!(
            !address.contains("s3cret") && address.contains("db/ward"),
            "{address}"
        );
    }

    #[test]
    fn passwords_are_masked_wherever_they_stand() {
        for (address, secret) in [
            ("postgres://u:pa/ss2SECRET@h/db", "SECRET"),
            ("postgres://u:p#6SECRET@h/db", "SECRET"),
            ("postgres://u:p?q@SECRET@h/db", "SECRET"),
            ("postgres://u@h/db?password=qs3SECRET", "SECRET"),
            (
                "postgres://h/db?sslmode=require&sslpassword=SECRET",
                "SECRET",
            ),
            ("postgres://u:SECRET@h:5432/db?sslmode=require", "SECRET"),
        ] {
            let shown = redacted(address);
            assert!(!shown.contains(secret), "{address} -> {shown}");
            assert!(shown.contains("********"), "{address} -> {shown}");
        }
        assert_eq!(
            redacted("postgres://u:x@db.example:5432/ward?sslmode=require"),
            "postgres://u:********@db.example:5432/ward?sslmode=require"
        );
        assert_eq!(
            redacted("postgres://db.example/ward"),
            "postgres://db.example/ward"
        );
    }

    #[test]
    fn paths_are_sqlite_postgres_addresses_are_postgres_and_others_refused() {
        for path in [
            "ward.db",
            "/var/lib/ward/ward.db",
            "./postgres:x/ward.db",
            "a/b://c",
        ] {
            assert_eq!(
                parse(OsStr::new(path)).ok(),
                Some(Location::Sqlite(PathBuf::from(path))),
                "{path}"
            );
        }
        assert_eq!(
            parse(OsStr::new("PostgreSQL://db/ward")).ok(),
            Some(Location::Postgres("postgresql://db/ward".into()))
        );
        assert_eq!(
            parse(OsStr::new("postgres://u:p@db/ward")).ok(),
            Some(Location::Postgres("postgres://u:p@db/ward".into()))
        );
        let err = parse(OsStr::new("s3://ward:hunter22@bucket/ward")).expect_err("unknown");
        let text = err.to_string();
        assert!(text.contains("scheme `s3`"), "{text}");
        assert!(!text.contains("hunter22"), "{text}");
    }

    #[test]
    fn a_postgres_folder_is_named_after_the_address_without_user_or_password() {
        let folder =
            pg_folder("postgres://ward:hunter22@db.example:5433/ward%2Fstate?sslmode=disable")
                .expect("folder");
        let name = folder
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("pg-db.example-5433-ward_state-"), "{name}");
        assert_eq!(
            name.len(),
            "pg-db.example-5433-ward_state-".len() + 8,
            "{name}"
        );
        assert!(!folder.display().to_string().contains("hunter22"));
        assert!(has_password("postgres://u:x@h/db"));
        assert!(has_password("postgres://u@h/db?password=x"));
        assert!(!has_password("postgres://u@h/db"));
    }

    #[test]
    fn two_databases_never_share_a_local_folder() {
        let name = |a: &str| {
            pg_folder(a)
                .expect("folder")
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        };
        if std::env::var_os(FOLDER_ENV).is_some() {
            return;
        }
        assert_eq!(name("postgres://u@db:5432/plain"), "pg-db-5432-plain");
        assert_ne!(
            name("postgres://u@db/w%C3%A4rd"),
            name("postgres://u@db/w%C3%B6rd")
        );
        assert_ne!(name("postgres://u@db/a%20b"), name("postgres://u@db/a_b"));
        // No database: the user's, as the server reads it.
        assert_ne!(name("postgres://alice@db/"), name("postgres://bob@db/"));
        assert!(name("postgres://alice@db").ends_with("-alice"));
    }
}
