//! The create steps that do more than one call: Place, Apply, AwaitReady (with the serving
//! certificate re-issued for the address the runtime gave) and Bootstrap.

use super::*;

/// The datastore placement chooses for `req` among `candidacies` (but `except`), with its
/// reservation record as read, which the placing transaction is guarded by.
pub(super) fn choose(
    candidacies: Vec<crate::lifecycle::ports::Candidacy>,
    req: &Request,
    policy: placement::Policy,
    except: Option<&crate::ids::DatastoreName>,
) -> Result<
    (
        crate::ids::DatastoreName,
        Option<crate::lifecycle::ports::Versioned<crate::datastore::Reservation>>,
    ),
    placement::PlacementError,
> {
    let plain: Vec<_> = candidacies
        .iter()
        .map(|c| c.candidate.clone())
        .filter(|c| Some(&c.name) != except)
        .collect();
    let chosen = placement::place(req, &plain, policy)?.name.clone();
    let reservation = candidacies
        .into_iter()
        .find(|c| c.candidate.name == chosen)
        .and_then(|c| c.reservation);
    Ok((chosen, reservation))
}

/// Makes `pki` ready to encrypt as `spec` asks: the key of its rotation first, its resources
/// noted as possibly encrypted. Whether anything changed (the configuration then changes too).
pub(super) fn prepare_encryption(pki: &mut TenantPki, spec: &TenantSpec) -> bool {
    let want = EncryptedWith::of(&spec.encryption);
    let key = pki.ensure_encryption_key(want.rotation);
    let resources = pki.note_encrypted_resources(&want.resources);
    key || resources
}

/// The objects bootstrap applies inside the tenant, and those of add-ons turned off.
fn bootstrap_objects(
    rec: &TenantRecord,
    spec: &TenantSpec,
    pki: &TenantPki,
    endpoint: &str,
    dns_domain: &str,
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let inputs = bootstrap::Inputs {
        cluster_name: &rec.name,
        endpoint,
        ca_pem: &pki.ca_bundle(),
        spec,
        dns_domain,
        tunnel: rec.tunnel.as_deref(),
    };
    let (mut apply, mut remove) = (
        bootstrap::render(&inputs),
        bootstrap::disabled_addons(&inputs),
    );
    let wall = limits::wall_objects(rec, spec);
    if rec.walled().any() {
        apply.extend(wall);
    } else {
        remove.extend(wall);
    }
    (apply, remove)
}

impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    pub(super) async fn place(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let _one_at_a_time = self.placing.lock().await;
        let candidacies = self.records.candidates().await?;
        let req = Request::new(&spec.placement, rec.reservation_bytes);
        let (chosen, reservation) = match choose(candidacies, &req, self.settings.policy, None) {
            Ok(c) => c,
            Err(e) => {
                self.observer.placement_refused(&e);
                // No room (or no match) now. Waiting would hold the create for its whole
                // timeout and then grab capacity whenever some frees, long after the user gave
                // up: fail it now, with the reasons, holding nothing.
                rec.phase = Phase::Failed;
                rec.set_condition(COND_PLACED, false, "Unschedulable", e.to_string(), now);
                self.save(&rec, rev).await?;
                return Ok(Outcome::Converged);
            }
        };
        rec.set_condition(
            COND_PLACED,
            true,
            "Placed",
            format!("placed on datastore {chosen}"),
            now,
        );
        rec.datastore = Some(chosen);
        self.records.place(&rec, rev, reservation).await?;
        Ok(Outcome::Ran(Step::Place))
    }

    pub(super) async fn apply(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let ds = self.datastore(&rec).await?;
        // The serving certificate follows `endpoint_address` and `extra_sans`, which change in
        // place: re-issued (same CA) before the apply that rolls it out.
        let want = pki_spec(&rec, spec, &self.settings);
        let mut pki = self.pki(&rec)?;
        let mut changed = prepare_encryption(&mut pki, spec);
        if !pki::serves_exactly(&pki.apiserver.cert, &want)? {
            pki::reissue_apiserver(&mut pki, &want)?;
            changed = true;
        }
        if changed {
            seal_pki(&self.kek, &mut rec, &pki)?;
        }
        self.runtime
            .apply(&self.render_input(&rec, spec, &ds), &pki)
            .await?;
        if rec.phase == Phase::Hibernated && !spec.hibernated {
            // Woken: it goes through AwaitReady and Bootstrap as a new one does.
            rec.phase = Phase::Provisioning;
        } else if rec.observed_generation < rec.generation
            && rec.observed_generation > 0
            && rec.moving.is_none()
            && rec.phase != Phase::Hibernated
        {
            rec.phase = Phase::Upgrading;
        }
        rec.observed_generation = rec.generation;
        rec.service_account_issuer = Some(self.issuer_of(&rec, spec));
        record_upgrade(&mut rec, spec, now);
        rec.set_condition(
            COND_APPLIED,
            true,
            "Applied",
            format!("generation {} applied", rec.generation),
            now,
        );
        rec.set_condition(
            COND_READY,
            false,
            "Rolling",
            "waiting for the control plane to answer",
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::Apply))
    }

    pub(super) async fn await_ready(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let ds = self.datastore(&rec).await?;
        let status = self
            .runtime
            .status(&self.render_input(&rec, spec, &ds))
            .await?;
        // An address the serving certificate does not name yet is named as soon as the runtime
        // gives it (a load balancer's, a node port's, a cluster IP), and the pods, held at none
        // until then (`Tenant::address_known`), start once with the certificate they keep: pods
        // started before would be replaced at once, a rollout a full admin cluster has no room
        // for.
        let held = rec.endpoint.is_none() && spec.network.endpoint_address.is_none();
        if let Some(e) = status.endpoint.as_deref() {
            let pki = self.pki(&rec)?;
            let host = endpoint_host(e);
            let covered = pki::covers(&pki.apiserver.cert, &host);
            if !covered || held {
                // Recorded now, so the apply that starts or rolls the pods keeps this name.
                rec.endpoint = Some(e.to_owned());
                let (reason, message) = if covered {
                    (
                        "AddressKnown",
                        format!("the control plane starts now that its address {host} is known"),
                    )
                } else {
                    let mut pki = pki;
                    let want = pki_spec(&rec, spec, &self.settings);
                    pki::reissue_apiserver(&mut pki, &want)?;
                    seal_pki(&self.kek, &mut rec, &pki)?;
                    (
                        "ServingCertReissued",
                        format!("serving certificate re-issued for the endpoint address {host}"),
                    )
                };
                rec.set_condition(COND_APPLIED, false, reason, message, now);
                self.save(&rec, rev).await?;
                return Ok(Outcome::Ran(Step::ReissueServingCert));
            }
        }
        let endpoint = match (status.ready, status.endpoint) {
            (true, Some(e)) => e,
            _ => {
                // Written only when what it waits for changes: a thousand waiting tenants must
                // not rewrite their records every round.
                let before = rec.clone();
                if let Some(why) = status.stalled {
                    // It will not start as configured: say so now, in its own words, rather
                    // than wait out the apply's timeout. A spec that fixes it rolls it again.
                    rec.phase = Phase::Degraded;
                    rec.set_condition(COND_READY, false, REASON_STALLED, why, now);
                    if rec != before {
                        tracing::warn!(tenant = %rec.name, "control plane does not start");
                        self.save(&rec, rev).await?;
                    }
                    return Ok(Outcome::Waiting(Step::AwaitReady));
                }
                let reason = if rec.phase == Phase::Degraded {
                    "Unhealthy"
                } else {
                    "Waiting"
                };
                rec.set_condition(COND_READY, false, reason, status.message, now);
                if rec != before {
                    self.save(&rec, rev).await?;
                }
                return Ok(Outcome::Waiting(Step::AwaitReady));
            }
        };
        rec.endpoint = Some(endpoint);
        rec.tunnel = status.tunnel;
        rec.set_condition(COND_READY, true, "Ready", "", now);
        // Answering again (new, upgraded, or back from Degraded): what kubeadm join needs is
        // applied again before the tenant reads Ready.
        rec.set_condition(
            COND_BOOTSTRAPPED,
            false,
            "Pending",
            "the control plane answers; bootstrapping",
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::AwaitReady))
    }

    /// Writes every encrypted object again, so each is stored with the newest key (or, for a
    /// resource no longer encrypted, plain), then retires what no object needs any more. Runs
    /// only once the control plane answers with the configuration that encrypts as the spec
    /// asks: a PKI not yet prepared for it is prepared and rolled out first.
    /// Applies the bootstrap objects inside the tenant and records it; the caller saves.
    pub(super) async fn bootstrap(
        &self,
        rec: &mut TenantRecord,
        spec: &TenantSpec,
        pki: &TenantPki,
        now: i64,
    ) -> Result<(), LifecycleError> {
        let endpoint = rec.endpoint.clone().unwrap_or_default();
        let (apply, remove) =
            bootstrap_objects(rec, spec, pki, &endpoint, &self.settings.dns_domain);
        let admin = pki.admin_kubeconfig(rec.name.as_str(), &endpoint);
        self.objects
            .sync(&endpoint, &admin, &apply, &remove)
            .await?;
        rec.bootstrapped_at = now;
        rec.set_condition(
            COND_BOOTSTRAPPED,
            true,
            "Bootstrapped",
            format!("{} objects for kubeadm join applied", apply.len()),
            now,
        );
        Ok(())
    }
}

/// Records the version change the apply of `spec` rolls out, if it is one: from the version
/// `rec` was last Ready on, started now (an apply of the same change again keeps the record).
fn record_upgrade(rec: &mut TenantRecord, spec: &TenantSpec, now: i64) {
    let to = spec.kubernetes_version.to_string();
    let Some(from) = rec.current_version.clone().filter(|c| *c != to) else {
        return;
    };
    if rec
        .last_upgrade
        .as_ref()
        .is_some_and(|u| u.to == to && u.finished_at == 0)
    {
        return;
    }
    rec.last_upgrade = Some(UpgradeRecord {
        automatic: rec.auto_version.as_deref() == Some(to.as_str()),
        from,
        to,
        started_at: now,
        finished_at: 0,
    });
}
