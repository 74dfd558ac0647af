//! What one plan walk has learned so far, for checks that span resources.
//!
//! Terraform plans every resource of a configuration through the same provider process, so a
//! fact noted while planning one resource is there when a later one is planned. Two facts are
//! kept, each a set of names:
//!
//! - **own names** (per resource type): names this configuration's state holds. The plan-time
//!   "already exists" check must refuse a name someone else's object has, but not one of ours
//!   that Terraform plans as a create of an existing object:
//!   - a replacement: Terraform plans an update that answers "requires replacement", then a
//!     create of the same name with no prior state;
//!   - a tainted resource (a create that timed out or failed): Terraform refreshes it (a read
//!     that finds it), then plans it as a create with no prior state, to replace it.
//!
//!   (With `-refresh=false` a tainted name is not seen; the check's message says what to do.)
//! - **datastores arriving**: datastores this plan registers (with their labels). A tenant cluster
//!   planned after them (Terraform plans dependents after what they depend on) whose
//!   `datastore` or `datastore_selector` matches nothing registered may still match one of them.
//! - **tenants leaving**: tenant clusters this plan destroys. Destroying a datastore that still
//!   holds tenants fails, so the datastore's plan refuses it, unless every tenant on it is
//!   leaving in the same plan (Terraform plans a destroy of dependents before what they depend
//!   on, and applies them in that order too).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

/// A set of names, shared by the clones of one provider's resources.
#[derive(Clone, Default)]
pub struct NameSet(Arc<Mutex<HashSet<String>>>);

impl NameSet {
    pub fn mark(&self, name: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(name.to_owned());
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.lock().map(|s| s.contains(name)).unwrap_or(false)
    }

    /// The name of a planned create that needs the existence check: known, and not ours.
    pub fn foreign<'n>(&self, name: &'n Value<String>) -> Option<&'n str> {
        name.as_ref_option()
            .filter(|n| !self.contains(n))
            .map(String::as_str)
    }
}

/// A datastore's name and labels.
pub type NamedLabels = (String, BTreeMap<String, String>);

/// Datastores this plan registers, with their labels (`None`: a name or labels not known at
/// plan), so that a tenant cluster planned after them is judged against them too.
#[derive(Clone, Default)]
pub struct PlannedDatastores(Arc<Mutex<Vec<Option<NamedLabels>>>>);

impl PlannedDatastores {
    pub fn mark(&self, datastore: Option<NamedLabels>) {
        if let Ok(mut v) = self.0.lock() {
            v.push(datastore);
        }
    }

    /// The datastores this plan registers; `None` when one of them is not known at plan (a
    /// tenant cannot be judged against it then).
    pub fn known(&self) -> Option<Vec<NamedLabels>> {
        self.0.lock().ok()?.iter().cloned().collect()
    }
}

/// The plan-time refusal of a create whose `name` kamajid already has, on the `name` attribute.
pub fn already_exists(diags: &mut Diagnostics, kind: &str, name: &str) {
    diags.error(
        format!("{kind} already exists"),
        format!(
            "kamajid already has a {} named {name:?} that this configuration's state does not \
             hold. Import it with `terraform import <address> {name}` or choose another name.",
            kind.to_lowercase()
        ),
        AttributePath::new("name"),
    );
}
