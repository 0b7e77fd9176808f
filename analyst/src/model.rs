//! The risk model of docs/risk-model.md as a pure function: aggregated inputs in, one score
//! per cluster, namespace and workload out, each with its factors.
//!
//! Every input adds raw points (never removes any); raw points become a score with
//! 100·(1 − e^(−raw/k)). Both steps only grow, so adding a finding never lowers a score.

use crate::config::Weights;
use crate::workload::owner;
use chrono::{DateTime, Utc};
use falconer_store::risk::{MisconfigurationGroup, round1};
use falconer_store::{Factor, FactorKind, RiskInputs, RiskScore, Severity};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Factors kept with each stored score (lists serve the first 5).
pub const STORED_FACTORS: usize = 10;

/// Diminishing returns: an effective count `n` (alerts weighted by age, vulnerabilities by
/// fixability) counts fully up to 1, then only logarithmically: 1 + ln n. Continuous and
/// smooth at 1, always increasing.
pub fn repeats(n: f64) -> f64 {
    if n <= 1.0 { n.max(0.0) } else { 1.0 + n.ln() }
}

/// The saturating curve: raw points to a score in [0, 100).
pub fn curve(raw: f64, saturation: f64) -> f64 {
    100.0 * (1.0 - (-raw / saturation).exp())
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Scope {
    cluster: String,
    namespace: Option<String>,
    kind: String,
    name: String,
}

impl Scope {
    fn cluster(cluster: &str) -> Scope {
        Scope {
            cluster: cluster.to_owned(),
            namespace: None,
            kind: "Cluster".into(),
            name: cluster.to_owned(),
        }
    }

    fn namespace(cluster: &str, namespace: &str) -> Scope {
        Scope {
            cluster: cluster.to_owned(),
            namespace: Some(namespace.to_owned()),
            kind: "Namespace".into(),
            name: namespace.to_owned(),
        }
    }

    fn level(&self) -> Level {
        match self.kind.as_str() {
            "Cluster" => Level::Cluster,
            "Namespace" => Level::Namespace,
            _ => Level::Workload,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Cluster,
    Namespace,
    Workload,
}

#[derive(Debug, Default)]
struct Alerts {
    count: i64,
    weight: f64,
    oldest: Option<DateTime<Utc>>,
    pods: BTreeSet<(Option<String>, Option<String>)>,
}

#[derive(Debug, Default)]
struct Inputs {
    alerts: BTreeMap<(String, Severity), Alerts>,
    images: BTreeSet<String>,
    nodes: BTreeSet<String>,
    /// Exposed workloads: (namespace, kind, name).
    exposed: BTreeSet<(String, String, String)>,
}

/// Scores every object the inputs mention, plus every known cluster (0 when it has nothing).
pub fn score(inputs: &RiskInputs, weights: &Weights, now: DateTime<Utc>) -> Vec<RiskScore> {
    let mut scopes: BTreeMap<Scope, Inputs> = BTreeMap::new();
    for cluster in &inputs.clusters {
        scopes.entry(Scope::cluster(cluster)).or_default();
    }
    let workload_of = |cluster: &str, namespace: &str, pod: &str, named| {
        let w = owner(pod, named);
        Scope {
            cluster: cluster.to_owned(),
            namespace: Some(namespace.to_owned()),
            kind: w.kind,
            name: w.name,
        }
    };

    for p in &inputs.placements {
        let mut targets = vec![Scope::cluster(&p.cluster)];
        let mut exposed = None;
        if let Some(namespace) = &p.namespace {
            let workload = workload_of(&p.cluster, namespace, &p.pod, p.workload.as_ref());
            if p.exposed {
                exposed = Some((
                    namespace.clone(),
                    workload.kind.clone(),
                    workload.name.clone(),
                ));
            }
            targets.push(Scope::namespace(&p.cluster, namespace));
            targets.push(workload);
        }
        for target in targets {
            let is_cluster = target.level() == Level::Cluster;
            let entry = scopes.entry(target).or_default();
            if let Some(e) = &exposed {
                entry.exposed.insert(e.clone());
            }
            if is_cluster {
                continue;
            }
            if let Some(image) = &p.image {
                entry.images.insert(image.clone());
            }
            if let Some(node) = &p.node {
                entry.nodes.insert(node.clone());
            }
        }
    }

    for a in &inputs.alerts {
        let mut targets = vec![Scope::cluster(&a.cluster)];
        if let Some(namespace) = &a.namespace {
            targets.push(Scope::namespace(&a.cluster, namespace));
            if let Some(pod) = &a.pod {
                targets.push(workload_of(&a.cluster, namespace, pod, a.workload.as_ref()));
            }
        }
        for target in targets {
            let entry = scopes
                .entry(target)
                .or_default()
                .alerts
                .entry((a.rule.clone(), a.severity))
                .or_default();
            entry.count += a.count;
            entry.weight += a.weight;
            entry.oldest = Some(entry.oldest.map_or(a.oldest, |o| o.min(a.oldest)));
            entry.pods.insert((a.namespace.clone(), a.pod.clone()));
        }
    }

    // Vulnerabilities by image; misconfigurations by the places they name.
    let mut vulnerabilities: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, v) in inputs.vulnerabilities.iter().enumerate() {
        vulnerabilities
            .entry((v.cluster.as_str(), v.image.as_str()))
            .or_default()
            .push(i);
    }
    let mut misconfigurations: HashMap<(&str, Place<'_>), Vec<usize>> = HashMap::new();
    for (i, m) in inputs.misconfigurations.iter().enumerate() {
        for place in places(m) {
            misconfigurations
                .entry((m.cluster.as_str(), place))
                .or_default()
                .push(i);
        }
    }
    for m in &inputs.misconfigurations {
        scopes.entry(Scope::cluster(&m.cluster)).or_default();
        if let Some(namespace) = &m.namespace {
            scopes
                .entry(Scope::namespace(&m.cluster, namespace))
                .or_default();
        }
    }

    let mut scores = Vec::with_capacity(scopes.len());
    for (scope, found) in &scopes {
        let mut factors = Vec::new();
        runtime_factors(scope, found, weights, now, &mut factors);

        let vulnerable: BTreeSet<usize> = match scope.level() {
            Level::Cluster => inputs
                .vulnerabilities
                .iter()
                .enumerate()
                .filter(|(_, v)| v.cluster == scope.cluster)
                .map(|(i, _)| i)
                .collect(),
            _ => found
                .images
                .iter()
                .flat_map(|image| {
                    vulnerabilities
                        .get(&(scope.cluster.as_str(), image.as_str()))
                        .into_iter()
                        .flatten()
                        .copied()
                })
                .collect(),
        };
        vulnerability_factors(inputs, &vulnerable, weights, &mut factors);

        let failed: BTreeSet<usize> = match scope.level() {
            Level::Cluster => inputs
                .misconfigurations
                .iter()
                .enumerate()
                .filter(|(_, m)| m.cluster == scope.cluster)
                .map(|(i, _)| i)
                .collect(),
            _ => {
                let mut wanted: Vec<Place<'_>> = Vec::new();
                wanted.extend(found.nodes.iter().map(|n| Place::Node(n)));
                wanted.extend(found.images.iter().map(|i| Place::Image(i)));
                if let Some(namespace) = &scope.namespace {
                    wanted.push(Place::Namespace(namespace));
                }
                wanted
                    .into_iter()
                    .flat_map(|place| {
                        misconfigurations
                            .get(&(scope.cluster.as_str(), place))
                            .into_iter()
                            .flatten()
                            .copied()
                    })
                    .collect()
            }
        };
        misconfiguration_factors(inputs, &failed, weights, &mut factors);

        if !found.exposed.is_empty() && weights.exposure > 0.0 {
            let n = found.exposed.len();
            let description = match scope.level() {
                Level::Workload => "Reported exposed outside the cluster".to_string(),
                _ => format!(
                    "{n} {} reported exposed outside the cluster",
                    plural(n as i64, "workload", "workloads")
                ),
            };
            factors.push(Factor {
                kind: FactorKind::Exposure,
                description,
                points: weights.exposure * repeats(n as f64),
            });
        }

        let raw: f64 = factors.iter().map(|f| f.points).sum();
        let exact = curve(raw, weights.saturation);
        let value = round1(exact);
        if value <= 0.0 && scope.level() != Level::Cluster {
            continue;
        }
        // Each factor's share of the score, in proportion to its raw points.
        for factor in &mut factors {
            factor.points = if raw > 0.0 {
                round1(exact * factor.points / raw)
            } else {
                0.0
            };
        }
        factors.retain(|f| f.points > 0.0);
        factors.sort_by(|a, b| {
            b.points
                .total_cmp(&a.points)
                .then_with(|| a.description.cmp(&b.description))
        });
        factors.truncate(STORED_FACTORS);
        scores.push(RiskScore {
            cluster: scope.cluster.clone(),
            namespace: scope.namespace.clone(),
            kind: scope.kind.clone(),
            name: scope.name.clone(),
            score: value,
            previous: None,
            delta: None,
            computed_at: now,
            factors,
        });
    }
    scores
}

/// A place a failed check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Place<'a> {
    Node(&'a str),
    Namespace(&'a str),
    Image(&'a str),
}

fn places(m: &MisconfigurationGroup) -> Vec<Place<'_>> {
    let mut out = Vec::new();
    if let Some(node) = &m.node {
        out.push(Place::Node(node));
    }
    if let Some(namespace) = &m.namespace {
        out.push(Place::Namespace(namespace));
    }
    if let Some(image) = &m.image {
        out.push(Place::Image(image));
    }
    out
}

fn runtime_factors(
    scope: &Scope,
    found: &Inputs,
    weights: &Weights,
    now: DateTime<Utc>,
    factors: &mut Vec<Factor>,
) {
    for ((rule, severity), alerts) in &found.alerts {
        let points = weights.runtime.of(*severity) * repeats(alerts.weight);
        if points <= 0.0 {
            continue;
        }
        let pods = match scope.level() {
            Level::Workload => String::new(),
            _ if alerts.pods.len() > 1 => format!(" in {} pods", alerts.pods.len()),
            _ => String::new(),
        };
        let span = alerts.oldest.map_or_else(|| "1m".into(), |o| span(now - o));
        factors.push(Factor {
            kind: FactorKind::Runtime,
            description: format!(
                "{} {} {} of rule {rule}{pods} in the last {span}",
                alerts.count,
                title(*severity),
                plural(alerts.count, "alert", "alerts"),
            ),
            points,
        });
    }
}

fn vulnerability_factors(
    inputs: &RiskInputs,
    groups: &BTreeSet<usize>,
    weights: &Weights,
    factors: &mut Vec<Factor>,
) {
    // severity → (count, fixable, images)
    let mut by_severity: BTreeMap<Severity, (i64, i64, BTreeSet<&str>)> = BTreeMap::new();
    for &i in groups {
        let v = &inputs.vulnerabilities[i];
        let entry = by_severity.entry(v.severity).or_default();
        entry.0 += v.count;
        entry.1 += v.fixable;
        entry.2.insert(v.image.as_str());
    }
    for (severity, (count, fixable, images)) in by_severity {
        let effective = (count - fixable) as f64 + weights.fixable * fixable as f64;
        let points = weights.vulnerability.of(severity) * repeats(effective);
        if points <= 0.0 {
            continue;
        }
        let fixable = if fixable > 0 {
            format!(" ({fixable} fixable)")
        } else {
            String::new()
        };
        let place = match images.iter().next() {
            Some(image) if images.len() == 1 => format!("image {image}"),
            _ => format!("{} images", images.len()),
        };
        factors.push(Factor {
            kind: FactorKind::Vulnerability,
            description: format!(
                "{count} {} {}{fixable} in {place}",
                scanner_title(severity),
                plural(count, "vulnerability", "vulnerabilities"),
            ),
            points,
        });
    }
}

fn misconfiguration_factors(
    inputs: &RiskInputs,
    groups: &BTreeSet<usize>,
    weights: &Weights,
    factors: &mut Vec<Factor>,
) {
    #[derive(Default)]
    struct Found<'a> {
        count: i64,
        nodes: BTreeSet<&'a str>,
        namespaces: BTreeSet<&'a str>,
        images: BTreeSet<&'a str>,
    }
    let mut by_severity: BTreeMap<Severity, Found<'_>> = BTreeMap::new();
    for &i in groups {
        let m = &inputs.misconfigurations[i];
        let entry = by_severity.entry(m.severity).or_default();
        entry.count += m.count;
        entry.nodes.extend(m.node.as_deref());
        entry.namespaces.extend(m.namespace.as_deref());
        entry.images.extend(m.image.as_deref());
    }
    for (severity, found) in by_severity {
        let points = weights.misconfiguration.of(severity) * repeats(found.count as f64);
        if points <= 0.0 {
            continue;
        }
        let mut places = Vec::new();
        for (set, one, many) in [
            (&found.nodes, "on node", "nodes"),
            (&found.namespaces, "in namespace", "namespaces"),
            (&found.images, "in image", "images"),
        ] {
            match set.len() {
                0 => {}
                1 => places.push(format!("{one} {}", set.iter().next().unwrap_or(&""))),
                n => places.push(format!(
                    "{} {n} {many}",
                    one.split(' ').next().unwrap_or("")
                )),
            }
        }
        let place = if places.is_empty() {
            "in the cluster".to_string()
        } else {
            places.join(" and ")
        };
        factors.push(Factor {
            kind: FactorKind::Misconfiguration,
            description: format!(
                "{} failed {} configuration {} {place}",
                found.count,
                title(severity),
                plural(found.count, "check", "checks"),
            ),
            points,
        });
    }
}

fn plural(n: i64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// `Critical`, `Notice`, … as Falco writes them.
fn title(severity: Severity) -> String {
    let name = severity.as_str();
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Severities as vulnerability scanners name them (Trivy's scale, mapped back).
fn scanner_title(severity: Severity) -> &'static str {
    match severity {
        Severity::Emergency | Severity::Alert | Severity::Critical => "Critical",
        Severity::Error => "High",
        Severity::Warning => "Medium",
        Severity::Notice => "Low",
        Severity::Informational | Severity::Debug => "Unknown",
    }
}

/// A duration as people say it: 5m, 3h, 2d (rounded up, at least 1m).
fn span(age: chrono::TimeDelta) -> String {
    let minutes = ((age.num_seconds().max(0) + 59) / 60).max(1);
    if minutes < 60 {
        format!("{minutes}m")
    } else if minutes < 48 * 60 {
        format!("{}h", (minutes + 59) / 60)
    } else {
        format!("{}d", (minutes + 24 * 60 - 1) / (24 * 60))
    }
}

#[cfg(test)]
mod tests {
    //! The worked examples of docs/risk-model.md, and the model's promises on pure inputs.
    use super::*;
    use falconer_store::risk::{AlertGroup, Placement, VulnerabilityGroup};

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn alerts(
        ns: &str,
        pod: &str,
        rule: &str,
        severity: Severity,
        count: i64,
        weight: f64,
    ) -> AlertGroup {
        AlertGroup {
            cluster: "prod".into(),
            namespace: Some(ns.into()),
            pod: Some(pod.into()),
            workload: None,
            rule: rule.into(),
            severity,
            count,
            weight,
            oldest: now() - chrono::Duration::hours(2),
        }
    }

    fn find<'a>(scores: &'a [RiskScore], kind: &str, name: &str) -> &'a RiskScore {
        scores
            .iter()
            .find(|s| s.kind == kind && s.name == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {scores:?}"))
    }

    fn scored(inputs: &RiskInputs) -> Vec<RiskScore> {
        score(inputs, &Weights::default(), now())
    }

    #[test]
    fn worked_examples_one_critical_shell_outranks_fifty_notice_repeats() {
        let inputs = RiskInputs {
            alerts: vec![
                alerts(
                    "payments",
                    "api-7d4b9c8f5-x2x7k",
                    "Terminal shell in container",
                    Severity::Critical,
                    1,
                    1.0,
                ),
                alerts(
                    "batch",
                    "worker-7d4b9c8f5-h7rqz",
                    "Read sensitive file untrusted",
                    Severity::Notice,
                    50,
                    50.0,
                ),
            ],
            ..RiskInputs::default()
        };
        let scores = scored(&inputs);
        assert_eq!(find(&scores, "Namespace", "payments").score, 39.3);
        assert_eq!(find(&scores, "Namespace", "batch").score, 17.8);
        assert_eq!(find(&scores, "Deployment", "api").score, 39.3);
        assert_eq!(
            find(&scores, "Namespace", "batch").factors[0].description,
            "50 Notice alerts of rule Read sensitive file untrusted in the last 2h"
        );
    }

    #[test]
    fn worked_example_an_alert_one_half_life_old_counts_half() {
        let inputs = RiskInputs {
            alerts: vec![alerts(
                "shop",
                "web-0",
                "Terminal shell in container",
                Severity::Critical,
                1,
                0.5,
            )],
            ..RiskInputs::default()
        };
        assert_eq!(find(&scored(&inputs), "StatefulSet", "web").score, 22.1);
    }

    #[test]
    fn worked_example_a_workload_with_every_kind_of_input() {
        let image = "registry.example/shop/web:1.4.2";
        let inputs = RiskInputs {
            clusters: vec!["prod".into()],
            alerts: vec![alerts(
                "shop",
                "web-7d4b9c8f5-x2x7k",
                "Terminal shell in container",
                Severity::Critical,
                1,
                1.0,
            )],
            placements: vec![Placement {
                cluster: "prod".into(),
                namespace: Some("shop".into()),
                pod: "web-7d4b9c8f5-x2x7k".into(),
                workload: None,
                image: Some(image.into()),
                node: Some("node-a".into()),
                exposed: true,
            }],
            vulnerabilities: vec![VulnerabilityGroup {
                cluster: "prod".into(),
                image: image.into(),
                severity: Severity::Error,
                count: 10,
                fixable: 4,
            }],
            misconfigurations: vec![MisconfigurationGroup {
                cluster: "prod".into(),
                namespace: None,
                node: Some("node-a".into()),
                image: None,
                severity: Severity::Error,
                count: 2,
            }],
        };
        let scores = scored(&inputs);
        let web = find(&scores, "Deployment", "web");
        assert_eq!(web.score, 62.3);
        let factors: Vec<(FactorKind, &str, f64)> = web
            .factors
            .iter()
            .map(|f| (f.kind, f.description.as_str(), f.points))
            .collect();
        assert_eq!(
            factors,
            [
                (
                    FactorKind::Runtime,
                    "1 Critical alert of rule Terminal shell in container in the last 2h",
                    31.9
                ),
                (
                    FactorKind::Vulnerability,
                    "10 High vulnerabilities (4 fixable) in image registry.example/shop/web:1.4.2",
                    13.3
                ),
                (
                    FactorKind::Exposure,
                    "Reported exposed outside the cluster",
                    12.8
                ),
                (
                    FactorKind::Misconfiguration,
                    "2 failed Error configuration checks on node node-a",
                    4.3
                ),
            ]
        );
        // The namespace sees the same inputs; the cluster every finding of the cluster.
        assert_eq!(find(&scores, "Namespace", "shop").score, 62.3);
        assert_eq!(find(&scores, "Cluster", "prod").score, 62.3);
    }

    #[test]
    fn distinct_rules_weigh_more_than_repeats_of_one_rule() {
        let distinct = RiskInputs {
            alerts: ["A", "B", "C"]
                .iter()
                .map(|r| alerts("ns", "p-0", r, Severity::Warning, 1, 1.0))
                .collect(),
            ..RiskInputs::default()
        };
        let repeated = RiskInputs {
            alerts: vec![alerts("ns", "p-0", "A", Severity::Warning, 3, 3.0)],
            ..RiskInputs::default()
        };
        let d = find(&scored(&distinct), "Namespace", "ns").score;
        let r = find(&scored(&repeated), "Namespace", "ns").score;
        assert_eq!((d, r), (30.2, 22.3));
    }

    #[test]
    fn a_known_cluster_without_inputs_scores_zero_and_empty_objects_are_left_out() {
        let inputs = RiskInputs {
            clusters: vec!["quiet".into()],
            placements: vec![Placement {
                cluster: "quiet".into(),
                namespace: Some("ns".into()),
                pod: "web-0".into(),
                workload: None,
                image: Some("clean:1".into()),
                node: None,
                exposed: false,
            }],
            ..RiskInputs::default()
        };
        let scores = scored(&inputs);
        assert_eq!(scores.len(), 1);
        assert_eq!((scores[0].kind.as_str(), scores[0].score), ("Cluster", 0.0));
        assert!(scores[0].factors.is_empty());
    }

    #[test]
    fn adding_any_input_never_lowers_any_score() {
        let severities = Severity::ALL;
        let mut state: u64 = 42;
        let mut next = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        let mut inputs = RiskInputs {
            clusters: vec!["prod".into()],
            ..RiskInputs::default()
        };
        let mut before: HashMap<(String, String, String), f64> = HashMap::new();
        for _ in 0..300 {
            let ns = ["a", "b", "c"][next(3)].to_string();
            let pod = ["web-7d4b9c8f5-x2x7k", "db-0", "agent-h7rqz"][next(3)].to_string();
            let image = ["img:1", "img:2"][next(2)].to_string();
            let severity = severities[next(severities.len())];
            match next(4) {
                0 => inputs.alerts.push(AlertGroup {
                    weight: next(100) as f64 / 25.0,
                    ..alerts(&ns, &pod, ["R1", "R2"][next(2)], severity, 1, 0.0)
                }),
                1 => inputs.placements.push(Placement {
                    cluster: "prod".into(),
                    namespace: Some(ns),
                    pod,
                    workload: None,
                    image: Some(image),
                    node: Some(["n1", "n2"][next(2)].into()),
                    exposed: next(3) == 0,
                }),
                2 => inputs.vulnerabilities.push(VulnerabilityGroup {
                    cluster: "prod".into(),
                    image,
                    severity,
                    count: 1 + next(5) as i64,
                    fixable: next(2) as i64,
                }),
                _ => inputs.misconfigurations.push(MisconfigurationGroup {
                    cluster: "prod".into(),
                    namespace: (next(2) == 0).then_some(ns),
                    node: Some(["n1", "n2"][next(2)].into()),
                    image: None,
                    severity,
                    count: 1,
                }),
            }
            let scores = scored(&inputs);
            let now: HashMap<_, _> = scores
                .iter()
                .map(|s| {
                    (
                        (
                            s.kind.clone(),
                            s.namespace.clone().unwrap_or_default(),
                            s.name.clone(),
                        ),
                        s.score,
                    )
                })
                .collect();
            for (key, old) in &before {
                let new = now.get(key).copied().unwrap_or(0.0);
                assert!(new >= *old, "{key:?} went from {old} to {new}");
            }
            before = now;
        }
    }

    #[test]
    fn repeats_count_fully_up_to_one_then_logarithmically() {
        assert_eq!(repeats(0.0), 0.0);
        assert_eq!(repeats(0.5), 0.5);
        assert_eq!(repeats(1.0), 1.0);
        assert!((repeats(50.0) - (1.0 + 50f64.ln())).abs() < 1e-12);
        assert_eq!(curve(0.0, 50.0), 0.0);
        assert!((curve(50.0, 50.0) - 63.212).abs() < 0.001);
    }
}
