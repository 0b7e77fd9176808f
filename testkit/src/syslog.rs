//! A real syslog daemon for the `syslog` sink's tests: Debian's rsyslog (`scripts/test`
//! installs `rsyslog` and `rsyslog-gnutls`; the system service is never used), started in the
//! foreground on a free loopback port with its own configuration — `imudp`, `imtcp`, or
//! `imtcp` with the `gtls` stream driver (server certificate, optionally requiring a client
//! certificate of a CA) — writing every received message, as received (`%rawmsg%`), one per
//! line, to a file in its temporary directory. It can be stopped and started again on the
//! same port and file, for outage tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for the daemon to listen, or for messages to arrive.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How the daemon listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Udp,
    Tcp,
    /// TLS (`gtls`) with this certificate and key (PEM files); with `client_ca`, clients
    /// must present a certificate that CA signed (`x509/certvalid`).
    Tls {
        cert: PathBuf,
        key: PathBuf,
        client_ca: Option<PathBuf>,
    },
}

pub struct Rsyslog {
    child: Option<Child>,
    listen: Listen,
    port: u16,
    dir: tempfile::TempDir,
}

/// `$FALCONER_RSYSLOGD`, else `rsyslogd` in `/usr/sbin` or on the `PATH`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FALCONER_RSYSLOGD") {
        return path.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push("/usr/sbin".into());
    dirs.into_iter()
        .map(|dir| dir.join("rsyslogd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "rsyslog is not installed: apt-get install rsyslog rsyslog-gnutls \
                 (scripts/test does), or set FALCONER_RSYSLOGD to rsyslogd"
            )
        })
}

fn free_port(listen: &Listen) -> u16 {
    match listen {
        Listen::Udp => std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
        _ => std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    }
}

fn config(listen: &Listen, port: u16, dir: &Path) -> String {
    let dir = dir.display();
    let mut text = format!(
        "global(maxMessageSize=\"256k\" workDirectory=\"{dir}\")\n\
         template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n"
    );
    match listen {
        Listen::Udp => text.push_str(&format!(
            "module(load=\"imudp\")\n\
             input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"received\")\n"
        )),
        Listen::Tcp => text.push_str(&format!(
            "module(load=\"imtcp\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"received\")\n"
        )),
        Listen::Tls {
            cert,
            key,
            client_ca,
        } => {
            // gtls wants a CA file even when it checks no client; the server's own
            // certificate serves.
            let ca = client_ca.as_ref().unwrap_or(cert);
            let mode = match client_ca {
                Some(_) => "x509/certvalid",
                None => "anon",
            };
            text.push_str(&format!(
                "global(DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" \
                 DefaultNetstreamDriverKeyFile=\"{}\")\n\
                 module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" \
                 StreamDriver.AuthMode=\"{mode}\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"received\")\n",
                ca.display(),
                cert.display(),
                key.display()
            ));
        }
    }
    text.push_str(&format!(
        "ruleset(name=\"received\") {{\n  action(type=\"omfile\" file=\"{dir}/messages\" template=\"raw\")\n}}\n\
         *.* action(type=\"omfile\" file=\"{dir}/rsyslogd.log\")\n"
    ));
    text
}

impl Rsyslog {
    /// A daemon listening as `listen`, ready (for UDP: once a probe datagram arrived).
    pub async fn start(listen: Listen) -> Rsyslog {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port(&listen);
        let mut daemon = Rsyslog {
            child: None,
            listen,
            port,
            dir,
        };
        daemon.spawn().await;
        daemon
    }

    async fn spawn(&mut self) {
        let config_path = self.dir.path().join("rsyslog.conf");
        std::fs::write(
            &config_path,
            config(&self.listen, self.port, self.dir.path()),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("stderr.log"))
            .unwrap();
        let child = Command::new(binary())
            .arg("-n")
            .arg("-f")
            .arg(&config_path)
            .arg("-i")
            .arg(self.dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let started = Instant::now();
        let address = self.address();
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("rsyslogd exited ({status}):\n{}", self.log());
            }
            let ready = match self.listen {
                Listen::Udp => {
                    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                    let _ = socket.send_to(b"<14>1 - - probe - - - falconer-ready-probe", &address);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.raw_lines()
                        .iter()
                        .any(|l| l.contains("falconer-ready-probe"))
                }
                _ => tokio::net::TcpStream::connect(&address).await.is_ok(),
            };
            if ready {
                return;
            }
            if started.elapsed() > TIMEOUT {
                panic!("rsyslogd not listening after {TIMEOUT:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `127.0.0.1:<port>`, as the sink's `address`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the daemon (SIGTERM, as `systemctl stop` does) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child, by its pid.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let started = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Starts it again on the same port, appending to the same file.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// What it logged about itself.
    pub fn log(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("rsyslogd.log"))
    }

    fn raw_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("messages"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Every message received so far, as received, in order (readiness probes left out).
    pub fn messages(&self) -> Vec<String> {
        self.raw_lines()
            .into_iter()
            .filter(|l| !l.contains("falconer-ready-probe"))
            .collect()
    }

    /// The messages once at least `n` arrived (panics after a while with what did).
    pub async fn wait_for(&self, n: usize) -> Vec<String> {
        let started = Instant::now();
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if started.elapsed() > TIMEOUT {
                panic!(
                    "{} of {n} messages after {TIMEOUT:?}:\n{}\n{}",
                    messages.len(),
                    messages.join("\n"),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
