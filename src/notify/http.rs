//! The pings' HTTP client: one GET over HTTP/1.1, `Connection: close`,
//! over a `TcpStream` for `http://` and rustls (ring, the Mozilla roots)
//! for `https://`. A ping only needs the status line back, so this is a
//! few dozen lines instead of a client crate; the TLS stack is the one
//! lettre already brings (docs/design.md, "Notifications").

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::notify::HttpUrl;

/// Bytes of a response read at most (the status line is in the first few).
const MAX_HEAD: usize = 8 * 1024;

/// Sends `GET url` and returns the status code; an error is one line
/// that names the host, never the path (ping URLs carry their token there).
/// `ca`: PEM certificates to trust instead of the Mozilla roots.
///
/// `timeout` is one deadline for the whole request: name resolution,
/// connecting, sending and reading all share it, so a server that answers
/// one byte at a time cannot hold the ping longer.
pub fn get(url: &HttpUrl, timeout: Duration, ca: Option<&Path>) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let stream = Deadlined {
        stream: connect(url, deadline)?,
        deadline,
    };
    let authority = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let default_port = if url.https { 443 } else { 80 };
    let host_header = if url.port == default_port {
        authority
    } else {
        format!("{authority}:{}", url.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: ward/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target,
        env!("CARGO_PKG_VERSION")
    );
    let head = if url.https {
        let config = tls_config(ca)?;
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("`{}` is not a TLS server name: {e}", url.host))?;
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| format!("cannot start TLS with {}: {e}", url.host))?;
        exchange(rustls::StreamOwned::new(conn, stream), &request, url)?
    } else {
        exchange(stream, &request, url)?
    };
    status_code(&head).ok_or_else(|| {
        format!(
            "{} answered something that is not HTTP: {:?}",
            url.host,
            String::from_utf8_lossy(&head[..head.len().min(40)])
        )
    })
}

/// A socket whose every read and write may take only the time left
/// before the deadline; past it, they fail with `TimedOut`.
struct Deadlined {
    stream: TcpStream,
    deadline: Instant,
}

impl Deadlined {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(std::io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// The host's addresses, looked up on a helper thread: the system's
/// resolver has no timeout of its own, so ward stops waiting at the
/// deadline (the thread ends by itself when the lookup does).
fn resolve(url: &HttpUrl, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let target = (url.host.clone(), url.port);
    std::thread::spawn(move || {
        let found = (target.0.as_str(), target.1)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>);
        let _ = tx.send(found);
    });
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(found) => found.map_err(|e| format!("cannot resolve {}: {e}", url.host)),
        Err(_) => Err(format!("timed out resolving {}", url.host)),
    }
}

fn connect(url: &HttpUrl, deadline: Instant) -> Result<TcpStream, String> {
    let addrs = resolve(url, deadline)?;
    let mut last = format!("{} has no address", url.host);
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out connecting to {}:{}", url.host, url.port));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect to {}:{}: {e}", url.host, url.port),
        }
    }
    Err(last)
}

/// Writes the request and reads the start of the answer.
fn exchange(
    mut stream: impl Read + Write,
    request: &str,
    url: &HttpUrl,
) -> Result<Vec<u8>, String> {
    let io = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            format!("{} did not answer in time", url.host)
        } else {
            format!("talking to {}:{}: {e}", url.host, url.port)
        }
    };
    stream.write_all(request.as_bytes()).map_err(io)?;
    stream.flush().map_err(io)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(head)
}

/// `HTTP/1.x NNN ...` -> NNN.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

fn tls_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| {
                format!(
                    "`ca_file` {} holds no usable certificate: {e}",
                    path.display()
                )
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(&e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&e))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(bad(&"none found"));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    #[test]
    fn a_real_server_on_loopback_gets_the_request() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
                .expect("write");
            String::from_utf8(got).expect("utf8")
        });
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/ping/abc?rid=1")).expect("url");
        assert_eq!(get(&url, Duration::from_secs(5), None), Ok(201));
        let request = server.join().expect("server");
        assert!(
            request.starts_with("GET /ping/abc?rid=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{request}"
        );
    }

    #[test]
    fn a_silent_server_times_out_quickly() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/")).expect("url");
        let started = Instant::now();
        let err = get(&url, Duration::from_millis(300), None).expect_err("timeout");
        assert!(err.contains("did not answer in time"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }
}
