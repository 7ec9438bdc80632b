//! The server over a real socket in a temporary directory, with tables
//! made for the test, and the client of `client.rs` as the peer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::control::client::{Client, ClientError};
use crate::control::protocol::{Agent, EvpId, MsgId, ProcCounters, Service, Target};
use crate::table::{Error, ProcStats, Table};

/// A mapping table whose content the test can change, counting updates.
struct Memory {
    name: &'static str,
    entries: Mutex<Vec<(String, String)>>,
    pending: Mutex<Option<Vec<(String, String)>>>,
    updates: AtomicU64,
    program: bool,
}

impl Memory {
    fn new(name: &'static str, entries: &[(&str, &str)], program: bool) -> Arc<Self> {
        Arc::new(Self {
            name,
            entries: Mutex::new(pairs(entries)),
            pending: Mutex::new(None),
            updates: AtomicU64::new(0),
            program,
        })
    }
}

fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[async_trait]
impl Table for Memory {
    fn name(&self) -> &str {
        self.name
    }

    fn backend(&self) -> String {
        if self.program {
            format!("proc-exec \"table-{}\"", self.name)
        } else {
            "memory".to_owned()
        }
    }

    async fn check(&self, _: Service, key: &str) -> Result<bool, Error> {
        Ok(self.entries.lock().unwrap().iter().any(|(k, _)| k == key))
    }

    async fn lookup(&self, service: Service, key: &str) -> Result<Option<String>, Error> {
        if service == Service::Auth {
            return Err(Error::Unsupported {
                table: self.name.to_owned(),
                service,
            });
        }
        let entries = self.entries.lock().unwrap();
        Ok(entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone()))
    }

    async fn update(&self) -> Result<(), Error> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        match self.pending.lock().unwrap().take() {
            Some(next) => {
                *self.entries.lock().unwrap() = next;
                Ok(())
            }
            None if self.program => Ok(()),
            None => Err(Error::Backend {
                table: self.name.to_owned(),
                message: Some("nothing to reload".to_owned()),
            }),
        }
    }

    fn proc_stats(&self) -> Option<ProcStats> {
        self.program.then(|| ProcStats {
            pid: Some(4242),
            requests: self.updates.load(Ordering::SeqCst),
            ..ProcStats::default()
        })
    }
}

/// A running server on a socket in a fresh directory, with an fs queue
/// beside it and no scheduler running.
struct Harness {
    dir: PathBuf,
    path: PathBuf,
    queue: Arc<dyn QueueBackend>,
    gate: Gate,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(name: &str, tables: Vec<Arc<dyn Table>>, daemon_uid: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("smtpd-control-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("smtpd.sock");
        let socket = ControlSocket::bind(&path).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let queue: Arc<dyn QueueBackend> =
            Arc::new(crate::queue::fs::FsQueue::open(dir.join("spool")).unwrap());
        let gate = Gate::new();
        let context = Context {
            tables: Tables::new(tables),
            daemon_uid,
            local: None,
            // Its driver never runs: the inbox is dropped.
            scheduler: scheduler::Handle::channel().0,
            queue: Arc::clone(&queue),
            gate: gate.clone(),
            started: SystemTime::now(),
            mta: None,
            filters: None,
        };
        let server = tokio::spawn(run(socket, context, async {
            let _ = stopped.await;
        }));
        Self {
            dir,
            path,
            queue,
            gate,
            stop: Some(stop),
            server,
        }
    }

    /// Sends requests on one connection, from a blocking thread.
    async fn ask(&self, requests: Vec<Request>) -> Result<Vec<Vec<Answer>>, ClientError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut client = Client::connect(&path)?;
            requests.iter().map(|r| client.request(r)).collect()
        })
        .await
        .unwrap()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.server).await.unwrap();
        assert!(!self.path.exists(), "the socket file is removed");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn our_uid() -> u32 {
    crate::control::effective_uid()
}

#[tokio::test]
async fn show_update_check_and_lookup_through_the_socket() {
    let aliases = Memory::new("aliases", &[("root", "admin")], false);
    let users = Memory::new("users", &[], true);
    let harness = Harness::start("all", vec![aliases.clone(), users.clone()], our_uid());
    let mode = std::fs::metadata(&harness.path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);

    *aliases.pending.lock().unwrap() = Some(pairs(&[("root", "ops"), ("abuse", "ops")]));
    let lookup = |key: &str| Request::LookupTable {
        name: "aliases".into(),
        service: Service::Alias,
        key: key.into(),
    };
    let answers = harness
        .ask(vec![
            lookup("root"),
            Request::UpdateTable {
                name: "aliases".into(),
            },
            lookup("root"),
            Request::CheckTable {
                name: "aliases".into(),
                service: Service::Alias,
                key: "abuse".into(),
            },
            lookup("nobody"),
            Request::UpdateTable {
                name: "users".into(),
            },
            Request::ShowTables,
        ])
        .await
        .unwrap();
    let value = |v: &str| Answer::Lookup {
        value: Some(v.into()),
    };
    assert_eq!(answers[0], [value("admin"), Answer::Succeeded]);
    assert_eq!(answers[1], [Answer::Succeeded]);
    assert_eq!(answers[2], [value("ops"), Answer::Succeeded]);
    assert_eq!(
        answers[3],
        [Answer::Check { found: true }, Answer::Succeeded]
    );
    assert_eq!(
        answers[4],
        [Answer::Lookup { value: None }, Answer::Succeeded]
    );
    assert_eq!(answers[5], [Answer::Succeeded]);
    assert_eq!(
        answers[6],
        [
            Answer::Table(TableStatus {
                name: "aliases".into(),
                backend: "memory".into(),
                proc: None,
            }),
            Answer::Table(TableStatus {
                name: "users".into(),
                backend: "proc-exec \"table-users\"".into(),
                proc: Some(ProcCounters {
                    pid: Some(4242),
                    requests: 1,
                    ..ProcCounters::default()
                }),
            }),
            Answer::Succeeded,
        ]
    );
    harness.stop().await;
}

#[tokio::test]
async fn failures_are_final_answers_with_a_reason() {
    let aliases = Memory::new("aliases", &[], false);
    let harness = Harness::start("failures", vec![aliases], our_uid());
    let answers = harness
        .ask(vec![
            Request::UpdateTable {
                name: "missing".into(),
            },
            Request::UpdateTable {
                name: "aliases".into(),
            },
            Request::LookupTable {
                name: "aliases".into(),
                service: Service::Auth,
                key: "k".into(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        answers[0],
        [Answer::Failed {
            reason: "no table named \"missing\"".into()
        }]
    );
    assert_eq!(
        answers[1],
        [Answer::Failed {
            reason: "table aliases: backend error: nothing to reload".into()
        }]
    );
    assert_eq!(
        answers[2],
        [Answer::Failed {
            reason: "table aliases: auth not supported by this table".into()
        }]
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_bad_line_gets_a_failure_and_the_connection_goes_on() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let harness = Harness::start("badline", vec![], our_uid());
    let stream = UnixStream::connect(&harness.path).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut answers = BufReader::new(read).lines();
    write
        .write_all(b"{\"command\":\"reboot\"}\n")
        .await
        .unwrap();
    let line = answers.next_line().await.unwrap().unwrap();
    assert!(
        line.starts_with(
            "{\"answer\":\"failed\",\"reason\":\"invalid control line: unknown variant `reboot`"
        ),
        "{line}"
    );
    write
        .write_all(b"{\"command\":\"show-tables\"}\n")
        .await
        .unwrap();
    let line = answers.next_line().await.unwrap().unwrap();
    assert_eq!(line, "{\"answer\":\"succeeded\"}");
    drop(write);
    assert_eq!(answers.next_line().await.unwrap(), None);
    harness.stop().await;
}

#[test]
fn privileged_requests_need_root_or_the_daemons_user() {
    assert!(is_privileged(Some(0), 1000));
    assert!(is_privileged(Some(1000), 1000));
    assert!(!is_privileged(Some(1001), 1000));
    assert!(!is_privileged(None, 1000));
}

#[tokio::test]
async fn another_users_peer_is_denied_privileged_requests_but_root_never_is() {
    // The daemon's uid is set to another user's: this test's client is
    // then "another user", unless it runs as root, which is always let in.
    // (tests/control.rs runs smtpctl as nobody when the tests run as root.)
    let aliases = Memory::new("aliases", &[], false);
    let harness = Harness::start("denied", vec![aliases.clone()], our_uid() + 1);
    let answers = harness
        .ask(vec![
            Request::UpdateTable {
                name: "aliases".into(),
            },
            Request::ShowTables,
        ])
        .await
        .unwrap();
    if our_uid() == 0 {
        assert!(
            matches!(answers[0][..], [Answer::Failed { .. }]),
            "{answers:?}"
        );
        assert_eq!(aliases.updates.load(Ordering::SeqCst), 1);
    } else {
        assert_eq!(answers[0], [Answer::Denied]);
        assert_eq!(aliases.updates.load(Ordering::SeqCst), 0);
    }
    assert_eq!(answers[1].len(), 2, "show tables is for everyone");
    harness.stop().await;
}

#[tokio::test]
async fn a_live_socket_is_not_taken_over_and_a_stale_one_is_replaced() {
    let harness = Harness::start("inuse", vec![], our_uid());
    match ControlSocket::bind(&harness.path) {
        Err(BindError::InUse(path)) => assert_eq!(path, harness.path),
        other => panic!("expected InUse, got {other:?}"),
    }
    harness.stop().await;

    let dir = std::env::temp_dir().join(format!("smtpd-control-stale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A socket file nobody listens on, as a killed daemon leaves it.
    let stale = dir.join("smtpd.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let socket = ControlSocket::bind(&stale).unwrap();
    assert_eq!(socket.path(), stale);
    drop(socket);
    assert!(!stale.exists());

    std::fs::write(&stale, "not a socket").unwrap();
    assert!(matches!(
        ControlSocket::bind(&stale),
        Err(BindError::NotASocket(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_session_is_refused_without_a_socket_listener() {
    let harness = Harness::start("nosession", Vec::new(), our_uid());
    let path = harness.path.clone();
    let refused = tokio::task::spawn_blocking(move || {
        let client = Client::connect(&path).unwrap();
        enqueue::open_session(client)
    })
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "server disallowed submission request: local submissions are not accepted"
    );
    harness.stop().await;
}

/// Commits a message holding `data` with one envelope of `envelope`.
async fn commit(queue: &dyn QueueBackend, data: &[u8], envelope: &[u8]) -> EvpId {
    let msgid = queue.message_create().await.unwrap();
    queue.message_write(msgid, 0, data).await.unwrap();
    let evpid = queue.envelope_create(msgid, envelope).await.unwrap();
    queue
        .message_commit(msgid, data.len() as u64)
        .await
        .unwrap();
    evpid
}

/// The bytes of `Data` answers followed by `Succeeded`.
fn data_of(answers: &[Answer]) -> Vec<u8> {
    let (last, data) = answers.split_last().unwrap();
    assert_eq!(*last, Answer::Succeeded);
    data.iter()
        .flat_map(|a| match a {
            Answer::Data { text } => protocol::from_text(text).unwrap(),
            other => panic!("not data: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn envelopes_and_messages_are_shown_as_stored_whatever_their_bytes() {
    let harness = Harness::start("show", vec![], our_uid());
    let envelope = b"version: 3\ndispatcher: local\n".to_vec();
    // Past one data line, with 8-bit bytes, control characters and CRLF.
    let mut message = b"Subject: caf\xc3\xa9\r\n\r\n".to_vec();
    for i in 0..3000u32 {
        message.extend_from_slice(format!("line {i}").as_bytes());
        message.extend_from_slice(b"\x01\x7f\xff\r\n");
    }
    let evpid = commit(harness.queue.as_ref(), &message, &envelope).await;
    let missing = EvpId::new(evpid.msgid(), 1);
    let answers = harness
        .ask(vec![
            Request::ShowEnvelope { evpid },
            Request::ShowMessage {
                msgid: evpid.msgid(),
            },
            Request::ShowEnvelope { evpid: missing },
            Request::ShowMessage {
                msgid: MsgId(0x0bad_cafe),
            },
        ])
        .await
        .unwrap();
    assert_eq!(data_of(&answers[0]), envelope);
    assert!(
        answers[1].len() > 3,
        "several data lines: {}",
        answers[1].len()
    );
    assert_eq!(data_of(&answers[1]), message);
    assert_eq!(
        answers[2],
        [Answer::Failed {
            reason: format!("no envelope {missing} in the queue")
        }]
    );
    assert_eq!(
        answers[3],
        [Answer::Failed {
            reason: "no message 0badcafe in the queue".into()
        }]
    );
    harness.stop().await;
}

#[tokio::test]
async fn pausing_smtp_twice_fails_and_local_submissions_wait_for_resume() {
    let harness = Harness::start("pausesmtp", vec![], our_uid());
    let smtp = Agent::Smtp;
    let answers = harness
        .ask(vec![
            Request::Pause { agent: smtp },
            Request::Pause { agent: smtp },
            Request::SmtpSession,
        ])
        .await
        .unwrap();
    let failed = |reason: &str| {
        vec![Answer::Failed {
            reason: reason.into(),
        }]
    };
    assert_eq!(answers[0], [Answer::Succeeded]);
    assert_eq!(answers[1], failed(""), "already paused");
    assert_eq!(answers[2], failed("smtp is paused"));
    assert!(harness.gate.is_paused());
    let answers = harness
        .ask(vec![
            Request::Resume { agent: smtp },
            Request::Resume { agent: smtp },
        ])
        .await
        .unwrap();
    assert_eq!(answers[0], [Answer::Succeeded]);
    assert_eq!(answers[1], failed(""), "not paused");
    assert!(!harness.gate.is_paused());
    harness.stop().await;
}

#[tokio::test]
async fn scheduler_commands_fail_while_the_scheduler_is_not_running() {
    let harness = Harness::start("nosched", vec![], our_uid());
    let requests = vec![
        Request::ShowQueue {
            target: Target::All,
        },
        Request::Schedule {
            target: Target::All,
        },
        Request::ShowStats,
        Request::ShowStatus,
        Request::Pause { agent: Agent::Mda },
        Request::Digest,
    ];
    let answers = harness.ask(requests.clone()).await.unwrap();
    for (request, answer) in requests.iter().zip(answers) {
        assert_eq!(
            answer,
            [Answer::Failed {
                reason: "the scheduler is not running".into()
            }],
            "{request:?}"
        );
    }
    harness.stop().await;
}

#[tokio::test]
async fn another_users_peer_is_denied_every_queue_command() {
    // As in the test above: only meaningful when not run by root.
    let harness = Harness::start("qdenied", vec![], our_uid() + 1);
    let requests = vec![
        Request::ShowQueue {
            target: Target::All,
        },
        Request::ShowMessage { msgid: MsgId(1) },
        Request::Pause { agent: Agent::Smtp },
        Request::Log { verbose: true },
        Request::Digest,
    ];
    let answers = harness.ask(requests).await.unwrap();
    if our_uid() != 0 {
        for answer in answers {
            assert_eq!(answer, [Answer::Denied]);
        }
        assert!(!harness.gate.is_paused());
    } else {
        assert_eq!(answers[2], [Answer::Succeeded], "root is let in");
    }
    harness.stop().await;
}
