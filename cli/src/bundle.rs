//! `arbiter bundle`: sign a bundle, verify its signature, pack it into an archive, push it to
//! and pull it from an OCI registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arbiter::{
    pack_archive, read_bundle_dir, write_bundle_dir, BundleFile, BundleSigner, Engine, TrustedKeys,
    SIGNATURE_FILE,
};
use arbiter_fleet::oci::{OciReference, Registry};
use clap::{Args, Subcommand};

use crate::{ALLOW, DENY};

#[derive(Subcommand)]
pub(crate) enum BundleCommand {
    /// Sign a bundle: write DIR/signature.json (the SHA-256 of every file an engine loads and the
    /// time of signing, signed with an Ed25519 or ECDSA P-256 private key in PKCS#8 PEM). Prints
    /// the public key (SPKI PEM) that engines must trust.
    Sign {
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// The private key (PEM, `BEGIN PRIVATE KEY`).
        #[arg(long)]
        key: PathBuf,
    },
    /// Verify a bundle's signature against trusted public keys. Exit 0 when it is signed by one
    /// of them and unchanged since, 1 otherwise (each problem printed with its file).
    Verify {
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// A trusted public key (PEM, `BEGIN PUBLIC KEY`); repeat for several.
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<PathBuf>,
    },
    /// Pack a bundle into a reproducible archive (gzip-compressed tar; the same files give the
    /// same bytes), its `signature.json` inside. The bundle must load. Prints the archive's
    /// digest.
    Pack {
        /// Bundle directory.
        bundle: PathBuf,
        /// Where to write the archive.
        #[arg(long)]
        out: PathBuf,
    },
    /// Push a bundle to an OCI registry as an Arbiter bundle artifact (see docs/fleet.md). The
    /// bundle must load. Prints the manifest digest. Credentials come from the Docker config.
    Push {
        /// Bundle directory.
        bundle: PathBuf,
        /// oci://HOST/REPO:TAG
        reference: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Pull a bundle from an OCI registry into a new directory, written only once the bundle
    /// loads (and, with `--public-key`, once its signature verifies against those keys).
    Pull {
        /// oci://HOST/REPO[:TAG|@DIGEST]
        reference: String,
        /// The directory to create (absent or empty).
        #[arg(long)]
        out: PathBuf,
        /// A trusted public key (PEM); repeat for several. Refuses a bundle not signed by one.
        #[arg(long = "public-key")]
        public_keys: Vec<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// How to reach a registry.
#[derive(Args)]
pub(crate) struct RegistryArgs {
    /// Speak plain HTTP to the registry (one on loopback), as `oras --plain-http`.
    #[arg(long)]
    plain_http: bool,
}

impl RegistryArgs {
    fn registry(&self) -> Registry {
        Registry {
            plain_http: self.plain_http,
            timeout: Some(std::time::Duration::from_secs(30)),
        }
    }
}

pub(crate) fn run(command: BundleCommand) -> Result<u8, String> {
    match command {
        BundleCommand::Sign { bundle, key } => {
            let signer = BundleSigner::from_pem(&read(&key)?)
                .map_err(|e| format!("{}: {e}", key.display()))?;
            let files = read_bundle_dir(&bundle).map_err(|e| e.to_string())?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let signature = signer.sign(&files, now).map_err(|e| e.to_string())?;
            let path = bundle.join(SIGNATURE_FILE);
            std::fs::write(&path, signature).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!(
                "signed {} files of {} with key {}",
                files.iter().filter(|f| f.path != SIGNATURE_FILE).count(),
                bundle.display(),
                signer.key_id()
            );
            say_part!("{}", signer.public_key_pem())?;
            Ok(ALLOW)
        }
        BundleCommand::Verify {
            bundle,
            public_keys,
        } => {
            let keys = trusted_keys(&public_keys)?;
            let files = read_bundle_dir(&bundle).map_err(|e| e.to_string())?;
            match keys.verify(&files) {
                Ok(signed_at) => {
                    say!(
                        "{}: signed by a trusted key at {signed_at} (Unix seconds) and unchanged",
                        bundle.display()
                    )?;
                    Ok(ALLOW)
                }
                Err(e) => {
                    say!("{}: {}\n{e}", bundle.display(), e.kind())?;
                    Ok(DENY)
                }
            }
        }
        BundleCommand::Pack { bundle, out } => {
            let (archive, _) = packed(&bundle)?;
            std::fs::write(&out, &archive).map_err(|e| format!("{}: {e}", out.display()))?;
            say!(
                "{}",
                serde_json::json!({"archive": out, "digest": arbiter_fleet::oci::sha256(&archive)})
            )?;
            Ok(ALLOW)
        }
        BundleCommand::Push {
            bundle,
            reference,
            registry,
        } => {
            let reference: OciReference = reference.parse().map_err(|e| format!("{e}"))?;
            let (archive, engine) = packed(&bundle)?;
            let info = engine.info();
            let annotations: BTreeMap<String, String> = [
                ("dev.arbiter.bundle.name", info.name),
                ("dev.arbiter.bundle.version", info.version),
            ]
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect();
            let digest = registry
                .registry()
                .push(&reference, archive, annotations)
                .map_err(|e| e.to_string())?;
            say!(
                "{}",
                serde_json::json!({"reference": reference.to_string(), "digest": digest})
            )?;
            Ok(ALLOW)
        }
        BundleCommand::Pull {
            reference,
            out,
            public_keys,
            registry,
        } => {
            let reference: OciReference = reference.parse().map_err(|e| format!("{e}"))?;
            let limit = arbiter::Limits::default().max_bundle_bytes;
            let pulled = registry
                .registry()
                .pull(&reference, limit)
                .map_err(|e| e.to_string())?;
            let loads = match public_keys.is_empty() {
                true => Engine::from_files(pulled.files.clone()).map(drop),
                false => {
                    Engine::from_signed_files(pulled.files.clone(), trusted_keys(&public_keys)?)
                        .map(drop)
                }
            };
            loads.map_err(|e| format!("{reference}: refused ({}):\n{e}", e.kind()))?;
            write_bundle_dir(&out, &pulled.files).map_err(|e| e.to_string())?;
            say!(
                "{}",
                serde_json::json!({
                    "reference": reference.to_string(),
                    "digest": pulled.digest,
                    "out": out,
                })
            )?;
            Ok(ALLOW)
        }
    }
}

/// The archive of the bundle in `dir`, and its engine: a bundle that does not load is not
/// packed. An unsigned bundle is packed with a warning (an engine that trusts keys refuses it).
fn packed(dir: &Path) -> Result<(Vec<u8>, Engine), String> {
    let files: Vec<BundleFile> = read_bundle_dir(dir).map_err(|e| e.to_string())?;
    if !files.iter().any(|f| f.path == SIGNATURE_FILE) {
        eprintln!(
            "arbiter: warning: {} is not signed (arbiter bundle sign); engines that trust \
             signing keys will refuse it",
            dir.display()
        );
    }
    let engine = Engine::from_files(files.clone())
        .map_err(|e| format!("{}: does not load ({}):\n{e}", dir.display(), e.kind()))?;
    let archive = pack_archive(&files).map_err(|e| e.to_string())?;
    Ok((archive, engine))
}

/// The public keys in these PEM files.
fn trusted_keys(paths: &[PathBuf]) -> Result<TrustedKeys, String> {
    let pems = paths
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    TrustedKeys::from_pems(&pems).map_err(|e| e.to_string())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}
