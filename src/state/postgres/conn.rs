//! Reaching the PostgreSQL state: the address turned into a tokio-postgres
//! configuration (password from the address, a passfile or `PGPASSWORD`,
//! as libpq orders them; `src/pg.rs` does the parsing for the `pg.*`
//! actions too), connecting (with TLS as `sslmode` says, `tls.rs`), and
//! the errors in words that never hold the password.

use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use super::super::StateError;
use super::tls::{Check, MakeRustls};

/// How often a lost connection is tried again before a call fails, and
/// the pause before each try (doubling): about 15 s in all, long enough
/// for a PostgreSQL restart (`systemctl restart postgresql`), short
/// enough that a run whose state is gone stops soon.
pub const RECONNECT_TRIES: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// The pause before reconnect try `n` (from 1).
pub fn pause(n: u32) -> Duration {
    FIRST_PAUSE * 2u32.saturating_pow(n.saturating_sub(1))
}

/// The tokio-postgres configuration of a `postgres://` address (and its
/// TLS), or why it cannot be used. `shown` is the address with its
/// password masked.
pub fn config(address: &str, shown: &str) -> Result<Target, StateError> {
    let unsupported = |why: String| StateError::Unsupported {
        value: shown.to_owned(),
        why,
    };
    let conn = crate::pg::PgConn {
        dbname: Some(address.to_owned()),
        ..Default::default()
    };
    let words = crate::pg::keywords(&conn).map_err(|e| unsupported(conn_error(&e)))?;
    let word = |k: &str| {
        words
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let sslmode = word("sslmode").or_else(|| std::env::var("PGSSLMODE").ok());
    let rootcert = word("sslrootcert").or_else(|| std::env::var("PGSSLROOTCERT").ok());
    let check = match sslmode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => None,
        Some("require") if rootcert.is_none() => Some(Check::Nothing),
        // libpq: `require` with a root certificate checks as `verify-ca`.
        Some("require" | "verify-ca") => Some(Check::Authority),
        Some("verify-full") => Some(Check::Full),
        Some(other) => return Err(unsupported(format!("unknown `sslmode={other}`"))),
    };
    for key in ["sslcert", "sslkey"] {
        if word(key).is_some() {
            return Err(unsupported(format!(
                "`{key}`: client certificates are not supported for the state; use a password"
            )));
        }
    }
    let tls = match check {
        None => None,
        Some(check) => Some(
            MakeRustls::new(check, rootcert.as_deref())
                .map_err(|e| unsupported(format!("TLS: {e}")))?,
        ),
    };
    for key in ["service", "hostaddr"] {
        if word(key).is_some() {
            return Err(unsupported(format!(
                "`{key}` is not supported in a state address; name `host` (and `port`)"
            )));
        }
    }
    if word("host").is_some_and(|h| h.contains(',')) {
        return Err(unsupported(
            "a state address names one host (no fail-over list)".to_owned(),
        ));
    }
    let here = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let mut cfg =
        crate::pg::native_config(&conn, &[], &here).map_err(|e| unsupported(conn_error(&e)))?;
    cfg.application_name("ward state")
        .connect_timeout(Duration::from_secs(10))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    if tls.is_some() {
        // Never fall back to a plain connection.
        cfg.ssl_mode(SslMode::Require);
    } else {
        cfg.ssl_mode(SslMode::Disable);
    }
    Ok(Target { cfg, tls })
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    cfg: Config,
    tls: Option<MakeRustls>,
}

impl std::fmt::Debug for Target {
    // Never the configuration: it holds the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target {{ tls: {} }}", self.tls.is_some())
    }
}

fn conn_error(e: &crate::pg::ConnError) -> String {
    e.to_string()
}

/// A connection; its driver runs as a task on the caller's runtime.
///
/// The server ends a transaction of it left idle for `idle` (half a
/// lease): every transaction of ward's is short and never waits for a
/// person, so one left open is a ward frozen (`SIGSTOP`, a host cut off)
/// in the middle of a write; its `FOR SHARE` on its lease row would
/// otherwise keep every other host from ever taking the lock.
pub async fn connect(target: &Target, shown: &str, idle: Duration) -> Result<Client, StateError> {
    let cannot = |e: tokio_postgres::Error| StateError::Backend {
        db: shown.to_owned(),
        detail: format!("cannot connect: {}", crate::pg::native_error(&e)),
    };
    // The connection's error also reaches the next call on the client,
    // which says it.
    let client = match &target.tls {
        None => {
            let (client, connection) = target.cfg.connect(NoTls).await.map_err(cannot)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
        Some(tls) => {
            let (client, connection) = target.cfg.connect(tls.clone()).await.map_err(cannot)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
    };
    let ms = idle.as_millis().max(1);
    client
        .batch_execute(&format!("SET idle_in_transaction_session_timeout = {ms}"))
        .await
        .map_err(cannot)?;
    Ok(client)
}

/// True when the connection (not the statement) failed: the server went
/// away or restarts, the socket broke. Work not yet committed can be
/// done again on a new connection.
pub fn is_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// A PostgreSQL error for the operator.
pub fn backend(shown: &str, e: &tokio_postgres::Error) -> StateError {
    StateError::Backend {
        db: shown.to_owned(),
        detail: crate::pg::native_error(e),
    }
}

/// Why a piece of work failed: the connection (safe to do again: nothing
/// was committed), or anything else.
pub enum Fail {
    /// The connection was lost before the commit was sent.
    Lost(tokio_postgres::Error),
    /// Final.
    State(StateError),
}

impl From<StateError> for Fail {
    fn from(e: StateError) -> Fail {
        Fail::State(e)
    }
}

/// Sorts a tokio-postgres error of work before its commit.
pub fn fail(shown: &str) -> impl Fn(tokio_postgres::Error) -> Fail + '_ {
    move |e| {
        if is_lost(&e) {
            Fail::Lost(e)
        } else {
            Fail::State(backend(shown, &e))
        }
    }
}

/// An error of `COMMIT` itself: never done again, since a commit whose
/// answer was lost may have happened.
pub fn commit_failed(shown: &str, e: &tokio_postgres::Error) -> Fail {
    let detail = if is_lost(e) {
        format!(
            "the connection was lost during COMMIT, so whether the change was recorded is \
             unknown ({})",
            crate::pg::native_error(e)
        )
    } else {
        crate::pg::native_error(e)
    };
    Fail::State(StateError::Backend {
        db: shown.to_owned(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes_need_their_roots_and_plain_ones_are_read() {
        config("postgres://u:pw@db.example/ward?sslmode=require", "shown").expect("require");
        for mode in ["verify-ca", "verify-full"] {
            let err = config(
                &format!(
                    "postgres://u:pw@db.example/ward?sslmode={mode}&sslrootcert=/nonexistent/ca.pem"
                ),
                "shown",
            )
            .expect_err("no roots");
            let text = err.to_string();
            assert!(
                text.contains("TLS") && text.contains("/nonexistent/ca.pem"),
                "{text}"
            );
            assert!(!text.contains("pw@"), "{text}");
        }
        for mode in ["disable", "prefer", "allow"] {
            let cfg = config(
                &format!("postgres://u:pw@db.example:5433/ward?sslmode={mode}"),
                "shown",
            )
            .expect("plain");
            assert_eq!(cfg.cfg.get_user(), Some("u"));
            assert_eq!(cfg.cfg.get_dbname(), Some("ward"));
            assert_eq!(cfg.cfg.get_ports(), [5433]);
            assert_eq!(cfg.cfg.get_password(), Some(&b"pw"[..]));
            assert!(cfg.tls.is_none());
        }
        let err = config("postgres://a,b/ward", "shown").expect_err("a host list");
        assert!(err.to_string().contains("one host"), "{err}");
    }

    #[test]
    fn reconnect_pauses_double() {
        let pauses: Vec<u128> = (1..=RECONNECT_TRIES)
            .map(|n| pause(n).as_millis())
            .collect();
        assert_eq!(pauses, [500, 1000, 2000, 4000, 8000]);
    }
}
