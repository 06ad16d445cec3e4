//! `idbridge probe URL`: one HTTP GET to a health endpoint, exit 0 on a 2xx
//! answer. For container health checks in images without a shell or curl (the
//! Dockerfile's `HEALTHCHECK CMD ["idbridge", "probe", …]`); plain `http://` to a
//! host and port only, as the probes target the broker's own listener.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The parts of a probe URL: `http://HOST[:PORT][/PATH]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parse a probe URL; only `http` (the probe talks to the broker's own port).
pub fn parse(url: &str) -> Result<Target, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "{url:?}: only http:// URLs can be probed (the broker's own listener)"
        ));
    }
    let host = match parsed.host() {
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        Some(host) => host.to_string(),
        None => return Err(format!("{url:?} has no host")),
    };
    let mut path = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok(Target {
        host,
        port: parsed.port().unwrap_or(80),
        path,
    })
}

/// GET the URL within `timeout` in all; `Ok(status line)` for a 2xx answer,
/// else what went wrong (the status line, or the connection error).
pub fn probe(url: &str, timeout: Duration) -> Result<String, String> {
    let target = parse(url)?;
    let deadline = Instant::now() + timeout;
    let left = |what: &str| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{url}: no answer within {timeout:?} ({what})"))
    };
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: cannot resolve {}: {e}", target.host))?;
    let mut last = format!("{url}: {} resolves to no address", target.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left("connecting")?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{url}: cannot connect to {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let host_header = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    stream
        .set_write_timeout(Some(left("sending")?))
        .map_err(|e| format!("{url}: {e}"))?;
    stream
        .write_all(
            format!(
                "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: idbridge-probe\r\nConnection: close\r\n\r\n",
                target.path
            )
            .as_bytes(),
        )
        .map_err(|e| format!("{url}: cannot send the request: {e}"))?;
    // Read up to the end of the status line; the rest does not matter.
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 8192 {
        stream
            .set_read_timeout(Some(left("reading the answer")?))
            .map_err(|e| format!("{url}: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("{url}: reading the answer: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..300).contains(&c) => Ok(status_line),
        Some(_) => Err(format!("{url}: {status_line}")),
        None => Err(format!("{url}: not an HTTP answer: {status_line:?}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls_only() {
        assert_eq!(
            parse("http://127.0.0.1:8080/readyz").unwrap(),
            Target {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/readyz".into()
            }
        );
        assert_eq!(parse("http://[::1]/livez?x=1").unwrap().host, "::1");
        assert_eq!(parse("http://[::1]/livez?x=1").unwrap().path, "/livez?x=1");
        assert_eq!(parse("http://localhost").unwrap().port, 80);
        assert!(parse("https://127.0.0.1/livez")
            .unwrap_err()
            .contains("http://"));
        assert!(parse("127.0.0.1:8080").is_err());
    }

    /// A one-shot server answering `answer` to the first request.
    fn serve_once(answer: &'static str) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(answer.as_bytes());
        });
        port
    }

    #[test]
    fn a_2xx_passes_and_anything_else_fails() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(
            probe(
                &format!("http://127.0.0.1:{ok}/livez"),
                Duration::from_secs(3)
            )
            .unwrap(),
            "HTTP/1.1 200 OK"
        );
        let down = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let err = probe(
            &format!("http://127.0.0.1:{down}/readyz"),
            Duration::from_secs(3),
        )
        .unwrap_err();
        assert!(err.contains("503"), "{err}");
        let junk = serve_once("SSH-2.0-OpenSSH\r\n");
        assert!(
            probe(&format!("http://127.0.0.1:{junk}/"), Duration::from_secs(3))
                .unwrap_err()
                .contains("not an HTTP answer")
        );
    }

    #[test]
    fn a_closed_port_or_a_silent_server_fails_within_the_timeout() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(
            probe(&format!("http://127.0.0.1:{port}/"), Duration::from_secs(3))
                .unwrap_err()
                .contains("cannot connect")
        );
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = Instant::now();
        let err = probe(
            &format!("http://127.0.0.1:{port}/"),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        drop(silent);
    }
}
