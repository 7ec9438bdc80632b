//! Local delivery of one queued envelope (delivery.md section 5): the
//! mda agent's work, from a `type: mda` envelope to delivered, a
//! temporary failure or a permanent one.
//!
//! [`LocalAgent::deliver`] finds the envelope's action, looks up the
//! account in the action's userbase (the `user` option's system account
//! takes over when set), checks for a loop (`Delivered-To:` already in the
//! header block), expands the action's `%{...}` formats and writes the
//! message, `Return-Path:` and `Delivered-To:` first, with LF line
//! endings:
//!
//! - `maildir` and `mbox`, and files from aliases (`mail.mboxfile`),
//!   in-process when the daemon is not root; as root, through the
//!   daemon's own executable run as the account (`helper.rs`), so that the
//!   files are created by the user who owns the mailbox;
//! - `lmtp` in-process, to a Unix socket or a TCP host;
//! - `mda` and commands from aliases with [`super::mda::run`], wrapped by
//!   the action's `wrapper` when it has one.
//!
//! Every writer fsyncs before it reports success, so an envelope leaves
//! the queue only once its delivery is durable.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::io::SyncIoBridge;

use super::expand::UserInfo;
use super::format::{self, FormatContext};
use super::helper;
use super::lmtp::{self, LmtpDestination, LmtpEnvelope};
use super::maildir::{self, MaildirOptions};
use super::mbox::{self, MboxOptions};
use super::mda::{self, Account, MdaCommand, MdaEnvironment, MdaOutcome, MDA_TIMEOUT};
use super::message;
use crate::config::{ActionKind, Config, LocalDelivery, LocalMethod, TableId};
use crate::queue::envelope::{Envelope, Kind, MailAddr};
use crate::queue::QueueBackend;
use crate::rules::Address;
use crate::table::{Service, Tables};

/// What `mda-exec` holds for a file from an alias or `.forward`
/// (delivery.md section 1.2), followed by the path.
pub const MBOXFILE_EXEC: &str = "/usr/libexec/mail.mboxfile -f %{mbox.from} ";

/// Where `mbox` deliveries go by default: `/var/mail/USER`.
pub const DEFAULT_MAILBOX_DIR: &str = "/var/mail";

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalResult {
    /// Delivered, durably.
    Delivered,
    /// Try again later, for this reason.
    Temporary(String),
    /// Failed for good, for this reason.
    Permanent(String),
    /// The message has been delivered to this recipient before.
    Loop,
}

/// Settings of local delivery beyond the configuration.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// Relative maildir paths and files are taken from here (the
    /// directory the daemon started in).
    pub base_dir: PathBuf,
    /// Where `mbox` mailboxes are (`/var/mail`).
    pub mailbox_dir: PathBuf,
    /// The daemon's executable, run as the account for maildir and mbox
    /// deliveries when the daemon is root.
    pub executable: PathBuf,
    /// Whether the daemon runs as root (deliveries switch to the account).
    pub root: bool,
    /// The host name in maildir file names.
    pub hostname: String,
    /// The time limit of a delivery.
    pub timeout: Duration,
    /// As root, the privileged helper that runs deliveries as their
    /// accounts (the daemon itself no longer can).
    pub privsep: Option<crate::privsep::Client>,
}

/// The account a delivery runs as, with its home.
#[derive(Debug, Clone)]
struct Target {
    info: UserInfo,
    account: Account,
}

/// Delivers `type: mda` envelopes.
pub struct LocalAgent {
    config: Arc<Config>,
    tables: Tables,
    queue: Arc<dyn QueueBackend>,
    settings: LocalSettings,
}

impl LocalAgent {
    /// An agent for `config`, reading messages from `queue`.
    pub fn new(
        config: Arc<Config>,
        tables: Tables,
        queue: Arc<dyn QueueBackend>,
        settings: LocalSettings,
    ) -> Self {
        Self {
            config,
            tables,
            queue,
            settings,
        }
    }

    /// Delivers `envelope` (its `id` set, of kind `mda`).
    pub async fn deliver(&self, envelope: &Envelope) -> LocalResult {
        let Kind::Mda(mda) = &envelope.kind else {
            return LocalResult::Permanent("not a local delivery".to_owned());
        };
        let Some(msgid) = envelope.msgid() else {
            return LocalResult::Temporary("envelope without id".to_owned());
        };
        let Some(local) = self.action(&envelope.dispatcher) else {
            return LocalResult::Permanent(format!(
                "no local action named {:?}",
                envelope.dispatcher
            ));
        };
        let target = match self.target(local, &mda.user).await {
            Ok(target) => target,
            Err(result) => return result,
        };
        let dest = envelope.dest.to_string();
        match message::header_loop(self.queue.as_ref(), msgid, &dest).await {
            Ok(true) => return LocalResult::Loop,
            Ok(false) => {}
            Err(e) => return LocalResult::Temporary(e.to_string()),
        }
        let sender = address(&envelope.sender);
        let rcpt = address(&envelope.rcpt);
        let dest_addr = address(&envelope.dest);
        let ctx = FormatContext {
            sender: &sender,
            rcpt: &rcpt,
            dest: &dest_addr,
            username: &target.info.username,
            directory: &target.info.directory,
            mda: None,
            sub_addr_delim: self.config.smtp.sub_addr_delim,
        };
        let mut method = match self.method(local, &mda.exec, &ctx) {
            Ok(method) => method,
            Err(reason) => return LocalResult::Permanent(reason),
        };
        if let Method::Write(Write::Maildir { extension, .. }) = &mut method {
            *extension = Some(mda.subaddress.clone()).filter(|s| !s.is_empty());
        }
        let sender_text = text(&envelope.sender);
        let prefix = message::delivery_headers(&sender_text, &rcpt.to_string());
        let reader = message::reader(Arc::clone(&self.queue), msgid, prefix);
        let env = MdaEnvironment {
            domain: envelope.rcpt.domain.clone(),
            home: target.info.directory.clone(),
            original_recipient: rcpt.to_string(),
            recipient: dest.clone(),
            local: envelope.rcpt.user.clone(),
            user: target.info.username.clone(),
            sender: sender_text.clone(),
            extension: mda.subaddress.clone(),
        };
        match method {
            Method::Command(command) => {
                let command = match self.wrap(local, command, &ctx) {
                    Ok(command) => command,
                    Err(reason) => return LocalResult::Permanent(reason),
                };
                let run = MdaCommand {
                    command,
                    env,
                    account: self.settings.root.then_some(target.account),
                    directory: PathBuf::from(&target.info.directory),
                    timeout: self.settings.timeout,
                };
                self.run(&run, reader).await
            }
            Method::Lmtp {
                destination,
                rcpt_to,
            } => {
                let lmtp_envelope = LmtpEnvelope {
                    lhlo: "localhost".to_owned(),
                    sender: sender_text.clone(),
                    recipient: if rcpt_to {
                        dest.clone()
                    } else {
                        target.info.username.clone()
                    },
                };
                match lmtp::deliver(&destination, &lmtp_envelope, reader).await {
                    Ok(()) => LocalResult::Delivered,
                    Err(lmtp::LmtpError::Temporary(e)) => LocalResult::Temporary(e),
                    Err(lmtp::LmtpError::Permanent(e)) => LocalResult::Permanent(e),
                }
            }
            Method::Write(write) => {
                if self.settings.root {
                    self.write_as(&write, &target, env, reader).await
                } else {
                    write_here(write, &sender_text, &self.settings, reader).await
                }
            }
        }
    }

    /// The local action named `name`.
    fn action(&self, name: &str) -> Option<&LocalDelivery> {
        self.config
            .actions
            .iter()
            .find(|a| a.name == name)
            .and_then(|a| match &a.kind {
                ActionKind::Local(local) => Some(local),
                ActionKind::Relay(_) => None,
            })
    }

    /// The userbase entry of `user` and the account to deliver as.
    async fn target(&self, local: &LocalDelivery, user: &str) -> Result<Target, LocalResult> {
        let info = self.userinfo(local.userbase, user).await?;
        let account = match &local.user {
            Some(name) => {
                let system = self.userinfo(TableId::GETPWNAM, name).await?;
                Account {
                    uid: system.uid,
                    gid: system.gid,
                }
            }
            None => Account {
                uid: info.uid,
                gid: info.gid,
            },
        };
        Ok(Target { info, account })
    }

    async fn userinfo(&self, table: TableId, user: &str) -> Result<UserInfo, LocalResult> {
        match self.tables.get(table).lookup(Service::Userinfo, user).await {
            Ok(Some(value)) => UserInfo::parse(user, &value).ok_or_else(|| {
                LocalResult::Temporary(format!("invalid userinfo for {user:?}: {value:?}"))
            }),
            Ok(None) => Err(LocalResult::Permanent(format!("user {user:?} unknown"))),
            Err(e) => Err(LocalResult::Temporary(e.to_string())),
        }
    }

    /// What the action (or the alias's `mda-exec`) does.
    fn method(
        &self,
        local: &LocalDelivery,
        exec: &str,
        ctx: &FormatContext<'_>,
    ) -> Result<Method, String> {
        let expand = |text: &str| format::expand(text, ctx).map_err(|e| e.to_string());
        if let Some(path) = exec.strip_prefix(MBOXFILE_EXEC) {
            let path = self.absolute(&expand(path)?);
            return Ok(Method::Write(Write::MboxFile(path)));
        }
        if !exec.is_empty() {
            return Ok(Method::Command(expand(exec)?));
        }
        match &local.method {
            LocalMethod::Mbox => Ok(Method::Write(Write::Mbox(
                self.settings.mailbox_dir.join(ctx.username),
            ))),
            LocalMethod::Maildir { path, junk } => {
                let dir = match path {
                    Some(path) => self.absolute(&expand(path)?),
                    None => Path::new(ctx.directory).join("Maildir"),
                };
                Ok(Method::Write(Write::Maildir {
                    dir,
                    junk: *junk,
                    extension: None,
                }))
            }
            LocalMethod::Lmtp {
                destination,
                rcpt_to,
            } => Ok(Method::Lmtp {
                destination: LmtpDestination::parse(&expand(destination)?)
                    .map_err(|e| e.to_string())?,
                rcpt_to: *rcpt_to,
            }),
            LocalMethod::Mda { command } => Ok(Method::Command(expand(command)?)),
            LocalMethod::ForwardOnly | LocalMethod::ExpandOnly => {
                Err("nothing to deliver locally on this action".to_owned())
            }
        }
    }

    /// The command wrapped by the action's `wrapper`, if it has one.
    fn wrap(
        &self,
        local: &LocalDelivery,
        command: String,
        ctx: &FormatContext<'_>,
    ) -> Result<String, String> {
        let Some(wrapper) = local.wrapper else {
            return Ok(command);
        };
        let ctx = FormatContext {
            mda: Some(&command),
            ..ctx.clone()
        };
        format::expand(&self.config[wrapper].command, &ctx).map_err(|e| e.to_string())
    }

    fn absolute(&self, path: &str) -> PathBuf {
        self.settings.base_dir.join(path)
    }

    /// Runs a maildir or mbox write as the account through the helper.
    async fn write_as(
        &self,
        write: &Write,
        target: &Target,
        env: MdaEnvironment,
        reader: impl tokio::io::AsyncRead + Send + Unpin,
    ) -> LocalResult {
        if let Write::Mbox(path) = write {
            let prepared = match &self.settings.privsep {
                Some(privsep) => privsep.prepare_mailbox(path, target.account).await,
                None => helper::prepare_mailbox(path, target.account),
            };
            if let Err(e) = prepared {
                return LocalResult::Temporary(format!("{}: {e}", path.display()));
            }
        }
        let command = helper::command_line(&self.settings.executable, write, &env.sender);
        let run = MdaCommand {
            command,
            env,
            account: Some(target.account),
            directory: PathBuf::from(&target.info.directory),
            timeout: self.settings.timeout,
        };
        self.run(&run, reader).await
    }

    /// Runs a delivery command: through the privileged helper when there
    /// is one, else in this process.
    async fn run(
        &self,
        run: &MdaCommand,
        reader: impl tokio::io::AsyncRead + Send + Unpin,
    ) -> LocalResult {
        mda_result(match &self.settings.privsep {
            Some(privsep) => privsep.run_mda(run, reader).await,
            None => mda::run(run, reader).await,
        })
    }
}

/// How a delivery is made.
enum Method {
    /// A maildir or mbox write.
    Write(Write),
    /// An LMTP session.
    Lmtp {
        destination: LmtpDestination,
        rcpt_to: bool,
    },
    /// A command through `/bin/sh -c`.
    Command(String),
}

/// A write into the account's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Into a maildir.
    Maildir {
        /// The maildir.
        dir: PathBuf,
        /// `junk`: spam goes to `.Junk`.
        junk: bool,
        /// The sub-address folder, if any.
        extension: Option<String>,
    },
    /// Appended to a system mailbox (with the dotlock).
    Mbox(PathBuf),
    /// Appended to a file named by an alias (no dotlock).
    MboxFile(PathBuf),
}

/// Performs `write` in this process (the daemon is not root).
async fn write_here(
    write: Write,
    sender: &str,
    settings: &LocalSettings,
    reader: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> LocalResult {
    let sender = mbox_sender(sender);
    let hostname = settings.hostname.clone();
    let task = tokio::task::spawn_blocking(move || {
        let input = SyncIoBridge::new(reader);
        perform(&write, input, &sender, Some(hostname))
    });
    match task.await {
        Ok(result) => result,
        Err(e) => LocalResult::Temporary(format!("delivery task: {e}")),
    }
}

/// The `From ` line's address: `MAILER-DAEMON` for the null sender.
pub fn mbox_sender(sender: &str) -> String {
    if sender.is_empty() {
        "MAILER-DAEMON".to_owned()
    } else {
        sender.to_owned()
    }
}

/// Writes `input` as `write` says (blocking).
pub fn perform(
    write: &Write,
    input: impl std::io::Read,
    sender: &str,
    hostname: Option<String>,
) -> LocalResult {
    match write {
        Write::Maildir {
            dir,
            junk,
            extension,
        } => {
            let options = MaildirOptions {
                junk: *junk,
                extension: extension.clone(),
                hostname,
            };
            match maildir::deliver(input, dir, &options) {
                Ok(_) => LocalResult::Delivered,
                Err(e) if e.is_temporary() => LocalResult::Temporary(e.to_string()),
                Err(e) => LocalResult::Permanent(e.to_string()),
            }
        }
        Write::Mbox(path) | Write::MboxFile(path) => {
            let options = MboxOptions {
                dotlock: matches!(write, Write::Mbox(_)),
                ..MboxOptions::default()
            };
            match mbox::deliver(input, path, sender, &options) {
                Ok(()) => LocalResult::Delivered,
                Err(e) => LocalResult::Temporary(e.to_string()),
            }
        }
    }
}

fn mda_result(outcome: MdaOutcome) -> LocalResult {
    match outcome {
        MdaOutcome::Delivered => LocalResult::Delivered,
        MdaOutcome::Temporary(reason) => LocalResult::Temporary(reason),
        MdaOutcome::Permanent(reason) => LocalResult::Permanent(reason),
    }
}

/// An address as text: empty for the null sender.
pub fn text(addr: &MailAddr) -> String {
    if addr.user.is_empty() && addr.domain.is_empty() {
        String::new()
    } else {
        addr.to_string()
    }
}

/// A queue address as the rules and formats see it.
pub fn address(addr: &MailAddr) -> Address {
    Address::new(addr.user.clone(), addr.domain.clone())
}

/// The default time limit of a delivery.
pub const DELIVERY_TIMEOUT: Duration = MDA_TIMEOUT;
