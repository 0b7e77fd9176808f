#!/usr/bin/env python3
"""Rules the Helm chart's renders must keep, beyond what the Kubernetes schemas check.

    check-chart.py NAME=RENDER.yaml ...            # the chart rules, over each render
    check-chart.py --doc-commands SCRIPT DOC.md ...  # every ```sh command of the DOCs is in SCRIPT

Run by scripts/check-manifests with the renders of `helm template`.
"""
import base64
import hashlib
import re
import sys

import yaml

# The API calls each component makes, exactly (see the comments in the RBAC templates).
# A rule added to the chart without a matching change here fails: verbs are reviewed, not
# accumulated.
RBAC = {
    ("ClusterRole", "hub"): {
        ("falconer.io", "settings"): {"list", "watch"},
        ("falconer.io", "settings/status"): {"patch"},
        ("amtd.r6security.com", "securityevents"): {"create", "list", "delete"},
    },
    ("Role", "hub"): {
        ("", "secrets"): {"list", "watch"},
    },
    ("ClusterRole", "manager"): {
        ("falconer.io", "policies"): {"list", "watch"},
        ("falconer.io", "settings"): {"list", "watch"},
        ("falconer.io", "policies/status"): {"patch"},
        ("falconer.io", "settings/status"): {"patch"},
        **{
            (group, resource): {"get", "list", "watch", "create", "patch", "delete"}
            for group, resource in [
                ("", "serviceaccounts"),
                ("", "configmaps"),
                ("apps", "daemonsets"),
                ("batch", "cronjobs"),
                ("rbac.authorization.k8s.io", "clusterrolebindings"),
            ]
        },
        # Only the chart's lister role, by name (below).
        ("rbac.authorization.k8s.io", "clusterroles"): {"bind"},
    },
    ("ClusterRole", "trivy-image-lister"): {
        ("", "namespaces"): {"list"},
        ("", "pods"): {"list"},
    },
    ("Role", "manager"): {
        ("", "secrets"): {"get"},
        ("coordination.k8s.io", "leases"): {"get", "create", "update"},
        ("events.k8s.io", "events"): {"create", "patch"},
    },
}

failures = []


def fail(render, message):
    failures.append(f"{render}: {message}")


def component(obj):
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def check_render(name, path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)

    # RBAC: no wildcard, and exactly the verbs of RBAC above.
    for kind in ("ClusterRole", "Role"):
        for role in by_kind.get(kind, []):
            expected = RBAC.get((kind, component(role)))
            if expected is None:
                fail(name, f"{kind} {role['metadata']['name']}: no expected rules for this component")
                continue
            for rule in role.get("rules", []):
                for field in ("apiGroups", "resources", "verbs"):
                    if "*" in rule.get(field, []):
                        fail(name, f"{kind} {role['metadata']['name']}: wildcard in {field}")
                for group in rule["apiGroups"]:
                    for resource in rule["resources"]:
                        want = expected.get((group, resource))
                        if want is None:
                            fail(name, f"{kind} {role['metadata']['name']}: unexpected {group or 'core'}/{resource}")
                        elif set(rule["verbs"]) != want:
                            fail(name, f"{kind} {role['metadata']['name']}: {group or 'core'}/{resource} "
                                       f"verbs {sorted(rule['verbs'])}, expected {sorted(want)}")
                        if (group, resource) == ("rbac.authorization.k8s.io", "clusterroles") and \
                                rule.get("resourceNames") != ["falconer:trivy-image-lister"]:
                            fail(name, f"{kind} {role['metadata']['name']}: clusterroles without "
                                       f"resourceNames [falconer:trivy-image-lister]")

    # Workloads: non-root, read-only root filesystem, probes, resources, /tmp.
    config_maps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    for deployment in workloads:
        dname = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            fail(name, f"{dname}: pod does not set runAsNonRoot")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            where = f"{dname}/{container['name']}"
            security = container.get("securityContext", {})
            if not security.get("readOnlyRootFilesystem"):
                fail(name, f"{where}: root filesystem not read-only")
            if security.get("allowPrivilegeEscalation") is not False:
                fail(name, f"{where}: privilege escalation allowed")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(name, f"{where}: capabilities not dropped")
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in container:
                    fail(name, f"{where}: no {probe}")
            if not container.get("resources", {}).get("requests"):
                fail(name, f"{where}: no resource requests")
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if "emptyDir" not in volumes.get(mounts.get("/tmp"), {}):
                fail(name, f"{where}: /tmp is not an emptyDir")
            # The configuration parses, and the hub listens where its probes and Service look.
            cm = config_maps.get(volumes.get(mounts.get("/etc/falconer/falconer.yaml"), {})
                                 .get("configMap", {}).get("name"))
            if cm is None:
                fail(name, f"{where}: no configuration mounted")
                continue
            config = yaml.safe_load(cm["data"]["falconer.yaml"])
            if component(deployment) == "hub":
                listens = [int(config["server"]["listen"].rsplit(":", 1)[1])]
                if "metrics_listen" in config["server"]:
                    listens.append(int(config["server"]["metrics_listen"].rsplit(":", 1)[1]))
                ports = [p["containerPort"] for p in container["ports"]]
                if ports != listens:
                    fail(name, f"{where}: listens on {listens}, container ports {ports}")
                if deployment["spec"]["replicas"] > 1 and "FALCONER__STORE__DATABASE_URL" not in \
                        {e["name"] for e in container.get("env", [])}:
                    fail(name, f"{where}: several replicas on SQLite")
                if "data" in volumes and deployment["spec"].get("strategy", {}).get("type") != "Recreate":
                    fail(name, f"{where}: SQLite volume without the Recreate strategy")
                analyst_off = {"name": "FALCONER__ANALYST__ENABLED", "value": "false"} in container.get("env", [])
                separate = any(component(d) == "analyst" for d in by_kind["Deployment"])
                if analyst_off != separate:
                    fail(name, f"{where}: analyst in the hub ({not analyst_off}) and separate ({separate})")
                # The journal's directory is a volume of its own: a claim per replica of a
                # StatefulSet, or an emptyDir; never the read-only root filesystem.
                journal = config.get("ingest", {}).get("journal", {})
                if "FALCONER__STORE__DATABASE_URL" in {e["name"] for e in container.get("env", [])} \
                        and journal.get("enabled", True):
                    at = journal.get("dir", "/var/lib/falconer/journal")
                    claims = {c["metadata"]["name"] for c in deployment["spec"].get("volumeClaimTemplates", [])}
                    volume = mounts.get(at)
                    if deployment["kind"] == "StatefulSet" and volume not in claims:
                        fail(name, f"{where}: journal {at} is not on a claim of the StatefulSet")
                    if deployment["kind"] == "Deployment" and "emptyDir" not in volumes.get(volume, {}):
                        fail(name, f"{where}: journal {at} is not on an emptyDir")

    # Generated tokens: URL-safe (Falco sends the ingest token in a URL), at least 128 bits,
    # and their hashes are the ones the hub's auth Secret configures: an agent's bound to its
    # source and this release's cluster. No token hash is in a ConfigMap.
    auth = {}
    for secret in by_kind.get("Secret", []):
        if secret["metadata"]["name"].endswith("-auth") and "auth.yaml" in secret.get("data", {}):
            auth = yaml.safe_load(base64.b64decode(secret["data"]["auth.yaml"]))["auth"]
    for cm_name, cm in config_maps.items():
        if "auth" in yaml.safe_load(cm["data"]["falconer.yaml"]):
            fail(name, f"ConfigMap {cm_name}: holds the auth section (it belongs in the auth Secret)")
    for secret in by_kind.get("Secret", []):
        kind = secret["metadata"].get("annotations", {}).get("falconer.io/token")
        if not kind:
            continue
        for key, value in secret["data"].items():
            token = base64.b64decode(value)
            digest = hashlib.sha256(token).hexdigest()
            sname = secret["metadata"]["name"]
            if not re.fullmatch(rb"[A-Za-z0-9]{32,}", token):
                fail(name, f"Secret {sname} key {key}: token not URL-safe or too short")
            if kind == "query":
                if digest not in auth.get("query_token_sha256", []):
                    fail(name, f"the query token of Secret {sname} is not configured")
                continue
            entries = [t for t in auth.get("tokens", []) if t["sha256"] == digest]
            if len(entries) != 1 or entries[0].get("sources") != [key] \
                    or entries[0].get("scopes") != ["ingest"] or len(entries[0].get("clusters", [])) != 1:
                fail(name, f"the {key} token of Secret {sname} is not one ingest entry bound to source {key} and one cluster: {entries}")

    # Services select a Deployment's pods and name one of its ports.
    services = by_kind.get("Service", [])
    for service in services:
        selector = service["spec"]["selector"]
        pods = [d["spec"]["template"] for d in workloads
                if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        if len(pods) != 1:
            fail(name, f"Service {service['metadata']['name']} selects {len(pods)} workloads")
            continue
        names = {p["name"] for c in pods[0]["spec"]["containers"] for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in names:
                fail(name, f"Service {service['metadata']['name']}: no container port {port['targetPort']}")

    # ServiceMonitors (not a built-in kind, so kubernetes-validate cannot check them): the
    # fields used, each selecting one Service by a port it has.
    for monitor in by_kind.get("ServiceMonitor", []):
        mname = monitor["metadata"]["name"]
        if monitor.get("apiVersion") != "monitoring.coreos.com/v1":
            fail(name, f"ServiceMonitor {mname}: apiVersion {monitor.get('apiVersion')}")
        spec = monitor.get("spec", {})
        unknown = set(spec) - {"selector", "endpoints"}
        if unknown:
            fail(name, f"ServiceMonitor {mname}: unexpected spec fields {sorted(unknown)}")
        match = spec.get("selector", {}).get("matchLabels", {})
        chosen = [s for s in services if match and match.items() <= s["metadata"]["labels"].items()]
        if len(chosen) != 1:
            fail(name, f"ServiceMonitor {mname} selects {len(chosen)} Services")
            continue
        ports = {p["name"] for p in chosen[0]["spec"]["ports"]}
        for endpoint in spec.get("endpoints", []):
            extra = set(endpoint) - {"port", "path", "interval", "scrapeTimeout", "scheme", "tlsConfig"}
            if extra or endpoint.get("port") not in ports or endpoint.get("path") != "/metrics":
                fail(name, f"ServiceMonitor {mname}: bad endpoint {endpoint}")
            for duration in ("interval", "scrapeTimeout"):
                if not re.fullmatch(r"[0-9]+(ms|s|m|h)", str(endpoint.get(duration, ""))):
                    fail(name, f"ServiceMonitor {mname}: bad {duration}")
    print(f"ok: {name}: {len(docs)} objects keep the chart's rules")


def commands(text):
    """Shell commands of the ```sh blocks, continuation lines joined, comments dropped."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        found += logical_lines(block)
    return found


def logical_lines(text):
    lines, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1].strip() + " "
            continue
        current += stripped
        lines.append(re.sub(r"\s+", " ", current).strip())
        current = ""
    return lines


def check_doc_commands(script, docs):
    with open(script) as f:
        run = set(logical_lines(f.read()))
    for doc in docs:
        with open(doc) as f:
            documented = commands(f.read())
        # The script may keep a command's output: `COMMAND | tee FILE`, `COMMAND >FILE`.
        missing = [c for c in documented
                   if c not in run and not any(r.startswith((c + " |", c + " >")) for r in run)]
        for command in missing:
            failures.append(f"{doc}: `{command}` is not run by {script}")
        if not missing:
            print(f"ok: the {len(documented)} commands of {doc} are all run by {script}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--doc-commands"]:
        check_doc_commands(sys.argv[2], sys.argv[3:])
    else:
        for arg in sys.argv[1:]:
            name, path = arg.split("=", 1)
            check_render(name, path)
    if failures:
        sys.exit("\n".join(failures))
