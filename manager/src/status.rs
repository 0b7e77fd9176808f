//! Status of Policies and Settings, rebuilt from scratch on every pass from what the pass
//! observed. Pure: the only memory of earlier passes is a condition's `lastTransitionTime`,
//! kept while its status does not change.

use crate::objects::Agent;
use falconer_model::crd::{FalcoCounts, Policy, PolicyStatus, ScheduleState, SettingStatus};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::collections::BTreeMap;

pub const READY: &str = "Ready";

/// Condition type of an agent.
pub fn condition_type(agent: Agent) -> &'static str {
    match agent {
        Agent::Falco => "FalcoReady",
        Agent::KubeBench => "KubeBenchReady",
        Agent::Trivy => "TrivyReady",
    }
}

/// What happened to one agent during a pass.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentOutcome {
    /// Disabled, and its objects are gone.
    Disabled,
    /// Applied; the workload as the API server returned it.
    Falco(Box<DaemonSet>),
    Scheduled(Box<CronJob>),
    /// Applying or deleting failed; the message says which object and why.
    Failed(String),
}

/// A condition; `lastTransitionTime` is carried over from `previous` when the status is the
/// same, so a steady state writes an identical status (and triggers nothing).
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The agent's condition and, for Falco, its pod counts.
fn agent_condition(
    agent: Agent,
    outcome: &AgentOutcome,
    generation: Option<i64>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let (ok, reason, message) = match outcome {
        AgentOutcome::Disabled => (true, "Disabled", format!("{agent} is disabled")),
        AgentOutcome::Failed(message) => (false, "ApplyFailed", message.clone()),
        AgentOutcome::Falco(ds) => falco_readiness(ds),
        AgentOutcome::Scheduled(cron) => {
            let schedule = cron
                .spec
                .as_ref()
                .map(|s| s.schedule.as_str())
                .unwrap_or_default();
            let last = cron
                .status
                .as_ref()
                .and_then(|s| s.last_successful_time.as_ref())
                .map(|t| format!("; last success {}", t.0))
                .unwrap_or_else(|| "; no successful run yet".into());
            (
                true,
                "Scheduled",
                format!("{agent} runs on schedule `{schedule}`{last}"),
            )
        }
    };
    condition(
        condition_type(agent),
        ok,
        reason,
        message,
        generation,
        previous,
        now,
    )
}

fn falco_readiness(ds: &DaemonSet) -> (bool, &'static str, String) {
    let counts = falco_counts(ds);
    let status = ds.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation);
    if status.is_none() || observed < ds.metadata.generation {
        return (
            false,
            "Progressing",
            "waiting for the DaemonSet controller to roll out the new pod template".into(),
        );
    }
    if counts.desired == 0 {
        return (
            false,
            "NoNodes",
            "no node matches the node selector and tolerations".into(),
        );
    }
    if counts.ready < counts.desired || counts.updated < counts.desired {
        return (
            false,
            "Progressing",
            format!(
                "{} of {} Falco pods ready, {} updated",
                counts.ready, counts.desired, counts.updated
            ),
        );
    }
    (
        true,
        "Running",
        format!("{} of {} Falco pods ready", counts.ready, counts.desired),
    )
}

pub fn falco_counts(ds: &DaemonSet) -> FalcoCounts {
    let status = ds.status.clone().unwrap_or_default();
    let updated = status.updated_number_scheduled.unwrap_or_default();
    FalcoCounts {
        desired: status.desired_number_scheduled,
        ready: status.number_ready,
        updated,
        summary: format!(
            "{}/{}",
            status.number_ready, status.desired_number_scheduled
        ),
    }
}

fn schedule_state(cron: &CronJob) -> ScheduleState {
    let status = cron.status.clone().unwrap_or_default();
    ScheduleState {
        schedule: cron
            .spec
            .as_ref()
            .map(|s| s.schedule.clone())
            .unwrap_or_default(),
        active: status.active.map(|a| a.len()).unwrap_or_default() as i32,
        last_schedule_time: status.last_schedule_time,
        last_successful_time: status.last_successful_time,
    }
}

/// The Policy's status after a pass with these per-agent outcomes.
pub fn policy_status(
    policy: &Policy,
    cluster: &str,
    outcomes: &BTreeMap<Agent, AgentOutcome>,
    now: &Time,
) -> PolicyStatus {
    let generation = policy.metadata.generation;
    let previous = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let mut conditions = Vec::new();
    let mut not_ready = Vec::new();
    let mut status = PolicyStatus {
        observed_generation: generation,
        cluster: Some(cluster.to_owned()),
        ..PolicyStatus::default()
    };
    for agent in Agent::ALL {
        let outcome = outcomes
            .get(&agent)
            .cloned()
            .unwrap_or_else(|| AgentOutcome::Failed(format!("{agent} was not reconciled")));
        let c = agent_condition(agent, &outcome, generation, previous, now);
        if c.status != "True" {
            not_ready.push(format!("{}: {}", c.type_, c.message));
        }
        conditions.push(c);
        match &outcome {
            AgentOutcome::Falco(ds) => status.falco = Some(falco_counts(ds)),
            AgentOutcome::Scheduled(cron) if agent == Agent::KubeBench => {
                status.kube_bench = Some(schedule_state(cron));
            }
            AgentOutcome::Scheduled(cron) => status.trivy = Some(schedule_state(cron)),
            _ => {}
        }
    }
    let ready = if not_ready.is_empty() {
        condition(
            READY,
            true,
            "AgentsReady",
            "every enabled agent runs as declared".into(),
            generation,
            previous,
            now,
        )
    } else {
        condition(
            READY,
            false,
            "AgentsNotReady",
            not_ready.join("; "),
            generation,
            previous,
            now,
        )
    };
    conditions.insert(0, ready);
    status.conditions = conditions;
    status
}

/// The status of a Policy the manager refuses to act on (only reachable for objects that
/// skipped the CRD's validation, e.g. written under an older CRD).
pub fn invalid_policy_status(policy: &Policy, reason: &str, now: &Time) -> PolicyStatus {
    let previous = policy
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    PolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: vec![condition(
            READY,
            false,
            "InvalidSpec",
            reason.to_owned(),
            policy.metadata.generation,
            previous,
            now,
        )],
        ..PolicyStatus::default()
    }
}

/// The manager's part of a Setting's status: `Valid`, `SecretsResolved`, `Ready`. The hub's
/// part (`consumers`) is left out, so server-side apply leaves it alone.
pub fn setting_status(
    generation: Option<i64>,
    previous: &[Condition],
    problems: &[String],
    secret_problems: &[String],
    now: &Time,
) -> SettingStatus {
    let valid = condition(
        "Valid",
        problems.is_empty(),
        if problems.is_empty() {
            "Valid"
        } else {
            "Invalid"
        },
        if problems.is_empty() {
            "the Setting is consistent with the other Settings".into()
        } else {
            problems.join("; ")
        },
        generation,
        previous,
        now,
    );
    let secrets = condition(
        "SecretsResolved",
        secret_problems.is_empty(),
        if secret_problems.is_empty() {
            "SecretsFound"
        } else {
            "SecretsMissing"
        },
        if secret_problems.is_empty() {
            "every secretRef exists with the keys its sink reads".into()
        } else {
            secret_problems.join("; ")
        },
        generation,
        previous,
        now,
    );
    let ok = problems.is_empty() && secret_problems.is_empty();
    let ready = condition(
        READY,
        ok,
        if ok { "Ready" } else { "NotReady" },
        if ok {
            "the hub can use every consumer".into()
        } else {
            "see the Valid and SecretsResolved conditions".into()
        },
        generation,
        previous,
        now,
    );
    SettingStatus {
        observed_generation: generation,
        conditions: vec![ready, valid, secrets],
        consumers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::tests::all_enabled;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;
    use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus};
    use k8s_openapi::jiff::Timestamp;

    pub fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_800_000_000 + second).expect("timestamp"))
    }

    pub fn daemon_set(generation: i64, observed: i64, desired: i32, ready: i32) -> DaemonSet {
        let mut ds = DaemonSet::default();
        ds.metadata.generation = Some(generation);
        ds.status = Some(DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: desired,
            current_number_scheduled: desired,
            number_ready: ready,
            updated_number_scheduled: Some(desired),
            ..Default::default()
        });
        ds
    }

    fn cron(schedule: &str) -> CronJob {
        CronJob {
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                ..Default::default()
            }),
            status: Some(CronJobStatus::default()),
            ..Default::default()
        }
    }

    fn outcomes(falco: AgentOutcome) -> BTreeMap<Agent, AgentOutcome> {
        BTreeMap::from([
            (Agent::Falco, falco),
            (
                Agent::KubeBench,
                AgentOutcome::Scheduled(Box::new(cron("0 3 * * *"))),
            ),
            (Agent::Trivy, AgentOutcome::Disabled),
        ])
    }

    fn find<'a>(status: &'a PolicyStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn falco_is_ready_when_every_desired_pod_is_ready_and_updated() {
        let p = all_enabled();
        let status = policy_status(
            &p,
            "c",
            &outcomes(AgentOutcome::Falco(Box::new(daemon_set(2, 2, 3, 3)))),
            &at(0),
        );
        let falco = find(&status, "FalcoReady");
        assert_eq!(
            (falco.status.as_str(), falco.reason.as_str()),
            ("True", "Running")
        );
        assert_eq!(find(&status, "Ready").status, "True");
        assert_eq!(
            status.falco,
            Some(FalcoCounts {
                desired: 3,
                ready: 3,
                updated: 3,
                summary: "3/3".into()
            })
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.cluster.as_deref(), Some("c"));
    }

    #[test]
    fn falco_is_not_ready_while_pods_start_and_ready_says_which_agent_waits() {
        let p = all_enabled();
        let status = policy_status(
            &p,
            "c",
            &outcomes(AgentOutcome::Falco(Box::new(daemon_set(2, 2, 3, 1)))),
            &at(0),
        );
        let falco = find(&status, "FalcoReady");
        assert_eq!(falco.status, "False");
        assert_eq!(falco.reason, "Progressing");
        assert_eq!(falco.message, "1 of 3 Falco pods ready, 3 updated");
        let ready = find(&status, "Ready");
        assert_eq!(ready.status, "False");
        assert!(ready.message.starts_with("FalcoReady: 1 of 3"));
    }

    #[test]
    fn a_daemonset_not_yet_observed_by_its_controller_is_progressing() {
        let status = policy_status(
            &all_enabled(),
            "c",
            &outcomes(AgentOutcome::Falco(Box::new(daemon_set(3, 2, 3, 3)))),
            &at(0),
        );
        assert_eq!(find(&status, "FalcoReady").reason, "Progressing");
    }

    #[test]
    fn no_matching_node_is_reported_as_such() {
        let status = policy_status(
            &all_enabled(),
            "c",
            &outcomes(AgentOutcome::Falco(Box::new(daemon_set(1, 1, 0, 0)))),
            &at(0),
        );
        assert_eq!(find(&status, "FalcoReady").reason, "NoNodes");
    }

    #[test]
    fn a_disabled_agent_is_true_with_reason_disabled_and_does_not_block_ready() {
        let status = policy_status(
            &all_enabled(),
            "c",
            &outcomes(AgentOutcome::Disabled),
            &at(0),
        );
        let falco = find(&status, "FalcoReady");
        assert_eq!(
            (falco.status.as_str(), falco.reason.as_str()),
            ("True", "Disabled")
        );
        assert_eq!(find(&status, "Ready").status, "True");
        assert_eq!(status.falco, None);
        assert_eq!(
            status.kube_bench.map(|k| k.schedule).as_deref(),
            Some("0 3 * * *")
        );
    }

    #[test]
    fn a_failed_agent_carries_the_error_and_makes_the_policy_not_ready() {
        let status = policy_status(
            &all_enabled(),
            "c",
            &outcomes(AgentOutcome::Failed(
                "DaemonSet falconer-system/prod-falco: forbidden".into(),
            )),
            &at(0),
        );
        let falco = find(&status, "FalcoReady");
        assert_eq!(falco.reason, "ApplyFailed");
        assert!(find(&status, "Ready").message.contains("forbidden"));
        assert_eq!(
            find(&status, "KubeBenchReady").reason,
            "Scheduled",
            "other agents are unaffected"
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_until_their_status_changes() {
        let mut p = all_enabled();
        let ready = || outcomes(AgentOutcome::Falco(Box::new(daemon_set(1, 1, 2, 2))));
        let first = policy_status(&p, "c", &ready(), &at(0));
        p.status = Some(first.clone());
        let second = policy_status(&p, "c", &ready(), &at(60));
        assert_eq!(first, second, "a steady state rewrites the same status");
        p.status = Some(second);
        let third = policy_status(
            &p,
            "c",
            &outcomes(AgentOutcome::Falco(Box::new(daemon_set(1, 1, 2, 1)))),
            &at(120),
        );
        assert_eq!(find(&third, "FalcoReady").last_transition_time, at(120));
        assert_eq!(find(&third, "KubeBenchReady").last_transition_time, at(0));
    }

    #[test]
    fn the_ready_condition_comes_first() {
        let status = policy_status(
            &all_enabled(),
            "c",
            &outcomes(AgentOutcome::Disabled),
            &at(0),
        );
        let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["Ready", "FalcoReady", "KubeBenchReady", "TrivyReady"]
        );
    }

    #[test]
    fn a_setting_with_problems_is_invalid_and_not_ready() {
        let status = setting_status(
            Some(4),
            &[],
            &["consumer x: defined twice".into()],
            &[],
            &at(0),
        );
        let by_type = |t: &str| {
            status
                .conditions
                .iter()
                .find(|c| c.type_ == t)
                .map(|c| (c.status.clone(), c.reason.clone()))
        };
        assert_eq!(by_type("Valid"), Some(("False".into(), "Invalid".into())));
        assert_eq!(
            by_type("SecretsResolved"),
            Some(("True".into(), "SecretsFound".into()))
        );
        assert_eq!(by_type("Ready"), Some(("False".into(), "NotReady".into())));
        assert_eq!(status.observed_generation, Some(4));
        assert!(status.consumers.is_empty(), "the hub owns consumer status");
    }
}
