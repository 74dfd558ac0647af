//! Names being replaced in the running plan.
//!
//! Terraform plans a replacement in two calls: an update that answers "requires replacement",
//! then a create of the same name with no prior state. That create must not be refused as
//! "already exists": the old object is destroyed before the new one is created. Both calls
//! reach the same provider process, so remembering the name between them is enough.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Replacing(Arc<Mutex<HashSet<String>>>);

impl Replacing {
    pub fn mark(&self, name: &str) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(name.to_owned());
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.lock().map(|s| s.contains(name)).unwrap_or(false)
    }
}
