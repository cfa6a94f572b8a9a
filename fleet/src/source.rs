//! Where a refresher fetches bundles: a directory, an HTTP(S) URL, an OCI reference.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use arbiter::{pack_archive, read_bundle_dir, unpack_archive, BundleFile};

use crate::oci::{sha256, OciReference, Registry};
use crate::FleetError;

/// A bundle source, written as a refresher's configuration names it: `oci://HOST/REPO[:TAG|@DIGEST]`,
/// `https://...` (or `http://...`), or a directory path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A bundle directory.
    Dir(PathBuf),
    /// A URL that serves a bundle archive.
    Http(String),
    /// An OCI artifact (`arbiter bundle push`).
    Oci(OciReference),
}

impl FromStr for Source {
    type Err = FleetError;

    fn from_str(s: &str) -> Result<Self, FleetError> {
        if s.starts_with("oci://") {
            s.parse().map(Source::Oci)
        } else if s.starts_with("https://") || s.starts_with("http://") {
            Ok(Source::Http(s.to_owned()))
        } else if s.contains("://") {
            Err(FleetError::Reference(format!(
                "`{s}`: a source is oci://, https://, http:// or a directory"
            )))
        } else {
            Ok(Source::Dir(PathBuf::from(s)))
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dir(path) => write!(f, "{}", path.display()),
            Source::Http(url) => f.write_str(url),
            Source::Oci(reference) => reference.fmt(f),
        }
    }
}

impl Source {
    /// Whether the bundle travels over a network (and so must be signed).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Source::Dir(_))
    }
}

/// What one fetch found.
pub(crate) enum Fetched {
    /// The bundle is the one with digest `current` (a `304`, the same manifest digest, the same
    /// bytes); `etag` is what an HTTP source sent.
    Unchanged { etag: Option<String> },
    /// A different bundle, not yet verified or loaded.
    New(Bundle),
}

/// A fetched bundle: its digest, archive (what the cache keeps) and files.
pub(crate) struct Bundle {
    pub(crate) digest: String,
    pub(crate) archive: Vec<u8>,
    pub(crate) files: Vec<BundleFile>,
    pub(crate) etag: Option<String>,
}

/// Fetches from a source, remembering nothing itself: `current` is the serving bundle's digest
/// and `etag` what the HTTP source last sent with it.
pub(crate) struct Fetcher {
    max_bytes: usize,
    registry: Registry,
    agent: ureq::Agent,
}

impl Fetcher {
    pub(crate) fn new(
        timeout: Duration,
        max_bytes: usize,
        plain_http: bool,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, FleetError> {
        Ok(Self {
            max_bytes,
            registry: Registry {
                plain_http,
                timeout: Some(timeout),
            },
            agent: http_agent(timeout, ca_file)?,
        })
    }

    pub(crate) fn fetch(
        &self,
        source: &Source,
        current: Option<&str>,
        etag: Option<&str>,
    ) -> Result<Fetched, FleetError> {
        match source {
            Source::Dir(path) => {
                // Compared by its files' digest: packed (compressed) only when it changed.
                let files = read_bundle_dir(path)?;
                let digest = files_digest(&files);
                if current == Some(digest.as_str()) {
                    return Ok(Fetched::Unchanged { etag: None });
                }
                let archive = pack_archive(&files)?;
                Ok(Fetched::New(Bundle {
                    digest,
                    archive,
                    files,
                    etag: None,
                }))
            }
            Source::Http(url) => self.fetch_http(url, current, etag),
            Source::Oci(reference) => {
                let digest = match reference.digest() {
                    Some(digest) => digest.to_owned(),
                    None => self.registry.resolve(reference)?,
                };
                if current == Some(digest.as_str()) {
                    return Ok(Fetched::Unchanged { etag: None });
                }
                let pulled = self
                    .registry
                    .pull(&reference.at_digest(&digest), self.max_bytes)?;
                Ok(Fetched::New(Bundle {
                    digest: pulled.digest,
                    archive: pulled.archive,
                    files: pulled.files,
                    etag: None,
                }))
            }
        }
    }

    fn fetch_http(
        &self,
        url: &str,
        current: Option<&str>,
        etag: Option<&str>,
    ) -> Result<Fetched, FleetError> {
        let failed = |message: String| FleetError::Http {
            url: url.to_owned(),
            message,
        };
        let mut request = self.agent.get(url);
        // A conditional GET only while the bundle it names is the one serving.
        if let (Some(etag), Some(_)) = (etag, current) {
            request = request.header("If-None-Match", etag);
        }
        let mut response = request.call().map_err(|e| failed(e.to_string()))?;
        let sent_etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match response.status().as_u16() {
            304 if current.is_some() => {
                return Ok(Fetched::Unchanged {
                    etag: sent_etag.or(etag.map(str::to_owned)),
                })
            }
            200 => {}
            status => return Err(failed(format!("HTTP status {status}"))),
        }
        let archive = response
            .body_mut()
            .with_config()
            .limit(self.max_bytes as u64)
            .read_to_vec()
            .map_err(|e| failed(format!("reading the body: {e}")))?;
        let digest = sha256(&archive);
        if current == Some(digest.as_str()) {
            // A new ETag for the same bytes.
            return Ok(Fetched::Unchanged { etag: sent_etag });
        }
        let files = unpack_archive(&archive, self.max_bytes)?;
        Ok(Fetched::New(Bundle {
            digest,
            archive,
            files,
            etag: sent_etag,
        }))
    }
}

/// A blocking HTTP client (no thread, no runtime) with rustls over aws-lc-rs: `timeout` for a
/// whole request, any status answered rather than raised, and trust in the CA certificates of
/// `ca_file` (PEM) or else the platform's roots. What the refresher and the OTLP exporter use.
pub fn http_agent(
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> Result<ureq::Agent, FleetError> {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    let roots = match ca_file {
        None => RootCerts::PlatformVerifier,
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| FleetError::Io(format!("{}: {e}", path.display())))?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(FleetError::Io(format!(
                    "{}: no PEM certificate in the CA file",
                    path.display()
                )));
            }
            RootCerts::new_with_certs(&certs)
        }
    };
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .build();
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .new_agent())
}

/// A directory's digest: `sha256:` over its files' paths and contents, in path order.
fn files_digest(files: &[BundleFile]) -> String {
    let mut sorted: Vec<&BundleFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for file in sorted {
        for part in [file.path.as_bytes(), &file.contents] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
    }
    format!("sha256:{}", hex::encode(context.finish().as_ref()))
}
