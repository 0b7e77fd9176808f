//! `syslog`: one message per event to a syslog server — RFC 5424 (default), RFC 3164 or
//! ArcSight CEF — over UDP (RFC 5426), TCP (RFC 6587 octet counting) or TLS (RFC 5425: the
//! same framing over rustls, the Secret's `ca.crt` trusted besides the system roots, its
//! `tls.crt` + `tls.key` as client certificate).
//!
//! The mappers are pure and golden-tested: [`severity`] (Falco's priority *is* syslog's
//! severity scale, Emergency 0 … Debug 7), [`rfc5424`], [`rfc3164`], [`cef`] with its
//! escaping, [`octet_counted`]. The message of `rfc5424` and `rfc3164` is the event's JSON
//! (`format: falconer` of `sinks::format`).
//!
//! Syslog has no acknowledgements: a TCP or TLS batch counts as delivered once every byte
//! was written on a connection that was open before the write (a connection the server
//! closed is noticed before writing and opened again). Connection errors and timeouts are
//! retried by the worker; a message longer than `maxMessageBytes` is never cut (a cut JSON
//! is no JSON): its event goes to the dead letters with the reason.

use crate::declared::Secrets;
use crate::error::DeliveryError;
use crate::sink::{ItemResult, Outcome, Sink};
use crate::sinks::format::{self, BodyFormat};
use crate::sinks::{Declared, FromConsumer};
use falconer_model::crd::{
    MAX_SYSLOG_UDP_BYTES, SyslogConfig, SyslogFacility, SyslogFormat, SyslogProtocol,
};
use falconer_model::event::Severity;
use falconer_store::Event;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Events handed to one `send`.
const BATCH: usize = 100;
/// Longest wait for the name lookup, the connection and the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a batch to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// APP-NAME / TAG unless the consumer sets `appName`.
pub const DEFAULT_APP_NAME: &str = "falconer";
/// The NILVALUE of RFC 5424 header fields.
const NIL: &str = "-";

/// Syslog's severity of an event (RFC 5424 §6.2.1): Falco's eight priorities are syslog's
/// eight severities, in the same order — Emergency 0, Alert 1, Critical 2, Error 3,
/// Warning 4, Notice 5, Informational 6, Debug 7.
pub fn severity(severity: Severity) -> u8 {
    match severity {
        Severity::Emergency => 0,
        Severity::Alert => 1,
        Severity::Critical => 2,
        Severity::Error => 3,
        Severity::Warning => 4,
        Severity::Notice => 5,
        Severity::Informational => 6,
        Severity::Debug => 7,
    }
}

/// PRI: facility × 8 + severity.
pub fn priority(facility: SyslogFacility, event: &Event) -> u8 {
    facility.code() * 8 + severity(event.severity)
}

/// A header field: printable US-ASCII without spaces (RFC 5424 PRINTUSASCII), other
/// characters as `_`, at most `max` characters; `-` when empty.
fn header_field(value: Option<&str>, max: usize) -> String {
    let field: String = value
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if field.is_empty() {
        NIL.to_string()
    } else {
        field
    }
}

/// An RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG`, with the event's
/// time (microseconds, UTC), its node as HOSTNAME (the machine it happened on; `-` when
/// unknown), its kind as MSGID and no structured data. MSG is `message` as it is (no BOM).
pub fn rfc5424(facility: SyslogFacility, app_name: &str, event: &Event, message: &[u8]) -> Vec<u8> {
    let header = format!(
        "<{}>1 {} {} {} {NIL} {} {NIL} ",
        priority(facility, event),
        event
            .time
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        header_field(event.node.as_deref(), 255),
        header_field(Some(app_name), 48),
        header_field(Some(event.kind.as_str()), 32),
    );
    let mut out = header.into_bytes();
    out.extend_from_slice(message);
    out
}

/// An RFC 3164 message: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG`, with the event's time in
/// UTC (the format has no zone), its node as HOSTNAME (`-` when unknown) and `app_name` as
/// TAG.
pub fn rfc3164(facility: SyslogFacility, app_name: &str, event: &Event, message: &[u8]) -> Vec<u8> {
    let header = format!(
        "<{}>{} {} {}: ",
        priority(facility, event),
        event.time.format("%b %e %H:%M:%S"),
        header_field(event.node.as_deref(), 255),
        header_field(Some(app_name), 32),
    );
    let mut out = header.into_bytes();
    out.extend_from_slice(message);
    out
}

/// CEF's severity, 0 (lowest) … 10 (highest), of an event.
pub fn cef_severity(severity: Severity) -> u8 {
    match severity {
        Severity::Emergency => 10,
        Severity::Alert => 9,
        Severity::Critical => 8,
        Severity::Error => 7,
        Severity::Warning => 5,
        Severity::Notice => 3,
        Severity::Informational => 1,
        Severity::Debug => 0,
    }
}

/// A CEF header field: `\` and `|` escaped with a backslash; line breaks (not allowed in
/// the header) become spaces; at most `max` characters.
pub fn cef_header(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars().take(max) {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A CEF extension value: `\` and `=` escaped with a backslash, line breaks written `\n` and
/// `\r`; `|` needs no escaping there.
pub fn cef_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// The event as an ArcSight CEF record:
/// `CEF:0|Falconer|Falconer|<version>|<rule>|<message>|<severity 0-10>|<extension>` — the
/// field mapping is the table of docs/sinks/syslog.md.
pub fn cef(event: &Event) -> String {
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(event.fields.get()).unwrap_or_default();
    let field = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(String::from);
    let tags = (!event.tags.is_empty()).then(|| event.tags.join(","));
    let extension: [(&str, Option<String>); 19] = [
        ("rt", Some(event.time.timestamp_millis().to_string())),
        ("externalId", Some(event.id.to_string())),
        ("cat", Some(event.kind.as_str().to_string())),
        ("msg", Some(event.message.clone())),
        ("dvchost", event.node.clone()),
        ("suser", field("user.name")),
        ("sproc", field("proc.name")),
        ("cs1Label", Some("cluster".into())),
        ("cs1", Some(event.cluster.clone())),
        (
            "cs2Label",
            event.namespace.as_ref().map(|_| "namespace".into()),
        ),
        ("cs2", event.namespace.clone()),
        ("cs3Label", event.pod.as_ref().map(|_| "pod".into())),
        ("cs3", event.pod.clone()),
        ("cs4Label", event.image.as_ref().map(|_| "image".into())),
        ("cs4", event.image.clone()),
        ("cs5Label", Some("source".into())),
        ("cs5", Some(event.source.clone())),
        ("cs6Label", tags.as_ref().map(|_| "tags".into())),
        ("cs6", tags),
    ];
    let parts: Vec<String> = extension
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key}={}", cef_value(v))))
        .collect();
    format!(
        "CEF:0|Falconer|Falconer|{}|{}|{}|{}|{}",
        cef_header(env!("CARGO_PKG_VERSION"), 31),
        cef_header(&event.rule, 1023),
        cef_header(&event.message, 512),
        cef_severity(event.severity),
        parts.join(" ")
    )
}

/// RFC 6587 octet counting (and RFC 5425's framing): `<length> <message>`.
pub fn octet_counted(message: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message);
    out
}

/// The whole message of `event` for `format`, before any framing.
pub fn message(
    format: SyslogFormat,
    facility: SyslogFacility,
    app: &str,
    event: &Event,
) -> Vec<u8> {
    match format {
        SyslogFormat::Rfc5424 => rfc5424(
            facility,
            app,
            event,
            &format::body(&BodyFormat::Falconer, event).bytes,
        ),
        SyslogFormat::Rfc3164 => rfc3164(
            facility,
            app,
            event,
            &format::body(&BodyFormat::Falconer, event).bytes,
        ),
        SyslogFormat::Cef => rfc3164(facility, app, event, cef(event).as_bytes()),
    }
}

/// An open connection to the server.
enum Connection {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

pub struct Syslog {
    address: String,
    protocol: SyslogProtocol,
    format: SyslogFormat,
    facility: SyslogFacility,
    app_name: String,
    max_bytes: usize,
    /// With `protocol: tls`: the client configuration and the name the server must have.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connection: Option<Connection>,
}

impl Syslog {
    /// A sink for `settings`; errors name the field (`syslog.address`, …) or the Secret key.
    pub fn build(
        consumer: &str,
        settings: &SyslogConfig,
        secrets: &Secrets,
    ) -> Result<Syslog, DeliveryError> {
        let config = |message: String| DeliveryError::Config {
            consumer: consumer.to_string(),
            message,
        };
        let host = host_of(&settings.address).ok_or_else(|| {
            config(format!(
                "syslog.address: `{}` is not host:port (e.g. rsyslog.logging.svc:514, \
                 [::1]:6514)",
                settings.address
            ))
        })?;
        let max = settings.max_message_bytes;
        let max_allowed = match settings.protocol {
            SyslogProtocol::Udp => MAX_SYSLOG_UDP_BYTES,
            _ => 1 << 20,
        };
        if !(480..=max_allowed).contains(&max) {
            return Err(config(format!(
                "syslog.maxMessageBytes: {max} is not 480 to {max_allowed} (over {}, a larger \
                 message does not fit one datagram)",
                settings.protocol.as_str()
            )));
        }
        let app_name = settings
            .app_name
            .clone()
            .unwrap_or_else(|| DEFAULT_APP_NAME.to_string());
        if app_name.is_empty()
            || app_name.len() > 32
            || !app_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(config(format!(
                "syslog.appName: `{app_name}` must be 1 to 32 letters, digits, `.`, `_` or `-`"
            )));
        }
        let tls = match settings.protocol {
            SyslogProtocol::Tls => {
                let name = ServerName::try_from(host.to_string()).map_err(|_| {
                    config(format!(
                        "syslog.address: `{host}` is not a host name a certificate can carry"
                    ))
                })?;
                let client =
                    tls_config(secrets, settings.tls.insecure_skip_verify).map_err(config)?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(client)), name))
            }
            _ => None,
        };
        Ok(Syslog {
            address: settings.address.clone(),
            protocol: settings.protocol,
            format: settings.format,
            facility: settings.facility,
            app_name,
            max_bytes: max as usize,
            tls,
            connection: None,
        })
    }

    fn message(&self, event: &Event) -> Vec<u8> {
        message(self.format, self.facility, &self.app_name, event)
    }

    /// `<protocol>://<address>`, for every error.
    fn target(&self) -> String {
        format!("{}://{}", self.protocol.as_str(), self.address)
    }

    /// The open connection, after dropping one the server closed; else a new one.
    async fn connection(&mut self) -> Result<&mut Connection, String> {
        if let Some(connection) = &mut self.connection
            && !still_open(connection).await
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            let connection = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
                .await
                .map_err(|_| {
                    format!(
                        "{}: no connection within {} s",
                        self.target(),
                        CONNECT_TIMEOUT.as_secs()
                    )
                })??;
            self.connection = Some(connection);
        }
        let target = self.target();
        self.connection
            .as_mut()
            .ok_or_else(|| format!("{target}: no connection"))
    }

    async fn connect(&self) -> Result<Connection, String> {
        let target = self.target();
        let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&self.address)
            .await
            .map_err(|e| format!("{target}: looking up the address: {e}"))?
            .collect();
        let mut last = format!("{target}: the name has no address");
        for address in addresses {
            let attempt = match self.protocol {
                SyslogProtocol::Udp => {
                    let local = if address.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    match UdpSocket::bind(local).await {
                        Ok(socket) => socket
                            .connect(address)
                            .await
                            .map(|()| Connection::Udp(socket)),
                        Err(e) => Err(e),
                    }
                }
                SyslogProtocol::Tcp | SyslogProtocol::Tls => {
                    match TcpStream::connect(address).await {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            match &self.tls {
                                None => Ok(Connection::Tcp(stream)),
                                Some((connector, name)) => {
                                    match connector.connect(name.clone(), stream).await {
                                        Ok(mut tls) => match refused_certificate(&mut tls).await {
                                            None => Ok(Connection::Tls(Box::new(tls))),
                                            Some(why) => {
                                                last = format!("{target}: TLS handshake: {why}");
                                                continue;
                                            }
                                        },
                                        Err(e) => {
                                            last = format!("{target}: TLS handshake: {e}");
                                            continue;
                                        }
                                    }
                                }
                            }
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match attempt {
                Ok(connection) => return Ok(connection),
                Err(e) => last = format!("{target}: connecting to {address}: {e}"),
            }
        }
        Err(last)
    }

    /// Writes `messages` (already checked against the size limit) on the connection.
    async fn write(&mut self, messages: &[Vec<u8>]) -> Result<(), String> {
        let target = self.target();
        let connection = self.connection().await?;
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            match connection {
                Connection::Udp(socket) => {
                    for message in messages {
                        let sent = socket.send(message).await?;
                        if sent != message.len() {
                            return Err(std::io::Error::other(format!(
                                "sent {sent} of {} bytes",
                                message.len()
                            )));
                        }
                    }
                    Ok(())
                }
                Connection::Tcp(stream) => write_framed(stream, messages).await,
                Connection::Tls(stream) => write_framed(stream.as_mut(), messages).await,
            }
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{target}: writing: {e}")),
            Err(_) => Err(format!(
                "{target}: not written within {} s",
                WRITE_TIMEOUT.as_secs()
            )),
        }
    }
}

/// How long a new TLS connection waits for the server to refuse it: in TLS 1.3 the server
/// checks the client's certificate (or its absence, when it requires one) after the client's
/// handshake is done, so a refusal arrives as an alert or a close just after. Waiting for it
/// once per connection keeps the first batch from being written into a connection the
/// server is closing (it would count as delivered and be lost).
const CERTIFICATE_VERDICT: Duration = Duration::from_millis(500);

/// Why the server refused the new connection, if it did within [`CERTIFICATE_VERDICT`] (a
/// syslog server never writes otherwise).
async fn refused_certificate(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
) -> Option<String> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(CERTIFICATE_VERDICT, stream.read(&mut byte)).await {
        Err(_) | Ok(Ok(1..)) => None,
        Ok(Ok(0)) => Some(
            "the server closed the connection (is a client certificate required, or ours refused?)"
                .into(),
        ),
        Ok(Err(e)) => Some(e.to_string()),
    }
}

/// Every message octet-counted, in one write, then flushed.
async fn write_framed<W: AsyncWrite + Unpin>(
    stream: &mut W,
    messages: &[Vec<u8>],
) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
    for message in messages {
        bytes.extend_from_slice(&octet_counted(message));
    }
    stream.write_all(&bytes).await?;
    stream.flush().await
}

/// What the socket under a stream connection holds, seen without reading it.
enum Peeked {
    /// Nothing: the connection is open and the server said nothing.
    Nothing,
    /// The server closed (or reset) the connection.
    Closed,
    /// Bytes the server sent (for TLS: records such as a session ticket, or an alert).
    Data,
}

fn peek(stream: &TcpStream) -> Peeked {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    // The socket is non-blocking (tokio's): the peek never waits.
    match socket2::SockRef::from(stream).peek(&mut byte) {
        Ok(0) => Peeked::Closed,
        Ok(_) => Peeked::Data,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Peeked::Nothing,
        Err(_) => Peeked::Closed,
    }
}

/// Whether a stream connection is still open. A syslog server never writes to its client,
/// so anything to read means the server closed or reset the connection — except TLS
/// records rustls reads without yielding data (a session ticket). The socket itself is
/// asked (a peek), not the runtime's readiness, which may not have seen the close yet.
async fn still_open(connection: &mut Connection) -> bool {
    match connection {
        Connection::Udp(_) => true,
        Connection::Tcp(stream) => matches!(peek(stream), Peeked::Nothing | Peeked::Data),
        Connection::Tls(stream) => match peek(stream.get_ref().0) {
            Peeked::Nothing => true,
            Peeked::Closed => false,
            Peeked::Data => {
                let mut byte = [0u8; 1];
                match tokio::time::timeout(Duration::from_millis(50), stream.read(&mut byte)).await
                {
                    // Only handshake records: rustls took them and waits for more.
                    Err(_) => true,
                    Ok(Ok(0)) | Ok(Err(_)) => false,
                    Ok(Ok(_)) => true,
                }
            }
        },
    }
}

/// The host of `host:port` or `[v6]:port`, when the port is a number.
fn host_of(address: &str) -> Option<&str> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (port != 0 && !host.is_empty() && !host.contains(char::is_whitespace)).then_some(host)
}

/// The rustls client configuration: the platform's roots and the Secret's `ca.crt`, the
/// Secret's `tls.crt` + `tls.key` as client certificate; errors name the key.
fn tls_config(secrets: &Secrets, insecure: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = Vec::new();
    if let Some(ca) = secrets.get("ca.crt") {
        for cert in CertificateDer::pem_slice_iter(ca.0.as_bytes()) {
            roots.push(cert.map_err(|e| format!("secret key ca.crt: {e}"))?);
        }
        if roots.is_empty() {
            return Err("secret key ca.crt holds no PEM certificate".into());
        }
    }
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if insecure {
        Arc::new(AnyCertificate(provider.clone()))
    } else {
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
                .map_err(|e| format!("secret key ca.crt: {e}"))?,
        )
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("syslog TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (secrets.get("tls.crt"), secrets.get("tls.key")) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.0.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("secret key tls.crt: {e}"))?;
            if chain.is_empty() {
                return Err("secret key tls.crt holds no PEM certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key.0.as_bytes())
                .map_err(|e| format!("secret key tls.key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("secret keys tls.crt/tls.key: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("secret needs both tls.crt and tls.key, or neither".into()),
    }
}

/// `tls.insecureSkipVerify`: any certificate is accepted (signatures are still checked, so
/// the handshake itself is sound).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl FromConsumer for Syslog {
    fn from_consumer(declared: &Declared<'_>) -> Result<Self, DeliveryError> {
        let settings = declared.section(declared.consumer.syslog.as_ref(), "syslog")?;
        Syslog::build(declared.name, settings, declared.secrets)
    }
}

impl Sink for Syslog {
    fn batch_size(&self) -> usize {
        BATCH
    }

    /// The message as the server receives it (before framing).
    fn preview(&self, event: &Event) -> serde_json::Value {
        String::from_utf8_lossy(&self.message(event))
            .into_owned()
            .into()
    }

    async fn send(&mut self, events: &[Event]) -> Outcome {
        let mut results = Vec::with_capacity(events.len());
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            let message = self.message(event);
            if message.len() > self.max_bytes {
                results.push(ItemResult::Refused(format!(
                    "the syslog message is {} bytes, more than syslog.maxMessageBytes ({}); \
                     it is not cut (a cut message would read as complete)",
                    message.len(),
                    self.max_bytes
                )));
            } else {
                results.push(ItemResult::Delivered);
                messages.push(message);
            }
        }
        if !messages.is_empty()
            && let Err(why) = self.write(&messages).await
        {
            // What was written before the error may or may not have arrived: the whole
            // batch again (at least once), on a new connection.
            self.connection = None;
            return Outcome::Retry(why);
        }
        if results.iter().all(|r| *r == ItemResult::Delivered) {
            Outcome::Delivered
        } else {
            Outcome::Each(results)
        }
    }
}

#[cfg(test)]
#[path = "syslog_tests.rs"]
mod tests;
