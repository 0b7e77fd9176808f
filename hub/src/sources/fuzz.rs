//! Fuzzing entry point shared by the cargo-fuzz targets (`fuzz/`) and the seeded,
//! structure-aware fuzz test below, which runs in the test command: any bytes, as a request
//! body of a source (or of a source to detect), must neither panic nor give an event the
//! databases would refuse.

use super::tetragon::TetragonConfig;
use super::{Context, Options, Parsed, Source, detect, is_report_part, parse};
use crate::body::{Format, split};
use chrono::{DateTime, Datelike};
use falconer_store::Event;

/// Splits `data` as JSON and as NDJSON, detects the source when none is given, and parses
/// every item; panics when a parsed event breaks an invariant of the store.
pub fn one(source: Option<Source>, data: &[u8]) {
    let tetragon = TetragonConfig::default();
    let ctx = Context {
        cluster: None,
        default_cluster: "fuzz",
        received_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
    };
    let options = Options {
        node: Some("node-a"),
        max_part_bytes: 64 * 1024,
        max_findings: 10_000,
        tetragon: &tetragon,
    };
    for format in [Format::Json, Format::Ndjson] {
        let Ok(items) = split(data, format, 1_000) else {
            continue;
        };
        let first = items.iter().find_map(|item| item.as_ref().ok());
        let source = match (source, first) {
            (Some(source), _) => source,
            (None, Some(first)) => match detect(first) {
                Ok(source) => source,
                Err(_) => continue,
            },
            (None, None) => continue,
        };
        if let Some(first) = first {
            is_report_part(source, first);
        }
        for item in items.iter().flatten() {
            match parse(source, item, &ctx, &options) {
                Ok(Parsed::Event(event)) => check(&event),
                Ok(Parsed::ScanReport(report)) => {
                    assert!(!report.scopes.is_empty(), "a report without scope");
                    for observation in &report.observations {
                        assert!(observation.scope < report.scopes.len(), "scope index");
                        check(&observation.event);
                    }
                }
                Err(reason) => assert!(!reason.is_empty(), "a rejection without reason"),
            }
        }
    }
}

/// What PostgreSQL and SQLite would refuse: NUL in text, `\u0000` in JSON, a time outside
/// years 0–9999, `fields` that are not an object.
fn check(event: &Event) {
    let mut texts = vec![
        &event.rule,
        &event.message,
        &event.cluster,
        &event.source,
        &event.severity_raw,
    ];
    texts.extend(event.tags.iter());
    texts.extend(
        [
            &event.namespace,
            &event.pod,
            &event.container,
            &event.image,
            &event.node,
        ]
        .into_iter()
        .flatten(),
    );
    for text in texts {
        assert!(!text.contains('\0'), "NUL in a normalized field: {text:?}");
    }
    assert!(
        event.fields.get().starts_with('{'),
        "fields: {}",
        event.fields.get()
    );
    assert!(
        !event.fields.get().contains("\\u0000"),
        "NUL escape in fields: {}",
        event.fields.get()
    );
    assert!(
        (0..=9999).contains(&event.time.year()),
        "time {} out of range",
        event.time
    );
    assert!(serde_json::to_string(event).is_ok());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// xorshift64*: a seeded generator, so a failure is replayed from its seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    const STRINGS: &[&str] = &[
        "",
        " ",
        "-",
        "<NA>",
        "null",
        "\u{0}",
        "a\u{0}b",
        "ünïcödé ✓ 日本語 𝕏",
        "\u{202e}rtl",
        "2026-05-04T10:11:12Z",
        "2026-05-04T10:11:12.123456789+14:00",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "CRITICAL",
        "HIGH",
        "unknown",
        "FAIL",
        "WARN",
        "PASS",
        "MatchedPolicy",
        "HostLog",
        "KPROBE_ACTION_SIGKILL",
        "pods",
        "deployments",
        "10",
        "11",
        "0",
        "container_image",
        "os-pkgs",
        "x (y)",
        " (",
        "runtime_alert",
        "critical",
    ];

    fn value(rng: &mut Rng, depth: u32) -> Value {
        match rng.below(if depth > 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.chance(50)),
            2 => json!([0i64, -1, 1, i64::MAX, i64::MIN, 99_999_999_999_999_999][rng.below(6)]),
            3 => json!([0.5f64, -1e308, 1e308, 1e-9][rng.below(4)]),
            4 => Value::String(STRINGS[rng.below(STRINGS.len())].to_string()),
            5 => Value::String("x".repeat(rng.below(3) * 600)),
            6 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
            _ => {
                let mut map = Map::new();
                for _ in 0..rng.below(4) {
                    map.insert(
                        STRINGS[rng.below(STRINGS.len())].to_string(),
                        value(rng, depth + 1),
                    );
                }
                Value::Object(map)
            }
        }
    }

    /// Changes one node somewhere in the tree: replaced, removed, or given a new key.
    fn mutate(rng: &mut Rng, node: &mut Value, known_keys: &[String]) {
        let descend = rng.chance(70);
        match node {
            Value::Object(map) if descend && !map.is_empty() => {
                let key = map
                    .keys()
                    .nth(rng.below(map.len()))
                    .cloned()
                    .unwrap_or_default();
                match rng.below(8) {
                    0 => {
                        map.remove(&key);
                    }
                    1 => {
                        let new = known_keys[rng.below(known_keys.len())].clone();
                        map.insert(new, value(rng, 1));
                    }
                    _ => {
                        if let Some(child) = map.get_mut(&key) {
                            mutate(rng, child, known_keys);
                        }
                    }
                }
            }
            Value::Array(items) if descend && !items.is_empty() => {
                let at = rng.below(items.len());
                match rng.below(6) {
                    0 => {
                        items.remove(at);
                    }
                    1 => {
                        let copy = items[at].clone();
                        for _ in 0..rng.below(20) {
                            items.push(copy.clone());
                        }
                    }
                    _ => mutate(rng, &mut items[at], known_keys),
                }
            }
            _ => *node = value(rng, 1),
        }
    }

    fn keys_of(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    out.push(key.clone());
                    keys_of(child, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| keys_of(i, out)),
            _ => {}
        }
    }

    /// Byte-level damage on top: truncation, a flipped or inserted byte, a repeated slice.
    fn damage(rng: &mut Rng, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        let at = rng.below(bytes.len());
        match rng.below(4) {
            0 => bytes.truncate(at),
            1 => bytes[at] ^= 1 << rng.below(8),
            2 => bytes.insert(
                at,
                [b'"', b'\\', b'{', b'[', 0xff, b'\n', b','][rng.below(7)],
            ),
            _ => {
                let end = (at + rng.below(64)).min(bytes.len());
                let slice = bytes[at..end].to_vec();
                bytes.splice(at..at, slice);
            }
        }
    }

    fn fixtures(dir: &str) -> Vec<Value> {
        let path = format!("{}/../tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        files
            .iter()
            .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
            .collect()
    }

    fn env_number(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Runs `iterations` mutated inputs per source from a seed; a panic names the seed, the
    /// iteration and the input, so `FALCONER_FUZZ_SEED` replays it.
    fn campaign(seed: u64, iterations: u64) -> u64 {
        let sources = [
            (Some(Source::Falco), "falco"),
            (Some(Source::KubeArmor), "kubearmor"),
            (Some(Source::Tetragon), "tetragon"),
            (Some(Source::Trivy), "trivy"),
            (Some(Source::KubeBench), "kube-bench"),
            (Some(Source::Agent), "agent"),
            (None, "trivy"),
            (None, "kubearmor"),
        ];
        let mut ran = 0;
        for (n, (source, dir)) in sources.iter().enumerate() {
            let corpus = fixtures(dir);
            let mut keys = Vec::new();
            corpus.iter().for_each(|v| keys_of(v, &mut keys));
            keys.sort();
            keys.dedup();
            let mut rng = Rng(seed ^ (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            for iteration in 0..iterations {
                let mut input = corpus[rng.below(corpus.len())].clone();
                for _ in 0..=rng.below(4) {
                    mutate(&mut rng, &mut input, &keys);
                }
                let mut bytes = serde_json::to_vec(&input).unwrap_or_default();
                if rng.chance(10) {
                    let line = bytes.clone();
                    bytes.push(b'\n');
                    bytes.extend_from_slice(&line);
                }
                if rng.chance(25) {
                    damage(&mut rng, &mut bytes);
                }
                let outcome = catch_unwind(AssertUnwindSafe(|| one(*source, &bytes)));
                if outcome.is_err() {
                    let text = String::from_utf8_lossy(&bytes);
                    panic!(
                        "input {iteration} for {source:?} ({dir}) from FALCONER_FUZZ_SEED={seed} \
                         panicked: {}",
                        &text.chars().take(4000).collect::<String>()
                    );
                }
                ran += 1;
            }
        }
        ran
    }

    #[test]
    fn no_mutated_input_panics_any_parser_or_breaks_a_store_invariant() {
        let seed = env_number("FALCONER_FUZZ_SEED", 0x5eed_f41c_0e12);
        let iterations = env_number("FALCONER_FUZZ_ITERATIONS", 1_500);
        let ran = campaign(seed, iterations);
        assert_eq!(ran, iterations * 8);
    }

    #[test]
    fn every_fixture_and_a_few_odd_bodies_pass_the_fuzz_entry() {
        for dir in [
            "falco",
            "kubearmor",
            "tetragon",
            "trivy",
            "kube-bench",
            "agent",
        ] {
            for fixture in fixtures(dir) {
                one(None, fixture.to_string().as_bytes());
            }
        }
        one(None, b"");
        one(None, b"\xff\xfe");
        one(Some(Source::Trivy), b"[[[[[[[[]]]]]]]]");
    }
}
