//! TLS and mutual TLS for both listeners, with rustls: the server's certificate and key, and
//! optionally the CA its clients' certificates must chain to. The files are read again on every
//! reload (SIGHUP, or a change seen by the reload check), so short-lived certificates rotate
//! without a restart: new connections get the new ones, open connections keep theirs. A set of
//! files that does not load is reported and the serving one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The files TLS is configured from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: Option<PathBuf>,
}

/// The serving TLS configuration, swapped whole on reload.
pub(crate) struct Tls {
    files: TlsFiles,
    config: ArcSwap<ServerConfig>,
    /// The files' modification times and sizes as last loaded.
    stamp: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl Tls {
    /// Loads the files; fails naming the file that is unusable.
    pub(crate) fn load(files: TlsFiles) -> Result<Self, String> {
        let stamp = stamp(&files);
        let config = config(&files)?;
        Ok(Self {
            files,
            config: ArcSwap::from_pointee(config),
            stamp: Mutex::new(stamp),
        })
    }

    /// Reads the files again when `forced` or when they changed; answers what happened, for the
    /// server's event log (`None` when nothing changed).
    pub(crate) fn reload(&self, forced: bool) -> Option<Result<(), String>> {
        let now = stamp(&self.files);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
            if !forced && *last == now {
                return None;
            }
            *last = now;
        }
        Some(config(&self.files).map(|config| self.config.store(Arc::new(config))))
    }

    /// An acceptor with the serving configuration, for one connection's handshake.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.load_full())
    }
}

/// The files' modification times and sizes (`None` for one that cannot be read).
fn stamp(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
    .collect()
}

/// A rustls server configuration from the files.
fn config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let unusable = |path: &Path, e: &dyn std::fmt::Display| format!("`{}`: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unusable(&files.cert, &e))?;
    if chain.is_empty() {
        return Err(unusable(&files.cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| unusable(&files.key, &e))?;
    let builder = ServerConfig::builder();
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| unusable(path, &e))? {
                roots
                    .add(cert.map_err(|e| unusable(path, &e))?)
                    .map_err(|e| unusable(path, &e))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| unusable(path, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| unusable(&files.key, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
