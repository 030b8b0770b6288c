//! What this machine is called, as the kernel says (`uname -n`), read
//! once per use: run facts, manifests and the store's host identity all
//! name the host the same way.

/// The host name, or `localhost` when the kernel has none.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
