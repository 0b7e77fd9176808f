#!/usr/bin/env bash
# End-to-end test on a kind cluster: build the image, install the chart (SQLite trial mode,
# CRDs included), apply a Policy and a Setting with a file consumer, post a Falco alert to
# the hub, and check that it is queryable through /api/v1/events and was written by the file
# consumer; render the alert rules and load the Grafana dashboard as a ConfigMap the way
# docs/operations.md does without the Prometheus Operator; then upgrade the release and check
# the tokens and the data survived.
#
# Runnable by hand against any kind cluster:
#   tests/e2e/run.sh                        # creates kind cluster falconer-e2e if missing
#   KIND_CLUSTER=dev E2E_BUILD=0 tests/e2e/run.sh   # an existing cluster and image
# Needs docker, kind, kubectl, helm, curl and python3. .github/workflows/e2e.yml runs it.
#
# The commands of docs/install.md are run here word for word (scripts/check-manifests
# checks that), so the installation guide cannot drift from what is tested.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
KIND_CLUSTER="${KIND_CLUSTER:-falconer-e2e}"
E2E_BUILD="${E2E_BUILD:-1}"
IMAGE_REPOSITORY="${IMAGE_REPOSITORY:-falconer}"
IMAGE_TAG="${IMAGE_TAG:-e2e}"

step() { printf '\n==> %s\n' "$*"; }
die() {
  echo "FAILED: $*" >&2
  exit 1
}
# Retries "$@" every 2 s for up to $1 seconds (the first argument).
eventually() {
  local seconds="$1"
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 2
  done
}

work="$(mktemp -d)"
port_forward=""
cleanup() {
  local status=$?
  if [ -n "$port_forward" ]; then kill "$port_forward" 2>/dev/null || true; fi
  if [ -n "${central_forward:-}" ]; then kill "$central_forward" 2>/dev/null || true; fi
  if [ "$status" -ne 0 ]; then
    echo "--- diagnostics" >&2
    kubectl get pods,deployments,daemonsets,cronjobs -n falconer-system -o wide >&2 || true
    kubectl get policies.falconer.io,settings.falconer.io -o yaml >&2 || true
    kubectl -n falconer-system logs deployment/falconer-hub --tail 100 >&2 || true
    kubectl -n falconer-system logs deployment/falconer-manager --tail 100 >&2 || true
    kubectl -n falconer-central logs deployment/central-falconer-hub --tail 50 >&2 || true
    kubectl -n falconer-system get events --sort-by .lastTimestamp >&2 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

step "kind cluster $KIND_CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  kind create cluster --name "$KIND_CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$KIND_CLUSTER"

if [ "$E2E_BUILD" = 1 ]; then
  step "building image $IMAGE_REPOSITORY:$IMAGE_TAG"
  docker build -t "$IMAGE_REPOSITORY:$IMAGE_TAG" "$repo"
fi
kind load docker-image "$IMAGE_REPOSITORY:$IMAGE_TAG" --name "$KIND_CLUSTER"

# The guide's commands run from a directory holding the chart and the files it writes.
ln -s "$repo/charts" "$work/charts"
cd "$work"

cat >falconer-values.yaml <<YAML
image:
  repository: $IMAGE_REPOSITORY
  tag: $IMAGE_TAG
  pullPolicy: Never
cluster: e2e
YAML

step "install the chart"
helm upgrade --install falconer charts/falconer --namespace falconer-system --create-namespace --values falconer-values.yaml --wait --timeout 5m
kubectl -n falconer-system rollout status deployment/falconer-hub --timeout 5m
kubectl -n falconer-system rollout status deployment/falconer-manager --timeout 5m
kubectl get crd policies.falconer.io settings.falconer.io

step "tokens the chart generated"
INGEST_TOKEN=$(kubectl -n falconer-system get secret falconer-ingest-token -o jsonpath='{.data.falco}' | base64 -d)
QUERY_TOKEN=$(kubectl -n falconer-system get secret falconer-query-token -o jsonpath='{.data.token}' | base64 -d)
[ "${#INGEST_TOKEN}" -ge 32 ] || die "no ingest token"
[ "${#QUERY_TOKEN}" -ge 32 ] || die "no query token"

step "reach the hub"
kubectl -n falconer-system port-forward service/falconer-hub 8080:8080 &
port_forward=$!
eventually 60 curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || die "port-forward to the hub never answered"
curl -fsS http://127.0.0.1:8080/readyz
echo
status=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/v1/events)
[ "$status" = 401 ] || die "the query API answered $status without a token, expected 401"

step "a Setting with a file consumer, and a Policy"
cat >setting.yaml <<'YAML'
apiVersion: falconer.io/v1alpha1
kind: Setting
metadata:
  name: main
spec:
  cluster: e2e
  consumers:
    - name: archive
      type: file
      file:
        path: /var/lib/falconer/events.jsonl
YAML
cat >policy.yaml <<'YAML'
apiVersion: falconer.io/v1alpha1
kind: Policy
metadata:
  name: default
spec: {}
YAML
kubectl apply --server-side -f setting.yaml
kubectl apply --server-side -f policy.yaml

consumer_active() { # name
  curl -fsS -H "Authorization: Bearer $QUERY_TOKEN" http://127.0.0.1:8080/api/v1/consumers \
    | python3 -c 'import json, sys; c = {x["name"]: x for x in json.load(sys.stdin)["consumers"]}; sys.exit(c.get(sys.argv[1], {}).get("state") != "Active")' "$1"
}
eventually 120 consumer_active archive || die "consumer archive from Setting main never became Active"
echo "consumer archive is Active"

# The manager reconciles the Policy into Falco's DaemonSet in falconer-system; Falco itself
# may not start on every CI kernel, so only the reconciliation is asserted.
eventually 120 kubectl -n falconer-system get daemonset default-falco -o name \
  || die "the manager did not create DaemonSet default-falco"
policy_observed() {
  [ "$(kubectl get policies.falconer.io default -o jsonpath='{.status.observedGeneration}')" = \
    "$(kubectl get policies.falconer.io default -o jsonpath='{.metadata.generation}')" ]
}
eventually 120 policy_observed || die "Policy default has no status for its generation"
kubectl get policies.falconer.io

step "a central hub, and the edge forwarding to it (docs/multi-cluster.md)"
FORWARD_TOKEN=$(openssl rand -hex 32)
FORWARD_SHA256=$(printf %s "$FORWARD_TOKEN" | sha256sum | cut -d' ' -f1)
cat >central-values.yaml <<YAML
image:
  repository: $IMAGE_REPOSITORY
  tag: $IMAGE_TAG
  pullPolicy: Never
cluster: central
auth:
  tokens:
    - {name: edge-hubs, sha256: "$FORWARD_SHA256", scopes: [forward]}
manager:
  enabled: false
hub:
  settings: false
  networkPolicy:
    extraFrom:
      - namespaceSelector:
          matchLabels:
            kubernetes.io/metadata.name: falconer-system
YAML
helm upgrade --install central charts/falconer --namespace falconer-central --create-namespace --values central-values.yaml --wait --timeout 5m
CENTRAL_QUERY_TOKEN=$(kubectl -n falconer-central get secret falconer-query-token -o jsonpath='{.data.token}' | base64 -d)
kubectl -n falconer-system delete secret central-hub-token --ignore-not-found
kubectl -n falconer-system create secret generic central-hub-token --from-literal=token="$FORWARD_TOKEN"
kubectl -n falconer-system label secret central-hub-token falconer.io/consumer-secret=true
cat >setting-central.yaml <<'YAML'
apiVersion: falconer.io/v1alpha1
kind: Setting
metadata:
  name: central
spec:
  consumers:
    - name: central
      type: falconer
      falconer:
        url: http://central-falconer-hub.falconer-central.svc:8080
      secretRef:
        name: central-hub-token
YAML
kubectl apply --server-side -f setting-central.yaml
eventually 120 consumer_active central || die "consumer central from Setting central never became Active"
echo "consumer central is Active"

step "post a Falco alert"
now="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
marker="e2e-$(date +%s)-$$"
cat >falco-alert.json <<JSON
{"hostname": "kind-node", "output": "$now: Critical Terminal shell in container ($marker) k8s_pod_name=api-0 k8s_ns_name=payments", "priority": "Critical", "rule": "Terminal shell in container", "source": "syscall", "tags": ["container", "shell", "mitre_execution"], "time": "$now", "output_fields": {"container.name": "api", "k8s.ns.name": "payments", "k8s.pod.name": "api-0", "proc.name": "bash"}}
JSON
curl -fsS -H "Authorization: Bearer $INGEST_TOKEN" -H 'Content-Type: application/json' --data-binary @falco-alert.json http://127.0.0.1:8080/ingest | tee ingest-reply.json
echo
id=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["accepted"] == 1, r; print(r["ids"][0])' ingest-reply.json)

step "the alert is queryable"
curl -fsS -H "Authorization: Bearer $QUERY_TOKEN" 'http://127.0.0.1:8080/api/v1/events?source=falco&limit=10' | tee events.json
echo
python3 - "$id" <<'PY' || die "event $id not in /api/v1/events with its fields"
import json, sys
event = {e["id"]: e for e in json.load(open("events.json"))["events"]}[sys.argv[1]]
assert event["rule"] == "Terminal shell in container", event
assert event["severity"] == "critical", event
assert event["cluster"] == "e2e", event
assert (event["namespace"], event["pod"]) == ("payments", "api-0"), event
PY
curl -fsS -H "Authorization: Bearer $QUERY_TOKEN" "http://127.0.0.1:8080/api/v1/events/$id" -o /dev/null

step "the file consumer wrote it"
delivered() {
  curl -fsS -H "Authorization: Bearer $QUERY_TOKEN" http://127.0.0.1:8080/api/v1/consumers \
    | python3 -c 'import json, sys; c = {x["name"]: x for x in json.load(sys.stdin)["consumers"]}; sys.exit(c["archive"]["delivered"] < 1)'
}
eventually 60 delivered || die "consumer archive delivered nothing"
curl -fsS -H "Authorization: Bearer $QUERY_TOKEN" http://127.0.0.1:8080/api/v1/consumers
echo
# The hub's image has no shell: a pod mounting the same volume (ReadWriteOnce allows it on
# the same node; kind has one) reads the file.
node=$(kubectl -n falconer-system get pod -l app.kubernetes.io/component=hub -o jsonpath='{.items[0].spec.nodeName}')
kubectl -n falconer-system delete pod e2e-read-archive --ignore-not-found
kubectl -n falconer-system apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: e2e-read-archive
spec:
  restartPolicy: Never
  nodeName: $node
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: cat
      image: docker.io/library/busybox:1.37
      command: [cat, /data/events.jsonl]
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
  volumes:
    - name: data
      persistentVolumeClaim: {claimName: falconer-data, readOnly: true}
YAML
kubectl -n falconer-system wait pod/e2e-read-archive --for=jsonpath='{.status.phase}'=Succeeded --timeout 120s
kubectl -n falconer-system logs e2e-read-archive >archive.jsonl
kubectl -n falconer-system delete pod e2e-read-archive --wait=false
grep -q "\"$id\"" archive.jsonl || die "event $id is not in the archive file"
grep -q "$marker" archive.jsonl || die "the archived event lost its raw payload"
echo "event $id is in /var/lib/falconer/events.jsonl"

step "the central hub received it with the edge's cluster name"
central_forward=""
kubectl -n falconer-central port-forward service/central-falconer-hub 8081:8080 &
central_forward=$!
eventually 60 curl -fsS -o /dev/null http://127.0.0.1:8081/healthz || die "port-forward to the central hub never answered"
forwarded() {
  curl -fsS -H "Authorization: Bearer $CENTRAL_QUERY_TOKEN" "http://127.0.0.1:8081/api/v1/events?cluster=e2e&text=$marker" \
    | python3 -c 'import json, sys; e = json.load(sys.stdin)["events"]; sys.exit(not (len(e) == 1 and e[0]["rule"] == "Terminal shell in container"))'
}
eventually 120 forwarded || die "the alert never reached the central hub"
kill "$central_forward" 2>/dev/null || true
echo "the central hub has the alert, cluster e2e"

if grep -q '"/api/v1/risk"' "$repo/hub/src/routes/openapi.json"; then
  step "risk scores answer"
  curl -fsS -H "Authorization: Bearer $QUERY_TOKEN" http://127.0.0.1:8080/api/v1/risk
  echo
fi

step "metrics"
curl -fsS http://127.0.0.1:8080/metrics | grep -E '^falconer_ingest_events_accepted_total' \
  || die "no ingest metrics"

step "alert rules and dashboard without the Operator, as docs/operations.md makes them"
helm template falconer charts/falconer --namespace falconer-system --set prometheusRule.enabled=true --set prometheusRule.force=true --show-only templates/prometheusrule.yaml >prometheusrule.yaml
grep -q '^kind: PrometheusRule$' prometheusrule.yaml || die "no PrometheusRule rendered"
kubectl create namespace monitoring --dry-run=client -o yaml | kubectl apply -f -
kubectl delete configmap falconer-dashboard --namespace monitoring --ignore-not-found
kubectl create configmap falconer-dashboard --namespace monitoring --from-file=charts/falconer/dashboards/falconer.json
kubectl label configmap falconer-dashboard --namespace monitoring grafana_dashboard=1
kubectl get configmap falconer-dashboard --namespace monitoring -o jsonpath='{.data.falconer\.json}' \
  | python3 -c 'import json, sys; json.load(sys.stdin)' || die "the dashboard ConfigMap holds no dashboard"

step "upgrade: same tokens, same data"
kill "$port_forward" 2>/dev/null || true
wait "$port_forward" 2>/dev/null || true
port_forward=""
kubectl apply --server-side --force-conflicts -f charts/falconer/crds/
helm upgrade falconer charts/falconer --namespace falconer-system --values falconer-values.yaml --wait --timeout 5m
kubectl -n falconer-system rollout status deployment/falconer-hub --timeout 5m
[ "$(kubectl -n falconer-system get secret falconer-ingest-token -o jsonpath='{.data.falco}' | base64 -d)" = "$INGEST_TOKEN" ] \
  || die "the upgrade changed the ingest token"
kubectl -n falconer-system port-forward service/falconer-hub 8080:8080 &
port_forward=$!
eventually 60 curl -fsS -o /dev/null http://127.0.0.1:8080/readyz || die "the hub is not ready after the upgrade"
curl -fsS -H "Authorization: Bearer $QUERY_TOKEN" "http://127.0.0.1:8080/api/v1/events/$id" -o /dev/null \
  || die "event $id was lost by the upgrade"

step "end-to-end test passed"
