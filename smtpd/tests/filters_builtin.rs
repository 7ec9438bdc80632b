//! Built-in filters end to end: the built `smtpd` with chains of
//! `filter NAME phase PHASE match CONDITION DECISION` filters, and real
//! clients (the harness's raw SMTP client, and swaks for connections made
//! from other source addresses and for AUTH over STARTTLS).
//!
//! Clients connect from three loopback addresses that the test nameserver
//! (`common/dns.rs`) tells apart: 127.0.0.1 has the reverse name
//! `client.smtpd.test`, which leads back to it (FCrDNS passes); 127.0.0.3
//! has `liar.smtpd.test`, which does not (FCrDNS fails); 127.0.0.2 has no
//! reverse name at all.
//!
//! - connect: `fcrdns`, `rdns`, `rdns <t>`, `rdns regex`, `src <t>`,
//!   `bypass`, `disconnect`, `junk`; `phase auth` runs at connect, as in
//!   OpenSMTPD 7.8;
//! - helo/ehlo, mail-from, rcpt-to, data and commit: `helo`, `mail-from`,
//!   `rcpt-to` (tables and regex), `reject`, `disconnect`, `rewrite` (the
//!   queued envelope's sender and recipient), `junk` (`X-Spam: Yes`); a
//!   reject at commit queues nothing; a reply that is no 4xx/5xx becomes
//!   `421 Internal server error` and closes the session;
//! - auth: `auth`, `! auth`, `auth <t>`, `auth regex` after AUTH over
//!   STARTTLS.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;

use common::mail::{
    accepted_id, self_signed, smtpctl_encrypt, swaks, Client, Smtpd, OUTSIDER, TEMPFAIL,
};
use common::Scratch;

/// 127.0.0.3: a reverse name that does not lead back (FCrDNS fails).
const LIAR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A daemon whose listener on 127.0.0.1 uses the chain `checks` declared in
/// `filters` (with any tables it needs); `listen` is added to the
/// listener's options. example.org is delivered locally, by a command that
/// fails temporarily, so that accepted messages stay in the queue.
fn start(dir: &Scratch, filters: &str, listen: &str) -> Smtpd {
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", "vmail 65534:65534:/nonexistent\n");
    Smtpd::start(dir, |port| {
        format!(
            "table vusers file:{}\n\
             table users file:{}\n\
             {filters}\
             listen on 127.0.0.1 port {port} hostname mx.test {listen} filter checks\n\
             action \"local\" mda \"{TEMPFAIL}\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"local\"\n",
            vusers.display(),
            users.display(),
        )
    })
}

/// swaks from `source` sending one message from `from` to `to`; its
/// transcript and exit status.
fn swaks_from(smtpd: &Smtpd, source: Ipv4Addr, from: &str, to: &str) -> (String, Option<i32>) {
    swaks(
        smtpd.port,
        &[
            "--local-interface",
            &source.to_string(),
            "--helo",
            "client.test",
            "--from",
            from,
            "--to",
            to,
        ],
    )
}

/// The message id in swaks's transcript of an accepted message.
fn swaks_accepted(out: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains(" Message accepted for delivery"))
        .unwrap_or_else(|| panic!("no accepted message in:\n{out}"));
    line.split_whitespace().nth(3).unwrap().to_owned()
}

/// A client from `source`, greeted, after EHLO `name`.
fn client(smtpd: &Smtpd, source: Ipv4Addr, name: &str) -> Client {
    let mut c = smtpd.connect(source);
    c.expect_code(&format!("EHLO {name}"), "250");
    c
}

#[test]
fn connect_fcrdns_src_and_bypass() {
    let dir = Scratch::new("filters-builtin", "fcrdns");
    let smtpd = start(
        &dir,
        "filter trusted phase connect match src { 127.0.0.3 } bypass\n\
         filter confirmed phase connect match !fcrdns disconnect \"554 5.7.1 FCrDNS failed\"\n\
         filter checks chain { trusted, confirmed }\n",
        "",
    );
    // No reverse name: FCrDNS fails, the session ends before the banner.
    let (out, code) = swaks_from(&smtpd, OUTSIDER, "a@example.net", "alice@example.org");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("554 5.7.1 FCrDNS failed"), "{out}");
    assert!(!out.contains("220 "), "{out}");
    // FCrDNS fails for the liar too, but its source bypasses the chain.
    let (out, code) = swaks_from(&smtpd, LIAR, "a@example.net", "alice@example.org");
    assert_eq!(code, Some(0), "{out}");
    swaks_accepted(&out);
    // A confirmed name passes.
    let mut c = smtpd.connect(Ipv4Addr::LOCALHOST);
    assert!(c.greeting.starts_with("220 mx.test "), "{}", c.greeting);
    c.expect_code("QUIT", "221");
}

#[test]
fn connect_rdns_tables_junk_and_phase_auth() {
    let dir = Scratch::new("filters-builtin", "rdns");
    let smtpd = start(
        &dir,
        "table liars { \"liar.smtpd.test\" }\n\
         filter named phase auth match !rdns disconnect \"421 4.7.1 No reverse DNS\"\n\
         filter liar phase connect match rdns <liars> junk\n\
         filter clients phase connect match rdns regex { \"^client[.]\" } report \"a client\"\n\
         filter checks chain { named, liar, clients }\n",
        "",
    );
    // `phase auth` filters run at connect (OpenSMTPD 7.8 registers them
    // there): no banner for a client without a reverse name.
    let (out, code) = swaks_from(&smtpd, OUTSIDER, "a@example.net", "alice@example.org");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("421 4.7.1 No reverse DNS"), "{out}");
    // The liar's name is in <liars>: its message is marked as spam.
    let (out, code) = swaks_from(&smtpd, LIAR, "a@example.net", "alice@example.org");
    assert_eq!(code, Some(0), "{out}");
    let junk = swaks_accepted(&out);
    let message = smtpd.spool.message(&junk);
    assert!(message.starts_with("X-Spam: Yes\r\n"), "{message}");
    // The client matches neither: a clean message (a report goes on).
    let (out, code) = swaks_from(
        &smtpd,
        Ipv4Addr::LOCALHOST,
        "a@example.net",
        "alice@example.org",
    );
    assert_eq!(code, Some(0), "{out}");
    let clean = swaks_accepted(&out);
    assert!(!smtpd.spool.message(&clean).contains("X-Spam"));
}

/// The filters of the command phases, for [`command_phases`].
const COMMAND_FILTERS: &str = "\
filter badhelo phase ehlo match helo { \"*.invalid\" } reject \"550 5.7.1 Bad HELO\"
filter rudehelo phase helo match helo regex { \"^rude\" } disconnect \"421 4.7.1 Be polite\"
filter spam phase mail-from match mail-from { \"@spam.test\" } reject \"550 5.7.1 Sender refused\"
filter bulk phase mail-from match mail-from regex { \"^bulk\" } junk
filter moved phase mail-from match mail-from { \"old@example.net\" } rewrite \"<new@example.net>\"
filter nobody phase rcpt-to match rcpt-to { \"nobody@example.org\" } reject \"550 5.1.1 No such user\"
filter sales phase rcpt-to match rcpt-to regex { \"^sales@\" } rewrite \"<alice@example.org>\"
filter weird phase rcpt-to match rcpt-to { \"weird@example.org\" } reject \"250 this is no refusal\"
filter quiet phase data match helo { \"quiet.test\" } reject \"554 5.7.1 No DATA from you\"
filter later phase commit match mail-from { \"late@example.net\" } reject \"451 4.7.1 Try again later\"
filter checks chain { badhelo, rudehelo, spam, bulk, moved, nobody, sales, weird, quiet, later }
";

#[test]
fn command_phases() {
    let dir = Scratch::new("filters-builtin", "commands");
    let smtpd = start(&dir, COMMAND_FILTERS, "");

    // helo and ehlo.
    let mut c = smtpd.connect(OUTSIDER);
    c.expect("EHLO host.invalid", "550 5.7.1 Bad HELO");
    c.expect("HELO rude.example.net", "421 4.7.1 Be polite");
    assert!(c.is_closed());

    // mail-from and rcpt-to: reject, rewrite of both addresses.
    let mut c = client(&smtpd, OUTSIDER, "client.test");
    c.expect("MAIL FROM:<someone@spam.test>", "550 5.7.1 Sender refused");
    c.expect_code("MAIL FROM:<old@example.net>", "250");
    c.expect("RCPT TO:<nobody@example.org>", "550 5.1.1 No such user");
    c.expect_code("RCPT TO:<sales@example.org>", "250");
    let moved = accepted_id(&c.data("Subject: moved\r\n\r\nhi\r\n"));
    let envelope = smtpd.spool.only_envelope(&moved);
    assert_eq!(
        envelope.get("sender"),
        Some("new@example.net"),
        "{}",
        envelope.text
    );
    assert_eq!(
        envelope.get("rcpt"),
        Some("alice@example.org"),
        "{}",
        envelope.text
    );
    assert!(!smtpd.spool.message(&moved).contains("X-Spam"));

    // junk: the header comes first.
    c.expect_code("MAIL FROM:<bulk-mail@example.net>", "250");
    c.expect_code("RCPT TO:<alice@example.org>", "250");
    let bulk = accepted_id(&c.data("Subject: offer\r\n\r\nbuy\r\n"));
    let message = smtpd.spool.message(&bulk);
    assert!(message.starts_with("X-Spam: Yes\r\n"), "{message}");

    // commit: refused, nothing more is queued.
    let queued = smtpd.spool.committed().len();
    c.expect_code("MAIL FROM:<late@example.net>", "250");
    c.expect_code("RCPT TO:<alice@example.org>", "250");
    assert_eq!(
        c.data("Subject: late\r\n\r\nlate\r\n"),
        "451 4.7.1 Try again later\r\n"
    );
    assert_eq!(smtpd.spool.committed().len(), queued);

    // A reply that refuses nothing becomes 421 and ends the session.
    c.expect_code("MAIL FROM:<a@example.net>", "250");
    c.expect("RCPT TO:<weird@example.org>", "421 Internal server error");
    assert!(c.is_closed());

    // data.
    let mut c = client(&smtpd, OUTSIDER, "quiet.test");
    c.expect_code("MAIL FROM:<a@example.net>", "250");
    c.expect_code("RCPT TO:<alice@example.org>", "250");
    c.expect("DATA", "554 5.7.1 No DATA from you");
    c.expect_code("QUIT", "221");
}

#[test]
fn auth_conditions() {
    let dir = Scratch::new("filters-builtin", "auth");
    let (crt, key) = self_signed(&dir, "mx.test");
    let creds = dir.write(
        "creds",
        &format!(
            "alice {}\nbob {}\n",
            smtpctl_encrypt("alice-pw"),
            smtpctl_encrypt("bob-pw")
        ),
    );
    let filters = format!(
        "pki mx.test cert \"{}\"\npki mx.test key \"{}\"\n\
         table creds file:{}\n\
         filter anonymous phase mail-from match !auth reject \"530 5.7.0 Authentication required\"\n\
         filter staff phase rcpt-to match auth {{ alice }} bypass\n\
         filter closed phase rcpt-to match rcpt-to {{ \"staff@example.org\" }} reject \"550 5.7.1 Staff only\"\n\
         filter bobs phase data match auth regex {{ \"^bob\" }} junk\n\
         filter checks chain {{ anonymous, staff, closed, bobs }}\n",
        crt.display(),
        key.display(),
        creds.display()
    );
    let smtpd = start(&dir, &filters, "tls pki mx.test auth-optional <creds>");
    let send = |user: Option<(&str, &str)>, to: &str| {
        let mut args = vec![
            "--tls",
            "--helo",
            "client.test",
            "--from",
            "sender@example.net",
            "--to",
            to,
        ];
        if let Some((user, password)) = user {
            args.extend([
                "--auth",
                "PLAIN",
                "--auth-user",
                user,
                "--auth-password",
                password,
            ]);
        }
        swaks(smtpd.port, &args)
    };
    // Not authenticated: refused at MAIL FROM.
    let (out, code) = send(None, "alice@example.org");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("530 5.7.0 Authentication required"), "{out}");
    // alice skips the rest of the rcpt-to chain.
    let (out, code) = send(Some(("alice", "alice-pw")), "staff@example.org");
    assert_eq!(code, Some(0), "{out}");
    let alice = swaks_accepted(&out);
    assert!(!smtpd.spool.message(&alice).contains("X-Spam"));
    // bob does not, and his messages are junk.
    let (out, code) = send(Some(("bob", "bob-pw")), "staff@example.org");
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("550 5.7.1 Staff only"), "{out}");
    let (out, code) = send(Some(("bob", "bob-pw")), "alice@example.org");
    assert_eq!(code, Some(0), "{out}");
    let bob = swaks_accepted(&out);
    let message = smtpd.spool.message(&bob);
    assert!(message.starts_with("X-Spam: Yes\r\n"), "{message}");
}
