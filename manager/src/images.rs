//! `falconer manager list-images`: the first step of the Trivy job. Lists the images of the
//! running pods in the namespaces a label selector picks (all namespaces without one) and
//! writes them one per line, sorted and without duplicates, for `trivy image` to scan.

use crate::error::{Error, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeSet;
use std::path::Path;

/// Objects per list request; large clusters are read in pages.
const PAGE: u32 = 500;

/// The images of running pods, restricted to `namespaces` when given.
pub fn images(pods: &[Pod], namespaces: Option<&BTreeSet<String>>) -> Vec<String> {
    let mut images = BTreeSet::new();
    for pod in pods {
        let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let selected = namespaces.is_none_or(|ns| pod.namespace().is_some_and(|n| ns.contains(&n)));
        if !running || !selected {
            continue;
        }
        let Some(spec) = &pod.spec else { continue };
        images.extend(
            spec.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .filter(|i| !i.trim().is_empty()),
        );
    }
    images.into_iter().collect()
}

async fn list_all<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut items = Vec::new();
    let mut params = params.limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(items),
        }
    }
}

/// Lists namespaces by `selector` (all when `None`) and the images running in them.
pub async fn list(client: Client, selector: Option<&str>) -> Result<Vec<String>> {
    let namespaces = match selector.filter(|s| !s.trim().is_empty()) {
        Some(selector) => {
            let api: Api<Namespace> = Api::all(client.clone());
            let list = list_all(&api, ListParams::default().labels(selector)).await?;
            Some(list.iter().map(|n| n.name_any()).collect::<BTreeSet<_>>())
        }
        None => None,
    };
    let pods: Api<Pod> = Api::all(client);
    let pods = list_all(&pods, ListParams::default().fields("status.phase=Running")).await?;
    Ok(images(&pods, namespaces.as_ref()))
}

/// `falconer manager list-images`: connects with the pod's service account (or kubeconfig),
/// lists, and writes to `out` (stdout without one). Returns how many images were listed.
pub async fn run(selector: Option<&str>, out: Option<&Path>) -> Result<usize> {
    crate::run::install_crypto_provider();
    let client = Client::try_default().await?;
    let images = list(client, selector).await?;
    match out {
        Some(path) => write(path, &images)?,
        None => images.iter().for_each(|image| println!("{image}")),
    }
    Ok(images.len())
}

/// Writes the list, one image per line (an empty file when there is none).
pub fn write(out: &Path, images: &[String]) -> Result<()> {
    let mut text = images.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    std::fs::write(out, text).map_err(|source| Error::File {
        path: out.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use falconer_testkit::kube::{ApiServer, expect};
    use http::Method;
    use serde_json::json;

    fn pod(namespace: &str, phase: &str, images: &[&str]) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": namespace},
            "spec": {"containers": images.iter().map(|i| json!({"name": "c", "image": i})).collect::<Vec<_>>()},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    #[test]
    fn running_pods_images_in_selected_namespaces_are_listed_once_and_sorted() {
        let pods = [
            pod("shop", "Running", &["nginx:1.27", "redis:7"]),
            pod("shop", "Running", &["nginx:1.27"]),
            pod("shop", "Succeeded", &["batch:1"]),
            pod("kube-system", "Running", &["coredns:1.11"]),
        ];
        let shop = BTreeSet::from(["shop".to_string()]);
        assert_eq!(images(&pods, Some(&shop)), ["nginx:1.27", "redis:7"]);
        assert_eq!(
            images(&pods, None),
            ["coredns:1.11", "nginx:1.27", "redis:7"]
        );
    }

    #[tokio::test]
    async fn the_namespace_selector_goes_to_the_api_and_pods_are_read_page_by_page() {
        let (client, server) = ApiServer::start();
        let script = server.run(vec![
            expect(Method::GET, "/api/v1/namespaces")
                .query("labelSelector=falconer.io%2Fscan%3Dtrue")
                .reply(200, json!({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {},
                                   "items": [{"metadata": {"name": "shop"}}]})),
            expect(Method::GET, "/api/v1/pods")
                .query("fieldSelector=status.phase%3DRunning")
                .query("limit=500")
                .reply(200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"continue": "next"},
                                   "items": [serde_json::to_value(pod("shop", "Running", &["a:1"])).expect("json")]})),
            expect(Method::GET, "/api/v1/pods")
                .query("continue=next")
                .reply(200, json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                                   "items": [serde_json::to_value(pod("other", "Running", &["b:1"])).expect("json"),
                                             serde_json::to_value(pod("shop", "Running", &["c:1"])).expect("json")]})),
        ]);
        let listed = list(client, Some("falconer.io/scan=true"))
            .await
            .expect("lists");
        assert_eq!(listed, ["a:1", "c:1"]);
        script.done().await;
    }

    #[test]
    fn the_list_is_written_one_image_per_line() {
        let dir = std::env::temp_dir().join(format!("falconer-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = dir.join("images.txt");
        write(&out, &["a:1".into(), "b:2".into()]).expect("writes");
        assert_eq!(std::fs::read_to_string(&out).expect("reads"), "a:1\nb:2\n");
        write(&out, &[]).expect("writes");
        assert_eq!(std::fs::read_to_string(&out).expect("reads"), "");
        let _ = std::fs::remove_dir_all(dir);
    }
}
