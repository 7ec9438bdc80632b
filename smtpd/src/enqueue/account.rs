//! The submitting user's account: login name and full name, from the
//! password database by uid (`getpwuid_r(3)`).
//!
//! `sendmail` uses it for the default envelope sender (`login@host`) and
//! the name of an added `From:` header; the daemon uses it to name the
//! user behind a local session (the socket's peer credentials) and the
//! owner of an offline submission.

use std::ffi::CStr;
use std::io;

/// The largest buffer offered to `getpwuid_r` before giving up.
const MAX_BUFFER: usize = 1 << 20;

/// A user of this system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The uid.
    pub uid: u32,
    /// The login name.
    pub name: String,
    /// The GECOS field.
    pub gecos: String,
}

impl Account {
    /// The account of `uid`, `None` when the password database has none.
    pub fn of_uid(uid: u32) -> io::Result<Option<Self>> {
        let mut buffer = vec![0u8; 1024];
        loop {
            // SAFETY: an all-zero passwd is a valid value (null pointers
            // and zero ids) for getpwuid_r to overwrite.
            let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: the buffer is writable for its length, and entry and
            // result are valid places.
            let rc = unsafe {
                libc::getpwuid_r(
                    uid,
                    &mut entry,
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    &mut result,
                )
            };
            match rc {
                0 if result.is_null() => return Ok(None),
                0 => {
                    // The strings point into `buffer`, still alive here.
                    return Ok(Some(Self {
                        uid,
                        name: text(entry.pw_name),
                        gecos: text(entry.pw_gecos),
                    }));
                }
                libc::ERANGE if buffer.len() < MAX_BUFFER => {
                    let larger = buffer.len() * 2;
                    buffer.resize(larger, 0);
                }
                libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
                errno => return Err(io::Error::from_raw_os_error(errno)),
            }
        }
    }

    /// The account running this process (its real uid), or `anonymous`
    /// when the uid has no account, as OpenSMTPD's enqueue names it.
    pub fn current() -> Self {
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        Self::of_uid(uid).ok().flatten().unwrap_or_else(|| Self {
            uid,
            name: "anonymous".to_owned(),
            gecos: String::new(),
        })
    }

    /// The name a local session of `uid` is known by: the login name, or
    /// the uid in decimal when it has none.
    pub fn name_of(uid: u32) -> String {
        match Self::of_uid(uid) {
            Ok(Some(account)) => account.name,
            _ => uid.to_string(),
        }
    }

    /// The full name of the GECOS field: up to its first comma, with `&`
    /// standing for the login name, capitalised. `None` when empty.
    pub fn full_name(&self) -> Option<String> {
        let field = self.gecos.split(',').next().unwrap_or_default();
        let name = match field.split_once('&') {
            Some((before, after)) => {
                let mut login = self.name.chars();
                let capital: String = login
                    .next()
                    .map(|c| c.to_uppercase().chain(login).collect())
                    .unwrap_or_default();
                format!("{before}{capital}{after}")
            }
            None => field.to_owned(),
        };
        (!name.is_empty()).then_some(name)
    }
}

/// A C string from the password database, lossily as UTF-8 (empty for a
/// null pointer).
fn text(ptr: *const libc::c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: getpwuid_r gives NUL-terminated strings in its buffer, alive
    // while the caller holds it.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str, gecos: &str) -> Account {
        Account {
            uid: 1000,
            name: name.to_owned(),
            gecos: gecos.to_owned(),
        }
    }

    #[test]
    fn full_names_from_gecos() {
        let cases = [
            ("alice", "Alice Liddell,Room 1,555,", Some("Alice Liddell")),
            ("bob", "& Builder,,,", Some("Bob Builder")),
            ("carol", "Mrs & Smith", Some("Mrs Carol Smith")),
            ("dave", "", None),
            ("erin", ",office", None),
        ];
        for (name, gecos, expected) in cases {
            assert_eq!(
                account(name, gecos).full_name().as_deref(),
                expected,
                "{gecos}"
            );
        }
    }

    #[test]
    fn root_and_unknown_uids() {
        let root = Account::of_uid(0).unwrap().unwrap();
        assert_eq!(root.name, "root");
        assert_eq!(Account::name_of(0), "root");
        // A uid no system gives out.
        assert_eq!(Account::of_uid(4_000_000_123).unwrap(), None);
        assert_eq!(Account::name_of(4_000_000_123), "4000000123");
        assert_eq!(Account::current().uid, unsafe { libc::getuid() });
    }
}
