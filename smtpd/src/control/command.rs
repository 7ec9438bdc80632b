//! smtpctl's command words, read as OpenSMTPD's `parser.c` reads them.
//!
//! Commands are patterns of words (`update table <name>`); a word in angle
//! brackets takes any argument. Each word of the command line is matched
//! against the words that may come next: exactly, or as an argument, or
//! else as the unambiguous prefix of a keyword (`sh tab` is `show
//! tables`). When the words stop short of a command or one of them fits
//! nothing, the error lists the possibilities at that point, as OpenSMTPD
//! prints them; words past the end of a command give `invalid command`.
//!
//! `check table` and `lookup table` are ours (OpenSMTPD has no way to ask a
//! table from the command line): they ask a live table as the daemon would
//! and print the answer. `encrypt [STRING]` needs no daemon: smtpctl hashes
//! the password itself ([`Command::Encrypt`]).

use super::protocol::{Request, Service};

/// Why the words are not a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Words left over after a complete command.
    #[error("invalid command")]
    Invalid,
    /// The words stop short, or one fits nothing: what may come there, each
    /// written after the words matched so far.
    #[error("possibilities are:\n{}", .0.join("\n"))]
    Possibilities(Vec<String>),
    /// A service argument that is not a service name.
    #[error("invalid service: {0} (one of: {list})", list = service_list())]
    Service(String),
}

/// What a command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A request for the daemon.
    Daemon(Request),
    /// `encrypt [STRING]`: print a bcrypt hash of STRING, or of each line
    /// of standard input without it.
    Encrypt(Option<String>),
}

/// Builds the request of a pattern from its arguments, in order.
type Build = fn(&[&str]) -> Result<Request, CommandError>;

/// Every command smtpctl knows, in the order possibilities are listed.
const COMMANDS: &[(&str, Build)] = &[
    ("show tables", |_| Ok(Request::ShowTables)),
    ("update table <name>", |a| {
        Ok(Request::UpdateTable {
            name: a[0].to_owned(),
        })
    }),
    ("check table <name> <service> <key>", |a| {
        Ok(Request::CheckTable {
            name: a[0].to_owned(),
            service: service(a[1])?,
            key: a[2].to_owned(),
        })
    }),
    ("lookup table <name> <service> <key>", |a| {
        Ok(Request::LookupTable {
            name: a[0].to_owned(),
            service: service(a[1])?,
            key: a[2].to_owned(),
        })
    }),
];

/// Builds a command smtpctl carries out alone from its arguments.
type BuildLocal = fn(&[&str]) -> Command;

/// Commands smtpctl carries out alone, listed after the daemon's.
const LOCAL_COMMANDS: &[(&str, BuildLocal)] = &[
    ("encrypt", |_| Command::Encrypt(None)),
    ("encrypt <string>", |a| {
        Command::Encrypt(Some(a[0].to_owned()))
    }),
];

/// Reads command-line words (`["update", "table", "aliases"]`) as a command.
pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Command, CommandError> {
    let mut path: Vec<&str> = Vec::new();
    let mut args: Vec<&str> = Vec::new();
    for word in words {
        let word = word.as_ref();
        let next = next_words(&path);
        let Some(chosen) = choose(&next, word) else {
            return Err(failure(&path, &next));
        };
        if is_argument(chosen) {
            args.push(word);
        }
        path.push(chosen);
    }
    let is_path = |pattern: &&'static str| words_of(pattern).eq(path.iter().copied());
    if let Some((_, build)) = COMMANDS.iter().find(|(pattern, _)| is_path(pattern)) {
        return build(&args).map(Command::Daemon);
    }
    match LOCAL_COMMANDS.iter().find(|(pattern, _)| is_path(pattern)) {
        Some((_, build)) => Ok(build(&args)),
        None => Err(failure(&path, &next_words(&path))),
    }
}

/// Every command pattern, for usage messages.
pub fn patterns() -> impl Iterator<Item = &'static str> {
    let local = LOCAL_COMMANDS.iter().map(|(pattern, _)| *pattern);
    COMMANDS.iter().map(|(pattern, _)| *pattern).chain(local)
}

/// The words that may follow `path`, each once, in pattern order.
fn next_words(path: &[&str]) -> Vec<&'static str> {
    let mut next = Vec::new();
    for pattern in patterns() {
        let mut words = words_of(pattern);
        if words.by_ref().take(path.len()).eq(path.iter().copied()) {
            if let Some(word) = words.next() {
                if !next.contains(&word) {
                    next.push(word);
                }
            }
        }
    }
    next
}

/// The word of `next` that `word` stands for: an exact keyword or an
/// argument, in order, or else the only keyword it is a prefix of.
fn choose(next: &[&'static str], word: &str) -> Option<&'static str> {
    if let Some(exact) = next.iter().find(|n| is_argument(n) || **n == word) {
        return Some(exact);
    }
    let mut prefixed = next
        .iter()
        .filter(|n| !is_argument(n) && n.starts_with(word));
    match (prefixed.next(), prefixed.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

fn failure(path: &[&str], next: &[&str]) -> CommandError {
    if next.is_empty() {
        return CommandError::Invalid;
    }
    CommandError::Possibilities(
        next.iter()
            .map(|n| {
                path.iter()
                    .chain([n])
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect(),
    )
}

fn words_of(pattern: &'static str) -> impl Iterator<Item = &'static str> {
    pattern.split(' ')
}

fn is_argument(word: &str) -> bool {
    word.starts_with('<')
}

fn service(name: &str) -> Result<Service, CommandError> {
    Service::from_name(name.as_bytes()).ok_or_else(|| CommandError::Service(name.to_owned()))
}

fn service_list() -> String {
    Service::ALL.map(Service::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn possibilities(list: &[&str]) -> CommandError {
        CommandError::Possibilities(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn commands_and_their_abbreviations() {
        let update = Request::UpdateTable {
            name: "aliases".into(),
        };
        let cases: &[(&[&str], Request)] = &[
            (&["show", "tables"], Request::ShowTables),
            (&["sh", "t"], Request::ShowTables),
            (&["s", "tables"], Request::ShowTables),
            (&["update", "table", "aliases"], update.clone()),
            (&["up", "tab", "aliases"], update),
            // An argument is taken as written, even when it looks like a
            // keyword.
            (
                &["update", "table", "table"],
                Request::UpdateTable {
                    name: "table".into(),
                },
            ),
            (
                &["check", "table", "domains", "domain", "example.org"],
                Request::CheckTable {
                    name: "domains".into(),
                    service: Service::Domain,
                    key: "example.org".into(),
                },
            ),
            (
                &["l", "t", "aliases", "alias", "root"],
                Request::LookupTable {
                    name: "aliases".into(),
                    service: Service::Alias,
                    key: "root".into(),
                },
            ),
        ];
        for (words, expected) in cases {
            assert_eq!(
                parse(words),
                Ok(Command::Daemon(expected.clone())),
                "{words:?}"
            );
        }
    }

    #[test]
    fn encrypt_runs_without_the_daemon() {
        let cases: &[(&[&str], Command)] = &[
            (&["encrypt"], Command::Encrypt(None)),
            (&["enc"], Command::Encrypt(None)),
            (
                &["encrypt", "pass word"],
                Command::Encrypt(Some("pass word".into())),
            ),
            (&["e", "show"], Command::Encrypt(Some("show".into()))),
        ];
        for (words, expected) in cases {
            assert_eq!(parse(words).as_ref(), Ok(expected), "{words:?}");
        }
        assert_eq!(parse(&["encrypt", "a", "b"]), Err(CommandError::Invalid));
    }

    #[test]
    fn errors_list_what_may_come_next() {
        let all = possibilities(&["show", "update", "check", "lookup", "encrypt"]);
        let cases: &[(&[&str], CommandError)] = &[
            (&[], all.clone()),
            (&["reboot"], all),
            (&["show"], possibilities(&["show tables"])),
            (&["show", "queue"], possibilities(&["show tables"])),
            (
                &["update", "table"],
                possibilities(&["update table <name>"]),
            ),
            (
                &["lookup", "table", "t", "alias"],
                possibilities(&["lookup table <name> <service> <key>"]),
            ),
            (&["show", "tables", "now"], CommandError::Invalid),
            (&["update", "table", "a", "b"], CommandError::Invalid),
            (
                &["check", "table", "t", "nope", "k"],
                CommandError::Service("nope".into()),
            ),
        ];
        for (words, expected) in cases {
            assert_eq!(parse(words).as_ref(), Err(expected), "{words:?}");
        }
    }

    #[test]
    fn errors_print_as_openbsd_smtpctl_prints_them() {
        assert_eq!(
            parse(&["update"]).unwrap_err().to_string(),
            "possibilities are:\nupdate table"
        );
        assert_eq!(
            parse(&["show", "tables", "x"]).unwrap_err().to_string(),
            "invalid command"
        );
        let service = parse(&["check", "table", "t", "nope", "k"])
            .unwrap_err()
            .to_string();
        assert!(
            service.starts_with("invalid service: nope (one of: alias, domain,"),
            "{service}"
        );
    }

    #[test]
    fn every_pattern_is_reachable() {
        for pattern in patterns() {
            let words: Vec<&str> = pattern.split(' ').collect();
            let words: Vec<&str> = words
                .iter()
                .map(|w| if *w == "<service>" { "alias" } else { w })
                .collect();
            assert!(parse(&words).is_ok(), "{pattern}");
        }
    }
}
