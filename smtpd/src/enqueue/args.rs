//! The command line of `sendmail`, read as OpenSMTPD's `enqueue.c` reads
//! it with `getopt(3)` (the portable build's glibc `getopt`, which also
//! takes options after the recipients; `--` ends the options).
//!
//! `-f FROM` (or `-r FROM`) sets the envelope sender, `-F NAME` the name
//! of the `From:` header added when the message has none, `-t` takes the
//! recipients from the `To:`, `Cc:` and `Bcc:` headers as well, `-v`
//! shows the SMTP dialogue, `-N`, `-R` and `-V` set the DSN parameters
//! `NOTIFY`, `RET` and `ENVID`. Sendmail's other options are accepted and
//! ignored as OpenSMTPD ignores them: `-i`, `-m`, `-x`, `-A`, `-B`, `-b`,
//! `-e`, `-L`, `-o`, `-p` (with an argument, so `-oi`, `-odq`, `-oem`,
//! `-bs` are one option each) and `-E`, `-J` (optional argument). Any
//! argument starting with `-bi` makes the program `newaliases`; `-q` asks
//! to run the queue, which OpenSMTPD does not do (status 70). `-S` is the
//! daemon's own mark on replayed offline submissions.

use std::fmt;

/// What a `sendmail` command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Send the message on standard input.
    Send(Options),
    /// `-bi`: rebuild the aliases (`newaliases`).
    Newaliases,
    /// `-q`: run the queue now.
    RunQueue,
}

/// The options of a submission.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `-f` / `-r`: the envelope sender, as given.
    pub from: Option<String>,
    /// `-F`: the full name for an added `From:` header.
    pub full_name: Option<String>,
    /// `-t`: recipients from the headers too.
    pub header_recipients: bool,
    /// `-v`: show the SMTP dialogue on standard output.
    pub verbose: bool,
    /// `-N`: the DSN `NOTIFY` parameter of every recipient.
    pub dsn_notify: Option<String>,
    /// `-R`: the DSN `RET` parameter.
    pub dsn_ret: Option<String>,
    /// `-V`: the DSN `ENVID` parameter.
    pub dsn_envid: Option<String>,
    /// `-S`: a submission replayed from the offline queue.
    pub replayed: bool,
    /// The recipients given as arguments (each may hold a comma list).
    pub recipients: Vec<String>,
}

/// A command line `getopt` refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    /// An option letter that is not known.
    Unknown(char),
    /// An option that needs an argument came last.
    MissingArgument(char),
}

/// As OpenBSD's `getopt` words them.
impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(c) => write!(f, "unknown option -- {c}"),
            Self::MissingArgument(c) => write!(f, "option requires an argument -- {c}"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// How an option letter takes its argument.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    Required,
    /// Only when attached (`-Efoo`).
    Optional,
}

/// The option letters of `enqueue.c`'s getopt string
/// `A:B:b:E::e:F:f:iJ::L:mN:o:p:qr:R:StvV:x`.
fn takes(letter: char) -> Option<Takes> {
    Some(match letter {
        'A' | 'B' | 'b' | 'e' | 'F' | 'f' | 'L' | 'N' | 'o' | 'p' | 'r' | 'R' | 'V' => {
            Takes::Required
        }
        'E' | 'J' => Takes::Optional,
        'i' | 'm' | 'q' | 'S' | 't' | 'v' | 'x' => Takes::Nothing,
        _ => return None,
    })
}

/// Reads the arguments that follow the program's name.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Mode, ArgsError> {
    if args.iter().any(|a| a.as_ref().starts_with("-bi")) {
        return Ok(Mode::Newaliases);
    }
    let mut options = Options::default();
    let mut rest = args.iter().map(AsRef::as_ref);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            options.recipients.extend(rest.by_ref().map(str::to_owned));
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            options.recipients.push(arg.to_owned());
            continue;
        };
        for (at, letter) in cluster.char_indices() {
            let attached = &cluster[at + letter.len_utf8()..];
            let value = match takes(letter) {
                None => return Err(ArgsError::Unknown(letter)),
                Some(Takes::Nothing) => None,
                Some(Takes::Optional) => Some(attached.to_owned()).filter(|v| !v.is_empty()),
                Some(Takes::Required) if !attached.is_empty() => Some(attached.to_owned()),
                Some(Takes::Required) => match rest.next() {
                    Some(next) => Some(next.to_owned()),
                    None => return Err(ArgsError::MissingArgument(letter)),
                },
            };
            if !apply(&mut options, letter, value.clone()) {
                return Ok(Mode::RunQueue);
            }
            if value.is_some() || takes(letter) == Some(Takes::Optional) {
                break;
            }
        }
    }
    Ok(Mode::Send(options))
}

/// Records one option; `false` for `-q`, which ends the parse.
fn apply(options: &mut Options, letter: char, value: Option<String>) -> bool {
    match letter {
        'f' | 'r' => options.from = value,
        'F' => options.full_name = value,
        'N' => options.dsn_notify = value,
        'R' => options.dsn_ret = value,
        'V' => options.dsn_envid = value,
        'S' => options.replayed = true,
        't' => options.header_recipients = true,
        'v' => options.verbose = true,
        'q' => return false,
        // Sendmail compatibility, ignored as OpenSMTPD ignores them.
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(args: &[&str]) -> Options {
        match parse(args) {
            Ok(Mode::Send(options)) => options,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn recipients_and_the_options_that_matter() {
        let o = send(&[
            "-t",
            "-f",
            "me@example.org",
            "-F",
            "Me Myself",
            "bob",
            "carol@x",
        ]);
        assert!(o.header_recipients);
        assert_eq!(o.from.as_deref(), Some("me@example.org"));
        assert_eq!(o.full_name.as_deref(), Some("Me Myself"));
        assert_eq!(o.recipients, strings(&["bob", "carol@x"]));
        // Attached arguments, -r as -f, DSN parameters, clusters.
        let o = send(&[
            "-fme",
            "-vt",
            "-NSUCCESS,FAILURE",
            "-R",
            "HDRS",
            "-Vid1",
            "a",
        ]);
        assert_eq!(o.from.as_deref(), Some("me"));
        assert!(o.verbose && o.header_recipients);
        assert_eq!(o.dsn_notify.as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(o.dsn_ret.as_deref(), Some("HDRS"));
        assert_eq!(o.dsn_envid.as_deref(), Some("id1"));
        assert_eq!(send(&["-r", "<>"]).from.as_deref(), Some("<>"));
        // A cluster ends at a letter that takes an argument.
        let o = send(&["-tfme", "x"]);
        assert!(o.header_recipients);
        assert_eq!(o.from.as_deref(), Some("me"));
        assert!(send(&["-S", "x"]).replayed);
    }

    #[test]
    fn sendmail_options_are_accepted_and_ignored() {
        let ignored: &[&[&str]] = &[
            &["-i"],
            &["-oi"],
            &["-odq"],
            &["-oem"],
            &["-o", "i"],
            &["-bs"],
            &["-bm"],
            &["-m", "-x"],
            &["-Ameta", "-B", "8BITMIME", "-em", "-L", "tag", "-p", "smtp"],
            &["-E"],
            &["-Efoo"],
            &["-J"],
            &["-it"],
        ];
        for args in ignored {
            let mut with_rcpt = args.to_vec();
            with_rcpt.push("bob");
            let o = send(&with_rcpt);
            assert_eq!(o.recipients, strings(&["bob"]), "{args:?}");
            assert_eq!(o.from, None, "{args:?}");
        }
        assert!(send(&["-it", "bob"]).header_recipients);
    }

    #[test]
    fn options_after_recipients_and_the_end_of_options() {
        let o = send(&["bob", "-f", "me", "carol"]);
        assert_eq!(o.recipients, strings(&["bob", "carol"]));
        assert_eq!(o.from.as_deref(), Some("me"));
        let o = send(&["-t", "--", "-notanoption", "x"]);
        assert_eq!(o.recipients, strings(&["-notanoption", "x"]));
        // A lone dash is an operand.
        assert_eq!(send(&["-"]).recipients, strings(&["-"]));
        assert_eq!(send(&[]), Options::default());
    }

    #[test]
    fn newaliases_and_queue_runs() {
        assert_eq!(parse(&["-bi"]), Ok(Mode::Newaliases));
        assert_eq!(parse(&["-t", "-bi", "-z"]), Ok(Mode::Newaliases));
        assert_eq!(parse(&["-q"]), Ok(Mode::RunQueue));
        assert_eq!(parse(&["-q30m"]), Ok(Mode::RunQueue));
        assert_eq!(parse(&["-t", "-q", "-z"]), Ok(Mode::RunQueue));
    }

    #[test]
    fn getopt_errors() {
        assert_eq!(parse(&["-z"]), Err(ArgsError::Unknown('z')));
        assert_eq!(parse(&["-tz"]), Err(ArgsError::Unknown('z')));
        assert_eq!(parse(&["bob", "-f"]), Err(ArgsError::MissingArgument('f')));
        assert_eq!(ArgsError::Unknown('z').to_string(), "unknown option -- z");
        assert_eq!(
            ArgsError::MissingArgument('f').to_string(),
            "option requires an argument -- f"
        );
    }
}
