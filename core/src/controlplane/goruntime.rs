//! The Go runtime settings each component runs with: a container's `env` in a pod, a process's
//! environment on a host. The components are Go programs whose heap, by Go's default
//! (`GOGC=100`), grows to twice what is live before a collection: for a small tenant that
//! headroom is most of its memory.

use kamaji_model::quantity::quantity_value;

use crate::spec::Requirements;

/// The collector's target: the heap may grow by this percentage of the live heap before the
/// next collection. Measured by `make bench` on six idle tenants of 1.37 (PSS of the three
/// components): 298 MiB at Go's 100, 261 at 50, 229 at 25; starting a tenant's components
/// took 2.7 CPU-seconds at 100 and 4.2 at 25, and an idle tenant's CPU did not move (21 and
/// 23 millicores). Density is paid every hour, start-up once per start: 25.
pub const GOGC: &str = "25";

/// The share of a memory limit given to Go as its soft limit (`GOMEMLIMIT`): the collector
/// works harder as the heap nears it instead of the kernel killing the component at the
/// limit, with room left for what the Go heap does not count (stacks, mapped files).
const SOFT_LIMIT_SHARE: f64 = 0.9;

/// The environment of a component with these requirements: `GOGC`, and `GOMEMLIMIT` when the
/// tenant sets a memory limit.
pub fn env(r: &Requirements) -> Vec<(String, String)> {
    let mut env = vec![("GOGC".to_owned(), GOGC.to_owned())];
    if let Some(limit) = r.memory_limit.as_deref().and_then(quantity_value) {
        env.push((
            "GOMEMLIMIT".to_owned(),
            format!("{}", (limit * SOFT_LIMIT_SHARE) as u64),
        ));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_limit_becomes_go_s_soft_limit_below_it() {
        let none = env(&Requirements::default());
        assert_eq!(none, vec![("GOGC".to_owned(), GOGC.to_owned())]);
        let limited = env(&Requirements {
            memory_limit: Some("200Mi".into()),
            ..Default::default()
        });
        assert!(limited.contains(&("GOMEMLIMIT".to_owned(), "188743680".to_owned())));
    }
}
