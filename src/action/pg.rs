//! What the PostgreSQL actions share: libpq tool arguments, password files,
//! and native connections (tokio-postgres) for `pg.query`.

use std::path::Path;

use super::params::PgConn;
use super::{ActionCtx, ActionError};

/// Connection arguments for pg_dumpall/psql. `-w`: never prompt for a
/// password (a prompt would hang an unattended run).
pub fn tool_args(conn: &PgConn, database_flag: &str) -> Vec<String> {
    let mut args = vec!["-w".to_owned()];
    if let Some(h) = &conn.host {
        args.extend(["-h".to_owned(), h.clone()]);
    }
    if let Some(p) = conn.port {
        args.extend(["-p".to_owned(), p.to_string()]);
    }
    if let Some(u) = &conn.user {
        args.extend(["-U".to_owned(), u.clone()]);
    }
    if let Some(d) = &conn.dbname {
        args.extend([database_flag.to_owned(), d.clone()]);
    }
    args
}

/// Environment for libpq tools: the password file, never the password.
pub fn tool_env(conn: &PgConn, ctx: &ActionCtx) -> Vec<(String, String)> {
    conn.passfile
        .iter()
        .map(|f| ("PGPASSFILE".to_owned(), ctx.path(f).display().to_string()))
        .collect()
}

/// A variable from the step's environment, else ward's.
fn env_var(ctx: &ActionCtx, name: &str) -> Option<String> {
    ctx.env
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(name).ok())
}

/// Finds the password for a connection in a `.pgpass` file
/// (`host:port:database:user:password`, `*` matches anything, `\` escapes).
pub fn pgpass_lookup(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let ok = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        if ok(&fields[0], host)
            && ok(&fields[1], port)
            && ok(&fields[2], db)
            && ok(&fields[3], user)
        {
            return Some(fields[4].clone());
        }
    }
    None
}

/// A tokio-postgres configuration from the parameters, libpq's environment
/// variables and defaults, with the password from `passfile`, `PGPASSFILE`,
/// `~/.pgpass` or `PGPASSWORD`.
pub fn native_config(
    conn: &PgConn,
    ctx: &ActionCtx,
) -> Result<tokio_postgres::Config, ActionError> {
    let host = conn
        .host
        .clone()
        .or_else(|| env_var(ctx, "PGHOST"))
        .unwrap_or_else(|| "/var/run/postgresql".to_owned());
    let port = conn
        .port
        .or_else(|| env_var(ctx, "PGPORT").and_then(|p| p.parse().ok()))
        .unwrap_or(5432);
    let user = conn
        .user
        .clone()
        .or_else(|| env_var(ctx, "PGUSER"))
        .or_else(|| env_var(ctx, "USER"))
        .unwrap_or_else(|| "postgres".to_owned());
    let db = conn
        .dbname
        .clone()
        .or_else(|| env_var(ctx, "PGDATABASE"))
        .unwrap_or_else(|| "postgres".to_owned());
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&host)
        .port(port)
        .user(&user)
        .dbname(&db)
        .application_name("ward");
    cfg.connect_timeout(std::time::Duration::from_secs(30));
    let passfile = conn
        .passfile
        .as_deref()
        .map(|p| ctx.path(p))
        .or_else(|| env_var(ctx, "PGPASSFILE").map(Into::into))
        .or_else(|| env_var(ctx, "HOME").map(|h| Path::new(&h).join(".pgpass")));
    let from_file = passfile
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| {
            // libpq matches `localhost` for socket connections.
            let host_key = if host.starts_with('/') {
                "localhost"
            } else {
                host.as_str()
            };
            pgpass_lookup(&text, host_key, &port.to_string(), &db, &user)
        });
    if let Some(pw) = from_file.or_else(|| env_var(ctx, "PGPASSWORD")) {
        cfg.password(pw);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::pgpass_lookup;

    #[test]
    fn pgpass_matches_with_wildcards_and_escapes() {
        let text = "# comment\ndb1:5432:*:alice:secret\n*:*:fossology:fossy:p\\:w\\\\d\n";
        assert_eq!(
            pgpass_lookup(text, "db1", "5432", "x", "alice").as_deref(),
            Some("secret")
        );
        assert_eq!(
            pgpass_lookup(text, "h", "1", "fossology", "fossy").as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(pgpass_lookup(text, "h", "1", "other", "fossy"), None);
    }
}
