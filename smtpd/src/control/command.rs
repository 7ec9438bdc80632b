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
//! Arguments are typed as in OpenSMTPD: `<msgid>` is exactly 8 hex digits
//! and `<evpid>` exactly 16, neither zero; a word that is not one does
//! not fit there (`schedule` takes `<evpid>`, `<msgid>` or `all`).
//!
//! `check table` and `lookup table` are ours (OpenSMTPD has no way to ask a
//! table from the command line): they ask a live table as the daemon would
//! and print the answer. `encrypt [STRING]` needs no daemon: smtpctl hashes
//! the password itself ([`Command::Encrypt`]); `monitor` asks the daemon
//! for its counters each second ([`Command::Monitor`]).

use super::protocol::{Agent, EvpId, HexId, MsgId, Request, Service, Target};

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
    /// `monitor`: print the daemon's counters each second until
    /// interrupted.
    Monitor,
}

/// Builds the request of a pattern from its arguments, in order.
type Build = fn(&[&str]) -> Result<Request, CommandError>;

/// Every command smtpctl knows, in the order possibilities are listed.
const COMMANDS: &[(&str, Build)] = &[
    ("show tables", |_| Ok(Request::ShowTables)),
    ("show filters", |_| Ok(Request::ShowFilters)),
    ("show queue", |_| {
        Ok(Request::ShowQueue {
            target: Target::All,
        })
    }),
    ("show queue <msgid>", |a| {
        Ok(Request::ShowQueue {
            target: Target::Message(id(a[0])?),
        })
    }),
    ("show envelope <evpid>", |a| {
        Ok(Request::ShowEnvelope { evpid: id(a[0])? })
    }),
    ("show message <evpid>", |a| {
        Ok(Request::ShowMessage {
            msgid: id::<EvpId>(a[0])?.msgid(),
        })
    }),
    ("show message <msgid>", |a| {
        Ok(Request::ShowMessage { msgid: id(a[0])? })
    }),
    ("show stats", |_| Ok(Request::ShowStats)),
    ("show status", |_| Ok(Request::ShowStatus)),
    ("show hosts", |_| Ok(Request::ShowHosts)),
    ("show relays", |_| Ok(Request::ShowRelays)),
    ("show routes", |_| Ok(Request::ShowRoutes)),
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
    ("schedule <evpid>", |a| {
        Ok(Request::Schedule { target: target(a)? })
    }),
    ("schedule <msgid>", |a| {
        Ok(Request::Schedule { target: target(a)? })
    }),
    ("schedule all", |_| {
        Ok(Request::Schedule {
            target: Target::All,
        })
    }),
    ("remove <evpid>", |a| {
        Ok(Request::Remove { target: target(a)? })
    }),
    ("remove <msgid>", |a| {
        Ok(Request::Remove { target: target(a)? })
    }),
    ("remove all", |_| {
        Ok(Request::Remove {
            target: Target::All,
        })
    }),
    ("pause envelope <evpid>", |a| {
        Ok(Request::PauseEnvelope { target: target(a)? })
    }),
    ("pause envelope <msgid>", |a| {
        Ok(Request::PauseEnvelope { target: target(a)? })
    }),
    ("pause envelope all", |_| {
        Ok(Request::PauseEnvelope {
            target: Target::All,
        })
    }),
    ("pause mda", |_| Ok(Request::Pause { agent: Agent::Mda })),
    ("pause mta", |_| Ok(Request::Pause { agent: Agent::Mta })),
    ("pause smtp", |_| Ok(Request::Pause { agent: Agent::Smtp })),
    ("resume envelope <evpid>", |a| {
        Ok(Request::ResumeEnvelope { target: target(a)? })
    }),
    ("resume envelope <msgid>", |a| {
        Ok(Request::ResumeEnvelope { target: target(a)? })
    }),
    ("resume envelope all", |_| {
        Ok(Request::ResumeEnvelope {
            target: Target::All,
        })
    }),
    ("resume mda", |_| Ok(Request::Resume { agent: Agent::Mda })),
    ("resume mta", |_| Ok(Request::Resume { agent: Agent::Mta })),
    ("resume smtp", |_| {
        Ok(Request::Resume { agent: Agent::Smtp })
    }),
    ("discover <evpid>", |a| {
        Ok(Request::Discover { evpid: id(a[0])? })
    }),
    ("log verbose", |_| Ok(Request::Log { verbose: true })),
    ("log brief", |_| Ok(Request::Log { verbose: false })),
];

/// Builds a command smtpctl carries out alone from its arguments.
type BuildLocal = fn(&[&str]) -> Command;

/// Commands smtpctl carries out alone, listed after the daemon's.
const LOCAL_COMMANDS: &[(&str, BuildLocal)] = &[
    ("encrypt", |_| Command::Encrypt(None)),
    ("encrypt <string>", |a| {
        Command::Encrypt(Some(a[0].to_owned()))
    }),
    ("monitor", |_| Command::Monitor),
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
/// argument of the right type, in order, or else the only keyword it is a
/// prefix of.
fn choose(next: &[&'static str], word: &str) -> Option<&'static str> {
    if let Some(exact) = next.iter().find(|n| fits(n, word)) {
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

/// Whether `word` is the keyword `next`, or an argument it may be.
fn fits(next: &str, word: &str) -> bool {
    match next {
        "<msgid>" => MsgId::from_hex(word).is_some(),
        "<evpid>" => EvpId::from_hex(word).is_some(),
        _ => is_argument(next) || next == word,
    }
}

/// A `<msgid>` or `<evpid>` argument (already checked by [`fits`]).
fn id<T: HexId>(word: &str) -> Result<T, CommandError> {
    T::from_hex(word).ok_or(CommandError::Invalid)
}

/// The envelope or message the only argument names.
fn target(args: &[&str]) -> Result<Target, CommandError> {
    let word = args.first().copied().unwrap_or_default();
    if let Some(evpid) = EvpId::from_hex(word) {
        return Ok(Target::Envelope(evpid));
    }
    id(word).map(Target::Message)
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
            (&["sh", "tables"], Request::ShowTables),
            (&["show", "filters"], Request::ShowFilters),
            (&["sh", "f"], Request::ShowFilters),
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
                &["loo", "t", "aliases", "alias", "root"],
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
    fn queue_and_scheduler_commands() {
        let msgid = MsgId(0x0a1b_2c3d);
        let evpid = EvpId(0x0a1b_2c3d_0000_0001);
        let all = Target::All;
        let cases: &[(&[&str], Request)] = &[
            (&["show", "queue"], Request::ShowQueue { target: all }),
            (&["sh", "q"], Request::ShowQueue { target: all }),
            (
                &["show", "queue", "0a1b2c3d"],
                Request::ShowQueue {
                    target: Target::Message(msgid),
                },
            ),
            (
                &["show", "envelope", "0A1B2C3D00000001"],
                Request::ShowEnvelope { evpid },
            ),
            (
                &["sh", "m", "0a1b2c3d00000001"],
                Request::ShowMessage { msgid },
            ),
            (
                &["show", "message", "0a1b2c3d"],
                Request::ShowMessage { msgid },
            ),
            (&["show", "stats"], Request::ShowStats),
            (&["show", "statu"], Request::ShowStatus),
            (
                &["schedule", "0a1b2c3d00000001"],
                Request::Schedule {
                    target: Target::Envelope(evpid),
                },
            ),
            (
                &["sc", "0a1b2c3d"],
                Request::Schedule {
                    target: Target::Message(msgid),
                },
            ),
            (&["schedule", "all"], Request::Schedule { target: all }),
            (&["rem", "a"], Request::Remove { target: all }),
            (
                &["pause", "envelope", "0a1b2c3d"],
                Request::PauseEnvelope {
                    target: Target::Message(msgid),
                },
            ),
            (
                &["resume", "e", "all"],
                Request::ResumeEnvelope { target: all },
            ),
            (&["pause", "mda"], Request::Pause { agent: Agent::Mda }),
            (&["p", "mt"], Request::Pause { agent: Agent::Mta }),
            (&["resume", "s"], Request::Resume { agent: Agent::Smtp }),
            (
                &["discover", "0a1b2c3d00000001"],
                Request::Discover { evpid },
            ),
            (&["log", "v"], Request::Log { verbose: true }),
            (&["log", "brief"], Request::Log { verbose: false }),
        ];
        for (words, expected) in cases {
            assert_eq!(
                parse(words),
                Ok(Command::Daemon(expected.clone())),
                "{words:?}"
            );
        }
        assert_eq!(parse(&["monitor"]), Ok(Command::Monitor));
        assert_eq!(parse(&["mon"]), Ok(Command::Monitor));
    }

    #[test]
    fn ids_must_be_hex_of_their_width_and_not_zero() {
        let schedule = possibilities(&["schedule <evpid>", "schedule <msgid>", "schedule all"]);
        for word in [
            "0a1b2c3",
            "0a1b2c3d0",
            "00000000",
            "0000000000000000",
            "0a1b2c3g",
            "bob",
        ] {
            assert_eq!(parse(&["schedule", word]), Err(schedule.clone()), "{word}");
        }
        assert_eq!(
            parse(&["show", "envelope", "0a1b2c3d"]),
            Err(possibilities(&["show envelope <evpid>"]))
        );
        assert_eq!(
            parse(&["discover", "0a1b2c3d"]),
            Err(possibilities(&["discover <evpid>"]))
        );
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
        let all = possibilities(&[
            "show", "update", "check", "lookup", "schedule", "remove", "pause", "resume",
            "discover", "log", "encrypt", "monitor",
        ]);
        let show = possibilities(&[
            "show tables",
            "show filters",
            "show queue",
            "show envelope",
            "show message",
            "show stats",
            "show status",
            "show hosts",
            "show relays",
            "show routes",
        ]);
        let cases: &[(&[&str], CommandError)] = &[
            (&[], all.clone()),
            (&["reboot"], all.clone()),
            // Ambiguous prefixes: show or schedule, lookup or log.
            (&["s"], all.clone()),
            (&["lo"], all),
            (&["show"], show.clone()),
            (&["show", "st"], show),
            (
                &["pause"],
                possibilities(&["pause envelope", "pause mda", "pause mta", "pause smtp"]),
            ),
            (&["show", "queue", "0a1b2c3d", "x"], CommandError::Invalid),
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
                .map(|w| match *w {
                    "<service>" => "alias",
                    "<msgid>" => "0a1b2c3d",
                    "<evpid>" => "0a1b2c3d00000001",
                    other => other,
                })
                .collect();
            assert!(parse(&words).is_ok(), "{pattern}");
        }
    }
}
