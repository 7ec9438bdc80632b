//! What expansion produces: [`Delivery`] envelopes or a [`Failure`], and
//! the [`UserInfo`] of userbase entries.

use crate::config::ActionId;
use crate::rules::Address;
use crate::table::Error as TableError;

/// A userbase entry (tables.md section 2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The account name (the key looked up).
    pub username: String,
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its home directory.
    pub directory: String,
}

impl UserInfo {
    /// Parses a `UID:GID:HOMEDIR` userinfo value for `username`.
    pub fn parse(username: &str, value: &str) -> Option<Self> {
        let mut parts = value.splitn(3, ':');
        let uid = parts.next()?.parse().ok()?;
        let gid = parts.next()?.parse().ok()?;
        let directory = parts.next()?;
        if directory.is_empty() {
            return None;
        }
        Some(Self {
            username: username.to_owned(),
            uid,
            gid,
            directory: directory.to_owned(),
        })
    }
}

/// What a local delivery runs instead of the action's method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MdaExec {
    /// Append to this file in mbox format (`mail.mboxfile`).
    File(String),
    /// Pipe to this command (formats allowed).
    Command(String),
}

/// One envelope the recipient expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Relay to `dest` with a relay action.
    Relay {
        /// The action of the rule that matched.
        action: ActionId,
        /// The address to relay to.
        dest: Address,
        /// Produced by an alias or `.forward` (rules saw source `local`).
        internal: bool,
    },
    /// Deliver locally with a local action.
    Local {
        /// The action of the rule that matched.
        action: ActionId,
        /// The nearest address the delivery comes from (`%{dest}`).
        dest: Address,
        /// Produced by an alias or `.forward`.
        internal: bool,
        /// The account (`mda-user`).
        user: String,
        /// The sub-address (`mda-subaddress`), possibly empty.
        subaddress: String,
        /// A file or command from an alias or `.forward` (`mda-exec`).
        exec: Option<MdaExec>,
    },
}

/// Why a recipient cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Temporary (4xx) or permanent (5xx).
    pub temporary: bool,
    /// The reply text (`NNN [X.Y.Z] text`), when not the default one.
    pub message: Option<String>,
}

impl Failure {
    pub(super) fn temporary() -> Self {
        Self {
            temporary: true,
            message: None,
        }
    }

    pub(super) fn permanent() -> Self {
        Self {
            temporary: false,
            message: None,
        }
    }

    pub(super) fn with(temporary: bool, message: &str) -> Self {
        Self {
            temporary,
            message: Some(message.to_owned()),
        }
    }

    /// The SMTP reply for `rcpt`: the text followed by `: <RCPT>`
    /// (`550 Invalid recipient` and `451 Temporary failure` by default).
    pub fn reply(&self, rcpt: &Address) -> String {
        let text = match (&self.message, self.temporary) {
            (Some(text), _) => text.as_str(),
            (None, true) => "451 Temporary failure",
            (None, false) => "550 Invalid recipient",
        };
        format!("{text}: <{rcpt}>")
    }
}

impl From<TableError> for Failure {
    fn from(error: TableError) -> Self {
        tracing::warn!("expansion: {error}");
        Self::temporary()
    }
}
