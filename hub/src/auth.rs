//! Who is calling and what they may do: bearer tokens (stored as SHA-256 hashes) mapped to
//! named credentials with scopes (docs/security.md). The route table names each route's
//! scope; `require` runs before every handler, so no route can ship unguarded.

use crate::config::{AuthConfig, Scope, TokenHash};
use crate::error::HubError;
use crate::sources::Source;
use actix_web::HttpRequest;
use actix_web::http::header;
use std::collections::HashMap;
use std::sync::Arc;

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Probes, scrapers, the dashboard's static files and the published schemas.
    Open,
    /// Posting events: `ingest`, or `forward` for `source=falconer` (checked by the handler
    /// once it knows the source).
    Ingest,
    Read,
    Operate,
}

/// The credential a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (never the token).
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Clusters an `ingest` token may send for; empty: any.
    pub clusters: Vec<String>,
    /// Sources an `ingest` token may send; empty: any.
    pub sources: Vec<Source>,
    /// The caller of an API without tokens (loopback only, no token asked for).
    pub anonymous: bool,
}

impl Principal {
    /// The caller of an API without tokens: anything it may do there.
    fn anyone() -> Principal {
        Principal {
            name: "anonymous".into(),
            scopes: vec![Scope::Ingest, Scope::Forward, Scope::Read, Scope::Operate],
            clusters: Vec::new(),
            sources: Vec::new(),
            anonymous: true,
        }
    }

    fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether this caller may post events of `source`: `falconer` needs `forward`, every
    /// other source `ingest` (and a listed source when the token lists some).
    pub fn may_send(&self, source: Source) -> Result<(), HubError> {
        let refuse = |why: String| Err(HubError::Forbidden(format!("token `{}` {why}", self.name)));
        if source == Source::Falconer {
            return match self.has(Scope::Forward) {
                true => Ok(()),
                false => refuse(
                    "may not forward events between hubs (source=falconer needs the forward scope)"
                        .into(),
                ),
            };
        }
        if !self.has(Scope::Ingest) {
            return refuse(format!(
                "may not post {} events (it needs the ingest scope; forward is for source=falconer)",
                source.as_str()
            ));
        }
        if !self.sources.is_empty() && !self.sources.contains(&source) {
            return refuse(format!(
                "may not post {} events; it may post {}",
                source.as_str(),
                names(self.sources.iter().map(|s| s.as_str()))
            ));
        }
        Ok(())
    }

    /// Whether this caller may send events of `cluster` (ingest tokens bound to clusters).
    pub fn may_send_for(&self, cluster: &str, source: Source) -> Result<(), HubError> {
        if source == Source::Falconer || self.clusters.is_empty() {
            return Ok(());
        }
        match self.clusters.iter().any(|c| c == cluster) {
            true => Ok(()),
            false => Err(HubError::Forbidden(format!(
                "token `{}` may not send events of cluster `{cluster}`; it may send for {}",
                self.name,
                names(self.clusters.iter().map(String::as_str))
            ))),
        }
    }

    /// Removes the hub's reserved tags an event claims, then marks it as posted by this
    /// credential when the credential is bound to the event's cluster (what the Phoenix
    /// sink's `requireBoundSender` asks for). Forwarded events (`source`
    /// `falconer`) are never marked: another hub vouches for nothing here. The KubeArmor
    /// parser's own [`RECEIVED_TIME_TAG`](falconer_model::event::RECEIVED_TIME_TAG) stays:
    /// that parser drops the reserved tags of the payload before it adds it.
    pub fn stamp(&self, event: &mut falconer_model::event::Event, source: Source) {
        use falconer_model::event::{BOUND_SENDER_TAG, RECEIVED_TIME_TAG, RESERVED_TAG_PREFIX};
        event.tags.retain(|t| {
            !t.starts_with(RESERVED_TAG_PREFIX)
                || (source == Source::KubeArmor && t == RECEIVED_TIME_TAG)
        });
        if source != Source::Falconer
            && self.has(Scope::Ingest)
            && self.clusters.contains(&event.cluster)
        {
            event.tags.push(format!("{BOUND_SENDER_TAG}{}", self.name));
        }
    }

    /// The cluster of events that name none, when the token is bound to exactly one.
    pub fn only_cluster(&self) -> Option<&str> {
        match self.clusters.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }
}

/// The caller of a request past the route guard (`startup::guard`).
pub fn caller(request: &HttpRequest) -> Result<Arc<Principal>, HubError> {
    use actix_web::HttpMessage;
    request
        .extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| HubError::Internal("the route guard did not run".into()))
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub struct Auth {
    by_hash: HashMap<TokenHash, Arc<Principal>>,
    by_name: HashMap<String, Arc<Principal>>,
    /// The caller of an open API, made once.
    anyone: Arc<Principal>,
    ingest_open: bool,
    query_open: bool,
}

impl Auth {
    pub fn new(config: &AuthConfig) -> Auth {
        let by_hash: HashMap<TokenHash, Arc<Principal>> = config
            .entries()
            .into_iter()
            .map(|entry| {
                let principal = Principal {
                    name: entry.name,
                    scopes: entry.scopes,
                    clusters: entry.clusters,
                    // Validated at start-up: every name is a source.
                    sources: entry
                        .sources
                        .iter()
                        .filter_map(|s| Source::named(s))
                        .collect(),
                    anonymous: false,
                };
                (entry.sha256, Arc::new(principal))
            })
            .collect();
        let by_name = by_hash
            .values()
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        Auth {
            by_hash,
            by_name,
            anyone: Arc::new(Principal::anyone()),
            ingest_open: !config.grants_any(&[Scope::Ingest, Scope::Forward]),
            query_open: !config.grants_any(&[Scope::Read, Scope::Operate]),
        }
    }

    /// The caller of `request` when it may use a route needing `access`: no token needed on
    /// an open API; else `Authorization: Bearer <token>`, or for ingest a `token` query
    /// parameter (Falco's `http_output` cannot send headers). Missing or unknown token: 401;
    /// a token without the scope: 403 naming the token and the scope.
    pub fn require(
        &self,
        request: &HttpRequest,
        access: Access,
    ) -> Result<Option<Arc<Principal>>, HubError> {
        let (open, scopes): (bool, &[Scope]) = match access {
            Access::Open => return Ok(None),
            Access::Ingest => (self.ingest_open, &[Scope::Ingest, Scope::Forward]),
            Access::Read => (self.query_open, &[Scope::Read]),
            Access::Operate => (self.query_open, &[Scope::Operate]),
        };
        if open {
            return Ok(Some(self.anyone.clone()));
        }
        let header_token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let query_token = match access {
            Access::Ingest => query_token(request.query_string()),
            _ => None,
        };
        let principal = match header_token.or(query_token.as_deref()) {
            Some(token) => match self.by_hash.get(&TokenHash::of(token)) {
                Some(principal) => principal,
                None => return Err(HubError::Unauthorized("invalid bearer token")),
            },
            // Without a token, a verified client certificate may name an entry (ingest only).
            None => match self.by_certificate(request, access) {
                Some(principal) => principal,
                None => return Err(HubError::Unauthorized("missing bearer token")),
            },
        };
        if scopes.iter().any(|s| principal.has(*s)) {
            Ok(Some(principal.clone()))
        } else {
            Err(HubError::Forbidden(format!(
                "token `{}` does not have the {} scope this request needs",
                principal.name,
                scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// The entry a verified client certificate of this connection names (CN or DNS SAN),
    /// for posting events.
    fn by_certificate(&self, request: &HttpRequest, access: Access) -> Option<&Arc<Principal>> {
        if access != Access::Ingest {
            return None;
        }
        let names = request.conn_data::<crate::tls::ClientNames>()?;
        names.0.iter().find_map(|name| self.by_name.get(name))
    }
}

/// The `token` parameter of a query string, percent-decoded (a malformed query has none:
/// the handler refuses it by name once the caller is known).
fn query_token(query: &str) -> Option<String> {
    if !query.contains("token=") {
        return None;
    }
    actix_web::web::Query::<Vec<(String, String)>>::from_query(query)
        .ok()?
        .into_inner()
        .into_iter()
        .find_map(|(key, value)| (key == "token").then_some(value))
}

/// The clusters each credential sent events for today, bounded by
/// `ingest.max_clusters_per_token_per_day`.
#[derive(Default)]
pub struct ClusterLedger {
    seen: std::sync::Mutex<HashMap<String, (chrono::NaiveDate, std::collections::HashSet<String>)>>,
}

impl ClusterLedger {
    /// Records that `caller` sends for `clusters` today, or refuses the whole request when
    /// that would take it past `max` distinct clusters.
    pub fn admit<'a>(
        &self,
        caller: &Principal,
        clusters: impl Iterator<Item = &'a str>,
        max: usize,
        today: chrono::NaiveDate,
    ) -> Result<(), HubError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| HubError::Internal("the cluster ledger is poisoned".into()))?;
        let (day, known) = seen.entry(caller.name.clone()).or_default();
        if *day != today {
            *day = today;
            known.clear();
        }
        let new: std::collections::HashSet<&str> =
            clusters.filter(|c| !known.contains(*c)).collect();
        if known.len() + new.len() > max {
            return Err(HubError::Forbidden(format!(
                "token `{}` sent events for {} clusters today and may for at most {max} \
                 (ingest.max_clusters_per_token_per_day); bind it with `clusters` or raise the limit",
                caller.name,
                known.len() + new.len()
            )));
        }
        known.extend(new.into_iter().map(str::to_owned));
        Ok(())
    }
}
