//! A minimal HTTP/1.x server for the scrape: `GET /metrics` answers the
//! rendered metrics, `GET /` a pointer to it, anything else 404 or 405.
//! One request per connection (`Connection: close`); a request head over
//! 8 KiB, or not complete within 10 seconds, is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// The largest request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves scrapes on `listener` until the process ends.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &metrics).await {
                        tracing::debug!("scrape connection: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accepting a scrape connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request and answers it.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let Ok(head) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await else {
        return Ok(());
    };
    let Some(head) = head? else {
        return Ok(());
    };
    let response = respond(&head, metrics);
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The request head (up to the blank line), or `None` when the client
/// closed or sent too much first.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&head, b"\r\n\r\n").or_else(|| find(&head, b"\n\n")) {
            head.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The whole response to a request head.
pub(crate) fn respond(head: &str, metrics: &Metrics) -> Vec<u8> {
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or_default();
    let head_only = method == "HEAD";
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET" | "HEAD", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "filter-prometheus: metrics at /metrics\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "method not allowed\n".to_owned(),
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::CONNECTIONS;

    fn text(head: &str, metrics: &Metrics) -> String {
        String::from_utf8(respond(head, metrics)).unwrap()
    }

    #[test]
    fn metrics_index_and_errors() {
        let metrics = Metrics::default();
        metrics.inc(CONNECTIONS, &[("subsystem", "smtp-in"), ("fcrdns", "fail")]);
        let ok = text("GET /metrics HTTP/1.1\r\nHost: x", &metrics);
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(ok.ends_with(&metrics.render()));
        let body_len = metrics.render().len();
        assert!(ok.contains(&format!("Content-Length: {body_len}\r\n")));

        let head = text("HEAD /metrics?x=1 HTTP/1.0", &metrics);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.ends_with("\r\n\r\n"));

        assert!(text("GET / HTTP/1.1", &metrics).contains("/metrics"));
        assert!(text("GET /other HTTP/1.1", &metrics).starts_with("HTTP/1.1 404"));
        assert!(text("POST /metrics HTTP/1.1", &metrics).starts_with("HTTP/1.1 405"));
        assert!(text("", &metrics).starts_with("HTTP/1.1 405"));
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::default());
        metrics.inc(CONNECTIONS, &[("subsystem", "smtp-in"), ("fcrdns", "pass")]);
        tokio::spawn(serve(listener, Arc::clone(&metrics)));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("smtpd_connections_total{subsystem=\"smtp-in\",fcrdns=\"pass\"} 1\n")
        );
    }
}
