//! The three ports each tenant's components get on a shared host: chosen once from the
//! configured range, kept in the tenant's directory so they survive restarts.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use kamaji_core::controlplane::flags::Ports;
use serde::{Deserialize, Serialize};

/// The lowest three free ports of `range` not in `taken`.
pub fn pick_ports(
    range: &RangeInclusive<u16>,
    taken: &BTreeSet<u16>,
    free: impl Fn(u16) -> bool,
) -> Option<Ports> {
    let mut got = Vec::new();
    for p in range.clone() {
        if !taken.contains(&p) && free(p) {
            got.push(u32::from(p));
            if got.len() == 3 {
                return Some(Ports {
                    apiserver: got[0],
                    controller_manager: got[1],
                    scheduler: got[2],
                });
            }
        }
    }
    None
}

/// Whether `ports` overlaps the kernel's ephemeral range `ephemeral` (the contents of
/// `/proc/sys/net/ipv4/ip_local_port_range`, `"32768\t60999"`). Outgoing connections take ports
/// from that range at any moment, so a component given one of them may find it taken when it
/// starts, and crash-loop: the range must stay clear of it.
pub fn overlaps_ephemeral(ports: &RangeInclusive<u16>, ephemeral: &str) -> Option<(u16, u16)> {
    let mut it = ephemeral.split_whitespace().map(|p| p.parse::<u16>().ok());
    let (Some(Some(lo)), Some(Some(hi))) = (it.next(), it.next()) else {
        return None;
    };
    (*ports.start() <= hi && lo <= *ports.end()).then_some((lo, hi))
}

/// What `ports.json` in a tenant directory holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Persisted {
    pub ports: Ports,
    /// The konnectivity server's, once the tenant had a tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub konnectivity: Option<kamaji_core::controlplane::konnectivity::ServerPorts>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_range_inside_the_ephemeral_range_is_refused() {
        assert_eq!(
            overlaps_ephemeral(&(34000..=34099), "32768\t60999\n"),
            Some((32768, 60999))
        );
        assert_eq!(
            overlaps_ephemeral(&(60999..=61100), "32768 60999"),
            Some((32768, 60999))
        );
        assert_eq!(overlaps_ephemeral(&(16443..=17442), "32768\t60999"), None);
        assert_eq!(overlaps_ephemeral(&(16443..=17442), "garbage"), None);
    }

    #[test]
    fn ports_are_the_lowest_free_three_in_range() {
        let taken: BTreeSet<u16> = [16443, 16445].into();
        let p = pick_ports(&(16443..=16450), &taken, |p| p != 16446).unwrap();
        assert_eq!(
            (p.apiserver, p.controller_manager, p.scheduler),
            (16444, 16447, 16448)
        );
        assert!(pick_ports(&(16443..=16444), &BTreeSet::new(), |_| true).is_none());
    }
}
