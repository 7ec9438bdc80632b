//! Tables: where their content comes from, and what they can serve.

use std::fmt;
use std::path::PathBuf;

use smtpd_sdk::proto::table::Service;

/// A table: a name and where its content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The declared name; anonymous tables are `<dynamic:N>` and built-in
    /// ones `<localhost>`, `<anyhost>`, `<localnames>`, `<anydestination>`,
    /// `<getpwnam>`.
    pub name: String,
    /// The content or the program that serves it.
    pub backend: TableBackend,
}

/// Where a table's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableBackend {
    /// A table whose content the daemon computes at start-up.
    Builtin(BuiltinTable),
    /// `{ ... }` or a single value written in the configuration.
    Inline(StaticContent),
    /// `file:/path` or `/path`: a table(5) file, as loaded when the
    /// configuration was checked (the table reloads it on update).
    File {
        /// The file.
        path: PathBuf,
        /// Its content when the configuration was loaded.
        content: StaticContent,
    },
    /// `db:/path`: a Berkeley DB file made by makemap.
    Db {
        /// The database file.
        path: PathBuf,
    },
    /// `getpwnam`: the system password database (service userinfo only).
    Getpwnam,
    /// OpenSMTPD's `NAME:/config` form: the program `table-NAME` of the
    /// backends directory, run with the config path as its argument.
    Program {
        /// The backend name (`sqlite` in `sqlite:/etc/mail/db.conf`).
        backend: String,
        /// The program to run (`BACKENDS_DIR/table-sqlite`).
        program: PathBuf,
        /// Its argument, when one was given.
        argument: Option<String>,
    },
    /// `proc-exec "CMD"`: a command speaking the table protocol.
    ProcExec(ProcCommand),
}

/// The tables smtpd creates before reading the configuration
/// (smtpd-conf.md section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinTable {
    /// `local` and every local interface address.
    Localhost,
    /// `local`, `0.0.0.0/0` and `::/0`.
    Anyhost,
    /// `localhost`, the server name and every local interface address.
    Localnames,
    /// `*` (and the short host name when it differs from the server name).
    Anydestination,
}

/// The entries of a static table; keys are lower-cased, values kept as
/// written, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticContent {
    /// Keys only.
    List(Vec<String>),
    /// Key/value pairs.
    Mapping(Vec<(String, String)>),
}

/// A table's type as OpenSMTPD's `table_check_use` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// A static list.
    List,
    /// A static mapping.
    Mapping,
    /// Any backend that is not static: it passes every type check.
    Dynamic,
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::List => "a list",
            Self::Mapping => "a mapping",
            Self::Dynamic => "a backend table",
        })
    }
}

impl Table {
    /// List, mapping, or dynamic.
    pub fn kind(&self) -> TableKind {
        match &self.backend {
            TableBackend::Builtin(_) => TableKind::List,
            TableBackend::Inline(c) | TableBackend::File { content: c, .. } => c.kind(),
            TableBackend::Db { .. }
            | TableBackend::Getpwnam
            | TableBackend::Program { .. }
            | TableBackend::ProcExec(_) => TableKind::Dynamic,
        }
    }

    /// Whether the backend can answer lookups of this service. Programs
    /// announce their services only when they run, so at configuration time
    /// they are taken to serve every service (as OpenSMTPD does).
    pub fn serves(&self, service: Service) -> bool {
        match &self.backend {
            TableBackend::Getpwnam => service == Service::Userinfo,
            TableBackend::Builtin(_)
            | TableBackend::Inline(_)
            | TableBackend::File { .. }
            | TableBackend::Db { .. } => service != Service::Auth,
            TableBackend::Program { .. } | TableBackend::ProcExec(_) => true,
        }
    }
}

impl StaticContent {
    /// List or mapping.
    pub fn kind(&self) -> TableKind {
        match self {
            Self::List(_) => TableKind::List,
            Self::Mapping(_) => TableKind::Mapping,
        }
    }
}

/// A child process command (`proc-exec "CMD"` of tables, filters and the
/// queue, and `proc NAME "CMD"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCommand {
    /// The command line as written. A command that does not start with `/`
    /// is looked up in the backends directory.
    pub command: String,
    /// `user U`: run as this user (default `_smtpd` when started as root).
    pub user: Option<String>,
    /// `group G`: run with this group (default: the user's primary group).
    pub group: Option<String>,
    /// `chroot DIR`: chroot before dropping privileges.
    pub chroot: Option<PathBuf>,
}
