//! The daemon's answers to the queue, scheduler and status commands of
//! smtpctl: `show queue`, `show envelope`, `show message`, `show stats`,
//! `show status`, `schedule`, `remove`, `pause`/`resume envelope`,
//! `pause`/`resume mda|mta|smtp`, `discover`, `log verbose|brief` and the
//! counters `monitor` polls.
//!
//! Called by `server.rs` for privileged peers only. The scheduler's
//! commands go through its [`crate::scheduler::Handle`]; envelopes and
//! messages are read from the queue ([`crate::queue::QueueBackend`]),
//! whatever its backend, so `show envelope` prints the envelope as
//! stored and `show message` the message; SMTP's pause is intake's
//! [`crate::intake::Gate`]; the log filter is [`crate::log`]'s.

use std::io;
use std::time::SystemTime;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;

use super::envelopes::{self, SchedulerFlags};
use super::protocol::{self, Agent, Answer, PauseStatus, Request, RunState, Target};
use super::server::Context;
use super::stats;
use crate::queue::envelope::Envelope;
use crate::queue::{unix_now, EvpId, MsgId, MAX_READ_LENGTH};
use crate::scheduler::{self, Control, DeliveryType, Listed, Phase};

/// Bytes per [`Answer::Data`] line: escaped as JSON, even a chunk of
/// control characters stays under [`protocol::MAX_LINE`].
const DATA_CHUNK: usize = 8 * 1024;

/// The MTA's state as lines (`show hosts|relays|routes`).
fn show_mta(context: &Context, what: crate::mta::Listing) -> Result<Vec<Answer>, String> {
    let mta = context
        .mta
        .as_ref()
        .ok_or_else(|| "relaying is not running".to_owned())?;
    Ok(mta
        .show(what)
        .into_iter()
        .map(|text| Answer::Line { text })
        .collect())
}

/// Answers an administrative request (any other is refused).
pub(super) async fn answer(
    context: &Context,
    control_sessions: u64,
    request: Request,
) -> Vec<Answer> {
    let result = match request {
        Request::ShowQueue { target } => show_queue(context, target).await,
        Request::ShowEnvelope { evpid } => show_envelope(context, evpid).await,
        Request::ShowStats => show_stats(context, control_sessions).await,
        Request::ShowStatus => show_status(context).await,
        Request::ShowHosts => show_mta(context, crate::mta::Listing::Hosts),
        Request::ShowRelays => show_mta(context, crate::mta::Listing::Relays),
        Request::ShowRoutes => show_mta(context, crate::mta::Listing::Routes),
        Request::Digest => digest(context).await,
        Request::Schedule { target } => count(context, Control::Schedule(target.into())).await,
        Request::Remove { target } => count(context, Control::Remove(target.into())).await,
        Request::PauseEnvelope { target } => count(context, Control::Suspend(target.into())).await,
        Request::ResumeEnvelope { target } => count(context, Control::Resume(target.into())).await,
        Request::Discover { evpid } => count(context, Control::Discover(evpid)).await,
        Request::Pause { agent } => switch(context, agent, true).await,
        Request::Resume { agent } => switch(context, agent, false).await,
        Request::Log { verbose } => crate::log::set_verbose(verbose)
            .map(|()| Vec::new())
            .map_err(|e| e.to_string()),
        other => Err(format!("not an administrative request: {other:?}")),
    };
    match result {
        Ok(data) => data.into_iter().chain([Answer::Succeeded]).collect(),
        Err(reason) => vec![Answer::Failed { reason }],
    }
}

impl From<Target> for scheduler::Target {
    fn from(target: Target) -> Self {
        match target {
            Target::Envelope(evpid) => Self::Envelope(evpid),
            Target::Message(msgid) => Self::Message(msgid),
            Target::All => Self::All,
        }
    }
}

/// Runs a scheduler command; its answer, or why there is none.
async fn control(context: &Context, command: Control) -> Result<scheduler::Answer, String> {
    context
        .scheduler
        .control(command)
        .await
        .ok_or_else(|| "the scheduler is not running".to_owned())
}

fn unexpected(answer: &scheduler::Answer) -> String {
    format!("unexpected answer from the scheduler: {answer:?}")
}

async fn count(context: &Context, command: Control) -> Result<Vec<Answer>, String> {
    match control(context, command).await? {
        scheduler::Answer::Count(count) => Ok(vec![Answer::Count { count }]),
        other => Err(unexpected(&other)),
    }
}

async fn show_queue(context: &Context, target: Target) -> Result<Vec<Answer>, String> {
    let listed = match control(context, Control::Show).await? {
        scheduler::Answer::Envelopes(listed) => listed,
        other => return Err(unexpected(&other)),
    };
    let now = unix_now();
    let mut answers = Vec::new();
    for item in listed.iter().filter(|l| is_target(l.evpid, target)) {
        // Gone since it was listed, or unreadable: not listed, as
        // OpenSMTPD skips an envelope it cannot load.
        let Ok(Some(bytes)) = context.queue.envelope_load(item.evpid).await else {
            continue;
        };
        let Ok(envelope) = Envelope::parse(&bytes, Some(item.evpid)) else {
            continue;
        };
        let (runstate, flags) = runstate(item, &envelope, now);
        let entry = envelopes::entry(item.evpid, &envelope, runstate, flags);
        answers.push(Answer::Envelope(entry));
    }
    Ok(answers)
}

fn is_target(evpid: EvpId, target: Target) -> bool {
    match target {
        Target::Envelope(id) => id == evpid,
        Target::Message(msgid) => evpid.msgid() == msgid,
        Target::All => true,
    }
}

/// The runstate and scheduler flags of a listed envelope at `now`.
fn runstate(item: &Listed, envelope: &Envelope, now: u64) -> (RunState, SchedulerFlags) {
    let seconds = |a: u64, b: u64| {
        let (a, b) = (i128::from(a), i128::from(b));
        i64::try_from(a - b).unwrap_or(if a > b { i64::MAX } else { i64::MIN })
    };
    let state = item.state;
    let flags = SchedulerFlags {
        suspended: state.suspended,
        held: matches!(state.phase, Phase::Held(_)),
    };
    let runstate = match state.phase {
        Phase::Pending | Phase::Scheduled | Phase::Held(_) => RunState::Pending {
            delay: seconds(state.sched, now),
        },
        Phase::Inflight => RunState::Inflight {
            delay: seconds(now, item.inflight_since.unwrap_or(envelope.last_try)),
        },
    };
    (runstate, flags)
}

async fn show_envelope(context: &Context, evpid: EvpId) -> Result<Vec<Answer>, String> {
    match context.queue.envelope_load(evpid).await {
        Ok(Some(bytes)) => Ok(data(&bytes)),
        Ok(None) => Err(format!("no envelope {evpid} in the queue")),
        Err(e) => Err(e.to_string()),
    }
}

/// Bytes as [`Answer::Data`] lines.
fn data(bytes: &[u8]) -> Vec<Answer> {
    bytes
        .chunks(DATA_CHUNK)
        .map(|chunk| Answer::Data {
            text: protocol::to_text(chunk),
        })
        .collect()
}

/// `show message`: writes the message as stored to `out` in
/// [`Answer::Data`] lines as it is read, then the final answer.
pub(super) async fn send_message(
    context: &Context,
    msgid: MsgId,
    out: &mut OwnedWriteHalf,
) -> io::Result<()> {
    let mut offset = 0u64;
    loop {
        let chunk = match context
            .queue
            .message_read(msgid, offset, MAX_READ_LENGTH)
            .await
        {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return fail(out, format!("no message {msgid} in the queue")).await,
            Err(e) => return fail(out, e.to_string()).await,
        };
        if chunk.is_empty() {
            return out
                .write_all(protocol::encode(&Answer::Succeeded).as_bytes())
                .await;
        }
        offset += chunk.len() as u64;
        let text: String = data(&chunk).iter().map(protocol::encode).collect();
        out.write_all(text.as_bytes()).await?;
    }
}

async fn fail(out: &mut OwnedWriteHalf, reason: String) -> io::Result<()> {
    let line = protocol::encode(&Answer::Failed { reason });
    out.write_all(line.as_bytes()).await
}

async fn scheduler_stats(context: &Context) -> Result<scheduler::Stats, String> {
    match control(context, Control::Stats).await? {
        scheduler::Answer::Stats(stats) => Ok(stats),
        other => Err(unexpected(&other)),
    }
}

async fn show_stats(context: &Context, control_sessions: u64) -> Result<Vec<Answer>, String> {
    let scheduler = scheduler_stats(context).await?;
    let uptime = SystemTime::now()
        .duration_since(context.started)
        .map_or(0, |d| d.as_secs());
    let sessions = context.gate.counters();
    Ok(
        stats::counters(&scheduler, &sessions, control_sessions, uptime)
            .into_iter()
            .map(|(key, value)| Answer::Stat { key, value })
            .collect(),
    )
}

async fn digest(context: &Context) -> Result<Vec<Answer>, String> {
    let scheduler = scheduler_stats(context).await?;
    let digest = stats::digest(&scheduler, &context.gate.counters());
    Ok(vec![Answer::Digest(digest)])
}

async fn show_status(context: &Context) -> Result<Vec<Answer>, String> {
    let (mda, mta) = match control(context, Control::Status).await? {
        scheduler::Answer::Paused { mda, mta } => (mda, mta),
        other => return Err(unexpected(&other)),
    };
    let smtp = context.gate.is_paused();
    Ok(vec![Answer::Status(PauseStatus { mda, mta, smtp })])
}

/// `pause` (`pause` true) or `resume` of an agent; fails, without a
/// reason as OpenSMTPD, when it is already in that state.
async fn switch(context: &Context, agent: Agent, pause: bool) -> Result<Vec<Answer>, String> {
    let changed = match agent {
        Agent::Smtp if pause => context.gate.pause(),
        Agent::Smtp => context.gate.resume(),
        Agent::Mda | Agent::Mta => {
            let kind = if agent == Agent::Mda {
                DeliveryType::Mda
            } else {
                DeliveryType::Mta
            };
            let command = if pause {
                Control::Pause(kind)
            } else {
                Control::Unpause(kind)
            };
            match control(context, command).await? {
                scheduler::Answer::Changed(changed) => changed,
                other => return Err(unexpected(&other)),
            }
        }
    };
    if !changed {
        return Err(String::new());
    }
    let done = if pause { "paused" } else { "resumed" };
    tracing::info!("{} {done}", agent.name());
    Ok(Vec::new())
}
