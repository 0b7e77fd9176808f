//! A real SMTP server for the `email` sink's tests: aiosmtpd (`testkit/smtp_server.py`) run
//! as a process on a free loopback port, with STARTTLS (or implicit TLS) on a certificate
//! signed by a CA made for the test (openssl CLI), optional AUTH, and replies scripted per
//! recipient (e.g. `550` or `451`). Every accepted message is read back as Python's MIME
//! parser sees it.
//!
//! The Python is `$FALCONER_SMTP_PYTHON`, else `target/smtp-venv/bin/python` (both set up by
//! `scripts/test`'s `ensure_aiosmtpd`).

use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// How the server protects its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// STARTTLS offered and required before `MAIL`.
    #[default]
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// Plain SMTP.
    Plain,
}

/// What the server is started with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub security: Security,
    /// Require AUTH with this username and password.
    pub auth: Option<(String, String)>,
    /// Answer `RCPT TO:<address>` with this reply, e.g. `550 5.1.1 no such user`.
    pub answers: Vec<(String, String)>,
}

/// One accepted message.
#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// Whether the session was encrypted (STARTTLS or implicit TLS).
    pub tls: bool,
    pub authenticated: bool,
    /// The top-level content type, e.g. `multipart/alternative`.
    pub content_type: String,
    /// Header name → decoded value (the last of a repeated name).
    pub headers: BTreeMap<String, String>,
    /// The decoded `text/plain` part.
    pub text: Option<String>,
    /// The decoded `text/html` part.
    pub html: Option<String>,
    /// The message as received.
    pub raw: String,
}

pub struct SmtpServer {
    pub port: u16,
    /// The PEM of the CA that signed the server's certificate (for `localhost` and
    /// `127.0.0.1`); empty for a plain server.
    pub ca_pem: String,
    dir: tempfile::TempDir,
    child: Child,
}

fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("FALCONER_SMTP_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/smtp-venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with aiosmtpd: set FALCONER_SMTP_PYTHON or run scripts/test (ensure_aiosmtpd \
         makes {})",
        venv.display()
    );
    venv
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate it signed, for `localhost` and `127.0.0.1`, in `dir`.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Falconer test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
}

impl SmtpServer {
    /// A server with STARTTLS and no AUTH.
    pub fn start() -> SmtpServer {
        SmtpServer::with(Options::default())
    }

    pub fn with(options: Options) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        std::fs::create_dir(&maildir).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp_server.py");
        let mut command = Command::new(python());
        command.arg(&script).arg("--maildir").arg(&maildir);
        let mut ca_pem = String::new();
        if options.security != Security::Plain {
            certificates(dir.path());
            ca_pem = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
            command
                .arg("--cert")
                .arg(dir.path().join("server.crt"))
                .arg("--key")
                .arg(dir.path().join("server.key"));
        }
        if options.security == Security::Implicit {
            command.arg("--implicit-tls");
        }
        if let Some((user, password)) = &options.auth {
            command.args(["--user", user, "--password", password]);
        }
        for (address, reply) in &options.answers {
            command.arg("--answer").arg(format!("{address}={reply}"));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the SMTP server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the SMTP server did not start (said {line:?})"));
        SmtpServer {
            port,
            ca_pem,
            dir,
            child,
        }
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<Mail> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// Stops the server now (its port then refuses connections).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.kill();
    }
}
