//! Whole configurations in the style of OpenSMTPD's documentation and of
//! common deployments; each must load and mean what it says. `{dir}` in a
//! sample stands for a directory holding the files it names.

use super::TempDir;
use crate::config::*;

/// Files every sample may use.
fn fixture() -> TempDir {
    let dir = TempDir::new();
    dir.write("aliases", "postmaster: root\nabuse: root\nroot: alice\n");
    dir.write(
        "virtuals",
        "alice@example.org alice\n@example.net catchall\n",
    );
    dir.write("vdomains", "example.net\nexample.com\n");
    dir.write("secrets", "bob bob:app-password\n");
    dir.write("passwd", "alice $2b$09$hash\n");
    dir.write(
        "trusted",
        "# trusted networks\n192.0.2.0/24\n[2001:db8::1]\n",
    );
    dir.write("mx.crt", "certificate");
    dir.write("mx.key", "key");
    dir.write("table-sqlite", "#!/bin/sh\n");
    dir
}

fn load_sample(dir: &TempDir, text: &str) -> Config {
    let text = text.replace("{dir}", &dir.path().display().to_string());
    let opts = LoadOptions {
        backends_dir: dir.path().to_owned(),
        ..LoadOptions::default()
    };
    match Config::parse_str(dir.path().join("smtpd.conf"), &text, &opts) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("sample should load:\n{text}\n{e}"),
    }
}

#[test]
fn the_classic_default() {
    let dir = fixture();
    let c = load_sample(
        &dir,
        r#"
#	A system-wide configuration as OpenBSD ships it.

table aliases file:{dir}/aliases

listen on socket
listen on lo0

action "local_mail" mbox alias <aliases>
action "outbound" relay

match from local for local action "local_mail"
match from local for any action "outbound"
"#,
    );
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.rules.len(), 2);
    assert_eq!(c.rules[0].verdict, Verdict::Action(ActionId(0)));
    assert_eq!(c.rules[1].destination.test, ForDestination::Any);
}

#[test]
fn a_mail_exchanger_with_submission_and_virtual_domains() {
    let dir = fixture();
    let c = load_sample(
        &dir,
        r#"
pki mx.example.org cert "{dir}/mx.crt"
pki mx.example.org key "{dir}/mx.key"

table aliases file:{dir}/aliases
table virtuals file:{dir}/virtuals
table vdomains file:{dir}/vdomains
table passwd file:{dir}/passwd

listen on lo0 tls pki mx.example.org
listen on lo0 port submission tls-require pki mx.example.org auth <passwd>
listen on lo0 port smtps smtps pki mx.example.org auth <passwd> mask-src

action "local_mail" maildir junk alias <aliases>
action "virtual_mail" maildir "/var/vmail/%{dest.domain:lowercase}/%{dest.user:lowercase}" \
        virtual <virtuals>
action "outbound" relay helo mx.example.org

match from any for domain "example.org" action "local_mail"
match from any for domain <vdomains> action "virtual_mail"
match from local for any action "outbound"
match from any auth for any action "outbound"
"#,
    );
    assert_eq!(c.listeners.len(), 3);
    assert_eq!(c.listeners[1].port, 587);
    assert_eq!(c.listeners[2].port, 465);
    assert!(c.listeners.iter().all(|l| l.pkis == vec![PkiId(0)]));
    let passwd = c.table_named("passwd");
    assert_eq!(c.listeners[1].auth.and_then(|a| a.table), passwd);
    assert_eq!(
        c.rules[3].auth,
        Some(Criterion {
            negated: false,
            test: None
        })
    );
}

#[test]
fn a_laptop_relaying_through_a_smarthost() {
    let dir = fixture();
    let c = load_sample(
        &dir,
        r#"
table aliases file:{dir}/aliases
table secrets file:{dir}/secrets

listen on localhost

action "local" mbox alias <aliases>
action "relay" relay host smtp+tls://bob@smtp.example.com:587 auth <secrets> \
        mail-from "@example.com"

match for local action "local"
match for any action "relay"
"#,
    );
    let ActionKind::Relay(relay) = &c.actions[1].kind else {
        panic!()
    };
    assert_eq!(relay.auth, c.table_named("secrets"));
    assert_eq!(
        relay.mail_from,
        Some(MailFromRewrite::Domain("example.com".into()))
    );
    assert_eq!(
        c.listeners[0].address,
        ListenAddress::Name("localhost".into())
    );
}

#[test]
fn filtering_inbound_mail_and_signing_outbound_mail() {
    let dir = fixture();
    let c = load_sample(
        &dir,
        r#"
pki example.org cert "{dir}/mx.crt"
pki example.org key "{dir}/mx.key"

filter check_dyndns phase connect match rdns regex { '.*\.dyn\..*', '.*\.dsl\..*' } \
        disconnect "550 no residential connections"
filter check_rdns phase connect match !rdns disconnect "550 no rDNS"
filter check_fcrdns phase connect match !fcrdns disconnect "550 no FCrDNS"
filter senderscore proc-exec "filter-senderscore -blockBelow 10 -junkBelow 70 -slowFactor 5000"
filter rspamd proc-exec "filter-rspamd"
filter dkimsign proc-exec "filter-dkimsign -d example.org -s s1 -k /etc/mail/dkim/private.key" \
        user _dkimsign group _dkimsign

listen on lo0 tls pki example.org \
        filter { check_dyndns, check_rdns, check_fcrdns, senderscore, rspamd }
listen on lo0 port submission tls-require pki example.org auth filter dkimsign

action "deliver" maildir
action "send" relay

match from any for domain example.org action "deliver"
match auth from any for any action "send"
"#,
    );
    let chain = &c[c.listeners[0].filter.unwrap()];
    assert!(matches!(&chain.kind, FilterKind::Chain(members) if members.len() == 5));
    let dkim = c.proc_named("dkimsign").unwrap();
    assert_eq!(c[dkim].command.user.as_deref(), Some("_dkimsign"));
    assert!(c
        .procs
        .iter()
        .all(|p| p.subsystems.contains(&Subsystem::SmtpIn)));
}

#[test]
fn backend_tables_and_lmtp() {
    let dir = fixture();
    let c = load_sample(
        &dir,
        r#"
table db sqlite:/etc/mail/users.conf
table trusted "{dir}/trusted"

pki "mx" cert "{dir}/mx.crt" key "{dir}/mx.key"
listen on lo0 port 587 tls-require pki "mx" auth <db>

action vm lmtp "/var/run/dovecot/lmtp" rcpt-to virtual <db> userbase <db>
action "lists" mda "/usr/local/bin/mlmmj-receive -F -L /var/spool/mlmmj/%{rcpt.user}"
action "out" relay src { 192.0.2.1, "[2001:db8::1]" } helo-src { 192.0.2.1 = mx1.example.org }

match from any for rcpt-to regex "^list-" action "lists"
match from any for domain <db> action vm
match ! from src <trusted> for any reject
match from src <trusted> for any action "out"
"#,
    );
    assert!(matches!(
        c[c.table_named("db").unwrap()].backend,
        TableBackend::Program { .. }
    ));
    assert_eq!(c.rules.len(), 4);
    assert_eq!(c.rules[2].verdict, Verdict::Reject);
    assert!(c.rules[2].from.negated);
}

#[test]
fn tuned_options() {
    let dir = fixture();
    let c = load_sample(
        &dir,
        r#"
queue compression
queue encryption 1fa2b3c4d5e6f708192a3b4c5d6e7f80
queue ttl 3d
bounce warn-interval 1h, 4h, 1d
smtp max-message-size 50M
smtp limit max-mails 50 max-rcpt 200
smtp sub-addr-delim "-"
mta max-deferred 200
mta limit for domain gmail.com max-conn-per-host 2
scheduler limit max-inflight 1000
srs key 9f8e7d6c5b4a
srs ttl 7d
admd mx.example.org
mda wrapper spamc "/usr/local/bin/spamc -e %{mda}"

action "local" maildir wrapper spamc
action "out" relay srs
match for local action "local"
match from local for any action "out"
"#,
    );
    assert!(c.queue.compression);
    assert_eq!(c.queue.ttl.as_secs(), 3 * 86400);
    assert_eq!(c.bounce.warn_intervals.len(), 3);
    assert_eq!(c.smtp.sub_addr_delim, '-');
    assert_eq!(c.mta.domain_limits[0].0, "gmail.com");
    assert_eq!(c.srs.ttl.as_secs(), 7 * 86400);
    assert_eq!(c.admd.as_deref(), Some("mx.example.org"));
}
