//! `arbiter bundle`: sign a bundle and verify its signature.

use std::path::{Path, PathBuf};

use arbiter::{read_bundle_dir, BundleSigner, TrustedKeys, SIGNATURE_FILE};
use clap::Subcommand;

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
            print!("{}", signer.public_key_pem());
            Ok(ALLOW)
        }
        BundleCommand::Verify {
            bundle,
            public_keys,
        } => {
            let pems = public_keys
                .iter()
                .map(|p| read(p))
                .collect::<Result<Vec<_>, _>>()?;
            let keys = TrustedKeys::from_pems(&pems).map_err(|e| e.to_string())?;
            let files = read_bundle_dir(&bundle).map_err(|e| e.to_string())?;
            match keys.verify(&files) {
                Ok(signed_at) => {
                    println!(
                        "{}: signed by a trusted key at {signed_at} (Unix seconds) and unchanged",
                        bundle.display()
                    );
                    Ok(ALLOW)
                }
                Err(e) => {
                    println!("{}: {}\n{e}", bundle.display(), e.kind());
                    Ok(DENY)
                }
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))
}
