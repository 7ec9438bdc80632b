//! The addresses of the local network interfaces, through `getifaddrs(3)`.
//! Used by the built-in tables (`<localhost>`, `<localnames>`) and by
//! `listen on IFACE` / `listen on *`; no DNS is involved.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One IPv4 or IPv6 address of a local interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InterfaceAddress {
    /// The interface's name (`lo`, `eth0`, ...).
    pub(crate) interface: String,
    /// The address.
    pub(crate) address: IpAddr,
}

/// Every IPv4 and IPv6 address of every interface, in the order
/// `getifaddrs(3)` gives them (an address may appear under several names).
pub(crate) fn all() -> io::Result<Vec<InterfaceAddress>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `list` is a valid place for the result pointer.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, which
        // stays valid until freeifaddrs below.
        let node = unsafe { &*cursor };
        // SAFETY: a non-null ifa_addr points to a sockaddr of the family it
        // names.
        if let Some(address) = unsafe { sockaddr_ip(node.ifa_addr) } {
            let interface = if node.ifa_name.is_null() {
                String::new()
            } else {
                // SAFETY: ifa_name is a NUL-terminated string of the list.
                unsafe { CStr::from_ptr(node.ifa_name) }
                    .to_string_lossy()
                    .into_owned()
            };
            found.push(InterfaceAddress { interface, address });
        }
        cursor = node.ifa_next;
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(found)
}

/// The IP address of a socket address, for the inet families.
///
/// # Safety
/// `sa` must be null or point to a socket address as long as its family
/// says.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*sa.cast::<libc::sockaddr_in>() };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_interface_is_found() {
        let found = all().unwrap();
        assert!(
            found
                .iter()
                .any(|a| a.address == IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{found:?}"
        );
    }
}
