//! Listeners and TLS material: `listen on`, `pki`, `ca`
//! (smtpd-conf.md sections 4 and 5).
//!
//! Listener options may each be given once; a listener has one TLS mode,
//! AUTH only with TLS, a pki only with TLS and TLS only with a pki. pki and
//! ca names used by a listener must be declared before it. Certificate and
//! key files are checked for readability once the whole file is read (as
//! `smtpd -n` loads them).

use std::collections::HashSet;
use std::net::IpAddr;

use super::usage::{HOSTNAMES, LISTEN_AUTH, SENDERS};
use super::{Checker, Namespace, PkiSpans};
use crate::config::ast::{ListenOpt, PkiParam, Port, SocketOpt, Spanned, Value};
use crate::config::model::{
    AddressFamily, Ca, CaId, Dhe, ListenAddress, Listener, ListenerAuth, ListenerTls, Pki, PkiId,
    Senders, SocketListener, Subsystem,
};
use crate::config::source::Span;
use crate::config::values;

/// Listeners may name at most this many certificates.
const MAX_PKIS: usize = 32;
/// The longest tag.
const MAX_TAG: usize = 32;

impl Checker<'_> {
    /// A pki or ca name: a host name or `*`, lower-cased.
    fn tls_name(&mut self, name: &Value, what: &str) -> Option<String> {
        let lower = name.text.to_ascii_lowercase();
        if lower == "*" || values::is_hostname(&lower) {
            return Some(lower);
        }
        self.error(
            name.span,
            format!("invalid {what} name \"{}\"", name.text),
            "a host name or *",
        );
        None
    }

    /// `pki NAME PARAM...`: several lines for one name accumulate.
    pub(super) fn pki(&mut self, name: &Value, params: &[PkiParam]) {
        let Some(lower) = self.tls_name(name, "pki") else {
            return;
        };
        let index = match self.config.pkis.iter().position(|p| p.name == lower) {
            Some(i) => i,
            None => {
                self.config.pkis.push(Pki {
                    name: lower.clone(),
                    cert: Default::default(),
                    key: Default::default(),
                    dhe: Dhe::None,
                });
                self.pki_spans.push(PkiSpans {
                    name: name.span,
                    cert: None,
                    key: None,
                });
                self.names
                    .insert((Namespace::Pki, lower), self.config.pkis.len() - 1);
                self.config.pkis.len() - 1
            }
        };
        for param in params {
            match param {
                PkiParam::Cert(file) => {
                    self.config.pkis[index].cert = file.text.clone().into();
                    self.pki_spans[index].cert = Some(file.span);
                }
                PkiParam::Key(file) => {
                    self.config.pkis[index].key = file.text.clone().into();
                    self.pki_spans[index].key = Some(file.span);
                }
                PkiParam::Dhe(value) => {
                    let dhe = match value.text.as_str() {
                        "none" => Dhe::None,
                        "auto" => Dhe::Auto,
                        "legacy" => Dhe::Legacy,
                        _ => {
                            self.error(
                                value.span,
                                format!("invalid dhe keyword \"{}\"", value.text),
                                "none, auto or legacy",
                            );
                            continue;
                        }
                    };
                    self.config.pkis[index].dhe = dhe;
                }
            }
        }
    }

    /// `ca NAME cert FILE`.
    pub(super) fn ca(&mut self, name: &Value, cert: &Value) {
        let Some(lower) = self.tls_name(name, "ca") else {
            return;
        };
        match self.config.cas.iter().position(|c| c.name == lower) {
            Some(i) => {
                self.config.cas[i].cert = cert.text.clone().into();
                self.ca_spans[i] = cert.span;
            }
            None => {
                self.config.cas.push(Ca {
                    name: lower.clone(),
                    cert: cert.text.clone().into(),
                });
                self.ca_spans.push(cert.span);
                self.names
                    .insert((Namespace::Ca, lower), self.config.cas.len() - 1);
            }
        }
    }

    /// Checks made once every statement is read: pki completeness, files,
    /// and the pki/ca names that relay actions use.
    pub(super) fn finish_tls(&mut self) {
        for i in 0..self.config.pkis.len() {
            let pki = self.config.pkis[i].clone();
            let spans = &self.pki_spans[i];
            let (name_span, cert, key) = (spans.name, spans.cert, spans.key);
            match cert {
                Some(span) => {
                    self.readable(span, &pki.cert, "certificate file");
                }
                None => self.error(
                    name_span,
                    format!("pki \"{}\" has no certificate", pki.name),
                    format!("`pki {} cert \"FILE\"`", pki.name),
                ),
            }
            match key {
                Some(span) => {
                    self.readable(span, &pki.key, "key file");
                }
                None => self.error(
                    name_span,
                    format!("pki \"{}\" has no key", pki.name),
                    format!("`pki {} key \"FILE\"`", pki.name),
                ),
            }
        }
        for i in 0..self.config.cas.len() {
            let path = self.config.cas[i].cert.clone();
            let span = self.ca_spans[i];
            self.readable(span, &path, "CA file");
        }
        for (ns, name) in std::mem::take(&mut self.relay_tls_refs) {
            let lower = Value {
                text: name.text.to_ascii_lowercase(),
                ..name
            };
            self.lookup(ns, &lower, ns.keyword());
        }
    }

    /// `listen on socket ...`.
    pub(super) fn listen_socket(&mut self, opts: &[Spanned<SocketOpt>], span: Span) {
        if self.socket_configured {
            self.error(
                span,
                "socket listener already configured",
                "one `listen on socket` line",
            );
            return;
        }
        self.socket_configured = true;
        let mut socket = SocketListener::default();
        let mut seen = HashSet::new();
        for opt in opts {
            let name = match &opt.node {
                SocketOpt::Filter(_) => "filter",
                SocketOpt::MaskSrc => "mask-src",
                SocketOpt::NoDsn => "no-dsn",
                SocketOpt::Tag(_) => "tag",
            };
            if !self.once(&mut seen, name, opt.span, "listener") {
                continue;
            }
            match &opt.node {
                SocketOpt::Filter(f) => socket.filter = self.filter_ref(f, Subsystem::SmtpIn),
                SocketOpt::MaskSrc => socket.mask_src = true,
                SocketOpt::NoDsn => socket.no_dsn = true,
                SocketOpt::Tag(tag) => socket.tag = self.tag(tag),
            }
        }
        self.config.socket = socket;
    }

    fn tag(&mut self, tag: &Value) -> Option<String> {
        if tag.text.len() > MAX_TAG {
            self.error(
                tag.span,
                "tag name too long",
                format!("at most {MAX_TAG} characters"),
            );
            return None;
        }
        Some(tag.text.clone())
    }

    /// `listen on IFACE ...`.
    pub(super) fn listen(&mut self, iface: &Value, opts: &[Spanned<ListenOpt>]) {
        let address = self.listen_address(iface);
        let valid = address.is_some();
        let mut listener = Listener::new(address.unwrap_or(ListenAddress::Name(String::new())));
        let mut seen = HashSet::new();
        let mut port = None;
        let (mut tls_at, mut auth_at, mut pki_at) = (None, None, None);
        for opt in opts {
            let Some(name) = self.listen_once(&mut seen, opt) else {
                continue;
            };
            match name {
                "tls" => tls_at = Some(opt.span),
                "auth" => auth_at = Some(opt.span),
                "pki" => pki_at = pki_at.or(Some(opt.span)),
                _ => {}
            }
            self.listen_opt(&mut listener, &mut port, opt);
        }
        listener.port = port.unwrap_or(if listener.tls == ListenerTls::Smtps {
            465
        } else {
            25
        });
        match (tls_at, auth_at, pki_at) {
            (None, Some(at), _) => self.error(
                at,
                "auth requires tls/smtps",
                "tls, tls-require or smtps on this listener",
            ),
            (None, _, Some(at)) => self.error(
                at,
                "pki requires tls/smtps",
                "tls, tls-require or smtps on this listener",
            ),
            (Some(at), _, None) => self.error(
                at,
                "pki required for tls/smtps",
                "pki NAME on this listener",
            ),
            _ => {}
        }
        if valid {
            self.config.listeners.push(listener);
        }
    }

    /// The duplicate-option check of a listener option; `None` for a
    /// repeat. TLS modes and auth modes share one name each.
    fn listen_once(
        &mut self,
        seen: &mut HashSet<&'static str>,
        opt: &Spanned<ListenOpt>,
    ) -> Option<&'static str> {
        let name = match &opt.node {
            ListenOpt::Inet4 | ListenOpt::Inet6 => "inet4/inet6",
            ListenOpt::Port(_) => "port",
            ListenOpt::Smtps { .. } | ListenOpt::TlsRequire { .. } | ListenOpt::Tls => "tls",
            ListenOpt::Pki(_) => return Some("pki"),
            ListenOpt::Ca(_) => "ca",
            ListenOpt::Ciphers(_) => "ciphers",
            ListenOpt::Protocols(_) => "protocols",
            ListenOpt::Auth(_) | ListenOpt::AuthOptional(_) => "auth",
            ListenOpt::Tag(_) => "tag",
            ListenOpt::Hostnames(_) => "hostnames",
            ListenOpt::Hostname(_) => "hostname",
            ListenOpt::MaskSrc => "mask-src",
            ListenOpt::ReceivedAuth => "received-auth",
            ListenOpt::NoDsn => "no-dsn",
            ListenOpt::ProxyV2 => "proxy-v2",
            ListenOpt::Senders { .. } => "senders",
            ListenOpt::Filter(_) => "filter",
        };
        if seen.insert(name) {
            return Some(name);
        }
        let message = match name {
            "tls" => "TLS mode already specified".to_owned(),
            "auth" => "auth mode already specified".to_owned(),
            _ => format!("{name} already specified for this listener"),
        };
        self.error(opt.span, message, format!("{name} at most once"));
        None
    }

    fn listen_opt(&mut self, l: &mut Listener, port: &mut Option<u16>, opt: &Spanned<ListenOpt>) {
        match &opt.node {
            ListenOpt::Inet4 => l.family = Some(AddressFamily::Inet4),
            ListenOpt::Inet6 => l.family = Some(AddressFamily::Inet6),
            ListenOpt::Port(p) => *port = self.port(p),
            ListenOpt::Smtps { verify } => (l.tls, l.verify_client) = (ListenerTls::Smtps, *verify),
            ListenOpt::TlsRequire { verify } => {
                (l.tls, l.verify_client) = (ListenerTls::StartTlsRequired, *verify);
            }
            ListenOpt::Tls => l.tls = ListenerTls::StartTls,
            ListenOpt::Pki(name) => self.listener_pki(l, name),
            ListenOpt::Ca(name) => {
                let lower = Value {
                    text: name.text.to_ascii_lowercase(),
                    ..name.clone()
                };
                l.ca = self
                    .lookup(Namespace::Ca, &lower, "ca")
                    .map(CaId::from_index);
            }
            ListenOpt::Ciphers(v) => l.ciphers = Some(v.text.clone()),
            ListenOpt::Protocols(v) => l.protocols = Some(v.text.clone()),
            ListenOpt::Auth(t) | ListenOpt::AuthOptional(t) => {
                let table = t.as_ref().and_then(|t| self.table(t, &LISTEN_AUTH));
                let required = matches!(opt.node, ListenOpt::Auth(_));
                l.auth = Some(ListenerAuth { required, table });
            }
            ListenOpt::Tag(tag) => l.tag = self.tag(tag),
            ListenOpt::Hostnames(t) => l.hostnames = self.table(t, &HOSTNAMES),
            ListenOpt::Hostname(v) => l.hostname = Some(v.text.clone()),
            ListenOpt::MaskSrc => l.mask_src = true,
            ListenOpt::ReceivedAuth => l.received_auth = true,
            ListenOpt::NoDsn => l.no_dsn = true,
            ListenOpt::ProxyV2 => l.proxy_v2 = true,
            ListenOpt::Senders { tables, masquerade } => {
                l.senders = self.table(tables, &SENDERS).map(|table| Senders {
                    table,
                    masquerade: *masquerade,
                });
            }
            ListenOpt::Filter(f) => l.filter = self.filter_ref(f, Subsystem::SmtpIn),
        }
    }

    fn listener_pki(&mut self, l: &mut Listener, name: &Value) {
        let lower = Value {
            text: name.text.to_ascii_lowercase(),
            ..name.clone()
        };
        let Some(index) = self.lookup(Namespace::Pki, &lower, "pki") else {
            return;
        };
        let id = PkiId::from_index(index);
        if l.pkis.contains(&id) {
            self.error(
                name.span,
                format!("pki \"{}\" already specified for this listener", lower.text),
                "each pki once",
            );
        } else if l.pkis.len() == MAX_PKIS {
            self.error(
                name.span,
                "too many pki on this listener",
                format!("at most {MAX_PKIS}"),
            );
        } else {
            l.pkis.push(id);
        }
    }

    /// The address of `listen on`: an address literal, or a name resolved
    /// when binding.
    fn listen_address(&mut self, iface: &Value) -> Option<ListenAddress> {
        let text = iface.text.as_str();
        let unbracketed = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .unwrap_or(text);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Some(ListenAddress::Ip(ip));
        }
        let numeric = text.contains(':') || text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if numeric || !values::is_hostname(text) {
            self.error(
                iface.span,
                format!("invalid virtual ip or interface \"{text}\""),
                "an interface or group name, an IPv4 or IPv6 address, or a host name",
            );
            return None;
        }
        Some(ListenAddress::Name(text.to_owned()))
    }

    fn port(&mut self, port: &Port) -> Option<u16> {
        let (text, value_span) = match port {
            Port::Smtp => return Some(25),
            Port::Smtps => return Some(465),
            Port::Number(n) => (n.text.as_str(), n.span),
            Port::Name(v) => (v.text.as_str(), v.span),
        };
        let parsed = if text.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            text.parse::<i64>()
                .ok()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n > 0)
        } else {
            values::service_port(text)
        };
        if parsed.is_none() {
            self.error(
                value_span,
                format!("invalid port: {text}"),
                "a number from 1 to 65535, or a service name such as submission",
            );
        }
        parsed
    }
}
