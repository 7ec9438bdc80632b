//! Building the live tables of a configuration, at start-up and on reload.
//!
//! [`build`] makes one live [`Table`] per `Config::tables` entry, in the
//! same order, so that a configuration `TableId` indexes [`Tables`]. Tables
//! the daemon serves itself come from `StaticTable::from_config`; tables
//! served by a program (`proc-exec "CMD"`, and OpenSMTPD's `BACKEND:CONFIG`,
//! which runs `table-BACKEND CONFIG` from the backends directory) are
//! started through the supervisor, all at once, and `build` returns when
//! every handshake is over. Every failure is collected and returned
//! together; the programs already started are then stopped.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::proc_exec::ProcExecTable;
use super::static_table::StaticTable;
use super::{Error, Table, Tables};
use crate::config::{self, Config, TableBackend};
use crate::proc::{self, Spec, StartError};

/// How long a table request may wait for its answer (SPEC.md 1.9).
pub const TABLE_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How tables served by programs are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Where relative commands and `table-BACKEND` programs are found.
    pub backends_dir: PathBuf,
    /// The user programs run as, unless their declaration names one; `None`
    /// keeps the daemon's (the daemon passes `_smtpd` when it runs as
    /// root).
    pub user: Option<String>,
    /// How long a request may wait for its answer.
    pub request_timeout: Duration,
    /// How long a program may take to register.
    pub handshake_timeout: Duration,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            backends_dir: PathBuf::from(config::DEFAULT_BACKENDS_DIR),
            user: None,
            request_timeout: TABLE_REQUEST_TIMEOUT,
            handshake_timeout: proc::HANDSHAKE_TIMEOUT,
        }
    }
}

/// One table that could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildFailure {
    /// A table the daemon serves itself.
    #[error(transparent)]
    Static(Error),
    /// A program that did not start or did not complete its handshake.
    #[error("table {table}: {error}")]
    Start {
        /// The table's name.
        table: String,
        /// What went wrong.
        error: StartError,
    },
}

/// Every table that could not be built.
#[derive(Debug, thiserror::Error)]
pub struct BuildError {
    /// The failures, in configuration order.
    pub failures: Vec<BuildFailure>,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, failure) in self.failures.iter().enumerate() {
            if n > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// The program serving a table, if a program serves it: how to run it and
/// how `smtpctl show tables` shows it.
fn program(table: &config::Table, options: &BuildOptions) -> Option<(Spec, String)> {
    let spec = |command: String| {
        let mut spec = Spec::new(
            &table.name,
            command,
            &options.backends_dir,
            options.request_timeout,
        );
        spec.user.clone_from(&options.user);
        spec.handshake_timeout = options.handshake_timeout;
        spec
    };
    match &table.backend {
        TableBackend::ProcExec(command) => {
            let mut run = spec(command.command.clone());
            if command.user.is_some() {
                run.user.clone_from(&command.user);
            }
            run.group.clone_from(&command.group);
            run.chroot.clone_from(&command.chroot);
            Some((run, format!("proc-exec {:?}", command.command)))
        }
        TableBackend::Program {
            backend, argument, ..
        } => {
            let mut command = proc::quote(&format!("table-{backend}")).into_owned();
            if let Some(argument) = argument {
                command.push(' ');
                command.push_str(&proc::quote(argument));
            }
            let shown = match argument {
                Some(argument) => format!("{backend}:{argument}"),
                None => backend.clone(),
            };
            Some((spec(command), shown))
        }
        TableBackend::Builtin(_)
        | TableBackend::Inline(_)
        | TableBackend::File { .. }
        | TableBackend::Db { .. }
        | TableBackend::Getpwnam => None,
    }
}

/// Creates every table of `config`, starting the programs concurrently and
/// waiting for all their handshakes.
pub async fn build(config: &Config, options: &BuildOptions) -> Result<Tables, BuildError> {
    let mut failures = Vec::new();
    let mut slots: Vec<Option<Arc<dyn Table>>> = Vec::with_capacity(config.tables.len());
    let mut programs = Vec::new();
    for (index, table) in config.tables.iter().enumerate() {
        slots.push(None);
        if let Some((spec, shown)) = program(table, options) {
            programs
                .push(async move { (index, ProcExecTable::start(&table.name, shown, spec).await) });
            continue;
        }
        match StaticTable::from_config(table) {
            Ok(t) => {
                slots[index] = Some(Arc::new(t.with_sub_addr_delim(config.smtp.sub_addr_delim)))
            }
            Err(e) => failures.push((index, BuildFailure::Static(e))),
        }
    }
    for (index, started) in futures::future::join_all(programs).await {
        match started {
            Ok(table) => slots[index] = Some(Arc::new(table)),
            Err(error) => failures.push((
                index,
                BuildFailure::Start {
                    table: config.tables[index].name.clone(),
                    error,
                },
            )),
        }
    }
    if failures.is_empty() {
        return Ok(Tables::new(slots.into_iter().flatten().collect()));
    }
    failures.sort_by_key(|(index, _)| *index);
    Err(BuildError {
        failures: failures.into_iter().map(|(_, f)| f).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn table(text: &str) -> config::Table {
        let text = format!("{text}\naction a mbox\nmatch for any action a\n");
        let config = Config::from_str(&text).unwrap();
        config.tables.last().unwrap().clone()
    }

    #[test]
    fn programs_run_through_the_shell_rule() {
        let options = BuildOptions {
            backends_dir: "/libexec".into(),
            user: Some("_smtpd".into()),
            ..BuildOptions::default()
        };
        let (spec, shown) = program(
            &table(r#"table t proc-exec "table-x -f /etc/x.conf" group mail"#),
            &options,
        )
        .unwrap();
        assert_eq!(spec.command, "table-x -f /etc/x.conf");
        assert_eq!(spec.user.as_deref(), Some("_smtpd"));
        assert_eq!(spec.group.as_deref(), Some("mail"));
        assert_eq!(shown, r#"proc-exec "table-x -f /etc/x.conf""#);
        let (spec, _) = program(
            &table(r#"table t proc-exec "/bin/cat" user nobody"#),
            &options,
        )
        .unwrap();
        assert_eq!(spec.user.as_deref(), Some("nobody"));
        assert!(program(&table("table t { a, b }"), &options).is_none());
    }
}
