//! mbox delivery on temporary files: format, escaping, locking under
//! concurrent writers, refusal of unsafe mailboxes, truncation on failure.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::*;
use crate::delivery::test_dir::TempDir;

fn quick() -> MboxOptions {
    MboxOptions {
        dotlock: true,
        lock_timeout: Duration::from_millis(300),
    }
}

/// The messages of an mbox: the `From ` line and the lines after it,
/// without the separating blank line.
fn messages(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(from) = line.strip_prefix("From ") {
            out.push((from.to_owned(), Vec::new()));
        } else {
            out.last_mut()
                .expect("an mbox starts with a From line")
                .1
                .push(line.to_owned());
        }
    }
    for (_, lines) in &mut out {
        assert_eq!(
            lines.pop().as_deref(),
            Some(""),
            "a blank line ends each message"
        );
    }
    out
}

#[test]
fn appends_with_from_line_and_escaping() {
    let dir = TempDir::new();
    let path = dir.path().join("bob");
    let message = "Subject: x\n\nFrom here on\n>From stays\nFromage\n From indented\nlast";
    deliver(message.as_bytes(), &path, "alice@example.org", &quick()).unwrap();
    deliver(
        &b"Subject: y\n\nsecond\n"[..],
        &path,
        "MAILER-DAEMON",
        &quick(),
    )
    .unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let got = messages(&text);
    assert_eq!(got.len(), 2);
    assert!(got[0].0.starts_with("alice@example.org "), "{text}");
    assert!(got[1].0.starts_with("MAILER-DAEMON "), "{text}");
    assert_eq!(
        got[0].1,
        [
            "Subject: x",
            "",
            ">From here on",
            ">From stays",
            "Fromage",
            " From indented",
            "last"
        ]
    );
    assert_eq!(got[1].1, ["Subject: y", "", "second"]);
    assert!(text.ends_with("second\n\n"));
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!dir.path().join("bob.lock").exists());
}

#[test]
fn from_line_date_has_ctime_shape() {
    let date = ctime(UNIX_EPOCH + Duration::from_secs(741_398_948));
    let words: Vec<&str> = date.split_whitespace().collect();
    assert_eq!(words.len(), 5, "{date}");
    assert_eq!(date.len(), 24, "{date}");
    assert!(words[4] == "1993", "{date}");
    assert!(
        words[3].len() == 8 && words[3].as_bytes()[2] == b':',
        "{date}"
    );
}

#[test]
fn concurrent_writers_never_interleave() {
    const WRITERS: usize = 8;
    const EACH: usize = 10;
    // Several buffers long, so one message takes several write(2) calls.
    const LINES: usize = 800;
    let dir = TempDir::new();
    let path = Arc::new(dir.path().join("shared"));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || {
                for n in 0..EACH {
                    let body: String = (0..LINES)
                        .map(|l| format!("From {w}-{n} line {l}\n"))
                        .collect();
                    let message = format!("Message-Id: {w}-{n}\n\n{body}");
                    let options = MboxOptions {
                        dotlock: w % 2 == 0,
                        lock_timeout: Duration::from_secs(60),
                    };
                    deliver(message.as_bytes(), &path, "s@example.org", &options).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let text = fs::read_to_string(&*path).unwrap();
    let got = messages(&text);
    assert_eq!(got.len(), WRITERS * EACH);
    let mut ids: Vec<String> = got
        .iter()
        .map(|(_, lines)| {
            let id = lines[0].strip_prefix("Message-Id: ").unwrap().to_owned();
            let expected: Vec<String> =
                (0..LINES).map(|l| format!(">From {id} line {l}")).collect();
            assert!(lines[2..] == expected[..], "message {id} damaged");
            id
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), WRITERS * EACH);
}

#[test]
fn failed_writes_are_truncated_away() {
    struct HalfThenFail(usize);
    impl Read for HalfThenFail {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("peer went away"));
            }
            let n = buf.len().min(self.0).min(1000);
            buf[..n].fill(b'a');
            self.0 -= n;
            Ok(n)
        }
    }
    let dir = TempDir::new();
    let path = dir.path().join("bob");
    deliver(&b"first\n"[..], &path, "a@b", &quick()).unwrap();
    let before = fs::read(&path).unwrap();
    let err = deliver(HalfThenFail(100_000), &path, "a@b", &quick()).unwrap_err();
    assert_eq!(err.exit_code(), 75);
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("bob.lock").exists());
}

#[test]
fn unsafe_mailboxes_are_refused() {
    let dir = TempDir::new();
    let target = dir.path().join("target");
    fs::write(&target, "").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = deliver(&b"x\n"[..], &link, "a@b", &quick()).unwrap_err();
    assert!(matches!(err, MboxError::Unsafe { .. }), "{err}");

    let hard = dir.path().join("hard");
    fs::hard_link(&target, &hard).unwrap();
    let err = deliver(&b"x\n"[..], &hard, "a@b", &quick()).unwrap_err();
    assert!(matches!(err, MboxError::Unsafe { .. }), "{err}");

    let sub = dir.path().join("dir");
    fs::create_dir(&sub).unwrap();
    let err = deliver(&b"x\n"[..], &sub, "a@b", &quick()).unwrap_err();
    assert!(
        matches!(err, MboxError::Io { .. } | MboxError::Unsafe { .. }),
        "{err}"
    );
    assert_eq!(fs::read(&target).unwrap(), b"");
}

#[test]
fn dotlocks() {
    let dir = TempDir::new();
    let path = dir.path().join("bob");
    let lock = dir.path().join("bob.lock");

    // A lock someone holds: the delivery gives up, temporarily.
    fs::write(&lock, "").unwrap();
    let err = deliver(&b"x\n"[..], &path, "a@b", &quick()).unwrap_err();
    assert!(matches!(err, MboxError::Locked(_)), "{err}");
    assert!(lock.exists(), "someone else's lock stays");
    assert!(!path.exists() || fs::read(&path).unwrap().is_empty());

    // A lock left behind long ago is broken.
    let old = SystemTime::now() - Duration::from_secs(600);
    File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    deliver(&b"x\n"[..], &path, "a@b", &quick()).unwrap();
    assert!(!lock.exists());
    assert_eq!(messages(&fs::read_to_string(&path).unwrap()).len(), 1);

    // Without dotlocking, a held dotlock does not matter.
    fs::write(&lock, "").unwrap();
    let options = MboxOptions {
        dotlock: false,
        ..quick()
    };
    deliver(&b"y\n"[..], &path, "a@b", &options).unwrap();
    assert_eq!(messages(&fs::read_to_string(&path).unwrap()).len(), 2);
}
