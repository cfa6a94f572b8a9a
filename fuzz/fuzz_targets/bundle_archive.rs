//! Bundle archives and OCI manifests as a fleet receives them: no input panics; an archive
//! unpacks only to plain relative paths, and writing it puts nothing outside its directory; a
//! tampered signed archive verifies only when it still holds exactly the files signed; an OCI
//! manifest yields a bundle layer only when it has exactly one of Arbiter's media type.
//!
//! Input: a selector byte, then: (0) an archive; (1) edits to a signed archive of the default
//! bundle, each 4 bytes of offset and one byte XORed in; (2) an OCI manifest.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use arbiter::{
    pack_archive, unpack_archive, write_bundle_dir, BundleFile, BundleSigner, TrustedKeys,
};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4 << 20;

/// The default bundle's files, signed with the test key, and its archive.
fn signed() -> &'static (Vec<BundleFile>, Vec<u8>) {
    static SIGNED: OnceLock<(Vec<BundleFile>, Vec<u8>)> = OnceLock::new();
    SIGNED.get_or_init(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/gitlab");
        let mut files: Vec<BundleFile> = arbiter::read_bundle_dir(root)
            .unwrap()
            .into_iter()
            .filter(|f| f.path != arbiter::SIGNATURE_FILE)
            .collect();
        let signer = BundleSigner::from_pem(arbiter_fuzz::ED25519_KEY.as_bytes()).unwrap();
        let signature = signer.sign(&files, 1).unwrap();
        files.push(BundleFile::new(arbiter::SIGNATURE_FILE, signature));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let archive = pack_archive(&files).unwrap();
        (files, archive)
    })
}

fn keys() -> &'static TrustedKeys {
    static KEYS: OnceLock<TrustedKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = BundleSigner::from_pem(arbiter_fuzz::ED25519_KEY.as_bytes()).unwrap();
        TrustedKeys::from_pems(&[signer.public_key_pem()]).unwrap()
    })
}

fn check_archive(archive: &[u8]) {
    let Ok(mut files) = unpack_archive(archive, LIMIT) else {
        return;
    };
    for file in &files {
        let p = &file.path;
        assert!(
            !p.is_empty() && !p.starts_with('/') && !p.contains('\\'),
            "{p}"
        );
        assert!(
            p.split('/').all(|s| !s.is_empty() && s != "." && s != ".."),
            "{p}"
        );
    }
    if keys().verify(&files).is_ok() {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(&files, &signed().0, "a changed bundle verified");
    }
    // Written into a directory of its own: nothing appears beside it.
    static N: AtomicU64 = AtomicU64::new(0);
    let parent = std::env::temp_dir().join(format!(
        "arbiter-fuzz-archive-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&parent).unwrap();
    let written = write_bundle_dir(&parent.join("out"), &files);
    let beside: Vec<_> = std::fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    std::fs::remove_dir_all(&parent).unwrap();
    match written {
        Ok(()) => assert_eq!(beside, ["out"]),
        Err(_) => assert!(beside.is_empty(), "{beside:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => check_archive(rest),
        1 => {
            let mut archive = signed().1.clone();
            for edit in rest.chunks_exact(5) {
                let at = u32::from_le_bytes([edit[0], edit[1], edit[2], edit[3]]) as usize;
                let len = archive.len();
                archive[at % len] ^= edit[4];
            }
            check_archive(&archive);
        }
        _ => {
            if let Ok(manifest) =
                serde_json::from_slice::<oci_client::manifest::OciImageManifest>(rest)
            {
                if let Ok(layer) = arbiter_fleet::oci::bundle_layer(&manifest) {
                    assert_eq!(layer.media_type, arbiter::ARCHIVE_MEDIA_TYPE);
                    let same = manifest
                        .layers
                        .iter()
                        .filter(|l| l.media_type == arbiter::ARCHIVE_MEDIA_TYPE)
                        .count();
                    assert_eq!(same, 1);
                }
            }
        }
    }
});
