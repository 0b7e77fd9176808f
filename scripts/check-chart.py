#!/usr/bin/env python3
"""Rules the Helm chart's renders must keep, beyond what the Kubernetes schemas check.

    check-chart.py NAME=RENDER.yaml ...            # the chart rules, over each render
    check-chart.py --doc-commands SCRIPT DOC.md ...  # every ```sh command of the DOCs is in SCRIPT

Run by scripts/check-manifests with the renders of `helm template`.
"""
import base64
import hashlib
import json
import os
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
        ("wgpolicyk8s.io", "policyreports"): {"get", "create", "patch"},
        ("wgpolicyk8s.io", "clusterpolicyreports"): {"get", "create", "patch"},
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
    # Falconer's configuration ConfigMaps (the dashboard's is checked below).
    config_maps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])
                   if "falconer.yaml" in c.get("data", {})}
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

    for rule_object in by_kind.get("PrometheusRule", []):
        check_prometheus_rule(name, rule_object, services, by_kind)
    for cm in by_kind.get("ConfigMap", []):
        if "falconer.yaml" not in cm.get("data", {}):
            check_dashboard(name, cm)
    print(f"ok: {name}: {len(docs)} objects keep the chart's rules")


SEVERITIES = {"critical", "warning", "info"}
DURATION = r"([0-9]+(ms|s|m|h|d|w|y))+"


def runbook_anchors():
    """The anchors of docs/operations.md's headings, as GitHub makes them."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "operations.md")
    with open(path) as f:
        headings = re.findall(r"^#+\s+(.*?)\s*$", f.read(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def check_prometheus_rule(name, rule_object, services, by_kind):
    """A PrometheusRule (not a built-in kind, so kubernetes-validate cannot check it): the
    Operator's fields only; every alert with a severity, a summary, a description and a
    runbook_url into docs/operations.md; selectors naming this release's scrape jobs (the
    Services its ServiceMonitors select) in its namespace, and its hub workload."""
    rname = f"PrometheusRule {rule_object['metadata']['name']}"
    if rule_object.get("apiVersion") != "monitoring.coreos.com/v1":
        fail(name, f"{rname}: apiVersion {rule_object.get('apiVersion')}")
    spec = rule_object.get("spec", {})
    if set(spec) != {"groups"}:
        fail(name, f"{rname}: spec fields {sorted(spec)}, expected [groups]")
    namespace = rule_object["metadata"]["namespace"]
    jobs = {s["metadata"]["name"] for s in services if s["metadata"]["namespace"] == namespace}
    hub = [d["metadata"]["name"] for kind in ("Deployment", "StatefulSet")
           for d in by_kind.get(kind, []) if component(d) == "hub"]
    anchors = runbook_anchors()
    groups = spec.get("groups", [])
    if len({g.get("name") for g in groups}) != len(groups):
        fail(name, f"{rname}: group names repeat")
    alerts = set()
    for group in groups:
        if set(group) - {"name", "rules", "interval", "limit"} or not group.get("rules"):
            fail(name, f"{rname}: group {group.get('name')}: unexpected fields or no rules")
        for rule in group.get("rules", []):
            what = f"{rname} {group.get('name')}/{rule.get('alert') or rule.get('record')}"
            if set(rule) - {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"} \
                    or ("alert" in rule) == ("record" in rule) or not isinstance(rule.get("expr"), str):
                fail(name, f"{what}: not one alert or record with an expr: {sorted(rule)}")
                continue
            for duration in ("for", "keep_firing_for"):
                if duration in rule and not re.fullmatch(DURATION, str(rule[duration])):
                    fail(name, f"{what}: bad {duration} {rule[duration]!r}")
            for field in ("labels", "annotations"):
                if not all(isinstance(v, str) for v in rule.get(field, {}).values()):
                    fail(name, f"{what}: {field} must be strings")
            if "<" in rule["expr"] and re.search(r"<[a-z_]+>", rule["expr"]):
                fail(name, f"{what}: a placeholder of files/alerts.yaml is left: {rule['expr']}")
            if group["name"] == "falconer-additional" or "record" in rule:
                continue
            alerts.add(rule["alert"])
            if rule.get("labels", {}).get("severity") not in SEVERITIES:
                fail(name, f"{what}: severity label not one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations", {})
            missing = {"summary", "description", "runbook_url"} - set(annotations)
            if missing:
                fail(name, f"{what}: no {sorted(missing)} annotation")
            anchor = annotations.get("runbook_url", "").rpartition("#")[2]
            if anchor != rule["alert"].lower() or anchor not in anchors:
                fail(name, f"{what}: runbook_url {annotations.get('runbook_url')!r} is not a heading "
                           f"`{rule['alert']}` of docs/operations.md")
            for label, value in re.findall(r'\b(job|namespace|deployment|statefulset)="([^"]*)"', rule["expr"]):
                if (label == "job" and value not in jobs) or (label == "namespace" and value != namespace) \
                        or (label in ("deployment", "statefulset") and value not in hub):
                    fail(name, f"{what}: {label}=\"{value}\" is not this release's "
                               f"(jobs {sorted(jobs)}, namespace {namespace}, hub {hub})")
    if alerts and not alerts >= {"FalconerIngestRefusing", "FalconerHubNotReady", "FalconerDeadLetters"}:
        fail(name, f"{rname}: the hub's alerts are missing: {sorted(alerts)}")


def check_dashboard(name, cm):
    """A dashboard ConfigMap: labelled for Grafana's sidecar, each JSON file a dashboard whose
    queries use the $datasource variable and whose panels have unique ids and fit the grid."""
    cname = f"ConfigMap {cm['metadata']['name']}"
    files = {k: v for k, v in cm.get("data", {}).items() if k.endswith(".json")}
    if not files:
        fail(name, f"{cname}: neither Falconer's configuration nor a dashboard")
    for key, text in files.items():
        try:
            board = json.loads(text)
        except ValueError as e:
            fail(name, f"{cname} {key}: not JSON: {e}")
            continue
        variables = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
        if variables.get("datasource", {}).get("type") != "datasource" or not board.get("uid"):
            fail(name, f"{cname} {key}: no uid, or no datasource variable")
        ids = []
        for panel in board.get("panels", []):
            ids.append(panel.get("id"))
            grid = panel.get("gridPos", {})
            if grid.get("x", 0) + grid.get("w", 0) > 24:
                fail(name, f"{cname} {key}: panel {panel.get('title')!r} is wider than the grid")
            if panel.get("type") == "row":
                continue
            if panel.get("datasource", {}).get("uid") != "${datasource}" or not panel.get("targets"):
                fail(name, f"{cname} {key}: panel {panel.get('title')!r} does not query ${{datasource}}")
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("uid") != "${datasource}":
                    fail(name, f"{cname} {key}: panel {panel.get('title')!r} query {target.get('refId')} "
                               f"does not use ${{datasource}}")
        if len(ids) != len(set(ids)):
            fail(name, f"{cname} {key}: panel ids repeat")


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
