//! HTTPS on the hub's listener (`server.tls`): the rustls server configuration built from
//! the PEM certificate chain and key, with the tree's one crypto provider (aws-lc-rs).

use crate::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Reads the files and builds the server configuration; the error names the key and file.
pub fn server_config(tls: &TlsConfig) -> Result<rustls::ServerConfig, String> {
    let read = |key: &str, path: &Path| {
        std::fs::read(path)
            .map_err(|e| format!("server.tls.{key}: reading {}: {e}", path.display()))
    };
    let pem = read("cert_file", &tls.cert_file)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server.tls.cert_file: {}: {e}", tls.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert_file: {} holds no PEM certificate",
            tls.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("key_file", &tls.key_file)?)
        .map_err(|e| format!("server.tls.key_file: {}: {e}", tls.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // actix announces http/1.1 through ALPN itself.
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: the certificate and key do not go together: {e}"))
}
