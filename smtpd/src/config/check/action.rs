//! Actions (dispatchers): local delivery methods and relaying
//! (smtpd-conf.md section 6).
//!
//! Each option at most once; `alias` and `virtual` exclude each other;
//! `user` is not for mbox, forward-only or expand-only; a relay's `backup`
//! excludes `host` and `domain`, its `auth` must follow one of them, and
//! `srs` needs an `srs key` declared before.

use std::collections::HashSet;

use super::usage::{
    ALIAS, HELO_SRC, RELAY_AUTH, RELAY_DOMAIN, RELAY_HOST, RELAY_SRC, USERBASE, VIRTUAL,
};
use super::{Checker, Namespace};
use crate::config::ast::{self, LocalOpt, RelayOpt, Spanned};
use crate::config::model::{
    Action, ActionKind, Backup, Expansion, LocalDelivery, LocalMethod, Relay, RelayRoute, RelayTls,
    Subsystem, TableId, WrapperId,
};
use crate::config::values;

impl Checker<'_> {
    /// `action NAME ...`.
    pub(super) fn action(&mut self, action: &ast::Action) {
        let index = self.config.actions.len();
        let known = self
            .names
            .contains_key(&(Namespace::Action, action.name.text.clone()));
        let kind = match &action.kind {
            ast::ActionKind::Local { method, opts } => {
                self.local(method, opts).map(ActionKind::Local)
            }
            ast::ActionKind::Relay(opts) => Some(ActionKind::Relay(self.relay(opts))),
        };
        let mut ttl = None;
        for (n, value) in action.ttl.iter().enumerate() {
            if n > 0 {
                self.error(
                    value.span,
                    "ttl already specified for this action",
                    "ttl at most once",
                );
                continue;
            }
            ttl = values::delay(&value.text);
            if ttl.is_none() {
                self.error(
                    value.span,
                    format!("invalid ttl delay: {}", value.text),
                    values::DELAY_FORMAT,
                );
            }
        }
        if known {
            self.declare(Namespace::Action, &action.name, index);
            return;
        }
        let Some(kind) = kind else {
            self.failed
                .insert((Namespace::Action, action.name.text.clone()));
            return;
        };
        self.declare(Namespace::Action, &action.name, index);
        self.config.actions.push(Action {
            name: action.name.text.clone(),
            kind,
            ttl,
        });
    }

    fn local(
        &mut self,
        method: &Spanned<ast::LocalMethod>,
        opts: &[Spanned<LocalOpt>],
    ) -> Option<LocalDelivery> {
        let method = self.local_method(method)?;
        let mut delivery = LocalDelivery {
            method,
            expansion: None,
            userbase: TableId::GETPWNAM,
            user: None,
            wrapper: None,
        };
        let mut seen = HashSet::new();
        for opt in opts {
            let name = match &opt.node {
                LocalOpt::Alias(_) => "alias",
                LocalOpt::Virtual(_) => "virtual",
                LocalOpt::Userbase(_) => "userbase",
                LocalOpt::User(_) => "user",
                LocalOpt::Wrapper(_) => "wrapper",
            };
            if !self.once(&mut seen, name, opt.span, "action") {
                continue;
            }
            self.local_opt(&mut delivery, opt);
        }
        Some(delivery)
    }

    fn local_method(&mut self, method: &Spanned<ast::LocalMethod>) -> Option<LocalMethod> {
        Some(match &method.node {
            ast::LocalMethod::Mbox => LocalMethod::Mbox,
            ast::LocalMethod::Maildir { path, junk } => LocalMethod::Maildir {
                path: path.as_ref().map(|p| p.text.clone()),
                junk: *junk,
            },
            ast::LocalMethod::Lmtp {
                destination,
                rcpt_to,
            } => {
                if !values::is_lmtp_destination(&destination.text) {
                    self.error(
                        destination.span,
                        format!("invalid lmtp destination \"{}\"", destination.text),
                        "HOST:PORT, [ADDRESS]:PORT or an absolute Unix socket path",
                    );
                    return None;
                }
                LocalMethod::Lmtp {
                    destination: destination.text.clone(),
                    rcpt_to: *rcpt_to,
                }
            }
            ast::LocalMethod::Mda(command) => {
                if command.text.trim().is_empty() {
                    self.error(command.span, "empty mda command", "a command line");
                    return None;
                }
                LocalMethod::Mda {
                    command: command.text.clone(),
                }
            }
            ast::LocalMethod::ForwardOnly => LocalMethod::ForwardOnly,
            ast::LocalMethod::ExpandOnly => LocalMethod::ExpandOnly,
        })
    }

    fn local_opt(&mut self, d: &mut LocalDelivery, opt: &Spanned<LocalOpt>) {
        match &opt.node {
            LocalOpt::Alias(t) | LocalOpt::Virtual(t) => {
                let alias = matches!(opt.node, LocalOpt::Alias(_));
                if let Some(existing) = d.expansion {
                    let which = match existing {
                        Expansion::Alias(_) => "alias",
                        Expansion::Virtual(_) => "virtual",
                    };
                    self.error(
                        opt.span,
                        format!("{which} mapping already specified for this action"),
                        "either alias or virtual, not both",
                    );
                    return;
                }
                let usage = if alias { &ALIAS } else { &VIRTUAL };
                d.expansion = self.table(t, usage).map(|id| {
                    if alias {
                        Expansion::Alias(id)
                    } else {
                        Expansion::Virtual(id)
                    }
                });
            }
            LocalOpt::Userbase(t) => {
                if let Some(id) = self.table(t, &USERBASE) {
                    d.userbase = id;
                }
            }
            LocalOpt::User(user) => {
                if matches!(
                    d.method,
                    LocalMethod::Mbox | LocalMethod::ForwardOnly | LocalMethod::ExpandOnly
                ) {
                    self.error(
                        opt.span,
                        format!(
                            "user may not be specified for {} actions",
                            d.method.keyword()
                        ),
                        "maildir, lmtp or mda for delivery as another user",
                    );
                    return;
                }
                d.user = Some(user.text.clone());
            }
            LocalOpt::Wrapper(name) => {
                d.wrapper = self
                    .lookup(Namespace::Wrapper, name, "mda wrapper")
                    .map(WrapperId::from_index);
            }
        }
    }

    fn relay(&mut self, opts: &[Spanned<RelayOpt>]) -> Relay {
        let mut relay = Relay::default();
        let mut seen = HashSet::new();
        for opt in opts {
            let name = relay_opt_name(&opt.node);
            if !self.once(&mut seen, name, opt.span, "action") {
                continue;
            }
            self.relay_opt(&mut relay, &seen, opt);
        }
        relay
    }

    fn relay_opt(&mut self, r: &mut Relay, seen: &HashSet<&'static str>, opt: &Spanned<RelayOpt>) {
        let routed = seen.contains("host") || seen.contains("domain");
        match &opt.node {
            RelayOpt::Backup(mx) => {
                if routed {
                    self.error(
                        opt.span,
                        "backup and host are mutually exclusive",
                        "backup, or host/domain",
                    );
                    return;
                }
                r.backup = Some(Backup {
                    mx: mx.as_ref().map(|v| v.text.clone()),
                });
            }
            RelayOpt::Host(t) | RelayOpt::Domain(t) => {
                let backup = seen.contains("backup");
                if backup || (seen.contains("host") && seen.contains("domain")) {
                    let message = if backup {
                        "backup and host are mutually exclusive"
                    } else {
                        "host and domain are mutually exclusive"
                    };
                    self.error(opt.span, message, "one of backup, host and domain");
                    return;
                }
                r.route = if matches!(opt.node, RelayOpt::Host(_)) {
                    self.table(t, &RELAY_HOST).map(RelayRoute::Host)
                } else {
                    self.table(t, &RELAY_DOMAIN).map(RelayRoute::Domain)
                };
            }
            RelayOpt::Auth(t) => {
                // `seen` holds this option too; a route must come earlier.
                if !routed {
                    self.error(
                        opt.span,
                        "auth may not be specified without host on an action",
                        "host or domain before auth on the line",
                    );
                    return;
                }
                r.auth = self.table(t, &RELAY_AUTH);
            }
            RelayOpt::Tls { no_verify } => {
                r.tls = Some(if *no_verify {
                    RelayTls::NoVerify
                } else {
                    RelayTls::Verify
                });
            }
            RelayOpt::Pki(name) => {
                self.relay_tls_refs.push((Namespace::Pki, name.clone()));
                r.pki = Some(name.text.to_ascii_lowercase());
            }
            RelayOpt::Ca(name) => {
                self.relay_tls_refs.push((Namespace::Ca, name.clone()));
                r.ca = Some(name.text.to_ascii_lowercase());
            }
            RelayOpt::Ciphers(v) => r.ciphers = Some(v.text.clone()),
            RelayOpt::Protocols(v) => r.protocols = Some(v.text.clone()),
            RelayOpt::HeloSrc(t) => r.helo_src = self.table(t, &HELO_SRC),
            RelayOpt::Helo(name) => {
                if !values::is_hostname(&name.text) {
                    self.error(
                        name.span,
                        format!("invalid helo name \"{}\"", name.text),
                        "a host name",
                    );
                }
                r.helo = Some(name.text.clone());
            }
            RelayOpt::Src(t) => r.src = self.table(t, &RELAY_SRC),
            RelayOpt::MailFrom(v) => {
                r.mail_from = values::mail_from(&v.text);
                if r.mail_from.is_none() {
                    self.error(
                        v.span,
                        format!("invalid mail-from address \"{}\"", v.text),
                        "USER@DOMAIN, USER or @DOMAIN",
                    );
                }
            }
            RelayOpt::Filter(f) => r.filter = self.filter_ref(f, Subsystem::SmtpOut),
            RelayOpt::Srs => {
                if self.config.srs.key.is_none() {
                    self.error(
                        opt.span,
                        "an srs key is required for srs to be specified in an action",
                        "`srs key SECRET` before this action",
                    );
                    return;
                }
                r.srs = true;
            }
        }
    }
}

fn relay_opt_name(opt: &RelayOpt) -> &'static str {
    match opt {
        RelayOpt::Backup(_) => "backup",
        RelayOpt::Host(_) => "host",
        RelayOpt::Domain(_) => "domain",
        RelayOpt::Auth(_) => "auth",
        RelayOpt::Tls { .. } => "tls",
        RelayOpt::Pki(_) => "pki",
        RelayOpt::Ca(_) => "ca",
        RelayOpt::Ciphers(_) => "ciphers",
        RelayOpt::Protocols(_) => "protocols",
        RelayOpt::HeloSrc(_) => "helo-src",
        RelayOpt::Helo(_) => "helo",
        RelayOpt::Src(_) => "src",
        RelayOpt::MailFrom(_) => "mail-from",
        RelayOpt::Filter(_) => "filter",
        RelayOpt::Srs => "srs",
    }
}
