//! The three ports each tenant's components get on a shared host (three more for its
//! konnectivity server): chosen once from the configured range, kept in the tenant's directory
//! (`ports.json`) so they survive restarts.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::path::Path;

use kamaji_core::controlplane::flags::Ports;
use kamaji_core::controlplane::konnectivity::ServerPorts;
use kamaji_core::lifecycle::ports::PortError;
use serde::{Deserialize, Serialize};

use super::{write_private, ProcessRuntime};

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

impl ProcessRuntime {
    /// What the tenant's `ports.json` in `dir` records; None before any was given. A file that
    /// does not decode is an error, not a reason to move the tenant to other ports.
    fn recorded(&self, tenant: &str, dir: &Path) -> Result<Option<Persisted>, PortError> {
        let file = dir.join("ports.json");
        match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Self::err(
                    "reading the ports of",
                    tenant,
                    format!("{} does not decode: {e}", file.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::err(
                "reading the ports of",
                tenant,
                format!("{}: {e}", file.display()),
            )),
        }
    }

    fn record(&self, tenant: &str, dir: &Path, p: &Persisted) -> Result<(), PortError> {
        let json = serde_json::to_vec(p)
            .map_err(|e| Self::err("writing the ports of", tenant, e.to_string()))?;
        write_private(&dir.join("ports.json"), &json)
            .map_err(|e| Self::err("writing the ports of", tenant, e))
    }

    /// Every port handed out to a tenant of this host.
    fn taken_ports(&self) -> BTreeSet<u16> {
        let mut taken = BTreeSet::new();
        for (_, d) in self.tenant_dirs() {
            if let Some(p) = std::fs::read(d.join("ports.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Persisted>(&b).ok())
            {
                let k = p
                    .konnectivity
                    .map_or(Vec::new(), |k| vec![k.agent, k.admin, k.health]);
                let own = [
                    p.ports.apiserver,
                    p.ports.controller_manager,
                    p.ports.scheduler,
                ];
                taken.extend(
                    own.into_iter()
                        .chain(k)
                        .map(|port| u16::try_from(port).unwrap_or(0)),
                );
            }
        }
        taken
    }

    /// Three free ports of the range, for `what` (the caller holds `allocating`).
    fn three_free(&self, what: &str, tenant: &str) -> Result<Ports, PortError> {
        pick_ports(&self.cfg.ports, &self.taken_ports(), |p| {
            std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()
        })
        .ok_or_else(|| {
            Self::err(
                what,
                tenant,
                format!(
                    "no three free ports left in {}-{}; widen --process-port-range",
                    self.cfg.ports.start(),
                    self.cfg.ports.end()
                ),
            )
        })
    }

    /// The tenant's ports: those recorded in its directory, else three new ones.
    pub(super) fn ports(&self, tenant: &str, dir: &Path) -> Result<Ports, PortError> {
        if let Some(p) = self.recorded(tenant, dir)? {
            return Ok(p.ports);
        }
        let _one = self.allocating.lock();
        let ports = self.three_free("starting the control plane of", tenant)?;
        self.record(
            tenant,
            dir,
            &Persisted {
                ports,
                konnectivity: None,
            },
        )?;
        Ok(ports)
    }

    /// The tenant's konnectivity server ports: recorded beside its others once given, else
    /// three new ones from the range (kept when the tunnel is turned off, so turning it on
    /// again gives agents the same address).
    pub(super) fn konnectivity_ports(
        &self,
        tenant: &str,
        dir: &Path,
    ) -> Result<ServerPorts, PortError> {
        let ports = self.ports(tenant, dir)?;
        let recorded = self.recorded(tenant, dir)?;
        if let Some(k) = recorded.as_ref().and_then(|p| p.konnectivity) {
            return Ok(k);
        }
        let _one = self.allocating.lock();
        let got = self.three_free("starting the konnectivity server of", tenant)?;
        let k = ServerPorts {
            agent: got.apiserver,
            admin: got.controller_manager,
            health: got.scheduler,
        };
        self.record(
            tenant,
            dir,
            &Persisted {
                ports,
                konnectivity: Some(k),
            },
        )?;
        Ok(k)
    }
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
