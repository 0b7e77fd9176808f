//! Every source the hub reads, one module each, and what they share: the closed set of source
//! names, detection from a payload's shape, and a reader of JSON objects that names the field
//! at fault. Parsers are pure functions from one raw item (and the request context) to events
//! or a scanner report.
//!
//! Falco's parser (`falco`) is on the profiled hot path and reads its alert shape directly;
//! Kubernetes audit alerts arriving through Falco are completed by `k8s_audit`.

pub mod agent;
pub mod falco;
pub mod falconer;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod k8s_audit;
pub mod kube_bench;
pub mod kubearmor;
pub mod tetragon;
pub mod trivy;

pub use falco::Context;

use falconer_store::{Event, ScanReport};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;

/// A source the hub parses. Its name is the `?source=` value and the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Falco,
    KubeArmor,
    Tetragon,
    Trivy,
    KubeBench,
    Agent,
    /// Events forwarded by another hub (never detected: the sender names it).
    Falconer,
}

impl Source {
    pub const ALL: &'static [Source] = &[
        Source::Falco,
        Source::KubeArmor,
        Source::Tetragon,
        Source::Trivy,
        Source::KubeBench,
        Source::Agent,
        Source::Falconer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Falco => "falco",
            Source::KubeArmor => "kubearmor",
            Source::Tetragon => "tetragon",
            Source::Trivy => "trivy",
            Source::KubeBench => "kube-bench",
            Source::Agent => "agent",
            Source::Falconer => "falconer",
        }
    }

    pub fn named(name: &str) -> Option<Source> {
        Source::ALL.iter().copied().find(|s| s.as_str() == name)
    }

    /// Scanners whose one item is a whole report, written with the findings' latest state.
    pub fn is_report(self) -> bool {
        matches!(self, Source::Trivy | Source::KubeBench)
    }

    pub fn names() -> String {
        Source::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What parsing one item gave.
pub enum Parsed {
    Event(Box<Event>),
    ScanReport(ScanReport),
}

/// What parsers need beyond the request context: limits and per-source settings.
pub struct Options<'a> {
    /// Node named by the request (`?node=`), for reports that do not name theirs (kube-bench).
    pub node: Option<&'a str>,
    /// Largest part of a report (one vulnerability, one check) in bytes.
    pub max_part_bytes: usize,
    /// Most observations one report may carry.
    pub max_findings: usize,
    pub tetragon: &'a tetragon::TetragonConfig,
}

/// Parses one item of a source.
pub fn parse(
    source: Source,
    raw: &RawValue,
    ctx: &Context<'_>,
    options: &Options<'_>,
) -> Result<Parsed, String> {
    let event = match source {
        Source::Falco => {
            let mut event = falco::parse(raw, ctx)?;
            k8s_audit::complete(&mut event);
            event
        }
        Source::KubeArmor => kubearmor::parse(raw, ctx)?,
        Source::Tetragon => tetragon::parse(raw, ctx, options.tetragon)?,
        Source::Agent => agent::parse(raw, ctx)?,
        Source::Falconer => falconer::parse(raw, ctx)?,
        Source::Trivy => return trivy::parse(raw, ctx, options).map(Parsed::ScanReport),
        Source::KubeBench => return kube_bench::parse(raw, ctx, options).map(Parsed::ScanReport),
    };
    Ok(Parsed::Event(Box::new(event)))
}

/// Top-level keys that only one source writes; an item is detected by the keys it has.
const MARKERS: &[(&str, Source)] = &[
    ("priority", Source::Falco),
    ("output", Source::Falco),
    ("output_fields", Source::Falco),
    ("hostname", Source::Falco),
    ("UpdatedTime", Source::KubeArmor),
    ("Timestamp", Source::KubeArmor),
    ("HostName", Source::KubeArmor),
    ("ClusterName", Source::KubeArmor),
    ("NamespaceName", Source::KubeArmor),
    ("PodName", Source::KubeArmor),
    ("Operation", Source::KubeArmor),
    ("PolicyName", Source::KubeArmor),
    ("HostPID", Source::KubeArmor),
    ("process_exec", Source::Tetragon),
    ("process_exit", Source::Tetragon),
    ("process_kprobe", Source::Tetragon),
    ("process_tracepoint", Source::Tetragon),
    ("process_uprobe", Source::Tetragon),
    ("process_lsm", Source::Tetragon),
    ("process_usdt", Source::Tetragon),
    ("process_loader", Source::Tetragon),
    ("process_throttle", Source::Tetragon),
    ("rate_limit_info", Source::Tetragon),
    ("node_name", Source::Tetragon),
    ("SchemaVersion", Source::Trivy),
    ("ArtifactName", Source::Trivy),
    ("Results", Source::Trivy),
    // A result of Trivy's older bare-array report.
    ("Target", Source::Trivy),
    ("Vulnerabilities", Source::Trivy),
    ("Misconfigurations", Source::Trivy),
    ("Controls", Source::KubeBench),
    ("Totals", Source::KubeBench),
    // A control of kube-bench's bare-array (`--nototals`) report.
    ("node_type", Source::KubeBench),
    ("tests", Source::KubeBench),
    ("total_fail", Source::KubeBench),
    ("kind", Source::Agent),
    ("severity", Source::Agent),
];

/// The source of an item, from its top-level keys (for an array, its first element's).
/// Ambiguous or unknown shapes are refused naming the candidates.
pub fn detect(raw: &RawValue) -> Result<Source, String> {
    let text = raw.get();
    let object = if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match items.first() {
            Some(first) => first.get(),
            None => return Err("an empty array has no shape to detect a source from".into()),
        }
    } else {
        text
    };
    if !object.starts_with('{') {
        return Err(format!("expected a JSON object, got {}", type_name(object)));
    }
    let keys = top_level_keys(object).map_err(|e| e.to_string())?;
    let has = |key: &str| keys.iter().any(|k| k == key);
    let mut found: Vec<(Source, &str)> = Vec::new();
    for (marker, source) in MARKERS {
        if has(marker) && !found.iter().any(|(s, _)| s == source) {
            found.push((*source, marker));
        }
    }
    // Falco's keys in another case (`Priority`, `OutputFields`: Go senders such as
    // falco-talon's examples). Not `hostname`: KubeArmor writes `HostName`.
    if !found.iter().any(|(s, _)| *s == Source::Falco)
        && let Some(key) = keys.iter().find(|k| {
            matches!(
                falco::falco_key(k),
                Some("priority" | "output" | "output_fields")
            )
        })
    {
        found.push((Source::Falco, key.as_ref()));
    }
    if has("auditID") {
        return Err(
            "this looks like a raw Kubernetes audit event; send audit events through \
                    Falco's k8saudit plugin, whose alerts the hub reads"
                .into(),
        );
    }
    match found.as_slice() {
        [(source, _)] => Ok(*source),
        [] => Err(format!(
            "cannot tell the source from the payload's keys; name it with ?source= or \
             X-Falconer-Source (one of {})",
            Source::names()
        )),
        several => Err(format!(
            "the payload's keys fit several sources ({}); name one with ?source= or \
             X-Falconer-Source",
            several
                .iter()
                .map(|(s, key)| format!("{} by `{key}`", s.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Whether `raw` is one part of a report sent as a bare array (an old Trivy result or a
/// kube-bench control) rather than a whole report: such an array body is one report.
pub fn is_report_part(source: Source, raw: &RawValue) -> bool {
    let Ok(keys) = top_level_keys(raw.get()) else {
        return false;
    };
    let has = |key: &str| keys.iter().any(|k| k == key);
    match source {
        Source::Trivy => !has("Results") && !has("SchemaVersion"),
        Source::KubeBench => !has("Controls"),
        _ => false,
    }
}

/// The keys of a JSON object, borrowed from the text where they need no unescaping; values
/// are skipped unread. Detection runs on unnamed requests of the Falco hot path, so it
/// allocates no map.
fn top_level_keys(text: &str) -> serde_json::Result<Vec<Cow<'_, str>>> {
    use serde::Deserializer as _;
    use serde::de::{IgnoredAny, MapAccess, Visitor};

    struct Key<'a>(Cow<'a, str>);
    impl<'de> serde::Deserialize<'de> for Key<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Text;
            impl<'de> Visitor<'de> for Text {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_owned())))
                }
            }
            d.deserialize_str(Text)
        }
    }
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some(Key(key)) = map.next_key()? {
                map.next_value::<IgnoredAny>()?;
                keys.push(key);
            }
            Ok(keys)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let keys = deserializer.deserialize_map(Keys)?;
    deserializer.end()?;
    Ok(keys)
}

pub(crate) fn type_name(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A JSON object read field by field, borrowing from the body. Every error names the field
/// by its path from the item's root, e.g. `Results[2].Vulnerabilities[7].Severity`.
pub(crate) struct Obj<'a> {
    fields: HashMap<String, &'a RawValue>,
    path: String,
}

impl<'a> Obj<'a> {
    /// Reads `raw` as an object; `path` names it in errors ("" for the item itself).
    pub fn read(raw: &'a RawValue, path: &str) -> Result<Obj<'a>, String> {
        let text = raw.get();
        if !text.starts_with('{') {
            return Err(match path {
                "" => format!("expected a JSON object, got {}", type_name(text)),
                _ => format!(
                    "field `{path}`: expected an object, got {}",
                    type_name(text)
                ),
            });
        }
        let fields = serde_json::from_str(text).map_err(|e| match path {
            "" => format!("not a JSON object: {e}"),
            _ => format!("field `{path}`: {e}"),
        })?;
        Ok(Obj {
            fields,
            path: path.to_owned(),
        })
    }

    pub fn path_of(&self, key: &str) -> String {
        match self.path.as_str() {
            "" => key.to_owned(),
            path => format!("{path}.{key}"),
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The raw value, `None` when missing or null.
    pub fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.fields
            .get(key)
            .copied()
            .filter(|raw| raw.get() != "null")
    }

    fn wrong(&self, key: &str, expected: &str, raw: &RawValue) -> String {
        format!(
            "field `{}`: expected {expected}, got {}",
            self.path_of(key),
            type_name(raw.get())
        )
    }

    /// A string, `None` when missing, null or empty.
    pub fn str(&self, key: &str) -> Result<Option<Cow<'a, str>>, String> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        if !raw.get().starts_with('"') {
            return Err(self.wrong(key, "a string", raw));
        }
        let text: Cow<'a, str> = serde_json::from_str(raw.get())
            .map_err(|e| format!("field `{}`: {e}", self.path_of(key)))?;
        Ok(Some(text).filter(|t| !t.trim().is_empty()))
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self.str(key)?.map(Cow::into_owned))
    }

    /// A string that must be there and not blank.
    pub fn required(&self, key: &str) -> Result<Cow<'a, str>, String> {
        match self.str(key)? {
            Some(text) => Ok(text),
            None if self.fields.contains_key(key) => {
                Err(format!("field `{}` is empty", self.path_of(key)))
            }
            None => Err(format!("field `{}` is missing", self.path_of(key))),
        }
    }

    /// A string or a number, as text (some tools write numbers as strings and some not).
    pub fn text(&self, key: &str) -> Result<Option<String>, String> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        match raw.get().as_bytes()[0] {
            b'"' => self.string(key),
            b'-' | b'0'..=b'9' => Ok(Some(raw.get().to_owned())),
            _ => Err(self.wrong(key, "a string or a number", raw)),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        serde_json::from_str(raw.get()).map_err(|_| self.wrong(key, "a boolean", raw))
    }

    pub fn i64(&self, key: &str) -> Result<Option<i64>, String> {
        let Some(raw) = self.raw(key) else {
            return Ok(None);
        };
        serde_json::from_str(raw.get()).map_err(|_| self.wrong(key, "a whole number", raw))
    }

    pub fn obj(&self, key: &str) -> Result<Option<Obj<'a>>, String> {
        self.raw(key)
            .map(|raw| Obj::read(raw, &self.path_of(key)))
            .transpose()
    }

    /// An array's elements (empty when missing or null).
    pub fn array(&self, key: &str) -> Result<Vec<&'a RawValue>, String> {
        let Some(raw) = self.raw(key) else {
            return Ok(Vec::new());
        };
        if !raw.get().starts_with('[') {
            return Err(self.wrong(key, "an array", raw));
        }
        serde_json::from_str(raw.get()).map_err(|e| format!("field `{}`: {e}", self.path_of(key)))
    }

    /// An array of strings (empty when missing or null).
    pub fn strings(&self, key: &str) -> Result<Vec<String>, String> {
        let items = self.array(key)?;
        items
            .iter()
            .map(|raw| {
                serde_json::from_str::<String>(raw.get()).map_err(|_| {
                    format!(
                        "field `{}`: expected an array of strings",
                        self.path_of(key)
                    )
                })
            })
            .collect()
    }

    /// Any JSON value, for `fields`.
    pub fn value(&self, key: &str) -> Option<Value> {
        self.raw(key)
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
    }
}

/// Kubernetes names and the like: at most 253 bytes and no control characters, so a hostile
/// payload cannot fill an index with a huge key.
pub(crate) fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.len() > 253 {
        return Err(format!(
            "field `{field}` is {} bytes long; at most 253 are allowed",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("field `{field}` contains control characters"));
    }
    Ok(())
}

/// Longer identifiers (image references, artifact names, rule names): at most 1024 bytes,
/// no control characters.
pub(crate) fn check_long_name(field: &str, value: &str) -> Result<(), String> {
    if value.len() > 1024 {
        return Err(format!(
            "field `{field}` is {} bytes long; at most 1024 are allowed",
            value.len()
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("field `{field}` contains control characters"));
    }
    Ok(())
}

/// The cluster of an event: the request's, else the payload's (checked), else the hub's.
pub(crate) fn cluster(
    ctx: &Context<'_>,
    payload: Option<&str>,
    field: &str,
) -> Result<String, String> {
    match (ctx.cluster, payload) {
        (Some(cluster), _) => Ok(cluster.to_owned()),
        (None, Some(cluster)) => {
            falconer_model::names::check_cluster_name(cluster)
                .map_err(|e| format!("field `{field}`: {e}"))?;
            Ok(cluster.to_owned())
        }
        (None, None) => Ok(ctx.default_cluster.to_owned()),
    }
}

/// Finishes a parsed event: a time the databases cannot keep is refused, and NUL characters, which neither database stores in text, become
/// U+FFFD in the normalized copies (the raw payload keeps them escaped).
pub(crate) fn finish(mut event: Event, raw_text: &str) -> Result<Event, String> {
    use chrono::Datelike;
    // PostgreSQL keeps no time before 4713 BC; RFC 3339 itself has four-digit years.
    if !(0..=9999).contains(&event.time.year()) {
        return Err(format!("time {} is outside the years 0–9999", event.time));
    }
    // ScanReport parts carry envelope values (target, OS, …) in `fields` as well.
    if raw_text.contains("\\u0000") || event.fields.get().contains("\\u0000") {
        falco::scrub_event(&mut event)?;
    }
    Ok(event)
}

/// `*` matches any run of characters; everything else matches itself (case-insensitive).
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let text = text.to_ascii_lowercase();
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A JSON object as a boxed raw value, for `fields`.
pub(crate) fn to_fields(value: &Value) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn each_source_is_detected_from_its_own_keys() {
        let cases = [
            (
                r#"{"time":"t","rule":"r","priority":"Notice","output_fields":{}}"#,
                Source::Falco,
            ),
            (
                r#"{"Time":"t","Rule":"r","Priority":"Notice","OutputFields":{}}"#,
                Source::Falco,
            ),
            (r#"{"Output":"o","Rule":"r"}"#, Source::Falco),
            (
                r#"{"Timestamp":1,"HostName":"n","Type":"HostLog"}"#,
                Source::KubeArmor,
            ),
            (
                r#"{"process_exec":{},"node_name":"n","time":"t"}"#,
                Source::Tetragon,
            ),
            (r#"{"SchemaVersion":2,"Results":[]}"#, Source::Trivy),
            (r#"[{"Target":"x","Vulnerabilities":[]}]"#, Source::Trivy),
            (r#"{"Controls":[],"Totals":{}}"#, Source::KubeBench),
            (
                r#"[{"id":"1","node_type":"master","tests":[]}]"#,
                Source::KubeBench,
            ),
            (
                r#"{"source":"scanner","kind":"other","severity":"notice","rule":"r","time":"t"}"#,
                Source::Agent,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(detect(&raw(text)), Ok(expected), "{text}");
        }
    }

    #[test]
    fn escaped_keys_are_read_as_their_text() {
        let text = raw(r#"{"pri\u006frity":"Notice","x":{"priority":1}}"#);
        assert_eq!(detect(&text), Ok(Source::Falco));
        let nested_only = raw(r#"{"x":{"priority":1}}"#);
        assert!(detect(&nested_only).is_err(), "only top-level keys count");
    }

    #[test]
    fn ambiguous_and_unknown_shapes_are_refused_naming_the_candidates() {
        let ambiguous = detect(&raw(r#"{"priority":"x","severity":"y"}"#)).unwrap_err();
        assert!(ambiguous.contains("falco by `priority`"), "{ambiguous}");
        assert!(ambiguous.contains("agent by `severity`"), "{ambiguous}");
        let unknown = detect(&raw(r#"{"hello":"world"}"#)).unwrap_err();
        assert!(unknown.contains("kube-bench"), "{unknown}");
        assert!(detect(&raw("[]")).is_err());
        assert!(detect(&raw("42")).unwrap_err().contains("a number"));
        let audit = detect(&raw(r#"{"kind":"Event","auditID":"x"}"#)).unwrap_err();
        assert!(audit.contains("k8saudit"), "{audit}");
    }

    #[test]
    fn source_names_round_trip() {
        for source in Source::ALL {
            assert_eq!(Source::named(source.as_str()), Some(*source));
        }
        assert_eq!(Source::named("splunk"), None);
    }

    #[test]
    fn globs_match_stars_anywhere_and_ignore_case() {
        assert!(glob("*", ""));
        assert!(glob("sensitive-*", "Sensitive-Files"));
        assert!(glob("*escalation*", "observability.privilege_escalation"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("ab*ab", "ab"[..].repeat(2).as_str()));
        assert!(!glob("ab*ab", "ab"));
    }

    #[test]
    fn object_reader_names_the_path_of_a_bad_field() {
        let text = raw(r#"{"a":{"b":[1]},"s":7,"e":"  ","n":null}"#);
        let obj = Obj::read(&text, "").unwrap();
        assert_eq!(
            obj.str("s").unwrap_err(),
            "field `s`: expected a string, got a number"
        );
        assert_eq!(obj.required("e").unwrap_err(), "field `e` is empty");
        assert_eq!(obj.required("x").unwrap_err(), "field `x` is missing");
        assert_eq!(obj.str("n").unwrap(), None);
        let inner = obj.obj("a").unwrap().unwrap();
        assert_eq!(
            inner.strings("b").unwrap_err(),
            "field `a.b`: expected an array of strings"
        );
        assert_eq!(
            inner.obj("b").err().unwrap(),
            "field `a.b`: expected an object, got an array"
        );
    }
}
