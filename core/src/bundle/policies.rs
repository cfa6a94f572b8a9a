//! Policy files and template links: parsing with ids, and locating problems in their files.

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{EntityUid, PolicyId, PolicySet, SlotId};
use serde::Deserialize;

use crate::bundle::{parse_json, BundleFile};
use crate::wire::error::{LoadError, Problem};

/// The bundle's policy set, and the file each policy, template and link came from.
pub(crate) struct LoadedPolicies {
    pub(crate) set: PolicySet,
    /// The policy files, as (path, text).
    files: Vec<(String, String)>,
    /// Policy or template id -> index into `files`. Links point at their template's file.
    origins: HashMap<PolicyId, usize>,
}

impl LoadedPolicies {
    /// A problem reported by Cedar about policy `id`, located in that policy's file.
    pub(crate) fn locate(&self, id: &PolicyId, diagnostic: &dyn miette::Diagnostic) -> Problem {
        match self.origins.get(id).map(|&i| &self.files[i]) {
            Some((file, text)) => Problem::from_diagnostic(file, text, diagnostic),
            None => Problem::in_file(
                "policies",
                crate::wire::error::one_line(&diagnostic.to_string()),
            ),
        }
    }
}

/// One entry of `links.json`, in the shape of the Cedar CLI's template-linked policy file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    template_id: String,
    link_id: String,
    args: HashMap<String, serde_json::Value>,
}

/// Parses the policy files in order, giving each policy its `@id` annotation or Cedar's
/// `policyN` by position across all files, then links templates as `links.json` says.
pub(crate) fn load(
    files: &[&BundleFile],
    links: Option<&BundleFile>,
) -> Result<LoadedPolicies, LoadError> {
    let mut set = PolicySet::new();
    let mut origins = HashMap::new();
    let mut problems = Vec::new();
    let mut position = 0usize;
    let sources: Vec<&str> = {
        let (texts, not_text): (Vec<_>, Vec<_>) =
            files.iter().map(|f| f.text()).partition(Result::is_ok);
        if !not_text.is_empty() {
            return Err(LoadError::Io(
                not_text.into_iter().filter_map(Result::err).collect(),
            ));
        }
        texts.into_iter().filter_map(Result::ok).collect()
    };
    for (file_index, (file, source)) in files.iter().zip(sources.iter().copied()).enumerate() {
        let parsed = match PolicySet::from_str(source) {
            Ok(parsed) => parsed,
            Err(errors) => {
                problems.extend(
                    errors
                        .iter()
                        .map(|e| Problem::from_diagnostic(&file.path, source, e)),
                );
                continue;
            }
        };
        // Cedar numbers a file's policies and templates `policy0`, `policy1`, ... in source
        // order; recover that order, then renumber across files.
        let mut items: Vec<(usize, Item)> = parsed
            .policies()
            .map(|p| (local_position(p.id()), Item::Policy(p.clone())))
            .chain(
                parsed
                    .templates()
                    .map(|t| (local_position(t.id()), Item::Template(t.clone()))),
            )
            .collect();
        items.sort_by_key(|(n, _)| *n);
        for (_, item) in items {
            let id = PolicyId::new(match item.annotation_id() {
                Some(id) => id.to_owned(),
                None => format!("policy{position}"),
            });
            position += 1;
            let offset = item.offset();
            let added = match item {
                Item::Policy(p) => set.add(p.new_id(id.clone())).map_err(|e| e.to_string()),
                Item::Template(t) => set
                    .add_template(t.new_id(id.clone()))
                    .map_err(|e| e.to_string()),
            };
            match added {
                Ok(()) => {
                    origins.insert(id, file_index);
                }
                Err(_) => {
                    let message = match origins.get(&id) {
                        Some(&other) => format!(
                            "policy id `{id}` is already used in `{}`",
                            files[other].path
                        ),
                        None => format!("policy id `{id}` is already used"),
                    };
                    problems.push(Problem::at_offset(&file.path, source, offset, message));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(LoadError::PolicyParse(problems));
    }
    if let Some(links) = links {
        link_templates(&mut set, &mut origins, links)?;
    }
    Ok(LoadedPolicies {
        set,
        files: files
            .iter()
            .zip(sources)
            .map(|(f, source)| (f.path.clone(), source.to_owned()))
            .collect(),
        origins,
    })
}

enum Item {
    Policy(cedar_policy::Policy),
    Template(cedar_policy::Template),
}

impl Item {
    fn annotation_id<'a>(&'a self) -> Option<&'a str> {
        // `annotation` parses its key on every call; the annotations are read as they are.
        let id = |(key, value): (&str, &'a str)| (key == "id").then_some(value);
        match self {
            Item::Policy(p) => p.annotations().find_map(id),
            Item::Template(t) => t.annotations().find_map(id),
        }
    }

    fn offset(&self) -> usize {
        let loc = match self {
            Item::Policy(p) => p.as_ref().loc(),
            Item::Template(t) => t.as_ref().loc(),
        };
        loc.map_or(0, |l| l.span.offset())
    }
}

fn local_position(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

fn link_templates(
    set: &mut PolicySet,
    origins: &mut HashMap<PolicyId, usize>,
    file: &BundleFile,
) -> Result<(), LoadError> {
    let links: Vec<Link> = parse_json(file).map_err(LoadError::Links)?;
    let mut problems = Vec::new();
    for (n, link) in links.into_iter().enumerate() {
        let at = |message: String| {
            Problem::in_file(
                &file.path,
                format!("link #{n} (`{}`): {message}", link.link_id),
            )
        };
        let mut values = HashMap::new();
        for (slot, value) in &link.args {
            let slot_id = match slot.as_str() {
                "?principal" => SlotId::principal(),
                "?resource" => SlotId::resource(),
                other => {
                    problems.push(at(format!(
                        "unknown slot `{other}`, expected `?principal` or `?resource`"
                    )));
                    continue;
                }
            };
            match EntityUid::from_json(value.clone()) {
                Ok(uid) => {
                    values.insert(slot_id, uid);
                }
                Err(e) => problems.push(at(format!("`{slot}`: {e}"))),
            }
        }
        let template = PolicyId::new(&link.template_id);
        let link_id = PolicyId::new(&link.link_id);
        match set.link(template.clone(), link_id.clone(), values) {
            Ok(()) => {
                if let Some(&origin) = origins.get(&template) {
                    origins.insert(link_id, origin);
                }
            }
            Err(e) => problems.push(at(crate::wire::error::one_line(&e.to_string()))),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Links(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_texts(texts: &[(&str, &str)]) -> Result<LoadedPolicies, LoadError> {
        let files: Vec<BundleFile> = texts.iter().map(|(p, t)| BundleFile::new(*p, *t)).collect();
        let refs: Vec<&BundleFile> = files.iter().collect();
        load(&refs, None)
    }

    fn ids(set: &PolicySet) -> Vec<String> {
        let mut ids: Vec<String> = set
            .policies()
            .map(|p| p.id().to_string())
            .chain(set.templates().map(|t| t.id().to_string()))
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn ids_are_annotations_else_positions_across_files() {
        let loaded = load_texts(&[
            ("a.cedar", "permit(principal, action, resource);\n@id(\"named\") forbid(principal, action, resource);"),
            ("b.cedar", "permit(principal == ?principal, action, resource);\npermit(principal, action, resource);"),
        ])
        .unwrap();
        assert_eq!(ids(&loaded.set), ["named", "policy0", "policy2", "policy3"]);
        assert!(loaded.set.template(&PolicyId::new("policy2")).is_some());
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let err = load_texts(&[
            ("ok.cedar", "permit(principal, action, resource);"),
            ("bad.cedar", "permit(principal, action, resource);\npermit(principal, action, resource) when { 1 + };"),
        ])
        .err()
        .unwrap();
        assert_eq!(err.kind(), "policy_parse");
        let p = &err.problems()[0];
        assert_eq!((p.file.as_str(), p.line), ("bad.cedar", Some(2)));
    }

    #[test]
    fn duplicate_ids_are_rejected_with_both_files() {
        let err = load_texts(&[
            ("a.cedar", "@id(\"x\") permit(principal, action, resource);"),
            (
                "b.cedar",
                "\n@id(\"x\") forbid(principal, action, resource);",
            ),
        ])
        .err()
        .unwrap();
        let p = &err.problems()[0];
        assert_eq!((p.file.as_str(), p.line), ("b.cedar", Some(2)));
        assert!(p.message.contains("already used in `a.cedar`"), "{p}");
    }

    #[test]
    fn links_instantiate_templates_and_report_bad_entries() {
        let policy = BundleFile::new(
            "t.cedar",
            "@id(\"t\") permit(principal == ?principal, action, resource);",
        );
        let good = BundleFile::new(
            "links.json",
            r#"[{"template_id": "t", "link_id": "l1", "args": {"?principal": {"type": "User", "id": "a"}}}]"#,
        );
        let loaded = load(&[&policy], Some(&good)).unwrap();
        assert!(loaded.set.policy(&PolicyId::new("l1")).is_some());

        let bad = BundleFile::new(
            "links.json",
            r#"[{"template_id": "nope", "link_id": "l1", "args": {}}, {"template_id": "t", "link_id": "l2", "args": {"?who": {"type": "User", "id": "a"}}}]"#,
        );
        let err = load(&[&policy], Some(&bad)).err().unwrap();
        assert_eq!(err.kind(), "links");
        assert_eq!(err.problems().len(), 3, "{err}");
        assert!(
            err.problems()[1].message.contains("unknown slot `?who`"),
            "{err}"
        );
    }
}
