//! The SMTP dialogue of one submission, over any blocking byte stream
//! (the control socket once the daemon handed it to a local session, or
//! one end of a socket pair for offline replays).
//!
//! As OpenSMTPD's `enqueue.c`: wait for the greeting, `EHLO localhost`,
//! `MAIL FROM:<sender>` (with `RET=` and `ENVID=` when given), one `RCPT
//! TO:<rcpt>` per recipient (with `NOTIFY=`), `DATA`, the message, `.`,
//! `QUIT`, each command waiting for its reply (no pipelining). A reply
//! other than 2xx or 3xx ends the dialogue with
//! [`DialogueError::Refused`]; once the message is accepted a failing
//! `QUIT` changes nothing. With a transcript (`-v`), commands are shown as
//! `>>> LINE` and replies as `<<< LINE`, the message itself not.

use std::io::{self, BufRead, Read, Write};

use super::{EX_NOUSER, EX_SOFTWARE, EX_TEMPFAIL};

/// The longest reply line read.
const MAX_REPLY: u64 = 4096;

/// Who the message is from and for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The envelope sender (empty for the null sender).
    pub sender: String,
    /// The recipients, in order.
    pub recipients: Vec<String>,
    /// `NOTIFY=` of every recipient.
    pub dsn_notify: Option<String>,
    /// `RET=` of the sender.
    pub dsn_ret: Option<String>,
    /// `ENVID=` of the sender.
    pub dsn_envid: Option<String>,
}

/// The command a reply answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The server's greeting.
    Greeting,
    /// `EHLO`.
    Ehlo,
    /// `MAIL FROM`.
    MailFrom,
    /// `RCPT TO`.
    RcptTo,
    /// `DATA`.
    Data,
    /// The final `.` of the message.
    Message,
}

/// Why a submission did not go through.
#[derive(Debug, thiserror::Error)]
pub enum DialogueError {
    /// The server refused a command.
    #[error("command failed: {reply}")]
    Refused {
        /// The command it refused.
        stage: Stage,
        /// Its reply's last line.
        reply: String,
    },
    /// The server sent something that is no SMTP reply.
    #[error("bad response: {0}")]
    BadResponse(String),
    /// The server closed the connection.
    #[error("smtpd closed the connection")]
    Closed,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl DialogueError {
    /// The exit status sendmail gives for it: `EX_TEMPFAIL` for a
    /// temporary refusal or a broken connection (try again later),
    /// `EX_NOUSER` for a recipient refused for good, else `EX_SOFTWARE`
    /// (what OpenSMTPD's enqueue gives for every failure).
    pub fn exit_status(&self) -> i32 {
        match self {
            Self::Refused { reply, .. } if reply.starts_with('4') => EX_TEMPFAIL,
            Self::Refused {
                stage: Stage::RcptTo,
                ..
            } => EX_NOUSER,
            Self::Refused { .. } | Self::BadResponse(_) => EX_SOFTWARE,
            Self::Closed | Self::Io(_) => EX_TEMPFAIL,
        }
    }
}

/// One submission's connection.
struct Dialogue<'t, R, W> {
    reader: R,
    writer: W,
    transcript: Option<&'t mut dyn Write>,
}

/// Runs the dialogue for `envelope` and `data` (the DATA payload, lines
/// ended with CRLF and dot-stuffed, without the final dot).
pub fn submit<R: BufRead, W: Write>(
    reader: R,
    writer: W,
    envelope: &Envelope,
    data: &[u8],
    transcript: Option<&mut dyn Write>,
) -> Result<(), DialogueError> {
    let mut d = Dialogue {
        reader,
        writer,
        transcript,
    };
    d.reply(Stage::Greeting)?;
    d.command("EHLO localhost", Stage::Ehlo)?;
    let mut mail = format!("MAIL FROM:<{}>", envelope.sender);
    if let Some(ret) = &envelope.dsn_ret {
        mail += &format!(" RET={ret}");
    }
    if let Some(envid) = envelope.dsn_envid.as_ref().filter(|e| !e.is_empty()) {
        mail += &format!(" ENVID={envid}");
    }
    d.command(&mail, Stage::MailFrom)?;
    for rcpt in &envelope.recipients {
        let mut line = format!("RCPT TO:<{rcpt}>");
        if let Some(notify) = &envelope.dsn_notify {
            line += &format!(" NOTIFY={notify}");
        }
        d.command(&line, Stage::RcptTo)?;
    }
    d.command("DATA", Stage::Data)?;
    d.writer.write_all(data)?;
    d.command(".", Stage::Message)?;
    // The message is queued: a failing QUIT changes nothing.
    let _ = d.command("QUIT", Stage::Message);
    Ok(())
}

impl<R: BufRead, W: Write> Dialogue<'_, R, W> {
    fn command(&mut self, line: &str, stage: Stage) -> Result<(), DialogueError> {
        if let Some(t) = self.transcript.as_mut() {
            writeln!(t, ">>> {line}")?;
        }
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\r\n")?;
        self.writer.flush()?;
        self.reply(stage)
    }

    /// Reads one reply, continuation lines included.
    fn reply(&mut self, stage: Stage) -> Result<(), DialogueError> {
        loop {
            let mut raw = Vec::new();
            let read = Read::take(&mut self.reader, MAX_REPLY).read_until(b'\n', &mut raw)?;
            if read == 0 {
                return Err(DialogueError::Closed);
            }
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(t) = self.transcript.as_mut() {
                writeln!(t, "<<< {line}")?;
            }
            let bytes = line.as_bytes();
            if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
                return Err(DialogueError::BadResponse(line.to_owned()));
            }
            if bytes.get(3) == Some(&b'-') {
                continue;
            }
            return match bytes[0] {
                b'2' | b'3' => Ok(()),
                _ => Err(DialogueError::Refused {
                    stage,
                    reply: line.to_owned(),
                }),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// Runs a dialogue against canned replies; returns what the client
    /// wrote and the result.
    fn run(replies: &str, envelope: &Envelope) -> (String, Result<(), DialogueError>) {
        let mut written = Vec::new();
        let result = submit(
            Cursor::new(replies.as_bytes().to_vec()),
            &mut written,
            envelope,
            b"Subject: x\r\n\r\nbody\r\n",
            None,
        );
        (String::from_utf8(written).unwrap(), result)
    }

    fn envelope() -> Envelope {
        Envelope {
            sender: "me@h".into(),
            recipients: vec!["a@x".into(), "b@y".into()],
            ..Envelope::default()
        }
    }

    const OK: &str = "220 h ESMTP\r\n250-h hello\r\n250 8BITMIME\r\n250 ok\r\n250 ok\r\n250 ok\r\n\
                      354 go\r\n250 2.0.0 0a0b0c0d Message accepted\r\n221 bye\r\n";

    #[test]
    fn a_whole_submission() {
        let (written, result) = run(OK, &envelope());
        result.unwrap();
        assert_eq!(
            written,
            "EHLO localhost\r\nMAIL FROM:<me@h>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@y>\r\n\
             DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
        );
    }

    #[test]
    fn dsn_parameters() {
        let envelope = Envelope {
            sender: String::new(),
            recipients: vec!["a@x".into()],
            dsn_notify: Some("SUCCESS".into()),
            dsn_ret: Some("HDRS".into()),
            dsn_envid: Some("e1".into()),
        };
        let replies = "220 h\r\n250 h\r\n250 ok\r\n250 ok\r\n354 go\r\n250 ok\r\n221 bye\r\n";
        let (written, result) = run(replies, &envelope);
        result.unwrap();
        assert!(
            written.contains("MAIL FROM:<> RET=HDRS ENVID=e1\r\n"),
            "{written}"
        );
        assert!(
            written.contains("RCPT TO:<a@x> NOTIFY=SUCCESS\r\n"),
            "{written}"
        );
    }

    #[test]
    fn refusals_and_their_exit_statuses() {
        let cases = [
            (
                "220 h\r\n250 h\r\n250 ok\r\n550 5.1.1 <a@x>: no\r\n",
                Stage::RcptTo,
                EX_NOUSER,
            ),
            (
                "220 h\r\n250 h\r\n451 4.3.0 Temporary failure\r\n",
                Stage::MailFrom,
                EX_TEMPFAIL,
            ),
            (
                "220 h\r\n250 h\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n552 too big\r\n",
                Stage::Message,
                EX_SOFTWARE,
            ),
            ("421 h busy\r\n", Stage::Greeting, EX_TEMPFAIL),
        ];
        for (replies, stage, status) in cases {
            let (_, result) = run(replies, &envelope());
            let error = result.unwrap_err();
            assert!(
                matches!(&error, DialogueError::Refused { stage: s, .. } if *s == stage),
                "{replies}: {error:?}"
            );
            assert_eq!(error.exit_status(), status, "{replies}");
        }
        let (_, result) = run("220 h\r\n250 h\r\n250 ok\r\n550 5.1.1 no\r\n", &envelope());
        assert_eq!(
            result.unwrap_err().to_string(),
            "command failed: 550 5.1.1 no"
        );
    }

    #[test]
    fn broken_servers() {
        let (_, result) = run("220 h\r\n250 h\r\n", &envelope());
        let closed = result.unwrap_err();
        assert!(matches!(closed, DialogueError::Closed), "{closed:?}");
        assert_eq!(closed.exit_status(), EX_TEMPFAIL);
        let (_, result) = run("hello\r\n", &envelope());
        assert!(matches!(result, Err(DialogueError::BadResponse(_))));
        // A failing QUIT after the message was accepted is fine.
        let (_, result) = run(OK.trim_end_matches("221 bye\r\n"), &envelope());
        result.unwrap();
    }

    #[test]
    fn the_transcript_shows_commands_and_replies() {
        let mut transcript = Vec::new();
        submit(
            Cursor::new(OK.as_bytes().to_vec()),
            io::sink(),
            &envelope(),
            b"secret body\r\n",
            Some(&mut transcript),
        )
        .unwrap();
        let transcript = String::from_utf8(transcript).unwrap();
        assert!(transcript.starts_with("<<< 220 h ESMTP\n>>> EHLO localhost\n<<< 250-h hello\n"));
        assert!(transcript.contains(">>> RCPT TO:<b@y>\n"), "{transcript}");
        assert!(!transcript.contains("secret"), "{transcript}");
    }
}
