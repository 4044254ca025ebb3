//! OCI device rules → cgroup v1 `devices.allow` / `devices.deny` writes.
//!
//! On v1 the devices controller is what stops a container from opening host
//! device nodes it can mknod or see. Rules are applied in order, exactly as
//! the OCI spec lists them (typically "deny all" first, then allows).
//! cgroup v2 enforces devices with an eBPF program instead; that lives
//! elsewhere and is not done here.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::error::{CgroupError, Result};
use super::fsutil::write;

/// One write: (file, rule text).
pub(crate) type DeviceWrite = (&'static str, String);

/// Translates rules to v1 writes. FIFO rules are dropped (the devices
/// controller does not govern FIFOs); unbuffered char devices are char devices.
pub(crate) fn v1_device_writes(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceWrite>> {
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let typ = match r.typ().unwrap_or_default() {
            LinuxDeviceType::A => 'a',
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::C | LinuxDeviceType::U => 'c',
            LinuxDeviceType::P => continue,
        };
        let access = r
            .access()
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or("rwm");
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(CgroupError::InvalidResource {
                field: "devices.access",
                reason: format!("{access:?} is not a subset of \"rwm\""),
            });
        }
        let num = |n: Option<i64>| -> Result<String> {
            match n {
                None | Some(-1) => Ok("*".into()),
                Some(v) if v >= 0 => Ok(v.to_string()),
                Some(v) => Err(CgroupError::InvalidResource {
                    field: "devices.major/minor",
                    reason: format!("{v} is negative"),
                }),
            }
        };
        let file = if r.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        let rule = format!("{typ} {}:{} {access}", num(r.major())?, num(r.minor())?);
        out.push((file, rule));
    }
    Ok(out)
}

/// Applies the rules to the container's v1 devices cgroup `dir`.
pub(crate) fn apply_v1_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    for (file, rule) in v1_device_writes(rules)? {
        write(dir, file, &rule)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m).minor(3);
        }
        b.build().unwrap()
    }

    #[test]
    fn docker_like_rules() {
        let rules = [
            rule(false, LinuxDeviceType::A, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), "rwm"),
            rule(true, LinuxDeviceType::U, Some(5), "r"),
            rule(true, LinuxDeviceType::P, Some(1), "r"),
            rule(true, LinuxDeviceType::B, None, ""),
        ];
        assert_eq!(
            v1_device_writes(&rules).unwrap(),
            vec![
                ("devices.deny", "a *:* rwm".to_string()),
                ("devices.allow", "c 1:3 rwm".to_string()),
                ("devices.allow", "c 5:3 r".to_string()),
                ("devices.allow", "b *:* rwm".to_string()),
            ]
        );
    }

    #[test]
    fn rejects_bad_access() {
        let rules = [rule(true, LinuxDeviceType::C, Some(1), "rwx")];
        assert!(v1_device_writes(&rules).is_err());
    }

    #[test]
    fn writes_into_fake_cgroup() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("devices.deny"), "").unwrap();
        apply_v1_devices(t.path(), &[rule(false, LinuxDeviceType::A, None, "rwm")]).unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("devices.deny")).unwrap(),
            "a *:* rwm"
        );
    }
}
