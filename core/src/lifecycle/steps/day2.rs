//! Day-two steps: Reencrypt, RotateCredentials, RenewCertificates and AwaitDatastore.

use super::*;
impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    pub(super) async fn reencrypt(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let mut pki = self.pki(&rec)?;
        if prepare_encryption(&mut pki, spec) {
            // A record from before encryption at rest, or a spec change Apply has not seen.
            seal_pki(&self.kek, &mut rec, &pki)?;
            rec.set_condition(
                COND_APPLIED,
                false,
                "EncryptionKeyAdded",
                "rolling out the encryption configuration before rewriting",
                now,
            );
            self.save(&rec, rev).await?;
            return Ok(Outcome::Ran(Step::Reencrypt));
        }
        let want = EncryptedWith::of(&spec.encryption);
        let mut resources = want.all_resources();
        for r in &pki.encrypted_resources {
            if !resources.contains(r) {
                resources.push(r.clone());
            }
        }
        let endpoint = rec.endpoint.clone().unwrap_or_default();
        let admin = pki.admin_kubeconfig(rec.name.as_str(), &endpoint);
        let written = self.objects.rewrite(&endpoint, &admin, &resources).await?;
        if pki.retire_after_rewrite(&want.resources) {
            seal_pki(&self.kek, &mut rec, &pki)?;
            rec.set_condition(
                COND_APPLIED,
                false,
                "EncryptionKeysRetired",
                "rolling out the encryption configuration without the retired keys",
                now,
            );
        }
        rec.set_condition(
            COND_ENCRYPTED,
            true,
            "Rewritten",
            format!(
                "{written} objects of {} written again with key-{}",
                resources.join(", "),
                want.rotation
            ),
            now,
        );
        rec.encrypted = Some(want);
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::Reencrypt))
    }

    /// Moves the PKI one phase towards the rotation the spec asks: completes a started rotation
    /// first when another is asked, starts one when the generation moved. Apply rolls it out.
    pub(super) async fn rotate(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let (want, have) = (spec.credential_rotation, rec.credentials);
        let mut pki = self.pki(&rec)?;
        let pki_spec = pki_spec(&rec, spec, &self.settings);
        let what = if have.started && (want.generation != have.generation || !want.started) {
            pki.complete_rotation(&pki_spec)?;
            rec.credentials.started = false;
            format!(
                "rotation {} completed: the previous CA and service-account key are withdrawn",
                have.generation
            )
        } else if want.generation != have.generation {
            pki.start_rotation(&pki_spec)?;
            rec.credentials = crate::spec::CredentialRotation {
                generation: want.generation,
                started: true,
            };
            format!(
                "rotation {} started: a new CA and service-account key, the previous ones still trusted",
                want.generation
            )
        } else {
            rec.credentials = want;
            "nothing to rotate".to_owned()
        };
        seal_pki(&self.kek, &mut rec, &pki)?;
        rec.set_condition(
            COND_CREDENTIALS,
            !rec.credentials.started,
            if rec.credentials.started {
                "Started"
            } else {
                "Completed"
            },
            what,
            now,
        );
        rec.set_condition(
            COND_APPLIED,
            false,
            "CredentialsRotated",
            "rolling out the rotated credentials",
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::RotateCredentials))
    }

    /// Signs the leaf certificates again (same CAs) once the first is within the renewal
    /// window; Apply then rolls them out. A record that does not say when they expire gets the
    /// date recorded instead.
    pub(super) async fn renew(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let mut pki = self.pki(&rec)?;
        let expires = pki::leaves_expire_at(&pki);
        if now < expires - self.settings.certificate_renew_before.whole_seconds() {
            seal_pki(&self.kek, &mut rec, &pki)?;
            self.save(&rec, rev).await?;
            return Ok(Outcome::Ran(Step::RenewCertificates));
        }
        let ds = self.datastore(&rec).await?;
        let client_ca = ds.client_ca(&self.kek)?;
        pki::renew_leaves(&mut pki, &pki_spec(&rec, spec, &self.settings), &client_ca)?;
        seal_pki(&self.kek, &mut rec, &pki)?;
        let at = time::OffsetDateTime::from_unix_timestamp(expires)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| expires.to_string());
        rec.set_condition(
            COND_APPLIED,
            false,
            "CertificatesRenewed",
            format!("leaf certificates renewed; the first expired at {at}"),
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::RenewCertificates))
    }

    /// Records that the tenant's datastore refuses writes (the tenant turns Degraded and waits),
    /// or that it takes them again (the tenant then goes through Bootstrap back to Ready).
    pub(super) async fn await_datastore(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let refusing = rec
            .datastore
            .as_ref()
            .and_then(|ds| self.isolation.refusing_writes(ds));
        let before = rec.clone();
        match refusing {
            Some(why) => {
                let ds = rec
                    .datastore
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                rec.set_condition(
                    COND_WRITABLE,
                    false,
                    "DatastoreAlarm",
                    format!("datastore {ds} refuses writes: {why}"),
                    now,
                );
                rec.phase = Phase::Degraded;
                if rec != before {
                    tracing::warn!(tenant = %rec.name, datastore = %ds, "datastore refuses writes");
                    self.save(&rec, rev).await?;
                }
                Ok(Outcome::Waiting(Step::AwaitDatastore))
            }
            None => {
                rec.set_condition(COND_WRITABLE, true, "Writable", "", now);
                self.save(&rec, rev).await?;
                Ok(Outcome::Ran(Step::AwaitDatastore))
            }
        }
    }
}
