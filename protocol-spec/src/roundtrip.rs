//! Raw round trips through a table backend process, for benchmarks: the
//! backend driven directly over its pipes, with no daemon in between.
//!
//! [`throughput`] writes lookups of the standard fixture's keys in batches
//! from one thread, keeping up to a window in flight, while another reads
//! and checks every answer; [`latencies`] sends them one at a time. Both
//! start the backend with the table handshake and end by closing its input
//! and checking that it exits 0 with nothing more to say. The Rust SDK's
//! round-trip benchmark and the daemon's table-lookup benchmark use it, so
//! their raw figures are measured the same way.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// A failed run, described.
pub type Error = String;

/// Keys of the standard fixture looked up, with whether it has them.
pub const STANDARD_KEYS: &[(&str, bool)] = &[
    ("postmaster", true),
    ("abuse", true),
    ("alice", true),
    ("bob", true),
    ("example.org", true),
    ("192.0.2.1", true),
    ("[2001:db8::1]", true),
    ("carol@example.org", true),
    ("pipe", true),
    ("spaced", true),
    ("nobody-here", false),
    ("mallory@example.com", false),
];

/// The key of the `n`th lookup and whether the fixture has it.
pub fn expected(n: usize) -> (&'static str, bool) {
    STANDARD_KEYS[n % STANDARD_KEYS.len()]
}

/// The `n`th lookup request (its id is `n`).
pub fn request(n: usize) -> String {
    let (key, _) = expected(n);
    format!("table|0.1|1731000001.000412|standard|lookup|alias|{n:08x}|{key}\n")
}

fn io(e: std::io::Error) -> Error {
    e.to_string()
}

/// Spawns the backend and performs the handshake.
fn start(cmd: &mut Command) -> Result<(Child, ChildStdin, BufReader<ChildStdout>), Error> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawning the backend: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdout = BufReader::with_capacity(256 * 1024, stdout);
    stdin
        .write_all(
            b"config|smtpd-version|7.8.0\nconfig|protocol|0.1\nconfig|tablename|standard\nconfig|ready\n",
        )
        .map_err(io)?;
    stdin.flush().map_err(io)?;
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).map_err(io)? == 0 {
            return Err("the backend closed its output during the handshake".into());
        }
        match line.trim_end() {
            "register|ready" => break,
            l if l.starts_with("register|") => {}
            l => return Err(format!("unexpected handshake line {l:?}")),
        }
    }
    Ok((child, stdin, stdout))
}

/// Checks one answer: its id must be one of the `count` sent and its status
/// what the fixture says for the key sent with that id.
pub fn check(line: &[u8], count: usize) -> Result<(), Error> {
    let text = std::str::from_utf8(line).map_err(|_| "answer not UTF-8")?;
    let rest = text
        .strip_prefix("lookup-result|")
        .ok_or_else(|| format!("unexpected answer {text:?}"))?;
    let (id, status) = rest.split_at_checked(8).ok_or("short answer")?;
    let id = usize::from_str_radix(id, 16).map_err(|_| "bad id")?;
    if id >= count {
        return Err(format!("unknown id in {text:?}"));
    }
    let ok = if expected(id).1 {
        status.starts_with("|found|")
    } else {
        status == "|not-found\n"
    };
    if ok {
        Ok(())
    } else {
        Err(format!("wrong answer {text:?}"))
    }
}

/// Lookups per second: `count` lookups with up to `window` in flight.
pub fn throughput(cmd: &mut Command, count: usize, window: usize) -> Result<f64, Error> {
    let (mut child, mut stdin, mut stdout) = start(cmd)?;
    let requests: Vec<String> = (0..count).map(request).collect();
    // The reader hands back credits, a quarter window at a time, so that
    // between three quarters of a window and a full one stay in flight.
    let step = (window / 4).max(1);
    let (credits, credited) = std::sync::mpsc::channel::<usize>();
    let began = Instant::now();
    let reader = std::thread::spawn(move || -> Result<BufReader<ChildStdout>, Error> {
        let mut line = Vec::with_capacity(256);
        for n in 1..=count {
            line.clear();
            if stdout.read_until(b'\n', &mut line).map_err(io)? == 0 {
                return Err("the backend closed its output".into());
            }
            check(&line, count)?;
            if n % step == 0 {
                // The writer may be done already; then nobody listens.
                credits.send(step).ok();
            }
        }
        Ok(stdout)
    });
    let mut batch = Vec::with_capacity(128 * 1024);
    let (mut sent, mut credit) = (0, window);
    while sent < count {
        while credit < step {
            match credited.recv() {
                Ok(n) => credit += n,
                Err(_) => break,
            }
        }
        while let Ok(n) = credited.try_recv() {
            credit += n;
        }
        if credit == 0 {
            break;
        }
        let n = credit.min(count - sent);
        batch.clear();
        for r in &requests[sent..sent + n] {
            batch.extend_from_slice(r.as_bytes());
        }
        stdin.write_all(&batch).map_err(io)?;
        stdin.flush().map_err(io)?;
        sent += n;
        credit -= n;
    }
    let mut stdout = reader.join().map_err(|_| "reader thread panicked")??;
    let elapsed = began.elapsed();
    finish(&mut child, stdin, &mut stdout)?;
    Ok(count as f64 / elapsed.as_secs_f64())
}

/// The time of each of `count` lookups sent one at a time, in order.
pub fn latencies(cmd: &mut Command, count: usize) -> Result<Vec<Duration>, Error> {
    let (mut child, mut stdin, mut stdout) = start(cmd)?;
    let mut times = Vec::with_capacity(count);
    let mut line = Vec::with_capacity(256);
    for n in 0..count {
        let req = request(n);
        let began = Instant::now();
        stdin.write_all(req.as_bytes()).map_err(io)?;
        stdin.flush().map_err(io)?;
        line.clear();
        if stdout.read_until(b'\n', &mut line).map_err(io)? == 0 {
            return Err("the backend closed its output".into());
        }
        times.push(began.elapsed());
        check(&line, count)?;
    }
    finish(&mut child, stdin, &mut stdout)?;
    Ok(times)
}

/// Closes the backend's input and checks that it exits 0 with nothing more
/// to say.
fn finish(
    child: &mut Child,
    stdin: ChildStdin,
    stdout: &mut BufReader<ChildStdout>,
) -> Result<(), Error> {
    drop(stdin);
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).map_err(io)?;
    if !rest.is_empty() {
        return Err(format!(
            "{} unexpected bytes after the last answer",
            rest.len()
        ));
    }
    let status = child.wait().map_err(io)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the backend exited with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked_against_the_fixture() {
        assert!(check(b"lookup-result|00000000|found|root\n", 12).is_ok());
        assert!(check(b"lookup-result|0000000a|not-found\n", 12).is_ok());
        assert!(check(b"lookup-result|0000000a|found|x\n", 12).is_err());
        assert!(check(b"lookup-result|0000000c|found|x\n", 12).is_err());
        assert!(check(b"check-result|00000000|found\n", 12).is_err());
        assert_eq!(
            request(1),
            "table|0.1|1731000001.000412|standard|lookup|alias|00000001|abuse\n"
        );
    }
}
