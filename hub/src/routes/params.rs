//! Query-string parsing shared by every endpoint: unknown or repeated parameters are refused
//! by name, so a typo never silently widens a query.

use crate::error::HubError;
use actix_web::web::Query;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Params, HubError> {
        let pairs = Query::<Vec<(String, String)>>::from_query(query)
            .map_err(|e| HubError::bad("query", format!("is malformed: {e}")))?
            .into_inner();
        let mut map = HashMap::new();
        for (key, value) in pairs {
            if !allowed.contains(&key.as_str()) {
                return Err(HubError::bad(
                    key,
                    format!("unknown parameter; expected one of {}", allowed.join(", ")),
                ));
            }
            if map.contains_key(&key) {
                return Err(HubError::bad(key, "given more than once"));
            }
            map.insert(key, value);
        }
        Ok(Params(map))
    }

    /// The value, if given; an empty value is refused.
    pub fn text(&self, key: &str) -> Result<Option<&str>, HubError> {
        match self.0.get(key).map(String::as_str) {
            Some("") => Err(HubError::bad(key, "must not be empty")),
            other => Ok(other),
        }
    }

    /// The value parsed with `FromStr`, whose error message becomes the reason.
    pub fn parsed<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, HubError>
    where
        T::Err: std::fmt::Display,
    {
        self.text(key)?
            .map(|v| {
                v.parse()
                    .map_err(|e: T::Err| HubError::bad(key, e.to_string()))
            })
            .transpose()
    }

    /// The value as an RFC 3339 timestamp.
    pub fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>, HubError> {
        self.text(key)?
            .map(|v| {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        HubError::bad(
                            key,
                            format!(
                                "`{v}` is not an RFC 3339 timestamp such as 2026-05-04T10:11:12Z"
                            ),
                        )
                    })
            })
            .transpose()
    }

    /// The value as `true` or `false`.
    pub fn flag(&self, key: &str) -> Result<Option<bool>, HubError> {
        match self.text(key)? {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(HubError::bad(
                key,
                format!("`{other}` is not `true` or `false`"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        let err = Params::parse("namepsace=x", &["namespace"]).err().unwrap();
        assert!(err.to_string().starts_with("namepsace: unknown parameter"));
        let err = Params::parse("a=1&a=2", &["a"]).err().unwrap();
        assert_eq!(err.to_string(), "a: given more than once");
    }

    #[test]
    fn values_are_percent_decoded_and_empty_ones_refused() {
        let params = Params::parse("text=a%20b&pod=", &["text", "pod"]).unwrap();
        assert_eq!(params.text("text").unwrap(), Some("a b"));
        assert!(params.text("pod").is_err());
        assert_eq!(params.text("missing").unwrap(), None);
    }
}
