"""Checks the objects `kubectl kustomize <overlay>` rendered (a YAML file, argv[1]).

1. Every object validates (strict: unknown fields rejected) against the Kubernetes API schemas
   kubernetes-validate bundles; custom resources (KEDA's ScaledObject and TriggerAuthentication,
   the Prometheus Operator's ServiceMonitor) have no schema there and are skipped, each with a
   line saying so.
2. Every workload (Deployment, Job, ...) runs non-root with a read-only root filesystem, no
   privilege escalation, all capabilities dropped, seccomp RuntimeDefault, no hostPath, and no
   emptyDir.
3. KEDA's ScaledObject targets the rendered Deployment, with 1 <= min <= max replicas; an
   azure-eventhub trigger uses checkpointStrategy blobMetadata and azure-workload identity, a
   kafka trigger the SASL secret parameters.
4. A Deployment's probes are /healthz (liveness) and /readyz (readiness) on the port of the
   config's [service] listen, and its terminationGracePeriodSeconds is above the config's
   [service] shutdown_grace_seconds (the config TOML is read from the rendered ConfigMap).

Prints one line per object; exits 1 with every problem listed.
"""

import sys
import tomllib

import kubernetes_validate
import yaml

K8S_VERSION = "1.32.0"  # the AKS versions in support; kubectl on CI is 1.32
CRDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "KEDA custom resource",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "KEDA custom resource",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "Prometheus Operator custom resource",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
SHUTDOWN_GRACE_DEFAULT = 25  # defender_config::defaults::shutdown_grace_seconds

problems = []


def problem(obj, what):
    problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {what}")


def pod_spec(obj):
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def check_security(obj, pod):
    psc = pod.get("securityContext", {})
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(obj, "pod securityContext.seccompProfile.type is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problem(obj, "automountServiceAccountToken is not false")
    for v in pod.get("volumes", []):
        for kind in ("hostPath", "emptyDir"):
            if kind in v:
                problem(obj, f"volume {v['name']} is a {kind}")
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        name = f"container {c['name']}"
        if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
            problem(obj, f"{name}: runAsNonRoot is not true")
        uid = sc.get("runAsUser", psc.get("runAsUser"))
        if not isinstance(uid, int) or uid == 0:
            problem(obj, f"{name}: runAsUser is not a numeric non-root uid ({uid!r})")
        if sc.get("readOnlyRootFilesystem") is not True:
            problem(obj, f"{name}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(obj, f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("privileged", False):
            problem(obj, f"{name}: privileged")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problem(obj, f"{name}: capabilities.drop lacks ALL")
        if sc.get("capabilities", {}).get("add"):
            problem(obj, f"{name}: adds capabilities")
        res = c.get("resources", {})
        if "memory" not in res.get("limits", {}) or "cpu" not in res.get("requests", {}):
            problem(obj, f"{name}: no memory limit or cpu request")


def check_daemon(obj, pod, configs):
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    c = pod["containers"][0]
    config = None
    for m in c.get("volumeMounts", []):
        cm = volumes.get(m["name"], {}).get("configMap")
        if cm and cm["name"] in configs:
            config = configs[cm["name"]]
    if config is None:
        problem(obj, "no ConfigMap with config.toml mounted")
        return
    service = config.get("service", {})
    listen = service.get("listen")
    if not listen:
        problem(obj, "the config has no [service] listen: no probes, no metrics")
        return
    port = int(listen.rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        p = get.get("port")
        p = ports.get(p, p)
        if get.get("path") != path or p != port:
            problem(obj, f"{probe} is not GET {path} on port {port} (has {get.get('path')} on {p})")
    grace = service.get("shutdown_grace_seconds", SHUTDOWN_GRACE_DEFAULT)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if tgps <= grace:
        problem(obj, f"terminationGracePeriodSeconds {tgps} is not above shutdown_grace_seconds {grace}")


def check_keda(o, objs):
    """What the schema skip leaves unchecked in KEDA's objects: the scaler's essentials."""
    if o["kind"] != "ScaledObject":
        return
    spec = o["spec"]
    target = spec["scaleTargetRef"]["name"]
    if not any(x["kind"] == "Deployment" and x["metadata"]["name"] == target for x in objs):
        problem(o, f"scaleTargetRef {target} is not a rendered Deployment")
    if not 1 <= spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 0):
        problem(o, "needs 1 <= minReplicaCount <= maxReplicaCount (maxReplicaCount <= partitions)")
    auths = {x["metadata"]["name"]: x["spec"] for x in objs if x["kind"] == "TriggerAuthentication"}
    for t in spec["triggers"]:
        auth = auths.get(t.get("authenticationRef", {}).get("name"))
        if auth is None:
            problem(o, f"trigger {t['type']}: authenticationRef is not a rendered TriggerAuthentication")
        elif t["type"] == "azure-eventhub":
            if t["metadata"].get("checkpointStrategy") != "blobMetadata":
                problem(o, "azure-eventhub trigger: checkpointStrategy is not blobMetadata")
            if auth.get("podIdentity", {}).get("provider") != "azure-workload":
                problem(o, "azure-eventhub trigger: TriggerAuthentication is not podIdentity azure-workload")
        elif t["type"] == "kafka":
            params = {r["parameter"] for r in auth.get("secretTargetRef", [])}
            if not {"sasl", "username", "password", "tls"} <= params:
                problem(o, f"kafka trigger: TriggerAuthentication lacks sasl/username/password/tls ({params})")
        else:
            problem(o, f"unexpected trigger type {t['type']}")


def main(path):
    with open(path) as f:
        objs = [o for o in yaml.safe_load_all(f) if o]
    configs = {}
    for o in objs:
        if o["kind"] == "ConfigMap" and "config.toml" in o.get("data", {}):
            try:
                configs[o["metadata"]["name"]] = tomllib.loads(o["data"]["config.toml"])
            except tomllib.TOMLDecodeError as e:
                problem(o, f"config.toml is not TOML: {e}")
    workloads = 0
    for o in objs:
        key = (o["apiVersion"], o["kind"])
        name = f"{o['kind']}/{o['metadata']['name']}"
        if key in CRDS:
            print(f"{name}: schema skipped ({CRDS[key]}: kubernetes-validate has only the Kubernetes API's schemas)")
        else:
            try:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
                print(f"{name}: valid (Kubernetes {K8S_VERSION}, strict)")
            except kubernetes_validate.ValidationError as e:
                problem(o, f"invalid: {e.message} at {'.'.join(str(p) for p in e.path)}")
        check_keda(o, objs)
        if o["kind"] in WORKLOADS:
            workloads += 1
            pod = pod_spec(o)
            check_security(o, pod)
            if o["kind"] == "Deployment":
                check_daemon(o, pod, configs)
    if workloads == 0:
        problems.append("no workload rendered")
    if problems:
        print("problems:\n  " + "\n  ".join(problems))
        return 1
    print(f"ok: {len(objs)} objects, {workloads} workload(s) checked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
