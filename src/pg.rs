//! Reaching PostgreSQL: connection parameters ([`PgConn`]), libpq tool
//! environments, password files, native connections (tokio-postgres) and
//! their errors in words.
//!
//! A library below the actions (it imports nothing from `crate::action`):
//! the `pg.*` actions use it and turn its [`ConnError`] into theirs.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How to reach PostgreSQL. Passwords never go here: use `passfile`
/// (a `.pgpass` file) or `PGPASSWORD` in the step's `env`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PgConn {
    /// Host name or socket directory (libpq's `PGHOST`).
    pub host: Option<String>,
    /// Port (default 5432).
    pub port: Option<u16>,
    /// Role to connect as.
    pub user: Option<String>,
    /// Database to connect to first (default `postgres`).
    pub dbname: Option<String>,
    /// A `.pgpass` file with the password (mode 0600).
    pub passfile: Option<String>,
}

impl PgConn {
    /// `user@host:port` for plans; libpq defaults shown as such.
    /// A connection string in `dbname` counts; its password is never shown.
    pub fn describe(&self) -> String {
        let words = keywords(self).unwrap_or_default();
        let word = |k: &str| {
            words
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        format!(
            "{}@{}:{}",
            word("user").unwrap_or("$PGUSER"),
            word("host").unwrap_or("local socket"),
            word("port").unwrap_or("5432")
        )
    }
}

/// Why connection parameters cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnError {
    /// The connection string in `db.dbname`: why it does not parse or is not supported.
    ConnString(ConnStringError),
    /// A host, role, database or service name that would be read as an option.
    OptionLike {
        /// The libpq keyword (`host`, `user`, `dbname`, `service`).
        key: String,
        /// Its value.
        value: String,
    },
    /// `db.port` is not a port number.
    Port(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::ConnString(e) => write!(f, "{e}"),
            ConnError::OptionLike { key, value } => write!(
                f,
                "`db.{key}` starts with `-`: {value:?} would be read as an option; nothing was run"
            ),
            ConnError::Port(p) => write!(f, "`db.port` {p:?} is not a port number"),
        }
    }
}

impl std::error::Error for ConnError {}

/// Why a connection string (`key=value ...` or a `postgres://` URI) cannot
/// be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnStringError {
    /// A key without `=` and a value.
    #[error("missing `=` after `{0}` in the connection string")]
    MissingEquals(String),
    /// A quoted value without its closing quote.
    #[error("unterminated quoted value of `{0}` in the connection string")]
    Unterminated(String),
    /// A URI host `[...` without its `]`.
    #[error("unclosed `[` in host `{0}`")]
    UnclosedBracket(String),
    /// A URI parameter without `=`.
    #[error("missing `=` in `{0}` of the connection URI")]
    UriMissingEquals(String),
    /// A `%` not followed by two hex digits.
    #[error("bad percent escape in `{0}`")]
    BadEscape(String),
    /// Percent escapes that decode to invalid UTF-8.
    #[error("`{0}` is not UTF-8 once decoded")]
    NotUtf8(String),
    /// A keyword with no libpq environment variable.
    #[error(
        "`{0}` in the connection string of `db.dbname` is not supported \
         (it has no libpq environment variable)"
    )]
    Unsupported(String),
}

/// libpq's connection keywords and the environment variables that set them
/// (libpq, "Environment Variables"). Connection parameters reach libpq tools
/// only through these: nothing a playbook or `--var` gives can be read as
/// an option, and a password never appears on a command line.
const KEYWORD_ENV: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("service", "PGSERVICE"),
    ("options", "PGOPTIONS"),
    ("application_name", "PGAPPNAME"),
    ("client_encoding", "PGCLIENTENCODING"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("sslmode", "PGSSLMODE"),
    ("sslnegotiation", "PGSSLNEGOTIATION"),
    ("sslcompression", "PGSSLCOMPRESSION"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcrl", "PGSSLCRL"),
    ("sslcrldir", "PGSSLCRLDIR"),
    ("sslsni", "PGSSLSNI"),
    ("requirepeer", "PGREQUIREPEER"),
    ("require_auth", "PGREQUIREAUTH"),
    ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
    ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
    ("gssencmode", "PGGSSENCMODE"),
    ("krbsrvname", "PGKRBSRVNAME"),
    ("gsslib", "PGGSSLIB"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("load_balance_hosts", "PGLOADBALANCEHOSTS"),
];

/// True if libpq would read `dbname` as a connection string, not a name.
pub fn is_conninfo(dbname: &str) -> bool {
    dbname.contains('=') || dbname.starts_with("postgresql://") || dbname.starts_with("postgres://")
}

/// The database a connection names (`postgres` by default), for messages
/// and plans: never its other words, since a connection string may hold a
/// password.
pub fn database_name(conn: &PgConn) -> String {
    keywords(conn)
        .ok()
        .and_then(|w| w.into_iter().find(|(k, _)| k == "dbname"))
        .map_or_else(|| "postgres".to_owned(), |(_, v)| v)
}

/// A connection's parameters as libpq keywords (`host`, `dbname`,
/// `password`, ...): a connection string in `dbname` taken apart, then the
/// explicit fields, which win.
pub fn keywords(conn: &PgConn) -> Result<Vec<(String, String)>, ConnError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: String| {
        out.retain(|(key, _)| key != k);
        out.push((k.to_owned(), v));
    };
    if let Some(d) = &conn.dbname {
        if is_conninfo(d) {
            for (k, v) in parse_conninfo(d).map_err(ConnError::ConnString)? {
                if !KEYWORD_ENV.iter().any(|(key, _)| *key == k) {
                    return Err(ConnError::ConnString(ConnStringError::Unsupported(k)));
                }
                set(&k, v);
            }
        } else {
            set("dbname", d.clone());
        }
    }
    if let Some(h) = &conn.host {
        set("host", h.clone());
    }
    if let Some(p) = conn.port {
        set("port", p.to_string());
    }
    if let Some(u) = &conn.user {
        set("user", u.clone());
    }
    if let Some(f) = &conn.passfile {
        set("passfile", f.clone());
    }
    Ok(out)
}

/// How a libpq tool is told where to connect.
pub struct ToolConn {
    /// Every connection parameter as its `PG*` variable, for the child.
    pub env: Vec<(String, String)>,
    /// The database, also for tools that ignore `PGDATABASE` (pg_dumpall).
    pub dbname: Option<String>,
}

/// Environment for libpq tools: every connection parameter as its `PG*`
/// variable (a relative `passfile` resolved against `work_dir`, the
/// playbook's folder).
pub fn tool_env(conn: &PgConn, work_dir: &Path) -> Result<ToolConn, ConnError> {
    let words = keywords(conn)?;
    let mut env = Vec::new();
    let mut dbname = None;
    for (k, v) in words {
        if v.starts_with('-') && matches!(k.as_str(), "host" | "user" | "dbname" | "service") {
            return Err(ConnError::OptionLike { key: k, value: v });
        }
        if k == "dbname" {
            dbname = Some(v.clone());
        }
        let value = if k == "passfile" {
            work_dir.join(&v).display().to_string()
        } else {
            v
        };
        if let Some((_, var)) = KEYWORD_ENV.iter().find(|(key, _)| *key == k) {
            env.push(((*var).to_owned(), value));
        }
    }
    Ok(ToolConn { env, dbname })
}

/// Splits a libpq connection string, `key=value ...` (values may be
/// single-quoted; `\` escapes) or a `postgres[ql]://` URI, into keywords.
pub fn parse_conninfo(text: &str) -> Result<Vec<(String, String)>, ConnStringError> {
    if let Some(rest) = text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
    {
        return parse_uri(rest);
    }
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(ConnStringError::MissingEquals(key));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(ConnStringError::Unterminated(key)),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// `[user[:password]@][host][:port][,...][/dbname][?key=value&...]`, percent-decoded.
fn parse_uri(rest: &str) -> Result<Vec<(String, String)>, ConnStringError> {
    let mut out = Vec::new();
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, db) = main.split_once('/').unwrap_or((main, ""));
    let hosts = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                out.push(("user".to_owned(), percent_decode(user)?));
            }
            if let Some(p) = password {
                out.push(("password".to_owned(), percent_decode(p)?));
            }
            hosts
        }
        None => authority,
    };
    if !hosts.is_empty() {
        let mut names = Vec::new();
        let mut ports = Vec::new();
        for h in hosts.split(',') {
            // `[::1]:5432`: the port follows the bracket.
            let (name, port) = match h.strip_prefix('[') {
                Some(v6) => {
                    let (name, after) = v6
                        .split_once(']')
                        .ok_or_else(|| ConnStringError::UnclosedBracket(h.to_owned()))?;
                    (name, after.strip_prefix(':').unwrap_or(""))
                }
                None => h.split_once(':').unwrap_or((h, "")),
            };
            names.push(percent_decode(name)?);
            ports.push(port.to_owned());
        }
        if names.iter().any(|n| !n.is_empty()) {
            out.push(("host".to_owned(), names.join(",")));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            out.push(("port".to_owned(), ports.join(",")));
        }
    }
    if !db.is_empty() {
        out.push(("dbname".to_owned(), percent_decode(db)?));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ConnStringError::UriMissingEquals(pair.to_owned()))?;
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, ConnStringError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConnStringError::BadEscape(s.to_owned()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConnStringError::NotUtf8(s.to_owned()))
}

/// A variable from the step's environment `env`, else ward's.
fn env_var(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter()
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
/// `~/.pgpass` or `PGPASSWORD`. `env` is the step's environment (it wins
/// over ward's); a relative `passfile` is resolved against `work_dir`.
pub fn native_config(
    conn: &PgConn,
    env: &[(String, String)],
    work_dir: &Path,
) -> Result<tokio_postgres::Config, ConnError> {
    let words = keywords(conn)?;
    let word = |k: &str| {
        words
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let host = word("host")
        .or_else(|| env_var(env, "PGHOST"))
        .unwrap_or_else(|| "/var/run/postgresql".to_owned());
    let port = match word("port") {
        Some(p) => p.parse().map_err(|_| ConnError::Port(p))?,
        None => env_var(env, "PGPORT")
            .and_then(|p| p.parse().ok())
            .unwrap_or(5432),
    };
    let user = word("user")
        .or_else(|| env_var(env, "PGUSER"))
        .or_else(|| env_var(env, "USER"))
        .unwrap_or_else(|| "postgres".to_owned());
    let db = word("dbname")
        .or_else(|| env_var(env, "PGDATABASE"))
        .unwrap_or_else(|| "postgres".to_owned());
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&host)
        .port(port)
        .user(&user)
        .dbname(&db)
        .application_name("ward");
    cfg.connect_timeout(std::time::Duration::from_secs(30));
    if let Some(o) = word("options") {
        cfg.options(&o);
    }
    let passfile = word("passfile")
        .map(|p| work_dir.join(p))
        .or_else(|| env_var(env, "PGPASSFILE").map(Into::into))
        .or_else(|| env_var(env, "HOME").map(|h| Path::new(&h).join(".pgpass")));
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
    // libpq's order: a password in the connection string, the password
    // file, then PGPASSWORD.
    if let Some(pw) = word("password")
        .or(from_file)
        .or_else(|| env_var(env, "PGPASSWORD"))
    {
        cfg.password(pw);
    }
    Ok(cfg)
}

/// A native connection's error for the operator: the server's severity and
/// message, or the client's error with its cause ("error connecting to
/// server" alone does not say why).
pub fn native_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Bounds on [`fetch_rows`]: none for `pg.query` (the step's own timeout
/// applies), all three for a `for_each` list, which runs beside the
/// scheduler's loop and must end when told.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowBounds<'a> {
    /// The most bytes the rows may hold (column names and values, counted
    /// per row, as the items are recorded).
    pub max_bytes: Option<u64>,
    /// How long connecting and querying may take.
    pub timeout: Option<std::time::Duration>,
    /// Set by another thread to give up now.
    pub stop: Option<&'a std::sync::atomic::AtomicBool>,
}

/// Why [`fetch_rows`] gave no rows. The texts never hold a password: the
/// server's messages and the client's errors do not carry one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowsError {
    /// No runtime could be started.
    Runtime(String),
    /// The server could not be reached or refused the login.
    Connect(String),
    /// The server refused or failed the SQL (syntax, permission, ...).
    Query(String),
    /// The rows hold more than `max_bytes`.
    TooLarge(u64),
    /// `timeout` passed first; the query was cancelled.
    TimedOut(std::time::Duration),
    /// `stop` was set; the query was cancelled.
    Stopped,
}

impl std::fmt::Display for RowsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowsError::Runtime(e) => write!(f, "cannot start a runtime: {e}"),
            RowsError::Connect(e) => write!(f, "cannot connect to PostgreSQL: {e}"),
            RowsError::Query(e) => write!(f, "query failed: {e}"),
            RowsError::TooLarge(n) => write!(f, "the rows hold more than {n} bytes"),
            RowsError::TimedOut(t) => {
                write!(
                    f,
                    "no answer within {}s; the query was cancelled",
                    t.as_secs()
                )
            }
            RowsError::Stopped => write!(f, "the query was cancelled: ward was asked to stop"),
        }
    }
}

/// Connects with `cfg`, runs `sql` and gives its rows as JSON objects,
/// column name to PostgreSQL's text for the value (or null): the simple
/// protocol, so every statement of `sql` runs in one implicit transaction
/// and the rows are those of the statements that return some. What
/// `pg.query` saves and what a `for_each: { pg_query: ... }` lists, alike.
/// Blocking (its own runtime); on a timeout or a stop the query is
/// cancelled on the server and the connection dropped, so neither waits for
/// a slow query.
pub fn fetch_rows(
    cfg: &tokio_postgres::Config,
    sql: &str,
    bounds: RowBounds<'_>,
) -> Result<Vec<serde_json::Value>, RowsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RowsError::Runtime(e.to_string()))?;
    runtime.block_on(async {
        let deadline = bounds.timeout.map(|t| tokio::time::Instant::now() + t);
        // Resolves when the caller gives up (never without a bound).
        let give_up = || async {
            let expired = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let stopped = async {
                match bounds.stop {
                    Some(stop) => {
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = expired => RowsError::TimedOut(bounds.timeout.unwrap_or_default()),
                () = stopped => RowsError::Stopped,
            }
        };
        let (client, connection) = tokio::select! {
            c = cfg.connect(tokio_postgres::NoTls) => {
                c.map_err(|e| RowsError::Connect(native_error(&e)))?
            }
            why = give_up() => return Err(why),
        };
        let conn_task = tokio::spawn(connection);
        let messages = tokio::select! {
            m = client.simple_query(sql) => m.map_err(|e| RowsError::Query(native_error(&e)))?,
            why = give_up() => {
                // Dropping the connection alone would leave the server
                // running the query until it next writes to the socket.
                let cancel = client.cancel_token();
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(2),
                    cancel.cancel_query(tokio_postgres::NoTls),
                )
                .await;
                conn_task.abort();
                return Err(why);
            }
        };
        drop(client);
        let _ = conn_task.await;
        let mut rows = Vec::new();
        let mut bytes: u64 = 0;
        for m in messages {
            let tokio_postgres::SimpleQueryMessage::Row(row) = m else {
                continue;
            };
            let mut obj = serde_json::Map::new();
            for (i, col) in row.columns().iter().enumerate() {
                let value = row.get(i);
                bytes += (col.name().len() + value.map_or(0, str::len)) as u64;
                let v = value.map_or(serde_json::Value::Null, |s| {
                    serde_json::Value::String(s.to_owned())
                });
                obj.insert(col.name().to_owned(), v);
            }
            if let Some(max) = bounds.max_bytes
                && bytes > max
            {
                return Err(RowsError::TooLarge(max));
            }
            rows.push(serde_json::Value::Object(obj));
        }
        Ok(rows)
    })
}

/// The databases `pg_dumpall` dumps, in its order: template1 first.
pub const LIST_DATABASES: &str = "SELECT datname FROM pg_database \
     WHERE datallowconn AND datconnlimit <> -2 AND datname <> 'template0' \
     ORDER BY datname <> 'template1', datname";

/// Each ordinary table of the connected database, named as pg_dump's COPY
/// line names it, with the planner's row estimate (`pg_class.reltuples`;
/// -1 for a table never vacuumed or analyzed). A catalog read: cheap,
/// no table is scanned.
const TABLE_ESTIMATES: &str = "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
     c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' \
     AND n.nspname !~ '^pg_(catalog|toast|temp_)' ORDER BY 1";

/// The row estimates of one database, as a dump's side file records them
/// (for a rehearsal to compare restored row counts with).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowEstimates {
    /// The database.
    pub name: String,
    /// Table (`schema.table`, quoted as pg_dump quotes it) to its
    /// estimated rows; `None` where the server has no estimate yet.
    pub row_estimates: std::collections::BTreeMap<String, Option<i64>>,
}

/// The row estimates of the database `client` is connected to (named
/// `db` in the result).
pub async fn row_estimates(
    client: &tokio_postgres::Client,
    db: &str,
) -> Result<RowEstimates, tokio_postgres::Error> {
    let rows = client.simple_query(TABLE_ESTIMATES).await?;
    let row_estimates = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                let table = r.get(0)?.to_owned();
                let n = r
                    .get(1)
                    .and_then(|n| n.parse::<i64>().ok())
                    .filter(|n| *n >= 0);
                Some((table, n))
            }
            _ => None,
        })
        .collect();
    Ok(RowEstimates {
        name: db.to_owned(),
        row_estimates,
    })
}

/// The row estimates of every database `pg_dumpall` dumps (one short
/// connection each), read just before a dump. Blocking (its own runtime).
pub fn cluster_row_estimates(cfg: &tokio_postgres::Config) -> Result<Vec<RowEstimates>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let connect = |db: String| async move {
            let mut cfg = cfg.clone();
            if !db.is_empty() {
                cfg.dbname(&db);
            }
            let (client, conn) = cfg
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| format!("cannot connect to database {db:?}: {}", native_error(&e)))?;
            let task = tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, String>((client, task))
        };
        let (client, task) = connect(String::new()).await?;
        let dbs: Vec<String> = client
            .simple_query(LIST_DATABASES)
            .await
            .map_err(|e| format!("cannot list the databases: {}", native_error(&e)))?
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .collect();
        drop(client);
        let _ = task.await;
        let mut out = Vec::new();
        for db in dbs {
            let (client, task) = connect(db.clone()).await?;
            let got = row_estimates(&client, &db).await.map_err(|e| {
                format!(
                    "cannot read the row estimates of {db:?}: {}",
                    native_error(&e)
                )
            });
            drop(client);
            let _ = task.await;
            out.push(got?);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::{PgConn, keywords, parse_conninfo, pgpass_lookup};

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn connection_strings_are_taken_apart() {
        assert_eq!(
            parse_conninfo(r"host=db  dbname = 'my app' password='it\'s' user=x\ y").expect("kv"),
            pairs(&[
                ("host", "db"),
                ("dbname", "my app"),
                ("password", "it's"),
                ("user", "x y")
            ])
        );
        assert_eq!(
            parse_conninfo("postgresql://fossy:p%40ss@db1:5433,db2/fossology?sslmode=require")
                .expect("uri"),
            pairs(&[
                ("user", "fossy"),
                ("password", "p@ss"),
                ("host", "db1,db2"),
                ("port", "5433,"),
                ("dbname", "fossology"),
                ("sslmode", "require")
            ])
        );
        let why = |text: &str| parse_conninfo(text).expect_err(text).to_string();
        assert_eq!(
            why("host"),
            "missing `=` after `host` in the connection string"
        );
        assert_eq!(
            why("password='open"),
            "unterminated quoted value of `password` in the connection string"
        );
        assert_eq!(
            why("postgres://[::1:5432"),
            "unclosed `[` in host `[::1:5432`"
        );
        assert_eq!(
            why("postgres://h/db?sslmode"),
            "missing `=` in `sslmode` of the connection URI"
        );
        assert_eq!(why("postgres://u%4@h"), "bad percent escape in `u%4`");
        assert_eq!(why("postgres://h/%ff"), "`%ff` is not UTF-8 once decoded");
        let conn = PgConn {
            dbname: Some("dbname=a host=h password=s".into()),
            host: Some("/run/pg".into()),
            ..PgConn::default()
        };
        assert_eq!(
            keywords(&conn).expect("keywords"),
            pairs(&[("dbname", "a"), ("password", "s"), ("host", "/run/pg")])
        );
        let bad = PgConn {
            dbname: Some("dbname=a keepalives=1".into()),
            ..PgConn::default()
        };
        assert_eq!(
            keywords(&bad).expect_err("keepalives").to_string(),
            "`keepalives` in the connection string of `db.dbname` is not supported \
             (it has no libpq environment variable)"
        );
    }

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
