//! Logging to syslog, as a daemonised OpenSMTPD does: facility `mail`,
//! ident `smtpd`, the pid in every line.
//!
//! [`SyslogLayer`] is a `tracing` layer: each event becomes one line (its
//! message, then its other fields as `name=value`) at the syslog priority
//! of its level ([`priority`]), handed to a [`Sink`]. The daemon's sink is
//! the C library's `openlog(3)`/`syslog(3)` ([`Libc`]), which adds the
//! time, host name and `smtpd[PID]:`; tests give their own.

use std::ffi::CString;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Where formatted lines go.
pub trait Sink: Send + Sync + 'static {
    /// Sends one line at `priority` (facility and severity).
    fn send(&self, priority: libc::c_int, line: &str);
}

/// The C library's syslog client: `openlog("smtpd", LOG_PID | LOG_NDELAY,
/// LOG_MAIL)` once, then `syslog(3)` per line.
#[derive(Debug)]
pub struct Libc(());

impl Libc {
    /// Opens the connection to the system logger.
    pub fn open() -> Self {
        // SAFETY: the ident is a static C string, as openlog requires (it
        // keeps the pointer).
        unsafe {
            libc::openlog(
                c"smtpd".as_ptr(),
                libc::LOG_PID | libc::LOG_NDELAY,
                libc::LOG_MAIL,
            )
        };
        Self(())
    }
}

impl Sink for Libc {
    fn send(&self, priority: libc::c_int, line: &str) {
        let line = c_line(line);
        // SAFETY: both strings are NUL-terminated; the format takes one
        // string argument, so the line is never read as a format.
        unsafe { libc::syslog(priority, c"%s".as_ptr(), line.as_ptr()) };
    }
}

/// `line` as a C string, a NUL byte (which would cut it) shown as `\0`.
fn c_line(line: &str) -> CString {
    CString::new(line.replace('\0', "\\0")).unwrap_or_default()
}

/// The syslog priority of a `tracing` level, facility `mail`: errors
/// `LOG_ERR`, warnings `LOG_WARNING`, info `LOG_INFO`, debug and trace
/// `LOG_DEBUG`.
pub fn priority(level: Level) -> libc::c_int {
    let severity = match level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        _ => libc::LOG_DEBUG,
    };
    libc::LOG_MAIL | severity
}

/// The `tracing` layer that sends every event to a [`Sink`].
pub struct SyslogLayer<S> {
    sink: S,
}

impl<S: Sink> SyslogLayer<S> {
    /// A layer sending to `sink`.
    pub const fn new(sink: S) -> Self {
        Self { sink }
    }
}

impl<S: Sink, C: Subscriber> Layer<C> for SyslogLayer<S> {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, C>) {
        let mut line = Line::default();
        event.record(&mut line);
        self.sink
            .send(priority(*event.metadata().level()), &line.finish());
    }
}

/// An event's text: the message, then the other fields.
#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Line {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.record_debug(field, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(libc::c_int, String)>>>);

    impl Sink for Recorder {
        fn send(&self, priority: libc::c_int, line: &str) {
            self.0.lock().unwrap().push((priority, line.to_owned()));
        }
    }

    #[test]
    fn priorities_are_facility_mail_and_the_level() {
        let cases = [
            (Level::ERROR, libc::LOG_MAIL | libc::LOG_ERR),
            (Level::WARN, libc::LOG_MAIL | libc::LOG_WARNING),
            (Level::INFO, libc::LOG_MAIL | libc::LOG_INFO),
            (Level::DEBUG, libc::LOG_MAIL | libc::LOG_DEBUG),
            (Level::TRACE, libc::LOG_MAIL | libc::LOG_DEBUG),
        ];
        for (level, expected) in cases {
            assert_eq!(priority(level), expected, "{level}");
        }
        // LOG_MAIL is facility 2: `<22>` on the wire for an info line.
        assert_eq!(priority(Level::INFO), 2 << 3 | 6);
    }

    #[test]
    fn events_become_one_line_each() {
        let recorder = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(SyslogLayer::new(recorder.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("3a2f1b0c4d5e6f70 smtp connected address=local host=mx");
            tracing::warn!(backend = "aliases", "bad line: {}", "x|y");
            tracing::debug!(pid = 42, "started");
            tracing::error!(reason = "gone");
        });
        let lines = recorder.0.lock().unwrap().clone();
        assert_eq!(
            lines,
            [
                (
                    libc::LOG_MAIL | libc::LOG_INFO,
                    "3a2f1b0c4d5e6f70 smtp connected address=local host=mx".to_owned()
                ),
                (
                    libc::LOG_MAIL | libc::LOG_WARNING,
                    "bad line: x|y backend=\"aliases\"".to_owned()
                ),
                (
                    libc::LOG_MAIL | libc::LOG_DEBUG,
                    "started pid=42".to_owned()
                ),
                (libc::LOG_MAIL | libc::LOG_ERR, "reason=\"gone\"".to_owned()),
            ]
        );
    }

    #[test]
    fn a_nul_byte_cannot_cut_a_line() {
        assert_eq!(c_line("a\0b").as_bytes(), b"a\\0b");
        assert_eq!(c_line("plain").as_bytes(), b"plain");
    }
}
