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
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls: {e}"))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let pem = read("client_ca_file", path)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert
                    .map_err(|e| format!("server.tls.client_ca_file: {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("server.tls.client_ca_file: {}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "server.tls.client_ca_file: {} holds no PEM certificate",
                    path.display()
                ));
            }
            // A certificate is asked for, not required: agents without one use tokens.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("server.tls.client_ca_file: {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: the certificate and key do not go together: {e}"))
}

/// The names a verified client certificate speaks for: its subject's CN and DNS SANs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientNames(pub Vec<String>);

/// Stores the names of the connection's client certificate (verified by rustls against
/// `server.tls.client_ca_file` during the handshake) for the request guard.
pub fn on_connect(connection: &dyn std::any::Any, data: &mut actix_web::dev::Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(tls) = connection.downcast_ref::<Tls>() else {
        return;
    };
    let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return;
    };
    data.insert(ClientNames(certificate_names(leaf)));
}

/// CN (UTF8String or PrintableString) and DNS SANs of a DER certificate.
fn certificate_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = common_names(cert.subject()).collect();
    names.extend(cert.valid_dns_names().map(str::to_owned));
    names
}

/// The values of `commonName` attributes (OID 2.5.4.3) in a DER `Name`.
fn common_names(subject: &[u8]) -> impl Iterator<Item = String> + '_ {
    const CN: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    subject
        .windows(CN.len())
        .enumerate()
        .filter_map(move |(at, window)| {
            if window != CN {
                return None;
            }
            let value = subject.get(at + CN.len()..)?;
            let (&tag, rest) = value.split_first()?;
            let (&len, rest) = rest.split_first()?;
            // UTF8String, PrintableString, IA5String; short lengths only (a CN is at most 64).
            if !matches!(tag, 0x0c | 0x13 | 0x16) || len >= 0x80 {
                return None;
            }
            let text = rest.get(..len as usize)?;
            std::str::from_utf8(text).ok().map(str::to_owned)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_speaks_for_its_common_name_and_dns_names() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/tls/falco-edge-a.pem"
        ))
        .unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(
            certificate_names(&der),
            ["falco-edge-a", "falco-edge-a.agents.example"]
        );
    }
}
