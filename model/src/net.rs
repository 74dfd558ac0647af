//! Networks in CIDR notation (on `ipnet`): the tenant's service and pod ranges, the networks
//! allowed to reach its apiserver, and the addresses inside them kube-apiserver reserves.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::{Check, FieldError};

/// A network in CIDR notation with its host bits clear, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCidr {
    #[error("{0:?} is not a network in CIDR notation")]
    Syntax(String),
    #[error("{0:?} has host bits set; write the network address")]
    HostBits(String),
}

impl FromStr for Cidr {
    type Err = BadCidr;
    fn from_str(v: &str) -> Result<Self, BadCidr> {
        // ipnet takes a missing prefix length as an error too, and leading zeros not at all.
        let net: IpNet = v.parse().map_err(|_| BadCidr::Syntax(v.to_owned()))?;
        if net.trunc() != net {
            return Err(BadCidr::HostBits(v.to_owned()));
        }
        Ok(Self(net))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self.0, IpNet::V4(_))
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// The first address after the network address: the `kubernetes` Service's ClusterIP, which
    /// the apiserver's serving certificate must name.
    pub fn first_host(&self) -> Option<IpAddr> {
        self.0.hosts().find(|h| *h != self.0.network())
    }

    /// Why kube-apiserver never gives `ip` (inside this range) to a Service, if it does not: the
    /// network address, an IPv4 range's broadcast address, and the first address, which is the
    /// `kubernetes` Service's own.
    pub fn reserved_service_ip(&self, ip: IpAddr) -> Option<&'static str> {
        if ip == self.0.network() {
            Some("the network address")
        } else if Some(ip) == self.first_host() {
            Some("the first address, which the `kubernetes` Service takes,")
        } else if self.is_ipv4() && ip == self.0.broadcast() {
            Some("the broadcast address")
        } else {
            None
        }
    }
}

/// A service or pod range as written: a network with room for at least 16 addresses.
pub fn cidr(field: &str, v: &str) -> Result<Cidr, FieldError> {
    // The smallest range each family may have; a longer prefix (even past the address's bits)
    // is "too small", as users read it, before it is a syntax error.
    let max = |ipv4: bool| if ipv4 { 28 } else { 124 };
    let too_small = |ipv4: bool| {
        FieldError::new(
            field,
            format!(
                "{v:?} is too small; use a prefix of /{} or shorter",
                max(ipv4)
            ),
        )
    };
    if let Some((ip, bits)) = v.split_once('/') {
        if let (Ok(ip), Ok(bits)) = (ip.parse::<IpAddr>(), bits.parse::<u32>()) {
            if bits > max(ip.is_ipv4()) {
                return Err(too_small(ip.is_ipv4()));
            }
        }
    }
    let net: Cidr = v.parse().map_err(|e| match e {
        BadCidr::Syntax(_) => FieldError::new(
            field,
            format!("{v:?} is not a network in CIDR notation such as \"10.96.0.0/12\""),
        ),
        BadCidr::HostBits(_) => FieldError::new(field, e.to_string()),
    })?;
    Ok(net)
}

/// A network that may reach the apiserver, as written: any prefix length, host bits clear.
pub fn authorized_network(field: &str, v: &str) -> Check {
    v.parse::<Cidr>().map(drop).map_err(|e| match e {
        BadCidr::Syntax(_) => FieldError::new(
            field,
            format!("{v:?} is not a network in CIDR notation such as \"203.0.113.0/24\""),
        ),
        BadCidr::HostBits(_) => FieldError::new(field, e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_with_their_limits_and_reserved_addresses() {
        let svc = cidr("f", "10.96.0.0/12").unwrap();
        assert_eq!(svc.to_string(), "10.96.0.0/12");
        assert_eq!(svc.first_host(), Some(ip("10.96.0.1")));
        assert!(svc.contains(ip("10.96.0.10")) && !svc.contains(ip("10.112.0.1")));
        assert_eq!(svc.reserved_service_ip(ip("10.96.0.10")), None);
        assert!(svc.reserved_service_ip(ip("10.96.0.0")).is_some());
        assert!(svc.reserved_service_ip(ip("10.96.0.1")).is_some());
        assert!(svc.reserved_service_ip(ip("10.111.255.255")).is_some());
        let v6 = cidr("f", "fd00:10:96::/112").unwrap();
        assert_eq!(v6.first_host(), Some(ip("fd00:10:96::1")));
        assert_eq!(v6.reserved_service_ip(ip("fd00:10:96::ffff")), None);
        assert!(!v6.contains(ip("10.96.0.1")));
        assert!(cidr("f", "10.100.7.0/24")
            .unwrap()
            .overlaps(&cidr("f", "10.100.0.0/16").unwrap()));
        assert!(!svc.overlaps(&cidr("f", "10.244.0.0/16").unwrap()));
        for (bad, says) in [
            ("10.96.0.0", "CIDR notation"),
            ("banana/12", "CIDR notation"),
            ("10.96.0.0/33", "too small"),
            ("10.96.0.1/12", "host bits"),
            ("10.96.0.0/29", "too small"),
            ("fd00::/125", "too small"),
        ] {
            let e = cidr("network.service_cidr", bad).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        assert!(authorized_network("f", "192.0.2.7/32").is_ok());
        assert!(authorized_network("f", "0.0.0.0/0").is_ok());
    }
}
