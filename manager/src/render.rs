//! `falconer manager render -f policy.yaml [-f setting.yaml]`: reads Policies and Settings from
//! YAML files (several documents per file allowed) and prints, as one YAML stream, exactly
//! the objects the manager would apply for them — no cluster needed. Settings only contribute
//! the cluster name and are checked like the Setting controller checks them (except for the
//! Secrets, which only a cluster has).

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::objects::{self, Child};
use crate::setting_checks;
use falconer_model::crd::{GROUP, Policy, Setting, VERSION};
use kube::ResourceExt;
use std::path::{Path, PathBuf};

/// Policies and Settings read from files.
#[derive(Debug, Default, Clone)]
pub struct Resources {
    pub policies: Vec<Policy>,
    pub settings: Vec<Setting>,
}

/// Reads every document of every file; anything but a Policy or Setting of this API version
/// is an error naming the file and document.
pub fn read_files(paths: &[PathBuf]) -> Result<Resources> {
    let mut resources = Resources::default();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| Error::File {
            path: path.clone(),
            source,
        })?;
        parse_into(&mut resources, &text, path)?;
    }
    Ok(resources)
}

/// Parses one YAML stream into `resources`.
pub fn parse_into(resources: &mut Resources, text: &str, path: &Path) -> Result<()> {
    let parse_error = |reason: String| Error::Parse {
        path: path.to_owned(),
        reason,
    };
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| parse_error(e.to_string()))?;
    let api_version = format!("{GROUP}/{VERSION}");
    for (index, document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let at = |reason: String| parse_error(format!("document {}: {reason}", index + 1));
        if document["apiVersion"] != api_version.as_str() {
            return Err(at(format!(
                "apiVersion is {}, expected {api_version}",
                document["apiVersion"]
            )));
        }
        if let Some(kind) = document["kind"].as_str()
            && let Some(schema) = crd_schema(kind)
        {
            kube::core::cel::Validator::new()
                .validate(&schema, &document, None)
                .map_err(|e| at(format!("{kind} breaks a rule of its CRD: {e}")))?;
        }
        match document["kind"].as_str() {
            Some("Policy") => resources
                .policies
                .push(serde_json::from_value(document).map_err(|e| at(format!("Policy: {e}")))?),
            Some("Setting") => resources
                .settings
                .push(serde_json::from_value(document).map_err(|e| at(format!("Setting: {e}")))?),
            other => {
                return Err(at(format!(
                    "kind is {}, expected Policy or Setting",
                    other.unwrap_or("missing")
                )));
            }
        }
    }
    Ok(())
}

/// The openAPIV3Schema of the CRD serving `kind`, for its CEL rules.
fn crd_schema(kind: &str) -> Option<serde_json::Value> {
    crate::crdgen::crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .and_then(|crd| crd.spec.versions.into_iter().next())
        .and_then(|version| version.schema)
        .and_then(|schema| schema.open_api_v3_schema)
        .and_then(|schema| serde_json::to_value(schema).ok())
}

/// The objects the manager would apply for `resources`, in apply order. `default_cluster`
/// is used when no Setting names the cluster (as the manager does).
pub fn plan_objects(
    resources: &Resources,
    default_cluster: &str,
    limits: &Limits,
) -> Result<Vec<Child>> {
    for setting in &resources.settings {
        let problems = setting_checks::problems(setting, &resources.settings);
        if !problems.is_empty() {
            return Err(Error::Invalid {
                kind: "Setting",
                name: setting.name_any(),
                reason: problems.join("; "),
            });
        }
    }
    let cluster = setting_checks::cluster_name(&resources.settings)
        .unwrap_or_else(|| default_cluster.to_owned());
    let mut out = Vec::new();
    for policy in &resources.policies {
        policy
            .validate()
            .and_then(|()| limits.check(policy))
            .map_err(|reason| Error::Invalid {
                kind: "Policy",
                name: policy.name_any(),
                reason,
            })?;
        out.extend(
            objects::plan(policy, &cluster)
                .apply
                .into_iter()
                .map(|(_, child)| child),
        );
    }
    Ok(out)
}

/// `plan_objects` as a YAML stream.
pub fn render(resources: &Resources, default_cluster: &str, limits: &Limits) -> Result<String> {
    let mut out = String::new();
    for child in plan_objects(resources, default_cluster, limits)? {
        out.push_str("---\n");
        out.push_str(
            &serde_saphyr::to_string(&child.to_value()).map_err(|e| Error::Yaml(e.to_string()))?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: falconer.io/v1alpha1
kind: Policy
metadata:
  name: prod
spec:
  falco:
    minimumPriority: notice
  kubeBench:
    enabled: true
---
apiVersion: falconer.io/v1alpha1
kind: Setting
metadata:
  name: main
spec:
  cluster: prod-eu
  consumers:
    - name: out
      type: stdout
"#;

    fn parse(text: &str) -> Result<Resources> {
        let mut r = Resources::default();
        parse_into(&mut r, text, Path::new("test.yaml"))?;
        Ok(r)
    }

    #[test]
    fn a_policy_and_setting_in_one_file_render_the_enabled_agents_with_the_settings_cluster() {
        let resources = parse(POLICY).expect("parses");
        assert_eq!(resources.policies.len(), 1);
        assert_eq!(resources.settings.len(), 1);
        let text = render(&resources, "default", &Limits::default()).expect("renders");
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("YAML");
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "ServiceAccount",
                "ConfigMap",
                "DaemonSet",
                "ServiceAccount",
                "CronJob"
            ]
        );
        assert!(docs[1]["data"]["falco.yaml"].as_str().is_some_and(|c| {
            c.contains("falconer.cluster: prod-eu") && c.contains("priority: notice")
        }));
    }

    #[test]
    fn without_a_setting_the_default_cluster_name_is_used() {
        let resources = parse(POLICY.split("---").next().unwrap_or_default()).expect("parses");
        let text = render(&resources, "home", &Limits::default()).expect("renders");
        assert!(text.contains("falconer.cluster: home"));
    }

    #[test]
    fn unknown_kinds_versions_and_fields_are_refused_with_the_document_number() {
        let err = parse("apiVersion: v1\nkind: ConfigMap\n").expect_err("refused");
        assert!(err.to_string().contains("document 1: apiVersion"));
        let err = parse("apiVersion: falconer.io/v1alpha1\nkind: Thing\n").expect_err("refused");
        assert!(err.to_string().contains("kind is Thing"));
        let err = parse(
            "apiVersion: falconer.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {falko: {}}\n",
        )
        .expect_err("refused");
        assert!(err.to_string().contains("unknown field `falko`"), "{err}");
    }

    #[test]
    fn an_invalid_policy_is_refused_before_anything_is_rendered() {
        let resources = parse(
            "apiVersion: falconer.io/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspec: {kubeBench: {enabled: true, schedule: 'every day'}}\n",
        )
        .expect("parses");
        let err = render(&resources, "c", &Limits::default()).expect_err("invalid");
        assert!(err.to_string().contains("spec.kubeBench.schedule"), "{err}");
    }

    #[test]
    fn objects_the_api_server_would_refuse_by_a_cel_rule_are_refused() {
        let long = "x".repeat(41);
        let err = parse(&format!(
            "apiVersion: falconer.io/v1alpha1\nkind: Policy\nmetadata: {{name: {long}}}\nspec: {{}}\n"
        ))
        .expect_err("refused");
        assert!(err.to_string().contains("at most 40 characters"), "{err}");
        let err = parse(
            "apiVersion: falconer.io/v1alpha1\nkind: Setting\nmetadata: {name: s}\nspec: {consumers: [{name: hook, type: webhook}]}\n",
        )
        .expect_err("refused");
        assert!(
            err.to_string().contains("needs a `webhook` section"),
            "{err}"
        );
    }

    #[test]
    fn settings_with_a_shared_consumer_name_are_refused() {
        let text = r#"
apiVersion: falconer.io/v1alpha1
kind: Setting
metadata: {name: a}
spec: {consumers: [{name: out, type: stdout}]}
---
apiVersion: falconer.io/v1alpha1
kind: Setting
metadata: {name: b}
spec: {consumers: [{name: out, type: stdout}]}
"#;
        let err =
            render(&parse(text).expect("parses"), "c", &Limits::default()).expect_err("conflict");
        assert!(
            err.to_string()
                .contains("consumer out: the name is also used by Setting"),
            "{err}"
        );
    }
}
