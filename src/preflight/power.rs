//! `on_ac_power`: is the machine on mains power? Read from
//! /sys/class/power_supply, as the `on_ac_power` script of powermgmt-base
//! does:
//!
//! - a supply that is not a battery (`type` Mains, USB, ...) with
//!   `online` 1: on power;
//! - else, a system battery (a `Battery` whose `scope` is not `Device`, so
//!   a wireless mouse does not count): on battery, the check fails;
//! - else (no battery at all, as on most servers, or no power-supply
//!   class): on power.

use std::path::{Path, PathBuf};

/// Where the kernel lists power supplies.
pub const POWER_SUPPLY_DIR: &str = "/sys/class/power_supply";

/// Test hook: read this folder instead of [`POWER_SUPPLY_DIR`] (a tree of
/// `<supply>/{type,online,scope,status,capacity}` files). Used only by
/// tests; documented with the other test hooks.
pub const TEST_POWER_SUPPLY_ENV: &str = "WARD_TEST_POWER_SUPPLY_DIR";

pub(super) fn supply_dir() -> PathBuf {
    std::env::var_os(TEST_POWER_SUPPLY_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(POWER_SUPPLY_DIR), PathBuf::from)
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// `Ok(why on power)` or `Err(why on battery)`, from the supplies in `dir`.
pub fn on_ac_power(dir: &Path) -> Result<String, String> {
    let mut entries: Vec<(String, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(list) => list
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    entries.sort();
    let mut batteries = Vec::new();
    for (name, path) in &entries {
        let kind = read(path, "type").unwrap_or_default();
        if kind == "Battery" {
            if read(path, "scope").as_deref() != Some("Device") {
                batteries.push((name, path));
            }
        } else if read(path, "online").as_deref() == Some("1") {
            return Ok(format!("{name} ({kind}) online"));
        }
    }
    if batteries.is_empty() {
        return Ok("no battery: mains power".into());
    }
    let shown: Vec<String> = batteries
        .iter()
        .map(|(name, path)| {
            let status = read(path, "status").unwrap_or_else(|| "status unknown".into());
            match read(path, "capacity") {
                Some(c) => format!("{name} {status}, {c}%"),
                None => format!("{name} {status}"),
            }
        })
        .collect();
    Err(format!(
        "on battery, no mains supply online: {}",
        shown.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(root: &Path, name: &str, files: &[(&str, &str)]) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (f, v) in files {
            std::fs::write(dir.join(f), format!("{v}\n")).expect("write");
        }
    }

    #[test]
    fn mains_online_battery_alone_and_no_battery() {
        let root = tempfile::tempdir().expect("tempdir");
        // No supplies at all (a server): on power.
        assert!(on_ac_power(&root.path().join("none")).is_ok());
        assert!(on_ac_power(root.path()).is_ok());
        supply(
            root.path(),
            "BAT0",
            &[
                ("type", "Battery"),
                ("status", "Discharging"),
                ("capacity", "57"),
            ],
        );
        supply(root.path(), "AC", &[("type", "Mains"), ("online", "0")]);
        let why = on_ac_power(root.path()).expect_err("on battery");
        assert!(why.contains("BAT0 Discharging, 57%"), "{why}");
        supply(root.path(), "AC", &[("type", "Mains"), ("online", "1")]);
        assert_eq!(on_ac_power(root.path()), Ok("AC (Mains) online".into()));
    }

    #[test]
    fn a_device_battery_is_not_the_machines() {
        let root = tempfile::tempdir().expect("tempdir");
        supply(
            root.path(),
            "hidpp_battery_0",
            &[
                ("type", "Battery"),
                ("scope", "Device"),
                ("status", "Discharging"),
            ],
        );
        assert!(on_ac_power(root.path()).is_ok());
    }
}
