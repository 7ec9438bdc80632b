//! The `getpwnam` table: the system password database, serving `userinfo`
//! only (tables.md section 1.3), the default `userbase` of local actions.
//!
//! A lookup of a user name answers `UID:GID:HOMEDIR` from `getpwnam_r(3)`,
//! which `static_table.rs` runs on tokio's blocking pool, since the name
//! service may be remote (NIS, LDAP).

use std::ffi::CString;
use std::io;

use super::static_host::c_text;

/// The largest buffer offered to `getpwnam_r` before giving up.
const MAX_BUFFER: usize = 1 << 20;

/// The `UID:GID:HOMEDIR` of a system user, `None` for an unknown one.
pub(crate) fn userinfo(name: &str) -> io::Result<Option<String>> {
    // A name holding NUL cannot name a user.
    let Ok(name) = CString::new(name) else {
        return Ok(None);
    };
    let mut buffer = vec![0u8; 1024];
    loop {
        // SAFETY: an all-zero passwd is a valid value (null pointers and
        // zero ids) for getpwnam_r to overwrite.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is
        // NUL-terminated, the buffer is writable for its length, and entry
        // and result are valid places.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
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
                let home = c_text(entry.pw_dir);
                return Ok(Some(format!("{}:{}:{home}", entry.pw_uid, entry.pw_gid)));
            }
            libc::ERANGE if buffer.len() < MAX_BUFFER => {
                let larger = buffer.len() * 2;
                buffer.resize(larger, 0);
            }
            // "Not found" as some C libraries report it.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_uid_zero() {
        let root = userinfo("root").unwrap().unwrap();
        let mut parts = root.splitn(3, ':');
        assert_eq!(parts.next(), Some("0"));
        assert_eq!(parts.next(), Some("0"));
        assert!(parts.next().unwrap().starts_with('/'), "{root}");
    }

    #[test]
    fn unknown_users_are_none() {
        assert_eq!(userinfo("no-such-user-here-0123").unwrap(), None);
        assert_eq!(userinfo("nul\0byte").unwrap(), None);
        assert_eq!(userinfo("").unwrap(), None);
    }
}
