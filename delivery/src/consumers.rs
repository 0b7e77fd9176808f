//! The consumers delivery should be running, from wherever they are declared: the hub's
//! config file and, in a cluster, `Setting` objects. Both parse into `crd::Consumer`.

use falconer_model::crd::{Consumer, ConsumerStatus};
use std::collections::BTreeMap;
use std::fmt;

/// Where a consumer was declared; names must be unique across all origins.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// The hub's configuration file.
    ConfigFile,
    /// A cluster-scoped `Setting` object, by name.
    Setting(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::ConfigFile => f.write_str("the configuration file"),
            Origin::Setting(name) => write!(f, "Setting {name}"),
        }
    }
}

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(pub String);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The keys of a consumer's `secretRef`, resolved (Kubernetes Secret data in a cluster;
/// environment variables for the config file, see `secrets_from_env`).
pub type Secrets = BTreeMap<String, SecretValue>;

/// One consumer as delivery should run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub consumer: Consumer,
    pub origin: Origin,
    pub secrets: Secrets,
}

/// The keys of a config-file consumer's `secretRef` come from environment variables
/// `FALCONER_SECRET_<SECRET>_<KEY>` (upper case, every character that is not a letter or
/// digit replaced by `_`), e.g. `FALCONER_SECRET_OPENSEARCH_CREDENTIALS_PASSWORD`.
pub fn secret_env_name(secret: &str, key: &str) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("FALCONER_SECRET_{}_{}", clean(secret), clean(key))
}

/// Reads the keys `keys` of secret `secret` from the environment (see `secret_env_name`).
pub fn secrets_from_env(secret: &str, keys: &[&str]) -> Secrets {
    keys.iter()
        .filter_map(|key| {
            std::env::var(secret_env_name(secret, key))
                .ok()
                .map(|value| ((*key).to_string(), SecretValue(value)))
        })
        .collect()
}

/// A consumer's delivery as reported to the API and written into its Setting's status.
pub type ConsumerReport = ConsumerStatus;

/// Consumers of the configuration file, with their secrets read from the environment.
pub fn from_config_file(consumers: &[falconer_model::crd::Consumer]) -> Vec<Desired> {
    consumers
        .iter()
        .map(|consumer| {
            let secrets = match &consumer.secret_ref {
                Some(secret) => {
                    let keys = consumer.readable_secret_keys();
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    secrets_from_env(&secret.name, &keys)
                }
                None => Secrets::new(),
            };
            Desired {
                consumer: consumer.clone(),
                origin: Origin::ConfigFile,
                secrets,
            }
        })
        .collect()
}

/// Checks a list of consumers the way the API server's schema rules check a Setting: unique
/// names, and each type with its own settings section and no other. The error names the
/// entry.
pub fn validate(consumers: &[falconer_model::crd::Consumer], key: &str) -> Result<(), String> {
    use falconer_model::crd::SinkType;
    let mut seen = std::collections::HashSet::new();
    for (i, c) in consumers.iter().enumerate() {
        let at = format!("{key}[{i}]");
        if c.name.is_empty() || c.name.len() > 63 {
            return Err(format!("{at}.name: must be 1 to 63 characters"));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(format!("{at}.name: `{}` is used twice", c.name));
        }
        let sections = [
            (SinkType::Opensearch, c.opensearch.is_some(), "opensearch"),
            (SinkType::Phoenix, c.phoenix.is_some(), "phoenix"),
            (SinkType::Webhook, c.webhook.is_some(), "webhook"),
            (SinkType::Falconer, c.falconer.is_some(), "falconer"),
            (SinkType::File, c.file.is_some(), "file"),
        ];
        for (sink, present, section) in sections {
            let needed = sink == c.sink && sink != SinkType::Phoenix;
            if needed && !present {
                return Err(format!(
                    "{at}: type {} needs a `{section}` section",
                    sink.as_str()
                ));
            }
            if present && sink != c.sink {
                return Err(format!("{at}: a `{section}` section needs type {section}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_environment_names_are_upper_case_with_underscores() {
        assert_eq!(
            secret_env_name("opensearch-credentials", "apiKey"),
            "FALCONER_SECRET_OPENSEARCH_CREDENTIALS_APIKEY"
        );
        assert_eq!(
            secret_env_name("a.b", "tls.crt"),
            "FALCONER_SECRET_A_B_TLS_CRT"
        );
    }

    #[test]
    fn secret_values_never_print() {
        assert_eq!(format!("{:?}", SecretValue("s3cret".into())), "***");
    }
}
