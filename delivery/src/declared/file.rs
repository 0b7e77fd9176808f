//! Consumers declared in the configuration file, their secrets read from the environment.

use super::{Desired, Origin, SecretValue, Secrets};

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

/// Environment variables by name: the process's (`process_env`), or a map in tests.
pub type Environment = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The process's environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads the keys `keys` of secret `secret` from the environment (see `secret_env_name`).
pub fn secrets_from_env(secret: &str, keys: &[&str]) -> Secrets {
    secrets_from(&process_env, secret, keys)
}

/// Reads the keys `keys` of secret `secret` from `env` (see `secret_env_name`).
pub fn secrets_from(env: &Environment, secret: &str, keys: &[&str]) -> Secrets {
    keys.iter()
        .filter_map(|key| {
            env(&secret_env_name(secret, key)).map(|value| ((*key).to_string(), SecretValue(value)))
        })
        .collect()
}

/// Consumers of the configuration file, with their secrets read from `env`.
pub fn from_config_file(
    consumers: &[falconer_model::crd::Consumer],
    env: &Environment,
) -> Vec<Desired> {
    consumers
        .iter()
        .map(|consumer| {
            let secrets = match &consumer.secret_ref {
                Some(secret) => {
                    let keys = consumer.readable_secret_keys();
                    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                    secrets_from(env, &secret.name, &keys)
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
