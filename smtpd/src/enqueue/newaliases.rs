//! `newaliases` (and `sendmail -bi`): check the aliases file and have a
//! running daemon read it again.
//!
//! OpenSMTPD's newaliases rebuilds `aliases.db` from the file the
//! configuration's `aliases` table names (`/etc/mail/aliases` when there
//! is none), prints `FILE: N aliases`, then asks a running smtpd to
//! `update table aliases`. This daemon reads `file:` tables as they are
//! (there is no database to rebuild; `db:` tables are refused), so
//! newaliases reads the same file, checks every entry as an aliases value
//! (a broken entry is `FILE:LINE: invalid entry`, status 1, and the daemon
//! is not told), prints the same line, and asks for the same update (its
//! answer is not shown, as in OpenSMTPD). `-f FILE` names the
//! configuration (default `/etc/mail/smtpd.conf`).

use std::io::Write;
use std::path::{Path, PathBuf};

use smtpd_sdk::tablefile::TableFile;

use super::paths::Paths;
use crate::config::{Config, LoadOptions, TableBackend};
use crate::control::client::Client;
use crate::control::protocol::Request;
use crate::delivery::alias;

/// The configuration read by default.
pub const DEFAULT_CONFIG: &str = "/etc/mail/smtpd.conf";

/// The aliases file when the configuration has no `aliases` table.
pub const DEFAULT_ALIASES: &str = "/etc/mail/aliases";

/// Runs newaliases with `args` (without the program's name); returns the
/// exit status.
pub fn newaliases(
    program: &str,
    args: &[String],
    paths: &Paths,
    output: &mut dyn Write,
    error: &mut dyn Write,
) -> i32 {
    let Some(config_path) = config_argument(args) else {
        let _ = writeln!(error, "usage: {program} [-f file]");
        return 1;
    };
    let config = match Config::load(&config_path, &LoadOptions::default()) {
        Ok(loaded) => loaded.config,
        Err(e) => {
            let _ = writeln!(error, "{e}");
            return 1;
        }
    };
    let source = match config.tables.iter().find(|t| t.name == "aliases") {
        None => PathBuf::from(DEFAULT_ALIASES),
        Some(table) => match &table.backend {
            TableBackend::File { path, .. } => path.clone(),
            TableBackend::Db { path } => path.with_extension(""),
            _ => {
                let _ = writeln!(
                    error,
                    "{program}: table aliases is not a file: nothing to check"
                );
                notify(paths);
                return 0;
            }
        },
    };
    match count_aliases(&source) {
        Ok(count) => {
            let _ = writeln!(output, "{}: {count} aliases", source.display());
            notify(paths);
            0
        }
        Err(reason) => {
            let _ = writeln!(error, "{program}: {reason}");
            1
        }
    }
}

/// The configuration of `-f FILE` / `-fFILE`, or the default; `None` for
/// anything else (usage).
fn config_argument(args: &[String]) -> Option<PathBuf> {
    match args {
        [] => Some(PathBuf::from(DEFAULT_CONFIG)),
        [flag, file] if flag == "-f" => Some(PathBuf::from(file)),
        [flag] if flag.starts_with("-f") && flag.len() > 2 => Some(PathBuf::from(&flag[2..])),
        _ => None,
    }
}

/// The entries of the aliases file at `source`, each checked.
fn count_aliases(source: &Path) -> Result<usize, String> {
    let shown = source.display();
    let content = std::fs::read(source).map_err(|e| format!("{shown}: {e}"))?;
    let file = TableFile::parse(&content).map_err(|e| format!("{shown}:{}: {}", e.line, e.kind))?;
    for entry in file.entries() {
        let valid = entry
            .value
            .as_deref()
            .is_some_and(|value| alias::parse_value(value).is_ok());
        if !valid {
            return Err(format!("{shown}:{}: invalid entry", entry.line));
        }
    }
    Ok(file.len())
}

/// Asks a running daemon to read the aliases again; silent, as
/// OpenSMTPD's.
fn notify(paths: &Paths) {
    if let Ok(mut client) = Client::connect(&paths.socket) {
        let _ = client.request(&Request::UpdateTable {
            name: "aliases".to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("smtpd-newaliases-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Runs newaliases on `config` in `dir`, with no daemon to notify.
    fn run(dir: &Dir, config: &str) -> (i32, String, String) {
        let path = dir.0.join("smtpd.conf");
        std::fs::write(&path, config).unwrap();
        let paths = Paths::new(Some(dir.0.join("none.sock").into()), None);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = ["-f".to_owned(), path.display().to_string()];
        let status = newaliases("newaliases", &args, &paths, &mut out, &mut err);
        (
            status,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn the_aliases_table_file_is_counted() {
        let dir = Dir::new("count");
        let aliases = dir.0.join("aliases");
        std::fs::write(
            &aliases,
            "# comment\nroot: alice\npostmaster: root, bob@example.org\n",
        )
        .unwrap();
        let config = format!(
            "table aliases file:{}\naction \"l\" mbox alias <aliases>\nmatch for local action \"l\"\n",
            aliases.display()
        );
        let (status, out, err) = run(&dir, &config);
        assert_eq!((status, err.as_str()), (0, ""));
        assert_eq!(out, format!("{}: 2 aliases\n", aliases.display()));
    }

    #[test]
    fn a_broken_entry_is_named() {
        let dir = Dir::new("broken");
        let aliases = dir.0.join("aliases");
        std::fs::write(&aliases, "root: alice\nbad: \"unclosed\n").unwrap();
        assert_eq!(
            count_aliases(&aliases),
            Err(format!("{}:2: invalid entry", aliases.display()))
        );
        std::fs::write(&aliases, "root: alice\nlist-line-without-value\n").unwrap();
        assert_eq!(
            count_aliases(&aliases),
            Err(format!("{}:2: a key without a value in a mapping of keys to values (the form set by line 1)", aliases.display()))
        );
        // The configuration's own check names the bad value first.
        let config = format!(
            "table aliases file:{}\naction \"l\" mbox alias <aliases>\nmatch for local action \"l\"\n",
            aliases.display()
        );
        std::fs::write(&aliases, "root: alice\nbad: \"unclosed\n").unwrap();
        let (status, out, err) = run(&dir, &config);
        assert_eq!((status, out.as_str()), (1, ""));
        assert!(err.contains(&format!("{}:2:", aliases.display())), "{err}");
        let missing = dir.0.join("missing");
        assert!(count_aliases(&missing)
            .unwrap_err()
            .starts_with(&format!("{}: ", missing.display())));
    }

    #[test]
    fn other_tables_and_bad_arguments() {
        let dir = Dir::new("inline");
        let config = "table aliases { root = alice }\naction \"l\" mbox alias <aliases>\nmatch for local action \"l\"\n";
        let (status, _, err) = run(&dir, config);
        assert_eq!(status, 0);
        assert!(err.contains("table aliases is not a file"), "{err}");
        let paths = Paths::new(None, None);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = ["-x".to_owned()];
        assert_eq!(
            newaliases("newaliases", &args, &paths, &mut out, &mut err),
            1
        );
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "usage: newaliases [-f file]\n"
        );
        assert_eq!(
            config_argument(&["-f/x".to_owned()]),
            Some(PathBuf::from("/x"))
        );
    }
}
