//! Table load: lookups and checks, all sent at once, over the registered
//! services. With a table fixture, three requests in four ask for one of
//! its keys and must get its value (or `found`), the fourth for a key it
//! does not hold and must get `not-found`; without one, random keys and any
//! legal answer.

use std::collections::HashMap;

use smtpd_conformance::wire::{parse_answer, Answer};
use smtpd_sdk::proto::table::{Op, Request, Service, TableResult};
use smtpd_sdk::proto::{Line, TableId, Timestamp};
use smtpd_sdk::tablefile::TableFile;

use super::super::handshake::TABLE_NAME;
use super::super::report::show;
use super::{Reaction, Rng, Workload};

/// What a request must get.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    Value(String),
    Found,
    NotFound,
    Any,
}

pub(super) struct TableLoad {
    lines: Vec<Vec<u8>>,
    planned: HashMap<TableId, (String, Want)>,
    requests: usize,
    with_fixture: bool,
}

impl TableLoad {
    pub(super) fn new(
        count: usize,
        services: &[Service],
        fixture: Option<&TableFile>,
        rng: &mut Rng,
    ) -> Self {
        let services = if services.is_empty() {
            &[Service::Alias][..]
        } else {
            services
        };
        let entries = fixture.map_or(&[][..], TableFile::entries);
        let base = rng.next() as u32;
        let mut load = Self {
            lines: Vec::with_capacity(count),
            planned: HashMap::with_capacity(count),
            requests: count,
            with_fixture: fixture.is_some(),
        };
        for i in 0..count {
            let service = services[i % services.len()];
            let lookup = i % 2 == 0;
            let known =
                (!entries.is_empty() && i % 4 != 3).then(|| &entries[(i / 2) % entries.len()]);
            let (key, want) = match known {
                Some(entry) if !lookup => (entry.key.clone(), Want::Found),
                // In a list a key's value is not specified.
                Some(entry) => match &entry.value {
                    Some(value) => (entry.key.clone(), Want::Value(value.clone())),
                    None => (entry.key.clone(), Want::Any),
                },
                None if fixture.is_some() => {
                    (format!("stress-{:016x}", rng.next()), Want::NotFound)
                }
                None => (format!("stress-{:016x}", rng.next()), Want::Any),
            };
            let id = TableId(base.wrapping_add(i as u32));
            let op = if lookup {
                Op::Lookup { service, key }
            } else {
                Op::Check { service, key }
            };
            let what = describe_op(&op);
            let request = Request {
                timestamp: Timestamp::now(),
                table: TABLE_NAME.to_owned(),
                id,
                op,
            };
            let mut line = request.to_line().unwrap_or_default();
            line.pop();
            load.lines.push(line);
            load.planned.insert(id, (what, want));
        }
        load
    }
}

fn describe_op(op: &Op) -> String {
    match op {
        Op::Lookup { service, key } => format!("lookup {service} {key:?}"),
        Op::Check { service, key } => format!("check {service} {key:?}"),
        Op::Fetch { service } => format!("fetch {service}"),
        Op::Update => "update".to_owned(),
    }
}

impl Workload for TableLoad {
    fn start(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.lines)
    }

    fn answered(&mut self, line: &[u8]) -> Reaction {
        let Ok(Answer::Table(response)) =
            parse_answer(smtpd_conformance::vectors::Family::Table, line)
        else {
            return Reaction::default();
        };
        let Some((what, want)) = self.planned.remove(&response.id) else {
            return Reaction::default();
        };
        let right = match (&want, &response.result) {
            (Want::Any, _) => true,
            (Want::Value(v), TableResult::Value(got)) => v == got,
            (Want::Found, TableResult::Found) | (Want::NotFound, TableResult::NotFound) => true,
            _ => false,
        };
        let problem = (!right).then(|| {
            let expected = match want {
                Want::Value(v) => format!("found|{}", show(v.as_bytes())),
                Want::Found => "found".to_owned(),
                Want::NotFound => "not-found".to_owned(),
                Want::Any => String::new(),
            };
            format!("{what}: expected {expected}, got {}", show(line))
        });
        Reaction {
            send: Vec::new(),
            problem,
        }
    }

    fn done(&self) -> bool {
        self.planned.is_empty()
    }

    fn requests(&self) -> usize {
        self.requests
    }

    fn describe(&self) -> String {
        if self.with_fixture {
            "lookups and checks of fixture keys and absent keys".to_owned()
        } else {
            "lookups and checks of random keys".to_owned()
        }
    }
}
