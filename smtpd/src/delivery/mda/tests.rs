//! Delivery commands run as real processes through `/bin/sh`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::delivery::format::{self, FormatContext};
use crate::delivery::test_dir::TempDir;
use crate::rules::Address;

/// A non-root account to run as: `nobody` when the tests run as root,
/// else the current user.
fn account() -> Account {
    // SAFETY: these calls have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        Account {
            uid: 65534,
            gid: 65534,
        }
    } else {
        Account { uid, gid }
    }
}

/// A home directory the account may write to.
fn home() -> TempDir {
    let dir = TempDir::new();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn env(home: &Path) -> MdaEnvironment {
    MdaEnvironment {
        domain: "example.org".to_owned(),
        home: home.display().to_string(),
        original_recipient: "Bob+Lists@example.org".to_owned(),
        recipient: "bob@example.org".to_owned(),
        local: "Bob+Lists".to_owned(),
        user: "bob".to_owned(),
        sender: "alice@example.net".to_owned(),
        extension: "lists".to_owned(),
    }
}

fn mda(home: &Path, command: &str) -> MdaCommand {
    MdaCommand {
        command: command.to_owned(),
        env: env(home),
        account: Some(account()),
        directory: home.to_owned(),
        timeout: MDA_TIMEOUT,
    }
}

#[tokio::test]
async fn exact_environment_and_directory() {
    let home = home();
    let outcome = run(
        &mda(
            home.path(),
            "env > \"$HOME/env.txt\"; pwd > \"$HOME/pwd.txt\"; cat >/dev/null",
        ),
        &b"message\n"[..],
    )
    .await;
    assert_eq!(outcome, MdaOutcome::Delivered);
    let text = fs::read_to_string(home.path().join("env.txt")).unwrap();
    // What the shell itself adds is not ours to control.
    let mut got: Vec<&str> = text
        .lines()
        .filter(|l| {
            !["PWD=", "OLDPWD=", "SHLVL=", "_="]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    got.sort_unstable();
    let home_var = format!("HOME={}", home.path().display());
    let mut expected = vec![
        format!("PATH={DEFAULT_PATH}"),
        "DOMAIN=example.org".to_owned(),
        home_var,
        "ORIGINAL_RECIPIENT=Bob+Lists@example.org".to_owned(),
        "RECIPIENT=bob@example.org".to_owned(),
        "SHELL=/bin/sh".to_owned(),
        "LOCAL=Bob+Lists".to_owned(),
        "LOGNAME=bob".to_owned(),
        "USER=bob".to_owned(),
        "SENDER=alice@example.net".to_owned(),
        "EXTENSION=lists".to_owned(),
    ];
    expected.sort_unstable();
    assert_eq!(got, expected);
    let pwd = fs::read_to_string(home.path().join("pwd.txt")).unwrap();
    assert_eq!(pwd.trim_end(), home.path().display().to_string());

    let mut empty = mda(home.path(), "env > \"$HOME/env2.txt\"");
    empty.env.extension.clear();
    empty.directory = home.path().join("missing");
    assert_eq!(run(&empty, &b""[..]).await, MdaOutcome::Delivered);
    let text = fs::read_to_string(home.path().join("env2.txt")).unwrap();
    assert!(!text.contains("EXTENSION="), "{text}");
}

#[tokio::test]
async fn message_on_stdin() {
    let home = home();
    let message: String = (0..20_000).map(|n| format!("line {n}\n")).collect();
    let outcome = run(&mda(home.path(), "cat > \"$HOME/msg\""), message.as_bytes()).await;
    assert_eq!(outcome, MdaOutcome::Delivered);
    assert_eq!(
        fs::read_to_string(home.path().join("msg")).unwrap(),
        message
    );
}

#[tokio::test]
async fn exit_statuses() {
    let home = home();
    let temporary = |s: &str| MdaOutcome::Temporary(s.to_owned());
    let permanent = |s: &str| MdaOutcome::Permanent(s.to_owned());
    let cases: Vec<(&str, MdaOutcome)> = vec![
        ("cat >/dev/null", MdaOutcome::Delivered),
        ("cat >/dev/null; echo fine; exit 0", MdaOutcome::Delivered),
        (
            "cat >/dev/null; exit 75",
            temporary("mda exited with status 75"),
        ),
        (
            "cat >/dev/null; exit 71",
            temporary("mda exited with status 71"),
        ),
        (
            "cat >/dev/null; exit 1",
            permanent("mda exited with status 1"),
        ),
        (
            "cat >/dev/null; echo first; echo 'quota exceeded' >&2; exit 77",
            permanent("quota exceeded"),
        ),
        ("echo 'try later'; exit 75", temporary("try later")),
        ("kill -9 $$", temporary("mda terminated by signal 9")),
    ];
    for (command, expected) in cases {
        let outcome = run(&mda(home.path(), command), &b"x\n"[..]).await;
        assert_eq!(outcome, expected, "{command}");
    }
}

#[tokio::test]
async fn unread_input_is_premature() {
    let home = home();
    let message = vec![b'x'; 4 << 20];
    let outcome = run(&mda(home.path(), "exit 0"), &message[..]).await;
    assert_eq!(
        outcome,
        MdaOutcome::Temporary("mda exited prematurely".to_owned())
    );
}

#[tokio::test]
async fn a_message_that_cannot_be_read_whole_is_never_delivered_in_part() {
    let home = home();
    // The first chunk reads, then the queue fails.
    let chunks = futures::stream::iter([
        Ok(bytes::Bytes::from_static(b"Subject: cut\n\nfirst part\n")),
        Err(io::Error::other("queue backend q: the backend exited")),
    ]);
    let message = tokio_util::io::StreamReader::new(chunks);
    let command = "cat > \"$HOME/msg\"; touch \"$HOME/done\"";
    let outcome = run(&mda(home.path(), command), message).await;
    assert_eq!(
        outcome,
        MdaOutcome::Temporary(
            "message could not be read: queue backend q: the backend exited".to_owned()
        )
    );
    assert!(
        !home.path().join("done").exists(),
        "the command never saw an end of input"
    );
}

#[tokio::test]
async fn time_limit_kills_the_group() {
    let home = home();
    let mut slow = mda(
        home.path(),
        "cat >/dev/null; (sleep 30; touch \"$HOME/late\") & sleep 30",
    );
    slow.timeout = Duration::from_millis(300);
    let outcome = run(&slow, &b"x\n"[..]).await;
    assert_eq!(outcome, MdaOutcome::Temporary("mda timeout".to_owned()));
}

#[tokio::test]
async fn root_is_refused() {
    let home = home();
    let mut as_root = mda(home.path(), "touch \"$HOME/ran\"");
    as_root.account = Some(Account { uid: 0, gid: 0 });
    assert_eq!(
        run(&as_root, &b"x\n"[..]).await,
        MdaOutcome::Permanent("MDA not allowed to deliver to: bob".to_owned())
    );
    assert!(!home.path().join("ran").exists());
}

/// CVE-2020-7247 style values: after format expansion, nothing they hold
/// runs.
#[tokio::test]
async fn hostile_values_run_nothing() {
    let home = home();
    let marker = home.path().join("pwned");
    let m = marker.display();
    // (value, whether the sanitised value is still allowed to run)
    let hostile = [
        (format!("`touch${{IFS}}{m}`"), true),
        (format!("|touch${{IFS}}{m}"), true),
        (format!("x&&touch${{IFS}}{m}"), true),
        (format!("$(touch${{IFS}}{m})"), false),
        (format!(";touch${{IFS}}{m};"), false),
        (format!("x\ntouch {m}"), false),
        (format!("'\";touch${{IFS}}{m};\"'"), false),
    ];
    for (value, runs) in hostile {
        let sender = Address::new(value.clone(), "evil.example");
        let rcpt = Address::new("bob", "example.org");
        let ctx = FormatContext {
            sender: &sender,
            rcpt: &rcpt,
            dest: &rcpt,
            username: "bob",
            directory: "/home/bob",
            mda: None,
            sub_addr_delim: '+',
        };
        let expanded = format::expand("cat > /dev/null; echo %{sender} > \"$HOME/out\"", &ctx);
        assert_eq!(expanded.is_ok(), runs, "{value:?}");
        let Ok(command) = expanded else {
            continue;
        };
        let outcome = run(&mda(home.path(), &command), &b"x\n"[..]).await;
        assert_eq!(outcome, MdaOutcome::Delivered, "{value:?}");
        assert!(!marker.exists(), "{value:?} ran a command");
        let out = fs::read_to_string(home.path().join("out")).unwrap();
        assert!(out.starts_with(':') || out.starts_with("x:"), "{out:?}");
    }
}
