//! One match language for consumer filters and suppressions (docs/filters.md): a [`Filter`]
//! as written in a Setting, the hub's configuration or a `POST /api/v1/suppressions`, checked
//! with [`Filter::validate`] (errors name the field) and compiled once into a [`Matcher`]
//! that tests events.
//!
//! Every condition given must hold. Rules, namespaces and clusters take globs (`*` any run
//! of characters, `?` one); `fields` tests the source's structured fields (Falco
//! `output_fields`) with `equals`, `in`, `prefix`, `glob` and `exists`.

use crate::event::{Event, Kind, Severity};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Most entries in one list of a filter, and most characters in one pattern or value.
pub const MAX_ENTRIES: usize = 100;
pub const MAX_PATTERN: usize = 512;

/// Which events match; every condition given must hold. Empty: every event.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    /// Only events at least this severe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_severity: Option<Severity>,
    /// Only events from these sources (`falco`, `trivy`, `kube-bench`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// Only events of these kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<Kind>,
    /// Only events whose rule matches one of these globs (`*` and `?`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// Never events whose rule matches one of these globs (wins over `rules`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_rules: Vec<String>,
    /// Namespaces (globs) to include or exclude.
    #[serde(default, skip_serializing_if = "NamespaceFilter::is_empty")]
    pub namespaces: NamespaceFilter,
    /// Only events from clusters matching one of these globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Only events carrying at least one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Never events carrying one of these tags (wins over `tags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_tags: Vec<String>,
    /// Conditions on the source's structured fields (Falco `output_fields`), by field name:
    /// `{"proc.name": {in: [bash, sh]}, "fd.name": {prefix: /etc/}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, FieldPredicate>,
}

/// Namespace conditions of a filter (globs); events without a namespace pass unless
/// `include` is set.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceFilter {
    /// Only namespaces matching one of these globs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Never namespaces matching one of these globs (wins over `include`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// Conditions on one structured field; every one given must hold. A value that is a
/// number or a boolean is compared as its JSON text (`8080`, `true`); a null is absent.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldPredicate {
    /// The value is exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The value is one of these.
    #[serde(default, rename = "in", skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value matches this glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// `true`: the field is present (and not null); `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self == &Filter::default()
    }

    /// What the matcher cannot take, naming the field under `at` (e.g.
    /// `consumers[0].filter`).
    pub fn validate(&self, at: &str) -> Result<(), String> {
        let lists: [(&str, &[String]); 8] = [
            ("sources", &self.sources),
            ("rules", &self.rules),
            ("excludeRules", &self.exclude_rules),
            ("namespaces.include", &self.namespaces.include),
            ("namespaces.exclude", &self.namespaces.exclude),
            ("clusters", &self.clusters),
            ("tags", &self.tags),
            ("excludeTags", &self.exclude_tags),
        ];
        for (name, list) in lists {
            check_list(&format!("{at}.{name}"), list)?;
        }
        if self.fields.len() > MAX_ENTRIES {
            return Err(format!(
                "{at}.fields: at most {MAX_ENTRIES} fields, not {}",
                self.fields.len()
            ));
        }
        for (name, predicate) in &self.fields {
            let field = format!("{at}.fields[\"{name}\"]");
            if name.is_empty() || name.len() > MAX_PATTERN {
                return Err(format!(
                    "{field}: a field name has 1 to {MAX_PATTERN} characters"
                ));
            }
            if predicate == &FieldPredicate::default() {
                return Err(format!(
                    "{field}: give at least one of equals, in, prefix, glob, exists"
                ));
            }
            check_list(&format!("{field}.in"), &predicate.one_of)?;
            for (key, value) in [
                ("equals", &predicate.equals),
                ("prefix", &predicate.prefix),
                ("glob", &predicate.glob),
            ] {
                if let Some(v) = value {
                    check_text(&format!("{field}.{key}"), v)?;
                }
            }
            if predicate.exists == Some(false) && predicate != &ABSENT {
                return Err(format!(
                    "{field}: `exists: false` cannot be combined with a condition on the value"
                ));
            }
        }
        Ok(())
    }
}

const ABSENT: FieldPredicate = FieldPredicate {
    equals: None,
    one_of: Vec::new(),
    prefix: None,
    glob: None,
    exists: Some(false),
};

fn check_list(field: &str, list: &[String]) -> Result<(), String> {
    if list.len() > MAX_ENTRIES {
        return Err(format!(
            "{field}: at most {MAX_ENTRIES} entries, not {}",
            list.len()
        ));
    }
    for (i, text) in list.iter().enumerate() {
        check_text(&format!("{field}[{i}]"), text)?;
    }
    Ok(())
}

fn check_text(field: &str, text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_PATTERN {
        return Err(format!("{field}: must have 1 to {MAX_PATTERN} characters"));
    }
    Ok(())
}

impl NamespaceFilter {
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

/// A list of globs, with the exact ones looked up in a set.
#[derive(Debug, Clone, Default)]
struct Globs {
    exact: HashSet<String>,
    patterns: Vec<String>,
}

impl Globs {
    fn new(list: &[String]) -> Globs {
        let (patterns, exact): (Vec<&String>, Vec<&String>) =
            list.iter().partition(|p| p.contains(['*', '?']));
        Globs {
            exact: exact.into_iter().cloned().collect(),
            patterns: patterns.into_iter().cloned().collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }

    fn any(&self, text: &str) -> bool {
        self.exact.contains(text) || self.patterns.iter().any(|p| glob(p, text))
    }
}

/// A filter ready to test events.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    minimum_severity: Option<Severity>,
    sources: HashSet<String>,
    kinds: HashSet<Kind>,
    rules: Globs,
    exclude_rules: Globs,
    include_namespaces: Globs,
    exclude_namespaces: Globs,
    clusters: Globs,
    tags: HashSet<String>,
    exclude_tags: HashSet<String>,
    fields: Vec<(String, FieldPredicate)>,
}

impl Matcher {
    pub fn new(filter: &Filter) -> Matcher {
        Matcher {
            minimum_severity: filter.minimum_severity,
            sources: filter.sources.iter().cloned().collect(),
            kinds: filter.kinds.iter().copied().collect(),
            rules: Globs::new(&filter.rules),
            exclude_rules: Globs::new(&filter.exclude_rules),
            include_namespaces: Globs::new(&filter.namespaces.include),
            exclude_namespaces: Globs::new(&filter.namespaces.exclude),
            clusters: Globs::new(&filter.clusters),
            tags: filter.tags.iter().cloned().collect(),
            exclude_tags: filter.exclude_tags.iter().cloned().collect(),
            fields: filter
                .fields
                .iter()
                .map(|(k, p)| (k.clone(), p.clone()))
                .collect(),
        }
    }

    pub fn matches(&self, e: &Event) -> bool {
        let namespace = e.namespace.as_deref();
        self.minimum_severity
            .is_none_or(|min| e.severity.rank() <= min.rank())
            && (self.sources.is_empty() || self.sources.contains(&e.source))
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && (self.rules.is_empty() || self.rules.any(&e.rule))
            && !self.exclude_rules.any(&e.rule)
            && (self.include_namespaces.is_empty()
                || namespace.is_some_and(|n| self.include_namespaces.any(n)))
            && !namespace.is_some_and(|n| self.exclude_namespaces.any(n))
            && (self.clusters.is_empty() || self.clusters.any(&e.cluster))
            && (self.tags.is_empty() || e.tags.iter().any(|t| self.tags.contains(t)))
            && !e.tags.iter().any(|t| self.exclude_tags.contains(t))
            && self.fields_match(e)
    }

    fn fields_match(&self, e: &Event) -> bool {
        if self.fields.is_empty() {
            return true;
        }
        // Parsed only for a matcher that tests fields; a fields text that is not an object
        // has no fields.
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(e.fields.get()).unwrap_or_default();
        self.fields.iter().all(|(name, predicate)| {
            let value = match fields.get(name) {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(std::borrow::Cow::Borrowed(s.as_str())),
                Some(other) => Some(std::borrow::Cow::Owned(other.to_string())),
            };
            predicate_holds(predicate, value.as_deref())
        })
    }
}

fn predicate_holds(p: &FieldPredicate, value: Option<&str>) -> bool {
    let Some(v) = value else {
        return p.exists == Some(false);
    };
    p.exists != Some(false)
        && p.equals.as_ref().is_none_or(|x| x == v)
        && (p.one_of.is_empty() || p.one_of.iter().any(|x| x == v))
        && p.prefix.as_ref().is_none_or(|x| v.starts_with(x.as_str()))
        && p.glob.as_ref().is_none_or(|x| glob(x, v))
}

/// `*` matches any run of characters, `?` any one character; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it had taken: on a mismatch the star
    // takes one more character and matching resumes after it.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        serde_json::from_value(serde_json::json!({
            "id": "0190f5d2-7b1e-7c3a-9d4e-5f6a7b8c9d0e",
            "time": "2026-05-04T10:11:12Z",
            "received_at": "2026-05-04T10:11:12Z",
            "source": "falco",
            "kind": "runtime_alert",
            "severity": "warning",
            "severity_raw": "Warning",
            "rule": "Terminal shell in container",
            "message": "shell",
            "tags": ["shell", "mitre_execution"],
            "cluster": "prod-eu",
            "namespace": "shop",
            "pod": "web-1",
            "fields": {"proc.name": "bash", "fd.name": "/etc/shadow", "fd.sport": 8080,
                       "k8s.ns.name": null},
        }))
        .unwrap()
    }

    fn filter(yaml: serde_json::Value) -> Filter {
        serde_json::from_value(yaml).unwrap()
    }

    fn matches(f: serde_json::Value) -> bool {
        Matcher::new(&filter(f)).matches(&event())
    }

    #[test]
    fn an_empty_filter_passes_everything() {
        assert!(Matcher::new(&Filter::default()).matches(&event()));
    }

    #[test]
    fn each_condition_can_reject_an_event() {
        use serde_json::json;
        let cases = [
            (json!({"minimumSeverity": "warning"}), true),
            (json!({"minimumSeverity": "error"}), false),
            (json!({"sources": ["falco"]}), true),
            (json!({"sources": ["trivy"]}), false),
            (json!({"kinds": ["audit"]}), false),
            (json!({"rules": ["Terminal*"]}), true),
            (json!({"rules": ["*shell?in*"]}), true),
            (json!({"rules": ["Read*"]}), false),
            (json!({"excludeRules": ["Terminal*"]}), false),
            (json!({"rules": ["*"], "excludeRules": ["Read*"]}), true),
            (json!({"clusters": ["dev"]}), false),
            (json!({"clusters": ["prod-*"]}), true),
            (json!({"tags": ["shell", "x"]}), true),
            (json!({"tags": ["network"]}), false),
            (json!({"excludeTags": ["mitre_execution"]}), false),
            (json!({"excludeTags": ["network"]}), true),
            (json!({"namespaces": {"include": ["shop"]}}), true),
            (json!({"namespaces": {"include": ["sh*"]}}), true),
            (json!({"namespaces": {"include": ["kube-*"]}}), false),
            (
                json!({"namespaces": {"include": ["shop"], "exclude": ["s?op"]}}),
                false,
            ),
        ];
        for (f, expected) in cases {
            assert_eq!(matches(f.clone()), expected, "{f}");
        }
    }

    #[test]
    fn field_predicates_test_the_structured_fields() {
        use serde_json::json;
        let cases = [
            (json!({"proc.name": {"in": ["bash", "sh"]}}), true),
            (json!({"proc.name": {"in": ["zsh"]}}), false),
            (json!({"proc.name": {"equals": "bash"}}), true),
            (json!({"fd.name": {"prefix": "/etc/"}}), true),
            (json!({"fd.name": {"prefix": "/var/"}}), false),
            (json!({"fd.name": {"glob": "/etc/*ad*"}}), true),
            (json!({"fd.sport": {"equals": "8080"}}), true),
            (json!({"fd.name": {"exists": true}}), true),
            (json!({"container.id": {"exists": true}}), false),
            (json!({"container.id": {"exists": false}}), true),
            (json!({"k8s.ns.name": {"exists": false}}), true),
            (json!({"container.id": {"equals": "x"}}), false),
            (
                json!({"proc.name": {"equals": "bash"}, "fd.name": {"prefix": "/tmp"}}),
                false,
            ),
        ];
        for (fields, expected) in cases {
            assert_eq!(matches(json!({ "fields": fields })), expected, "{fields}");
        }
    }

    #[test]
    fn validation_names_the_field_it_refuses() {
        use serde_json::json;
        let cases = [
            (json!({"rules": [""]}), "f.rules[0]: must have 1 to 512"),
            (
                json!({"namespaces": {"exclude": ["a", ""]}}),
                "f.namespaces.exclude[1]:",
            ),
            (
                json!({"fields": {"proc.name": {}}}),
                "f.fields[\"proc.name\"]: give at least one",
            ),
            (
                json!({"fields": {"proc.name": {"exists": false, "equals": "x"}}}),
                "f.fields[\"proc.name\"]: `exists: false` cannot",
            ),
            (
                json!({"fields": {"proc.name": {"in": ["a", ""]}}}),
                "f.fields[\"proc.name\"].in[1]:",
            ),
        ];
        for (f, expected) in cases {
            let error = filter(f.clone()).validate("f").unwrap_err();
            assert!(error.starts_with(expected), "{f}: {error}");
        }
        assert_eq!(
            filter(json!({"rules": ["x"], "fields": {"a": {"exists": false}}})).validate("f"),
            Ok(())
        );
    }

    #[test]
    fn unknown_keys_are_refused_when_read() {
        let error = serde_json::from_value::<Filter>(serde_json::json!({"rule": ["x"]}))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `rule`"), "{error}");
    }

    #[test]
    fn globs_match_stars_and_question_marks() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*b*b*", "abcbd", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**a", "xxa", true),
            ("é*", "été", true),
        ] {
            assert_eq!(glob(pattern, text), expected, "{pattern} ~ {text}");
        }
    }
}
