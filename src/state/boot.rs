//! Which boot of the machine this is: output that was written but not yet
//! flushed survives a crash of ward, but not a restart of the machine.

/// The kernel's id of the current boot (`/proc/sys/kernel/random/boot_id`),
/// or an empty string when it cannot be read (then no unflushed output is
/// ever trusted on resume). `WARD_BOOT_ID` overrides it, so that tests can
/// simulate a restart.
pub fn boot_id() -> String {
    if let Some(id) = std::env::var_os("WARD_BOOT_ID") {
        return id.to_string_lossy().into_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// True when output written in boot `then` is still in this boot's page cache.
pub fn same_boot(then: &str, now: &str) -> bool {
    !then.is_empty() && then == now
}
