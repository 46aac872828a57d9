//! `host:port` addresses as peers and the admin API give them: a DNS name, an IPv4 address or
//! a bracketed IPv6 address, and a port from 1 to 65535. Checked before an address is stored
//! anywhere, so a typo or a flood is refused with a reason instead of replicated.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest DNS name (RFC 1035).
const MAX_HOST_LEN: usize = 253;
/// Longest address: the longest name, a colon and five digits.
pub const MAX_ADDRESS_LEN: usize = MAX_HOST_LEN + 6;
/// Longest label of a DNS name.
const MAX_LABEL_LEN: usize = 63;

/// Why an address is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Longer than any `host:port` can be; the address itself is not repeated.
    #[error("the address is {0} bytes long; host:port is at most {MAX_ADDRESS_LEN}")]
    TooLong(usize),
    /// No `:port` at the end.
    #[error("address {0:?} has no :port")]
    NoPort(String),
    /// The port is not a number from 1 to 65535.
    #[error("address {0:?} has no port from 1 to 65535")]
    BadPort(String),
    /// The host is neither a DNS name nor an IP address.
    #[error("address {address:?} has no valid host: {why}")]
    BadHost {
        /// The address.
        address: String,
        /// What is wrong with its host.
        why: &'static str,
    },
}

/// Checks that `address` is `host:port`.
pub fn check_host_port(address: &str) -> Result<(), AddressError> {
    if address.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong(address.len()));
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(AddressError::NoPort(address.to_owned()));
    };
    // `u16::from_str` takes a leading `+`; a port is digits only.
    let port_ok =
        port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|port| port != 0);
    if !port_ok {
        return Err(AddressError::BadPort(address.to_owned()));
    }
    check_host(host).map_err(|why| AddressError::BadHost {
        address: address.to_owned(),
        why,
    })
}

fn check_host(host: &str) -> Result<(), &'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err("not an IPv6 address in brackets"),
        };
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    check_dns_name(host)
}

/// RFC 1123 host names: labels of letters, digits and inner hyphens; the last label is not all
/// digits, so a mistyped IPv4 address (`10.0.0.256`) is not taken for a name.
fn check_dns_name(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("empty");
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, as in [::1]:9091");
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err("a DNS label is empty or longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("a DNS name has letters, digits, hyphens and dots only");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a DNS label starts or ends with a hyphen");
        }
    }
    if host
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not an IPv4 address, and a DNS name does not end in a number");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ip_addresses_with_a_port_pass() {
        for good in [
            "tc-0.tc.ns.svc.cluster.local:9091",
            "localhost:1",
            "10.0.0.1:65535",
            "[::1]:9091",
            "[fd00::2]:80",
        ] {
            assert_eq!(check_host_port(good), Ok(()), "{good}");
        }
        let longest = format!(
            "{}.{}.{}.{}:65535",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(longest.len(), MAX_ADDRESS_LEN);
        assert_eq!(check_host_port(&longest), Ok(()));
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        let too_long = format!("{}:1", "a".repeat(70_000));
        assert_eq!(
            check_host_port(&too_long),
            Err(AddressError::TooLong(70_002))
        );
        assert!(matches!(
            check_host_port("host"),
            Err(AddressError::NoPort(_))
        ));
        for bad_port in ["host:0", "host:65536", "host:+80", "host:", "host:port"] {
            assert!(
                matches!(check_host_port(bad_port), Err(AddressError::BadPort(_))),
                "{bad_port}"
            );
        }
        for bad_host in [
            ":9091",
            "-tc.ns:1",
            "tc-.ns:1",
            "a..b:1",
            "exa mple:1",
            "host_1:1",
            "10.0.0.256:1",
            "::1:9091",
            "[::1:9091",
            "[10.0.0.1]:1",
            "ünïcode:1",
        ] {
            assert!(
                matches!(check_host_port(bad_host), Err(AddressError::BadHost { .. })),
                "{bad_host}"
            );
        }
        let long_label = format!("{}.ns:1", "a".repeat(64));
        assert!(check_host_port(&long_label).is_err());
    }
}
