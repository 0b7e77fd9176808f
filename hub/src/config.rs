//! Hub configuration: listener, ingest limits, authentication. Every struct rejects unknown
//! keys and has defaults, so an empty config file is valid.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubConfig {
    /// This hub's cluster name, for events that name none.
    pub cluster: String,
    pub server: ServerConfig,
    pub ingest: IngestConfig,
    pub auth: AuthConfig,
    pub sources: SourcesConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            cluster: "default".into(),
            server: ServerConfig::default(),
            ingest: IngestConfig::default(),
            auth: AuthConfig::default(),
            sources: SourcesConfig::default(),
        }
    }
}

/// Settings of individual sources.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub tetragon: crate::sources::tetragon::TetragonConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// HTTP worker threads; 0 = one per CPU core.
    pub workers: usize,
    /// Seconds to finish in-flight requests after SIGTERM before closing.
    pub shutdown_timeout_secs: u64,
    /// HTTPS on the listener; plain HTTP without it.
    pub tls: Option<TlsConfig>,
    /// Serve `/metrics` on this address (plain HTTP) and nowhere else, so a Service and an
    /// Ingress can expose the API without the metrics. Unset: `/metrics` on `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The listener's certificate and key, PEM files read once at start (a new certificate needs
/// a restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (e.g. `tls.crt` of a kubernetes.io/tls Secret).
    pub cert_file: std::path::PathBuf,
    /// The private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: std::path::PathBuf,
    /// CA bundle (PEM) of client certificates accepted as ingest credentials: a certificate
    /// whose subject CN or a DNS SAN is the `name` of an `auth.tokens` entry has that entry's
    /// scopes, without a token (Falco's `http_output.mtls`). Clients without a certificate
    /// still use tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<std::path::PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            shutdown_timeout_secs: 30,
            tls: None,
            metrics_listen: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body, before and after gzip decompression (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one request (413 beyond).
    pub max_events_per_request: usize,
    /// Largest single event (and part of a report: one vulnerability, one check); a larger
    /// one is rejected with its index, never truncated.
    pub max_event_bytes: usize,
    /// Largest request body carrying scanner reports (Trivy, kube-bench), before and after
    /// gzip: a report of 10,000 vulnerabilities with descriptions is 20–30 MB of JSON.
    pub max_report_bytes: usize,
    /// Most results (vulnerabilities, checks, …) in one report, and in one request of
    /// reports; each is stored as an event, so at most `store.queue_max_events`.
    pub max_report_findings: usize,
    /// Seconds a request may take to send its body (408 past it), so stalled uploads do not
    /// hold connections and memory.
    pub body_timeout_secs: u64,
    /// Most body bytes being received across all requests at once; a request that would
    /// exceed it is answered 429 (`Retry-After`) before more is read.
    pub max_inflight_bytes: usize,
    /// Most distinct clusters one credential may send events for in a UTC day (403 past
    /// it), so a leaked token cannot flood the cluster list; forwarding hubs are exempt.
    pub max_clusters_per_token_per_day: usize,
    /// The ingest journal in front of PostgreSQL (`docs/operations.md`): on by default.
    pub journal: falconer_store::JournalConfig,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 16 * 1024 * 1024,
            max_events_per_request: 10_000,
            max_event_bytes: 256 * 1024,
            max_report_bytes: 64 * 1024 * 1024,
            max_report_findings: 20_000,
            body_timeout_secs: 30,
            max_inflight_bytes: 256 * 1024 * 1024,
            max_clusters_per_token_per_day: 50,
            journal: falconer_store::JournalConfig::default(),
        }
    }
}

/// Bearer tokens, stored as SHA-256 hashes (`printf %s "$TOKEN" | sha256sum`), each with the
/// scopes it grants (docs/security.md). An API no token is configured for is open, which is
/// allowed only on a loopback address: the ingest API (scopes `ingest`, `forward`) and the
/// query API (`read`, `operate`) are open or guarded each as a whole.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shorthand for token entries with scopes `[ingest]`.
    pub ingest_token_sha256: Vec<TokenHash>,
    /// Shorthand for token entries with scopes `[read]`.
    pub query_token_sha256: Vec<TokenHash>,
    /// Named tokens with their scopes and, for `ingest`, the clusters and sources they may
    /// send for.
    pub tokens: Vec<TokenEntry>,
}

/// One credential: who holds it (`name`, in logs and errors; never the token), what it may
/// do, and for what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token, e.g. `falco-edge-a`: a DNS label, unique.
    pub name: String,
    pub sha256: TokenHash,
    pub scopes: Vec<Scope>,
    /// With `ingest`: the only clusters its events may name; an event naming none gets the
    /// only one listed. Empty: any.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// With `ingest`: the only sources it may send (`falco`, `trivy`, …). Empty: any but
    /// `falconer`, which needs `forward`.
    #[serde(default)]
    pub sources: Vec<String>,
}

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Post events of detectors and scanners (`POST /ingest`, `POST /`).
    Ingest,
    /// Post events forwarded by another hub (`?source=falconer`), keeping their cluster.
    Forward,
    /// Every GET of the query API and the dashboard's data.
    Read,
    /// Act: replay dead letters, send test events, recompute risk.
    Operate,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Forward => "forward",
            Scope::Read => "read",
            Scope::Operate => "operate",
        }
    }
}

impl AuthConfig {
    /// Every token entry, the shorthands included (named after their key and position).
    pub fn entries(&self) -> Vec<TokenEntry> {
        let shorthand = |key: &str, hashes: &[TokenHash], scope: Scope| {
            hashes
                .iter()
                .enumerate()
                .map(|(i, hash)| TokenEntry {
                    name: format!("{key}[{i}]"),
                    sha256: *hash,
                    scopes: vec![scope],
                    clusters: Vec::new(),
                    sources: Vec::new(),
                })
                .collect::<Vec<_>>()
        };
        let mut entries = shorthand(
            "ingest_token_sha256",
            &self.ingest_token_sha256,
            Scope::Ingest,
        );
        entries.extend(shorthand(
            "query_token_sha256",
            &self.query_token_sha256,
            Scope::Read,
        ));
        entries.extend(self.tokens.iter().cloned());
        entries
    }

    /// Whether any token grants one of `scopes`.
    pub fn grants_any(&self, scopes: &[Scope]) -> bool {
        self.entries()
            .iter()
            .any(|e| e.scopes.iter().any(|s| scopes.contains(s)))
    }

    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let shorthands = self.ingest_token_sha256.len() + self.query_token_sha256.len();
        let mut names = std::collections::HashSet::new();
        let mut hashes = std::collections::HashMap::new();
        for (i, entry) in self.entries().iter().enumerate() {
            let key = match i.checked_sub(shorthands) {
                None => format!("auth.{}", entry.name),
                Some(i) => {
                    let key = format!("auth.tokens[{i}]");
                    if !falconer_model::names::is_dns_label(&entry.name) {
                        return Err(format!(
                            "{key}.name: `{}` must be a DNS label (lower-case letters, digits, `-`)",
                            entry.name
                        ));
                    }
                    key
                }
            };
            if !names.insert(entry.name.clone()) {
                return Err(format!("{key}.name: `{}` is used twice", entry.name));
            }
            if let Some(other) = hashes.insert(entry.sha256, entry.name.clone()) {
                return Err(format!(
                    "{key}.sha256: the same token as `{other}`; give each holder a token of its own"
                ));
            }
            if entry.scopes.is_empty() {
                return Err(format!(
                    "{key}.scopes: name at least one of ingest, forward, read, operate"
                ));
            }
            if !entry.scopes.contains(&Scope::Ingest)
                && (!entry.clusters.is_empty() || !entry.sources.is_empty())
            {
                return Err(format!(
                    "{key}: `clusters` and `sources` bound what an `ingest` token may send; \
                     this token has no ingest scope"
                ));
            }
            for cluster in &entry.clusters {
                falconer_model::names::check_cluster_name(cluster)
                    .map_err(|e| format!("{key}.clusters: `{cluster}` {e}"))?;
            }
            for source in &entry.sources {
                match crate::sources::Source::named(source) {
                    Some(crate::sources::Source::Falconer) => {
                        return Err(format!(
                            "{key}.sources: `falconer` is forwarding between hubs; grant the `forward` scope instead"
                        ));
                    }
                    Some(_) => {}
                    None => {
                        return Err(format!(
                            "{key}.sources: `{source}` is not a source; one of {}",
                            crate::sources::Source::names()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The SHA-256 of a bearer token, written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        use sha2::Digest;
        TokenHash(sha2::Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({self})")
    }
}

impl std::str::FromStr for TokenHash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        let bad = || format!("expected the SHA-256 of a token as 64 hex digits, got `{s}`");
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(TokenHash(out))
    }
}

impl Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl HubConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        falconer_model::names::check_cluster_name(&self.cluster)
            .map_err(|e| format!("cluster: {e}"))?;
        let positive = [
            ("ingest.max_body_bytes", self.ingest.max_body_bytes),
            (
                "ingest.max_events_per_request",
                self.ingest.max_events_per_request,
            ),
            ("ingest.max_event_bytes", self.ingest.max_event_bytes),
            ("ingest.max_report_bytes", self.ingest.max_report_bytes),
            (
                "ingest.max_report_findings",
                self.ingest.max_report_findings,
            ),
            (
                "ingest.body_timeout_secs",
                self.ingest.body_timeout_secs as usize,
            ),
            ("ingest.max_inflight_bytes", self.ingest.max_inflight_bytes),
            (
                "ingest.max_clusters_per_token_per_day",
                self.ingest.max_clusters_per_token_per_day,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key}: must be greater than 0"));
            }
        }
        let largest = self.ingest.max_body_bytes.max(self.ingest.max_report_bytes);
        if self.ingest.max_inflight_bytes < largest {
            return Err(format!(
                "ingest.max_inflight_bytes: {} is below the largest accepted body ({largest}, \
                 ingest.max_body_bytes / ingest.max_report_bytes); such a request could never \
                 be received",
                self.ingest.max_inflight_bytes
            ));
        }
        self.auth.validate()?;
        let open = self.open_apis();
        if !open.is_empty() && !self.server.listen.ip().is_loopback() {
            return Err(format!(
                "server.listen: refusing to serve the {} API without tokens on {}; set {} or \
                 listen on a loopback address",
                open.join(" and "),
                self.server.listen,
                open.iter()
                    .map(|api| format!("auth.{api}_token_sha256"))
                    .collect::<Vec<_>>()
                    .join(" and ")
                    + " (or auth.tokens)"
            ));
        }
        Ok(())
    }

    /// The APIs anyone may call: those no token is configured for.
    pub fn open_apis(&self) -> Vec<&'static str> {
        let mut open = Vec::new();
        if !self.auth.grants_any(&[Scope::Ingest, Scope::Forward]) {
            open.push("ingest");
        }
        if !self.auth.grants_any(&[Scope::Read, Scope::Operate]) {
            open.push("query");
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, scopes: &[Scope]) -> TokenEntry {
        TokenEntry {
            name: name.into(),
            sha256: TokenHash::of(name),
            scopes: scopes.to_vec(),
            clusters: Vec::new(),
            sources: Vec::new(),
        }
    }

    fn refusal(tokens: Vec<TokenEntry>) -> String {
        AuthConfig {
            tokens,
            ..AuthConfig::default()
        }
        .validate()
        .unwrap_err()
    }

    #[test]
    fn token_entries_are_refused_by_key_when_they_cannot_be_enforced() {
        let twice = refusal(vec![
            entry("a", &[Scope::Read]),
            entry("a", &[Scope::Ingest]),
        ]);
        assert!(
            twice.contains("auth.tokens[1].name") && twice.contains("twice"),
            "{twice}"
        );
        let shared = refusal(vec![
            entry("a", &[Scope::Read]),
            TokenEntry {
                sha256: TokenHash::of("a"),
                ..entry("b", &[Scope::Operate])
            },
        ]);
        assert!(
            shared.contains("auth.tokens[1].sha256") && shared.contains("`a`"),
            "{shared}"
        );
        let none = refusal(vec![entry("a", &[])]);
        assert!(none.contains("auth.tokens[0].scopes"), "{none}");
        let bound = refusal(vec![TokenEntry {
            clusters: vec!["edge".into()],
            ..entry("a", &[Scope::Read])
        }]);
        assert!(bound.contains("no ingest scope"), "{bound}");
        let unknown = refusal(vec![TokenEntry {
            sources: vec!["snort".into()],
            ..entry("a", &[Scope::Ingest])
        }]);
        assert!(
            unknown.contains("auth.tokens[0].sources") && unknown.contains("snort"),
            "{unknown}"
        );
        let forward = refusal(vec![TokenEntry {
            sources: vec!["falconer".into()],
            ..entry("a", &[Scope::Ingest])
        }]);
        assert!(forward.contains("forward"), "{forward}");
        let name = refusal(vec![entry("Falco Edge", &[Scope::Ingest])]);
        assert!(
            name.contains("auth.tokens[0].name") && name.contains("DNS label"),
            "{name}"
        );
    }

    #[test]
    fn the_in_flight_budget_must_hold_the_largest_accepted_body() {
        let mut hub = HubConfig::default();
        hub.ingest.max_inflight_bytes = hub.ingest.max_report_bytes - 1;
        let error = hub.validate().unwrap_err();
        assert!(error.starts_with("ingest.max_inflight_bytes"), "{error}");
        hub.ingest.max_inflight_bytes = hub.ingest.max_report_bytes;
        assert!(hub.validate().is_ok());
    }

    #[test]
    fn shorthands_are_ingest_and_read_tokens_and_an_api_without_tokens_is_open() {
        let config = AuthConfig {
            ingest_token_sha256: vec![TokenHash::of("i")],
            query_token_sha256: vec![TokenHash::of("q")],
            tokens: Vec::new(),
        };
        let entries = config.entries();
        assert_eq!(entries[0].name, "ingest_token_sha256[0]");
        assert_eq!(entries[0].scopes, [Scope::Ingest]);
        assert_eq!(entries[1].scopes, [Scope::Read]);
        let mut hub = HubConfig::default();
        hub.auth.tokens = vec![entry("operator", &[Scope::Operate])];
        // Operate alone guards the whole query API; ingest stays open (loopback only).
        assert_eq!(hub.open_apis(), ["ingest"]);
    }

    #[test]
    fn token_hash_parses_hex_with_or_without_prefix_and_prints_it_back() {
        let hash = TokenHash::of("s3cret");
        let text = hash.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<TokenHash>(), Ok(hash));
        assert_eq!(format!("sha256:{text}").parse::<TokenHash>(), Ok(hash));
        assert!("abc".parse::<TokenHash>().is_err());
        assert!("zz".repeat(32).parse::<TokenHash>().is_err());
    }

    #[test]
    fn an_open_api_on_a_public_address_is_refused() {
        let mut config = HubConfig::default();
        config.server.listen = "0.0.0.0:8080".parse().unwrap();
        let error = config.validate().unwrap_err();
        assert!(error.starts_with("server.listen"), "{error}");
        config.auth.ingest_token_sha256 = vec![TokenHash::of("a")];
        config.auth.query_token_sha256 = vec![TokenHash::of("b")];
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn an_open_api_on_loopback_is_allowed() {
        assert_eq!(HubConfig::default().validate(), Ok(()));
        assert_eq!(HubConfig::default().open_apis(), ["ingest", "query"]);
    }
}
