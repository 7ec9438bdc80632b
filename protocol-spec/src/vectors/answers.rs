//! Matching a backend's answers to the `<` lines of an exchange.
//!
//! Answers are associated with expected lines by the family's rule, not by
//! position: table and queue answers by request id, filter answers by
//! session id and token (data-lines of one session in the order listed).
//! Each expected line then has to match its answer as a [`Pattern`].

use super::{Captures, Expected, Family};

/// A difference between the answers expected and the answers given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// No answer came for this expected line.
    Missing {
        /// The `<` line's number.
        line: usize,
        /// The expected line, with captured values filled in.
        expected: Vec<u8>,
    },
    /// The answer for this expected line is different.
    Different {
        /// The `<` line's number.
        line: usize,
        /// The expected line, with captured values filled in.
        expected: Vec<u8>,
        /// What the backend answered.
        got: Vec<u8>,
    },
    /// An answer that no expected line accounts for.
    Unexpected {
        /// What the backend answered.
        got: Vec<u8>,
    },
}

/// The fields an answer is matched by: the request id for tables and
/// queues, the line type, session id and token for filters (ids compared as
/// numbers, as the daemon reads them). `None` for a line without them.
pub fn answer_key(family: Family, line: &[u8]) -> Option<Vec<u8>> {
    let fields: Vec<&[u8]> = line.splitn(4, |&b| b == b'|').collect();
    match family {
        Family::Table | Family::Queue => fields.get(1).map(|id| id.to_vec()),
        Family::Filter => {
            let kind = fields.first()?;
            let session = hex_key(fields.get(1)?);
            let token = hex_key(fields.get(2)?);
            let mut key = kind.to_vec();
            for part in [session, token] {
                key.push(b'|');
                key.extend_from_slice(&part);
            }
            Some(key)
        }
    }
}

/// A filter id as a number when it is one, else as written.
fn hex_key(raw: &[u8]) -> Vec<u8> {
    let number = std::str::from_utf8(raw)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 16)
        .and_then(|s| u64::from_str_radix(s, 16).ok());
    match number {
        Some(n) => format!("{n:016x}").into_bytes(),
        None => raw.to_vec(),
    }
}

/// The part of a key that names the request, without the filter line type.
fn request_part(family: Family, key: &[u8]) -> &[u8] {
    match family {
        Family::Filter => key
            .iter()
            .position(|&b| b == b'|')
            .map_or(key, |n| &key[n..]),
        Family::Table | Family::Queue => key,
    }
}

/// Matches `answers` (in arrival order) against `expected` (in file order),
/// adding captured values to `captures`. Returns every difference; an empty
/// list means the exchange went as the vector says.
pub fn match_answers(
    family: Family,
    expected: &[Expected],
    answers: &[Vec<u8>],
    captures: &mut Captures,
) -> Vec<Mismatch> {
    let keys: Vec<Option<Vec<u8>>> = answers.iter().map(|a| answer_key(family, a)).collect();
    let mut used = vec![false; answers.len()];
    let mut mismatches = Vec::new();
    for want in expected {
        let want_key = answer_key(family, want.pattern.text());
        let unused = |i: &usize| !used[*i];
        let same = |i: &usize, exact: bool| match (&keys[*i], &want_key) {
            (Some(k), Some(w)) if exact => k == w,
            (Some(k), Some(w)) => request_part(family, k) == request_part(family, w),
            // Without a key to go by, take answers in arrival order.
            (_, None) => true,
            (None, Some(_)) => false,
        };
        let found = (0..answers.len())
            .filter(unused)
            .find(|i| same(i, true))
            .or_else(|| (0..answers.len()).filter(unused).find(|i| same(i, false)));
        let Some(i) = found else {
            mismatches.push(Mismatch::Missing {
                line: want.line,
                expected: want.pattern.render(captures),
            });
            continue;
        };
        used[i] = true;
        if !want.pattern.matches(&answers[i], captures) {
            mismatches.push(Mismatch::Different {
                line: want.line,
                expected: want.pattern.render(captures),
                got: answers[i].clone(),
            });
        }
    }
    for (answer, used) in answers.iter().zip(used) {
        if !used {
            mismatches.push(Mismatch::Unexpected {
                got: answer.clone(),
            });
        }
    }
    mismatches
}
