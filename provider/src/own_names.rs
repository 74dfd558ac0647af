//! Names this configuration's own state holds, as seen in the running plan.
//!
//! The plan-time "already exists" check must refuse a name someone else's object has, but not
//! one of ours that Terraform plans as a create of an existing object:
//! - a replacement: Terraform plans an update that answers "requires replacement", then a create
//!   of the same name with no prior state (the old object is destroyed before the new one is
//!   created);
//! - a tainted resource (a create that timed out or failed): Terraform refreshes it (a read that
//!   finds it), then plans it as a create with no prior state, to replace it.
//!
//! In both the earlier call reaches the same provider process in the same walk, so remembering
//! the name between them is enough. (With `-refresh=false` a tainted name is not seen; the
//! check's message says what to do.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

#[derive(Clone, Default)]
pub struct OwnNames(Arc<Mutex<HashSet<String>>>);

impl OwnNames {
    pub fn mark(&self, name: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(name.to_owned());
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.lock().map(|s| s.contains(name)).unwrap_or(false)
    }
}

impl OwnNames {
    /// The name of a planned create that needs the existence check: known, and not ours.
    pub fn foreign<'n>(&self, name: &'n Value<String>) -> Option<&'n str> {
        name.as_ref_option()
            .filter(|n| !self.contains(n))
            .map(String::as_str)
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
