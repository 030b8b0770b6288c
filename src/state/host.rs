//! Which machine, and which boot of it, this ward runs on.
//!
//! A store records runs under this identity (the run's host, a lease's
//! holder) and the crash rules read it: output written but not yet flushed
//! survives a crash of ward, but not a restart of the machine (recovery
//! rule 6). One SQLite file is one host's; a store shared by many hosts
//! (PostgreSQL) tells them apart by it.

use std::sync::OnceLock;

/// This machine and this boot of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    /// The host name (`/proc/sys/kernel/hostname`; `localhost` when empty
    /// or unreadable).
    pub hostname: String,
    /// The kernel's id of the current boot
    /// (`/proc/sys/kernel/random/boot_id`), or empty when it cannot be read
    /// (then no unflushed output is ever trusted on resume). `WARD_BOOT_ID`
    /// overrides it, so that tests can simulate a restart.
    pub boot_id: String,
}

impl HostIdentity {
    /// This host, read once per process (neither changes while ward runs).
    pub fn current() -> HostIdentity {
        static THIS: OnceLock<HostIdentity> = OnceLock::new();
        THIS.get_or_init(|| HostIdentity {
            hostname: crate::host::hostname(),
            boot_id: boot_id(),
        })
        .clone()
    }

    /// True when output written in boot `then` of this host is still in
    /// this boot's page cache.
    pub fn same_boot(&self, then: &str) -> bool {
        same_boot(then, &self.boot_id)
    }
}

fn boot_id() -> String {
    if let Some(id) = std::env::var_os("WARD_BOOT_ID") {
        return id.to_string_lossy().into_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// True when output written in boot `then` is still in boot `now`'s page
/// cache (an unknown boot never is).
pub fn same_boot(then: &str, now: &str) -> bool {
    !then.is_empty() && then == now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_boot_is_never_the_same() {
        assert!(same_boot("b1", "b1"));
        assert!(!same_boot("b1", "b2"));
        assert!(!same_boot("", ""));
    }
}
