//! The daemon's side of an in-memory session with a backend: two
//! `tokio::io::duplex` pipes, one line at a time.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

/// How long a test waits for a line before it fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// The daemon's ends of the two pipes.
pub(crate) struct Daemon {
    to_backend: Option<DuplexStream>,
    from_backend: BufReader<DuplexStream>,
}

/// A daemon and the backend's ends: (daemon, backend input, backend output).
pub(crate) fn pipes() -> (Daemon, DuplexStream, DuplexStream) {
    let (to_backend, backend_input) = tokio::io::duplex(1 << 20);
    let (backend_output, from_backend) = tokio::io::duplex(1 << 20);
    let daemon = Daemon {
        to_backend: Some(to_backend),
        from_backend: BufReader::new(from_backend),
    };
    (daemon, backend_input, backend_output)
}

impl Daemon {
    /// Sends one line (the `\n` is added).
    pub(crate) async fn send(&mut self, line: &str) {
        let pipe = self.to_backend.as_mut().expect("input already closed");
        pipe.write_all(format!("{line}\n").as_bytes())
            .await
            .expect("the backend closed its input");
    }

    /// The next line from the backend, without its `\n`; `None` at EOF.
    pub(crate) async fn recv(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(PATIENCE, self.from_backend.read_line(&mut line))
            .await
            .expect("the backend said nothing")
            .expect("reading the backend's output");
        if n == 0 {
            return None;
        }
        assert_eq!(line.pop(), Some('\n'), "unterminated line {line:?}");
        Some(line)
    }

    /// The next `n` lines.
    pub(crate) async fn recv_n(&mut self, n: usize) -> Vec<String> {
        let mut lines = Vec::with_capacity(n);
        for _ in 0..n {
            lines.push(self.recv().await.expect("EOF before the expected lines"));
        }
        lines
    }

    /// Sends the handshake for `protocol` with `extra` entries and returns
    /// the registrations, up to and including `register|ready`.
    pub(crate) async fn handshake(
        &mut self,
        protocol: &str,
        extra: &[(&str, &str)],
    ) -> Vec<String> {
        self.send("config|smtpd-version|7.8.0").await;
        self.send(&format!("config|protocol|{protocol}")).await;
        for (k, v) in extra {
            self.send(&format!("config|{k}|{v}")).await;
        }
        self.send("config|ready").await;
        let mut lines = Vec::new();
        loop {
            let line = self.recv().await.expect("EOF during the handshake");
            let done = line == "register|ready";
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Closes the backend's input (EOF).
    pub(crate) fn close(&mut self) {
        self.to_backend = None;
    }
}
