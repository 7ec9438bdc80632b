//! The backend's side of the handshake, common to the three families.
//!
//! The daemon sends `config|KEY|VALUE` lines ending with `config|ready`;
//! [`read_config`] collects them and checks `config|protocol|VERSION`
//! against the version the backend speaks. The family module then writes its
//! `register|...` lines with [`write_lines`].

use bytes::BytesMut;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use super::RunError;
use crate::codec::{Frame, LineCodec};
use crate::proto::{ConfigLine, Line};

/// The configuration the daemon sent during the handshake, in order.
/// Unknown keys are kept (and ignored by the helpers): a newer daemon may
/// send keys this backend does not know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// A configuration made of these entries (for tests and tools).
    pub fn from_entries<K, V>(entries: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Every entry, in the order received.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key` (filters may get several `subsystem` lines).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `config|protocol|...`: the protocol version the daemon speaks.
    pub fn protocol(&self) -> Option<&str> {
        self.get("protocol")
    }

    /// `config|smtpd-version|...`: the daemon's version string.
    pub fn smtpd_version(&self) -> Option<&str> {
        self.get("smtpd-version")
    }

    /// `config|tablename|...`: the table's name in smtpd.conf (tables only).
    pub fn tablename(&self) -> Option<&str> {
        self.get("tablename")
    }
}

/// Reads the handshake up to `config|ready`. `Ok(None)` means stdin ended
/// before it: the daemon went away, and the backend just exits.
pub(crate) async fn read_config<R: AsyncRead + Unpin>(
    input: &mut FramedRead<R, LineCodec>,
    speaks: &'static str,
) -> Result<Option<Config>, RunError> {
    let mut entries = Vec::new();
    loop {
        let line = match input.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Frame::TooLong(len))) => {
                return Err(RunError::Handshake(format!(
                    "configuration line of {len} bytes is too long"
                )))
            }
            Some(Ok(Frame::Line(line))) => line,
        };
        tracing::debug!(line = %String::from_utf8_lossy(&line), "handshake <");
        match ConfigLine::parse(&line).map_err(|e| RunError::Handshake(e.to_string()))? {
            ConfigLine::Entry { key, value } => entries.push((key, value)),
            ConfigLine::Ready => break,
        }
    }
    let config = Config { entries };
    match config.protocol() {
        Some(v) if v == speaks => Ok(Some(config)),
        Some(v) => Err(RunError::UnsupportedVersion {
            got: v.to_owned(),
            speaks,
        }),
        None => Err(RunError::Handshake(format!(
            "no config|protocol line before config|ready (this backend speaks {speaks})"
        ))),
    }
}

/// Formats and writes the registration lines, then flushes.
pub(crate) async fn write_lines<W, L>(output: &mut W, lines: &[L]) -> Result<(), RunError>
where
    W: AsyncWrite + Unpin,
    L: Line,
{
    let mut out = BytesMut::new();
    for line in lines {
        line.format(&mut out)
            .map_err(|e| RunError::Handshake(e.to_string()))?;
    }
    tracing::debug!(lines = %String::from_utf8_lossy(&out).trim_end(), "handshake >");
    output.write_all(&out).await?;
    output.flush().await?;
    Ok(())
}
