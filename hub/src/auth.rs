//! Bearer-token checks for the two API scopes.

use crate::config::{AuthConfig, TokenHash};
use crate::error::HubError;
use actix_web::HttpRequest;
use actix_web::http::header;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Ingest,
    Query,
}

pub struct Auth {
    ingest: HashSet<TokenHash>,
    query: HashSet<TokenHash>,
}

impl Auth {
    pub fn new(config: &AuthConfig) -> Auth {
        Auth {
            ingest: config.ingest_token_sha256.iter().copied().collect(),
            query: config.query_token_sha256.iter().copied().collect(),
        }
    }

    /// Lets the request through when its scope has no tokens or it presents one of them:
    /// `Authorization: Bearer <token>`, or for ingest a `token` query parameter (Falco's
    /// `http_output` cannot send headers). Missing or unknown token: 401; a token of the other
    /// scope: 403.
    pub fn check(
        &self,
        request: &HttpRequest,
        query_token: Option<&str>,
        scope: Scope,
    ) -> Result<(), HubError> {
        let (allowed, other) = match scope {
            Scope::Ingest => (&self.ingest, &self.query),
            Scope::Query => (&self.query, &self.ingest),
        };
        if allowed.is_empty() {
            return Ok(());
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
        let query_token = query_token.filter(|_| scope == Scope::Ingest);
        let Some(token) = header_token.or(query_token) else {
            return Err(HubError::Unauthorized("missing bearer token"));
        };
        let hash = TokenHash::of(token);
        if allowed.contains(&hash) {
            Ok(())
        } else if other.contains(&hash) {
            Err(HubError::Forbidden(
                "this token is not allowed to use this API",
            ))
        } else {
            Err(HubError::Unauthorized("invalid bearer token"))
        }
    }
}
