//! What a Policy may ask of the cluster beyond what its schema allows: the namespaces agents
//! may run in, the images they may run, the hubs they may report to (`manager:` in the
//! configuration). Whoever may write a Policy gets privileged Falco pods on every node, so
//! the manager's operator can narrow that here; a Policy outside the limits is refused in its
//! status and nothing of it is applied.

use falconer_model::crd::Policy;
use serde::{Deserialize, Serialize};

/// `manager:` in the configuration file. Every list empty (the default): no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Namespaces a Policy's `namespace` may name.
    pub allowed_namespaces: Vec<String>,
    /// Image references or prefixes agents may run, e.g. `docker.io/falcosecurity/` or
    /// `ghcr.io/aquasecurity/trivy`. Compared after Docker's normalisation (`falco` is
    /// `docker.io/library/falco`); a prefix ends at `/`, `:` or `@`, so `…/falco` allows
    /// `…/falco:0.41` and `…/falco@sha256:…` but not `…/falco-evil`.
    pub allowed_images: Vec<String>,
    /// Hub base URLs a Policy's `hubUrl` may name (trailing `/` ignored).
    pub hub_urls: Vec<String>,
}

impl Limits {
    /// Refuses entries that could never match, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for (i, ns) in self.allowed_namespaces.iter().enumerate() {
            if !falconer_model::names::is_dns_label(ns) {
                return Err(format!(
                    "manager.allowed_namespaces[{i}]: `{ns}` is not a namespace name"
                ));
            }
        }
        for (i, image) in self.allowed_images.iter().enumerate() {
            if image.trim().is_empty() || image.contains(char::is_whitespace) {
                return Err(format!(
                    "manager.allowed_images[{i}]: `{image}` is not an image reference or prefix"
                ));
            }
        }
        for (i, url) in self.hub_urls.iter().enumerate() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "manager.hub_urls[{i}]: `{url}` is not an http(s) URL"
                ));
            }
        }
        Ok(())
    }

    /// Why `policy` is outside the limits (naming the field), if it is.
    pub fn check(&self, policy: &Policy) -> Result<(), String> {
        let spec = &policy.spec;
        if !self.allowed_namespaces.is_empty() && !self.allowed_namespaces.contains(&spec.namespace)
        {
            return Err(format!(
                "spec.namespace: `{}` is not in the manager's allowed namespaces ({})",
                spec.namespace,
                self.allowed_namespaces.join(", ")
            ));
        }
        if !self.hub_urls.is_empty() {
            let hub = spec.hub_url.trim_end_matches('/');
            if !self.hub_urls.iter().any(|u| u.trim_end_matches('/') == hub) {
                return Err(format!(
                    "spec.hubUrl: `{}` is not one of the manager's hub URLs ({})",
                    spec.hub_url,
                    self.hub_urls.join(", ")
                ));
            }
        }
        if !self.allowed_images.is_empty() {
            for (field, image) in images(policy) {
                if !self.allowed_images.iter().any(|a| image_allowed(a, image)) {
                    return Err(format!(
                        "{field}: `{image}` is not among the manager's allowed images ({})",
                        self.allowed_images.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Every image a Policy's enabled agents run, with its field.
fn images(policy: &Policy) -> Vec<(&'static str, &str)> {
    let spec = &policy.spec;
    let mut out = Vec::new();
    if spec.falco.enabled {
        out.push(("spec.falco.image", spec.falco.image.as_str()));
        if spec.falco.driver != falconer_model::crd::Driver::ModernEbpf {
            out.push((
                "spec.falco.driverLoaderImage",
                spec.falco.driver_loader_image.as_str(),
            ));
        }
    }
    if spec.kube_bench.enabled {
        out.push(("spec.kubeBench.image", spec.kube_bench.image.as_str()));
    }
    if spec.trivy.enabled {
        out.push(("spec.trivy.image", spec.trivy.image.as_str()));
        out.push(("spec.trivy.listerImage", spec.trivy.lister_image.as_str()));
    }
    if spec.kube_bench.enabled || spec.trivy.enabled {
        out.push(("spec.uploaderImage", spec.uploader_image.as_str()));
    }
    out
}

/// An image reference as a container runtime resolves it: `falco` → `docker.io/library/falco`,
/// `falcosecurity/falco` → `docker.io/falcosecurity/falco`.
pub fn normalize(image: &str) -> String {
    let image = image.trim();
    match image.split_once('/') {
        Some((first, _)) if is_registry(first) => image.to_owned(),
        Some(_) => format!("docker.io/{image}"),
        None => format!("docker.io/library/{image}"),
    }
}

fn is_registry(part: &str) -> bool {
    part.contains(['.', ':']) || part == "localhost"
}

/// Whether `image` is `allowed` or starts with it at a boundary (`/`, `:`, `@`, or an
/// allowed entry ending in `/`: a registry such as `quay.io/` or a path such as
/// `falcosecurity/`, which means `docker.io/falcosecurity/`).
pub fn image_allowed(allowed: &str, image: &str) -> bool {
    let image = normalize(image);
    if let Some(path) = allowed.trim().strip_suffix('/') {
        let first = path.split('/').next().unwrap_or_default();
        let prefix = if is_registry(first) {
            format!("{path}/")
        } else {
            format!("docker.io/{path}/")
        };
        return image.starts_with(&prefix);
    }
    let allowed = normalize(allowed);
    image == allowed
        || image
            .strip_prefix(&allowed)
            .is_some_and(|rest| rest.starts_with([':', '@', '/']))
}

#[cfg(test)]
mod tests {
    use super::*;
    use falconer_model::crd::PolicySpec;

    fn policy(spec: PolicySpec) -> Policy {
        Policy::new("prod", spec)
    }

    #[test]
    fn images_are_normalised_as_a_container_runtime_does() {
        assert_eq!(normalize("falco"), "docker.io/library/falco");
        assert_eq!(
            normalize("falcosecurity/falco:0.41"),
            "docker.io/falcosecurity/falco:0.41"
        );
        assert_eq!(normalize("ghcr.io/a/b@sha256:00"), "ghcr.io/a/b@sha256:00");
        assert_eq!(normalize("localhost/x"), "localhost/x");
        assert_eq!(normalize("reg:5000/x"), "reg:5000/x");
    }

    #[test]
    fn an_allowed_prefix_matches_at_a_boundary_only_and_accepts_digests() {
        let allowed = "docker.io/falcosecurity/falco";
        assert!(image_allowed(allowed, "falcosecurity/falco:0.41.0"));
        assert!(image_allowed(
            allowed,
            "docker.io/falcosecurity/falco@sha256:abcd"
        ));
        assert!(image_allowed(allowed, "docker.io/falcosecurity/falco"));
        assert!(!image_allowed(
            allowed,
            "docker.io/falcosecurity/falco-evil:1"
        ));
        assert!(!image_allowed(allowed, "evil.io/falcosecurity/falco:1"));

        assert!(image_allowed(
            "docker.io/falcosecurity/",
            "falcosecurity/falco:1"
        ));
        assert!(!image_allowed(
            "docker.io/falcosecurity/",
            "falcosecurity-x/falco:1"
        ));
        assert!(image_allowed(
            "falcosecurity/",
            "docker.io/falcosecurity/falco:1"
        ));
        assert!(image_allowed("ghcr.io/", "ghcr.io/aquasecurity/trivy:0.6"));
        assert!(!image_allowed("ghcr.io/", "ghcr.io.evil/trivy"));
        assert!(image_allowed(
            "ghcr.io/acme/falconer:1.2",
            "ghcr.io/acme/falconer:1.2"
        ));
        assert!(!image_allowed(
            "ghcr.io/acme/falconer:1.2",
            "ghcr.io/acme/falconer:1.3"
        ));
    }

    #[test]
    fn a_policy_outside_the_limits_is_refused_naming_the_field() {
        let limits = Limits {
            allowed_namespaces: vec!["falconer".into()],
            allowed_images: vec![
                "docker.io/falcosecurity/".into(),
                "docker.io/aquasec/".into(),
            ],
            hub_urls: vec!["https://hub.falconer.svc:8443/".into()],
        };
        let mut spec = PolicySpec {
            namespace: "falconer".into(),
            hub_url: "https://hub.falconer.svc:8443".into(),
            ..PolicySpec::default()
        };
        spec.falco.image = "falcosecurity/falco:0.41.0".into();
        assert_eq!(limits.check(&policy(spec.clone())), Ok(()));

        let mut other = spec.clone();
        other.namespace = "kube-system".into();
        let why = limits.check(&policy(other)).unwrap_err();
        assert!(why.starts_with("spec.namespace: `kube-system`"), "{why}");

        let mut other = spec.clone();
        other.hub_url = "https://attacker.example".into();
        let why = limits.check(&policy(other)).unwrap_err();
        assert!(why.starts_with("spec.hubUrl"), "{why}");

        let mut other = spec.clone();
        other.falco.image = "evil.io/falco:1".into();
        let why = limits.check(&policy(other)).unwrap_err();
        assert!(
            why.starts_with("spec.falco.image: `evil.io/falco:1`"),
            "{why}"
        );

        // A disabled agent's image is not run, so not checked; an enabled one is.
        let mut other = spec.clone();
        other.trivy.image = "evil.io/trivy:1".into();
        assert_eq!(limits.check(&policy(other.clone())), Ok(()));
        other.trivy.enabled = true;
        let why = limits.check(&policy(other)).unwrap_err();
        assert!(why.starts_with("spec.trivy.image"), "{why}");

        assert_eq!(Limits::default().check(&policy(spec)), Ok(()), "no limits");
    }

    #[test]
    fn limits_that_can_never_match_are_refused_naming_the_key() {
        let bad = Limits {
            allowed_namespaces: vec!["Not A Namespace".into()],
            ..Limits::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .starts_with("manager.allowed_namespaces[0]")
        );
        let bad = Limits {
            hub_urls: vec!["hub:8080".into()],
            ..Limits::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .starts_with("manager.hub_urls[0]")
        );
    }
}
