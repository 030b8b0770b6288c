//! Decodes `notify:` and `metrics:` (model/notify.rs), key by key, so
//! every mistake is reported with its place.

use std::path::PathBuf;
use std::str::FromStr;

use super::fields::{Ctx, is_identifier};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::notify::{
    CommandHook, DEFAULT_HOOK_TIMEOUT, DEFAULT_ON, DEFAULT_PING_TIMEOUT, Email, HttpUrl, Notify,
    NotifyOn, PasswordSource, Ping, SmtpTls, UserSource,
};
use crate::model::{Duration, Spanned};
use crate::yaml::{Entry, Node, NodeKind};

/// Keys of `notify:`.
pub const NOTIFY_KEYS: &[&str] = &["email", "command", "ping"];
/// Keys of `notify.email`.
pub const EMAIL_KEYS: &[&str] = &[
    "to",
    "from",
    "host",
    "port",
    "tls",
    "user",
    "user_env",
    "password_env",
    "password_file",
    "ca_file",
    "on",
    "timeout",
];
/// Keys of `notify.command`.
pub const COMMAND_KEYS: &[&str] = &["cmd", "on", "timeout"];
/// Keys of `notify.ping`.
pub const PING_KEYS: &[&str] = &["start", "success", "failure", "ca_file", "timeout"];

/// Keys that would put a secret into the playbook's text.
const LITERAL_SECRETS: &[&str] = &["password", "pass", "passwd", "secret", "token"];

/// Reads `notify:`.
pub(super) fn decode(node: &Node, diags: &mut Diagnostics) -> Notify {
    let ctx = Ctx { owner: "`notify`" };
    let mut notify = Notify::default();
    let Some(entries) = ctx.mapping("notify", node, diags) else {
        return notify;
    };
    for entry in entries {
        match entry.key.as_str().unwrap_or("") {
            "email" => notify.email = decode_email(entry, diags),
            "command" => notify.command = decode_command(entry, diags),
            "ping" => notify.ping = decode_ping(&entry.value, diags),
            _ => ctx.unknown_key(&entry.key, NOTIFY_KEYS, diags),
        }
    }
    notify
}

/// Reads `metrics: PATH`.
pub(super) fn decode_metrics(node: &Node, diags: &mut Diagnostics) -> Option<Spanned<PathBuf>> {
    let ctx = Ctx {
        owner: "the playbook",
    };
    let path = ctx.value::<String>("metrics", node, diags)?;
    let problem = if path.value.is_empty() {
        Some("is empty")
    } else if path.value.ends_with('/') {
        Some(
            "names a folder; give the file, e.g. `/var/lib/node_exporter/textfile/ward-nightly.prom`",
        )
    } else if !path.value.ends_with(".prom") {
        Some(
            "must end with `.prom`: node_exporter's textfile collector reads only such files \
             (and ignores ward's temporary ones)",
        )
    } else {
        None
    };
    if let Some(p) = problem {
        diags.push(Diagnostic::error(
            "invalid-value",
            path.span,
            format!("`metrics` {p}"),
        ));
        return None;
    }
    Some(Spanned::new(PathBuf::from(&path.value), path.span))
}

fn decode_email(at: &Entry, diags: &mut Diagnostics) -> Option<Email> {
    let node = &at.value;
    let ctx = Ctx {
        owner: "`notify.email`",
    };
    let entries = ctx.mapping("email", node, diags)?;
    let mut ok = true;
    let mut to = None;
    let mut from = None;
    let mut host = None;
    let mut port = None;
    let mut tls = None;
    let mut user = None;
    let mut password: Option<Spanned<PasswordSource>> = None;
    let mut ca_file = None;
    let mut on = None;
    let mut timeout = None;
    let given = |keys: &[&str]| {
        entries
            .iter()
            .any(|e| e.key.as_str().is_some_and(|k| keys.contains(&k)))
    };
    let mut password_keys = vec!["password_env", "password_file"];
    password_keys.extend(LITERAL_SECRETS);
    // A key given but refused already has its error: no "missing" on top.
    let user_given = given(&["user", "user_env"]);
    let password_given = given(&password_keys);
    for entry in entries {
        let value = &entry.value;
        let key = entry.key.as_str().unwrap_or("");
        match key {
            "to" => to = mailboxes(&ctx, value, diags),
            "from" => {
                from = ctx.value::<String>("from", value, diags);
                if let Some(f) = &from
                    && !check_mailbox("from", f, diags)
                {
                    ok = false;
                }
            }
            "host" => {
                host = ctx.value::<String>("host", value, diags);
                if let Some(h) = &host
                    && (h.value.is_empty() || h.value.contains(['/', ' ', '@']))
                {
                    diags.push(
                        Diagnostic::error(
                            "invalid-value",
                            h.span,
                            format!("`host` in `notify.email` is not a host name: `{}`", h.value),
                        )
                        .with_help("write the server's name, e.g. `smtp.example.org`; the port goes in `port:`"),
                    );
                    ok = false;
                }
            }
            "port" => {
                port = ctx.value::<u16>("port", value, diags);
                if port.as_ref().is_some_and(|p| p.value == 0) {
                    diags.push(Diagnostic::error(
                        "invalid-value",
                        value.span,
                        "`port` in `notify.email` must be 1 to 65535",
                    ));
                    ok = false;
                }
            }
            "tls" => tls = ctx.value::<SmtpTls>("tls", value, diags),
            "user" | "user_env" => {
                // `user_env`'s value may be a secret pasted in by mistake.
                let read = if key == "user_env" {
                    hidden(diags, |d| ctx.value::<String>(key, value, d))
                } else {
                    ctx.value::<String>(key, value, diags)
                };
                if let Some(u) = read {
                    if user.is_some() {
                        diags.push(both(entry, "user", "user_env").hiding_source());
                        ok = false;
                    } else if key == "user_env" {
                        if env_name_ok("user_env", &u, diags) {
                            user = Some(Spanned::new(UserSource::Env(u.value), u.span));
                        } else {
                            ok = false;
                        }
                    } else {
                        user = Some(Spanned::new(UserSource::Literal(u.value), u.span));
                    }
                }
            }
            "password_env" | "password_file" => {
                // Its line may hold the password itself (pasted in as the
                // variable's name): no diagnostic here shows it.
                let read = hidden(diags, |d| ctx.value::<String>(key, value, d));
                if let Some(p) = read {
                    if password.is_some() {
                        diags.push(both(entry, "password_env", "password_file").hiding_source());
                        ok = false;
                    } else if key == "password_env" {
                        if env_name_ok("password_env", &p, diags) {
                            password = Some(Spanned::new(PasswordSource::Env(p.value), p.span));
                        } else {
                            ok = false;
                        }
                    } else if p.value.is_empty() {
                        diags.push(Diagnostic::error(
                            "invalid-value",
                            p.span,
                            "`password_file` in `notify.email` is empty",
                        ));
                        ok = false;
                    } else {
                        password = Some(Spanned::new(
                            PasswordSource::File(PathBuf::from(p.value)),
                            p.span,
                        ));
                    }
                }
            }
            "ca_file" => {
                ca_file = ctx
                    .value::<String>("ca_file", value, diags)
                    .map(|c| PathBuf::from(c.value))
            }
            "on" => on = read_on(&ctx, value, diags),
            "timeout" => timeout = read_timeout(&ctx, value, diags),
            k if LITERAL_SECRETS.contains(&k) => {
                // Only the key is named: the value is never repeated.
                diags.push(
                    Diagnostic::error(
                        "secret-in-playbook",
                        entry.key.span,
                        format!("`{k}` in `notify.email`: the SMTP password cannot be written in the playbook"),
                    )
                    // Its line holds the password: the place is enough.
                    .hiding_source()
                    .with_help(
                        "remove it, and give `password_env: NAME` (an environment variable of ward's) \
                         or `password_file: PATH` (a file only ward's user can read)",
                    ),
                );
                ok = false;
            }
            // A misspelt `password:` holds the password: the place is enough.
            _ => hidden(diags, |d| ctx.unknown_key(&entry.key, EMAIL_KEYS, d)),
        }
    }
    let span = at.key.span;
    for (key, missing, example) in [
        ("to", to.is_none(), "`to: ops@example.org`"),
        ("from", from.is_none(), "`from: ward@backup1.example.org`"),
        ("host", host.is_none(), "`host: smtp.example.org`"),
    ] {
        if missing && !entries.iter().any(|e| e.key.as_str() == Some(key)) {
            diags.push(
                Diagnostic::error(
                    "missing-key",
                    span,
                    format!("missing required key `{key}` in `notify.email`"),
                )
                .with_help(format!("add {example}")),
            );
        }
    }
    let tls_value = tls.as_ref().map_or(SmtpTls::Starttls, |t| t.value);
    let local = host
        .as_ref()
        .is_some_and(|h| matches!(h.value.as_str(), "localhost" | "127.0.0.1" | "::1"));
    if let Some(p) = &password
        && tls_value == SmtpTls::None
        && !local
    {
        diags.push(
                Diagnostic::error(
                    "invalid-value",
                    tls.as_ref().map_or(p.span, |t| t.span),
                    "`tls: none` would send the SMTP password in clear over the network",
                )
                .hiding_source()
                .with_help("use `tls: starttls` or `tls: tls` (a relay on this machine, `host: localhost`, may use `none`)"),
            );
        ok = false;
    }
    match (&user, &password) {
        (Some(u), None) if !password_given => {
            diags.push(
                Diagnostic::error(
                    "missing-key",
                    u.span,
                    "an SMTP user needs a password: add `password_env` or `password_file` to `notify.email`",
                ),
            );
            ok = false;
        }
        (None, Some(p)) if !user_given => {
            diags.push(
                Diagnostic::error(
                    "missing-key",
                    p.span,
                    "an SMTP password needs a user: add `user` or `user_env` to `notify.email`",
                )
                .hiding_source(),
            );
            ok = false;
        }
        _ => {}
    }
    if !ok {
        return None;
    }
    Some(Email {
        to: to?,
        from: from?.value,
        host: host?.value,
        port: port.map_or(tls_value.default_port(), |p| p.value),
        tls: tls_value,
        user: user.map(|u| u.value),
        password: password.map(|p| p.value),
        ca_file,
        on: on.unwrap_or_else(|| DEFAULT_ON.to_vec()),
        timeout: timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT),
    })
}

fn decode_command(at: &Entry, diags: &mut Diagnostics) -> Option<CommandHook> {
    let node = &at.value;
    let ctx = Ctx {
        owner: "`notify.command`",
    };
    if node.as_seq().is_some() || node.as_str().is_some() && !node.is_null() {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "invalid `command` in `notify`: expected a mapping, found {}",
                    node.kind_name()
                ),
            )
            .with_help("write `command: { cmd: [program, arg], on: [failure] }`"),
        );
        return None;
    }
    let entries = ctx.mapping("command", node, diags)?;
    let mut argv = None;
    let mut on = None;
    let mut timeout = None;
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str().unwrap_or("") {
            "cmd" => argv = read_argv(&ctx, value, diags),
            "on" => on = read_on(&ctx, value, diags),
            "timeout" => timeout = read_timeout(&ctx, value, diags),
            _ => ctx.unknown_key(&entry.key, COMMAND_KEYS, diags),
        }
    }
    if argv.is_none() && !entries.iter().any(|e| e.key.as_str() == Some("cmd")) {
        diags.push(
            Diagnostic::error(
                "missing-key",
                at.key.span,
                "missing required key `cmd` in `notify.command`",
            )
            .with_help("add `cmd: [/usr/local/bin/notify-chat, --channel, ops]`"),
        );
    }
    Some(CommandHook {
        argv: argv?,
        on: on.unwrap_or_else(|| DEFAULT_ON.to_vec()),
        timeout: timeout.unwrap_or(DEFAULT_HOOK_TIMEOUT),
    })
}

fn decode_ping(node: &Node, diags: &mut Diagnostics) -> Option<Ping> {
    let ctx = Ctx {
        owner: "`notify.ping`",
    };
    let entries = ctx.mapping("ping", node, diags)?;
    let mut ping = Ping {
        start: None,
        success: None,
        failure: None,
        ca_file: None,
        timeout: DEFAULT_PING_TIMEOUT,
    };
    for entry in entries {
        let value = &entry.value;
        let key = entry.key.as_str().unwrap_or("");
        let slot = match key {
            "start" => &mut ping.start,
            "success" => &mut ping.success,
            "failure" => &mut ping.failure,
            "timeout" => {
                if let Some(t) = read_timeout(&ctx, value, diags) {
                    ping.timeout = t;
                }
                continue;
            }
            "ca_file" => {
                ping.ca_file = ctx
                    .value::<String>("ca_file", value, diags)
                    .map(|c| PathBuf::from(c.value));
                continue;
            }
            _ => {
                hidden(diags, |d| ctx.unknown_key(&entry.key, PING_KEYS, d));
                continue;
            }
        };
        // A ping URL carries its token (or, refused below, a password):
        // no diagnostic about it shows its line.
        let Some(text) = hidden(diags, |d| ctx.value::<String>(key, value, d)) else {
            continue;
        };
        match HttpUrl::parse(&text.value) {
            Ok(url) => *slot = Some(url),
            Err(e) => diags.push(
                Diagnostic::error(
                    "invalid-value",
                    text.span,
                    format!("invalid `{key}` in `notify.ping`: {e}"),
                )
                .hiding_source()
                .with_help("write e.g. `https://hc-ping.com/<uuid>`"),
            ),
        }
    }
    Some(ping)
}

/// Runs `f` with its diagnostics marked to hide their source line (which
/// may hold a secret); the place is still given.
fn hidden<T>(diags: &mut Diagnostics, f: impl FnOnce(&mut Diagnostics) -> T) -> T {
    let mut local = Diagnostics::default();
    let out = f(&mut local);
    for d in local.into_sorted() {
        diags.push(d.hiding_source());
    }
    out
}

fn both(entry: &Entry, a: &str, b: &str) -> Diagnostic {
    Diagnostic::error(
        "conflicting-keys",
        entry.key.span,
        format!("`{a}` and `{b}` in `notify.email` cannot both be given"),
    )
    .with_help("keep one of them")
}

/// An environment variable's name, not a value pasted in by mistake.
fn env_name_ok(key: &str, name: &Spanned<String>, diags: &mut Diagnostics) -> bool {
    if is_identifier(&name.value) {
        return true;
    }
    // The value is not repeated: it may be the password itself.
    diags.push(
        Diagnostic::error(
            "invalid-value",
            name.span,
            format!("`{key}` in `notify.email` must name an environment variable"),
        )
        // Its line holds the value, which may be the secret itself.
        .hiding_source()
        .with_help(format!(
            "write the variable's name, e.g. `{key}: SMTP_PASSWORD` (letters, digits and `_`), \
             and set it in ward's environment; never the secret itself"
        )),
    );
    false
}

fn check_mailbox(key: &str, text: &Spanned<String>, diags: &mut Diagnostics) -> bool {
    match lettre::message::Mailbox::from_str(&text.value) {
        Ok(_) => true,
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    "invalid-value",
                    text.span,
                    format!(
                        "`{key}` in `notify.email` is not a mail address: `{}` ({e})",
                        text.value
                    ),
                )
                .with_help("write `ops@example.org` or `Ops <ops@example.org>`"),
            );
            false
        }
    }
}

fn mailboxes(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Vec<String>> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    if items.is_empty() {
        diags.push(Diagnostic::error(
            "invalid-value",
            node.span,
            "`to` in `notify.email` is empty: name at least one recipient",
        ));
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match ctx.value::<String>("to", item, diags) {
            Some(t) if check_mailbox("to", &t, diags) => out.push(t.value),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_on(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Vec<NotifyOn>> {
    let items: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut out = Vec::new();
    for item in items {
        let v = ctx.value::<NotifyOn>("on", item, diags)?;
        if !out.contains(&v.value) {
            out.push(v.value);
        }
    }
    if out.is_empty() {
        diags.push(
            Diagnostic::error(
                "invalid-value",
                node.span,
                format!("`on` in {} is empty: nothing would ever be sent", ctx.owner),
            )
            .with_help(
                "list some of `failure`, `success`, `recovered`, `skipped`, or remove the notifier",
            ),
        );
        return None;
    }
    Some(out)
}

fn read_timeout(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Duration> {
    let t = ctx.value::<Duration>("timeout", node, diags)?;
    if t.value.std().is_zero() {
        diags.push(Diagnostic::error(
            "invalid-value",
            t.span,
            format!("`timeout` in {} must be more than 0", ctx.owner),
        ));
        return None;
    }
    Some(t.value)
}

fn read_argv(ctx: &Ctx<'_>, node: &Node, diags: &mut Diagnostics) -> Option<Vec<String>> {
    let Some(items) = node.as_seq() else {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "invalid `cmd` in {}: expected a list (an argv), found {}",
                    ctx.owner,
                    node.kind_name()
                ),
            )
            .with_help("write `cmd: [program, arg1, arg2]`; no shell reads it"),
        );
        return None;
    };
    if items.is_empty() {
        diags.push(Diagnostic::error(
            "invalid-value",
            node.span,
            format!("`cmd` in {} is empty", ctx.owner),
        ));
        return None;
    }
    let mut argv = Vec::new();
    for item in items {
        argv.push(ctx.value::<String>("cmd", item, diags)?.value);
    }
    if argv[0].is_empty() {
        diags.push(Diagnostic::error(
            "invalid-value",
            items[0].span,
            format!("the program in `cmd` of {} is empty", ctx.owner),
        ));
        return None;
    }
    Some(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_keys(def: &str) -> Vec<String> {
        let schema = crate::schema::playbook_schema();
        let mut keys: Vec<String> = schema
            .pointer(&format!("/$defs/{def}/properties"))
            .and_then(serde_json::Value::as_object)
            .unwrap_or_else(|| panic!("no {def}"))
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    fn sorted(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn parser_keys_match_the_schema_types() {
        assert_eq!(schema_keys("NotifyDoc"), sorted(NOTIFY_KEYS));
        assert_eq!(schema_keys("EmailDoc"), sorted(EMAIL_KEYS));
        assert_eq!(schema_keys("CommandDoc"), sorted(COMMAND_KEYS));
        assert_eq!(schema_keys("PingDoc"), sorted(PING_KEYS));
    }

    fn parse(
        text: &str,
    ) -> (
        Option<crate::model::Playbook>,
        Vec<crate::diagnostic::Diagnostic>,
    ) {
        let source =
            crate::source::SourceFile::new(std::path::Path::new("/srv/p.yml"), text.into());
        let mut diags = Diagnostics::default();
        let p = crate::parse::parse(source, &mut diags);
        (p, diags.into_sorted())
    }

    #[test]
    fn defaults_fill_in_what_is_not_said() {
        let (p, diags) = parse(
            "ward: 1\nname: n\nmetrics: m.prom\nnotify:\n  email: { to: a@example.org, from: b@example.org, host: smtp.example.org, user: u, password_file: pw }\n  command: { cmd: [hook] }\n  ping: { success: 'https://hc.example.org/x' }\nsteps:\n  - id: a\n    run: 'true'\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let p = p.expect("playbook");
        let email = p.notify.email.expect("email");
        assert_eq!(email.tls, SmtpTls::Starttls);
        assert_eq!(email.port, 587);
        assert_eq!(email.on, DEFAULT_ON);
        assert_eq!(email.to, vec!["a@example.org".to_owned()]);
        assert_eq!(email.password, Some(PasswordSource::File("pw".into())));
        assert_eq!(email.timeout, DEFAULT_HOOK_TIMEOUT);
        let command = p.notify.command.expect("command");
        assert_eq!(command.argv, vec!["hook".to_owned()]);
        assert_eq!(command.on, DEFAULT_ON);
        let ping = p.notify.ping.expect("ping");
        assert!(ping.start.is_none());
        assert_eq!(ping.success.expect("success").port, 443);
        assert_eq!(ping.timeout, DEFAULT_PING_TIMEOUT);
        assert_eq!(p.metrics.expect("metrics").value, PathBuf::from("m.prom"));
    }

    #[test]
    fn a_literal_password_is_refused_at_its_key_and_not_repeated() {
        let (_, diags) = parse(
            "ward: 1\nname: n\nnotify:\n  email:\n    to: a@example.org\n    from: b@example.org\n    host: h.example.org\n    user: u\n    password: Tr0ub4dor-and-3\nsteps:\n  - id: a\n    run: 'true'\n",
        );
        let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].code, "secret-in-playbook");
        assert_eq!(
            (errors[0].span.start.line, errors[0].span.start.col),
            (9, 5)
        );
        let text = format!("{} {:?}", errors[0].message, errors[0].help);
        assert!(!text.contains("Tr0ub4dor"), "{text}");
    }
}
