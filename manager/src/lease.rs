//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several manager
//! replicas exactly one reconciles.
//!
//! Writes are optimistic: a takeover or renewal replaces the Lease with the `resourceVersion`
//! that was read, so of two replicas racing, one gets a 409 and stays a follower. Expiry is
//! judged by the local clock — how long the holder's record has stayed unchanged as this
//! replica saw it — never by comparing another node's timestamps with ours. A leader that
//! cannot renew within `renew_deadline` gives up (the process exits and restarts as a
//! follower) before `duration` runs out, so no two replicas ever act as leader at once.

use crate::error::{Error, Result};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Name of the Lease object.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the lease.
    pub duration: Duration,
    /// How long the leader keeps trying to renew before giving up; less than `duration`.
    pub renew_deadline: Duration,
    /// Time between attempts, for leader and followers alike.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> LeaseConfig {
        LeaseConfig {
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder stopped renewing: take it.
    TakeOver,
    /// We hold it: renew.
    Renew,
    /// Someone else holds it and renewed within `duration`: wait.
    Wait,
}

/// The decision, given the Lease's spec and how long (by our clock) its holder and renew time
/// have stayed unchanged.
pub fn decide(
    spec: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    config: &LeaseConfig,
) -> Decision {
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    match holder {
        None => Decision::TakeOver,
        Some(h) if h == identity => Decision::Renew,
        Some(_) => {
            let duration = spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(config.duration);
            if unchanged_for > duration {
                Decision::TakeOver
            } else {
                Decision::Wait
            }
        }
    }
}

/// A candidate for, or holder of, the lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The holder record last seen and when it was first seen in that state.
    seen: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(api: Api<Lease>, config: LeaseConfig) -> Elector {
        Elector {
            api,
            config,
            seen: None,
        }
    }

    /// One attempt: true when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let record = format!(
            "{:?}/{:?}",
            lease.spec.as_ref().and_then(|s| s.holder_identity.clone()),
            lease.spec.as_ref().and_then(|s| s.renew_time.clone())
        );
        let since = match &self.seen {
            Some((seen, at)) if *seen == record => *at,
            _ => {
                let at = Instant::now();
                self.seen = Some((record, at));
                at
            }
        };
        let decision = decide(
            lease.spec.as_ref(),
            &self.config.identity,
            since.elapsed(),
            &self.config,
        );
        if decision == Decision::Wait {
            return Ok(false);
        }
        let mut next = lease.clone();
        next.spec = Some(self.spec(
            lease.spec.as_ref().filter(|_| decision == Decision::Renew),
            now,
        ));
        if decision == Decision::TakeOver {
            let transitions = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or_default();
            if let Some(spec) = next.spec.as_mut() {
                spec.lease_transitions = Some(transitions + 1);
            }
        }
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Our record: holder, duration, renew time; the acquire time and transitions of `held`
    /// when renewing.
    fn spec(&self, held: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs() as i32),
            acquire_time: Some(
                held.and_then(|h| h.acquire_time.clone())
                    .unwrap_or(MicroTime(now)),
            ),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(held.and_then(|h| h.lease_transitions).unwrap_or_default()),
            ..LeaseSpec::default()
        }
    }

    /// Returns once this replica holds the lease.
    pub async fn acquire(&mut self) -> Result<()> {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "Acquired the leader lease");
                    return Ok(());
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "Reading the leader lease failed"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews until renewing fails for `renew_deadline`; then returns the reason. Never
    /// returns while the lease is held.
    pub async fn hold(&mut self) -> Error {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    return Error::LeaseLost(format!(
                        "another replica holds lease {}",
                        self.config.name
                    ));
                }
                Err(error) => tracing::warn!(%error, "Renewing the leader lease failed"),
            }
            if last_renewed.elapsed() > self.config.renew_deadline {
                return Error::LeaseLost(format!(
                    "could not renew lease {} for {:?}",
                    self.config.name, self.config.renew_deadline
                ));
            }
        }
    }

    /// Gives the lease up on a clean shutdown, so a follower takes over at once instead of
    /// after `duration`.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let ours = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.config.identity.as_str());
        if !ours {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
        }
        if let Err(error) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(%error, "Releasing the leader lease failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use falconer_testkit::kube::{ApiServer, expect};
    use http::Method;
    use serde_json::json;

    fn config() -> LeaseConfig {
        LeaseConfig::new("falconer-manager", "pod-a")
    }

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn an_unheld_lease_is_taken() {
        assert_eq!(
            decide(None, "pod-a", Duration::ZERO, &config()),
            Decision::TakeOver
        );
        let released = LeaseSpec {
            holder_identity: Some(String::new()),
            ..LeaseSpec::default()
        };
        assert_eq!(
            decide(Some(&released), "pod-a", Duration::ZERO, &config()),
            Decision::TakeOver
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        assert_eq!(
            decide(
                Some(&held_by("pod-a")),
                "pod-a",
                Duration::from_secs(60),
                &config()
            ),
            Decision::Renew
        );
    }

    #[test]
    fn another_holder_is_left_alone_until_its_record_is_unchanged_for_the_lease_duration() {
        let other = held_by("pod-b");
        assert_eq!(
            decide(Some(&other), "pod-a", Duration::from_secs(14), &config()),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&other), "pod-a", Duration::from_secs(16), &config()),
            Decision::TakeOver
        );
    }

    #[test]
    fn the_renew_deadline_ends_before_the_lease_expires() {
        let c = config();
        assert!(c.renew_deadline < c.duration);
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_with_this_replica_as_holder() {
        let (client, server) = ApiServer::start();
        let path = "/apis/coordination.k8s.io/v1/namespaces/falconer-system/leases";
        let script = server.run(vec![
            expect(Method::GET, &format!("{path}/falconer-manager")).reply(404, not_found()),
            expect(Method::POST, path)
                .check(|body| {
                    assert_eq!(body["spec"]["holderIdentity"], "pod-a");
                    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
                })
                .echo(201),
        ]);
        let mut elector = Elector::new(Api::namespaced(client, "falconer-system"), config());
        assert!(elector.try_acquire_or_renew().await.expect("no error"));
        script.done().await;
    }

    #[tokio::test]
    async fn losing_the_race_to_create_the_lease_leaves_this_replica_a_follower() {
        let (client, server) = ApiServer::start();
        let path = "/apis/coordination.k8s.io/v1/namespaces/falconer-system/leases";
        let script = server.run(vec![
            expect(Method::GET, &format!("{path}/falconer-manager")).reply(404, not_found()),
            expect(Method::POST, path).reply(409, conflict()),
        ]);
        let mut elector = Elector::new(Api::namespaced(client, "falconer-system"), config());
        assert!(!elector.try_acquire_or_renew().await.expect("no error"));
        script.done().await;
    }

    #[tokio::test]
    async fn a_lease_held_by_a_live_replica_is_not_written() {
        let (client, server) = ApiServer::start();
        let path =
            "/apis/coordination.k8s.io/v1/namespaces/falconer-system/leases/falconer-manager";
        let script = server.run(vec![
            expect(Method::GET, path).reply(200, lease("pod-b", "7")),
        ]);
        let mut elector = Elector::new(Api::namespaced(client, "falconer-system"), config());
        assert!(!elector.try_acquire_or_renew().await.expect("no error"));
        script.done().await;
    }

    #[tokio::test]
    async fn renewing_replaces_the_lease_at_the_version_read() {
        let (client, server) = ApiServer::start();
        let path =
            "/apis/coordination.k8s.io/v1/namespaces/falconer-system/leases/falconer-manager";
        let script = server.run(vec![
            expect(Method::GET, path).reply(200, lease("pod-a", "7")),
            expect(Method::PUT, path)
                .check(|body| {
                    assert_eq!(body["metadata"]["resourceVersion"], "7");
                    assert_eq!(body["spec"]["holderIdentity"], "pod-a");
                    assert_eq!(
                        body["spec"]["leaseTransitions"], 2,
                        "a renewal is no transition"
                    );
                })
                .echo(200),
        ]);
        let mut elector = Elector::new(Api::namespaced(client, "falconer-system"), config());
        assert!(elector.try_acquire_or_renew().await.expect("no error"));
        script.done().await;
    }

    fn lease(holder: &str, version: &str) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "falconer-manager", "namespace": "falconer-system", "resourceVersion": version},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 2,
                     "renewTime": "2026-11-22T10:00:00.000000Z"}
        })
    }

    fn not_found() -> serde_json::Value {
        falconer_testkit::kube::status(
            404,
            "NotFound",
            r#"leases.coordination.k8s.io "falconer-manager" not found"#,
        )
    }

    fn conflict() -> serde_json::Value {
        falconer_testkit::kube::status(
            409,
            "AlreadyExists",
            r#"leases.coordination.k8s.io "falconer-manager" already exists"#,
        )
    }
}
