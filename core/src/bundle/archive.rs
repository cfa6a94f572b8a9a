//! Bundle archives: a bundle's files as one gzip-compressed tar, the unit that travels (an OCI
//! layer, an HTTP download, a refresher's cache). Packing is reproducible: the same files give
//! the same bytes (sorted paths, zero times and owners, fixed modes, no gzip name or time), so
//! an archive's digest names its contents. Unpacking reads only into memory and refuses
//! anything but plain files at plain relative paths, under a size limit, so an archive can
//! never write outside where its files are later put. What it holds is checked like any bundle:
//! an engine that trusts signing keys loads it only when `signature.json` inside verifies.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use crate::bundle::BundleFile;
use crate::wire::error::{LoadError, Problem};

/// The media type of a bundle archive (an OCI layer's, an HTTP source's `Content-Type`).
pub const ARCHIVE_MEDIA_TYPE: &str = "application/vnd.arbiter.bundle.layer.v1.tar+gzip";

/// The most entries an archive may hold.
const MAX_ENTRIES: usize = 100_000;

/// Name used in problems about an archive as a whole.
const ARCHIVE: &str = "bundle archive";

/// Packs `files` into a reproducible archive. Every path must be relative with `/` separators
/// and plain segments (no `.`, `..` or empty one), and no two files may share one.
pub fn pack_archive(files: &[BundleFile]) -> Result<Vec<u8>, LoadError> {
    let mut sorted: BTreeMap<&str, &[u8]> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in files {
        if let Err(message) = check_path(&file.path) {
            problems.push(Problem::in_file(&file.path, message));
        } else if sorted.insert(&file.path, &file.contents).is_some() {
            problems.push(Problem::in_file(&file.path, "two files share this path"));
        }
    }
    if !problems.is_empty() {
        return Err(LoadError::Io(problems));
    }
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gzip);
    for (path, contents) in sorted {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(contents.len() as u64);
        tar.append_data(&mut header, path, contents)
            .map_err(|e| io_problem(path, &e))?;
    }
    let gzip = tar.into_inner().map_err(|e| io_problem(ARCHIVE, &e))?;
    gzip.finish().map_err(|e| io_problem(ARCHIVE, &e))
}

/// Unpacks an archive into a bundle's files (in archive order), holding at most `max_bytes` of
/// file contents. Refused, with the entry named: an entry that is not a plain file or a
/// directory (links, devices), a path that is absolute, leaves the root or is not UTF-8, two
/// entries with one path, more than the limit, a truncated or corrupt archive.
pub fn unpack_archive(archive: &[u8], max_bytes: usize) -> Result<Vec<BundleFile>, LoadError> {
    // Headers take 512 bytes an entry; anything past this bound is a bomb or not an archive.
    let bound = (max_bytes as u64).saturating_mul(2).saturating_add(1 << 20);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive).take(bound));
    let mut files: Vec<BundleFile> = Vec::new();
    let mut paths = std::collections::HashSet::new();
    let mut total = 0usize;
    for (index, entry) in tar
        .entries()
        .map_err(|e| io_problem(ARCHIVE, &e))?
        .enumerate()
    {
        if index >= MAX_ENTRIES {
            return Err(problem(ARCHIVE, format!("more than {MAX_ENTRIES} entries")));
        }
        let mut entry = entry.map_err(|e| io_problem(ARCHIVE, &e))?;
        let raw = entry.path_bytes().into_owned();
        let path = String::from_utf8(raw)
            .map_err(|_| problem(ARCHIVE, format!("entry {index}: the path is not UTF-8")))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            check_path(path.trim_end_matches('/')).map_err(|m| problem(&path, m))?;
            continue;
        }
        if !kind.is_file() {
            return Err(problem(
                &path,
                format!("a {kind:?} entry; a bundle archive holds only plain files"),
            ));
        }
        check_path(&path).map_err(|m| problem(&path, m))?;
        if !paths.insert(path.clone()) {
            return Err(problem(&path, "two entries share this path"));
        }
        let size = usize::try_from(entry.size()).unwrap_or(usize::MAX);
        total = total.saturating_add(size);
        if total > max_bytes {
            return Err(problem(
                ARCHIVE,
                format!("its files hold more than {max_bytes} bytes (max_bundle_bytes)"),
            ));
        }
        let mut contents = Vec::with_capacity(size);
        entry
            .read_to_end(&mut contents)
            .map_err(|e| io_problem(&path, &e))?;
        files.push(BundleFile { path, contents });
    }
    // Read to the end, so that gzip's checksum and length are checked: a truncated archive is
    // refused even when the cut falls after the last entry.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink())
        .map_err(|e| io_problem(ARCHIVE, &e))?;
    Ok(files)
}

/// Why a path cannot be a bundle file's, if it cannot.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err("not a relative path with `/` separators");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("the path has an empty, `.` or `..` segment");
    }
    Ok(())
}

fn problem(file: &str, message: impl Into<String>) -> LoadError {
    LoadError::Io(vec![Problem::in_file(file, message)])
}

fn io_problem(file: &str, e: &std::io::Error) -> LoadError {
    problem(file, format!("cannot read or write the archive: {e}"))
}

/// Writes `files` under the directory `root`, which must not exist yet or be empty: into a
/// staging directory beside it first, renamed into place once every file is written, so a
/// reader never sees half a bundle. Paths are checked as [`pack_archive`] checks them.
pub fn write_bundle_dir(root: &std::path::Path, files: &[BundleFile]) -> Result<(), LoadError> {
    let fail = |path: &std::path::Path, e: std::io::Error| {
        problem(&path.display().to_string(), format!("cannot write: {e}"))
    };
    for file in files {
        check_path(&file.path).map_err(|m| problem(&file.path, m))?;
    }
    if std::fs::read_dir(root).is_ok_and(|mut d| d.next().is_some()) {
        return Err(problem(
            &root.display().to_string(),
            "the directory exists and is not empty",
        ));
    }
    let parent = root
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bundle".into());
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let written = (|| {
        for file in files {
            let path = staging.join(&file.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
            }
            let mut out = std::fs::File::create(&path).map_err(|e| fail(&path, e))?;
            out.write_all(&file.contents)
                .and_then(|()| out.sync_all())
                .map_err(|e| fail(&path, e))?;
        }
        std::fs::create_dir_all(&staging).map_err(|e| fail(&staging, e))?;
        // An empty directory left where the bundle goes is replaced.
        let _ = std::fs::remove_dir(root);
        std::fs::rename(&staging, root).map_err(|e| fail(root, e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<BundleFile> {
        vec![
            BundleFile::new("policies/b.cedar", "permit(principal, action, resource);"),
            BundleFile::new("a.cedar", "forbid(principal, action, resource);"),
            BundleFile::new(format!("{}/long.cedar", "d".repeat(150)), "// long path"),
        ]
    }

    #[test]
    fn packing_is_reproducible_and_unpacks_to_the_same_files() {
        let once = pack_archive(&files()).unwrap();
        let mut reversed = files();
        reversed.reverse();
        assert_eq!(once, pack_archive(&reversed).unwrap());
        let mut back = unpack_archive(&once, 1 << 20).unwrap();
        back.sort_by(|a, b| a.path.cmp(&b.path));
        let mut expected = files();
        expected.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(back, expected);
    }

    #[test]
    fn bad_paths_and_duplicates_are_refused_when_packing() {
        for bad in [
            "../x.cedar",
            "/abs.cedar",
            "a//b.cedar",
            "./a.cedar",
            "a\\b.cedar",
        ] {
            let err = pack_archive(&[BundleFile::new(bad, "")]).unwrap_err();
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
        let twice = [
            BundleFile::new("a.cedar", "1"),
            BundleFile::new("a.cedar", "2"),
        ];
        assert!(pack_archive(&twice).is_err());
    }

    /// A raw archive with one entry, written without the checks `pack_archive` makes.
    fn raw(path: &[u8], kind: tar::EntryType, contents: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..path.len()].copy_from_slice(path);
        header.set_entry_type(kind);
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let mut tar = tar::Builder::new(Vec::new());
        tar.append(&header, contents).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn unpacking_refuses_escapes_links_and_oversize() {
        for (path, kind) in [
            (&b"../escape.cedar"[..], tar::EntryType::Regular),
            (b"/etc/passwd", tar::EntryType::Regular),
            (b"a/../../b", tar::EntryType::Regular),
            (b"link.cedar", tar::EntryType::Symlink),
            (b"hard.cedar", tar::EntryType::Link),
            (b"dev", tar::EntryType::Char),
        ] {
            let err = unpack_archive(&raw(path, kind, b""), 1 << 20).unwrap_err();
            assert!(matches!(err, LoadError::Io(_)), "{err}");
        }
        let big = raw(b"big.cedar", tar::EntryType::Regular, &[b' '; 4096]);
        assert!(unpack_archive(&big, 4096).is_ok());
        let err = unpack_archive(&big, 4095).unwrap_err();
        assert!(err.to_string().contains("max_bundle_bytes"), "{err}");
    }

    #[test]
    fn truncated_and_corrupt_archives_are_errors() {
        let whole = pack_archive(&files()).unwrap();
        for cut in [0, 10, whole.len() / 2, whole.len() - 4] {
            assert!(
                unpack_archive(&whole[..cut], 1 << 20).is_err(),
                "cut at {cut}"
            );
        }
        assert!(unpack_archive(b"not gzip at all", 1 << 20).is_err());
    }

    #[test]
    fn writing_a_bundle_directory_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bundle");
        write_bundle_dir(&root, &files()).unwrap();
        assert_eq!(
            std::fs::read(root.join("policies/b.cedar")).unwrap(),
            b"permit(principal, action, resource);"
        );
        // A second write into a directory that now holds a bundle is refused.
        assert!(write_bundle_dir(&root, &files()).is_err());
        let bad = [BundleFile::new("ok.cedar", ""), BundleFile::new("../x", "")];
        let other = dir.path().join("other");
        assert!(write_bundle_dir(&other, &bad).is_err());
        assert!(!other.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
