"""The operator at scale: 500 ModelDeployments on 1,000 simulated nodes (KWOK).

Brings up (or reuses) its own local control plane, never the default one: state in
.cache/bench-cluster and its own ports, both overridable with the variables up.sh reads
(KUBEINFER_CLUSTER_DIR, ETCD_PORT, APISERVER_PORT, KCM_PORT, SCHEDULER_PORT, KWOK_PORT).
Then:

1. creates 1,000 simulated nodes (hack/controlplane/nodes.yaml, --scale 125);
2. baseline: creates the very children the operator would render for the same 500 specs
   (Service and Deployment each) straight into a namespace, without the operator,
   and times until every Deployment has its replica ready: what the cluster itself costs;
   then a second baseline, one bare Pod per model from the same pod template and nothing
   else, timed until every Pod is Ready;
3. installs the CRD, starts `kubeinfer operator` as a subprocess under its own
   ServiceAccount bound to the ClusterRole from charts/kubeinfer/files/clusterrole-rules.yaml
   (a token kubeconfig, not cluster-admin), creates the 500 ModelDeployments concurrently and
   times until every child Deployment exists and every status has Available=True;
4. prints the figures: times, reconciles/s (kubeinfer_reconciles_total scraped before and
   after), the operator's peak RSS (VmHWM), the CPU seconds each process spent, the writes
   by verb and resource; last, the operator's time over each baseline's
   (`operator/baseline`, then `operator/bare-pods`) and its peak RSS with its CPU and the
   writes per ModelDeployment;
5. stops the operator and takes the cluster down (unless --keep, or it was already up).

    .venv/bin/python benchmarks/bench_operator.py [--count 500] [--scale 125] [--keep]

Goals (issue 4): all 500 Available within 60 s on a 2-core machine, peak RSS under 300 MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION, ModelDeployment
from kubeinfer.decide import decide
from kubeinfer.nodes import node_facts
from kubeinfer.render import ImageSettings, children

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"
HACK = ROOT / "hack" / "controlplane"
DEFAULT_CLUSTER = ROOT / ".cache" / "cluster"  # the integration tests' cluster: never used here
# Own state and ports, so the benchmark never meets the default cluster (2xxxx ports).
BENCH_ENV = {
    "KUBEINFER_CLUSTER_DIR": str(ROOT / ".cache" / "bench-cluster"),
    "ETCD_PORT": "33790",
    "APISERVER_PORT": "36443",
    "KCM_PORT": "30257",
    "SCHEDULER_PORT": "30259",
    "KWOK_PORT": "30247",
    # Simulated nodes only: the one real node a machine can run belongs to the main cluster.
    "KUBEINFER_REAL_NODE": "0",
}
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
OPERATOR_NS, OPERATOR_SA = "kubeinfer-system", "kubeinfer"
BASELINE_NS, PODS_NS, BENCH_NS = "bench-baseline", "bench-pods", "bench"
TICK = os.sysconf("SC_CLK_TCK")
STOPPING = threading.Event()  # set before the cluster goes down: watches end quietly


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------- the workload


def model_deployments(count: int, namespace: str) -> list[dict[str, Any]]:
    """A realistic mix, in proportion for any count; sized to fit the 1,000-node cluster
    (250 H100 nodes x 8, 250 L4 nodes x 1, 250 + 125 CPU nodes)."""
    gguf = {
        "format": "gguf",
        "quantization": "Q4_K_M",
        "uri": "hf://Qwen/Qwen2.5-7B-Instruct-GGUF",
        "file": "qwen2.5-7b-instruct-q4_k_m.gguf",
    }
    kinds: list[tuple[str, float, dict[str, Any], dict[str, Any]]] = [
        # name, share, model, resources
        (
            "gguf-cpu",
            0.30,
            {"name": "qwen2.5-instruct", "sizeInBillions": 7, **gguf},
            {"gpus": 0, "cpu": "4", "memory": "8Gi"},
        ),
        (
            "gguf-l4",
            0.20,
            {"name": "qwen2.5-instruct", "sizeInBillions": 7, **gguf},
            {"gpus": 1, "gpuProduct": "L4"},
        ),
        (
            "vllm-1",
            0.16,
            {
                "name": "llama-3.1-instruct",
                "format": "pytorch",
                "sizeInBillions": 8,
                "uri": "hf://meta-llama/Llama-3.1-8B-Instruct",
            },
            {"gpus": 1, "gpuProduct": "H100"},
        ),
        (
            "vllm-2",
            0.10,
            {
                "name": "qwen2.5-instruct",
                "format": "pytorch",
                "sizeInBillions": 14,
                "uri": "hf://Qwen/Qwen2.5-14B-Instruct",
            },
            {"gpus": 2, "gpuProduct": "H100"},
        ),
        (
            "vllm-4",
            0.08,
            {
                "name": "llama-3.3-instruct",
                "format": "pytorch",
                "sizeInBillions": 70,
                "uri": "hf://meta-llama/Llama-3.3-70B-Instruct",
            },
            {"gpus": 4, "gpuProduct": "H100"},
        ),
        (
            "vllm-8",
            0.06,
            {
                "name": "llama-3.3-instruct",
                "format": "pytorch",
                "sizeInBillions": 70,
                "uri": "hf://meta-llama/Llama-3.3-70B-Instruct",
            },
            {"gpus": 8, "gpuProduct": "H100"},
        ),
        (
            "transformers",
            0.10,
            {
                "name": "phi-3-mini-4k-instruct",
                "format": "pytorch",
                "sizeInBillions": 3.8,
                "uri": "hf://microsoft/Phi-3-mini-4k-instruct",
            },
            {"gpus": 1},
        ),
    ]
    counts = [int(count * share) for _, share, _, _ in kinds]
    counts[0] += count - sum(counts)
    items = []
    for (kind, _, model, resources), n in zip(kinds, counts, strict=True):
        for index in range(n):
            items.append(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ModelDeployment",
                    "metadata": {"name": f"{kind}-{index:03d}", "namespace": namespace},
                    "spec": {"model": dict(model), "resources": dict(resources), "replicas": 1},
                }
            )
    return items


def rendered_children(
    mds: list[dict[str, Any]], nodes: list[dict[str, Any]], namespace: str
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """What the operator would create for these specs (no owner: rendered offline)."""
    facts = [node_facts(node) for node in nodes]
    objects, engines = [], Counter[str]()
    for raw in mds:
        md = ModelDeployment.from_object(
            {**raw, "metadata": {**raw["metadata"], "namespace": namespace}}
        )
        decision = decide(md.spec, facts)
        engines[decision.engine or "none"] += 1
        if decision.engine:
            objects += children(md, decision, ImageSettings())
    return objects, engines


# ------------------------------------------------------------------ the control plane


def cluster_env(cluster_dir: Path | None) -> dict[str, str]:
    env = {key: os.environ.get(key, default) for key, default in BENCH_ENV.items()}
    if cluster_dir:
        env["KUBEINFER_CLUSTER_DIR"] = str(cluster_dir)
    state = Path(env["KUBEINFER_CLUSTER_DIR"]).resolve()
    if state == DEFAULT_CLUSTER.resolve():
        sys.exit(f"refusing to use {state}: that is the default (integration tests') cluster")
    env["KUBEINFER_CLUSTER_DIR"] = str(state)
    return env


def cluster_running(state: Path) -> bool:
    try:
        os.kill(int((state / "kube-apiserver.pid").read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def pids(state: Path) -> dict[str, int]:
    found = {}
    for name in COMPONENTS:
        with contextlib.suppress(OSError, ValueError):
            found[name] = int((state / f"{name}.pid").read_text())
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime
    except (OSError, IndexError):
        return 0.0


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -------------------------------------------------------------------------- API helpers


def concurrently(function: Callable[[Any], object], items: Iterable[Any], workers: int) -> None:
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(function, items):
            pass


def create(api: client.ApiClient, obj: dict[str, Any]) -> None:
    """Creates one object (no reply parsing): the bench process must stay cheap."""
    kind, meta = obj["kind"], obj["metadata"]
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    ns = meta.get("namespace")
    calls: dict[str, Callable[[], object]] = {
        "Service": lambda: core.create_namespaced_service(ns, obj, _preload_content=False),
        "Deployment": lambda: apps.create_namespaced_deployment(ns, obj, _preload_content=False),
        "ModelDeployment": lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, obj, _preload_content=False
        ),
        "Node": lambda: core.create_node(obj, _preload_content=False),
        "Pod": lambda: core.create_namespaced_pod(ns, obj, _preload_content=False),
    }
    try:
        calls[kind]()
    except ApiException as error:
        if error.status != 409:  # already there (a reused cluster)
            raise


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 300
    while True:
        try:
            ns = core.read_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise
            core.create_namespace({"metadata": {"name": name}})
            return
        if ns.status.phase != "Terminating":
            return
        if time.monotonic() > deadline:
            sys.exit(f"namespace {name} still terminating")
        time.sleep(1)


def delete_namespace(api: client.ApiClient, name: str, wait: bool) -> float:
    core = client.CoreV1Api(api)
    started = time.monotonic()
    try:
        core.delete_namespace(name)
    except ApiException as error:
        if error.status == 404:
            return 0.0
        raise
    while wait:
        try:
            core.read_namespace(name)
        except ApiException as error:
            if error.status == 404:
                break
            raise
        if time.monotonic() - started > 600:
            log(f"namespace {name} not gone after 600 s; going on")
            break
        time.sleep(1)
    return time.monotonic() - started


def apiserver_writes(admin: Path) -> Counter[str]:
    """Mutating requests the apiserver has served, by verb and resource (its own metrics)."""
    counts = Counter[str]()
    for line in kubectl(admin, "get", "--raw", "/metrics").splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(
            part.split("=", 1) for part in line[line.index("{") + 1 : line.rindex("}")].split(",")
        )
        labels = {key: value.strip('"') for key, value in labels.items()}
        if labels.get("verb") in ("GET", "LIST", "WATCH", "CONNECT"):
            continue
        resource_ = labels.get("resource", "") + (
            "/" + labels["subresource"] if labels.get("subresource") else ""
        )
        counts[f"{labels['verb']} {resource_}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def wait_nodes_ready(api: client.ApiClient, count: int, deadline: float) -> None:
    core = client.CoreV1Api(api)
    while True:
        items = json.loads(core.list_node(_preload_content=False).data)["items"]
        ready = sum(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n["status"].get("conditions", ())
            )
            for n in items
        )
        if ready >= count:
            return
        if time.monotonic() > deadline:
            sys.exit(f"only {ready}/{count} nodes Ready")
        time.sleep(1)


class WatchExpired(RuntimeError):
    pass


class Watch(threading.Thread):
    """Streams a watch (plain JSON lines, no model classes) and records, per object name, the
    first time it existed and whether it is done now (and since when)."""

    def __init__(
        self, list_call: Callable[..., Any], done: Callable[[dict[str, Any]], bool]
    ) -> None:
        super().__init__(daemon=True)
        self._list, self._done = list_call, done
        self.rv = json.loads(list_call(_preload_content=False).data)["metadata"]["resourceVersion"]
        self.first_seen: dict[str, float] = {}
        self.done_since: dict[str, float] = {}
        self.events = 0
        self.changed = threading.Condition()

    def run(self) -> None:
        while not STOPPING.is_set():
            try:
                response = self._list(
                    watch=True,
                    resource_version=self.rv,
                    timeout_seconds=900,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                )
                buffer = b""
                for chunk in response.stream(65536):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            self._event(json.loads(line))
            except Exception as error:  # the cluster going down at the end, or a hiccup
                if STOPPING.is_set():
                    return
                log(f"watch interrupted ({error}); resuming")
                time.sleep(1)
                if isinstance(error, WatchExpired):  # list again; the items count as events
                    listing = json.loads(self._list(_preload_content=False).data)
                    for item in listing["items"]:
                        self._event({"type": "MODIFIED", "object": item})
                    self.rv = listing["metadata"]["resourceVersion"]

    def _event(self, event: dict[str, Any]) -> None:
        now, obj = time.monotonic(), event["object"]
        if event["type"] == "ERROR":
            raise WatchExpired(f"watch failed: {obj}")
        self.rv = obj["metadata"]["resourceVersion"]
        if event["type"] == "BOOKMARK":
            return
        name = obj["metadata"]["name"]
        with self.changed:
            self.events += 1
            self.first_seen.setdefault(name, now)
            if event["type"] != "DELETED" and self._done(obj):
                self.done_since.setdefault(name, now)
            else:
                self.done_since.pop(name, None)
            self.changed.notify_all()

    def wait(self, count: int, attribute: str, deadline: float) -> float | None:
        """The time when `count` objects first existed / were done together, or None."""
        with self.changed:
            while len(getattr(self, attribute)) < count:
                if not self.changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                    return None
            return max(getattr(self, attribute).values())


def deployment_ready(obj: dict[str, Any]) -> bool:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    want = spec.get("replicas", 1)
    return (
        status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) >= want
        and status.get("readyReplicas", 0) >= want
    )


def pod_ready(obj: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or ()
    )


def bare_pods(objects: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """One Pod per rendered Deployment, from its pod template: what the cluster costs with no
    operator and no Deployment, ReplicaSet or Service."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": obj["metadata"]["name"],
                "namespace": namespace,
                **obj["spec"]["template"]["metadata"],
            },
            "spec": obj["spec"]["template"]["spec"],
        }
        for obj in objects
        if obj["kind"] == "Deployment"
    ]


def md_available(obj: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or ()
    )


# ---------------------------------------------------------------------- the operator


def operator_kubeconfig(admin: Path, state: Path) -> Path:
    """A ServiceAccount bound to the chart's ClusterRole rules, and a token kubeconfig for it
    (hack/operator-identity.sh, as the demo and the tests make it)."""
    path = state / "operator.kubeconfig"
    subprocess.run(
        ["bash", str(ROOT / "hack" / "operator-identity.sh"), str(path), OPERATOR_SA, OPERATOR_NS],
        env={**os.environ, "KUBECONFIG": str(admin)},
        check=True,
        capture_output=True,
    )
    return path


class Operator:
    def __init__(self, kubeconfig: Path, logfile: Path, workers: int | None) -> None:
        self.metrics_port, liveness_port = free_port(), free_port()
        command = [
            str(ROOT / ".venv/bin/kubeinfer"),
            "operator",
            "--metrics-port",
            str(self.metrics_port),
            "--liveness-port",
            str(liveness_port),
        ]
        if workers:
            command += ["--workers", str(workers)]
        self.log = logfile.open("w")
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.logfile = logfile
        self.process = subprocess.Popen(
            command,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + 60
        while True:  # liveness answers once kopf has started (and the metrics server is up)
            if self.process.poll() is not None:
                sys.exit(f"the operator exited ({self.process.returncode}); see {logfile}")
            try:
                urllib.request.urlopen(
                    f"http://127.0.0.1:{liveness_port}/healthz", timeout=1
                ).read()
                self.metrics()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"the operator did not become live; see {logfile}")
                time.sleep(0.2)

    def wait_idle(self, started_at: float, limit: float = 120) -> float:
        """Seconds from `started_at` until the operator used under 5% of a CPU for a second."""
        while time.monotonic() - started_at < limit:
            before = cpu_seconds(self.process.pid)
            time.sleep(1)
            if cpu_seconds(self.process.pid) - before < 0.05:
                return time.monotonic() - 1 - started_at
        return limit

    def nodes_listed(self) -> tuple[float, float] | None:
        """(seconds from the start until the operator had listed the nodes, seconds the
        listing took), from its log line."""
        for line in self.logfile.read_text(errors="replace").splitlines():
            found = re.search(r"^(\S+) .*listed \d+ in /api/v1/nodes in ([\d.]+)s", line)
            if found:
                at = datetime.fromisoformat(found[1].replace("Z", "+00:00")).timestamp()
                return at - self.started_wall, float(found[2])
        return None

    def metrics(self) -> dict[str, float]:
        """kubeinfer_reconciles_total by result/trigger, plus the total."""
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ).read()
        values: dict[str, float] = {}
        for line in text.decode().splitlines():
            if line.startswith("kubeinfer_reconciles_total{"):
                labels, value = line[len("kubeinfer_reconciles_total") :].rsplit(" ", 1)
                values[labels] = float(value)
                values["total"] = values.get("total", 0.0) + float(value)
        return values

    def memory_kib(self) -> dict[str, int]:
        found = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0])
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# ------------------------------------------------------------------------- the phases


class Phase:
    """One timed run: create objects concurrently, watch until they exist and are ready."""

    def __init__(self, name: str, count: int, exist_count: int | None = None) -> None:
        self.name, self.count = name, count
        self.exist_count = count if exist_count is None else exist_count
        self.create_s: float | None = None
        self.exist_s: float | None = None
        self.ready_s: float | None = None
        self.cpu: dict[str, float] = {}
        self.exist_p50: float | None = None
        self.writes = Counter[str]()
        self.ready_p50: float | None = None

    def run(
        self,
        api: client.ApiClient,
        objects: list[dict[str, Any]],
        watch_exist: Watch,
        watch_ready: Watch,
        workers: int,
        timeout: float,
        state: Path,
        extra_pids: dict[str, int],
    ) -> None:
        processes = {**pids(state), **extra_pids}
        writes_before = apiserver_writes(state / "kubeconfig")
        before = {name: cpu_seconds(pid) for name, pid in processes.items()}
        before["bench script"] = own_cpu()
        watch_exist.start()
        if watch_ready is not watch_exist:
            watch_ready.start()
        started = time.monotonic()
        concurrently(lambda obj: create(api, obj), objects, workers)
        self.create_s = time.monotonic() - started
        deadline = started + timeout
        exist = watch_exist.wait(self.exist_count, "first_seen", deadline)
        self.exist_s = exist - started if exist else None
        ready = watch_ready.wait(self.count, "done_since", deadline)
        self.ready_s = ready - started if ready else None
        self.exist_p50 = median(watch_exist.first_seen.values(), started)
        self.ready_p50 = median(watch_ready.done_since.values(), started)
        if ready is None:
            log(
                f"{self.name}: only {len(watch_ready.done_since)}/{self.count} ready "
                f"after {timeout:.0f} s"
            )
        after = {name: cpu_seconds(pid) for name, pid in processes.items()}
        self.writes = apiserver_writes(state / "kubeconfig") - writes_before
        after["bench script"] = own_cpu()
        self.cpu = {name: after[name] - before[name] for name in before}


def ratio_line(name: str, operator_s: float | None, baseline_s: float | None) -> str:
    if operator_s and baseline_s:
        return f"{name}: {operator_s / baseline_s:.2f} ({operator_s:.1f} s / {baseline_s:.1f} s)"
    return f"{name}: n/a ({fmt(operator_s)} / {fmt(baseline_s)})"


def median(times: Iterable[float], started: float) -> float | None:
    ordered = sorted(times)
    return ordered[len(ordered) // 2] - started if ordered else None


def fmt(value: float | None, unit: str = "s") -> str:
    return "timeout" if value is None else f"{value:.1f} {unit}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=500, help="ModelDeployments (default 500)")
    parser.add_argument(
        "--scale",
        type=int,
        default=125,
        help="simnodes scale: 8 nodes each (125 -> 1,000; the mix fits from about 10)",
    )
    parser.add_argument(
        "--cluster-dir",
        type=Path,
        help="state folder (default $KUBEINFER_CLUSTER_DIR or .cache/bench-cluster)",
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent creates (default 16)")
    parser.add_argument("--workers", type=int, help="the operator's --workers (default: its own)")
    parser.add_argument("--timeout", type=float, default=300, help="per phase, seconds")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the plain-Deployments baseline"
    )
    parser.add_argument(
        "--profile",
        metavar="PY_SPY",
        help="py-spy binary: record the operator "
        "during the run (collapsed stacks in the cluster's logs folder)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster (and objects) up")
    args = parser.parse_args()

    # A SIGTERM (timeout, CI) still stops the operator and takes the cluster down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = cluster_env(args.cluster_dir)
    state = Path(env["KUBEINFER_CLUSTER_DIR"])
    admin = state / "kubeconfig"
    was_up = cluster_running(state)
    log(
        f"{'reusing' if was_up else 'starting'} the control plane in {state} "
        f"(apiserver port {env['APISERVER_PORT']})"
    )
    if not was_up:  # (up.sh's own node check is too short for 1,000 nodes already there)
        subprocess.run(
            ["bash", str(HACK / "up.sh")],
            env={**os.environ, **env},
            check=True,
            stdout=subprocess.DEVNULL,
        )
    operator: Operator | None = None
    try:
        api = config.new_client_from_config(str(admin))
        api.configuration.connection_pool_maxsize = args.clients * 2
        api.rest_client.pool_manager.connection_pool_kw["maxsize"] = args.clients * 2

        # 1. nodes
        nodes = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    str(HACK / "simnodes.py"),
                    str(HACK / "nodes.yaml"),
                    "--scale",
                    str(args.scale),
                ],
                capture_output=True,
                check=True,
            ).stdout
        )["items"]
        started = time.monotonic()
        concurrently(lambda node: create(api, node), nodes, args.clients)
        wait_nodes_ready(api, len(nodes), deadline=time.monotonic() + 300)
        log(f"{len(nodes)} nodes Ready in {time.monotonic() - started:.1f} s")

        mds = model_deployments(args.count, BENCH_NS)
        baseline_objects, engines = rendered_children(mds, nodes, BASELINE_NS)
        deployable = engines.total() - engines["none"]
        log("engines chosen offline: " + ", ".join(f"{e} {n}" for e, n in sorted(engines.items())))
        apps, custom = client.AppsV1Api(api), client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        phases: list[Phase] = []

        # 2. baseline: the same children, created directly, no operator
        if not args.no_baseline:
            delete_namespace(api, BASELINE_NS, wait=True)  # left over from a --keep run
            ensure_namespace(api, BASELINE_NS)
            baseline = Phase(
                f"baseline: {deployable} x (Service, Deployment), no operator",
                deployable,
            )
            deployments = Watch(
                lambda **kw: apps.list_namespaced_deployment(BASELINE_NS, **kw), deployment_ready
            )
            log(f"baseline: creating {len(baseline_objects)} objects")
            baseline.run(
                api,
                baseline_objects,
                deployments,
                deployments,
                args.clients,
                args.timeout,
                state,
                {},
            )
            phases.append(baseline)
            log(
                f"baseline: all Deployments ready in {fmt(baseline.ready_s)}; "
                "deleting the namespace"
            )
            log(f"baseline namespace gone in {delete_namespace(api, BASELINE_NS, wait=True):.1f} s")

            # 2b. bare Pods: one per ModelDeployment, the same pod template, nothing else
            delete_namespace(api, PODS_NS, wait=True)
            ensure_namespace(api, PODS_NS)
            pods = bare_pods(baseline_objects, PODS_NS)
            pods_phase = Phase(f"bare pods: {len(pods)} Pods, no operator", len(pods))
            pod_watch = Watch(lambda **kw: core.list_namespaced_pod(PODS_NS, **kw), pod_ready)
            log(f"bare pods: creating {len(pods)} Pods")
            pods_phase.run(api, pods, pod_watch, pod_watch, args.clients, args.timeout, state, {})
            phases.append(pods_phase)
            log(f"bare pods: all Ready in {fmt(pods_phase.ready_s)}; deleting the namespace")
            log(f"bare pods namespace gone in {delete_namespace(api, PODS_NS, wait=True):.1f} s")

        # 3. the operator
        kubectl(admin, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(
            admin,
            "wait",
            "--for=condition=Established",
            "crd",
            f"{PLURAL}.{GROUP}",
            "--timeout=60s",
        )
        delete_namespace(api, BENCH_NS, wait=True)  # left over from a --keep run
        ensure_namespace(api, BENCH_NS)
        token_config = operator_kubeconfig(admin, state)
        operator = Operator(token_config, state / "logs" / "bench-operator.log", args.workers)
        log(
            f"operator running (pid {operator.process.pid}) as system:serviceaccount:"
            f"{OPERATOR_NS}:{OPERATOR_SA}; log in {state / 'logs' / 'bench-operator.log'}"
        )
        # The clock starts once kopf has listed everything (1,000 nodes) and gone idle.
        startup_s = operator.wait_idle(started_at=operator.started)
        log(f"operator idle {startup_s:.1f} s after start")
        idle_kib = operator.memory_kib()["VmRSS"]
        before = operator.metrics()
        md_phase = Phase(f"operator: {args.count} ModelDeployments", args.count, deployable)
        children_watch = Watch(
            lambda **kw: apps.list_namespaced_deployment(BENCH_NS, **kw), lambda obj: True
        )
        md_watch = Watch(
            lambda **kw: custom.list_namespaced_custom_object(
                GROUP, VERSION, BENCH_NS, PLURAL, **kw
            ),
            md_available,
        )
        profiler = None
        if args.profile:
            profile_out = state / "logs" / "bench-operator.pyspy.txt"
            profiler = subprocess.Popen(
                [
                    args.profile,
                    "record",
                    "--pid",
                    str(operator.process.pid),
                    "--format",
                    "raw",
                    "--rate",
                    "50",
                    "--nonblocking",
                    # Only the thread holding the GIL: the operator's CPU, not its waits.
                    "--gil",
                    "--output",
                    str(profile_out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        log(f"creating {args.count} ModelDeployments")
        md_phase.run(
            api,
            mds,
            children_watch,
            md_watch,
            args.clients,
            args.timeout,
            state,
            {"operator": operator.process.pid},
        )
        after = operator.metrics()
        if profiler:
            profiler.send_signal(signal.SIGINT)
            profiler.wait()
            log(f"profile: {profile_out}")
        memory = operator.memory_kib()
        phases.append(md_phase)
        time.sleep(5)
        settled = operator.metrics()

        # 4. figures
        reconciles = after.get("total", 0) - before.get("total", 0)
        print()
        print(
            f"{len(nodes)} simulated nodes; {args.count} ModelDeployments: "
            + ", ".join(f"{e} {n}" for e, n in sorted(engines.items()))
        )
        print(f"{'':<62}{'':>9}{'Deployments exist':>19}{'ready/Available':>19}")
        print(f"{'run':<62}{'create':>9}{'half':>9}{'all':>10}{'half':>9}{'all':>10}")
        for p in phases:
            print(
                f"{p.name:<62}{fmt(p.create_s):>9}{fmt(p.exist_p50):>9}{fmt(p.exist_s):>10}"
                f"{fmt(p.ready_p50):>9}{fmt(p.ready_s):>10}"
            )
        print()
        rate = reconciles / md_phase.ready_s if md_phase.ready_s else None
        print(
            f"operator reconciles until all Available: {reconciles:.0f} "
            f"({fmt(rate, 'reconciles/s')}); "
            f"5 s later: {settled.get('total', 0) - before.get('total', 0):.0f}"
        )
        by_kind = {k: after.get(k, 0) - before.get(k, 0) for k in after if k != "total"}
        print(
            "  by result/trigger: "
            + ", ".join(f"{k.strip('{}')}: {v:.0f}" for k, v in sorted(by_kind.items()) if v)
        )
        listed = operator.nodes_listed()
        print(
            f"operator start-up: nodes listed {fmt(listed[0] if listed else None)} after the "
            f"start (the listing itself {listed[1] if listed else 0:.2f} s); "
            f"idle (initial listings done) after {startup_s:.1f} s"
        )
        print(
            f"operator RSS: idle {idle_kib / 1024:.0f} MiB, "
            f"peak (VmHWM) {memory['VmHWM'] / 1024:.0f} MiB"
            " (goal < 300 MiB)"
        )
        goal = md_phase.ready_s is not None and md_phase.ready_s <= 60
        print(
            f"goal all Available within 60 s: {'met' if goal else 'missed'}; "
            f"peak RSS goal: {'met' if memory['VmHWM'] < 300 * 1024 else 'missed'}"
        )
        print()
        print("CPU seconds spent during each run (2 cores = 2 CPU-s per wall second):")
        names = list(dict.fromkeys(name for phase in phases for name in phase.cpu))
        print(f"{'process':<26}" + "".join(f"{p.name.split(':')[0]:>12}" for p in phases))
        for name in names:
            print(f"{name:<26}" + "".join(f"{p.cpu.get(name, 0):>12.1f}" for p in phases))
        print()
        print("apiserver writes during each run (node leases are KWOK's heartbeats):")
        top = Counter[str]()
        for phase in phases:
            top.update(phase.writes)
        print(f"{'verb resource':<40}" + "".join(f"{p.name.split(':')[0]:>12}" for p in phases))
        for key, _ in top.most_common(16):
            print(f"{key:<40}" + "".join(f"{p.writes.get(key, 0):>12}" for p in phases))
        print(f"{'all writes':<40}" + "".join(f"{p.writes.total():>12}" for p in phases))
        print()
        # Writes the ModelDeployments caused (the nodes' heartbeats and status are KWOK's).
        heartbeats = ("PUT leases", "PUT nodes/status", "PATCH nodes/status", "PATCH nodes")
        caused = md_phase.writes.total() - sum(md_phase.writes[key] for key in heartbeats)
        cpu_ms = md_phase.cpu.get("operator", 0.0) / args.count * 1000
        base_s, pods_s = (
            (None, None) if args.no_baseline else (phases[0].ready_s, phases[1].ready_s)
        )
        # The order issue 13 asks for: both ratios, then the operator's own costs.
        print(ratio_line("operator/baseline", md_phase.ready_s, base_s))
        print(ratio_line("operator/bare-pods", md_phase.ready_s, pods_s))
        print(
            f"operator peak RSS: {memory['VmHWM'] / 1024:.0f} MiB; "
            f"CPU per ModelDeployment: {cpu_ms:.0f} ms; "
            f"writes per ModelDeployment: {caused / args.count:.1f}"
        )
        return 0
    finally:
        STOPPING.set()
        if operator:
            operator.stop()
        if args.keep or was_up:
            log(f"cluster left up: export KUBECONFIG={admin}")
        else:
            subprocess.run(
                ["bash", str(HACK / "down.sh")],
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                check=False,
            )
            log("cluster down")


if __name__ == "__main__":
    sys.exit(main())
