//! The checked configuration: what the daemon runs with.
//!
//! [`Config`] is built once by `check.rs` and never changes afterwards (the
//! daemon shares it behind an `Arc`). Every name is resolved: rules point at
//! actions, actions and listeners at tables and filters, by index ([`TableId`],
//! [`ActionId`], ...). Fixed sets of the grammar are enums. Defaults are
//! filled in (OpenSMTPD 7.8's, see smtpd-conf.md section 9), so a field
//! never means "unset, look up the default elsewhere", except where the
//! default is only known at run time (the server name, interface addresses),
//! which is `None` or a [`BuiltinTable`].

mod actions;
mod filters;
mod listeners;
mod options;
mod rules;
mod tables;

pub use actions::*;
pub use filters::*;
pub use listeners::*;
pub use options::*;
pub use rules::*;
pub use tables::*;

/// A whole smtpd.conf, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Every table: the built-in ones first (see [`TableId::LOCALHOST`] and
    /// its siblings), then declared and anonymous tables in order.
    pub tables: Vec<Table>,
    /// `pki` entries, in order of first declaration.
    pub pkis: Vec<Pki>,
    /// `ca` entries, in order of first declaration.
    pub cas: Vec<Ca>,
    /// The Unix socket listener, which always exists.
    pub socket: SocketListener,
    /// `listen on IFACE` listeners, in order.
    pub listeners: Vec<Listener>,
    /// `action` dispatchers, in order.
    pub actions: Vec<Action>,
    /// `match` rules, in order: the first that matches wins.
    pub rules: Vec<Rule>,
    /// Filter processes (`proc`, and `filter NAME proc-exec`), in order.
    pub procs: Vec<Proc>,
    /// Filters and chains, in order (anonymous inline chains included).
    pub filters: Vec<Filter>,
    /// `mda wrapper` commands, in order.
    pub mda_wrappers: Vec<MdaWrapper>,
    /// `queue` options.
    pub queue: QueueOptions,
    /// `bounce` options.
    pub bounce: BounceOptions,
    /// `smtp` options.
    pub smtp: SmtpOptions,
    /// `mta` options.
    pub mta: MtaOptions,
    /// `mda limit` values.
    pub mda: MdaLimits,
    /// `scheduler limit` values.
    pub scheduler: SchedulerLimits,
    /// `srs` options.
    pub srs: SrsOptions,
    /// `admd`: the authserv-id announced to filters; `None` means the server
    /// name.
    pub admd: Option<String>,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) u32);

        impl $name {
            /// The position in the matching `Config` vector.
            pub fn index(self) -> usize {
                self.0 as usize
            }

            pub(crate) fn from_index(index: usize) -> Self {
                Self(u32::try_from(index).unwrap_or(u32::MAX))
            }
        }

        impl std::ops::Index<$name> for Config {
            type Output = $item;

            fn index(&self, id: $name) -> &$item {
                &self.$field[id.index()]
            }
        }
    };
}

id_type!(
    /// A table of [`Config::tables`].
    TableId, tables, Table
);
id_type!(
    /// An entry of [`Config::pkis`].
    PkiId, pkis, Pki
);
id_type!(
    /// An entry of [`Config::cas`].
    CaId, cas, Ca
);
id_type!(
    /// An action of [`Config::actions`].
    ActionId, actions, Action
);
id_type!(
    /// A process of [`Config::procs`].
    ProcId, procs, Proc
);
id_type!(
    /// A filter of [`Config::filters`].
    FilterId, filters, Filter
);
id_type!(
    /// A wrapper of [`Config::mda_wrappers`].
    WrapperId, mda_wrappers, MdaWrapper
);

impl TableId {
    /// `<localhost>`: `from local`.
    pub const LOCALHOST: Self = Self(0);
    /// `<anyhost>`: `from any`.
    pub const ANYHOST: Self = Self(1);
    /// `<localnames>`: `for local`.
    pub const LOCALNAMES: Self = Self(2);
    /// `<anydestination>`: `for any`.
    pub const ANYDESTINATION: Self = Self(3);
    /// `<getpwnam>`: the default `userbase`.
    pub const GETPWNAM: Self = Self(4);
}

impl Config {
    /// The table declared (or built in) with this name.
    pub fn table_named(&self, name: &str) -> Option<TableId> {
        position(&self.tables, |t| t.name == name).map(TableId::from_index)
    }

    /// The action with this name.
    pub fn action_named(&self, name: &str) -> Option<ActionId> {
        position(&self.actions, |a| a.name == name).map(ActionId::from_index)
    }

    /// The filter or chain with this name.
    pub fn filter_named(&self, name: &str) -> Option<FilterId> {
        position(&self.filters, |f| f.name == name).map(FilterId::from_index)
    }

    /// The process with this name.
    pub fn proc_named(&self, name: &str) -> Option<ProcId> {
        position(&self.procs, |p| p.name == name).map(ProcId::from_index)
    }

    /// The pki with this (lower-case) name.
    pub fn pki_named(&self, name: &str) -> Option<PkiId> {
        position(&self.pkis, |p| p.name == name).map(PkiId::from_index)
    }

    /// The ca with this (lower-case) name.
    pub fn ca_named(&self, name: &str) -> Option<CaId> {
        position(&self.cas, |c| c.name == name).map(CaId::from_index)
    }
}

fn position<T>(items: &[T], pred: impl Fn(&T) -> bool) -> Option<usize> {
    items.iter().position(pred)
}
