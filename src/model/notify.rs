//! `notify:` and `metrics:`: who hears about a run, and where its figures go.
//!
//! The model keeps what the playbook says (spans where a later check
//! points back); `notify/` sends. Nothing here is a template: these values
//! are used as written. A password is never part of the model: only where
//! to read it (`password_env`, `password_file`).

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Duration;

/// What happened to a run, as `on:` lists name it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// The run did not succeed: a step failed, a signal stopped it, or its
    /// state could not be recorded.
    Failure,
    /// The run succeeded (warnings included).
    Success,
    /// The run succeeded and the previous finished run of the playbook did
    /// not (or this run itself had failed before it was resumed).
    Recovered,
    /// The run was skipped (a precondition did not hold).
    Skipped,
    /// A slot of the schedule passed without a run (machine off, suspended,
    /// clock jumped); sent once per slot, by the next run.
    Missed,
}

impl NotifyOn {
    /// The word `on:` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::Failure => "failure",
            NotifyOn::Success => "success",
            NotifyOn::Recovered => "recovered",
            NotifyOn::Skipped => "skipped",
            NotifyOn::Missed => "missed",
        }
    }
}

/// `on:` when a notifier does not say: only what needs a person.
pub const DEFAULT_ON: &[NotifyOn] = &[NotifyOn::Failure, NotifyOn::Recovered, NotifyOn::Missed];

/// `notify:` of a playbook.
#[derive(Clone, Debug, Default)]
pub struct Notify {
    /// `notify.email`.
    pub email: Option<Email>,
    /// `notify.command`.
    pub command: Option<CommandHook>,
    /// `notify.ping`.
    pub ping: Option<Ping>,
}

impl Notify {
    /// True if nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.command.is_none() && self.ping.is_none()
    }
}

/// `tls:` of `notify.email`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (port 25): only for a relay on this machine or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
}

impl SmtpTls {
    /// The usual port of this kind of connection.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

/// Where the SMTP password is read when a mail is sent (never from the playbook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password_env: NAME`: the environment variable NAME of ward's process.
    Env(String),
    /// `password_file: PATH`: the file's first line (relative to the playbook's folder).
    File(PathBuf),
}

/// `notify.email`.
#[derive(Clone, Debug)]
pub struct Email {
    /// `to:`, one or more mailboxes (`ops@example.org` or `Ops <ops@example.org>`).
    pub to: Vec<String>,
    /// `from:`, one mailbox.
    pub from: String,
    /// `host:`, the SMTP server.
    pub host: String,
    /// `port:`, or the usual port of `tls`.
    pub port: u16,
    /// `tls:` (default `starttls`).
    pub tls: SmtpTls,
    /// `user:` or the variable named by `user_env:`, for SMTP AUTH.
    pub user: Option<UserSource>,
    /// Where the password is read.
    pub password: Option<PasswordSource>,
    /// `ca_file:`, PEM certificates to trust instead of the Mozilla roots
    /// (a private CA, or a relay's own certificate).
    pub ca_file: Option<PathBuf>,
    /// `on:`.
    pub on: Vec<NotifyOn>,
    /// `timeout:` for the whole conversation with the server (default 30s).
    pub timeout: Duration,
}

/// Where the SMTP user name comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserSource {
    /// `user: NAME` (a login name is not a secret).
    Literal(String),
    /// `user_env: VAR`.
    Env(String),
}

/// `notify.command`: a program run with the run's summary as JSON on stdin.
#[derive(Clone, Debug)]
pub struct CommandHook {
    /// The argv (no shell).
    pub argv: Vec<String>,
    /// `on:`.
    pub on: Vec<NotifyOn>,
    /// `timeout:` (default 30s); the program's process group is then killed.
    pub timeout: Duration,
}

/// `notify.ping`: healthchecks-style URLs hit with an HTTP GET.
#[derive(Clone, Debug)]
pub struct Ping {
    /// Hit when the run starts.
    pub start: Option<HttpUrl>,
    /// Hit when the run succeeded (warnings included).
    pub success: Option<HttpUrl>,
    /// Hit when the run did not succeed.
    pub failure: Option<HttpUrl>,
    /// `ca_file:`, PEM certificates to trust instead of the Mozilla roots
    /// for `https://` (a self-hosted service with a private CA).
    pub ca_file: Option<PathBuf>,
    /// `timeout:` for one request (default 10s).
    pub timeout: Duration,
}

/// Default `timeout:` of `notify.email` and `notify.command`.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration(std::time::Duration::from_secs(30));

/// Default `timeout:` of `notify.ping`.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration(std::time::Duration::from_secs(10));

/// A path from `notify:` or `metrics:` made absolute: relative ones are
/// read from the playbook's folder, as steps' paths are.
pub fn resolve(playbook_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        playbook_dir.join(path)
    }
}

/// An `http://` or `https://` URL, taken apart for a plain HTTP/1.1 GET.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// The URL as written.
    pub text: String,
    /// True for `https://`.
    pub https: bool,
    /// Host name or address (IPv6 without its brackets).
    pub host: String,
    /// Port (default 80 or 443).
    pub port: u16,
    /// Path and query, at least `/`.
    pub target: String,
}

impl HttpUrl {
    /// Reads `http[s]://host[:port][/path][?query]`; user info and
    /// fragments are refused (a password in a URL would be shown in logs).
    pub fn parse(text: &str) -> Result<HttpUrl, String> {
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("a ping URL must start with `http://` or `https://`".into());
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a URL cannot contain spaces or control characters".into());
        }
        if text.contains('#') {
            return Err("a ping URL cannot have a fragment (`#...`)".into());
        }
        let cut = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(cut);
        if authority.contains('@') {
            return Err(
                "a ping URL cannot carry a user or password (`user@host`); put the secret in the \
                 path as ping services do, or use `notify.command`"
                    .into(),
            );
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or("an IPv6 address must end with `]`".to_owned())?;
            let host = &v6[..end];
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("unexpected `{after}` after the address")),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("`{p}` is not a port number"))?,
        };
        let target = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Ok(HttpUrl {
            text: text.to_owned(),
            https,
            host,
            port,
            target,
        })
    }
}

/// `notify:` as JSON Schema sees it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyDoc {
    /// Mail to an operator after a run (SMTP; rustls, no OpenSSL).
    pub email: Option<EmailDoc>,
    /// A program run after a run with its summary as JSON on stdin (chat webhooks).
    pub command: Option<CommandDoc>,
    /// healthchecks-style URLs hit with an HTTP GET at the start and the end of a run.
    pub ping: Option<PingDoc>,
}

/// One mailbox, or a list of them.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MailboxesDoc {
    /// One mailbox.
    One(String),
    /// Several mailboxes.
    Many(Vec<String>),
}

/// `notify.email`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailDoc {
    /// Recipients: `ops@example.org` or `Ops <ops@example.org>`, one or a list.
    pub to: MailboxesDoc,
    /// Sender mailbox.
    pub from: String,
    /// SMTP server host name.
    pub host: String,
    /// SMTP port (default 25, 587 or 465 by `tls`).
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    pub tls: Option<SmtpTls>,
    /// SMTP user name (not a secret; see `user_env`).
    pub user: Option<String>,
    /// Environment variable holding the SMTP user name.
    pub user_env: Option<String>,
    /// Environment variable holding the SMTP password (never write the password itself here).
    pub password_env: Option<String>,
    /// File whose first line is the SMTP password (relative to the playbook's folder).
    pub password_file: Option<String>,
    /// PEM file of the certificates to trust instead of the public roots (private CA).
    pub ca_file: Option<String>,
    /// Which runs send a mail (default `[failure, recovered]`).
    pub on: Option<Vec<NotifyOn>>,
    /// Time limit for sending (default 30s).
    pub timeout: Option<Duration>,
}

/// `notify.command`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandDoc {
    /// The program and its arguments (no shell); the summary is its stdin.
    #[schemars(length(min = 1))]
    pub cmd: Vec<String>,
    /// Which runs start it (default `[failure, recovered]`).
    pub on: Option<Vec<NotifyOn>>,
    /// Time limit (default 30s); its process group is then killed.
    pub timeout: Option<Duration>,
}

/// `notify.ping`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PingDoc {
    /// URL hit when the run starts.
    pub start: Option<String>,
    /// URL hit when the run succeeded (warnings included).
    pub success: Option<String>,
    /// URL hit when the run did not succeed.
    pub failure: Option<String>,
    /// PEM file of the certificates to trust for `https://` instead of the public roots (private CA).
    pub ca_file: Option<String>,
    /// Time limit of one request (default 10s).
    pub timeout: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart() {
        let u = HttpUrl::parse("https://hc.example.org/ping/abc?x=1").expect("url");
        assert!(u.https);
        assert_eq!((u.host.as_str(), u.port), ("hc.example.org", 443));
        assert_eq!(u.target, "/ping/abc?x=1");
        let u = HttpUrl::parse("http://127.0.0.1:8080").expect("url");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 8080, "/")
        );
        let u = HttpUrl::parse("http://[::1]:9/x").expect("url");
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        for bad in [
            "ftp://x/",
            "http://",
            "http://u:p@x/",
            "http://x:0/",
            "http://x:99999/",
            "http://x/a b",
            "http://x/#f",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
