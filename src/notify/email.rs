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
pub fn send(email: &Email, summary: &Summary, playbook_dir: &Path) -> Result<(), String> {
    let message = message(email, summary)?;
    let transport = transport(email, playbook_dir)?;
    transport
        .send(&message)
        .map(|_| ())
        .map_err(|e| format!("the SMTP server {}:{} said: {e}", email.host, email.port))
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

fn transport(email: &Email, playbook_dir: &Path) -> Result<SmtpTransport, String> {
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
        builder = builder.credentials(Credentials::new(user, password));
    }
    Ok(builder.build())
}

fn env(name: &str, key: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!(
            "`{key}` names the environment variable {name}, which is not set (or empty)"
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
