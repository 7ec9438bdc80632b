//! The intake handler over `tokio::io::duplex`, with the real rules and
//! static tables, and the fs queue behind a layer that fails on demand:
//! a failing queue or table is a 4xx, the message is dropped, and nothing
//! is acknowledged.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::{Config, LoadOptions};
use crate::dns::Resolver;
use crate::queue::fs::FsQueue;
use crate::queue::{EvpId, QueueBackend};
use crate::smtp::conn::{self, ConnConfig};
use crate::table::unavailable::UnavailableTable;
use crate::table::{self, BuildOptions, Tables};

const CONFIG: &str = "\
smtp max-message-size 1M
listen on 127.0.0.1 port 2525
table bad { \"broken.test\" }
table users { \"b\" = \"1000:1000:/home/b\", \"c\" = \"1001:1001:/home/c\" }
action \"local\" maildir userbase <users>
match from any for domain \"example.org\" action \"local\"
match from src \"192.0.2.99\" for domain <bad> action \"local\"
match from any for domain \"refused.test\" reject
";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("smtpd-intake-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The fs queue, failing the next write or commit when told to.
struct Flaky {
    inner: FsQueue,
    fail_write: AtomicBool,
    fail_commit: AtomicBool,
}

#[async_trait]
impl QueueBackend for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }

    async fn message_create(&self) -> Result<MsgId, queue::Error> {
        self.inner.message_create().await
    }

    async fn message_write(&self, id: MsgId, offset: u64, data: &[u8]) -> Result<(), queue::Error> {
        if self.fail_write.swap(false, Ordering::SeqCst) {
            return Err(queue::Error::io(
                "write",
                "/spool",
                io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        self.inner.message_write(id, offset, data).await
    }

    async fn message_commit(&self, id: MsgId, size: u64) -> Result<(), queue::Error> {
        if self.fail_commit.swap(false, Ordering::SeqCst) {
            return Err(queue::Error::io(
                "fsync",
                "/spool",
                io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        self.inner.message_commit(id, size).await
    }

    async fn message_read(
        &self,
        id: MsgId,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, queue::Error> {
        self.inner.message_read(id, offset, length).await
    }

    async fn message_delete(&self, id: MsgId) -> Result<(), queue::Error> {
        self.inner.message_delete(id).await
    }

    async fn message_corrupt(&self, id: MsgId) -> Result<bool, queue::Error> {
        self.inner.message_corrupt(id).await
    }

    async fn envelope_create(&self, id: MsgId, data: &[u8]) -> Result<EvpId, queue::Error> {
        self.inner.envelope_create(id, data).await
    }

    async fn envelope_update(&self, id: EvpId, data: &[u8]) -> Result<bool, queue::Error> {
        self.inner.envelope_update(id, data).await
    }

    async fn envelope_load(&self, id: EvpId) -> Result<Option<Vec<u8>>, queue::Error> {
        self.inner.envelope_load(id).await
    }

    async fn envelope_delete(&self, id: EvpId) -> Result<(), queue::Error> {
        self.inner.envelope_delete(id).await
    }

    async fn envelope_walk(&self, after: EvpId) -> Result<Option<(EvpId, Vec<u8>)>, queue::Error> {
        self.inner.envelope_walk(after).await
    }
}

struct Fixture {
    _dir: TempDir,
    spool: PathBuf,
    queue: Arc<Flaky>,
    shared: Arc<Shared>,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        let dir = TempDir::new(name);
        let spool = dir.0.join("spool");
        let queue = Arc::new(Flaky {
            inner: FsQueue::open(&spool).unwrap(),
            fail_write: AtomicBool::new(false),
            fail_commit: AtomicBool::new(false),
        });
        let config = Config::parse_str("smtpd.conf", CONFIG, &LoadOptions::default())
            .unwrap()
            .config;
        let built = table::build(&config, &BuildOptions::default())
            .await
            .unwrap();
        let tables = Tables::new(
            built
                .iter()
                .map(|t| match t.name() {
                    "bad" => Arc::new(UnavailableTable("bad".to_owned())) as Arc<dyn table::Table>,
                    _ => Arc::clone(t),
                })
                .collect(),
        );
        let shared = Arc::new(Shared {
            config: Arc::new(config),
            filters: crate::filter::Filters::none(tables.clone()),
            tables,
            queue: Arc::clone(&queue) as Arc<dyn QueueBackend>,
            server_name: "mx.test".to_owned(),
            resolver: Resolver::offline(),
            // No scheduler runs here: the tests read the spool.
            scheduler: crate::scheduler::Handle::channel().0,
            files: Arc::new(crate::delivery::expand::SystemFiles),
        });
        Self {
            _dir: dir,
            spool,
            queue,
            shared,
        }
    }

    /// Runs one session fed `input` at once; returns everything answered.
    async fn session(&self, input: &str) -> String {
        self.session_from("192.0.2.1", input).await
    }

    /// [`Self::session`] from the client `peer`.
    async fn session_from(&self, peer: &str, input: &str) -> String {
        let context =
            Arc::new(ListenerContext::new(&self.shared, &self.shared.config.listeners[0]).unwrap());
        let (mut client, server) = tokio::io::duplex(4 << 20);
        let mut handler = IntakeHandler::new(
            Arc::clone(&self.shared),
            Arc::clone(&context),
            peer.parse::<std::net::IpAddr>().unwrap(),
            PeerName::unknown(),
        );
        let session = Session::new(context.session_config(), &format!("[{peer}]"));
        client.write_all(input.as_bytes()).await.unwrap();
        let outcome = conn::run(
            Box::new(server),
            session,
            &mut handler,
            ConnConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!(outcome, conn::Outcome::Closed);
        handler.abort_message().await;
        let mut output = String::new();
        client.read_to_string(&mut output).await.unwrap();
        output
    }

    /// The committed messages, with their envelopes.
    async fn committed(&self) -> Vec<(MsgId, usize)> {
        let mut found: Vec<(MsgId, usize)> = Vec::new();
        let mut after = EvpId(0);
        while let Some((evpid, _)) = self.queue.envelope_walk(after).await.unwrap() {
            match found.last_mut() {
                Some((msgid, n)) if *msgid == evpid.msgid() => *n += 1,
                _ => found.push((evpid.msgid(), 1)),
            }
            after = evpid;
        }
        found
    }

    /// Messages created and not committed (nothing should be left).
    fn incoming(&self) -> usize {
        std::fs::read_dir(self.spool.join("incoming"))
            .unwrap()
            .count()
    }
}

/// The replies' first lines, codes and texts.
fn reply_lines(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
        .collect()
}

#[tokio::test]
async fn a_failed_commit_is_452_and_the_next_message_goes_through() {
    let f = Fixture::new("commit").await;
    f.queue.fail_commit.store(true, Ordering::SeqCst);
    let transaction = "MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.org>\r\n\
                       RCPT TO:<c@example.org>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n";
    let output = f
        .session(&format!(
            "EHLO client.test\r\n{transaction}{transaction}QUIT\r\n"
        ))
        .await;
    let replies = reply_lines(&output);
    assert_eq!(
        replies[6], "452 4.3.1 Insufficient system storage",
        "{output}"
    );
    assert!(replies[11].starts_with("250 2.0.0 "), "{output}");
    assert_eq!(replies[12], "221 2.0.0 Bye");
    let committed = f.committed().await;
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].1, 2, "one envelope per recipient");
    assert!(replies[11].contains(&committed[0].0.to_string()));
    assert_eq!(f.incoming(), 0, "the failed message was dropped");
}

#[tokio::test]
async fn a_failed_write_is_451_at_the_end_of_data() {
    let f = Fixture::new("write").await;
    f.queue.fail_write.store(true, Ordering::SeqCst);
    let line = "y".repeat(998);
    let body: String = (0..200).map(|_| format!("{line}\r\n")).collect();
    let output = f
        .session(&format!(
            "EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.org>\r\n\
             DATA\r\n{body}.\r\nQUIT\r\n"
        ))
        .await;
    let replies = reply_lines(&output);
    assert_eq!(replies[5], "451 4.3.0 Temporary failure", "{output}");
    assert!(f.committed().await.is_empty());
    assert_eq!(f.incoming(), 0);
}

#[tokio::test]
async fn recipients_follow_the_rules_and_table_errors_are_temporary() {
    let f = Fixture::new("rules").await;
    let output = f
        .session(
            "HELO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@nowhere.test>\r\n\
             RCPT TO:<b@refused.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\nhello\r\n.\r\n\
             QUIT\r\n",
        )
        .await;
    let replies = reply_lines(&output);
    assert_eq!(replies[3], "550 5.1.1 Invalid recipient: <b@nowhere.test>");
    // A reject rule is refused as OpenSMTPD refuses it (delivery.md 1.4).
    assert_eq!(replies[4], "550 5.1.1 Invalid recipient: <b@refused.test>");
    assert!(replies[5].starts_with("250 "));
    assert!(replies[7].starts_with("250 2.0.0 "), "{output}");
    let output = f
        .session_from(
            "192.0.2.99",
            "HELO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.org>\r\n\
             RCPT TO:<b@broken.test>\r\nQUIT\r\n",
        )
        .await;
    let second = reply_lines(&output);
    assert!(second[3].starts_with("250 "), "an earlier rule matched");
    assert_eq!(second[4], "451 4.3.0 Temporary failure", "{output}");
    let committed = f.committed().await;
    assert_eq!(committed.len(), 1);
    let (msgid, _) = committed[0];
    let message = f.queue.message_read(msgid, 0, 4096).await.unwrap().unwrap();
    let text = String::from_utf8(message).unwrap();
    assert!(
        text.starts_with(&format!(
            "Received: from client.test (<unknown> [192.0.2.1])\r\n\tby mx.test (smtpd) with SMTP id {msgid}"
        )),
        "{text}"
    );
    assert!(text.contains("\r\n\tfor <b@example.org>;\r\n"), "{text}");
    assert!(text.ends_with("hello\r\n"), "{text}");
}

#[tokio::test]
async fn a_hundred_received_headers_are_a_loop_and_the_message_is_dropped() {
    let f = Fixture::new("loop").await;
    let transaction = |hops: usize| {
        let received: String = (0..hops)
            .map(|i| format!("Received: from hop{i}.test\r\n\tby mx{i}.test\r\n"))
            .collect();
        format!(
            "MAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n\
             {received}Subject: x\r\n\r\nbody\r\n.\r\n"
        )
    };
    let output = f
        .session(&format!(
            "EHLO client.test\r\n{}{}QUIT\r\n",
            transaction(100),
            transaction(99)
        ))
        .await;
    let replies = reply_lines(&output);
    assert_eq!(
        replies[5], "500 5.4.6 Routing loop detected: Loop detected",
        "{output}"
    );
    // The session goes on: the next message, one hop shorter, passes.
    assert!(replies[9].starts_with("250 2.0.0 "), "{output}");
    assert_eq!(replies[10], "221 2.0.0 Bye");
    let committed = f.committed().await;
    assert_eq!(committed.len(), 1);
    assert!(replies[9].contains(&committed[0].0.to_string()));
    assert_eq!(f.incoming(), 0, "the looping message was dropped");
}
