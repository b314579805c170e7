"""The `kubeinfer` command: explain a decision, render the child objects, print the CRD.

  kubeinfer explain -f model.yaml [--nodes nodes.yaml | --kubeconfig PATH] [-o table|json]
  kubeinfer render  -f model.yaml [--nodes nodes.yaml | --kubeconfig PATH]
  kubeinfer crd     [-o FILE_OR_DIR]

Nodes come from --nodes FILE (as `kubectl get nodes -o yaml` prints them; the local
cluster's are in hack/controlplane/sample-nodes.yaml), or else from the cluster: --kubeconfig
PATH, $KUBECONFIG, or ~/.kube/config, the current context (as kubectl). `-f -` reads the
manifest from stdin.

Exit codes: 0 done, 1 the API server cannot be reached (one line says why), 2 invalid input
(the message names the field; for explain also engineParams the engine's parser refuses),
3 no engine can run the model anywhere in the cluster (the output says why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from kubeinfer import crd
from kubeinfer.api.problems import describe
from kubeinfer.api.v1alpha1 import KIND, ModelDeployment, Toleration
from kubeinfer.decide import Decision, decide
from kubeinfer.nodes import node_facts
from kubeinfer.params.check import Problem
from kubeinfer.params.check import describe as describe_params
from kubeinfer.params.check import problems as param_problems
from kubeinfer.render import ImageSettings, children, endpoint_url

EXIT_UNREACHABLE = 1
EXIT_INVALID = 2
EXIT_NO_ENGINE = 3


class InputError(Exception):
    """Input the user must fix; the message names the file and the field."""


class ClusterError(Exception):
    """The cluster could not be asked (unreachable, refused); the message says which."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace, TextIO], int] = args.run
    try:
        return command(args, sys.stdout)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeinfer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    explain = commands.add_parser("explain", help="show which engine runs a model, and why")
    _add_decision_inputs(explain)
    explain.add_argument("-o", "--output", choices=("table", "json"), default="table")
    explain.set_defaults(run=_explain)

    render = commands.add_parser("render", help="print the objects the operator would create")
    _add_decision_inputs(render)
    render.set_defaults(run=_render)

    crd_command = commands.add_parser("crd", help="print or write the ModelDeployment CRD")
    crd_command.add_argument(
        "-o", "--output", type=Path, help="file, or directory to write the CRD file into"
    )
    crd_command.set_defaults(run=_crd)
    operator = commands.add_parser("operator", help="run the controller (kopf)")
    operator.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: every namespace",
    )
    operator.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics")
    operator.add_argument("--liveness-port", type=int, default=8080, help="GET /healthz")
    operator.add_argument("--images", type=Path, help="YAML of runtime images (Helm values)")
    operator.add_argument("--workers", type=int, default=16, help="concurrent reconciles")
    operator.add_argument(
        "--resync-seconds",
        type=float,
        default=float(os.environ.get("KUBEINFER_RESYNC_SECONDS", "300")),
        help="how often each ModelDeployment's children are read back from the API "
        "(jittered), to repair what the watches missed (env KUBEINFER_RESYNC_SECONDS)",
    )
    operator.set_defaults(run=_operator)
    return parser


def _add_decision_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filename", type=Path, required=True, help="ModelDeployment YAML (- for stdin)"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--nodes", type=Path, help="Nodes as `kubectl get nodes -o yaml` prints them"
    )
    source.add_argument(
        "--kubeconfig",
        help="read the nodes from this cluster (default, without --nodes: $KUBECONFIG, "
        "else ~/.kube/config, current context)",
    )


# ------------------------------------------------------------------------------ commands


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    md, decision = _decide(args)
    bad = _param_problems(decision)
    if args.output == "json":
        document = decision.to_json()
        document["endpoint"] = endpoint_url(md) if decision.engine else None
        document["paramProblems"] = [str(p) for p in bad]
        json.dump(document, out, indent=2, sort_keys=False)
        out.write("\n")
    else:
        out.write(format_table(md, decision))
        if bad:
            out.write("\nPARAMETER PROBLEMS (the operator refuses this spec: InvalidSpec)\n")
            out.write(describe_params(bad) + "\n")
    if bad:
        return EXIT_INVALID
    return 0 if decision.engine else EXIT_NO_ENGINE


def _render(args: argparse.Namespace, out: TextIO) -> int:
    md, decision = _decide(args)
    if decision.engine is None:
        print(f"no engine can run {md.metadata.name}: {decision.reason}", file=sys.stderr)
        return EXIT_NO_ENGINE
    bad = _param_problems(decision)
    if bad:
        raise InputError(f"{args.filename}: invalid engineParams:\n{describe_params(bad)}")
    yaml.dump_all(children(md, decision, ImageSettings()), out, Dumper=_Dumper, sort_keys=True)
    return 0


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the runtime config in the pod template's annotation) as literal
    blocks, readable as the runtime reads them; the documents load back the same."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _crd(args: argparse.Namespace, out: TextIO) -> int:
    text = crd.crd_yaml()
    target: Path | None = args.output
    if target is None:
        out.write(text)
        return 0
    if target.is_dir():
        target = target / Path(crd.CRD_FILE).name
    target.write_text(text)
    return 0


def _operator(args: argparse.Namespace, out: TextIO) -> int:
    images = ImageSettings()
    if args.images:
        try:
            images = ImageSettings.model_validate(_read_documents(args.images)[0] or {})
        except ValidationError as error:
            raise InputError(f"{args.images}: {describe(error)}") from None
    # kopf imports the official client, when installed, only to log in through it: 20 MiB and
    # half a second the operator does without (it logs in and calls the API itself).
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    # Imported here: explain/render/crd must work without kopf and a cluster.
    from kubeinfer.operator_main import run_operator

    run_operator(
        namespaces=args.namespace,
        metrics_port=args.metrics_port,
        liveness_port=args.liveness_port,
        images=images,
        workers=args.workers,
        resync_seconds=args.resync_seconds,
    )
    return 0


# -------------------------------------------------------------------------------- inputs


def _decide(args: argparse.Namespace) -> tuple[ModelDeployment, Decision]:
    md = load_model_deployment(args.filename)
    nodes = load_nodes(args.nodes) if args.nodes else cluster_nodes(args.kubeconfig)
    facts = [node_facts(node) for node in nodes]
    keep = md.status.engine if md.status else None
    return md, decide(md.spec, facts, keep_engine=keep)


def _param_problems(decision: Decision) -> list[Problem]:
    """What the operator would refuse in the decided engine's params (see kubeinfer.params)."""
    if decision.engine is None:
        return []
    return param_problems(decision.engine, decision.engine_params)


def _read_documents(path: Path) -> list[Any]:
    try:
        if str(path) == "-":
            return [doc for doc in yaml.safe_load_all(sys.stdin) if doc is not None]
        with path.open() as f:
            return [doc for doc in yaml.safe_load_all(f) if doc is not None]
    except OSError as error:
        raise InputError(f"{path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML: {error}") from error


def load_model_deployment(path: Path) -> ModelDeployment:
    """The first ModelDeployment in a YAML file; InputError naming the field if invalid."""
    documents = _read_documents(path)
    found = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
    if not found:
        raise InputError(f"{path}: no document with kind: {KIND}")
    try:
        return ModelDeployment.from_object(found[0])
    except ValidationError as error:
        raise InputError(f"{path}: invalid {KIND}:\n{describe(error)}") from None


def load_nodes(path: Path) -> list[dict[str, Any]]:
    """Nodes from a NodeList / List, a YAML list of Nodes, or a multi-document YAML."""
    nodes: list[dict[str, Any]] = []
    for document in _read_documents(path):
        if isinstance(document, list):
            nodes.extend(document)
        elif isinstance(document, dict) and "items" in document:
            nodes.extend(document["items"] or [])
        else:
            nodes.append(document)
    for index, node in enumerate(nodes):
        if not isinstance(node, dict) or node.get("kind", "Node") != "Node":
            raise InputError(f"{path}: item {index} is not a Node")
    return nodes


def cluster_nodes(kubeconfig: str | None) -> list[dict[str, Any]]:  # pragma: no cover
    """The current cluster's Nodes (the only code path that needs the Kubernetes client)."""
    # lazy: the pure commands must not need it
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import MaxRetryError

    try:
        config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except config.ConfigException as error:
        raise InputError(f"cannot load kubeconfig: {error}") from error
    api = client.ApiClient()
    try:
        node_list = client.CoreV1Api(api).list_node(_request_timeout=30)
    except ApiException as error:
        raise ClusterError(f"listing nodes: {error.status} {error.reason}") from None
    except (OSError, MaxRetryError) as error:
        host = api.configuration.host
        raise ClusterError(f"cannot reach the API server at {host}: {_cause(error)}") from None
    serialized = api.sanitize_for_serialization(node_list)  # type: ignore[no-untyped-call]
    items: list[dict[str, Any]] = serialized["items"]
    return items


def _cause(error: Exception) -> str:
    """The innermost reason of a connection error (urllib3 wraps it twice)."""
    reason: object = error
    while (inner := getattr(reason, "reason", None)) is not None:
        reason = inner
    text = str(reason)
    # urllib3 prefixes "<HTTPConnection object at 0x...>: "; the rest is the OS's word.
    return text.split(">: ", 1)[-1]


def _version() -> str:
    try:
        return version("kubeinfer")
    except PackageNotFoundError:
        return "unknown"


# -------------------------------------------------------------------------------- output


def format_table(md: ModelDeployment, decision: Decision) -> str:
    rows: list[tuple[str, str]] = [
        ("ModelDeployment", f"{md.metadata.namespace}/{md.metadata.name}"),
        ("Engine", decision.engine or "none"),
        ("Reason", decision.reason),
    ]
    plan = decision.placement
    if plan is not None:
        rows.append(("Nodes", f"{plan.node_class} ({', '.join(plan.nodes)})"))
        if plan.gpus_per_replica:
            rows.append(
                (
                    "GPUs",
                    f"{plan.gpus_per_replica} x {plan.gpu_resource} per replica "
                    f"({plan.accelerator} image)",
                )
            )
        else:
            rows.append(("GPUs", f"none ({plan.accelerator})"))
        rows.append(("Node selector", _pairs(plan.node_selector)))
        if plan.tolerations:
            tolerated = ", ".join(_toleration_text(t) for t in plan.tolerations)
            rows.append(("Tolerations", tolerated))
        rows.append(("Endpoint", endpoint_url(md)))
    if decision.engine_params:
        added = set(decision.added_params)
        rows.append(
            (
                "Engine params",
                ", ".join(
                    f"{k}={json.dumps(v)}{' (added)' if k in added else ''}"
                    for k, v in sorted(decision.engine_params.items())
                ),
            )
        )
    if decision.gpu_layers is not None:
        layers = decision.gpu_layers
        count = "all" if layers.n_gpu_layers < 0 else str(layers.n_gpu_layers)
        rows.append(("GPU layers", f"{count} (estimate; the runtime sets it): {layers.reason}"))
    if decision.memory_estimate:
        rows.append(("Memory estimate", decision.memory_estimate))
    rows.extend(("Assumed", note) for note in decision.assumptions)

    width = max(len(label) for label, _ in rows) + 2
    text = "".join(f"{label + ':':<{width}}{value}\n" for label, value in rows)
    text += "\nCANDIDATES\n"
    engine_width = max(len(c.engine) for c in decision.candidates) + 2
    text += f"{'ENGINE':<{engine_width}}{'MATCHED':<9}REASON\n"
    for candidate in decision.candidates:
        matched = "yes" if candidate.matched else "no"
        text += f"{candidate.engine:<{engine_width}}{matched:<9}{candidate.reason}\n"
    return text


def _toleration_text(t: Toleration) -> str:
    """key[=value][:effect][ for Ns], as taints are written; `*` for an empty key."""
    text = t.key or "*"
    if t.operator == "Equal":
        text += f"={t.value}"
    if t.effect:
        text += f":{t.effect}"
    if t.toleration_seconds is not None:
        text += f" for {t.toleration_seconds}s"
    return text


def _pairs(mapping: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(mapping.items()))


if __name__ == "__main__":
    sys.exit(main())
