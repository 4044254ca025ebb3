//! Image references with Docker's normalisation: `busybox` means
//! `docker.io/library/busybox:latest`, `host:port/repo:tag` names another registry, and
//! `@sha256:<hex>` pins content. Parsing follows the distribution/reference grammar.

use crate::digest::{Digest, is_full_hex};
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// A fully normalised reference. At least one of `tag` and `digest` is always set: a bare
/// name gets the tag `latest`, as Docker does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s`; a reference without tag or digest gets `:latest`.
    pub fn parse(s: &str) -> Result<Self> {
        let mut r = Self::parse_exact(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses and normalises `s` without adding a default tag (`busybox` stays name-only),
    /// for callers that must tell "no tag" apart from "latest".
    pub fn parse_exact(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::InvalidReference("empty reference".into()));
        }
        if is_full_hex(s) {
            return Err(Error::InvalidReference(format!(
                "invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
            )));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(parse_digest(s, d)?)),
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it is a registry port.
        let after_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[after_slash..].find(':') {
            Some(i) => {
                let at = after_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(s, t)?;
        }
        let (domain, path) = split_domain(name);
        validate_domain(s, &domain)?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(Error::InvalidReference(format!(
                "repository name ({path}) must be lowercase"
            )));
        }
        validate_path(s, &path)?;
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(Error::InvalidReference(format!(
                "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            )));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as Docker prints it, e.g. `busybox` or `localhost:5000/x`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                // Only strip `library/` when what remains is a single component, since
                // `docker.io/library/a/b` is not the same as `a/b`.
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The reference as Docker prints it: `busybox:latest`, `localhost:5000/x:1`,
    /// `alpine@sha256:...`.
    pub fn familiar(&self) -> String {
        self.format(&self.familiar_name())
    }

    /// The same repository with only `tag` (no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        validate_tag(tag, tag)?;
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository with only `digest` (no tag), as kept in RepoDigests.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    fn format(&self, name: &str) -> String {
        let mut s = name.to_string();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.format(&self.name()))
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Docker's rule: the first component is a registry only if it looks like a host (has a
/// `.` or `:`, is `localhost`, or has uppercase letters, which repository paths never do).
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.to_string()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path
    };
    (domain, path)
}

fn parse_digest(input: &str, d: &str) -> Result<Digest> {
    let (alg, hex) = d
        .split_once(':')
        .ok_or_else(|| Error::InvalidReference(format!("{input:?} has a malformed digest")))?;
    if alg != "sha256" {
        return Err(Error::InvalidReference(format!(
            "{input:?}: unsupported digest algorithm {alg:?}"
        )));
    }
    Digest::from_hex(hex).map_err(|_| {
        Error::InvalidReference(format!(
            "{input:?}: sha256 digest must be 64 lowercase hex digits"
        ))
    })
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn validate_tag(input: &str, tag: &str) -> Result<()> {
    let mut chars = tag.chars();
    let ok = match chars.next() {
        Some(first) => {
            is_word(first)
                && tag.len() <= TAG_LENGTH_MAX
                && chars.all(|c| is_word(c) || c == '.' || c == '-')
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidReference(format!(
            "{input:?}: invalid tag {tag:?} (1-128 of [A-Za-z0-9_.-], not starting with . or -)"
        )))
    }
}

/// Host components `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?` joined by dots, or a bracketed
/// IPv6 address, then an optional numeric port.
fn validate_domain(input: &str, domain: &str) -> Result<()> {
    let bad = || Error::InvalidReference(format!("{input:?}: invalid registry host {domain:?}"));
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        if v6.is_empty() || !v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(bad());
        }
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        let comp_ok = |c: &str| {
            !c.is_empty()
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        };
        if !host.split('.').all(comp_ok) {
            return Err(bad());
        }
    }
    if let Some(p) = port
        && (p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(bad());
    }
    Ok(())
}

/// Path components `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`, separated by `/`.
fn validate_path(input: &str, path: &str) -> Result<()> {
    for comp in path.split('/') {
        if !component_ok(comp) {
            return Err(Error::InvalidReference(format!(
                "{input:?}: invalid repository path component {comp:?}"
            )));
        }
    }
    Ok(())
}

fn component_ok(comp: &str) -> bool {
    let is_alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let first_last_ok = comp.starts_with(is_alnum) && comp.ends_with(is_alnum);
    if !first_last_ok {
        return false;
    }
    // Every run of non-alphanumerics must be one of the allowed separators.
    comp.split(is_alnum)
        .filter(|s| !s.is_empty())
        .all(|sep| sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-'))
        && comp
            .chars()
            .all(|c| is_alnum(c) || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    fn fam(s: &str) -> String {
        Reference::parse(s).unwrap().familiar()
    }

    #[test]
    fn normalises_docker_hub_names() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn registry_hosts_and_ports() {
        let r = Reference::parse("localhost:5000/x:1").unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "x");
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.familiar(), "localhost:5000/x:1");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("quay.io/a/b/c"), "quay.io/a/b/c:latest");
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        // No slash: `localhost:5000` is the repository `localhost` with tag `5000`.
        assert_eq!(norm("localhost:5000"), "docker.io/library/localhost:5000");
    }

    #[test]
    fn digests() {
        let s = format!("busybox@sha256:{HEX}");
        let r = Reference::parse(&s).unwrap();
        assert_eq!(r.tag(), None, "a digest reference gets no default tag");
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(r.familiar(), s);
        let r = Reference::parse(&format!("busybox:1@sha256:{HEX}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox:1@sha256:{HEX}")
        );
        assert!(Reference::parse("busybox@sha256:abc").is_err());
        assert!(Reference::parse(&format!("busybox@md5:{HEX}")).is_err());
    }

    #[test]
    fn familiar_forms() {
        assert_eq!(fam("busybox"), "busybox:latest");
        assert_eq!(fam("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(fam("docker.io/library/a/b"), "library/a/b:latest");
        assert_eq!(fam("user/app"), "user/app:latest");
        assert_eq!(fam("quay.io/a/b:2"), "quay.io/a/b:2");
    }

    #[test]
    fn name_only_parse_keeps_no_tag() {
        let r = Reference::parse_exact("busybox").unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "docker.io/library/busybox");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "Busybox",
            "user/App",
            "busybox:",
            "busybox:-x",
            "busybox:.x",
            "a..b",
            "a/-b",
            "a/b-",
            "a___b",
            "a/b//c",
            "/a",
            "a/",
            "bad host!/x",
            "host:port/x",
            "a b",
            "busybox@",
            HEX,
        ] {
            let err = Reference::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
            assert!(
                err.to_string().starts_with("invalid reference format"),
                "{err}"
            );
        }
        let e = Reference::parse("Busybox").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = "a".repeat(300);
        assert!(Reference::parse(&long_name).is_err());
    }

    #[test]
    fn accepts_separators() {
        for ok in [
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "a-b/c.d_e",
            "a1/2b",
            "x:V1.0_rc-2",
        ] {
            Reference::parse(ok).expect(ok);
        }
    }

    #[test]
    fn uppercase_host_is_a_domain() {
        assert_eq!(norm("Registry/x"), "Registry/x:latest");
    }
}
