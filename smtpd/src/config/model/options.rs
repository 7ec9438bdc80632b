//! Global options, with OpenSMTPD 7.8's defaults.

use std::fmt;
use std::time::Duration;

use super::{AddressFamily, ProcCommand};

/// A secret from the configuration; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `queue ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOptions {
    /// `compression`: gzip messages and envelopes.
    pub compression: bool,
    /// `encryption [KEY]`: AES-256-GCM.
    pub encryption: Option<QueueKey>,
    /// `ttl`: default envelope lifetime (4 days).
    pub ttl: Duration,
    /// Where the queue lives.
    pub backend: QueueBackend,
}

/// Where the queue encryption key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKey {
    /// `queue encryption`: prompted for at start-up.
    Prompt,
    /// `queue encryption stdin` (or `"-"`): one line of standard input.
    Stdin,
    /// The key itself (32 bytes).
    Inline(Secret),
}

/// The queue storage.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QueueBackend {
    /// The spool directory (the default).
    #[default]
    Filesystem,
    /// `queue proc-exec "CMD"`: a program speaking the queue protocol.
    ProcExec(ProcCommand),
}

/// `bounce warn-interval ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceOptions {
    /// Delay warnings, ascending (at most 4; default one at 4h).
    pub warn_intervals: Vec<Duration>,
}

/// `smtp ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpOptions {
    /// `ciphers`: default libtls cipher string.
    pub ciphers: Option<String>,
    /// `limit max-mails`: messages per session (100).
    pub max_mails: u64,
    /// `limit max-rcpt`: recipients per transaction (1000).
    pub max_rcpt: u64,
    /// `max-message-size` in bytes (35M).
    pub max_message_size: u64,
    /// `sub-addr-delim` (`+`).
    pub sub_addr_delim: char,
}

/// `mta ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaOptions {
    /// `max-deferred`: envelopes kept per failing host (100).
    pub max_deferred: u64,
    /// `limit ...`: the defaults.
    pub limits: MtaLimits,
    /// `limit for domain D ...`: per-domain limits (each starts as a copy
    /// of the defaults at the time it is first declared).
    pub domain_limits: Vec<(String, MtaLimits)>,
}

macro_rules! limits {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident = $key:literal : $default:expr,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: u64,)+
        }

        impl Default for $name {
            fn default() -> Self {
                Self { $($field: $default,)+ }
            }
        }

        impl $name {
            /// The keys accepted in `limit` lists.
            pub const KEYS: &'static [&'static str] = &[$($key,)+];

            /// Sets the value of `key`; false for an unknown key.
            pub(crate) fn set(&mut self, key: &str, value: u64) -> bool {
                match key {
                    $($key => self.$field = value,)+
                    _ => return false,
                }
                true
            }
        }
    };
}

limits!(
    /// `mta limit ...` values (connection counts, delays in seconds).
    MtaLimitValues {
        /// `max-conn-per-host`.
        max_conn_per_host = "max-conn-per-host": 10,
        /// `max-conn-per-route`.
        max_conn_per_route = "max-conn-per-route": 5,
        /// `max-conn-per-source`.
        max_conn_per_source = "max-conn-per-source": 100,
        /// `max-conn-per-connector`.
        max_conn_per_connector = "max-conn-per-connector": 20,
        /// `max-conn-per-relay`.
        max_conn_per_relay = "max-conn-per-relay": 100,
        /// `max-conn-per-domain`.
        max_conn_per_domain = "max-conn-per-domain": 100,
        /// `conn-delay-host` (seconds).
        conn_delay_host = "conn-delay-host": 0,
        /// `conn-delay-route` (seconds).
        conn_delay_route = "conn-delay-route": 5,
        /// `conn-delay-source` (seconds).
        conn_delay_source = "conn-delay-source": 0,
        /// `conn-delay-connector` (seconds).
        conn_delay_connector = "conn-delay-connector": 0,
        /// `conn-delay-relay` (seconds).
        conn_delay_relay = "conn-delay-relay": 2,
        /// `conn-delay-domain` (seconds).
        conn_delay_domain = "conn-delay-domain": 0,
        /// `reconn-delay-route` (seconds).
        reconn_delay_route = "reconn-delay-route": 3,
        /// `session-mail-max`.
        session_mail_max = "session-mail-max": 100,
        /// `session-transaction-delay` (seconds).
        session_transaction_delay = "session-transaction-delay": 0,
        /// `session-keepalive` (seconds).
        session_keepalive = "session-keepalive": 10,
        /// `max-failures-per-session`.
        max_failures_per_session = "max-failures-per-session": 25,
        /// `task-hiwat`.
        task_hiwat = "task-hiwat": 50,
        /// `task-lowat`.
        task_lowat = "task-lowat": 30,
        /// `task-release`.
        task_release = "task-release": 10,
    }
);

/// `mta limit [for domain D] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MtaLimits {
    /// `inet4` / `inet6`: connect with this family only.
    pub family: Option<AddressFamily>,
    /// The numeric limits.
    pub values: MtaLimitValues,
}

limits!(
    /// `mda limit ...` values.
    MdaLimits {
        /// `max-session`.
        max_session = "max-session": 50,
        /// `max-session-per-user`.
        max_session_per_user = "max-session-per-user": 7,
        /// `task-hiwat`.
        task_hiwat = "task-hiwat": 50,
        /// `task-lowat`.
        task_lowat = "task-lowat": 30,
        /// `task-release`.
        task_release = "task-release": 10,
    }
);

limits!(
    /// `scheduler limit ...` values.
    SchedulerLimits {
        /// `max-inflight`.
        max_inflight = "max-inflight": 5000,
        /// `max-evp-batch-size`.
        max_evp_batch_size = "max-evp-batch-size": 256,
        /// `max-msg-batch-size`.
        max_msg_batch_size = "max-msg-batch-size": 1024,
        /// `max-schedule`.
        max_schedule = "max-schedule": 10,
    }
);

/// `srs ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrsOptions {
    /// `key SECRET`.
    pub key: Option<Secret>,
    /// `key backup SECRET`: the previous key, still accepted.
    pub backup_key: Option<Secret>,
    /// `ttl` (whole days, at least one; default 4 days).
    pub ttl: Duration,
}

/// Four days, OpenSMTPD's default queue and SRS lifetime.
pub(crate) const FOUR_DAYS: Duration = Duration::from_secs(4 * 24 * 3600);

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            compression: false,
            encryption: None,
            ttl: FOUR_DAYS,
            backend: QueueBackend::Filesystem,
        }
    }
}

impl Default for BounceOptions {
    fn default() -> Self {
        Self {
            warn_intervals: vec![Duration::from_secs(4 * 3600)],
        }
    }
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            ciphers: None,
            max_mails: 100,
            max_rcpt: 1000,
            max_message_size: 35 * 1024 * 1024,
            sub_addr_delim: '+',
        }
    }
}

impl Default for MtaOptions {
    fn default() -> Self {
        Self {
            max_deferred: 100,
            limits: MtaLimits::default(),
            domain_limits: Vec::new(),
        }
    }
}

impl Default for SrsOptions {
    fn default() -> Self {
        Self {
            key: None,
            backup_key: None,
            ttl: FOUR_DAYS,
        }
    }
}
