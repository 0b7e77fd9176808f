#!/usr/bin/env python3
"""Every metric that Falconer's alert rules and Grafana dashboard query is one the binary
really exports, so a renamed metric cannot silently blank a panel or mute an alert.

    check-monitoring.py FALCONER RENDER.yaml

RENDER is a `helm template` of the chart holding the PrometheusRule and the dashboard
ConfigMap (charts/falconer/ci/monitoring-values.yaml). FALCONER runs here, on loopback only,
as each component the chart deploys:

- the hub on PostgreSQL with the ingest journal (DATABASE_URL, else postgres@127.0.0.1:5432;
  a database of its own is made and dropped here, with psql), its analyst off;
- the separate analyst on that database;
- the manager, against FakeKube below: a few lines of the Kubernetes API that give it the
  leader lease and one Policy, take its server-side applies and refuse deletes, so that a
  reconcile creates objects and one fails;

then makes the series created on first use appear (an accepted and an invalid event;
consumers that deliver, retry and dead-letter against FakeSink; retention and risk
computations every second), scrapes every /metrics and compares. Names outside Falconer
(kube-state-metrics, `up`) are allowed by the explicit list EXTERNAL only.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Series the rules and the dashboard may query that Falconer does not export.
EXTERNAL = {
    "up",
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas_available",
    "kube_statefulset_replicas",
    "kube_statefulset_status_replicas_ready",
}

# Words of PromQL that look like metric names: operators, modifiers and literals. Functions
# and aggregations are recognised by the `(` that follows them.
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "inf", "nan"}

WAIT_SECONDS = 30


# --- PromQL ---------------------------------------------------------------------------

def metric_names(expr):
    """The metric names an expression selects (not a parser: enough for the PromQL written
    here, and tested in self_test)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)  # strings
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries: [5m], [$__rate_interval]
    # Label lists of grouping and matching modifiers.
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    if "__name__" in text:
        # {__name__=~"..."} would select metrics this check cannot see.
        sys.exit(f"select metrics by their name, not with __name__: {expr}")
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    names = set()
    for match in re.finditer(r"(?<![\w.$:])([A-Za-z_:][A-Za-z0-9_:]*)", text):
        word = match.group(1)
        if word.lower() in KEYWORDS:
            continue
        if re.match(r"\s*(\(|(by|without)\b)", text[match.end():]):
            continue  # a function, or an aggregation: sum(...), sum by (...) (...)
        names.add(word)
    return names


def self_test():
    cases = {
        'sum by (namespace, job) (rate(falconer_ingest_requests_total{job="a", status=~"429|5.."}[5m])) > 0':
            {"falconer_ingest_requests_total"},
        'histogram_quantile(0.99, sum by (le) (rate(x_bucket{namespace="$namespace"}[$__rate_interval])))':
            {"x_bucket"},
        '(a{r="d"} unless a{r="d"} offset 1h) or increase(a[1h]) >= 3e2': {"a"},
        'max by (namespace) (m) < 1 or absent(m{job="j"})': {"m"},
        'topk(10, max by (cluster, exported_namespace) (s))': {"s"},
        'sum(rate(b_sum[5m])) / on (pod) group_left (node) c': {"b_sum", "c"},
        'rate(falconer_x_total[5m] offset 1h) * 1e-3 > bool 0.5': {"falconer_x_total"},
    }
    for expr, expected in cases.items():
        got = metric_names(expr)
        if got != expected:
            sys.exit(f"check-monitoring.py's own test: {expr!r} gave {sorted(got)}, expected {sorted(expected)}")


# --- what the chart renders ----------------------------------------------------------------

def queries(render_path):
    """(where, PromQL) of every alert/record rule and every dashboard query of the render."""
    with open(render_path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    found = []
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    boards = [d for d in docs if d["kind"] == "ConfigMap"
              and any(k.endswith(".json") for k in d.get("data", {}))]
    if not rules or not boards:
        sys.exit(f"{render_path}: expected a PrometheusRule and a dashboard ConfigMap, found "
                 f"{len(rules)} and {len(boards)}")
    for rule_object in rules:
        for group in rule_object["spec"]["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                found.append((f"PrometheusRule {group['name']}/{name}", rule["expr"]))
    for board in boards:
        for key, text in board["data"].items():
            dashboard = json.loads(text)
            for variable in dashboard.get("templating", {}).get("list", []):
                if variable.get("type") == "query":
                    query = variable["query"]
                    query = query.get("query") if isinstance(query, dict) else query
                    match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
                    found.append((f"dashboard {key} variable ${variable['name']}",
                                  match.group(1) if match else query))
            for panel in all_panels(dashboard.get("panels", [])):
                for target in panel.get("targets", []):
                    if target.get("expr"):
                        found.append((f"dashboard {key} panel {panel.get('title')!r} "
                                      f"query {target.get('refId')}", target["expr"]))
    return found


def all_panels(panels):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


# --- what the binary exports ----------------------------------------------------------------

def exported(text):
    """Series names a /metrics text exposes: each sample's, and each declared family's
    (a counter's `_total`, a histogram's `_bucket`/`_sum`/`_count`)."""
    names = set()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "summary": ["", "_sum", "_count"], "gauge": [""], "unknown": [""]}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(None, 3)
            names.update(family + s for s in suffixes.get(kind.strip(), [""]))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def post(url, body):
    request = urllib.request.Request(url, data=body.encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class FakeSink(BaseHTTPRequestHandler):
    """A consumer's webhook target: /retry answers 503 (retried, degraded), /refuse 400
    (dead letter)."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(503 if self.path.startswith("/retry") else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()


class FakeKube(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for `falconer manager` to take the lease and
    reconcile one Policy (config/examples/policy-ebpf.yaml): lists, gets of what was applied
    (404 before), server-side applies and status patches echoed back, watches that stay
    quiet. Deletes are forbidden, so each reconcile fails after creating the Falco objects."""

    protocol_version = "HTTP/1.1"
    stored = {}
    lock = threading.Lock()
    with open(os.path.join(REPO, "config/examples/policy-ebpf.yaml")) as f:
        policy = yaml.safe_load(f)
    policy["metadata"].update({"uid": str(uuid.uuid4()), "resourceVersion": "1", "generation": 1})

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:
            pass  # a watch the manager gave up on as it stopped

    def status(self, code, reason):
        self.reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "message": f"check-monitoring's fake API: {reason}", "reason": reason, "code": code})

    def body(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return yaml.safe_load(raw) if raw else {}

    def do_GET(self):
        path, _, query = self.path.partition("?")
        params = urllib.parse.parse_qs(query)
        if params.get("watch") in (["true"], ["1"]):
            time.sleep(10)  # no events; the watcher reconnects
            self.reply(200, {})
            return
        with self.lock:
            if path in self.stored:
                self.reply(200, self.stored[path])
                return
        if path.endswith("/policies"):
            self.reply(200, {"kind": "PolicyList", "apiVersion": "falconer.io/v1alpha1",
                             "metadata": {"resourceVersion": "1"}, "items": [self.policy]})
        elif "labelSelector" in params or "limit" in params:
            self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})
        else:
            self.status(404, "NotFound")

    def do_PATCH(self):
        path = self.path.partition("?")[0]
        obj = self.body()
        if path.endswith("/status"):
            obj = dict(self.policy, status=obj.get("status"))
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta["resourceVersion"] = str(time.monotonic_ns())
        with self.lock:
            self.stored[path] = obj
        self.reply(200, obj)

    do_PUT = do_PATCH

    def do_POST(self):
        path = self.path.partition("?")[0]
        obj = self.body()
        obj.setdefault("metadata", {})["resourceVersion"] = "1"
        if obj["metadata"].get("name"):
            with self.lock:
                self.stored[f"{path}/{obj['metadata']['name']}"] = obj
        self.reply(201, obj)

    def do_DELETE(self):
        self.body()
        self.status(403, "Forbidden")


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def database_url():
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return "postgres://postgres@127.0.0.1:5432/postgres"
    except OSError:
        sys.exit("check-monitoring.py: the hub's journal metrics need PostgreSQL: set DATABASE_URL "
                 "(a user that may create databases) or run one on 127.0.0.1:5432 "
                 "(scripts/test finds or starts one)")


def psql(url, sql):
    if not shutil.which("psql"):
        sys.exit("check-monitoring.py: psql is needed to make the hub's database "
                 "(Debian/Ubuntu: apt-get install postgresql-client)")
    subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def with_database(url, name):
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class Components:
    def __init__(self, falconer, work):
        self.falconer, self.work, self.processes = falconer, work, []

    def start(self, name, args, config, env=None):
        path = os.path.join(self.work, f"{name}.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(config, f)
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        process = subprocess.Popen([self.falconer, *args, "--config", path], stdout=log, stderr=subprocess.STDOUT,
                                   env={"PATH": "/usr/bin:/bin", **(env or {})})
        self.processes.append((name, process))
        return process

    def log(self, name):
        with open(os.path.join(self.work, f"{name}.log")) as f:
            return f.read()[-3000:]

    def stop(self):
        for _, process in self.processes:
            process.terminate()
        for _, process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(components, name, process, url):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"falconer {name} exited with {process.returncode}:\n{components.log(name)}")
        try:
            get(url)
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    sys.exit(f"falconer {name} did not answer {url} within {WAIT_SECONDS} s:\n{components.log(name)}")


def main():
    self_test()
    falconer, render = sys.argv[1], sys.argv[2]
    wanted = {}  # metric name -> where it is queried
    for where, expr in queries(render):
        for name in metric_names(expr):
            wanted.setdefault(name, []).append(where)

    url = database_url()
    db = f"falconer_monitoring_check_{os.getpid()}"
    psql(url, f'CREATE DATABASE "{db}"')
    work = tempfile.mkdtemp(prefix="falconer-monitoring-")
    components = Components(falconer, work)
    try:
        sink, kube = serve(FakeSink), serve(FakeKube)
        hub_port, analyst_port, manager_port = free_port(), free_port(), free_port()
        store = {"database_url": with_database(url, db), "data_dir": os.path.join(work, "data")}
        common = {"log": {"level": "warn"}, "kubernetes": {"settings": "off"}}
        hub = components.start("hub", ["hub"], {
            **common,
            "server": {"listen": f"127.0.0.1:{hub_port}"},
            "store": {**store, "retention_interval_secs": 1},
            "ingest": {"journal": {"enabled": True, "dir": os.path.join(work, "journal")}},
            "delivery": {"status_interval_secs": 1, "backoff_initial_ms": 100, "backoff_max_ms": 500},
            "analyst": {"enabled": False},
            "consumers": [
                {"name": "archive", "type": "file", "file": {"path": os.path.join(work, "events.jsonl")}},
                {"name": "retrying", "type": "webhook", "webhook": {"url": f"http://127.0.0.1:{sink}/retry"}},
                {"name": "refusing", "type": "webhook", "webhook": {"url": f"http://127.0.0.1:{sink}/refuse"}},
            ],
        })
        hub_url = f"http://127.0.0.1:{hub_port}"
        wait_ready(components, "hub", hub, f"{hub_url}/readyz")
        with open(os.path.join(REPO, "tests/fixtures/falco/0.36-terminal-shell.json")) as f:
            alert = json.load(f)
        # Recent, so that the analyst scores its namespace (it looks back analyst.lookback_days).
        alert["time"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
        if post(f"{hub_url}/", json.dumps(alert)) != 202:
            sys.exit(f"the hub refused a Falco alert:\n{components.log('hub')}")
        post(f"{hub_url}/", '{"not": "an event"}')  # counted as rejected, reason invalid

        analyst = components.start("analyst", ["analyst", "--listen", f"127.0.0.1:{analyst_port}"], {
            **common, "store": store, "analyst": {"interval_secs": 1}})
        kubeconfig = os.path.join(work, "kubeconfig")
        with open(kubeconfig, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{kube}"}}],
                "users": [{"name": "fake", "user": {"token": "fake"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                          "namespace": "falconer-system"}}],
            }, f)
        manager = components.start("manager", ["manager", "--listen", f"127.0.0.1:{manager_port}"], common,
                                   env={"KUBECONFIG": kubeconfig, "POD_NAME": "falconer-manager-0"})
        targets = {"hub": (hub, f"{hub_url}/metrics"),
                   "analyst": (analyst, f"http://127.0.0.1:{analyst_port}/metrics"),
                   "manager": (manager, f"http://127.0.0.1:{manager_port}/metrics")}
        for name, (process, metrics_url) in targets.items():
            wait_ready(components, name, process, metrics_url)

        # Series appear as their first event happens: scrape until every wanted one is there.
        names, scraped = set(), {}
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            for name, (process, metrics_url) in targets.items():
                if process.poll() is not None:
                    sys.exit(f"falconer {name} exited with {process.returncode}:\n{components.log(name)}")
                scraped[name] = exported(get(metrics_url))
            names = set().union(*scraped.values())
            missing = sorted(set(wanted) - names - EXTERNAL)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        components.stop()
        try:
            psql(url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            shutil.rmtree(work, ignore_errors=True)

    for name in missing:
        print(f"{name}: queried by {'; '.join(sorted(set(wanted[name])))}, but exported by none of "
              f"the hub, the analyst and the manager", file=sys.stderr)
    if missing:
        sys.exit(f"{len(missing)} metric(s) queried but not exported: {', '.join(missing)}")
    external = sorted(set(wanted) & EXTERNAL)
    print(f"ok: the {len(wanted) - len(external)} Falconer metrics that {len(queries(render))} rule and "
          f"dashboard queries use are exported (hub {len(scraped['hub'])}, analyst "
          f"{len(scraped['analyst'])}, manager {len(scraped['manager'])} series names scraped); "
          f"outside Falconer: {', '.join(external)}")


if __name__ == "__main__":
    main()
