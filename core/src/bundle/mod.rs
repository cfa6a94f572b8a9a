//! Bundles: a directory (or the same files held in memory) of policies, an optional schema,
//! static entities, template links and a manifest, loaded into one immutable value.
//!
//! Long: reading a bundle directory (links, loops, key files) and loading its files are one
//! concept, what a bundle is.

pub(crate) mod abilities;
pub(crate) mod archive;
pub mod bundle_tests;
pub(crate) mod default_bundle;
pub(crate) mod entities;
pub(crate) mod http;
pub(crate) mod member_roles;
pub(crate) mod policies;
pub(crate) mod signing;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use cedar_policy::{EntityTypeName, PolicySet, Schema, ValidationMode, Validator};
use cedar_policy_core::ast::{self, ExprKind, Literal};
use serde::Deserialize;

use crate::bundle::entities::StaticEntities;
use crate::bundle::signing::SIGNATURE_FILE;
use crate::engine::limits::Limits;
use crate::evaluation::index::PolicyIndex;
use crate::evaluation::shapes::Shapes;
use crate::operations::metrics::ActionOutcomes;
use crate::token::config::TokensConfig;
use crate::token::Tokens;
use crate::wire::error::{LoadError, Problem};
use crate::wire::json::unique_keys;
use crate::wire::request::{RequestReader, TypeNames};

/// One file of a bundle: its path relative to the bundle root, with `/` separators, and its
/// bytes. Policies, the schema and the JSON files must be UTF-8 text; a raw secret file
/// (`secret_encoding: raw`) is read as the bytes it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Relative path, e.g. `schema.cedarschema` or `policies/roles.cedar`.
    pub path: String,
    /// The file's bytes.
    pub contents: Vec<u8>,
}

impl BundleFile {
    /// A file at `path` (relative to the bundle root) holding `contents` (text or bytes).
    pub fn new(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
        }
    }

    /// The file as UTF-8 text, or the problem naming the file and the first byte that is not.
    pub fn text(&self) -> Result<&str, Problem> {
        std::str::from_utf8(&self.contents).map_err(|e| {
            Problem::in_file(
                &self.path,
                format!(
                    "file is not valid UTF-8 text (byte {} is not)",
                    e.valid_up_to()
                ),
            )
        })
    }
}

/// A bundle file's text, for a loader: a file that is not UTF-8 is an `io` load error.
pub(crate) fn text(file: &BundleFile) -> Result<&str, LoadError> {
    file.text().map_err(|p| LoadError::Io(vec![p]))
}

const SCHEMA: &str = "schema.cedarschema";
const SCHEMA_JSON: &str = "schema.cedarschema.json";
const ENTITIES: &str = "entities.json";
const MANIFEST: &str = "manifest.json";
const LINKS: &str = "links.json";
const TOKENS: &str = "tokens.json";
/// The folder of decision tests, which belongs to the bundle but not to the engine.
const TESTS_DIR: &str = "tests/";

/// Whether a file at this relative path is part of what an engine loads.
pub(crate) fn is_engine_file(path: &str) -> bool {
    if path.starts_with(TESTS_DIR) {
        return false;
    }
    path.ends_with(".cedar")
        || [
            SCHEMA,
            SCHEMA_JSON,
            ENTITIES,
            MANIFEST,
            LINKS,
            TOKENS,
            member_roles::MEMBER_ROLES,
            abilities::ABILITIES,
            http::HTTP,
            crate::query::mapping::SQL_MAPPING,
            SIGNATURE_FILE,
        ]
        .contains(&path)
}

/// Whether a file at this relative path is a decision test file (`tests/*.json`).
pub(crate) fn is_test_file(path: &str) -> bool {
    path.strip_prefix(TESTS_DIR)
        .is_some_and(|name| name.ends_with(".json") && !name.contains('/'))
}

/// Reads the files under `root` whose relative path `keep` accepts (recursively, hidden entries
/// skipped).
pub(crate) fn read_dir_files(
    root: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<Vec<BundleFile>, LoadError> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let mut seen = HashMap::new();
    if let Ok(canonical) = std::fs::canonicalize(root) {
        seen.insert(canonical, ".".to_owned());
    }
    let mut walk = Walk {
        keep,
        files: &mut files,
        problems: &mut problems,
        seen: &mut seen,
    };
    walk.dir(root, "");
    if !problems.is_empty() {
        return Err(LoadError::Io(problems));
    }
    Ok(files)
}

/// The files an engine loads from the bundle directory `root`: policies, schema, entities,
/// links, manifest, `tokens.json`, the key files `tokens.json` names and `signature.json` (what
/// `arbiter bundle sign` signs).
pub fn read_bundle_dir(root: impl AsRef<Path>) -> Result<Vec<BundleFile>, LoadError> {
    let root = root.as_ref();
    let mut files = read_dir_files(root, &is_engine_file)?;
    let referenced: Vec<String> = files
        .iter()
        .find(|f| f.path == TOKENS)
        .and_then(|f| serde_json::from_slice::<TokensConfig>(&f.contents).ok())
        .map(|config| {
            config
                .referenced_files()
                .into_iter()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut problems = Vec::new();
    for path in referenced {
        // Key files live inside the bundle: a path that leaves it is simply not found.
        let inside = Path::new(&path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside || files.iter().any(|f| f.path == path) {
            continue;
        }
        match std::fs::read(root.join(&path)) {
            Ok(contents) => files.push(BundleFile { path, contents }),
            Err(e) => problems.push(Problem::in_file(
                &path,
                format!("cannot read key file: {e}"),
            )),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(LoadError::Io(problems))
    }
}

/// A recursive read of a bundle directory: the files kept, the problems met, and every directory
/// read so far (by canonical path, with the relative path it was read at).
struct Walk<'a> {
    keep: &'a dyn Fn(&str) -> bool,
    files: &'a mut Vec<BundleFile>,
    problems: &'a mut Vec<Problem>,
    seen: &'a mut HashMap<PathBuf, String>,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path, prefix: &str) {
        let shown = |p: &Path| p.display().to_string();
        // In name order, so that problems are reported alike on every file system.
        let mut entries: Vec<_> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.collect(),
            Err(e) => {
                self.problems.push(Problem::in_file(
                    &shown(dir),
                    format!("cannot read directory: {e}"),
                ));
                return;
            }
        };
        entries.sort_by_key(|entry| entry.as_ref().ok().map(std::fs::DirEntry::file_name));
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.problems.push(Problem::in_file(
                        &shown(dir),
                        format!("cannot list directory: {e}"),
                    ));
                    continue;
                }
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let relative = format!("{prefix}{name}");
            // `metadata` follows symbolic links, so a linked policy file or folder is read too.
            match std::fs::metadata(&path) {
                // A directory where a bundle file belongs (`entities.json/`) is a broken bundle,
                // not one without that file.
                Ok(meta) if meta.is_dir() && (self.keep)(&relative) => self.problems.push(
                    Problem::in_file(&relative, "is a directory where a file belongs"),
                ),
                Ok(meta) if meta.is_dir() => self.linked_dir(&path, &relative),
                Ok(_) if !(self.keep)(&relative) => {}
                Ok(_) => match std::fs::read(&path) {
                    Ok(contents) => self.files.push(BundleFile {
                        path: relative,
                        contents,
                    }),
                    Err(e) => self.problems.push(Problem::in_file(
                        &relative,
                        format!("cannot read file: {e}"),
                    )),
                },
                Err(e) => self.problems.push(Problem::in_file(
                    &relative,
                    format!("cannot read file: {e}"),
                )),
            }
        }
    }

    /// Reads a subdirectory, unless it is one already read: a symbolic link back to a
    /// directory above it would loop forever (two such links take time exponential in depth),
    /// and one linked twice would read its policies twice.
    fn linked_dir(&mut self, path: &Path, relative: &str) {
        let canonical = match std::fs::canonicalize(path) {
            Ok(canonical) => canonical,
            Err(e) => {
                self.problems.push(Problem::in_file(
                    relative,
                    format!("cannot resolve directory: {e}"),
                ));
                return;
            }
        };
        if let Some(first) = self.seen.get(&canonical) {
            self.problems.push(Problem::in_file(
                relative,
                format!(
                    "is the directory `{first}` again (a symbolic link loop, or a directory \
                     linked twice); a bundle reads each directory once"
                ),
            ));
            return;
        }
        self.seen.insert(canonical, relative.to_owned());
        self.dir(path, &format!("{relative}/"));
    }
}

/// `manifest.json`: the bundle's name and version, the two validation switches, and the
/// attributes decision logs mask.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle name, reported with every decision log and in `arbiter validate`.
    #[serde(default)]
    pub name: Option<String>,
    /// Bundle version.
    #[serde(default)]
    pub version: Option<String>,
    /// Validate policies strictly against the schema at load (default true).
    #[serde(default = "yes")]
    pub validate_policies: bool,
    /// Validate every request against the schema (default true).
    #[serde(default = "yes")]
    pub validate_requests: bool,
    /// Attributes whose values decision logs mask: a context member (at any depth) with one of
    /// these names is logged as `"[masked]"`.
    #[serde(default)]
    pub sensitive_attributes: HashSet<String>,
}

fn yes() -> bool {
    true
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            name: None,
            version: None,
            validate_policies: true,
            validate_requests: true,
            sensitive_attributes: HashSet::new(),
        }
    }
}

/// What a loaded bundle holds, for operators and `arbiter validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleInfo {
    /// `name` from the manifest.
    pub name: Option<String>,
    /// `version` from the manifest.
    pub version: Option<String>,
    /// Static and template-linked policies.
    pub policies: usize,
    /// Templates.
    pub templates: usize,
    /// Static entities, including action entities from the schema.
    pub entities: usize,
    /// Whether the bundle has a schema.
    pub has_schema: bool,
    /// Whether policies were validated against the schema at load.
    pub validate_policies: bool,
    /// Whether requests are validated against the schema.
    pub validate_requests: bool,
    /// When its signature says it was signed (Unix seconds), for an engine that trusts signing
    /// keys: what a host persists to keep rollback protection across restarts (see
    /// [`crate::TrustedKeys::signed_no_earlier_than`]).
    pub signed_at: Option<i64>,
    /// Where it came from and how refreshing it goes, when a refresher reports it.
    pub source: Option<crate::SourceStatus>,
}

/// A loaded bundle. Immutable: a reload builds a new one and swaps it in whole.
pub(crate) struct Bundle {
    pub(crate) manifest: Manifest,
    pub(crate) schema: Option<Schema>,
    pub(crate) policies: PolicySet,
    pub(crate) entities: StaticEntities,
    pub(crate) index: PolicyIndex,
    pub(crate) tokens: Option<Tokens>,
    /// Request and entity shapes compiled from the schema.
    pub(crate) shapes: Option<Shapes>,
    /// How its entities are stored in the host's database (`sql/mapping.json`), for queries.
    pub(crate) sql_mapping: Option<crate::query::mapping::SqlMapping>,
    /// The host's abilities and their actions (`abilities.json`), for a host's bridge.
    pub(crate) abilities: Option<abilities::Abilities>,
    /// How HTTP requests map to Cedar requests (`http.json`), for a proxy's checks.
    pub(crate) http: Option<http::HttpRoutes>,
    /// The entity type of the schema's actions, when they all share one.
    pub(crate) action_type: Option<String>,
    /// The engine's per-action decision counters for this bundle's actions (set by the engine).
    pub(crate) outcomes: ActionOutcomes,
    /// When its signature says it was signed, for an engine that trusts signing keys.
    pub(crate) signed_at: Option<i64>,
    /// The digest of what strict validation of its policies read (see [`validation_digest`]),
    /// when they were validated against a schema and passed.
    pub(crate) validated: Option<ValidationDigest>,
    /// When it loaded (Unix seconds) and how long that took (seconds).
    pub(crate) loaded_at: f64,
    pub(crate) load_seconds: f64,
    types: TypeNames,
}

/// What strict validation of a bundle's policies reads, as a SHA-256 digest: the paths and bytes
/// of its schema, policy and links files. Two bundles with one digest validate alike.
pub(crate) type ValidationDigest = [u8; 32];

/// The [`ValidationDigest`] of `files`, sorted by path.
fn validation_digest(files: &[BundleFile]) -> ValidationDigest {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let read = |path: &str| {
        [SCHEMA, SCHEMA_JSON, LINKS].contains(&path)
            || (path.ends_with(".cedar") && is_engine_file(path))
    };
    for file in files.iter().filter(|f| read(&f.path)) {
        for part in [file.path.as_bytes(), &file.contents] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
    }
    let mut digest = [0; 32];
    digest.copy_from_slice(context.finish().as_ref());
    digest
}

impl Bundle {
    /// Loads a bundle from its files, in any order. Nothing is kept unless every part loads.
    pub(crate) fn load(files: Vec<BundleFile>) -> Result<Self, LoadError> {
        Self::load_after(files, None)
    }

    /// [`Bundle::load`], skipping the strict validation of its policies when what it reads is
    /// exactly what `validated` (the serving bundle's, on a reload) says passed it: a reload
    /// that changes only entities, tokens or mappings does not validate the same policies
    /// against the same schema again.
    pub(crate) fn load_after(
        mut files: Vec<BundleFile>,
        validated: Option<&ValidationDigest>,
    ) -> Result<Self, LoadError> {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let twice: Vec<Problem> = files
            .windows(2)
            .filter(|pair| pair[0].path == pair[1].path)
            .map(|pair| {
                Problem::in_file(&pair[0].path, "the bundle holds two files with this path")
            })
            .collect();
        if !twice.is_empty() {
            return Err(LoadError::Io(twice));
        }
        let file = |name: &str| files.iter().find(|f| f.path == name);
        let manifest = match file(MANIFEST) {
            Some(f) => parse_json::<Manifest>(f).map_err(LoadError::Manifest)?,
            None => Manifest::default(),
        };
        let schema = match (file(SCHEMA), file(SCHEMA_JSON)) {
            (Some(_), Some(_)) => {
                return Err(LoadError::Schema(vec![Problem::in_file(
                    SCHEMA_JSON,
                    format!(
                    "a bundle has one schema, but both `{SCHEMA}` and `{SCHEMA_JSON}` are present"
                ),
                )]))
            }
            (Some(f), None) => {
                let source = text(f)?;
                Some(
                    Schema::from_cedarschema_str(source)
                        .map(|(schema, _warnings)| schema)
                        .map_err(|e| {
                            LoadError::Schema(vec![Problem::from_diagnostic(&f.path, source, &e)])
                        })?,
                )
            }
            (None, Some(f)) => {
                let source = text(f)?;
                unique_keys(source)
                    .map_err(|e| LoadError::Schema(vec![json_problem(&f.path, &e)]))?;
                Some(Schema::from_json_str(source).map_err(|e| {
                    LoadError::Schema(vec![Problem::from_diagnostic(&f.path, source, &e)])
                })?)
            }
            (None, None) => None,
        };
        let policy_files: Vec<&BundleFile> = files
            .iter()
            .filter(|f| f.path.ends_with(".cedar") && is_engine_file(&f.path))
            .collect();
        let loaded = policies::load(&policy_files, file(LINKS))?;
        let mut passed = None;
        if let (Some(schema), true) = (&schema, manifest.validate_policies) {
            let digest = validation_digest(&files);
            if validated != Some(&digest) {
                let result =
                    Validator::new(schema.clone()).validate(&loaded.set, ValidationMode::Strict);
                if !result.validation_passed() {
                    let problems = result
                        .validation_errors()
                        .map(|e| loaded.locate(e.policy_id(), e))
                        .collect();
                    return Err(LoadError::PolicyValidation(problems));
                }
            }
            passed = Some(digest);
        }
        let shapes = schema.as_ref().map(Shapes::new);
        let member_roles = file(member_roles::MEMBER_ROLES)
            .map(|f| member_roles::load(f, schema.as_ref()))
            .transpose()?
            .unwrap_or_default();
        let entities = StaticEntities::load(
            file(ENTITIES),
            schema.as_ref(),
            shapes.as_ref(),
            member_roles,
        )?;
        let index = PolicyIndex::build(&loaded.set, schema.as_ref(), &entities);
        let tokens = file(TOKENS).map(|f| Tokens::load(f, &files)).transpose()?;
        let sql_mapping = file(crate::query::mapping::SQL_MAPPING)
            .map(crate::query::mapping::SqlMapping::load)
            .transpose()?;
        let abilities = file(abilities::ABILITIES)
            .map(|f| abilities::Abilities::load(f, schema.as_ref()))
            .transpose()?;
        let http = file(http::HTTP)
            .map(|f| http::HttpRoutes::load(f, schema.as_ref()))
            .transpose()?;
        let action_type = schema.as_ref().and_then(|schema| {
            let mut types = schema.actions().map(|a| a.type_name().to_string());
            let first = types.next()?;
            types.all(|t| t == first).then_some(first)
        });
        let mut types: Vec<EntityTypeName> = entities
            .store()
            .iter()
            .map(|e| EntityTypeName::from(e.uid().entity_type().clone()))
            .collect();
        if let Some(schema) = &schema {
            types.extend(schema.entity_types().cloned());
            types.extend(schema.actions().map(|a| a.type_name().clone()));
        }
        types.extend(loaded.set.policies().flat_map(|p| named_types(p.as_ref())));
        Ok(Self {
            outcomes: ActionOutcomes::default(),
            signed_at: None,
            validated: passed,
            loaded_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            load_seconds: 0.0,
            types: TypeNames::new(types),
            shapes,
            sql_mapping,
            abilities,
            http,
            action_type,
            manifest,
            schema,
            policies: loaded.set,
            entities,
            index,
            tokens,
        })
    }

    pub(crate) fn info(&self) -> BundleInfo {
        BundleInfo {
            name: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            policies: self.policies.policies().count(),
            templates: self.policies.templates().count(),
            entities: self.entities.len(),
            has_schema: self.schema.is_some(),
            validate_policies: self.manifest.validate_policies,
            validate_requests: self.manifest.validate_requests,
            signed_at: self.signed_at,
            source: None,
        }
    }

    /// How this bundle reads requests.
    pub(crate) fn reader<'a>(&'a self, limits: &'a Limits) -> RequestReader<'a> {
        RequestReader {
            limits,
            schema: self.request_schema(),
            shapes: self.shapes.as_ref(),
            types: &self.types,
        }
    }

    /// The schema requests are validated against, if the bundle has one and validates requests.
    pub(crate) fn request_schema(&self) -> Option<&Schema> {
        self.schema
            .as_ref()
            .filter(|_| self.manifest.validate_requests)
    }
}

/// Parses a bundle JSON file, reporting serde's line and column on failure.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(file: &'a BundleFile) -> Result<T, Vec<Problem>> {
    let source = file.text().map_err(|p| vec![p])?;
    unique_keys(source)
        .and_then(|()| serde_json::from_str(source))
        .map_err(|e| vec![json_problem(&file.path, &e)])
}

pub(crate) fn json_problem(file: &str, e: &serde_json::Error) -> Problem {
    Problem {
        file: file.to_owned(),
        line: (e.line() > 0).then_some(e.line()),
        column: (e.column() > 0).then_some(e.column()),
        message: serde_message(e),
    }
}

/// serde's message without the " at line L column C" it appends (reported as fields instead).
pub(crate) fn serde_message(e: &serde_json::Error) -> String {
    let message = e.to_string();
    message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(head, _)| head)
        .to_owned()
}

/// The entity types a policy names, in its scope and its conditions.
fn named_types(policy: &ast::Policy) -> Vec<EntityTypeName> {
    policy
        .condition()
        .subexpressions()
        .filter_map(|e| match e.expr_kind() {
            ExprKind::Lit(Literal::EntityUID(uid)) => Some(uid.entity_type().clone()),
            ExprKind::Is { entity_type, .. } => Some(entity_type.clone()),
            _ => None,
        })
        .map(EntityTypeName::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tests_folder_and_unrelated_files_are_not_engine_files() {
        assert!(is_engine_file("roles.cedar"));
        assert!(is_engine_file("sub/dir/roles.cedar"));
        assert!(is_engine_file("entities.json"));
        assert!(!is_engine_file("tests/roles.json"));
        assert!(!is_engine_file("tests/x.cedar"));
        assert!(!is_engine_file("README.md"));
        assert!(!is_engine_file("sub/entities.json"));
    }

    #[test]
    fn manifest_rejects_unknown_fields_with_a_line() {
        let f = BundleFile::new(
            "manifest.json",
            "{\n  \"name\": \"x\",\n  \"validate\": true\n}",
        );
        let problems = parse_json::<Manifest>(&f).unwrap_err();
        assert_eq!(problems[0].file, "manifest.json");
        assert_eq!(problems[0].line, Some(3));
        assert!(
            problems[0].message.contains("unknown field `validate`"),
            "{}",
            problems[0]
        );
    }
}
