"""What each kind of request the operator makes costs the API server and etcd, in CPU.

On a 2-core machine the operator benchmark is CPU-bound: its time over the baseline is the
extra CPU the operator's work costs the whole control plane. This measures the pieces one at
a time on an idle control plane (the operator benchmark's own, .cache/bench-cluster; no
nodes are needed): N requests of each kind from 8 threads, and the CPU the kube-apiserver
and etcd processes spent meanwhile, per request. The baseline, in the same run, is a
ConfigMap create.

    .venv/bin/python benchmarks/bench_api_costs.py [--count 300] [--keep]

The statuses written are the operator's own: its plan and status code run offline for each
ModelDeployment (the first write, whole, and the one when the pod is ready).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_operator import (
    HACK,
    cluster_env,
    cluster_running,
    cpu_seconds,
    kubectl,
    model_deployments,
    pids,
)

from kubeinfer.api.v1alpha1 import GROUP, PLURAL, VERSION
from kubeinfer.kube import Kube, login
from kubeinfer.nodes import node_classes, node_facts
from kubeinfer.plan import Observed, conclude, plan
from kubeinfer.render import ImageSettings
from kubeinfer.workload import DeploymentSummary, PodSummary

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "bench-api-costs"
MD_PATH = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"


def statuses(mds: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(first status patch, patch when its pod is ready) for each, as the operator plans them."""
    nodes = json.loads(
        subprocess.run(
            [sys.executable, str(HACK / "simnodes.py"), str(HACK / "nodes.yaml")],
            capture_output=True,
            check=True,
        ).stdout
    )["items"]
    classes = node_classes(node_facts(node) for node in nodes)
    now = datetime.now(UTC)
    patches = []
    for body in mds:
        body = json.loads(json.dumps(body))
        body["metadata"] |= {"namespace": NAMESPACE, "uid": "u", "generation": 1}
        first = plan(Observed(body, None, classes), ImageSettings(), apply_always=True)
        started = conclude(
            Observed(body, None, classes), first, problem=None, cache=None, applied=True, now=now
        )
        rolled = DeploymentSummary(
            generation=1,
            observed_generation=1,
            replicas=1,
            ready_replicas=1,
            updated_replicas=1,
            template_hash=first.template_hash,
        )
        pod = PodSummary("p", first.template_hash, "Running", None, None, deleting=False)
        ready = conclude(
            Observed(body, started.status, classes, deployment=rolled, pods=(pod,)),
            first,
            problem=None,
            cache=None,
            applied=False,
            now=now,
        )
        if started.patch is None or ready.patch is None:
            raise SystemExit(f"{body['metadata']['name']}: the plan wrote no status")
        patches.append((started.patch, ready.patch))
    return patches


def measure(
    label: str, processes: dict[str, int], request: Callable[[Any], object], items: Iterable[Any]
) -> None:
    items = list(items)
    time.sleep(1)  # let the previous kind's watch events and compactions settle
    before = {name: cpu_seconds(pid) for name, pid in processes.items()}
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(request, items))
    wall = time.monotonic() - started
    time.sleep(1)
    spent = {
        name: (cpu_seconds(pid) - before[name]) * 1000 / len(items)
        for name, pid in processes.items()
    }
    print(
        f"{label:<52}{spent['kube-apiserver']:>8.2f}{spent['etcd']:>8.2f}{len(items) / wall:>10.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="requests of each kind")
    parser.add_argument("--keep", action="store_true", help="leave the cluster up")
    args = parser.parse_args()
    env = cluster_env(None)
    state = Path(env["KUBEINFER_CLUSTER_DIR"])
    admin = state / "kubeconfig"
    was_up = cluster_running(state)

    def control_plane(script: str) -> None:  # up.sh or down.sh, on the benchmark's state
        env_all = {**os.environ, **env}
        subprocess.run(
            ["bash", str(HACK / script)], env=env_all, check=True, stdout=subprocess.DEVNULL
        )

    if not was_up:
        control_plane("up.sh")
    try:
        kubectl(admin, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(admin, "wait", "--for=condition=Established", "crd", "--all")
        kubectl(admin, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
        kubectl(admin, "create", "namespace", NAMESPACE)
        kube = Kube(login(str(admin)))
        processes = {
            name: pid for name, pid in pids(state).items() if name in ("kube-apiserver", "etcd")
        }
        mds = model_deployments(args.count, NAMESPACE)
        patches = statuses(mds)
        names = [md["metadata"]["name"] for md in mds]

        def patch_status(item: tuple[str, dict[str, Any]]) -> None:
            name, patch = item
            kube.patch_status(NAMESPACE, name, patch)

        print(f"\n{args.count} requests of each kind, CPU per request (ms):")
        print(f"{'request':<52}{'apiserver':>8}{'etcd':>8}{'per s':>10}")
        config_maps = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"c{i}"},
                "data": {"k": "v" * 500},
            }
            for i in range(args.count)
        ]
        measure(
            "baseline: POST configmaps",
            processes,
            lambda cm: kube.create(cm | {"metadata": cm["metadata"] | {"namespace": NAMESPACE}}),
            config_maps,
        )
        measure(
            "POST modeldeployments",
            processes,
            lambda md: kube.request("POST", MD_PATH, body=md),
            mds,
        )
        measure(
            "PATCH modeldeployments/status (the first, whole)",
            processes,
            patch_status,
            zip(names, (p[0] for p in patches), strict=True),
        )
        measure(
            "PATCH modeldeployments/status (pod ready)",
            processes,
            patch_status,
            zip(names, (p[1] for p in patches), strict=True),
        )
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": "md.", "namespace": NAMESPACE},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelDeployment",
                "namespace": NAMESPACE,
            },
            "reason": "EngineSelected",
            "message": "llama.cpp is the first engine whose rules hold",
            "type": "Normal",
            "source": {"component": "kubeinfer"},
        }
        measure(
            "POST events",
            processes,
            lambda name: kube.request(
                "POST",
                f"/api/v1/namespaces/{NAMESPACE}/events",
                body=event | {"involvedObject": event["involvedObject"] | {"name": name}},
            ),
            names,
        )
    finally:
        if not args.keep:
            kubectl(admin, "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
            if not was_up:
                control_plane("down.sh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
