//! Trivy JSON reports (`trivy image -f json`: SchemaVersion 2, and the older bare array of
//! results), one report per item. Pure functions: no I/O.
//!
//! A report becomes one observation event per vulnerability, misconfiguration and secret,
//! and the findings' latest state for its artifact: what the newest report of an artifact
//! no longer shows becomes `fixed`.

use super::{Context, Obj, Options, check_long_name, finish};
use chrono::{DateTime, SubsecRound, Utc};
use falconer_store::{Event, Kind, Observation, ScanReport, Severity, dedup_key};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Trivy's severities on our scale.
pub const SEVERITY: [(&str, Severity); 5] = [
    ("CRITICAL", Severity::Critical),
    ("HIGH", Severity::Error),
    ("MEDIUM", Severity::Warning),
    ("LOW", Severity::Notice),
    ("UNKNOWN", Severity::Informational),
];

/// A Trivy severity (any case); a missing one is `UNKNOWN`.
pub fn severity(text: Option<&str>) -> Option<Severity> {
    let text = text.unwrap_or("UNKNOWN");
    SEVERITY
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, s)| *s)
}

/// What every observation of one report shares.
struct Envelope<'a> {
    ctx: &'a Context<'a>,
    cluster: String,
    artifact: String,
    artifact_type: Option<String>,
    image: Option<String>,
    os: Option<String>,
    time: DateTime<Utc>,
    /// Distinguishes this scan's observations from another scan's: `CreatedAt`, else a
    /// digest of the whole report (so a re-posted report is recognised as a duplicate).
    stamp: Vec<u8>,
}

pub fn parse(
    raw: &RawValue,
    ctx: &Context<'_>,
    options: &Options<'_>,
) -> Result<ScanReport, String> {
    let text = raw.get();
    let legacy = text.starts_with('[');
    let (results, artifact, artifact_type, created, os) = if legacy {
        let results: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON array: {e}"))?;
        let artifact = results
            .iter()
            .enumerate()
            .find_map(|(i, raw)| {
                let result = Obj::read(raw, &format!("[{i}]")).ok()?;
                let target = result.string("Target").ok()??;
                os_target(&target).map(str::to_owned)
            })
            .ok_or(
                "a bare-array Trivy report names no artifact, and none of its results has an \
                 OS target such as `alpine:3.19 (alpine 3.19.1)` to take it from; send \
                 SchemaVersion 2 (`trivy -f json` since 0.20)",
            )?;
        (
            results,
            artifact,
            Some("container_image".to_owned()),
            None,
            None,
        )
    } else {
        let report = Obj::read(raw, "")?;
        match report.i64("SchemaVersion")? {
            None | Some(2) => {}
            Some(other) => {
                return Err(format!(
                    "field `SchemaVersion`: {other} is not supported; expected 2"
                ));
            }
        }
        let artifact = report.required("ArtifactName")?.into_owned();
        let os = match report.obj("Metadata")? {
            Some(metadata) => match metadata.obj("OS")? {
                Some(os) => match (os.string("Family")?, os.string("Name")?) {
                    (Some(family), Some(name)) => Some(format!("{family} {name}")),
                    (family, name) => family.or(name),
                },
                None => None,
            },
            None => None,
        };
        (
            report.array("Results")?,
            artifact,
            report.string("ArtifactType")?,
            report.string("CreatedAt")?,
            os,
        )
    };
    check_long_name("ArtifactName", &artifact)?;
    let time = match &created {
        Some(created) => DateTime::parse_from_rfc3339(created)
            .map_err(|_| format!("field `CreatedAt`: `{created}` is not an RFC 3339 timestamp"))?
            .with_timezone(&Utc)
            .trunc_subsecs(6),
        None => ctx.received_at,
    };
    let stamp = match &created {
        Some(created) => created.as_bytes().to_vec(),
        None => dedup_key("trivy-report", &[text.as_bytes()])
            .as_bytes()
            .to_vec(),
    };
    let envelope = Envelope {
        ctx,
        cluster: ctx.cluster.unwrap_or(ctx.default_cluster).to_owned(),
        image: match artifact_type.as_deref() {
            None | Some("container_image") => Some(artifact.clone()),
            Some(_) => None,
        },
        artifact,
        artifact_type,
        os,
        time,
        stamp,
    };

    let prefix = if legacy { "" } else { "Results" };
    let mut parts = Vec::with_capacity(results.len());
    let mut count = 0;
    for (i, raw) in results.iter().enumerate() {
        let result = Obj::read(raw, &format!("{prefix}[{i}]"))?;
        let lists = [
            ("Vulnerabilities", Kind::Vulnerability),
            ("Misconfigurations", Kind::Misconfiguration),
            ("Secrets", Kind::Secret),
        ]
        .map(|(key, kind)| result.array(key).map(|items| (key, kind, items)));
        let mut lists = lists.into_iter().collect::<Result<Vec<_>, _>>()?;
        count += lists.iter().map(|(_, _, items)| items.len()).sum::<usize>();
        if count > options.max_findings {
            return Err(format!(
                "the report has more than {} results (ingest.max_report_findings); \
                 split it, e.g. one report per image",
                options.max_findings
            ));
        }
        parts.push((result, std::mem::take(&mut lists)));
    }

    let mut observations = Vec::with_capacity(count);
    for (result, lists) in &parts {
        let target = result.string("Target")?.unwrap_or_default();
        let class = result.string("Class")?;
        let is_os = class.as_deref() == Some("os-pkgs")
            || (class.is_none() && os_target(&target).is_some());
        let class = class.unwrap_or_else(|| {
            if is_os {
                "os-pkgs".into()
            } else {
                String::new()
            }
        });
        let ecosystem = result.string("Type")?;
        let result_ctx = ResultCtx {
            target: &target,
            class: &class,
            ecosystem: ecosystem.as_deref(),
            is_os,
        };
        for (key, kind, items) in lists {
            for (j, raw) in items.iter().enumerate() {
                let path = result.path_of(&format!("{key}[{j}]"));
                if raw.get().len() > options.max_part_bytes {
                    return Err(format!(
                        "field `{path}` is {} bytes; the limit is {} (ingest.max_event_bytes)",
                        raw.get().len(),
                        options.max_part_bytes
                    ));
                }
                let item = Obj::read(raw, &path)?;
                let observation = match kind {
                    Kind::Vulnerability => vulnerability(&envelope, &result_ctx, &item, raw)?,
                    Kind::Misconfiguration => misconfiguration(&envelope, &result_ctx, &item, raw)?,
                    _ => secret(&envelope, &result_ctx, &item, raw)?,
                };
                observations.push(observation);
            }
        }
    }
    Ok(ScanReport {
        source: "trivy".into(),
        cluster: envelope.cluster,
        scopes: vec![envelope.artifact],
        time,
        observations,
    })
}

/// `registry/app:1.2 (alpine 3.19.1)` → `registry/app:1.2`: how the OS result of an image
/// names it.
fn os_target(target: &str) -> Option<&str> {
    let (artifact, rest) = target.rsplit_once(" (")?;
    (rest.ends_with(')') && !artifact.is_empty()).then_some(artifact)
}

struct ResultCtx<'a> {
    target: &'a str,
    class: &'a str,
    ecosystem: Option<&'a str>,
    is_os: bool,
}

fn vulnerability(
    envelope: &Envelope<'_>,
    result: &ResultCtx<'_>,
    item: &Obj<'_>,
    raw: &RawValue,
) -> Result<Observation, String> {
    let id = item.required("VulnerabilityID")?;
    check_long_name(&item.path_of("VulnerabilityID"), &id)?;
    let package = item.required("PkgName")?;
    let pkg_path = item.string("PkgPath")?;
    let installed = item.string("InstalledVersion")?;
    let fixed_version = item.string("FixedVersion")?;
    // An OS package is the same finding whatever the OS release in the target's text; a
    // language package is one per lock file.
    let target_key = if result.is_os { "" } else { result.target };
    let key = finding_key(
        envelope,
        &[
            "vulnerability",
            result.class,
            target_key,
            &id,
            &package,
            pkg_path.as_deref().unwrap_or(""),
        ],
    );
    let message = match item.string("Title")? {
        Some(title) => title,
        None => format!("{id} in {package} {}", installed.as_deref().unwrap_or(""))
            .trim_end()
            .to_owned(),
    };
    let mut tags = vec![result.class.to_owned()];
    if fixed_version.is_some() {
        tags.push("fixable".into());
    }
    let mut fields = envelope_fields(envelope, result);
    for (name, value) in [
        ("vulnerability_id", Some(id.to_string())),
        ("package", Some(package.to_string())),
        ("package_path", pkg_path),
        ("installed_version", installed),
        ("fixed_version", fixed_version),
        ("status", item.string("Status")?),
        ("primary_url", item.string("PrimaryURL")?),
        ("severity_source", item.string("SeveritySource")?),
    ] {
        if let Some(value) = value {
            fields.insert(name.into(), value.into());
        }
    }
    if let Some(cvss) = item.value("CVSS") {
        fields.insert("cvss".into(), cvss);
    }
    let severity_text = item.string("Severity")?;
    observation(
        envelope,
        Kind::Vulnerability,
        key,
        true,
        severity_text,
        item,
        id.into_owned(),
        message,
        tags,
        fields,
        raw,
    )
}

fn misconfiguration(
    envelope: &Envelope<'_>,
    result: &ResultCtx<'_>,
    item: &Obj<'_>,
    raw: &RawValue,
) -> Result<Observation, String> {
    let id = match item.string("AVDID")? {
        Some(id) => id,
        None => item.required("ID")?.into_owned(),
    };
    check_long_name(&item.path_of("ID"), &id)?;
    let cause = item.obj("CauseMetadata")?;
    let (resource, line) = match &cause {
        Some(cause) => (cause.string("Resource")?, cause.i64("StartLine")?),
        None => (None, None),
    };
    let line_text = line.map(|l| l.to_string()).unwrap_or_default();
    let key = finding_key(
        envelope,
        &[
            "misconfiguration",
            result.target,
            &id,
            resource.as_deref().unwrap_or(""),
            &line_text,
        ],
    );
    let status = item.string("Status")?.unwrap_or_else(|| "FAIL".into());
    let message = match (item.string("Message")?, item.string("Title")?) {
        (Some(message), _) => message,
        (None, Some(title)) => title,
        (None, None) => id.clone(),
    };
    let mut fields = envelope_fields(envelope, result);
    for (name, value) in [
        ("id", Some(id.clone())),
        ("status", Some(status.clone())),
        ("title", item.string("Title")?),
        ("resolution", item.string("Resolution")?),
        ("primary_url", item.string("PrimaryURL")?),
        ("resource", resource),
    ] {
        if let Some(value) = value {
            fields.insert(name.into(), value.into());
        }
    }
    if let Some(line) = line {
        fields.insert("start_line".into(), line.into());
    }
    let severity_text = item.string("Severity")?;
    observation(
        envelope,
        Kind::Misconfiguration,
        key,
        status.eq_ignore_ascii_case("FAIL"),
        severity_text,
        item,
        id,
        message,
        vec![result.class.to_owned()],
        fields,
        raw,
    )
}

fn secret(
    envelope: &Envelope<'_>,
    result: &ResultCtx<'_>,
    item: &Obj<'_>,
    raw: &RawValue,
) -> Result<Observation, String> {
    let id = item.required("RuleID")?.into_owned();
    check_long_name(&item.path_of("RuleID"), &id)?;
    let line = item.i64("StartLine")?;
    let line_text = line.map(|l| l.to_string()).unwrap_or_default();
    let key = finding_key(envelope, &["secret", result.target, &id, &line_text]);
    let message = item.string("Title")?.unwrap_or_else(|| id.clone());
    let mut fields = envelope_fields(envelope, result);
    for (name, value) in [
        ("rule_id", Some(id.clone())),
        ("category", item.string("Category")?),
        ("title", item.string("Title")?),
    ] {
        if let Some(value) = value {
            fields.insert(name.into(), value.into());
        }
    }
    if let Some(line) = line {
        fields.insert("start_line".into(), line.into());
    }
    let severity_text = item.string("Severity")?;
    observation(
        envelope,
        Kind::Secret,
        key,
        true,
        severity_text,
        item,
        id,
        message,
        vec![result.class.to_owned()],
        fields,
        raw,
    )
}

/// The key of a finding: cluster, artifact and what identifies it within the artifact.
fn finding_key(envelope: &Envelope<'_>, parts: &[&str]) -> Uuid {
    let mut all: Vec<&[u8]> = vec![envelope.cluster.as_bytes(), envelope.artifact.as_bytes()];
    all.extend(parts.iter().map(|p| p.as_bytes()));
    dedup_key("trivy", &all)
}

fn envelope_fields(envelope: &Envelope<'_>, result: &ResultCtx<'_>) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("artifact".into(), envelope.artifact.clone().into());
    if let Some(t) = &envelope.artifact_type {
        fields.insert("artifact_type".into(), t.clone().into());
    }
    if let Some(os) = &envelope.os {
        fields.insert("os".into(), os.clone().into());
    }
    fields.insert("target".into(), result.target.into());
    fields.insert("class".into(), result.class.into());
    if let Some(t) = result.ecosystem {
        fields.insert("type".into(), t.into());
    }
    fields
}

#[allow(clippy::too_many_arguments)]
fn observation(
    envelope: &Envelope<'_>,
    kind: Kind,
    key: Uuid,
    open: bool,
    severity_text: Option<String>,
    item: &Obj<'_>,
    rule: String,
    message: String,
    tags: Vec<String>,
    fields: Map<String, Value>,
    raw: &RawValue,
) -> Result<Observation, String> {
    let severity = severity(severity_text.as_deref()).ok_or_else(|| {
        format!(
            "field `{}`: `{}` is not a Trivy severity (CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN)",
            item.path_of("Severity"),
            severity_text.as_deref().unwrap_or("")
        )
    })?;
    let event = Event {
        id: Uuid::now_v7(),
        dedup_key: Some(dedup_key("trivy", &[key.as_bytes(), &envelope.stamp])),
        time: envelope.time,
        received_at: envelope.ctx.received_at,
        source: "trivy".into(),
        source_version: None,
        kind,
        severity,
        severity_raw: severity_text.unwrap_or_else(|| "UNKNOWN".into()),
        rule,
        message,
        tags,
        cluster: envelope.cluster.clone(),
        namespace: None,
        pod: None,
        container: None,
        image: envelope.image.clone(),
        node: None,
        workload: None,
        fields: super::to_fields(&json!(fields))?,
        raw: Some(raw.to_owned()),
        group: None,
        suppressed: None,
    };
    Ok(Observation {
        event: finish(event, raw.get())?,
        scope: 0,
        finding: open.then_some(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::tetragon::TetragonConfig;

    fn ctx() -> Context<'static> {
        Context {
            cluster: None,
            default_cluster: "home",
            received_at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    fn parse_with(text: &str, max_findings: usize) -> Result<ScanReport, String> {
        let tetragon = TetragonConfig::default();
        let options = Options {
            node: None,
            max_part_bytes: 4096,
            max_findings,
            tetragon: &tetragon,
        };
        parse(
            &RawValue::from_string(text.to_owned()).unwrap(),
            &ctx(),
            &options,
        )
    }

    fn parse_text(text: &str) -> Result<ScanReport, String> {
        parse_with(text, 100)
    }

    pub(crate) fn fixture_text(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/trivy/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    fn fixture(name: &str) -> ScanReport {
        parse_text(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_severity_table_maps_all_five_levels_in_any_case() {
        assert_eq!(severity(Some("CRITICAL")), Some(Severity::Critical));
        assert_eq!(severity(Some("HIGH")), Some(Severity::Error));
        assert_eq!(severity(Some("medium")), Some(Severity::Warning));
        assert_eq!(severity(Some("LOW")), Some(Severity::Notice));
        assert_eq!(severity(Some("UNKNOWN")), Some(Severity::Informational));
        assert_eq!(severity(None), Some(Severity::Informational));
        assert_eq!(severity(Some("SEVERE")), None);
    }

    #[test]
    fn a_schema_2_image_report_gives_one_open_finding_per_vulnerability() {
        let report = fixture("image-schema2.json");
        assert_eq!(report.source, "trivy");
        assert_eq!(report.scopes, ["registry.example/shop/web:1.4.2"]);
        assert_eq!(report.cluster, "home");
        assert_eq!(report.time.to_rfc3339(), "2026-05-04T10:00:00.123456+00:00");
        let kinds: Vec<Kind> = report.observations.iter().map(|o| o.event.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Vulnerability,
                Kind::Vulnerability,
                Kind::Vulnerability,
                Kind::Secret
            ]
        );
        let first = &report.observations[0].event;
        assert_eq!(first.rule, "CVE-2026-0001");
        assert_eq!(first.severity, Severity::Error);
        assert_eq!(first.severity_raw, "HIGH");
        assert_eq!(
            first.image.as_deref(),
            Some("registry.example/shop/web:1.4.2")
        );
        assert_eq!(first.tags, ["os-pkgs", "fixable"]);
        let fields: Value = serde_json::from_str(first.fields.get()).unwrap();
        assert_eq!(fields["package"], "openssl");
        assert_eq!(fields["fixed_version"], "3.0.16-1~deb12u1");
        assert_eq!(fields["os"], "debian 12.8");
        // The raw part is the vulnerability exactly as sent.
        assert!(
            first
                .raw
                .as_ref()
                .unwrap()
                .get()
                .starts_with("{\"VulnerabilityID\"")
        );
        let unknown = &report.observations[2].event;
        assert_eq!(unknown.severity, Severity::Informational, "null Severity");
        assert_eq!(unknown.message, "CVE-2026-0003 in lodash 4.17.20");
        assert!(report.observations.iter().all(|o| o.finding.is_some()));
        let keys: std::collections::HashSet<_> =
            report.observations.iter().map(|o| o.finding).collect();
        assert_eq!(keys.len(), 4);
    }

    #[test]
    fn misconfigurations_that_pass_are_history_only() {
        let report = fixture("config-misconfigurations.json");
        assert_eq!(report.observations.len(), 2);
        assert!(report.observations[0].finding.is_some(), "FAIL is open");
        assert!(report.observations[1].finding.is_none(), "PASS closes");
        assert_eq!(report.observations[0].event.kind, Kind::Misconfiguration);
        assert_eq!(
            report.observations[0].event.image, None,
            "a filesystem scan"
        );
        assert_eq!(report.observations[0].event.rule, "AVD-KSV-0001");
    }

    #[test]
    fn the_old_bare_array_names_its_image_from_the_os_target() {
        let report = fixture("legacy-bare-array.json");
        assert_eq!(report.scopes, ["alpine:3.10"]);
        assert_eq!(
            report.time,
            ctx().received_at,
            "no CreatedAt: received time"
        );
        assert_eq!(report.observations.len(), 2);
        assert_eq!(report.observations[0].event.severity, Severity::Critical);
    }

    #[test]
    fn a_clean_report_has_its_scope_and_no_observations() {
        let report = fixture("clean-image-null-results.json");
        assert_eq!(report.scopes, ["registry.example/shop/web:1.4.3"]);
        assert!(report.observations.is_empty());
    }

    #[test]
    fn the_same_package_in_an_os_release_update_is_the_same_finding() {
        let a = parse_text(
            r#"{"SchemaVersion":2,"ArtifactName":"img","CreatedAt":"2026-05-04T10:00:00Z","Results":[{"Target":"img (debian 12.8)","Class":"os-pkgs","Vulnerabilities":[{"VulnerabilityID":"CVE-1","PkgName":"p","InstalledVersion":"1","Severity":"LOW"}]}]}"#,
        )
        .unwrap();
        let b = parse_text(
            r#"{"SchemaVersion":2,"ArtifactName":"img","CreatedAt":"2026-05-05T10:00:00Z","Results":[{"Target":"img (debian 12.9)","Class":"os-pkgs","Vulnerabilities":[{"VulnerabilityID":"CVE-1","PkgName":"p","InstalledVersion":"2","Severity":"LOW"}]}]}"#,
        )
        .unwrap();
        assert_eq!(a.observations[0].finding, b.observations[0].finding);
        assert_ne!(
            a.observations[0].event.dedup_key, b.observations[0].event.dedup_key,
            "two scans are two observations"
        );
        let again = parse_text(&fixture_text("legacy-bare-array.json")).unwrap();
        let once = parse_text(&fixture_text("legacy-bare-array.json")).unwrap();
        assert_eq!(
            again.observations[0].event.dedup_key, once.observations[0].event.dedup_key,
            "a re-posted report without CreatedAt is a duplicate"
        );
    }

    #[test]
    fn malformed_reports_are_refused_naming_the_field() {
        let cases = [
            (
                r#"{"SchemaVersion":3,"ArtifactName":"x"}"#,
                "field `SchemaVersion`: 3 is not supported",
            ),
            (r#"{"SchemaVersion":2}"#, "field `ArtifactName` is missing"),
            (
                r#"{"ArtifactName":"x","Results":{}}"#,
                "field `Results`: expected an array, got an object",
            ),
            (
                r#"{"ArtifactName":"x","Results":[{"Target":"t","Vulnerabilities":[{"PkgName":"p"}]}]}"#,
                "field `Results[0].Vulnerabilities[0].VulnerabilityID` is missing",
            ),
            (
                r#"{"ArtifactName":"x","Results":[{"Target":"t","Vulnerabilities":[{"VulnerabilityID":"C","PkgName":"p","Severity":"BAD"}]}]}"#,
                "field `Results[0].Vulnerabilities[0].Severity`: `BAD` is not a Trivy severity",
            ),
            (
                r#"{"ArtifactName":"x","CreatedAt":"yesterday"}"#,
                "field `CreatedAt`: `yesterday` is not an RFC 3339 timestamp",
            ),
            (
                r#"[{"Target":"no os here"}]"#,
                "a bare-array Trivy report names no artifact",
            ),
            (
                r#"{"ArtifactName":"x","Results":[{"Target":"t","Secrets":[{"RuleID":"r","StartLine":"one"}]}]}"#,
                "field `Results[0].Secrets[0].StartLine`: expected a whole number",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_text(text).unwrap_err();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
    }

    #[test]
    fn a_report_over_the_findings_limit_is_refused_whole() {
        let error = parse_with(&fixture_text("image-schema2.json"), 2).unwrap_err();
        assert!(error.contains("ingest.max_report_findings"), "{error}");
    }
}
