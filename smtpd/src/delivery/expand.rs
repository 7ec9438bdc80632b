//! Recipient expansion (delivery.md sections 1 to 3): what one accepted
//! RCPT TO becomes, as OpenSMTPD's lookup process computes it before the
//! `250` reply.
//!
//! [`Expander::expand`] starts from one address node, the recipient, and
//! processes nodes breadth-first: an address goes through the rules
//! (`crate::rules::decide`) and becomes a relay delivery, the children of
//! a `virtual` lookup, or a user name; a user name goes through the
//! `alias`/`virtual` table, then the `userbase`, then `~/.forward`, and
//! becomes a local delivery when nothing replaces it; files and commands
//! become local deliveries with an `mda-exec`; `error:` elements fail the
//! recipient. Identical nodes in the same address context are expanded
//! once. The first failure ends the expansion: a table error or a broken
//! alias value is temporary, a missing user or no matching rule permanent.
//!
//! Tables are reached through [`Tables`] (static and proc-exec alike), and
//! the files it reads (`.forward`, `:include:`) through [`ExpansionFiles`],
//! which the daemon implements with its privileged opener and tests with
//! fixed contents; [`SystemFiles`] reads them directly.
//!
//! Where this differs from OpenSMTPD 7.8: a user name produced by an alias
//! is looked up in a `virtual` table with the key `name` only (7.8 also
//! tries keys built from an empty domain, so `@` catches every such name);
//! an empty `.forward` is treated as a missing one on `forward-only` and
//! `expand-only` actions too (as delivery.md describes); SRS decoding of
//! bounce recipients is not done here.

mod files;
mod outcome;

#[cfg(test)]
mod tests;

use std::collections::{HashSet, VecDeque};

use super::alias::{self, AliasNode};
use crate::config::{ActionId, ActionKind, Config, Expansion, LocalDelivery, LocalMethod};
use crate::rules::{self, Address, Decision, Envelope};
use crate::table::{Error as TableError, Service, Tables};

pub use files::{open_forward, ExpansionFiles, ForwardFile, SystemFiles};
pub use outcome::{Delivery, Failure, MdaExec, UserInfo};

/// Nodes this deep fail the recipient (`EXPAND_DEPTH`).
const EXPAND_DEPTH: usize = 10;
/// More nodes than this after reading a `.forward` is a temporary failure
/// (`MAX_EXPAND_NODES`).
const MAX_EXPAND_NODES: usize = 100;
/// A `.forward` of this size or more is a temporary failure
/// (`MAX_FORWARD_SIZE`).
pub const MAX_FORWARD_SIZE: usize = 4096;
/// The account commands and files from aliases run as when no real user
/// owns them.
pub const UNPRIVILEGED_USER: &str = "_smtpd";
/// The reply of expansion problems (depth, nothing deliverable, virtual).
const EXPANSION_PERMFAIL: &str = "524 5.2.4 Mailing list expansion problem";
/// The temporary reply of a failed virtual lookup.
const EXPANSION_TEMPFAIL: &str = "424 4.2.4 Mailing list expansion problem";

/// The kinds of node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NodeKind {
    Address(Address),
    Username(String),
    File(String),
    Filter(String),
    Error(String),
}

/// One node of the expansion tree.
#[derive(Debug, Clone)]
struct Node {
    kind: NodeKind,
    parent: Option<usize>,
    depth: usize,
    /// The action that applies (set on address nodes once matched, and
    /// inherited by their children).
    action: Option<ActionId>,
    /// A user name whose parent is the identical user name.
    same_user: bool,
    /// Its `.forward` was read.
    forwarded: bool,
    /// The uid of the account, once the userbase found one.
    real_uid: Option<u32>,
}

/// Expands recipients against one configuration and its live tables.
pub struct Expander<'a> {
    config: &'a Config,
    tables: &'a Tables,
    files: &'a dyn ExpansionFiles,
}

impl<'a> Expander<'a> {
    /// An expander for `config`, its `tables`, and `files` to read
    /// `.forward` and include files with.
    pub fn new(config: &'a Config, tables: &'a Tables, files: &'a dyn ExpansionFiles) -> Self {
        Self {
            config,
            tables,
            files,
        }
    }

    /// Expands `envelope.rcpt_to` (already completed with a domain) into
    /// the envelopes to queue.
    pub async fn expand(&self, envelope: &Envelope) -> Result<Vec<Delivery>, Failure> {
        let mut session = Session {
            expander: self,
            envelope,
            nodes: Vec::new(),
            queue: VecDeque::new(),
            seen: HashSet::new(),
            deliveries: Vec::new(),
        };
        session.insert(NodeKind::Address(envelope.rcpt_to.clone()), None, None);
        while let Some(index) = session.queue.pop_front() {
            session.process(index).await?;
        }
        if session.deliveries.is_empty() {
            return Err(Failure::with(false, EXPANSION_PERMFAIL));
        }
        Ok(session.deliveries)
    }

    fn delim(&self) -> char {
        self.config.smtp.sub_addr_delim
    }

    fn local(&self, action: ActionId) -> Result<&'a LocalDelivery, Failure> {
        match &self.config[action].kind {
            ActionKind::Local(local) => Ok(local),
            ActionKind::Relay(_) => Err(Failure::temporary()),
        }
    }
}

/// The state of one recipient's expansion.
struct Session<'s, 'a> {
    expander: &'s Expander<'a>,
    envelope: &'s Envelope,
    nodes: Vec<Node>,
    queue: VecDeque<usize>,
    /// (kind, same user, address context) of every node inserted.
    seen: HashSet<(NodeKind, bool, Option<Address>)>,
    deliveries: Vec<Delivery>,
}

impl Session<'_, '_> {
    /// Adds a node unless an identical one exists in the same address
    /// context; returns whether it was added.
    fn insert(&mut self, kind: NodeKind, parent: Option<usize>, action: Option<ActionId>) -> bool {
        let same_user = match (&kind, parent.map(|p| &self.nodes[p].kind)) {
            (NodeKind::Username(name), Some(NodeKind::Username(parent))) => name == parent,
            _ => false,
        };
        let context =
            parent
                .and_then(|p| self.address_ancestor(p))
                .and_then(|a| match &self.nodes[a].kind {
                    NodeKind::Address(address) => Some(address.clone()),
                    _ => None,
                });
        if !self.seen.insert((kind.clone(), same_user, context)) {
            return false;
        }
        self.nodes.push(Node {
            kind,
            parent,
            depth: parent.map_or(0, |p| self.nodes[p].depth + 1),
            action,
            same_user,
            forwarded: false,
            real_uid: None,
        });
        self.queue.push_back(self.nodes.len() - 1);
        true
    }

    /// The nearest address node at or above `index`.
    fn address_ancestor(&self, mut index: usize) -> Option<usize> {
        loop {
            let node = &self.nodes[index];
            if matches!(node.kind, NodeKind::Address(_)) {
                return Some(index);
            }
            index = node.parent?;
        }
    }

    async fn process(&mut self, index: usize) -> Result<(), Failure> {
        if self.nodes[index].depth >= EXPAND_DEPTH {
            return Err(Failure::with(false, EXPANSION_PERMFAIL));
        }
        match self.nodes[index].kind.clone() {
            NodeKind::Address(address) => self.expand_address(index, address).await,
            NodeKind::Username(name) => self.expand_username(index, name).await,
            NodeKind::File(path) => self.expand_exec(index, MdaExec::File(path)),
            NodeKind::Filter(command) => self.expand_exec(index, MdaExec::Command(command)),
            NodeKind::Error(text) => self.expand_error(index, &text),
        }
    }

    /// delivery.md section 1.1.
    async fn expand_address(&mut self, index: usize, address: Address) -> Result<(), Failure> {
        let internal = self.nodes[index].parent.is_some();
        let mut envelope = self.envelope.clone();
        envelope.rcpt_to = address.clone();
        envelope.internal |= internal;
        let decision =
            rules::decide(&self.expander.config.rules, &envelope, self.expander.tables).await?;
        let Decision::Action { action, .. } = decision else {
            return Err(Failure::permanent());
        };
        self.nodes[index].action = Some(action);
        let local = match &self.expander.config[action].kind {
            ActionKind::Relay(_) => {
                self.deliveries.push(Delivery::Relay {
                    action,
                    dest: address,
                    internal,
                });
                return Ok(());
            }
            ActionKind::Local(local) => local,
        };
        if let Some(Expansion::Virtual(table)) = local.expansion {
            let lowered = Address::new(address.user.to_lowercase(), address.domain.clone());
            return match self.virtual_lookup(table, &lowered, true).await {
                Ok(Some(value)) if self.insert_value(index, &value).await? > 0 => Ok(()),
                Ok(_) => Err(Failure::with(false, EXPANSION_PERMFAIL)),
                Err(error) => {
                    tracing::warn!("expansion: {error}");
                    Err(Failure::with(true, EXPANSION_TEMPFAIL))
                }
            };
        }
        self.insert(
            NodeKind::Username(address.user.to_lowercase()),
            Some(index),
            Some(action),
        );
        Ok(())
    }

    /// The `virtual` lookups of delivery.md section 2.2; `full` is false
    /// for user names, which are looked up by name only.
    async fn virtual_lookup(
        &self,
        table: crate::config::TableId,
        address: &Address,
        full: bool,
    ) -> Result<Option<String>, TableError> {
        let table = self.expander.tables.get(table);
        let user = address.user.to_lowercase();
        let domain = address.domain.to_lowercase();
        if !full {
            return table.lookup(Service::Alias, &user).await;
        }
        let delim = self.expander.delim();
        let (base, tag) = match user.split_once(delim) {
            Some((base, tag)) => (base, Some(tag)),
            None => (user.as_str(), None),
        };
        let mut keys = Vec::new();
        if let Some(tag) = tag {
            keys.push(format!("{base}{delim}{tag}@{domain}"));
        }
        keys.push(format!("{base}@{domain}"));
        if let Some(tag) = tag {
            keys.push(format!("{base}{delim}{tag}"));
        }
        keys.push(base.to_owned());
        keys.push(format!("@{domain}"));
        keys.push("@".to_owned());
        for key in keys {
            if let Some(value) = table.lookup(Service::Alias, &key).await? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The `alias` lookups of delivery.md section 2.1: `user+tag`, then
    /// `user`.
    async fn alias_lookup(
        &self,
        table: crate::config::TableId,
        name: &str,
    ) -> Result<Option<String>, TableError> {
        let table = self.expander.tables.get(table);
        let key = name.to_lowercase();
        if let Some(value) = table.lookup(Service::Alias, &key).await? {
            return Ok(Some(value));
        }
        match key.split_once(self.expander.delim()) {
            Some((base, _)) => table.lookup(Service::Alias, base).await,
            None => Ok(None),
        }
    }

    /// Adds the elements of an alias table value as children of `parent`,
    /// following `:include:` files one level deep; returns how many
    /// elements it held (OpenSMTPD's `nbaliases`). An invalid value is a
    /// table error.
    async fn insert_value(&mut self, parent: usize, value: &str) -> Result<usize, Failure> {
        let nodes = alias::parse_value(value).map_err(|error| {
            tracing::warn!("expansion: invalid alias value {value:?}: {error}");
            Failure::with(true, EXPANSION_TEMPFAIL)
        })?;
        let action = self.nodes[parent].action;
        let mut count = 0;
        for node in nodes {
            match node {
                AliasNode::Include(path) => {
                    count += self.insert_include(parent, action, &path).await;
                }
                node => {
                    if let Some(kind) = node_kind(node) {
                        self.insert(kind, Some(parent), action);
                    }
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// An include file's lines as children of `parent` (lines that do not
    /// parse are skipped, as OpenSMTPD does); 1 if the file was read.
    async fn insert_include(
        &mut self,
        parent: usize,
        action: Option<ActionId>,
        path: &str,
    ) -> usize {
        let Some(text) = self.expander.files.include(path).await else {
            tracing::warn!("expansion: failed to open include file {path:?}");
            return 0;
        };
        for line in alias::logical_lines(&text) {
            if let Ok(nodes) = alias::parse_forward_line(&line) {
                for kind in nodes.into_iter().filter_map(node_kind) {
                    self.insert(kind, Some(parent), action);
                }
            }
        }
        1
    }

    /// delivery.md section 1.2.
    async fn expand_username(&mut self, index: usize, name: String) -> Result<(), Failure> {
        let action = self.nodes[index].action.ok_or_else(Failure::temporary)?;
        let local = self.expander.local(action)?;
        if !self.nodes[index].same_user {
            let found = match local.expansion {
                Some(Expansion::Alias(table)) => self.alias_lookup(table, &name).await,
                Some(Expansion::Virtual(table)) => {
                    self.virtual_lookup(table, &Address::new(name.clone(), ""), false)
                        .await
                }
                None => Ok(None),
            };
            let found = found.map_err(|error| {
                tracing::warn!("expansion: {error}");
                Failure::with(true, EXPANSION_TEMPFAIL)
            })?;
            if let Some(value) = found {
                if self.insert_value(index, &value).await? > 0 {
                    return Ok(());
                }
            }
        }
        let (base, subaddress) = match name.split_once(self.expander.delim()) {
            Some((base, tag)) => (base.to_owned(), tag.to_owned()),
            None => (name.clone(), String::new()),
        };
        let value = self
            .expander
            .tables
            .get(local.userbase)
            .lookup(Service::Userinfo, &base)
            .await?;
        let Some(value) = value else {
            return Err(Failure::permanent());
        };
        let Some(info) = UserInfo::parse(&base, &value) else {
            tracing::warn!("expansion: invalid userinfo for {base:?}: {value:?}");
            return Err(Failure::temporary());
        };
        self.nodes[index].real_uid = Some(info.uid);
        let parent_forwarded = self.nodes[index]
            .parent
            .is_some_and(|p| self.nodes[p].forwarded);
        let other_user = local.user.as_deref().is_some_and(|user| user != base);
        if (self.nodes[index].same_user && parent_forwarded) || other_user {
            self.deliver(index, action, base, subaddress, None);
            return Ok(());
        }
        self.nodes[index].forwarded = true;
        self.expand_forward(index, action, local, &info, subaddress)
            .await
    }

    /// Reads the user's `.forward` (delivery.md section 3).
    async fn expand_forward(
        &mut self,
        index: usize,
        action: ActionId,
        local: &LocalDelivery,
        info: &UserInfo,
        subaddress: String,
    ) -> Result<(), Failure> {
        let content = match self.expander.files.forward(info).await {
            ForwardFile::Content(text) if text.len() >= MAX_FORWARD_SIZE => {
                tracing::info!(
                    "expansion: forward file of {} exceeds max size",
                    info.username
                );
                return Err(Failure::temporary());
            }
            ForwardFile::Content(text) if !text.is_empty() => text,
            ForwardFile::Content(_) | ForwardFile::Missing => {
                return match local.method {
                    LocalMethod::ForwardOnly => Err(Failure::temporary()),
                    LocalMethod::ExpandOnly => Err(Failure::permanent()),
                    _ => {
                        self.deliver(index, action, info.username.clone(), subaddress, None);
                        Ok(())
                    }
                };
            }
            ForwardFile::Temporary(reason) => {
                tracing::warn!("expansion: .forward of {}: {reason}", info.username);
                return Err(Failure::temporary());
            }
            ForwardFile::Refused(reason) => {
                tracing::warn!("expansion: .forward of {}: {reason}", info.username);
                return Err(Failure::permanent());
            }
        };
        let before = self.nodes.len();
        for line in alias::logical_lines(&content) {
            let Ok(nodes) = alias::parse_forward_line(&line) else {
                tracing::info!(
                    "expansion: parse error in forward file of {}",
                    info.username
                );
                return Err(Failure::temporary());
            };
            for kind in nodes.into_iter().filter_map(node_kind) {
                self.insert(kind, Some(index), Some(action));
            }
            if self.nodes.len() > MAX_EXPAND_NODES {
                tracing::info!("expansion: forward file expanded too many nodes");
                return Err(Failure::temporary());
            }
        }
        if self.nodes.len() == before {
            self.deliver(index, action, info.username.clone(), subaddress, None);
        }
        Ok(())
    }

    /// delivery.md section 1.3, files and commands.
    fn expand_exec(&mut self, index: usize, exec: MdaExec) -> Result<(), Failure> {
        let action = self.nodes[index].action.ok_or_else(Failure::temporary)?;
        let parent = self.nodes[index].parent.map(|p| &self.nodes[p]);
        let parent_user = match parent {
            Some(Node {
                kind: NodeKind::Username(name),
                real_uid: Some(uid),
                ..
            }) => Some((name.clone(), *uid)),
            _ => None,
        };
        if parent_user.as_ref().is_some_and(|(_, uid)| *uid == 0) {
            tracing::info!("expansion: files and commands are not allowed in root's .forward");
            return Err(Failure::temporary());
        }
        if self.expander.local(action)?.method == LocalMethod::ForwardOnly {
            return Err(Failure::temporary());
        }
        let user = match parent_user {
            Some((name, _)) => {
                let delim = self.expander.delim();
                name.split_once(delim)
                    .map_or_else(|| name.clone(), |(base, _)| base.to_owned())
            }
            None => {
                tracing::debug!("expansion: {exec:?} runs as {UNPRIVILEGED_USER}");
                UNPRIVILEGED_USER.to_owned()
            }
        };
        self.deliver(index, action, user, String::new(), Some(exec));
        Ok(())
    }

    /// delivery.md section 1.3, `error:` elements.
    fn expand_error(&mut self, index: usize, text: &str) -> Result<(), Failure> {
        let action = self.nodes[index].action.ok_or_else(Failure::temporary)?;
        if self.expander.local(action)?.method == LocalMethod::ForwardOnly {
            return Err(Failure::temporary());
        }
        Err(Failure::with(text.starts_with('4'), text))
    }

    fn deliver(
        &mut self,
        index: usize,
        action: ActionId,
        user: String,
        subaddress: String,
        exec: Option<MdaExec>,
    ) {
        let ancestor = self.address_ancestor(index);
        let (dest, internal) = match ancestor.map(|a| &self.nodes[a]) {
            Some(Node {
                kind: NodeKind::Address(address),
                parent,
                ..
            }) => (address.clone(), parent.is_some()),
            _ => (self.envelope.rcpt_to.clone(), false),
        };
        self.deliveries.push(Delivery::Local {
            action,
            dest,
            internal,
            user,
            subaddress,
            exec,
        });
    }
}

/// The node of an alias element; `None` for `:include:`, which only alias
/// table values follow.
fn node_kind(node: AliasNode) -> Option<NodeKind> {
    Some(match node {
        AliasNode::Address(address) => NodeKind::Address(address),
        AliasNode::Username(name) => NodeKind::Username(name),
        AliasNode::File(path) => NodeKind::File(path),
        AliasNode::Filter(command) => NodeKind::Filter(command),
        AliasNode::Error(text) => NodeKind::Error(text),
        AliasNode::Include(_) => return None,
    })
}
