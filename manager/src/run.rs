//! `falconer manager`: checks the CRDs, serves `/healthz` and `/metrics`, waits for the leader
//! lease, then runs the Setting and Policy controllers until SIGTERM/SIGINT or until the lease
//! is lost (then the process exits with an error and restarts as a follower).

use crate::controller::{self, Context};
use crate::error::{Error, Result};
use crate::lease::{Elector, LeaseConfig};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::objects::MANAGED_BY;
use crate::server;
use falconer_model::crd::{Policy, Setting};
use futures_util::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::ListParams;
use kube::runtime::controller::{Config, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, CustomResourceExt};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How the manager runs; built by the binary from its configuration and environment.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of `/healthz` and `/metrics`.
    pub listen: SocketAddr,
    /// Cluster name when no Setting names one.
    pub default_cluster: String,
    /// Namespace of the Lease and of Setting Secrets; `None`: the client's (the pod's).
    pub namespace: Option<String>,
    /// Name of the leader Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease; `None`: `$POD_NAME`, else `$HOSTNAME`.
    pub identity: Option<String>,
    /// What a Policy may ask for.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
            default_cluster: "default".into(),
            namespace: None,
            lease_name: "falconer-manager".into(),
            identity: None,
            limits: Limits::default(),
        }
    }
}

/// Selects rustls's aws-lc-rs provider for the process. kube, sqlx and reqwest are all built
/// with aws-lc-rs only; installing it explicitly keeps a future dependency that brings `ring`
/// from turning the first TLS handshake into a panic.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Fails with a clear message when a CRD (or its served version) is missing.
pub async fn check_crds(client: &Client) -> Result<()> {
    async fn probe<K>(api: Api<K>, crd: String) -> Result<()>
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Err(Error::CrdMissing(crd)),
            Err(e) => Err(e.into()),
        }
    }
    probe(
        Api::<Policy>::all(client.clone()),
        Policy::crd_name().into(),
    )
    .await?;
    probe(
        Api::<Setting>::all(client.clone()),
        Setting::crd_name().into(),
    )
    .await?;
    Ok(())
}

fn identity(options: &Options) -> String {
    options
        .identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("falconer-manager-{}", std::process::id()))
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

pub async fn run(options: Options) -> Result<()> {
    install_crypto_provider();
    let client = Client::try_default().await?;
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    check_crds(&client).await?;

    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let (server, addr) = server::start(options.listen, registry)?;
    let server_handle = server.handle();
    tokio::spawn(server);
    tracing::info!(%addr, "Serving /healthz and /metrics");

    let shutdown = shutdown_signal().shared();
    let identity = identity(&options);
    let mut elector = Elector::new(
        Api::namespaced(client.clone(), &namespace),
        LeaseConfig::new(options.lease_name.clone(), identity.clone()),
    );
    tracing::info!(%identity, %namespace, lease = %options.lease_name, "Waiting for the leader lease");
    let acquired = tokio::select! {
        acquired = elector.acquire() => Some(acquired),
        _ = shutdown.clone() => None,
    };
    let result = match acquired {
        None => Ok(()),
        Some(Err(error)) => Err(error),
        Some(Ok(())) => {
            metrics.leader.set(1);
            let recorder = Recorder::new(
                client.clone(),
                Reporter {
                    controller: "falconer-manager".into(),
                    instance: Some(identity),
                },
            );
            let result = tokio::select! {
                _ = controllers(client, recorder, metrics.clone(), &options, namespace, shutdown) => Ok(()),
                lost = elector.hold() => Err(lost),
            };
            metrics.leader.set(0);
            if result.is_ok() {
                elector.release().await;
            }
            result
        }
    };
    server_handle.stop(true).await;
    tracing::info!("Stopped");
    result
}

/// Runs both controllers until `shutdown` resolves.
async fn controllers(
    client: Client,
    recorder: Recorder,
    metrics: Metrics,
    options: &Options,
    namespace: String,
    shutdown: impl Future<Output = ()> + Clone + Send + Sync + 'static,
) {
    let all = watcher::Config::default();
    // Only what the manager made: no cluster-wide cache of every ConfigMap.
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    // Coalesces the burst of events a rollout produces into one pass.
    let config = Config::default().debounce(Duration::from_secs(1));

    let settings_api: Api<Setting> = Api::all(client.clone());
    let setting_controller = Controller::new(settings_api.clone(), all.clone());
    let settings = setting_controller.store();
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            recorder,
            metrics,
            settings.clone(),
            options.default_cluster.clone(),
            namespace,
        )
        .with_limits(options.limits.clone()),
    );

    // A Setting's validity depends on the other Settings: any change rechecks all of them.
    let every_setting = settings.clone();
    let setting_run = setting_controller
        .watches(settings_api.clone(), all.clone(), move |_| {
            every_setting
                .state()
                .iter()
                .map(|s| ObjectRef::from_obj(s.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            controller::reconcile_setting,
            controller::setting_error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});

    let policy_run = async move {
        // The first pass over Policies must see the Settings, or it would stamp agents with
        // the default cluster name and roll them again a moment later.
        if settings.wait_until_ready().await.is_err() {
            return;
        }
        let policy_controller = Controller::new(Api::<Policy>::all(client.clone()), all.clone());
        let policies = policy_controller.store();
        policy_controller
            .owns(Api::<DaemonSet>::all(client.clone()), owned.clone())
            .owns(Api::<CronJob>::all(client.clone()), owned.clone())
            .owns(Api::<ConfigMap>::all(client.clone()), owned.clone())
            .owns(Api::<ServiceAccount>::all(client.clone()), owned.clone())
            .owns(Api::<ClusterRoleBinding>::all(client.clone()), owned)
            // The cluster name comes from the Settings: a change re-renders every Policy.
            .watches(settings_api, all, move |_| {
                policies
                    .state()
                    .iter()
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>()
            })
            .with_config(config)
            .graceful_shutdown_on(shutdown)
            .run(
                controller::reconcile_policy,
                controller::policy_error_policy,
                ctx,
            )
            .for_each(|_| async {})
            .await;
    };
    tokio::join!(setting_run, policy_run);
}

#[cfg(test)]
mod tests {
    use super::*;
    use falconer_testkit::kube::{ApiServer, expect, status};
    use http::Method;
    use serde_json::json;

    #[tokio::test]
    async fn a_missing_crd_is_reported_by_name_with_how_to_install_it() {
        let (client, server) = ApiServer::start();
        let script = server.run(vec![
            expect(Method::GET, "/apis/falconer.io/v1alpha1/policies")
                .query("limit=1")
                .reply(200, json!({"apiVersion": "falconer.io/v1alpha1", "kind": "PolicyList", "metadata": {}, "items": []})),
            expect(Method::GET, "/apis/falconer.io/v1alpha1/settings")
                .reply(404, status(404, "NotFound", "the server could not find the requested resource")),
        ]);
        let error = check_crds(&client).await.expect_err("missing CRD");
        assert!(matches!(&error, Error::CrdMissing(name) if name == "settings.falconer.io"));
        assert!(error.to_string().contains("falconer crdgen"));
        script.done().await;
    }

    #[tokio::test]
    async fn installed_crds_pass_the_check() {
        let (client, server) = ApiServer::start();
        let list = |kind: &str| json!({"apiVersion": "falconer.io/v1alpha1", "kind": kind, "metadata": {}, "items": []});
        let script = server.run(vec![
            expect(Method::GET, "/apis/falconer.io/v1alpha1/policies")
                .reply(200, list("PolicyList")),
            expect(Method::GET, "/apis/falconer.io/v1alpha1/settings")
                .reply(200, list("SettingList")),
        ]);
        check_crds(&client).await.expect("installed");
        script.done().await;
    }
}
