//! Bundles as OCI artifacts, through the OCI distribution protocol (the `oci-client` crate), so
//! any OCI registry (GitLab's container registry among them) carries policy the way it carries
//! images.
//!
//! An Arbiter bundle artifact is an OCI image manifest with:
//! - `artifactType` [`ARTIFACT_TYPE`];
//! - the empty config (`application/vnd.oci.empty.v1+json`, `{}`), as OCI 1.1 advises for
//!   artifacts;
//! - exactly one layer of media type [`arbiter::ARCHIVE_MEDIA_TYPE`]: the bundle archive
//!   (`arbiter bundle pack`), titled `bundle.tar.gz` so that `oras pull` writes it under that
//!   name;
//! - annotations `org.opencontainers.image.title`, and the bundle's name, version and signing
//!   time (`dev.arbiter.bundle.*`) when it has them.
//!
//! Pushing the same bundle twice gives the same manifest digest: the archive is reproducible
//! and nothing in the manifest depends on the time of pushing. Credentials come from the Docker
//! config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, credential helpers
//! included); a registry with none configured is used anonymously.
//!
//! The client is async; each call here runs it on a current-thread runtime built for the call
//! and dropped before it returns, so no thread outlives a call and a forking host stays safe.

use std::collections::BTreeMap;
use std::str::FromStr;

use arbiter::{unpack_archive, BundleFile, ARCHIVE_MEDIA_TYPE};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::FleetError;

/// The `artifactType` of an Arbiter bundle manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.arbiter.bundle.v1";
/// The file name `oras pull` gives the bundle layer.
pub const LAYER_TITLE: &str = "bundle.tar.gz";
const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const TITLE: &str = "org.opencontainers.image.title";

/// An OCI reference as Arbiter writes it: `oci://HOST/REPO[:TAG|@DIGEST]` (the tag defaults to
/// `latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference(Reference);

impl FromStr for OciReference {
    type Err = FleetError;

    fn from_str(s: &str) -> Result<Self, FleetError> {
        let bad = |why: String| FleetError::Reference(format!("`{s}`: {why}"));
        let rest = s
            .strip_prefix("oci://")
            .ok_or_else(|| bad("an OCI reference starts with oci://".into()))?;
        if !rest.contains('/') {
            return Err(bad("expected oci://HOST/REPO[:TAG|@DIGEST]".into()));
        }
        Reference::from_str(rest)
            .map(Self)
            .map_err(|e| bad(e.to_string()))
    }
}

impl std::fmt::Display for OciReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "oci://{}", self.0.whole())
    }
}

impl OciReference {
    /// The registry's host (and port).
    pub fn registry(&self) -> &str {
        self.0.resolve_registry()
    }

    /// The digest it names, if it names one.
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> Self {
        Self(Reference::with_digest(
            self.0.registry().to_owned(),
            self.0.repository().to_owned(),
            digest.to_owned(),
        ))
    }
}

/// What a pull brings: the manifest's digest, the archive and its files (not yet verified).
#[derive(Debug)]
pub struct Pulled {
    /// `sha256:...` of the manifest.
    pub digest: String,
    /// The bundle archive, as stored in the registry.
    pub archive: Vec<u8>,
    /// The archive's files.
    pub files: Vec<BundleFile>,
}

/// A client for one registry protocol setting.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Speak plain HTTP instead of HTTPS (a registry on loopback, as `oras --plain-http`).
    pub plain_http: bool,
    /// Timeout for connecting and for each read.
    pub timeout: Option<std::time::Duration>,
}

impl Registry {
    fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: match self.plain_http {
                true => ClientProtocol::Http,
                false => ClientProtocol::Https,
            },
            connect_timeout: self.timeout,
            read_timeout: self.timeout,
            ..ClientConfig::default()
        })
    }

    /// Pushes a bundle archive; answers the manifest's digest (`sha256:...`).
    pub fn push(
        &self,
        reference: &OciReference,
        archive: Vec<u8>,
        annotations: BTreeMap<String, String>,
    ) -> Result<String, FleetError> {
        let layer = ImageLayer::new(
            archive,
            ARCHIVE_MEDIA_TYPE.to_owned(),
            Some(BTreeMap::from([(TITLE.to_owned(), LAYER_TITLE.to_owned())])),
        );
        let config = Config::new(b"{}".to_vec(), EMPTY_CONFIG_MEDIA_TYPE.to_owned(), None);
        let mut manifest = OciImageManifest::build(
            std::slice::from_ref(&layer),
            &config,
            (!annotations.is_empty()).then_some(annotations),
        );
        manifest.media_type = Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned());
        manifest.artifact_type = Some(ARTIFACT_TYPE.to_owned());
        let body = serde_json::to_vec(&manifest).map_err(|e| FleetError::Registry {
            reference: reference.to_string(),
            message: e.to_string(),
        })?;
        let digest = sha256(&body);
        let image = &reference.0;
        let client = self.client();
        let failed = |e: oci_client::errors::OciDistributionError| FleetError::Registry {
            reference: reference.to_string(),
            message: e.to_string(),
        };
        block_on(async {
            let auth = auth(image.resolve_registry())?;
            client
                .auth(image, &auth, oci_client::RegistryOperation::Push)
                .await
                .map_err(failed)?;
            for (data, digest) in [
                (layer.data, &manifest.layers[0].digest),
                (config.data, &manifest.config.digest),
            ] {
                client
                    .push_blob(image, data, digest)
                    .await
                    .map_err(failed)?;
            }
            client
                .push_manifest_raw(
                    image,
                    body,
                    http::HeaderValue::from_static(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE),
                )
                .await
                .map_err(failed)?;
            Ok::<(), FleetError>(())
        })??;
        Ok(digest)
    }

    /// The digest of the manifest `reference` names now (a `HEAD`; nothing is downloaded).
    pub fn resolve(&self, reference: &OciReference) -> Result<String, FleetError> {
        let client = self.client();
        let image = &reference.0;
        block_on(async {
            let auth = auth(image.resolve_registry())?;
            client
                .fetch_manifest_digest(image, &auth)
                .await
                .map_err(|e| FleetError::Registry {
                    reference: reference.to_string(),
                    message: e.to_string(),
                })
        })?
    }

    /// Pulls the bundle `reference` names, holding at most `max_bytes` (compressed and
    /// unpacked alike). The manifest must be an Arbiter bundle artifact; the layer's digest is
    /// checked, and so is the manifest's when the reference names one.
    pub fn pull(&self, reference: &OciReference, max_bytes: usize) -> Result<Pulled, FleetError> {
        let client = self.client();
        let image = &reference.0;
        let bad = |message: String| FleetError::Registry {
            reference: reference.to_string(),
            message,
        };
        let (digest, archive) = block_on(async {
            let auth = auth(image.resolve_registry())?;
            let (manifest, digest) = client
                .pull_manifest(image, &auth)
                .await
                .map_err(|e| bad(e.to_string()))?;
            if let Some(wanted) = image.digest().filter(|d| *d != digest) {
                return Err(bad(format!(
                    "the registry sent manifest {digest}, not {wanted}"
                )));
            }
            let OciManifest::Image(manifest) = manifest else {
                return Err(bad("an image index, not an Arbiter bundle manifest".into()));
            };
            let layer = bundle_layer(&manifest).map_err(bad)?;
            if usize::try_from(layer.size).map_or(true, |size| size > max_bytes) {
                return Err(bad(format!(
                    "the bundle layer is {} bytes; the limit is {max_bytes}",
                    layer.size
                )));
            }
            let mut stream = client
                .pull_blob_stream(image, layer)
                .await
                .map_err(|e| bad(e.to_string()))?;
            let mut archive = Vec::new();
            while let Some(chunk) = stream.stream.next().await {
                archive.extend_from_slice(&chunk.map_err(|e| bad(e.to_string()))?);
                if archive.len() > max_bytes {
                    return Err(bad(format!("the bundle layer exceeds {max_bytes} bytes")));
                }
            }
            if sha256(&archive) != layer.digest {
                return Err(bad(format!(
                    "the bundle layer does not match its digest {}",
                    layer.digest
                )));
            }
            Ok((digest, archive))
        })??;
        let files = unpack_archive(&archive, max_bytes).map_err(FleetError::Load)?;
        Ok(Pulled {
            digest,
            archive,
            files,
        })
    }
}

/// The one layer of an Arbiter bundle manifest.
pub fn bundle_layer(
    manifest: &OciImageManifest,
) -> Result<&oci_client::manifest::OciDescriptor, String> {
    let mut layers = manifest
        .layers
        .iter()
        .filter(|l| l.media_type == ARCHIVE_MEDIA_TYPE);
    match (layers.next(), layers.next()) {
        (Some(layer), None) => Ok(layer),
        (None, _) => Err(format!(
            "not an Arbiter bundle: no layer of media type {ARCHIVE_MEDIA_TYPE}"
        )),
        (Some(_), Some(_)) => Err(format!(
            "more than one layer of media type {ARCHIVE_MEDIA_TYPE}"
        )),
    }
}

/// Registry credentials from the Docker config file (`$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`); anonymous when there is no such file or it has none for `registry`.
fn auth(registry: &str) -> Result<RegistryAuth, FleetError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let Some(path) = std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".docker")))
        .map(|dir| dir.join("config.json"))
    else {
        return Ok(RegistryAuth::Anonymous);
    };
    let failed = |message: String| FleetError::Registry {
        reference: registry.to_owned(),
        message: format!("{}: {message}", path.display()),
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => return Err(failed(e.to_string())),
    };
    match docker_credential::get_credential_from_reader(std::io::BufReader::new(file), registry) {
        Ok(DockerCredential::UsernamePassword(user, password)) => {
            Ok(RegistryAuth::Basic(user, password))
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(RegistryAuth::Bearer(token)),
        Err(E::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
        Err(e) => Err(failed(format!("cannot read the credentials for it: {e:?}"))),
    }
}

/// Runs `future` on a current-thread runtime that is gone when this returns.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, FleetError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FleetError::Io(format!("cannot start an I/O runtime: {e}")))?;
    Ok(runtime.block_on(future))
}

/// `sha256:<hex>` of `bytes`, as OCI writes digests.
pub fn sha256(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("sha256:{}", hex::encode(digest.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_oci_urls() {
        let r: OciReference = "oci://localhost:5000/arbiter/policy:v1".parse().unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.to_string(), "oci://localhost:5000/arbiter/policy:v1");
        let d = "sha256:".to_owned() + &"a".repeat(64);
        let at = r.at_digest(&d);
        assert_eq!(at.digest(), Some(d.as_str()));
        assert_eq!(
            at.to_string(),
            format!("oci://localhost:5000/arbiter/policy@{d}")
        );
        for bad in ["localhost:5000/x:v1", "oci://nohost", "oci://h/Upper:v1"] {
            assert!(bad.parse::<OciReference>().is_err(), "{bad}");
        }
    }
}
