//! Where `sendmail`, `mailq` and `newaliases` find the daemon: its control
//! socket and its offline queue.
//!
//! They run as any user, with sendmail's options only, so they cannot take
//! smtpctl's `-s` and `--data-dir`. By default they look for the daemon
//! run by root: `/var/run/smtpd.sock` and `/var/spool/smtpd/offline`. A
//! daemon run with `--data-dir DIR` (any daemon not run by root) is found
//! with `SMTPD_DATA_DIR=DIR` in the environment: `DIR/smtpd.sock` and
//! `DIR/spool/offline`; `SMTPD_SOCKET` names the socket when it is
//! elsewhere (`--control-socket`).

use std::ffi::OsString;
use std::path::PathBuf;

use super::offline::OFFLINE_DIR;
use crate::control::{SOCKET_NAME, SYSTEM_SOCKET};
use crate::daemon::ROOT_SPOOL;

/// The environment variable naming the daemon's data directory.
pub const DATA_DIR_VAR: &str = "SMTPD_DATA_DIR";

/// The environment variable naming the daemon's control socket.
pub const SOCKET_VAR: &str = "SMTPD_SOCKET";

/// Where the daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The control socket.
    pub socket: PathBuf,
    /// The offline queue directory.
    pub offline: PathBuf,
    /// The data directory, when [`DATA_DIR_VAR`] names one (`mailq` reads
    /// the spool there when no daemon runs).
    pub data_dir: Option<PathBuf>,
}

impl Paths {
    /// The paths the environment gives ([`DATA_DIR_VAR`], [`SOCKET_VAR`]),
    /// else the system daemon's.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os(SOCKET_VAR), std::env::var_os(DATA_DIR_VAR))
    }

    /// The paths for a socket and a data directory, either given or not.
    pub fn new(socket: Option<OsString>, data_dir: Option<OsString>) -> Self {
        let data_dir = data_dir.filter(|d| !d.is_empty()).map(PathBuf::from);
        let socket = socket.filter(|s| !s.is_empty()).map(PathBuf::from);
        let spool = match &data_dir {
            Some(dir) => dir.join("spool"),
            None => PathBuf::from(ROOT_SPOOL),
        };
        Self {
            socket: socket.unwrap_or_else(|| match &data_dir {
                Some(dir) => dir.join(SOCKET_NAME),
                None => PathBuf::from(SYSTEM_SOCKET),
            }),
            offline: spool.join(OFFLINE_DIR),
            data_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let system = Paths::new(None, None);
        assert_eq!(system.socket, PathBuf::from("/var/run/smtpd.sock"));
        assert_eq!(system.offline, PathBuf::from("/var/spool/smtpd/offline"));
        let user = Paths::new(None, Some("/home/u/smtpd".into()));
        assert_eq!(user.socket, PathBuf::from("/home/u/smtpd/smtpd.sock"));
        assert_eq!(user.offline, PathBuf::from("/home/u/smtpd/spool/offline"));
        assert_eq!(user.data_dir, Some(PathBuf::from("/home/u/smtpd")));
        assert_eq!(system.data_dir, None);
        let both = Paths::new(Some("/tmp/s.sock".into()), Some("/d".into()));
        assert_eq!(both.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(both.offline, PathBuf::from("/d/spool/offline"));
        // Empty values count as unset.
        assert_eq!(Paths::new(Some("".into()), Some("".into())), system);
    }
}
