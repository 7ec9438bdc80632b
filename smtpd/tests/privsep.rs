//! Privilege separation, end to end: started as root, the daemon binds
//! its sockets, then runs as the unprivileged user (`_smtpd`), with only
//! a small privileged helper left as root, which dies with it. Mail is
//! still accepted and delivered as the mailbox's owner.

// A test harness: running the built binaries is its whole point.
#![allow(clippy::disallowed_methods)]
// In this harness a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::mail::{free_port, Client};
use common::{is_root, smtpd_command, Process, Scratch, DEADLINE};

/// The real, effective, saved and filesystem uids of a process.
fn uids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect()
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(')')?.1;
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn user_uid(name: &str) -> u32 {
    let out = std::process::Command::new("id")
        .arg("-u")
        .arg(name)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn as_root_the_daemon_runs_unprivileged_and_delivers_through_its_helper() {
    let dir = Scratch::new("privsep", "root");
    let port = free_port();
    let out = dir.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = dir.write(
        "smtpd.conf",
        &format!(
            "listen on 127.0.0.1 port {port}\n\
             table users {{ bob = \"65534:65534:/\" }}\n\
             action \"local\" mda \"cat > {}/bob.txt\" userbase <users>\n\
             match from any for domain example.org action \"local\"\n",
            out.display()
        ),
    );
    let mut daemon = Process::spawn(smtpd_command(&dir, &config));
    daemon.wait_for(&format!("listening on 127.0.0.1:{port}"));
    let pid = daemon.child.id();
    if is_root() {
        let line = daemon.wait_for("running as uid");
        let smtpd = user_uid("_smtpd");
        assert!(line.contains(&format!("uid {smtpd} ")), "{line}");
        assert_eq!(uids(pid), vec![smtpd; 4], "no way back to root");
    } else {
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        assert_eq!(uids(pid), vec![me; 4]);
    }

    let mut c = Client::connect(port, Ipv4Addr::LOCALHOST);
    c.expect_code("EHLO client.test", "250");
    c.expect_code("MAIL FROM:<sender@client.test>", "250");
    c.expect_code("RCPT TO:<bob@example.org>", "250");
    c.data("Subject: hi\r\n\r\nhello\r\n");
    daemon.wait_for("result=Ok");
    let delivered = out.join("bob.txt");
    let text = std::fs::read_to_string(&delivered).unwrap();
    assert!(text.ends_with("hello\n"), "{text}");
    if !is_root() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&delivered).unwrap().uid(),
        65534,
        "written by the mailbox's owner"
    );

    // The helper is the daemon's child that stayed root.
    let helpers: Vec<u32> = children(pid)
        .into_iter()
        .filter(|&child| uids(child).first() == Some(&0))
        .collect();
    assert_eq!(helpers.len(), 1, "one privileged helper: {helpers:?}");
    daemon.stop(libc::SIGKILL);
    let end = Instant::now() + DEADLINE;
    while std::path::Path::new(&format!("/proc/{}", helpers[0])).exists() {
        let state =
            std::fs::read_to_string(format!("/proc/{}/stat", helpers[0])).unwrap_or_default();
        if state
            .rsplit_once(')')
            .is_some_and(|(_, s)| s.trim_start().starts_with('Z'))
        {
            break;
        }
        assert!(Instant::now() < end, "the helper outlived the daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
}
