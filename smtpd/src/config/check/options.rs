//! Global options: `queue`, `bounce`, `smtp`, `mta`, `mda`, `scheduler`,
//! `srs`, `admd` (smtpd-conf.md section 9). A later line overrides an
//! earlier one.

use super::{Checker, Namespace};
use crate::config::ast::{
    LimitPair, MdaDirective, MtaDirective, MtaLimit, QueueDirective, Size, SmtpDirective,
    SrsDirective, Value,
};
use crate::config::model::{
    AddressFamily, MdaLimits, MdaWrapper, MtaLimits, QueueBackend, QueueKey, SchedulerLimits,
    Secret,
};
use crate::config::values;

/// Only this many bounce warnings are used.
const MAX_WARN_INTERVALS: usize = 4;
/// The length of a queue encryption key.
const QUEUE_KEY_LEN: usize = 32;
const DAY: u64 = 86400;

impl Checker<'_> {
    pub(super) fn queue(&mut self, q: &QueueDirective) {
        match q {
            QueueDirective::Compression => self.config.queue.compression = true,
            QueueDirective::Encryption(None) => {
                self.config.queue.encryption = Some(QueueKey::Prompt)
            }
            QueueDirective::Encryption(Some(key)) => {
                let text = key.text.as_str();
                let key_source = if text.eq_ignore_ascii_case("stdin") || text == "-" {
                    QueueKey::Stdin
                } else if text.len() == QUEUE_KEY_LEN {
                    QueueKey::Inline(Secret(text.to_owned()))
                } else {
                    self.error(
                        key.span,
                        format!(
                            "invalid key for queue encryption: {} bytes long",
                            text.len()
                        ),
                        "a key of exactly 32 bytes (such as the output of `openssl rand -hex 16`), or stdin",
                    );
                    return;
                };
                self.config.queue.encryption = Some(key_source);
            }
            QueueDirective::Ttl(delay) => {
                if let Some(ttl) = self.delay(delay, "ttl") {
                    self.config.queue.ttl = ttl;
                }
            }
            QueueDirective::ProcExec(exec) => {
                if let Some(command) = self.proc_command(exec) {
                    self.config.queue.backend = QueueBackend::ProcExec(command);
                }
            }
        }
    }

    fn delay(&mut self, value: &Value, what: &str) -> Option<std::time::Duration> {
        let delay = values::delay(&value.text);
        if delay.is_none() {
            self.error(
                value.span,
                format!("invalid {what} delay: {}", value.text),
                values::DELAY_FORMAT,
            );
        }
        delay
    }

    pub(super) fn bounce(&mut self, delays: &[Value]) {
        let mut intervals = Vec::new();
        for value in delays {
            if let Some(delay) = self.delay(value, "bounce") {
                intervals.push((delay, value.span));
            }
        }
        if intervals.len() != delays.len() {
            return;
        }
        if let Some((_, at)) = intervals.get(MAX_WARN_INTERVALS) {
            self.warn(
                *at,
                format!("only the first {MAX_WARN_INTERVALS} bounce warn-interval delays are used"),
            );
        }
        intervals.truncate(MAX_WARN_INTERVALS);
        if let Some(w) = intervals.windows(2).find(|w| w[1].0 <= w[0].0) {
            self.warn(
                w[1].1,
                "bounce warn-interval delays should be given in ascending order",
            );
        }
        self.config.bounce.warn_intervals = intervals.into_iter().map(|(d, _)| d).collect();
    }

    pub(super) fn smtp(&mut self, s: &SmtpDirective) {
        match s {
            SmtpDirective::Limit(pairs) => {
                for pair in pairs {
                    let Some(value) = self.count(&pair.value, "session limit") else {
                        continue;
                    };
                    match pair.key.text.as_str() {
                        "max-mails" => self.config.smtp.max_mails = value,
                        "max-rcpt" => self.config.smtp.max_rcpt = value,
                        _ => self.error(
                            pair.key.span,
                            format!("invalid session limit keyword: {}", pair.key.text),
                            "max-mails or max-rcpt",
                        ),
                    }
                }
            }
            SmtpDirective::Ciphers(c) => self.config.smtp.ciphers = Some(c.text.clone()),
            SmtpDirective::MaxMessageSize(size) => {
                let (text, span) = match size {
                    Size::Number(n) => (&n.text, n.span),
                    Size::Scaled(v) => (&v.text, v.span),
                };
                match values::size(text) {
                    Some(bytes) => self.config.smtp.max_message_size = bytes,
                    None => self.error(span, format!("invalid size: {text}"), values::SIZE_FORMAT),
                }
            }
            SmtpDirective::SubAddrDelim(delim) => self.sub_addr_delim(delim),
        }
    }

    fn sub_addr_delim(&mut self, delim: &Value) {
        let mut chars = delim.text.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            self.error(
                delim.span,
                "sub-addr-delim must be one character",
                "one character, such as \"+\" or \"-\"",
            );
            return;
        };
        if !c.is_ascii_graphic() || c == '@' {
            self.error(
                delim.span,
                format!("sub-addr-delim uses an invalid character: {c:?}"),
                "a printable ASCII character other than space and @",
            );
            return;
        }
        self.config.smtp.sub_addr_delim = c;
    }

    pub(super) fn mta(&mut self, m: &MtaDirective) {
        let (domain, items) = match m {
            MtaDirective::MaxDeferred(n) => {
                if let Some(v) = self.count(n, "max-deferred") {
                    self.config.mta.max_deferred = v;
                }
                return;
            }
            MtaDirective::Limit { domain, items } => (domain, items),
        };
        let mut limits = match domain {
            None => self.config.mta.limits.clone(),
            Some(d) => self
                .config
                .mta
                .domain_limits
                .iter()
                .find(|(name, _)| *name == d.text.to_ascii_lowercase())
                .map_or_else(|| self.config.mta.limits.clone(), |(_, l)| l.clone()),
        };
        for item in items {
            match &item.node {
                MtaLimit::Inet4 => limits.family = Some(AddressFamily::Inet4),
                MtaLimit::Inet6 => limits.family = Some(AddressFamily::Inet6),
                MtaLimit::Pair(pair) => {
                    let keys = crate::config::model::MtaLimitValues::KEYS;
                    self.limit(pair, "mta", keys, |value, key| {
                        limits.values.set(key, value)
                    });
                }
            }
        }
        self.store_mta_limits(domain.as_ref(), limits);
    }

    fn store_mta_limits(&mut self, domain: Option<&Value>, limits: MtaLimits) {
        let Some(domain) = domain else {
            self.config.mta.limits = limits;
            return;
        };
        let name = domain.text.to_ascii_lowercase();
        let per_domain = &mut self.config.mta.domain_limits;
        match per_domain.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = limits,
            None => per_domain.push((name, limits)),
        }
    }

    /// One `KEY NUMBER` of a limit list, given to `set`.
    fn limit(
        &mut self,
        pair: &LimitPair,
        what: &str,
        keys: &[&str],
        mut set: impl FnMut(u64, &str) -> bool,
    ) {
        let Some(value) = self.count(&pair.value, &format!("{what} limit")) else {
            return;
        };
        if !set(value, &pair.key.text) {
            self.error(
                pair.key.span,
                format!("invalid {what} limit keyword: {}", pair.key.text),
                keys.join(", "),
            );
        }
    }

    pub(super) fn mda(&mut self, m: &MdaDirective) {
        match m {
            MdaDirective::Limit(pairs) => {
                let mut limits = self.config.mda.clone();
                for pair in pairs {
                    self.limit(pair, "mda", MdaLimits::KEYS, |v, k| limits.set(k, v));
                }
                self.config.mda = limits;
            }
            MdaDirective::Wrapper { name, command } => {
                let index = self.config.mda_wrappers.len();
                if command.text.trim().is_empty() {
                    self.error(command.span, "empty mda wrapper command", "a command line");
                    return;
                }
                if self.declare(Namespace::Wrapper, name, index) {
                    self.config.mda_wrappers.push(MdaWrapper {
                        name: name.text.clone(),
                        command: command.text.clone(),
                    });
                }
            }
        }
    }

    pub(super) fn scheduler(&mut self, pairs: &[LimitPair]) {
        let mut limits = self.config.scheduler.clone();
        for pair in pairs {
            self.limit(pair, "scheduler", SchedulerLimits::KEYS, |v, k| {
                limits.set(k, v)
            });
        }
        self.config.scheduler = limits;
    }

    pub(super) fn srs(&mut self, s: &SrsDirective) {
        match s {
            SrsDirective::Key { backup, secret } => {
                if secret.text.is_empty() {
                    self.error(secret.span, "empty srs key", "a secret");
                    return;
                }
                let key = Some(Secret(secret.text.clone()));
                if *backup {
                    self.config.srs.backup_key = key;
                } else {
                    self.config.srs.key = key;
                }
            }
            SrsDirective::Ttl(delay) => {
                let Some(ttl) = self.delay(delay, "srs ttl") else {
                    return;
                };
                let days = ttl.as_secs() / DAY;
                if days == 0 {
                    self.error(
                        delay.span,
                        "srs ttl must be at least one day",
                        "a delay of 1d or more",
                    );
                    return;
                }
                self.config.srs.ttl = std::time::Duration::from_secs(days * DAY);
            }
        }
    }

    pub(super) fn admd(&mut self, v: &Value) {
        if v.text.is_empty() || !v.text.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            self.error(
                v.span,
                "invalid admd: it must hold printable characters only",
                "an authserv-id such as mx.example.org",
            );
            return;
        }
        self.config.admd = Some(v.text.clone());
    }
}
