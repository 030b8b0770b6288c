//! Which store `--state` (else `$WARD_STATE`, else the default place)
//! names, and opening it: the one place that knows every backend.
//!
//! A value with a `scheme://` is a store address; anything else is the
//! path of an SQLite database. A new backend adds its scheme to
//! [`Location`] and its arm to [`open`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::host::HostIdentity;
use super::sqlite::{SqliteStore, StatePaths};
use super::{Access, StateError, Store};

/// A store, as `--state` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file.
    Sqlite(PathBuf),
}

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
    };
    Ok(super::fault::wrap(store))
}

/// `--state`, else `$WARD_STATE`, else `/var/lib/ward/ward.db` for root,
/// else `$XDG_STATE_HOME/ward/ward.db` (default `~/.local/state`).
pub fn locate(given: Option<&Path>) -> Result<Location, StateError> {
    if let Some(value) = given {
        tracing::info!("state: the database given by --state");
        return parse(value.as_os_str());
    }
    if let Some(value) = std::env::var_os("WARD_STATE").filter(|v| !v.is_empty()) {
        tracing::info!("state: the database named by $WARD_STATE (no --state given)");
        return parse(&value);
    }
    if rustix::process::geteuid().is_root() {
        tracing::info!("state: root's default database (no --state, no $WARD_STATE)");
        return Ok(Location::Sqlite(PathBuf::from("/var/lib/ward/ward.db")));
    }
    // The XDG spec: a relative path is invalid and must be ignored
    // (it would put the state wherever ward happens to be started).
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    tracing::info!(
        "state: the default database under $XDG_STATE_HOME or ~/.local/state (no --state, no $WARD_STATE)"
    );
    Ok(Location::Sqlite(base.join("ward").join("ward.db")))
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
    let why = match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => "PostgreSQL state is not built yet (issue 17)".to_owned(),
        other => format!("ward knows no state store of scheme `{other}`"),
    };
    Err(StateError::Unsupported {
        value: shown,
        why: format!(
            "{why}; for now the state is an SQLite database: pass its file path (a value with \
             `://` is read as an address, not a path)"
        ),
    })
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
    fn paths_are_sqlite_and_addresses_are_refused_without_their_password() {
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
        let err = parse(OsStr::new(
            "postgres://ward:hunter22@db.example/ward?sslmode=require",
        ))
        .expect_err("not built");
        let text = err.to_string();
        assert!(
            text.contains("PostgreSQL state is not built yet (issue 17)"),
            "{text}"
        );
        assert!(
            text.contains("postgres://ward:********@db.example/ward?sslmode=require"),
            "{text}"
        );
        assert!(!text.contains("hunter22"), "{text}");
        let err = parse(OsStr::new("postgresql://db/ward")).expect_err("not built");
        assert!(err.to_string().contains("PostgreSQL"), "{err}");
        let err = parse(OsStr::new("s3://bucket/ward")).expect_err("unknown");
        assert!(err.to_string().contains("scheme `s3`"), "{err}");
    }
}
