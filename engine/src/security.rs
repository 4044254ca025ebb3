//! Choosing a container's seccomp filter from its security options: Docker's default
//! profile, a custom profile (`seccomp=<json>`, the CLI sends the file's content), or
//! `unconfined`; privileged containers run unconfined like Docker's.

use crate::error::{Error, Result};
use crate::model::ContainerRecord;
use crate::runtime::SeccompBlob;
use oci_spec::runtime::LinuxSeccomp;
use std::path::Path;

pub fn seccomp_for(r: &ContainerRecord, caps: &[String]) -> Result<Option<LinuxSeccomp>> {
    let mut profile = None;
    for opt in &r.host_config.security_opt {
        let Some(v) = opt
            .strip_prefix("seccomp=")
            .or_else(|| opt.strip_prefix("seccomp:"))
        else {
            continue;
        };
        if v == "unconfined" {
            return Ok(None);
        }
        profile = Some(
            crate::seccomp::parse_profile(v.as_bytes())
                .map_err(|e| Error::invalid(format!("Decoding seccomp profile failed: {e}")))?,
        );
    }
    if r.host_config.privileged && profile.is_none() {
        return Ok(None);
    }
    let profile = profile.unwrap_or_else(crate::seccomp::default_profile);
    let arch = crate::seccomp::NativeArch::current()
        .ok_or_else(|| Error::Seccomp("unsupported host architecture".into()))?;
    crate::seccomp::to_oci(&profile, caps, arch)
        .map_err(|e| Error::invalid(format!("seccomp profile: {e}")))
}

/// The compiled program for `s`, from the on-disk cache when present.
pub fn compiled_filter(s: &LinuxSeccomp, cache_dir: &Path) -> Result<SeccompBlob> {
    let prog =
        crate::seccomp::compile_cached(s, cache_dir).map_err(|e| Error::Seccomp(e.to_string()))?;
    Ok(SeccompBlob {
        hex: hex::encode(prog.to_bytes()),
        flags: prog.flags(),
    })
}

/// Validates security options at create time (Docker rejects unknown ones).
pub fn validate_security_opts(opts: &[String]) -> Result<()> {
    for o in opts {
        let key = o.split(['=', ':']).next().unwrap_or("");
        match key {
            "seccomp" | "no-new-privileges" | "apparmor" | "label" | "systempaths" => {}
            _ => {
                return Err(Error::invalid(format!("Invalid --security-opt: {o:?}")));
            }
        }
    }
    Ok(())
}
