//! Table-driven tests of `%{...}` expansion, hostile values included.

use super::*;

struct Fixture {
    sender: Address,
    rcpt: Address,
    dest: Address,
    username: String,
    directory: String,
    mda: Option<String>,
}

impl Fixture {
    /// delivery.md's example: null sender, `User+Tag@Example.org`.
    fn example() -> Self {
        Self {
            sender: Address::null(),
            rcpt: Address::new("User+Tag", "Example.org"),
            dest: Address::new("user", "example.org"),
            username: "user".to_owned(),
            directory: "/home/user".to_owned(),
            mda: None,
        }
    }

    fn expand(&self, format: &str) -> Result<String, FormatError> {
        let ctx = FormatContext {
            sender: &self.sender,
            rcpt: &self.rcpt,
            dest: &self.dest,
            username: &self.username,
            directory: &self.directory,
            mda: self.mda.as_deref(),
            sub_addr_delim: '+',
        };
        expand(format, &ctx)
    }
}

#[test]
fn reference_examples() {
    let f = Fixture::example();
    let cases: &[(&str, &str)] = &[
        ("%{rcpt:lowercase}", "user+tag@example.org"),
        ("%{rcpt:lowercase|strip}", "user@example.org"),
        ("%{rcpt.domain[-3:]}", "org"),
        ("%{rcpt.user[0]}", "U"),
        ("%{mbox.from}", "MAILER-DAEMON"),
        ("%{sender}", ""),
    ];
    for (format, expected) in cases {
        assert_eq!(f.expand(format).as_deref(), Ok(*expected), "{format}");
    }
}

#[test]
fn every_token() {
    let mut f = Fixture::example();
    f.sender = Address::new("Bob+x", "Sender.example");
    f.mda = Some("/usr/bin/procmail -f x".to_owned());
    let cases: &[(&str, &str)] = &[
        ("%{sender}", "Bob+x@Sender.example"),
        ("%{sender.user}", "Bob+x"),
        ("%{sender.domain}", "Sender.example"),
        ("%{rcpt}", "User+Tag@Example.org"),
        ("%{rcpt.user}", "User+Tag"),
        ("%{rcpt.domain}", "Example.org"),
        ("%{dest}", "user@example.org"),
        ("%{dest.user}", "user"),
        ("%{dest.domain}", "example.org"),
        ("%{user.username}", "user"),
        ("%{user.directory}", "/home/user"),
        ("%{mbox.from}", "Bob+x@Sender.example"),
        ("%{mda}", "/usr/bin/procmail -f x"),
        ("%{RCPT.USER}", "User+Tag"),
        ("%{Mbox.From}", "Bob+x@Sender.example"),
    ];
    for (format, expected) in cases {
        assert_eq!(f.expand(format).as_deref(), Ok(*expected), "{format}");
    }
}

#[test]
fn modifiers_and_slices() {
    let f = Fixture::example();
    let cases: &[(&str, &str)] = &[
        ("%{rcpt:uppercase}", "USER+TAG@EXAMPLE.ORG"),
        ("%{rcpt:LOWERCASE}", "user+tag@example.org"),
        ("%{rcpt:strip}", "User@Example.org"),
        ("%{rcpt.user:strip}", "User"),
        ("%{dest:strip}", "user@example.org"),
        ("%{rcpt:strip|uppercase}", "USER@EXAMPLE.ORG"),
        ("%{rcpt:raw}", "User+Tag@Example.org"),
        ("%{rcpt.user[0:1]}", "Us"),
        ("%{rcpt.user[1:]}", "ser+Tag"),
        ("%{rcpt.user[:2]}", "Use"),
        ("%{rcpt.user[0:-1]}", "User+Ta"),
        ("%{rcpt.user[2:100]}", "er+Tag"),
        ("%{rcpt.user[-3:-1]}", "Ta"),
        ("%{rcpt.user[7]}", "g"),
        ("%{rcpt.user[+1:+2]}", "se"),
        ("%{sender[0:3]}", ""),
        ("%{user.username[0]}", "u"),
        ("%%{rcpt}", "%{rcpt}"),
        ("100%% %{dest.user}", "100% user"),
        ("50%", "50%"),
        ("a%b", "a%b"),
        ("~/Maildir", "/home/user/Maildir"),
        ("x~/Maildir", "x~/Maildir"),
        ("~user", "~user"),
        (
            "~/%{dest.domain}/%{dest.user}",
            "/home/user/example.org/user",
        ),
        ("%{rcpt.user[0]xyz}", "U"),
    ];
    for (format, expected) in cases {
        assert_eq!(f.expand(format).as_deref(), Ok(*expected), "{format}");
    }
}

#[test]
fn errors() {
    let f = Fixture::example();
    let token_too_long = format!("%{{{}}}", "a".repeat(128));
    let long_literal = "x".repeat(1024);
    let cases: Vec<(&str, FormatError)> = vec![
        ("%{rcpt", FormatError::Unterminated),
        ("abc %{", FormatError::Unterminated),
        (&token_too_long, FormatError::TokenTooLong),
        ("%{nope}", FormatError::UnknownToken("nope".to_owned())),
        ("%{}", FormatError::UnknownToken(String::new())),
        ("%{mda}", FormatError::UnknownToken("mda".to_owned())),
        (
            "%{rcpt:shout}",
            FormatError::UnknownModifier("shout".to_owned()),
        ),
        (
            "%{rcpt:lowercase|}",
            FormatError::UnknownModifier(String::new()),
        ),
        // 7.8 does not skip the colon after a slice.
        (
            "%{rcpt[0:3]:lowercase}",
            FormatError::UnknownModifier(":lowercase".to_owned()),
        ),
        ("%{rcpt[]}", FormatError::Slice("rcpt[]".to_owned())),
        ("%{rcpt]0[}", FormatError::Slice("rcpt]0[".to_owned())),
        ("%{rcpt[a]}", FormatError::Slice("rcpt[a]".to_owned())),
        ("%{rcpt[1:b]}", FormatError::Slice("rcpt[1:b]".to_owned())),
        ("%{rcpt[2000]}", FormatError::Slice("rcpt[2000]".to_owned())),
        ("%{rcpt[100]}", FormatError::Slice("rcpt[100]".to_owned())),
        ("%{rcpt[3:1]}", FormatError::Slice("rcpt[3:1]".to_owned())),
        (
            "%{rcpt[-100:]}",
            FormatError::Slice("rcpt[-100:]".to_owned()),
        ),
        // A single negative index ends before it begins, as in 7.8.
        ("%{rcpt[-1]}", FormatError::Slice("rcpt[-1]".to_owned())),
        (
            "%{rcpt:lowercase[0]}",
            FormatError::UnknownToken("rcpt:lowercase".to_owned()),
        ),
        (&long_literal, FormatError::TooLong),
    ];
    for (format, expected) in cases {
        assert_eq!(f.expand(format), Err(expected), "{format}");
    }
}

/// Hostile values: what OpenSMTPD replaces is replaced, and what it leaves
/// for the shell to interpret is refused.
#[test]
fn hostile_values() {
    let cases: &[(&str, Result<&str, char>)] = &[
        ("a$(touch x)b", Err('(')),
        ("a`id`b", Ok("a:id:b")),
        ("a$HOME", Ok("a:HOME")),
        ("x|sh", Ok("x:sh")),
        ("x{y}", Ok("x:y:")),
        ("a;reboot", Err(';')),
        ("a\nb", Err('\n')),
        ("a\rb", Err('\r')),
        ("a\"b", Err('"')),
        ("a\\b", Err('\\')),
        ("a b", Err(' ')),
        ("a\tb", Err('\t')),
        ("a<b", Err('<')),
        ("a>b", Err('>')),
        ("a\0b", Err('\0')),
        ("a/b=c-d_e.f^g", Ok("a/b=c-d_e.f^g")),
    ];
    for (user, expected) in cases {
        let mut f = Fixture::example();
        f.sender = Address::new(*user, "evil.example");
        let got = f.expand("/usr/bin/deliver %{sender.user}");
        match expected {
            Ok(text) => assert_eq!(got, Ok(format!("/usr/bin/deliver {text}")), "{user:?}"),
            Err(byte) => assert_eq!(
                got,
                Err(FormatError::Unsafe {
                    token: "sender.user".to_owned(),
                    byte: *byte
                }),
                "{user:?}"
            ),
        }
    }
}

#[test]
fn sanitising_is_complete_and_raw_disables_it() {
    let mut f = Fixture::example();
    f.rcpt = Address::new("!#$%&'*?`{|}~", "example.org");
    assert_eq!(f.expand("%{rcpt.user}").as_deref(), Ok(":::::::::::::"));
    assert_eq!(f.expand("%{rcpt.user:raw}").as_deref(), Ok("!#$%&'*?`{|}~"));
    // A hostile value read raw is the configuration's choice.
    f.rcpt = Address::new("a;b", "example.org");
    assert_eq!(f.expand("%{rcpt.user:raw}").as_deref(), Ok("a;b"));
    // Neither user.directory nor mda is sanitised.
    f.directory = "/home/we$ird dir".to_owned();
    f.mda = Some("procmail -a '$x' | tee".to_owned());
    assert_eq!(
        f.expand("%{user.directory}").as_deref(),
        Ok("/home/we$ird dir")
    );
    assert_eq!(
        f.expand("exec %{mda}").as_deref(),
        Ok("exec procmail -a '$x' | tee")
    );
}

#[test]
fn other_sub_address_delimiter() {
    let f = Fixture::example();
    let rcpt = Address::new("user-tag-more", "example.org");
    let ctx = FormatContext {
        sender: &f.sender,
        rcpt: &rcpt,
        dest: &f.dest,
        username: "user",
        directory: "/home/user",
        mda: None,
        sub_addr_delim: '-',
    };
    assert_eq!(
        expand("%{rcpt:strip}", &ctx).as_deref(),
        Ok("user@example.org")
    );
}
