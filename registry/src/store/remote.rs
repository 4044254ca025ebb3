//! Talking to one registry: the oci-client set-up (plain HTTP for insecure registries),
//! credentials from the docker CLI's config, reference conversion and error wording.

use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::settings::RegistrySettings;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

pub(super) struct Remote {
    pub client: oci_client::Client,
    pub auth: RegistryAuth,
    /// `host[:port]` as the client talks to it (a mirror's, for mirrored docker.io pulls).
    pub host: String,
}

impl Remote {
    pub fn new(host: &str, settings: &RegistrySettings) -> Result<Self> {
        let protocol = if settings.is_insecure(host) {
            ClientProtocol::HttpsExcept(vec![host.to_string()])
        } else {
            ClientProtocol::Https
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            // Platform choice is ours (see pull::select_platform), not the client's.
            platform_resolver: None,
            ..Default::default()
        });
        let auth = match &settings.credentials {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => match crate::auth::credentials_for(host)? {
                Some((user, password)) => RegistryAuth::Basic(user, password),
                None => RegistryAuth::Anonymous,
            },
        };
        Ok(Remote {
            client,
            auth,
            host: host.to_string(),
        })
    }

    /// `r` addressed at this remote's host (differs from `r.domain()` for a mirror).
    pub fn oci_ref(&self, r: &Reference) -> oci_client::Reference {
        let repo = r.path().to_string();
        match (r.digest(), r.tag()) {
            (Some(d), _) => {
                oci_client::Reference::with_digest(self.host.clone(), repo, d.to_string())
            }
            (None, t) => oci_client::Reference::with_tag(
                self.host.clone(),
                repo,
                t.unwrap_or("latest").to_string(),
            ),
        }
    }

    pub fn by_digest(&self, r: &Reference, digest: &str) -> oci_client::Reference {
        oci_client::Reference::with_digest(self.host.clone(), r.path().to_string(), digest.into())
    }
}

/// How oci-client words a 401 in its errors.
pub(super) fn is_unauthorized(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("401") || t.contains("unauthorized") || t.contains("not authorized")
}

pub(super) fn is_not_found(e: &oci_client::errors::OciDistributionError) -> bool {
    let text = e.to_string();
    matches!(
        e,
        oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)
    ) || text.contains("manifest unknown")
        || text.contains("name unknown")
        || text.contains("404")
}

pub(super) fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}
