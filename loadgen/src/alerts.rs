//! Realistic Falco alerts, deterministic in (seed, index): varied rules, priorities,
//! namespaces, pods and fields, 0.5–2 KB each, all distinct (no two share a dedup key).

/// (rule, priority, tags, what the output says)
const RULES: &[(&str, &str, &str, &str)] = &[
    (
        "Terminal shell in container",
        "Notice",
        r#"["container","shell","mitre_execution","T1059"]"#,
        "A shell was spawned in a container with an attached terminal",
    ),
    (
        "Read sensitive file untrusted",
        "Warning",
        r#"["filesystem","mitre_credential_access","T1555"]"#,
        "Sensitive file opened for reading by non-trusted program",
    ),
    (
        "Drop and execute new binary in container",
        "Critical",
        r#"["container","process","mitre_persistence","TA0003"]"#,
        "Executing binary not part of base image",
    ),
    (
        "Contact K8S API Server From Container",
        "Notice",
        r#"["container","network","k8s","mitre_discovery","T1565"]"#,
        "Unexpected connection to K8s API Server from container",
    ),
    (
        "Netcat Remote Code Execution in Container",
        "Warning",
        r#"["container","network","process","mitre_execution","T1059"]"#,
        "Netcat runs inside container that allows remote code execution",
    ),
    (
        "Search Private Keys or Passwords",
        "Warning",
        r#"["host","container","process","filesystem","mitre_credential_access","T1552.001"]"#,
        "Grep private keys or passwords activities found",
    ),
    (
        "Clear Log Activities",
        "Warning",
        r#"["host","container","filesystem","mitre_defense_evasion","T1070"]"#,
        "Log files were tampered",
    ),
    (
        "Redirect STDOUT/STDIN to Network Connection in Container",
        "Notice",
        r#"["container","network","process","mitre_execution","T1059"]"#,
        "Redirect stdout/stdin to network connection",
    ),
    (
        "PTRACE attached to process",
        "Warning",
        r#"["host","container","process","mitre_privilege_escalation","TA0004"]"#,
        "Detected ptrace PTRACE_ATTACH attempt",
    ),
    (
        "Fileless execution via memfd_create",
        "Critical",
        r#"["host","container","process","mitre_defense_evasion","T1620"]"#,
        "Fileless execution via memfd_create",
    ),
    (
        "Packet socket created in container",
        "Notice",
        r#"["container","network","mitre_credential_access","T1557.002"]"#,
        "Packet socket was created in a container",
    ),
    (
        "Outbound Connection to C2 Servers",
        "Error",
        r#"["host","container","network","mitre_command_and_control","TA0011"]"#,
        "Outbound connection to C2 server",
    ),
    (
        "Modify Shell Configuration File",
        "Informational",
        r#"["host","container","filesystem","mitre_persistence","T1546.004"]"#,
        "A shell configuration file has been modified",
    ),
    (
        "Debugfs Launched in Privileged Container",
        "Critical",
        r#"["container","cis","process","mitre_privilege_escalation","T1611"]"#,
        "Debugfs launched started in a privileged container",
    ),
];

const NAMESPACES: &[&str] = &[
    "shop",
    "payments",
    "checkout",
    "search",
    "auth",
    "kube-system",
    "monitoring",
    "ingress",
    "data",
    "ml",
    "batch",
    "default",
    "staging",
    "ci",
    "logging",
    "mesh",
    "cache",
    "api",
    "frontend",
    "backoffice",
];

const PROCESSES: &[(&str, &str)] = &[
    ("bash", "runc"),
    ("sh", "containerd-shim"),
    ("cat", "bash"),
    ("nc", "sh"),
    ("curl", "python3"),
    ("grep", "bash"),
    ("python3", "node"),
    ("gdb", "bash"),
];

/// SplitMix64: a tiny, good-enough generator; no dependency for what ten lines do.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub struct Alerts {
    seed: u64,
    /// Unix seconds of the first alert; alert n is n microseconds later.
    start: u64,
}

impl Alerts {
    pub fn new(seed: u64) -> Alerts {
        // Dates in 2025, spread by seed so runs with different seeds never collide, and
        // always in the past: the hub refuses events dated ahead of its clock, so a seed
        // landing after today would have every request of a run answered 400.
        Alerts {
            seed,
            start: 1_735_689_600 + (mix(seed) % 31_000_000),
        }
    }

    /// RFC 3339 time of alert `n`.
    pub fn time(&self, n: u64) -> String {
        let micros = self.start * 1_000_000 + n;
        let secs = micros / 1_000_000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days as i64);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}000Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            micros % 1_000_000
        )
    }

    /// Alert `n` as compact JSON.
    pub fn alert(&self, n: u64) -> String {
        let r = mix(self.seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
        // Mostly Notice and Warning, as in Falco's default rules.
        let rule = &RULES[(r % RULES.len() as u64) as usize];
        let ns = NAMESPACES[((r >> 8) % NAMESPACES.len() as u64) as usize];
        let pod_n = (r >> 16) % 10;
        let pod = format!(
            "{ns}-{}-{:05x}",
            ["api", "web", "worker", "db"][((r >> 20) % 4) as usize],
            (r >> 24) % 0xfffff
        );
        let pod = if pod_n < 2 { format!("{ns}-0") } else { pod };
        let (proc_name, parent) = PROCESSES[((r >> 32) % PROCESSES.len() as u64) as usize];
        let node = format!("node-{:02}", (r >> 40) % 24);
        // Pad the command line so alerts span 0.5–2 KB.
        let pad_len = ((r >> 44) % 440) as usize;
        let pad: String = (0..pad_len)
            .map(|i| (b'a' + ((i as u64 + r) % 26) as u8) as char)
            .collect();
        let cmdline = format!("{proc_name} -c run-{n} {pad}");
        let time = self.time(n);
        let container = format!("{:012x}", r & 0xffff_ffff_ffff);
        let image = format!(
            "registry.example/{ns}/{}",
            ["api", "web", "worker", "db"][((r >> 20) % 4) as usize]
        );
        let tag = format!("1.{}.{}", (r >> 50) % 10, (r >> 54) % 20);
        let (rule, priority, tags, says) = *rule;
        format!(
            concat!(
                r#"{{"hostname":"{node}","output":"{time}: {priority} {says} (user=root user_uid=0 process={proc_name} proc_exepath=/usr/bin/{proc_name} parent={parent} command={cmdline} terminal=34816 container_id={container} container_name={pod} container_image_repository={image} container_image_tag={tag} k8s_pod_name={pod} k8s_ns_name={ns})","#,
                r#""priority":"{priority}","rule":"{rule}","source":"syscall","tags":{tags},"time":"{time}","#,
                r#""output_fields":{{"container.id":"{container}","container.image.repository":"{image}","container.image.tag":"{tag}","container.name":"{pod}","evt.time.iso8601":"{time}","evt.type":"execve","k8s.ns.name":"{ns}","k8s.pod.name":"{pod}","proc.cmdline":"{cmdline}","proc.exepath":"/usr/bin/{proc_name}","proc.name":"{proc_name}","proc.pname":"{parent}","proc.tty":34816,"user.loginuid":-1,"user.name":"root","user.uid":0}}}}"#
            ),
            node = node,
            time = time,
            priority = priority,
            says = says,
            proc_name = proc_name,
            parent = parent,
            cmdline = cmdline,
            container = container,
            pod = pod,
            image = image,
            tag = tag,
            ns = ns,
            rule = rule,
            tags = tags,
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's method).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_valid_json_of_half_to_two_kilobytes_and_distinct() {
        let alerts = Alerts::new(7);
        let mut seen = std::collections::HashSet::new();
        for n in 0..2_000 {
            let text = alerts.alert(n);
            assert!((500..=2_048).contains(&text.len()), "{} bytes", text.len());
            let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            assert!(value["rule"].is_string() && value["priority"].is_string());
            assert!(seen.insert(value["output"].as_str().unwrap().to_string()));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_alerts() {
        assert_eq!(Alerts::new(1).alert(42), Alerts::new(1).alert(42));
        assert_ne!(Alerts::new(1).alert(42), Alerts::new(2).alert(42));
    }

    #[test]
    fn dates_are_converted_correctly() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_577), (2026, 5, 4));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
