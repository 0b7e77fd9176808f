//! kube-bench JSON (`kube-bench run --json`: `{Controls, Totals}`, and the bare array of
//! controls of `--nototals`), one report per item. Pure functions: no I/O.
//!
//! Every check becomes an observation event of kind `misconfiguration`; FAIL and WARN checks
//! are open findings keyed by node and check number. kube-bench does not name the node it
//! ran on: the request does (`?node=`). A report is complete for each node type it holds
//! (`master`, `node`, `etcd`, …) on that node.

use super::{Context, Obj, Options, check_long_name, check_name, finish};
use falconer_store::{Event, Kind, Observation, ScanReport, Severity, dedup_key};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

/// A check's status and whether it is scored, on our scale. Unscored failures are rare
/// (kube-bench reports most as WARN) but rank below scored ones.
pub const SEVERITY: [(&str, bool, Severity); 8] = [
    ("FAIL", true, Severity::Error),
    ("FAIL", false, Severity::Warning),
    ("WARN", true, Severity::Notice),
    ("WARN", false, Severity::Notice),
    ("PASS", true, Severity::Informational),
    ("PASS", false, Severity::Informational),
    ("INFO", true, Severity::Informational),
    ("INFO", false, Severity::Informational),
];

pub fn severity(status: &str, scored: bool) -> Option<Severity> {
    SEVERITY
        .iter()
        .find(|(s, sc, _)| *s == status && *sc == scored)
        .map(|(_, _, severity)| *severity)
}

/// Statuses that are problems: open findings.
fn is_open(status: &str) -> bool {
    matches!(status, "FAIL" | "WARN")
}

pub fn parse(
    raw: &RawValue,
    ctx: &Context<'_>,
    options: &Options<'_>,
) -> Result<ScanReport, String> {
    let node = options.node.ok_or(
        "kube-bench reports do not name their node; name it with ?node=<node name> \
         (e.g. from the pod's spec.nodeName)",
    )?;
    check_name("node", node)?;
    let text = raw.get();
    let (controls, prefix) = if text.starts_with('[') {
        let controls: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON array: {e}"))?;
        (controls, "")
    } else {
        let report = Obj::read(raw, "")?;
        if !report.has("Controls") {
            return Err("field `Controls` is missing".into());
        }
        (report.array("Controls")?, "Controls")
    };
    let cluster = ctx.cluster.unwrap_or(ctx.default_cluster).to_owned();
    // kube-bench writes no time: a re-posted report is told from a new run by its content.
    let digest = dedup_key("kube-bench-report", &[text.as_bytes()]);

    let mut scopes: Vec<String> = Vec::new();
    let mut observations = Vec::new();
    for (i, raw) in controls.iter().enumerate() {
        let control = Obj::read(raw, &format!("{prefix}[{i}]"))?;
        let node_type = control.string("node_type")?.unwrap_or_default();
        check_name(&control.path_of("node_type"), &node_type)?;
        let scope = format!("{node}/{node_type}");
        let scope_index = match scopes.iter().position(|s| *s == scope) {
            Some(index) => index,
            None => {
                scopes.push(scope);
                scopes.len() - 1
            }
        };
        let version = control.string("version")?;
        let control_id = control.text("id")?;
        let control_text = control.string("text")?;
        for (j, raw) in control.array("tests")?.iter().enumerate() {
            let group = Obj::read(raw, &control.path_of(&format!("tests[{j}]")))?;
            let section = group.text("section")?;
            let section_desc = group.string("desc")?;
            for (k, raw) in group.array("results")?.iter().enumerate() {
                let path = group.path_of(&format!("results[{k}]"));
                if raw.get().len() > options.max_part_bytes {
                    return Err(format!(
                        "field `{path}` is {} bytes; the limit is {} (ingest.max_event_bytes)",
                        raw.get().len(),
                        options.max_part_bytes
                    ));
                }
                if observations.len() == options.max_findings {
                    return Err(format!(
                        "the report has more than {} checks (ingest.max_report_findings)",
                        options.max_findings
                    ));
                }
                let check = Obj::read(raw, &path)?;
                let number = check.text("test_number")?.ok_or_else(|| {
                    format!("field `{}` is missing", check.path_of("test_number"))
                })?;
                check_long_name(&check.path_of("test_number"), &number)?;
                let status = check.required("status")?.to_ascii_uppercase();
                let scored = check.bool("scored")?.unwrap_or(false);
                let severity = severity(&status, scored).ok_or_else(|| {
                    format!(
                        "field `{}`: `{status}` is not PASS, FAIL, WARN or INFO",
                        check.path_of("status")
                    )
                })?;
                let key = dedup_key(
                    "kube-bench",
                    &[cluster.as_bytes(), node.as_bytes(), number.as_bytes()],
                );
                let mut fields = Map::new();
                for (name, value) in [
                    ("node_type", Some(node_type.clone())),
                    ("version", version.clone()),
                    ("control", control_id.clone()),
                    ("control_text", control_text.clone()),
                    ("section", section.clone()),
                    ("section_desc", section_desc.clone()),
                    ("test_number", Some(number.clone())),
                    ("status", Some(status.clone())),
                    ("type", check.string("type")?),
                    ("audit", check.string("audit")?),
                    ("actual_value", check.string("actual_value")?),
                    ("expected_result", check.string("expected_result")?),
                    ("remediation", check.string("remediation")?),
                    ("reason", check.string("reason")?),
                ] {
                    if let Some(value) = value {
                        fields.insert(name.into(), value.into());
                    }
                }
                fields.insert("scored".into(), scored.into());
                let tags = [Some(node_type.clone()), version.clone()]
                    .into_iter()
                    .flatten()
                    .filter(|t| !t.is_empty())
                    .collect();
                let event = Event {
                    id: Uuid::now_v7(),
                    dedup_key: Some(dedup_key(
                        "kube-bench",
                        &[digest.as_bytes(), key.as_bytes()],
                    )),
                    time: ctx.received_at,
                    received_at: ctx.received_at,
                    source: "kube-bench".into(),
                    source_version: None,
                    kind: Kind::Misconfiguration,
                    severity,
                    severity_raw: status.clone(),
                    message: check.string("test_desc")?.unwrap_or_else(|| number.clone()),
                    rule: number,
                    tags,
                    cluster: cluster.clone(),
                    namespace: None,
                    pod: None,
                    container: None,
                    image: None,
                    node: Some(node.to_owned()),
                    workload: None,
                    fields: super::to_fields(&Value::Object(fields))?,
                    raw: Some((*raw).to_owned()),
                    group: None,
                    suppressed: None,
                };
                observations.push(Observation {
                    event: finish(event, raw.get())?,
                    scope: scope_index,
                    finding: is_open(&status).then_some(key),
                });
            }
        }
    }
    if scopes.is_empty() {
        return Err("the report has no controls, so it says nothing about any node type".into());
    }
    Ok(ScanReport {
        source: "kube-bench".into(),
        cluster,
        scopes,
        time: ctx.received_at,
        observations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::tetragon::TetragonConfig;
    use chrono::Utc;

    fn parse_with(text: &str, node: Option<&str>) -> Result<ScanReport, String> {
        let tetragon = TetragonConfig::default();
        let options = Options {
            node,
            max_part_bytes: 4096,
            max_findings: 1000,
            tetragon: &tetragon,
        };
        let ctx = Context {
            cluster: None,
            default_cluster: "home",
            received_at: Utc::now(),
        };
        parse(
            &RawValue::from_string(text.to_owned()).unwrap(),
            &ctx,
            &options,
        )
    }

    fn fixture(name: &str) -> ScanReport {
        let path = format!(
            "{}/../tests/fixtures/kube-bench/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        parse_with(&text, Some("node-a")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_severity_table_ranks_scored_failures_highest() {
        assert_eq!(severity("FAIL", true), Some(Severity::Error));
        assert_eq!(severity("FAIL", false), Some(Severity::Warning));
        assert_eq!(severity("WARN", false), Some(Severity::Notice));
        assert_eq!(severity("PASS", true), Some(Severity::Informational));
        assert_eq!(severity("INFO", false), Some(Severity::Informational));
        assert_eq!(severity("SKIP", true), None);
    }

    #[test]
    fn a_report_with_totals_gives_one_observation_per_check_and_opens_fail_and_warn() {
        let report = fixture("controls-totals.json");
        assert_eq!(report.source, "kube-bench");
        assert_eq!(report.scopes, ["node-a/master", "node-a/node"]);
        let summary: Vec<(&str, &str, bool, usize)> = report
            .observations
            .iter()
            .map(|o| {
                (
                    o.event.rule.as_str(),
                    o.event.severity_raw.as_str(),
                    o.finding.is_some(),
                    o.scope,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("1.1.1", "PASS", false, 0),
                ("1.1.2", "FAIL", true, 0),
                ("4.2.1", "FAIL", true, 1),
                ("4.2.2", "WARN", true, 1),
                ("4.2.3", "INFO", false, 1),
            ]
        );
        let fail = &report.observations[2].event;
        assert_eq!(fail.kind, Kind::Misconfiguration);
        assert_eq!(fail.severity, Severity::Error);
        assert_eq!(fail.node.as_deref(), Some("node-a"));
        assert_eq!(fail.tags, ["node", "cis-1.9"]);
        let fields: Value = serde_json::from_str(fail.fields.get()).unwrap();
        assert_eq!(fields["node_type"], "node");
        assert_eq!(fields["actual_value"], "true");
        assert_eq!(fields["scored"], true);
    }

    #[test]
    fn the_bare_array_form_reads_like_the_full_one() {
        let report = fixture("bare-array-nototals.json");
        assert_eq!(report.scopes, ["node-a/node"]);
        assert_eq!(report.observations.len(), 2);
        assert_eq!(report.observations[1].event.severity, Severity::Warning);
    }

    #[test]
    fn the_same_check_on_one_node_is_one_finding_across_runs() {
        let a = fixture("controls-totals.json");
        let b = fixture("bare-array-nototals.json");
        let key = dedup_key("kube-bench", &[b"home", b"node-a", b"4.2.1"]);
        assert_eq!(a.observations[2].finding, Some(key), "FAIL in one run");
        assert_eq!(
            b.observations[0].finding, None,
            "PASS in the next closes it"
        );
        let other_node = parse_with(
            &std::fs::read_to_string(format!(
                "{}/../tests/fixtures/kube-bench/bare-array-nototals.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
            Some("node-b"),
        )
        .unwrap();
        assert!(b.observations[1].finding.is_some());
        assert_ne!(
            b.observations[1].finding,
            other_node.observations[1].finding
        );
    }

    #[test]
    fn malformed_reports_are_refused_naming_the_field() {
        let cases = [
            (
                r#"{"Controls":[]}"#,
                Some("n"),
                "the report has no controls",
            ),
            (r#"{"Totals":{}}"#, Some("n"), "field `Controls` is missing"),
            (
                r#"{"Controls":[]}"#,
                None,
                "kube-bench reports do not name their node",
            ),
            (
                r#"{"Controls":[{"node_type":"node","tests":[{"results":[{"test_number":"1","status":"MAYBE"}]}]}]}"#,
                Some("n"),
                "field `Controls[0].tests[0].results[0].status`: `MAYBE` is not PASS",
            ),
            (
                r#"{"Controls":[{"node_type":"node","tests":[{"results":[{"status":"PASS"}]}]}]}"#,
                Some("n"),
                "field `Controls[0].tests[0].results[0].test_number` is missing",
            ),
            (
                r#"[{"node_type":"node","tests":[{"results":[{"test_number":"1","status":"PASS","scored":"yes"}]}]}]"#,
                Some("n"),
                "field `[0].tests[0].results[0].scored`: expected a boolean",
            ),
        ];
        for (text, node, expected) in cases {
            let error = parse_with(text, node).unwrap_err();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
    }
}
