//! TLS and mutual TLS for both listeners, with rustls: the server's certificate and key, and
//! optionally the CA its clients' certificates must chain to. The files are read again on every
//! reload (SIGHUP, or a change seen by the reload check), so short-lived certificates rotate
//! without a restart: new connections get the new ones, open connections keep theirs. A set of
//! files that does not load is reported and the serving one kept.
//!
//! Handshakes run in their own tasks, off the accept loop, each given `HANDSHAKE_TIMEOUT`, so a
//! slow or silent client holds up no one else.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Accepts connections on `listener` until `stop`, handing on those whose handshake
    /// completes.
    pub(crate) fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
    ) -> Incoming {
        let (send, receive) = mpsc::channel(64);
        let tls = Arc::clone(self);
        let local = listener.local_addr();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop.wait_for(|stop| *stop) => return,
                };
                let Ok((tcp, peer)) = accepted else {
                    // Out of file descriptors, say: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // Small answers go out at once, not after the peer's delayed ACK.
                let _ = tcp.set_nodelay(true);
                let acceptor = TlsAcceptor::from(tls.config.load_full());
                let send = send.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    if let Ok(Ok(stream)) = handshake.await {
                        let _ = send.send((TlsIo(stream), peer)).await;
                    }
                });
            }
        });
        Incoming { receive, local }
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

/// Connections whose TLS handshake completed.
pub(crate) struct Incoming {
    receive: mpsc::Receiver<(TlsIo, SocketAddr)>,
    local: io::Result<SocketAddr>,
}

impl Incoming {
    /// The connections as a stream, for tonic.
    pub(crate) fn into_stream(
        self,
    ) -> impl tokio_stream::Stream<Item = Result<TlsIo, io::Error>> + Send + 'static {
        tokio_stream::wrappers::ReceiverStream::new(self.receive).map(|(io, _)| Ok(io))
    }
}

impl axum::serve::Listener for Incoming {
    type Io = TlsIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TlsIo, SocketAddr) {
        match self.receive.recv().await {
            Some(connection) => connection,
            // The accept loop has stopped: so is the server, which stops asking.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.local
            .as_ref()
            .copied()
            .map_err(|e| io::Error::new(e.kind(), e.to_string()))
    }
}

/// A TLS connection, as both servers take it.
pub(crate) struct TlsIo(TlsStream<TcpStream>);

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}
