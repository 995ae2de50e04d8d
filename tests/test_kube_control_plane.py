"""The operator (``fluidv operator``, a process of its own) against a real control plane:
kube-apiserver validating and pruning with the project's CRDs, the controller manager
making the StatefulSets' pods and collecting garbage, the scheduler placing them, and
KWOK playing the kubelet of three nodes (pods become Running and Ready, Job pods
Succeeded). Nothing here plays the kubelet by hand."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from control_plane import (
    ControlPlane,
    OperatorProcess,
    create_resource,
    project_crds,
    resource_status,
)

from fluid_core.kube import KubeClient, Ref
from vineyard_runtime.plumbing.ports import free_ports

API = "data.fluid.io/v1alpha1"
NS = "default"
ROOT = Path(__file__).resolve().parent.parent
#: Fluid's own SDK (fluid-pysdk 1.0.4) lives in a venv of its own (``make test`` makes it).
SDK_PYTHON = os.environ.get("FLUIDV_PYSDK_PYTHON", str(ROOT / ".venv-fluid-pysdk" / "bin" / "python"))
FLOWS = str(Path(__file__).resolve().parent / "fluid_pysdk_flows.py")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory):
    crds = project_crds()
    with ControlPlane(tmp_path_factory.mktemp("control-plane"), nodes=3, crds=crds) as plane:
        yield plane


@pytest.fixture(scope="module")
def webhook_tls(control_plane) -> tuple[str, str]:
    from fluid_core.operator.certs import self_signed

    return self_signed(["127.0.0.1"], control_plane.workdir / "webhook")


@pytest.fixture(scope="module")
def webhook_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def operator(control_plane, webhook_tls, webhook_port):
    running = OperatorProcess(control_plane, NS, webhook_tls, webhook_port)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def kube(control_plane, operator) -> KubeClient:
    assert operator.running(), control_plane.log_tail("operator")
    return KubeClient(control_plane.api_client())


create = functools.partial(create_resource, namespace=NS)
status_of = functools.partial(resource_status, namespace=NS)


def pods_of(kube: KubeClient, statefulset: str) -> list[dict[str, Any]]:
    return [p for p in kube.list(Ref("v1", "Pod", NS)) if any(
        o.get("kind") == "StatefulSet" and o.get("name") == statefulset
        for o in p["metadata"].get("ownerReferences") or [])]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def test_a_runtime_binds_with_real_pods_scales_prunes_removed_fields_and_is_collected(control_plane, kube):
    wait = control_plane.wait_for
    create(kube, "Dataset", "real", {})
    create(kube, "VineyardRuntime", "real", {"replicas": 2, "worker": {"nodeSelector": {"type": "kwok"}}})
    dataset = wait(lambda: (s := status_of(kube, "Dataset", "real")).get("phase") == "Bound" and s, timeout=120,
                   message="dataset bound")
    assert dataset["runtimes"][0]["name"] == "real"
    workers = pods_of(kube, "real-worker")
    assert len(workers) == 2 and all(ready(p) for p in workers)
    assert len({p["spec"]["nodeName"] for p in workers}) == 2  # one worker per node, by the real scheduler
    runtime = status_of(kube, "VineyardRuntime", "real")
    assert runtime["workerPhase"] == "Ready" and runtime["workerNumberReady"] == 2
    network_policy_fences_the_runtime(kube, "real")

    # scaling: a third pod on the third node
    kube.patch(Ref(API, "VineyardRuntime", NS, "real"), {"spec": {"replicas": 3}})
    wait(lambda: len([p for p in pods_of(kube, "real-worker") if ready(p)]) == 3, timeout=120, message="3 workers")
    assert len({p["spec"]["nodeName"] for p in pods_of(kube, "real-worker")}) == 3
    wait(lambda: status_of(kube, "VineyardRuntime", "real").get("workerNumberReady") == 3, message="status 3")

    # a field removed from the runtime is removed from the StatefulSet (server-side apply)
    template = lambda: kube.get(Ref("apps/v1", "StatefulSet", NS, "real-worker"))["spec"]["template"]["spec"]  # noqa: E731
    assert template().get("nodeSelector") == {"type": "kwok"}
    kube.request("PATCH", Ref(API, "VineyardRuntime", NS, "real").path(),
                 [{"op": "remove", "path": "/spec/worker/nodeSelector"}], "application/json-patch+json")
    wait(lambda: "type" not in (template().get("nodeSelector") or {}), timeout=60, message="nodeSelector pruned")

    # deletion: finalizers run, owned objects are collected, pods go away
    kube.delete(Ref(API, "VineyardRuntime", NS, "real"))
    kube.delete(Ref(API, "Dataset", NS, "real"))
    wait(lambda: kube.get(Ref(API, "Dataset", NS, "real")) is None, timeout=120, message="dataset gone")
    wait(lambda: not pods_of(kube, "real-worker") and not pods_of(kube, "real-master"), timeout=120,
         message="pods collected")
    assert kube.get(Ref("apps/v1", "StatefulSet", NS, "real-worker")) is None


def selected_by(kube: KubeClient, selector: dict[str, Any]) -> set[str]:
    """Names of the pods the API server itself selects with ``selector``."""
    terms = ",".join(f"{k}={v}" for k, v in selector["matchLabels"].items())
    reply = kube.request("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector={terms}")
    return {p["metadata"]["name"] for p in reply["items"]}


def network_policy_fences_the_runtime(kube: KubeClient, name: str) -> None:
    """The NetworkPolicy the API server stored selects exactly the runtime's pods, admits its
    etcd and RPC ports only from them, and no look-alike pod of another runtime.

    Enforcement is the CNI plugin's job, and the control plane here runs none."""
    stranger = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-stranger", "namespace": NS, "labels": {
        "app.kubernetes.io/name": "vineyard", "app.kubernetes.io/instance": f"{name}-other",
        "app.kubernetes.io/component": "worker"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    kube.request("POST", f"/api/v1/namespaces/{NS}/pods", stranger)
    try:
        policy = kube.get(Ref("networking.k8s.io/v1", "NetworkPolicy", NS, f"{name}-vineyard"))
        own = {p["metadata"]["name"] for p in kube.list(Ref("v1", "Pod", NS))
               if p["metadata"]["name"].startswith(f"{name}-") and p["metadata"]["name"] != stranger["metadata"]["name"]}
        assert own >= {f"{name}-master-0", f"{name}-worker-0", f"{name}-worker-1"}
        assert selected_by(kube, policy["spec"]["podSelector"]) == own
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        fenced, open_rule = policy["spec"]["ingress"]
        assert [selected_by(kube, peer["podSelector"]) for peer in fenced["from"]] == [own]
        ports = {c["name"]: c["containerPort"] for p in kube.list(Ref("v1", "Pod", NS)) if p["metadata"]["name"] in own
                 for container in p["spec"]["containers"] for c in container.get("ports") or []}
        assert {p["port"] for p in fenced["ports"]} == {ports["rpc"], ports["client"], ports["peer"], ports["blobs"]}
        assert "from" not in open_rule
        assert [p["port"] for p in open_rule["ports"]] == [ports["metrics"], ports["bridge-metrics"]]
    finally:
        kube.delete(Ref("v1", "Pod", NS, stranger["metadata"]["name"]))


def test_a_flow_of_jobs_runs_on_kwok_and_a_cron_operation_is_a_cronjob(control_plane, kube):
    wait = control_plane.wait_for
    create(kube, "Dataset", "jobs", {})
    create(kube, "VineyardRuntime", "jobs", {"replicas": 1})
    wait(lambda: status_of(kube, "Dataset", "jobs").get("phase") == "Bound", timeout=120, message="bound")
    create(kube, "DataLoad", "warm", {"dataset": {"name": "jobs"}})
    create(kube, "DataProcess", "next", {
        "dataset": {"name": "jobs"}, "processor": {"script": {"image": "busybox", "source": "echo hi"}},
        "runAfter": {"kind": "DataLoad", "name": "warm", "affinityStrategy": {"policy": "Require"}}})
    create(kube, "DataLoad", "nightly", {"dataset": {"name": "jobs"}, "policy": "Cron", "schedule": "0 3 * * *"})
    warm = wait(lambda: (s := status_of(kube, "DataLoad", "warm")).get("phase") == "Complete" and s, timeout=120,
                message="the DataLoad's Job completed (KWOK)")
    step = wait(lambda: (s := status_of(kube, "DataProcess", "next")).get("phase") == "Complete" and s, timeout=120,
                message="its successor completed")
    assert step["node"] == warm["node"]  # Require: the real scheduler put it on its predecessor's node
    cron = wait(lambda: kube.get(Ref("batch/v1", "CronJob", NS, "nightly-dataload")), message="CronJob")
    assert cron["spec"]["schedule"] == "0 3 * * *"
    for kind, name in (("DataLoad", "warm"), ("DataProcess", "next"), ("DataLoad", "nightly")):
        kube.delete(Ref(API, kind, NS, name))
    kube.delete(Ref(API, "VineyardRuntime", NS, "jobs"))
    kube.delete(Ref(API, "Dataset", NS, "jobs"))
    wait(lambda: kube.get(Ref("batch/v1", "Job", NS, "warm-dataload")) is None, timeout=60, message="Job collected")


def test_the_real_fluid_pysdk_flow_completes(control_plane, kube):
    """fluid-pysdk 1.0.4, in its own venv, drives the operator on the real API server:
    create_dataset, bind_runtime, preload -> process (with volumes) -> migrate, wait,
    report_status, clean_up; KWOK completes the Jobs."""
    assert os.path.exists(SDK_PYTHON), f"no fluid-pysdk venv at {SDK_PYTHON}: `make test` creates it"
    done = subprocess.run([SDK_PYTHON, FLOWS, str(control_plane.kubeconfig)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": "", "KUBECONFIG": str(control_plane.kubeconfig)})
    assert done.returncode == 0, done.stderr[-3000:] + control_plane.log_tail("operator")
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["bound"] == "Bound" and seen["phases"] == ["Complete"] * 3
    assert seen["cache"]["cacheCapacity"] == "2.0 GiB"
    job = kube.get(Ref("batch/v1", "Job", NS, "sdkflow-step2-dataprocess"))
    scripts = kube.get(Ref("v1", "ConfigMap", NS, "sdkflow-step2-dataprocess-scripts"))
    pod = job["spec"]["template"]["spec"]
    assert {"name": "scratch", "emptyDir": {}} in pod["volumes"]  # kept by the API server's schema
    assert {"name": "scratch", "mountPath": "/scratch"} in pod["containers"][0]["volumeMounts"]
    assert pod["containers"][0]["command"] == ["sh"] and scripts["data"]["preprocess.sh"] == "ls /data"
    control_plane.wait_for(lambda: kube.get(Ref(API, "Dataset", NS, "demo")) is None, timeout=120,
                           message="clean_up removed the dataset")


def test_this_projects_fluid_sdk_flow_completes(control_plane, kube):
    """Fluid's release-note flow (preload -> process -> migrate) through ``fluid_core.fluid``
    with a Kubernetes backend."""
    from fluid_core.fluid import ClientConfig, FluidClient, constants, models

    client = FluidClient(ClientConfig(backend=kube))
    client.create_dataset("kdemo")
    dataset = client.get_dataset("kdemo")
    dataset.bind_runtime(replicas=2, cache_capacity_GiB=1)
    processor = models.Processor(script=models.ScriptProcessor(command=["sh"], source="ls /data"))
    flow = (dataset.preload("/").process(dataset_mountpath="/data", processor=processor)
            .migrate("/", constants.DATA_MIGRATE_DIRECTION_TO, models.ExternalStorage(uri="local:///mnt/o"))
            .run(run_id="kflow"))
    flow.wait(timeout_for_each_step=60)
    statuses = flow.get_current_status()
    assert [next(iter(s.values()))["phase"] for s in statuses] == ["Complete"] * 3
    assert [next(iter(s)) for s in statuses] == ["kflow-step1", "kflow-step2", "kflow-step3"]
    assert dataset.report_status("cache")["cacheCapacity"] == "2.0 GiB"
    FluidClient(ClientConfig(backend=kube)).get_dataset("kdemo").clean_up()


def test_the_api_server_calls_the_webhook_and_the_scheduler_obeys_it(control_plane, kube, webhook_tls, webhook_port):
    """A MutatingWebhookConfiguration (caBundle, failurePolicy) sends pod creations to the
    operator's webhook; a pod mounting the dataset with ``sched: required`` is placed by the
    real scheduler on the node holding its cache; a webhook that is down obeys the policy."""
    import base64

    wait = control_plane.wait_for
    cert, _ = webhook_tls
    configuration = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "fluid-vineyard-test"},
        "webhooks": [{"name": "pods.data.fluid.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "failurePolicy": "Fail", "timeoutSeconds": 5,
                      "clientConfig": {"url": f"https://127.0.0.1:{webhook_port}/mutate-pods",
                                       "caBundle": base64.b64encode(Path(cert).read_bytes()).decode()},
                      "objectSelector": {"matchLabels": {"test": "placed"}},
                      "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"]}]}]}
    base = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    control_plane.request("POST", base, configuration)
    orphans: list[str] = []
    try:
        create(kube, "Dataset", "placed", {})
        create(kube, "VineyardRuntime", "placed", {"replicas": 1})
        wait(lambda: status_of(kube, "Dataset", "placed").get("phase") == "Bound", timeout=120, message="bound")
        (worker,) = pods_of(kube, "placed-worker")
        cache_node = worker["spec"]["nodeName"]
        for index in range(3):
            kube.request("POST", Ref("v1", "Pod", NS).path(), {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"reader-{index}", "namespace": NS,
                             "labels": {"test": "placed", "fluid.io/dataset.placed.sched": "required"}},
                "spec": {"containers": [{"name": "c", "image": "x"}],
                         "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "placed"}}]}})
        for index in range(3):
            pod = wait(lambda: (p := kube.get(Ref("v1", "Pod", NS, f"reader-{index}"))) and p["spec"].get("nodeName")
                       and p, timeout=60, message="reader scheduled")
            assert pod["spec"]["nodeName"] == cache_node  # the webhook's required term, obeyed by the scheduler
            assert pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        # a webhook that does not answer: failurePolicy Fail refuses the pod, Ignore lets it through
        # (the API server takes a configuration change a moment later: each is polled for)
        configuration["webhooks"][0]["clientConfig"]["url"] = f"https://127.0.0.1:{free_ports(1)[0]}/mutate-pods"
        control_plane.request("PUT", f"{base}/fluid-vineyard-test", {
            **configuration, "metadata": control_plane.request("GET", f"{base}/fluid-vineyard-test")["metadata"]})
        refusal = wait(lambda: pod_refused(kube, orphans), timeout=60, message="the dead webhook refuses pods")
        assert "failed calling webhook" in refusal
        configuration["webhooks"][0]["failurePolicy"] = "Ignore"
        control_plane.request("PUT", f"{base}/fluid-vineyard-test", {
            **configuration, "metadata": control_plane.request("GET", f"{base}/fluid-vineyard-test")["metadata"]})
        wait(lambda: pod_refused(kube, orphans) is None, timeout=60, message="the ignored webhook lets pods through")
        assert kube.get(Ref("v1", "Pod", NS, orphans[-1])) is not None
    finally:
        control_plane.request("DELETE", f"{base}/fluid-vineyard-test")
        for name in ("reader-0", "reader-1", "reader-2", *orphans):
            kube.delete(Ref("v1", "Pod", NS, name))
        kube.delete(Ref(API, "VineyardRuntime", NS, "placed"))
        kube.delete(Ref(API, "Dataset", NS, "placed"))


def pod_refused(kube: KubeClient, created: list[str]) -> str | None:
    """Create a pod the test webhook sees (its name appended to ``created``); why the API
    server refused it, or None when it was created."""
    from fluid_core.kube import KubeError

    name = f"orphan-{len(created)}"
    created.append(name)
    try:
        kube.request("POST", Ref("v1", "Pod", NS).path(), {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"test": "placed"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}})
    except KubeError as refused:
        return str(refused)
    return None


def test_an_operator_killed_mid_reconcile_converges_with_no_duplicates(control_plane, kube, operator):
    """SIGKILL the operator while it creates eight runtimes' objects; the next one finishes
    the work: every dataset Bound, each object made once (names are deterministic, and
    the apply is idempotent). An operation that ran before is not run again, though its
    Job was removed meanwhile (as ``ttlSecondsAfterFinished`` does): only its status
    remembers the run."""
    wait = control_plane.wait_for
    job = Ref("batch/v1", "Job", NS, "crashmove-datamigrate")
    create(kube, "Dataset", "crashop", {})
    create(kube, "VineyardRuntime", "crashop", {"replicas": 1})
    wait(lambda: status_of(kube, "Dataset", "crashop").get("phase") == "Bound", timeout=120, message="crashop bound")
    create(kube, "DataMigrate", "crashmove", {"from": {"dataset": {"name": "crashop"}},
                                              "to": {"externalStorage": {"uri": "local:///mnt/out"}}})
    ran = wait(lambda: (s := status_of(kube, "DataMigrate", "crashmove")).get("phase") == "Complete" and s,
               timeout=120, message="the operation ran (KWOK completed its Job)")
    names = [f"crash{index}" for index in range(8)]
    for name in names:
        create(kube, "Dataset", name, {})
        create(kube, "VineyardRuntime", name, {"replicas": 1})
    wait(lambda: kube.get(Ref("apps/v1", "StatefulSet", NS, "crash0-master")), message="work under way")
    operator.stop(kill=True)
    kube.request("DELETE", job.path() + "?propagationPolicy=Background")
    wait(lambda: kube.get(job) is None, message="the operation's Job removed")
    operator.start()
    for name in names:
        wait(lambda: status_of(kube, "Dataset", name).get("phase") == "Bound", timeout=120, message=f"{name} bound")
    statefulsets = [s["metadata"]["name"] for s in kube.list(Ref("apps/v1", "StatefulSet", NS))
                    if s["metadata"]["name"].startswith("crash")]
    assert sorted(statefulsets) == sorted([f"{n}-master" for n in names] + [f"{n}-worker" for n in names]
                                          + ["crashop-master", "crashop-worker"])
    counts = lambda: {n: len(pods_of(kube, f"{n}-worker")) for n in names}  # noqa: E731
    wait(lambda: set(counts().values()) == {1}, timeout=60, message=f"one worker pod each: {counts()}")
    # a change the new operator must reconcile (a field it reports as not applied): once it
    # reports it, it has reconciled the operation since it started (kopf handles an
    # object's events in order) and ran nothing
    kube.patch(Ref(API, "DataMigrate", NS, "crashmove"), {"spec": {"block": True}})
    after = wait(lambda: "spec.block" in ((s := status_of(kube, "DataMigrate", "crashmove")).get("infos") or {}).get(
        "notApplied", "") and s, timeout=60, message="the new operator reconciled the operation")
    assert kube.get(job) is None, "the operation ran again"
    assert (after["phase"], after["lastScheduleTime"]) == ("Complete", ran["lastScheduleTime"])
    for kind, name in [("DataMigrate", "crashmove"), ("VineyardRuntime", "crashop"), ("Dataset", "crashop"),
                       *[(kind, name) for name in names for kind in ("VineyardRuntime", "Dataset")]]:
        kube.delete(Ref(API, kind, NS, name))  # (waiting for eight deletions at once can take kopf a minute)


def test_long_names_keep_their_own_jobs_and_a_long_runtime_gets_valid_pods(control_plane, kube):
    """Names derived from long user names keep a hash of the whole: three operations whose
    names share their first 55 characters get three Jobs, each running its own step, and a
    runtime of 60 characters gets a StatefulSet whose pods the controller can create."""
    wait = control_plane.wait_for
    name = "d" * 60
    create(kube, "Dataset", name, {})
    create(kube, "VineyardRuntime", name, {"replicas": 1})
    wait(lambda: status_of(kube, "Dataset", name).get("phase") == "Bound", timeout=120,
         message="the long-named dataset bound (its pods were created)")
    statefulsets = [s["metadata"]["name"] for s in kube.list(Ref("apps/v1", "StatefulSet", NS))
                    if s["metadata"]["name"].startswith(name[:30])]
    assert len(statefulsets) == 2 and all(len(s) <= 52 for s in statefulsets)
    assert all(ready(p) for s in statefulsets for p in pods_of(kube, s)) and all(pods_of(kube, s) for s in statefulsets)
    steps = [f"{'s' * 55}-{i}" for i in range(3)]
    for i, step in enumerate(steps):
        create(kube, "DataProcess", step, {"dataset": {"name": name}, "processor": {
            "script": {"image": "busybox", "source": f"echo step {i}"}}})
    for step in steps:
        wait(lambda step=step: status_of(kube, "DataProcess", step).get("phase") == "Complete", timeout=120,
             message=f"{step} completed")
    jobs = {j["metadata"]["name"]: j for j in kube.list(Ref("batch/v1", "Job", NS))
            if j["metadata"]["name"].startswith("s" * 20)}
    assert len(jobs) == 3 and all(len(j) <= 52 for j in jobs)
    scripts = sorted(kube.get(Ref("v1", "ConfigMap", NS, f"{job}-scripts"))["data"]["preprocess.sh"] for job in jobs)
    assert scripts == ["echo step 0", "echo step 1", "echo step 2"]  # each Job runs its own step
    for step in steps:
        kube.delete(Ref(API, "DataProcess", NS, step))
    kube.delete(Ref(API, "VineyardRuntime", NS, name))
    kube.delete(Ref(API, "Dataset", NS, name))
    wait(lambda: kube.get(Ref(API, "Dataset", NS, name)) is None, timeout=120, message="dataset gone")


def _pod_security_cases() -> dict[str, dict[str, Any]]:
    def c(**context: Any) -> dict[str, Any]:
        return {"name": "c", "image": "busybox", **({"securityContext": context} if context else {})}

    return {
        "plain": {"containers": [c()]},
        "privileged": {"containers": [c(privileged=True)]},
        "hostPID": {"hostPID": True, "containers": [c()]},
        "hostNetwork": {"hostNetwork": True, "containers": [c()]},
        "hostPath": {"containers": [c()], "volumes": [{"name": "h", "hostPath": {"path": "/mnt/x"}}]},
        "hostPort": {"containers": [{**c(), "ports": [{"containerPort": 80, "hostPort": 8080}]}]},
        "NET_ADMIN": {"containers": [c(capabilities={"add": ["NET_ADMIN"]})]},
        "CHOWN": {"containers": [c(capabilities={"add": ["CHOWN"]})]},
        "root": {"securityContext": {"runAsUser": 0}, "containers": [c()]},
        "escalation": {"containers": [c(allowPrivilegeEscalation=True)]},
        "unconfined seccomp": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}, "containers": [c()]},
        "unsafe sysctl": {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
                          "containers": [c()]},
        "safe sysctl": {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]},
                        "containers": [c()]},
        "selinux user": {"containers": [c(seLinuxOptions={"user": "system_u"})]},
        "nfs": {"containers": [c()], "volumes": [{"name": "n", "nfs": {"server": "x", "path": "/"}}]},
        "emptyDir": {"containers": [c()], "volumes": [{"name": "e", "emptyDir": {}}]},
        "run as non-root off": {"securityContext": {"runAsNonRoot": False}, "containers": [c()]},
    }


def test_our_pod_security_check_agrees_with_the_api_servers_own(control_plane, kube):
    """For each pod, with the restricted settings filled in as the operator fills them,
    the PodSecurity admission of the real API server and ours give the same verdict at
    baseline and at restricted."""
    from fluid_core.kube import KubeError
    from fluid_core.reconcilers.pod_security import secure_defaults, violations

    disagreements = []
    for level in ("baseline", "restricted"):
        namespace = f"pss-{level}"
        kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": namespace, "labels": {"pod-security.kubernetes.io/enforce": level}}})
        for case, spec in _pod_security_cases().items():
            spec = secure_defaults(spec) if level == "restricted" else spec
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"}, "spec": spec}
            try:
                kube.request("POST", f"/api/v1/namespaces/{namespace}/pods?dryRun=All", pod)
                theirs = True
            except KubeError as exc:
                assert exc.status == 403, (level, case, exc)
                theirs = False
            ours = not violations(spec, level)
            if ours != theirs:
                disagreements.append((level, case, "ours" if ours else "theirs", violations(spec, level)))
    assert not disagreements


def test_a_user_who_may_only_create_crs_gets_no_privileged_job_or_host_root(control_plane, kube):
    wait = control_plane.wait_for
    create(kube, "Dataset", "deputy", {})
    create(kube, "VineyardRuntime", "deputy", {"replicas": 1})
    wait(lambda: status_of(kube, "Dataset", "deputy").get("phase") == "Bound", timeout=120, message="bound")
    create(kube, "DataProcess", "escape", {"dataset": {"name": "deputy"}, "processor": {"job": {"podSpec": {
        "hostPID": True, "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}}})
    failed = wait(lambda: (s := status_of(kube, "DataProcess", "escape")).get("phase") == "Failed" and s,
                  timeout=60, message="the hostile DataProcess failed")
    message = failed["conditions"][-1]["message"]
    assert "privileged containers" in message and "hostPID" in message and "host path '/'" in message
    assert kube.get(Ref("batch/v1", "Job", NS, "escape-dataprocess")) is None
    create(kube, "Dataset", "hostroot", {})
    create(kube, "VineyardRuntime", "hostroot", {"tieredstore": {"levels": [
        {"mediumtype": "SSD", "path": "/", "quota": "1Gi"}]}})
    wait(lambda: any(c.get("reason") == "PolicyViolation" for c in
                     status_of(kube, "VineyardRuntime", "hostroot").get("conditions") or []),
         timeout=60, message="the runtime refused")
    assert kube.get(Ref("apps/v1", "StatefulSet", NS, "hostroot-worker")) is None
    assert kube.get(Ref("apps/v1", "StatefulSet", NS, "hostroot-master")) is None
    for kind, name in (("DataProcess", "escape"), ("VineyardRuntime", "deputy"), ("Dataset", "deputy"),
                       ("VineyardRuntime", "hostroot"), ("Dataset", "hostroot")):
        kube.delete(Ref(API, kind, NS, name))


#: The namespace of an operator left at the production resync period.
def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})


def test_a_run_after_cycle_fails_every_member_and_runs_nothing(control_plane, kube):
    wait = control_plane.wait_for
    for name, other in (("ping", "pong"), ("pong", "ping")):
        create(kube, "DataProcess", name, {"dataset": {"name": "loop"}, "processor": {"function": "m:f"},
                                           "runAfter": {"kind": "DataProcess", "name": other}})
    try:
        for name in ("ping", "pong"):
            status = wait(lambda n=name: (s := status_of(kube, "DataProcess", n)).get("phase") == "Failed" and s,
                          timeout=60, message=f"{name} failed")
            failed = {c["type"]: c for c in status["conditions"]}["Failed"]
            assert failed["reason"] == "RunAfterCycle" and "DataProcess/ping" in failed["message"]
            assert kube.get(Ref("batch/v1", "Job", NS, f"{name}-dataprocess")) is None
    finally:
        for name in ("ping", "pong"):
            kube.delete(Ref(API, "DataProcess", NS, name))


def test_a_runtime_waits_for_its_dataset_and_then_makes_its_master(control_plane, kube):
    wait = control_plane.wait_for
    master = Ref("apps/v1", "StatefulSet", NS, "orphan-master")
    create(kube, "VineyardRuntime", "orphan", {"replicas": 1})
    try:
        status = wait(lambda: (s := status_of(kube, "VineyardRuntime", "orphan")).get("conditions") and s,
                      timeout=60, message="the runtime's condition")
        assert ready_condition(status)["reason"] == "DatasetNotFound"
        assert kube.get(master) is None
        create(kube, "Dataset", "orphan", {})
        wait(lambda: kube.get(master), timeout=60, message="the master, once the dataset exists")
    finally:
        for kind in ("VineyardRuntime", "Dataset"):
            kube.delete(Ref(API, kind, NS, "orphan"))
        wait(lambda: kube.get(Ref(API, "Dataset", NS, "orphan")) is None, timeout=120, message="dataset gone")


def test_a_dataset_in_use_is_deleted_once_no_pod_mounts_it(control_plane, kube):
    from fluid_core.operator.cycle import FINALIZER

    wait = control_plane.wait_for
    dataset = Ref(API, "Dataset", NS, "used")
    create(kube, "Dataset", "used", {})
    wait(lambda: status_of(kube, "Dataset", "used").get("phase") == "NotBound", timeout=60, message="reconciled")
    kube.request("POST", f"/api/v1/namespaces/{NS}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "trainer", "namespace": NS},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "used"}}]}})
    try:
        kube.delete(dataset)
        wait(lambda: any(e.get("reason") == "DeletionBlocked" and "trainer" in e.get("message", "")
                         for e in kube.list(Ref("v1", "Event", NS))), timeout=60, message="a DeletionBlocked event")
        body = kube.get(dataset)
        assert body is not None and FINALIZER in body["metadata"].get("finalizers", [])
    finally:
        kube.delete(Ref("v1", "Pod", NS, "trainer"))
    wait(lambda: kube.get(dataset) is None, timeout=60, message="deleted once no pod mounts it")


PROD = "resync-default"


def production_settings() -> dict[str, str]:
    """The operator's resync and full-apply periods as shipped: read by a fresh interpreter
    with neither variable set (this process may have set them for its own tests)."""
    names = ("FLUIDV_RESYNC_SECONDS", "FLUIDV_FULL_APPLY_SECONDS")
    env = {k: v for k, v in os.environ.items() if k not in names}
    done = subprocess.run([sys.executable, "-c", "from fluid_core.operator import cycle as h; "
                           "print(h.RESYNC_SECONDS, h.FULL_APPLY_SECONDS)"],
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    return dict(zip(names, done.stdout.split()))


@pytest.fixture
def production_operator(control_plane, webhook_tls):
    """A second operator, for namespace ``PROD`` only, at the production periods."""
    settings = production_settings()
    control_plane.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": PROD}})
    running = OperatorProcess(control_plane, PROD, webhook_tls, free_ports(1)[0], env=settings)
    running.start()
    try:
        yield running, float(settings["FLUIDV_RESYNC_SECONDS"])
    finally:
        running.stop()


def test_at_the_production_resync_watch_events_bind_a_dataset_well_before_a_resync(control_plane,
                                                                                   production_operator):
    """Every other test here resyncs each second, so a broken watch would still pass them.
    At the shipped period, the workers are made only once the master is seen ready, and
    the dataset binds only once the workers are seen ready: through the timer alone that
    takes two resyncs, a full period apart, after the master is ready. Through the watch
    of the workloads it takes their start-up: the bound below is well within a period."""
    running, resync = production_operator
    assert resync >= 10, f"the production resync is {resync:g} s: this test needs one of at least 10 s"
    kube = KubeClient(control_plane.api_client())
    wait = control_plane.wait_for
    master = Ref("apps/v1", "StatefulSet", PROD, "prompt-master")
    create_resource(kube, "Dataset", "prompt", {}, namespace=PROD)
    create_resource(kube, "VineyardRuntime", "prompt", {"replicas": 1}, namespace=PROD)
    try:
        master_ready = wait(lambda: ((kube.get(master) or {}).get("status") or {}).get("readyReplicas") == 1
                            and time.monotonic(), timeout=120, message="the master ready (KWOK)")
        bound = wait(lambda: resource_status(kube, "Dataset", "prompt", namespace=PROD).get("phase") == "Bound"
                     and time.monotonic(), timeout=120, message="the dataset bound")
        assert bound - master_ready < resync - 2, (
            f"bound {bound - master_ready:.1f} s after the master was ready: the resync, not a watch event, "
            f"did it; operator log: {control_plane.log_tail('operator')}")
    finally:
        for kind in ("VineyardRuntime", "Dataset"):
            kube.delete(Ref(API, kind, PROD, "prompt"))
        wait(lambda: kube.get(Ref(API, "Dataset", PROD, "prompt")) is None, timeout=120, message="dataset gone")
        assert running.running(), control_plane.log_tail("operator")
