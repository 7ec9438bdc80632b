//! Queue load: message life cycles, five requests each (create, write,
//! commit, read, delete). Every creation is sent at once; each later step
//! is sent when the previous one is answered, so many messages are in
//! flight at every stage. The data read back must be the data written.

use std::collections::HashMap;

use smtpd_conformance::vectors::Family;
use smtpd_conformance::wire::{parse_answer, Answer};
use smtpd_sdk::proto::queue::{Op, QueueResult, Request};
use smtpd_sdk::proto::{Line, MsgId, QueueId, Timestamp};

use super::super::report::show;
use super::{Reaction, Rng, Workload};

/// Requests per message.
const STEPS: usize = 5;
/// The read length asked for (larger than any message here).
const READ_LENGTH: u64 = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Create,
    Write,
    Commit,
    Read,
    Delete,
    Finished,
}

struct Message {
    stage: Stage,
    msgid: MsgId,
    data: Vec<u8>,
}

pub(super) struct QueueLoad {
    messages: Vec<Message>,
    planned: HashMap<QueueId, usize>,
    next_id: u64,
    sent: usize,
    finished: usize,
}

impl QueueLoad {
    pub(super) fn new(count: usize, rng: &mut Rng) -> Self {
        let messages = (0..count.div_ceil(STEPS).max(1))
            .map(|i| Message {
                stage: Stage::Create,
                msgid: MsgId(0),
                data: format!("Subject: stress {i}\r\n\r\nmessage {i}\r\n").into_bytes(),
            })
            .collect();
        Self {
            messages,
            planned: HashMap::new(),
            next_id: rng.next() & 0xffff_ffff_0000_0000,
            sent: 0,
            finished: 0,
        }
    }

    fn request(&mut self, index: usize, op: Op) -> Vec<u8> {
        self.next_id += 1;
        let id = QueueId(self.next_id);
        self.planned.insert(id, index);
        self.sent += 1;
        let request = Request {
            timestamp: Timestamp::now(),
            id,
            op,
        };
        let mut line = request.to_line().unwrap_or_default();
        line.pop();
        line
    }

    fn next_step(&mut self, index: usize, result: &QueueResult) -> Result<Option<Op>, String> {
        let message = &mut self.messages[index];
        let msgid = message.msgid;
        let (next, op) = match (message.stage, result) {
            (Stage::Create, QueueResult::Created(id)) => {
                message.msgid = *id;
                let op = Op::MessageWrite {
                    msgid: *id,
                    offset: 0,
                    data: message.data.clone(),
                };
                (Stage::Write, Some(op))
            }
            (Stage::Write, QueueResult::Ok) => {
                let size = message.data.len() as u64;
                (Stage::Commit, Some(Op::MessageCommit { msgid, size }))
            }
            (Stage::Commit, QueueResult::Ok) => {
                let (offset, length) = (0, READ_LENGTH);
                (
                    Stage::Read,
                    Some(Op::MessageRead {
                        msgid,
                        offset,
                        length,
                    }),
                )
            }
            (Stage::Read, QueueResult::Data(data)) if *data == message.data => {
                (Stage::Delete, Some(Op::MessageDelete { msgid }))
            }
            (Stage::Delete, QueueResult::Ok) => (Stage::Finished, None),
            (stage, _) => {
                message.stage = Stage::Finished;
                self.finished += 1;
                return Err(format!("message {index} at its {stage:?} step"));
            }
        };
        message.stage = next;
        if next == Stage::Finished {
            self.finished += 1;
        }
        Ok(op)
    }
}

impl Workload for QueueLoad {
    fn start(&mut self) -> Vec<Vec<u8>> {
        (0..self.messages.len())
            .map(|i| self.request(i, Op::MessageCreate))
            .collect()
    }

    fn answered(&mut self, line: &[u8]) -> Reaction {
        let Ok(Answer::Queue(response)) = parse_answer(Family::Queue, line) else {
            return Reaction::default();
        };
        let Some(index) = self.planned.remove(&response.id) else {
            return Reaction::default();
        };
        match self.next_step(index, &response.result) {
            Ok(Some(op)) => Reaction {
                send: vec![self.request(index, op)],
                problem: None,
            },
            Ok(None) => Reaction::default(),
            Err(step) => Reaction {
                send: Vec::new(),
                problem: Some(format!("{step}: unexpected answer {}", show(line))),
            },
        }
    }

    fn done(&self) -> bool {
        self.finished == self.messages.len()
    }

    fn requests(&self) -> usize {
        self.sent
    }

    fn describe(&self) -> String {
        format!(
            "{} messages created, written, committed, read back and deleted",
            self.messages.len()
        )
    }
}
