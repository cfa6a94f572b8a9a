//! Arbiter bundles out to a fleet: bundle archives as OCI artifacts ([`oci`]), and sources a
//! host refreshes its engine from ([`Refresher`]): a directory, an HTTP(S) URL or an OCI
//! reference, with a cache that lets a restart serve policy while the source is down.
//!
//! Everything here runs when the host calls it, on the host's thread: there is no background
//! thread, so a host that forks (Puma, Unicorn) stays safe, and the engine (crate `arbiter`)
//! stays free of network and runtimes.

pub mod oci;
mod refresh;
mod source;

pub use refresh::{
    delay_after, delay_after_start, RefreshOptions, Refreshed, Refresher, CACHE_ARCHIVE,
    CACHE_STATE,
};
pub use source::{http_agent, Source};

/// Why a bundle could not be pushed, pulled or refreshed. The serving bundle is untouched.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A source or reference that cannot be used as written.
    #[error("{0}")]
    Reference(String),
    /// The registry refused or failed a request, or sent something that is not a bundle.
    #[error("{reference}: {message}")]
    Registry { reference: String, message: String },
    /// An HTTP source failed: status, timeout, size, connection.
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    /// The bundle fetched is not one the engine accepts: an archive that does not unpack, a
    /// signature that does not verify, an older bundle, a bundle that does not load.
    #[error("{0}")]
    Load(#[from] arbiter::LoadError),
    /// A local file (the cache, a directory source) could not be read or written.
    #[error("{0}")]
    Io(String),
}

impl From<FleetError> for arbiter::CallError {
    /// For the bindings: a bundle refused keeps its kind (`signature`, `policy_parse`, ...); a
    /// source that cannot be used as written is `invalid_argument`; a fetch that failed is
    /// `io`, its message naming the source.
    fn from(e: FleetError) -> Self {
        use arbiter::ErrorKind;
        match e {
            FleetError::Load(load) => load.into(),
            FleetError::Reference(message) => Self::new(ErrorKind::InvalidArgument, message),
            other => Self::new(ErrorKind::Io, other.to_string()),
        }
    }
}
