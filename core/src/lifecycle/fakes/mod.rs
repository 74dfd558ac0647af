//! In-memory fakes of the lifecycle's ports, with a fault injector: the world the lifecycle
//! tests drive a tenant through, failing any call on demand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::ports::*;
use crate::controlplane::Tenant;
use crate::datastore::{DatastoreRecord, Reservation};
use crate::ids::{DatastoreName, TenantId, TenantName};
use crate::pki::TenantPki;
use crate::placement::Candidate;
use crate::spec::TenantSpec;
use crate::tenant::{MoveStage, TenantRecord, WireSpec};

mod world;
pub use world::*;

/// Calls armed to fail once, by name (`"isolation.ensure"`, `"records.update"`, ...).
#[derive(Clone, Default)]
pub struct Faults(Arc<Mutex<HashMap<&'static str, usize>>>);

impl Faults {
    /// The next `op` fails.
    pub fn arm(&self, op: &'static str) {
        *self.0.lock().unwrap().entry(op).or_default() += 1;
    }

    fn hit(&self, op: &'static str) -> Result<(), PortError> {
        let mut m = self.0.lock().unwrap();
        match m.get_mut(op) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Err(PortError {
                    op: op.into(),
                    detail: "injected failure".into(),
                })
            }
            _ => Ok(()),
        }
    }

    fn record(&self, op: &'static str) -> Result<(), RecordError> {
        self.hit(op)
            .map_err(|e| RecordError::Unavailable(e.to_string()))
    }
}

#[derive(Default)]
pub(super) struct Store {
    rev: i64,
    tenants: BTreeMap<TenantName, (TenantRecord, i64)>,
    datastores: BTreeMap<DatastoreName, DatastoreRecord>,
    reservations: BTreeMap<DatastoreName, (Reservation, i64)>,
    placements: BTreeSet<(DatastoreName, TenantName)>,
}

/// kamajid's records, in memory, compare-and-swap as etcd does them.
#[derive(Clone, Default)]
pub struct MemRecords {
    pub(super) store: Arc<Mutex<Store>>,
    /// What each stored spec decodes to; a spec not here does not decode.
    pub specs: Arc<Mutex<HashMap<String, TenantSpec>>>,
    pub faults: Faults,
}

fn conflict(what: impl std::fmt::Display) -> RecordError {
    RecordError::Conflict {
        what: what.to_string(),
    }
}

impl MemRecords {
    /// Encodes `spec` as the store would.
    pub fn wire(&self, spec: &TenantSpec) -> WireSpec {
        let key = format!("spec-{}", self.specs.lock().unwrap().len());
        self.specs.lock().unwrap().insert(key.clone(), spec.clone());
        WireSpec(key)
    }

    pub fn add_datastore(&self, ds: DatastoreRecord) {
        self.store
            .lock()
            .unwrap()
            .datastores
            .insert(ds.name.clone(), ds);
    }

    pub fn reservation(&self, ds: &DatastoreName) -> Reservation {
        self.store
            .lock()
            .unwrap()
            .reservations
            .get(ds)
            .map(|r| r.0)
            .unwrap_or_default()
    }

    pub fn placements(&self) -> usize {
        self.store.lock().unwrap().placements.len()
    }

    pub fn get(&self, name: &TenantName) -> Option<Versioned<TenantRecord>> {
        self.store
            .lock()
            .unwrap()
            .tenants
            .get(name)
            .map(|(v, r)| Versioned {
                value: v.clone(),
                revision: *r,
            })
    }
}

impl Records for MemRecords {
    async fn tenant(
        &self,
        name: &TenantName,
    ) -> Result<Option<Versioned<TenantRecord>>, RecordError> {
        self.faults.record("records.get")?;
        Ok(self.get(name))
    }

    fn spec(&self, rec: &TenantRecord) -> Result<TenantSpec, RecordError> {
        self.specs
            .lock()
            .unwrap()
            .get(&rec.spec.0)
            .cloned()
            .ok_or_else(|| RecordError::Corrupt {
                what: format!("the spec of tenant {}", rec.name),
                detail: "not a protobuf TenantClusterSpec".into(),
            })
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>, RecordError> {
        Ok(self
            .store
            .lock()
            .unwrap()
            .tenants
            .values()
            .map(|(v, _)| v.clone())
            .collect())
    }

    async fn create_tenant(&self, rec: &TenantRecord) -> Result<(), RecordError> {
        let mut s = self.store.lock().unwrap();
        if s.tenants.contains_key(&rec.name) {
            return Err(RecordError::AlreadyExists {
                what: rec.name.to_string(),
            });
        }
        s.rev += 1;
        let rev = s.rev;
        s.tenants.insert(rec.name.clone(), (rec.clone(), rev));
        Ok(())
    }

    async fn update_tenant(&self, rec: &TenantRecord, revision: i64) -> Result<(), RecordError> {
        self.faults.record("records.update")?;
        let mut s = self.store.lock().unwrap();
        match s.tenants.get(&rec.name) {
            Some((_, r)) if *r == revision => {}
            _ => return Err(conflict(&rec.name)),
        }
        s.rev += 1;
        let rev = s.rev;
        s.tenants.insert(rec.name.clone(), (rec.clone(), rev));
        Ok(())
    }

    async fn datastore(
        &self,
        name: &DatastoreName,
    ) -> Result<Option<DatastoreRecord>, RecordError> {
        Ok(self.store.lock().unwrap().datastores.get(name).cloned())
    }

    async fn candidates(&self) -> Result<Vec<Candidacy>, RecordError> {
        let s = self.store.lock().unwrap();
        Ok(s.datastores
            .values()
            .map(|ds| {
                let res = s.reservations.get(&ds.name).map(|(r, rev)| Versioned {
                    value: *r,
                    revision: *rev,
                });
                let r = res.as_ref().map(|v| v.value).unwrap_or_default();
                Candidacy {
                    candidate: Candidate {
                        name: ds.name.clone(),
                        ready: true,
                        schedulable: ds.schedulable,
                        draining: ds.drain,
                        labels: ds.labels.clone(),
                        quota_bytes: ds.quota_bytes,
                        max_tenants: ds.max_tenants,
                        tenants: r.tenants,
                        reserved_bytes: r.reserved_bytes,
                        used_bytes: 0,
                        file_bytes: 0,
                    },
                    reservation: res,
                }
            })
            .collect())
    }

    async fn place(
        &self,
        rec: &TenantRecord,
        revision: i64,
        reservation: Option<Versioned<Reservation>>,
    ) -> Result<(), RecordError> {
        self.faults.record("records.place")?;
        let mut s = self.store.lock().unwrap();
        let ds = rec.datastore.clone().expect("placed on a datastore");
        let current = s.reservations.get(&ds).map(|(_, r)| *r);
        if s.tenants.get(&rec.name).map(|(_, r)| *r) != Some(revision)
            || current != reservation.as_ref().map(|v| v.revision)
            || !s.datastores.contains_key(&ds)
        {
            return Err(conflict(&rec.name));
        }
        let r = reservation.map(|v| v.value).unwrap_or_default();
        s.rev += 1;
        let rev = s.rev;
        s.tenants.insert(rec.name.clone(), (rec.clone(), rev));
        s.placements.insert((ds.clone(), rec.name.clone()));
        s.reservations.insert(
            ds,
            (
                Reservation {
                    tenants: r.tenants + 1,
                    reserved_bytes: r.reserved_bytes + rec.reservation_bytes,
                },
                rev,
            ),
        );
        Ok(())
    }

    async fn reserve_move(
        &self,
        rec: &TenantRecord,
        revision: i64,
        reservation: Option<Versioned<Reservation>>,
    ) -> Result<(), RecordError> {
        self.faults.record("records.reserve_move")?;
        let mut s = self.store.lock().unwrap();
        let to = rec.moving.as_ref().expect("a move").to.clone();
        let current = s.reservations.get(&to).map(|(_, r)| *r);
        if s.tenants.get(&rec.name).map(|(_, r)| *r) != Some(revision)
            || current != reservation.as_ref().map(|v| v.revision)
            || !s.datastores.contains_key(&to)
        {
            return Err(conflict(&rec.name));
        }
        s.rev += 1;
        let rev = s.rev;
        s.tenants.insert(rec.name.clone(), (rec.clone(), rev));
        s.bump(&to, 1, rec.reservation_bytes);
        Ok(())
    }

    async fn switch_move(&self, rec: &TenantRecord, revision: i64) -> Result<(), RecordError> {
        self.faults.record("records.switch_move")?;
        let mut s = self.store.lock().unwrap();
        if s.tenants.get(&rec.name).map(|(_, r)| *r) != Some(revision) {
            return Err(conflict(&rec.name));
        }
        let from = rec.moving.as_ref().expect("a move").from.clone();
        let to = rec.datastore.clone().expect("placed");
        s.rev += 1;
        let rev = s.rev;
        s.tenants.insert(rec.name.clone(), (rec.clone(), rev));
        s.placements.remove(&(from.clone(), rec.name.clone()));
        s.placements.insert((to, rec.name.clone()));
        s.bump(&from, -1, -rec.reservation_bytes);
        Ok(())
    }

    async fn abort_move(
        &self,
        rec: &TenantRecord,
        revision: i64,
        target: &DatastoreName,
    ) -> Result<(), RecordError> {
        self.faults.record("records.abort_move")?;
        let mut s = self.store.lock().unwrap();
        if s.tenants.get(&rec.name).map(|(_, r)| *r) != Some(revision) {
            return Err(conflict(&rec.name));
        }
        s.rev += 1;
        let rev = s.rev;
        s.tenants.insert(rec.name.clone(), (rec.clone(), rev));
        s.bump(target, -1, -rec.reservation_bytes);
        Ok(())
    }

    async fn release(&self, rec: &TenantRecord, revision: i64) -> Result<(), RecordError> {
        self.faults.record("records.release")?;
        let mut s = self.store.lock().unwrap();
        if s.tenants.get(&rec.name).map(|(_, r)| *r) != Some(revision) {
            return Err(conflict(&rec.name));
        }
        s.rev += 1;
        s.tenants.remove(&rec.name);
        if let Some(ds) = &rec.datastore {
            if s.placements.remove(&(ds.clone(), rec.name.clone())) {
                s.bump(ds, -1, -rec.reservation_bytes);
            }
        }
        if let Some(m) = rec
            .moving
            .as_ref()
            .filter(|m| m.stage < MoveStage::Switched)
        {
            s.bump(&m.to, -1, -rec.reservation_bytes);
        }
        Ok(())
    }
}

impl Store {
    /// Changes `ds`'s reservation by a tenant count and bytes.
    fn bump(&mut self, ds: &DatastoreName, tenants: i64, bytes: i64) {
        self.rev += 1;
        let rev = self.rev;
        let r = self
            .reservations
            .get(ds)
            .map(|(r, _)| *r)
            .unwrap_or_default();
        let n = (i64::from(r.tenants) + tenants).max(0);
        self.reservations.insert(
            ds.clone(),
            (
                Reservation {
                    tenants: u32::try_from(n).unwrap_or(0),
                    reserved_bytes: (r.reserved_bytes + bytes).max(0),
                },
                rev,
            ),
        );
    }
}
