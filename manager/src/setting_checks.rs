//! Checks on `Setting` objects that need more than one object to make: consumer names unique
//! across all Settings, one cluster name, credentials only by reference and present where a
//! sink needs them. Pure functions; the Setting controller feeds them the Settings it watches
//! and the Secrets it found, and `manager render` feeds them files.

use falconer_model::crd::{Consumer, Setting, is_dns_label};
use kube::ResourceExt;
use std::collections::BTreeMap;

/// This cluster's name: the `spec.cluster` of the oldest Setting that names one.
pub fn cluster_name(settings: &[Setting]) -> Option<String> {
    Setting::oldest_first(settings)
        .into_iter()
        .find_map(|s| s.spec.cluster.clone())
}

/// What is wrong with `setting` given all Settings (including itself); empty when valid.
/// Each message names the consumer or field.
pub fn problems(setting: &Setting, all: &[Setting]) -> Vec<String> {
    let mut problems = Vec::new();
    let me = setting.name_any();
    let ordered = Setting::oldest_first(all);

    if let Some(cluster) = &setting.spec.cluster {
        if !is_dns_label(cluster) {
            problems.push(format!("spec.cluster: `{cluster}` is not a DNS label"));
        }
        let first = ordered
            .iter()
            .find(|s| s.spec.cluster.is_some())
            .filter(|s| s.name_any() != me);
        if let Some(first) = first
            && first.spec.cluster.as_deref() != Some(cluster.as_str())
        {
            problems.push(format!(
                "spec.cluster: `{cluster}` disagrees with `{}` of Setting {}, which wins",
                first.spec.cluster.as_deref().unwrap_or_default(),
                first.name_any()
            ));
        }
    }

    // Every Setting that declares each consumer name, oldest first.
    let mut owners: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for s in &ordered {
        for c in &s.spec.consumers {
            let names = owners.entry(c.name.as_str()).or_default();
            if !names.contains(&s.name_any()) {
                names.push(s.name_any());
            }
        }
    }
    let mut seen = BTreeMap::new();
    for consumer in &setting.spec.consumers {
        let name = consumer.name.as_str();
        let others: Vec<&str> = owners
            .get(name)
            .map(|o| o.iter().map(String::as_str).filter(|o| *o != me).collect())
            .unwrap_or_default();
        if seen.insert(name, ()).is_some() {
            problems.push(format!("consumer {name}: defined twice in this Setting"));
        } else if !others.is_empty() {
            problems.push(format!(
                "consumer {name}: the name is also used by Setting {}; consumer names are unique across Settings and the hub runs none of them until one is renamed",
                others.join(", ")
            ));
        }
        problems.extend(
            consumer_problems(consumer)
                .into_iter()
                .map(|p| format!("consumer {name}: {p}")),
        );
    }
    let mut names = BTreeMap::new();
    for (i, suppression) in setting.spec.suppressions.iter().enumerate() {
        let at = format!("spec.suppressions[{i}]");
        if names.insert(suppression.name.as_str(), ()).is_some() {
            problems.push(format!(
                "{at}.name: `{}` is used twice in this Setting",
                suppression.name
            ));
        }
        if let Err(problem) = suppression.spec().validate_shape(&at) {
            problems.push(problem);
        }
    }
    problems
}

/// Problems of one consumer on its own (what the CRD's CEL rules say, plus credentials).
pub fn consumer_problems(consumer: &Consumer) -> Vec<String> {
    let mut problems = Vec::new();
    if !is_dns_label(&consumer.name) {
        problems.push(format!("name `{}` is not a DNS label", consumer.name));
    }
    let sections = consumer.sections();
    for (sink, present) in sections {
        if present && sink != consumer.sink {
            problems.push(format!(
                "has a `{}` section but its type is {}",
                sink.as_str(),
                consumer.sink.as_str()
            ));
        }
    }
    let needs_section = consumer.needs_section();
    let has_section = sections
        .iter()
        .any(|(sink, present)| *present && *sink == consumer.sink);
    if needs_section && !has_section {
        problems.push(format!(
            "type {0} needs a `{0}` section",
            consumer.sink.as_str()
        ));
    }
    if !consumer.required_secret_keys().is_empty() && consumer.secret_ref.is_none() {
        problems.push(format!(
            "a {} sink with these settings reads credentials, but `secretRef` is missing",
            consumer.sink.as_str()
        ));
    }
    problems
}

/// Secret keys each consumer of `setting` needs. Secrets live in the hub's namespace,
/// `namespace`.
pub fn secret_needs(setting: &Setting, namespace: &str) -> Vec<SecretNeed> {
    setting
        .spec
        .consumers
        .iter()
        .filter_map(|consumer| {
            let secret = consumer.secret_ref.as_ref()?;
            Some(SecretNeed {
                consumer: consumer.name.clone(),
                namespace: namespace.to_owned(),
                name: secret.name.clone(),
                keys: consumer.required_secret_keys(),
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretNeed {
    pub consumer: String,
    pub namespace: String,
    pub name: String,
    pub keys: Vec<String>,
}

/// What a Secret lookup found: `None` when the Secret does not exist, else its key names
/// (never the values).
pub fn secret_problems(need: &SecretNeed, found: Option<&[String]>) -> Option<String> {
    let Some(keys) = found else {
        return Some(format!(
            "consumer {}: Secret {}/{} does not exist",
            need.consumer, need.namespace, need.name
        ));
    };
    let missing: Vec<&str> = need
        .keys
        .iter()
        .filter(|k| !keys.contains(k))
        .map(String::as_str)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "consumer {}: Secret {}/{} has no key {}",
            need.consumer,
            need.namespace,
            need.name,
            missing.join(", ")
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use falconer_model::crd::{
        FalconerConfig, OpenSearchAuth, OpenSearchConfig, SecretRef, SettingSpec, SinkType,
        WebhookConfig,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    pub fn consumer(name: &str, sink: SinkType) -> Consumer {
        Consumer::new(name, sink)
    }

    pub fn setting(
        name: &str,
        created: i64,
        cluster: Option<&str>,
        consumers: Vec<Consumer>,
    ) -> Setting {
        let mut s = Setting::new(
            name,
            SettingSpec {
                cluster: cluster.map(String::from),
                consumers,
                retention: None,
                suppressions: Vec::new(),
            },
        );
        s.metadata.creation_timestamp = Some(Time(
            Timestamp::from_second(1_800_000_000 + created).expect("timestamp"),
        ));
        s.metadata.generation = Some(1);
        s
    }

    fn opensearch(auth: OpenSearchAuth) -> OpenSearchConfig {
        OpenSearchConfig {
            url: "https://os:9200".into(),
            index: "falconer-events".into(),
            data_stream: None,
            template: true,
            auth,
            flavor: Default::default(),
            batch_size: 500,
            tls: Default::default(),
        }
    }

    #[test]
    fn a_settings_suppressions_need_unique_names_a_condition_and_a_reason() {
        let mut s = setting("team-a", 0, None, Vec::new());
        let entry = |name: &str, rules: &[&str], reason: &str| {
            serde_json::from_value(serde_json::json!({"name": name, "match": {"rules": rules},
                "reason": reason, "expires": "2027-01-01T00:00:00Z"}))
            .expect("suppression")
        };
        s.spec.suppressions = vec![
            entry("backup", &["Shell*"], "the backup job"),
            entry("backup", &["Read*"], "again"),
            entry("everything", &[], "too wide"),
            entry("silent", &["x"], " "),
        ];
        assert_eq!(
            problems(&s, std::slice::from_ref(&s)),
            [
                "spec.suppressions[1].name: `backup` is used twice in this Setting",
                "spec.suppressions[2].match: give at least one condition (an empty match would silence every event)",
                "spec.suppressions[3].reason: must have 1 to 1000 characters",
            ]
        );
    }

    #[test]
    fn a_consumer_name_used_by_two_settings_is_a_problem_of_both_as_the_hub_runs_neither() {
        let old = setting("a-old", 0, None, vec![consumer("stdout", SinkType::Stdout)]);
        let new = setting(
            "b-new",
            10,
            None,
            vec![consumer("stdout", SinkType::Stdout)],
        );
        let all = vec![new.clone(), old.clone()];
        let message = |other: &str| {
            format!(
                "consumer stdout: the name is also used by Setting {other}; consumer names are unique across Settings and the hub runs none of them until one is renamed"
            )
        };
        assert_eq!(problems(&old, &all), [message("b-new")]);
        assert_eq!(problems(&new, &all), [message("a-old")]);
    }

    #[test]
    fn the_oldest_setting_naming_a_cluster_decides_it_and_a_disagreeing_one_is_flagged() {
        let first = setting("z", 0, Some("prod-eu"), vec![]);
        let second = setting("a", 5, Some("prod-us"), vec![]);
        let silent = setting("m", 1, None, vec![]);
        let all = vec![second.clone(), silent.clone(), first.clone()];
        assert_eq!(cluster_name(&all).as_deref(), Some("prod-eu"));
        assert!(problems(&first, &all).is_empty());
        assert!(problems(&silent, &all).is_empty());
        assert_eq!(problems(&second, &all).len(), 1);
        assert!(problems(&second, &all)[0].contains("disagrees with `prod-eu` of Setting z"));
        assert_eq!(cluster_name(&[]), None);
    }

    #[test]
    fn a_consumer_must_carry_the_section_of_its_type_and_no_other() {
        let mut missing = consumer("os", SinkType::Opensearch);
        assert_eq!(
            consumer_problems(&missing),
            ["type opensearch needs a `opensearch` section"]
        );
        missing.opensearch = Some(opensearch(OpenSearchAuth::None));
        assert!(consumer_problems(&missing).is_empty());
        let mut wrong = consumer("out", SinkType::Stdout);
        wrong.opensearch = Some(opensearch(OpenSearchAuth::None));
        assert_eq!(
            consumer_problems(&wrong),
            ["has a `opensearch` section but its type is stdout"]
        );
        assert!(consumer_problems(&consumer("phx", SinkType::Phoenix)).is_empty());
    }

    #[test]
    fn sinks_that_need_credentials_need_a_secret_ref() {
        let mut os = consumer("os", SinkType::Opensearch);
        os.opensearch = Some(opensearch(OpenSearchAuth::Basic));
        assert_eq!(consumer_problems(&os).len(), 1);
        os.secret_ref = Some(SecretRef {
            name: "os-creds".into(),
        });
        assert!(consumer_problems(&os).is_empty());
        let mut central = consumer("central", SinkType::Falconer);
        central.falconer = Some(FalconerConfig {
            url: "https://central:8443".into(),
            tls: Default::default(),
        });
        assert!(consumer_problems(&central)[0].contains("`secretRef` is missing"));
    }

    #[test]
    fn secret_needs_list_the_keys_each_sink_reads_in_the_hubs_namespace() {
        let mut os = consumer("os", SinkType::Opensearch);
        os.opensearch = Some(opensearch(OpenSearchAuth::Basic));
        os.secret_ref = Some(SecretRef {
            name: "os-creds".into(),
        });
        let mut hook = consumer("hook", SinkType::Webhook);
        hook.webhook = Some(WebhookConfig {
            url: "https://hooks.example/x".into(),
            batch: false,
            headers: Default::default(),
            secret_headers: BTreeMap::from([("X-Api-Key".into(), "apiKey".into())]),
            sign: true,
            format: Default::default(),
            method: Default::default(),
            tls: Default::default(),
        });
        hook.secret_ref = Some(SecretRef {
            name: "hook".into(),
        });
        let s = setting(
            "s",
            0,
            None,
            vec![os, hook, consumer("out", SinkType::Stdout)],
        );
        let needs = secret_needs(&s, "falconer-system");
        assert_eq!(
            needs,
            [
                SecretNeed {
                    consumer: "os".into(),
                    namespace: "falconer-system".into(),
                    name: "os-creds".into(),
                    keys: vec!["password".into(), "username".into()],
                },
                SecretNeed {
                    consumer: "hook".into(),
                    namespace: "falconer-system".into(),
                    name: "hook".into(),
                    keys: vec!["apiKey".into(), "hmacKey".into()],
                },
            ]
        );
    }

    #[test]
    fn a_missing_secret_or_key_is_named_without_any_value() {
        let need = SecretNeed {
            consumer: "os".into(),
            namespace: "logging".into(),
            name: "os-creds".into(),
            keys: vec!["password".into(), "username".into()],
        };
        assert_eq!(
            secret_problems(&need, None).as_deref(),
            Some("consumer os: Secret logging/os-creds does not exist")
        );
        assert_eq!(
            secret_problems(&need, Some(&["username".to_string()])).as_deref(),
            Some("consumer os: Secret logging/os-creds has no key password")
        );
        assert_eq!(
            secret_problems(&need, Some(&["username".into(), "password".into()])),
            None
        );
    }
}
