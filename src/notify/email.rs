//! `notify.email`: one plain-text mail over SMTP (lettre's blocking
//! transport, rustls, no OpenSSL).

use std::path::Path;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

use super::summary::Summary;
use crate::model::notify::{Email, PasswordSource, SmtpTls, UserSource, resolve};

/// Sends the summary as a mail. The error is one line, without secrets.
///
/// `timeout` bounds the whole mail: lettre's blocking transport only
/// bounds each read and write, so a server answering one byte at a time
/// could hold it for much longer. The send runs on a thread of its own;
/// at the deadline ward stops waiting for it and reports the mail as not
/// sent (the thread ends with the process, moments later).
pub fn send(email: &Email, summary: &Summary, playbook_dir: &Path) -> Result<(), String> {
    send_message(email, message(email, summary)?, playbook_dir)
}

/// Sends `message` through `email`'s server, within its timeout (as
/// [`send`]); `on_item:` mails go this way too.
pub fn send_message(email: &Email, message: Message, playbook_dir: &Path) -> Result<(), String> {
    let (transport, secret) = transport(email, playbook_dir)?;
    let timeout = email.timeout.std();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            transport
                .send(&message)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let said = match rx.recv_timeout(timeout) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(_) => {
            return Err(format!(
                "the SMTP server {}:{} did not take the mail within the timeout ({}s); ward stopped waiting",
                email.host,
                email.port,
                timeout.as_secs_f64()
            ));
        }
    };
    // A server may echo what it was sent, the login included.
    let said = match &secret {
        Some((user, password)) => hide_password(&said, user, password),
        None => said,
    };
    Err(format!(
        "the SMTP server {}:{} said: {said}",
        email.host, email.port
    ))
}

/// `text` with the password, and the forms in which SMTP AUTH sends it
/// (base64 of PLAIN's `\0user\0password` and `user\0password`, and of the
/// password alone, as LOGIN sends it), replaced by `********`.
pub fn hide_password(text: &str, user: &str, password: &str) -> String {
    let forms = [
        base64(format!("\0{user}\0{password}").as_bytes()),
        base64(format!("{user}\0{password}").as_bytes()),
        base64(password.as_bytes()),
        password.to_owned(),
    ];
    let mut out = text.to_owned();
    for f in forms.iter().filter(|f| f.len() >= 2) {
        out = out.replace(f.as_str(), "********");
        // Padding may be cut or changed: the unpadded form hides it too.
        out = out.replace(f.trim_end_matches('='), "********");
    }
    out
}

/// Standard base64 with padding (RFC 4648), as SMTP AUTH uses.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The mail itself.
pub fn message(email: &Email, summary: &Summary) -> Result<Message, String> {
    let mailbox = |text: &str| {
        text.parse::<Mailbox>()
            .map_err(|e| format!("`{text}` is not a mail address: {e}"))
    };
    let mut builder = Message::builder()
        .from(mailbox(&email.from)?)
        .subject(summary.subject())
        .message_id(None)
        .header(ContentType::TEXT_PLAIN);
    for to in &email.to {
        builder = builder.to(mailbox(to)?);
    }
    builder
        .body(summary.text())
        .map_err(|e| format!("cannot build the mail: {e}"))
}

/// An `on_item:` mail: `notify.email`'s sender, the item's recipients,
/// subject and body.
pub fn item_message(
    email: &Email,
    to: &[String],
    subject: &str,
    body: &str,
) -> Result<Message, String> {
    let mailbox = |text: &str| {
        text.trim()
            .parse::<Mailbox>()
            .map_err(|e| format!("`{text}` is not a mail address: {e}"))
    };
    let mut builder = Message::builder()
        .from(mailbox(&email.from)?)
        // One line: a template may have given several.
        .subject(subject.split_whitespace().collect::<Vec<_>>().join(" "))
        .message_id(None)
        .header(ContentType::TEXT_PLAIN);
    for t in to {
        builder = builder.to(mailbox(t)?);
    }
    builder
        .body(body.to_owned())
        .map_err(|e| format!("cannot build the mail: {e}"))
}

/// The transport, and the login (user, password) if there is one.
type Login = Option<(String, String)>;

fn transport(email: &Email, playbook_dir: &Path) -> Result<(SmtpTransport, Login), String> {
    let mut builder = SmtpTransport::builder_dangerous(&email.host)
        .port(email.port)
        .timeout(Some(email.timeout.std()));
    if email.tls != SmtpTls::None {
        let mut params = TlsParameters::builder(email.host.clone());
        if let Some(ca) = &email.ca_file {
            let path = resolve(playbook_dir, ca);
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read `ca_file` {}: {e}", path.display()))?;
            // Only these certificates are trusted (as curl's --cacert).
            params = params.certificate_store(CertificateStore::None);
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "`ca_file` {} holds no PEM certificate",
                    path.display()
                ));
            }
            let certs = Certificate::from_pem(&pem).map_err(|e| {
                format!("`ca_file` {} holds a bad certificate: {e}", path.display())
            })?;
            params = params.add_root_certificate(certs);
        }
        let params = params
            .build_rustls()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        builder = builder.tls(match email.tls {
            SmtpTls::Tls => Tls::Wrapper(params),
            _ => Tls::Required(params),
        });
    }
    let mut login = None;
    if let Some(user) = &email.user {
        let user = match user {
            UserSource::Literal(u) => u.clone(),
            UserSource::Env(name) => env(name, "user_env")?,
        };
        let password = match &email.password {
            Some(PasswordSource::Env(name)) => env(name, "password_env")?,
            Some(PasswordSource::File(file)) => password_file(&resolve(playbook_dir, file))?,
            // The parser requires a password with a user.
            None => return Err("an SMTP user without a password".into()),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        login = Some((user, password));
    }
    Ok((builder.build(), login))
}

fn env(name: &str, key: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        // The name is not repeated: an operator may have pasted the
        // secret itself in its place.
        _ => Err(format!(
            "the variable named by `{key}` is not set (or empty) in ward's environment"
        )),
    }
}

/// The first line of the password file, which no other user may read.
fn password_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read `password_file` {}: {e}", path.display()))?;
    if meta.mode() & 0o004 != 0 {
        return Err(format!(
            "`password_file` {} can be read by every user (mode {:o}); `chmod o-r` it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `password_file` {}: {e}", path.display()))?;
    let first = text.lines().next().unwrap_or("");
    if first.is_empty() {
        return Err(format!(
            "`password_file` {} is empty; write the password on its first line",
            path.display()
        ));
    }
    Ok(first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("\0ward\0pw", "AHdhcmQAcHc="),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded, "{plain:?}");
        }
    }

    #[test]
    fn the_password_and_its_auth_forms_are_hidden() {
        let text = "535 bad AUTH PLAIN AHdhcmQAcHc= or d2FyZABwdw== or cHc= or pw itself";
        let out = hide_password(text, "ward", "pw");
        assert_eq!(
            out,
            "535 bad AUTH PLAIN ******** or ******** or ******** or ******** itself"
        );
    }
}
