//! A delivery cut by the daemon's death is not made in part: the daemon
//! is killed with SIGKILL while a delivery command is running on a large
//! message. The command's input is the whole message, staged in a file
//! before it starts (`delivery::mda`), so the daemon's death cannot give
//! it a truncated message followed by an end of input: it delivers the
//! whole message or nothing, with or without privilege separation. The
//! daemon started again delivers the message whole (again, when the first
//! command finished after the daemon died: at least once, never in part).
//!
//! The command (`touch STARTED; sleep 2; cat > TMP && mv TMP OUT`) is
//! atomic, as a maildir delivery is: OUT appears only once it read its
//! whole input.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::load::pids_with;
use common::mail::{python, Smtpd};
use common::{Scratch, DEADLINE};

/// Lines of the message: about 2 MB, far more than a pipe holds.
const LINES: usize = 25_000;

/// A daemon delivering example.org with the slow, atomic command.
fn start(dir: &Scratch, home: &Path) -> Smtpd {
    let vusers = dir.write("vusers", "@example.org vmail\n");
    let users = dir.write("users", &format!("vmail 65534:65534:{}\n", home.display()));
    let mda = format!(
        "touch {h}/started; sleep 2; cat > {h}/tmp && mv {h}/tmp {h}/out",
        h = home.display()
    );
    Smtpd::start(dir, |port| {
        format!(
            "smtp max-message-size 8M\n\
             table vusers file:{}\n\
             table users file:{}\n\
             listen on 127.0.0.1 port {port} hostname mx.test\n\
             action \"local\" mda \"{mda}\" virtual <vusers> userbase <users>\n\
             match from any for domain example.org action \"local\"\n",
            vusers.display(),
            users.display()
        )
    })
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < end, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The number of complete `line N` lines in `path`.
fn lines_in(path: &PathBuf) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("line ") && l.ends_with(" end"))
        .count()
}

#[test]
fn a_delivery_cut_by_the_daemons_death_is_not_made_in_part() {
    let dir = Scratch::new("privsep-cut", "kill");
    let home = dir.0.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (started, out) = (home.join("started"), home.join("out"));

    let mut smtpd = start(&dir, &home);
    let reply = python(&format!(
        "import smtplib\n\
         body = 'Subject: cut\\r\\n\\r\\n' + ''.join('line %06d of the message end\\r\\n' % n \
         for n in range({LINES}))\n\
         s = smtplib.SMTP('127.0.0.1', {port})\n\
         print(s.sendmail('sender@client.test', ['rcpt@example.org'], body))\n\
         s.quit()\n",
        port = smtpd.port
    ));
    assert_eq!(reply.trim(), "{}", "accepted");
    wait_until("the delivery command never started", || started.exists());
    smtpd.stop(libc::SIGKILL);
    // The command is gone: killed before its end of input, or done.
    let needle = home.display().to_string();
    wait_until("the delivery command outlives the daemon", || {
        pids_with("/bin/sh", &needle).is_empty()
    });
    // Whatever the command delivered is the whole message.
    if out.exists() {
        assert_eq!(lines_in(&out), LINES, "delivered in part");
        std::fs::remove_file(&out).unwrap();
    }

    // Started again: delivered whole.
    std::fs::remove_file(&started).unwrap();
    let _smtpd = start(&dir, &home);
    wait_until("never delivered after the restart", || out.exists());
    assert_eq!(lines_in(&out), LINES, "delivered whole");
}
