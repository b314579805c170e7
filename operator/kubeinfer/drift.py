"""Live children against the desired ones: what each needs, and why (pure).

The watches keep a `ChildState` of every child; a reconcile plans one `Step` per child from
it. Two kinds of drift exist. A value kubeinfer wrote that is missing or different shows in a
comparison of the desired object with the live one. A field someone else added (a sidecar,
`privileged: true`) does not, since kubeinfer's object says nothing about it; it shows in
`metadata.managedFields`, where another manager then owns part of the spec. Server-side apply
removes only fields its own manager owns, so those foreign entries are first handed to
kubeinfer (`adopted_managed_fields`) and the next apply drops what kubeinfer does not want.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from kubeinfer.api.v1alpha1 import quantity_value

FIELD_MANAGER = "kubeinfer"
# The parts of a child kubeinfer writes; metadata beyond labels and owners belongs to others
# (the Deployment controller's revision annotation, for one).
_CONTENT = ("spec", "data", "binaryData")
_OWNED_ROOTS = frozenset(f"f:{key}" for key in _CONTENT)
# List items are matched by these keys, as server-side apply merges them.
_MERGE_KEYS = ("name", "containerPort", "mountPath")


@dataclass(frozen=True)
class ChildState:
    """What a reconcile needs to know about one live child."""

    kind: str
    name: str
    uid: str
    resource_version: str
    controller_uid: str | None  # the uid of its controller owner reference
    foreign_managers: tuple[str, ...]  # other managers owning part of its spec or data
    labels: Mapping[str, str]
    content: Mapping[str, Any]  # spec (and data or binaryData, where a kind has them)
    # Created with a plain create (kubeinfer's fields then sit in an Update entry, which a
    # later apply does not prune): the next new spec first adopts them into the apply entry.
    created: bool = False

    def unversioned(self) -> ChildState:
        """The child whatever its resourceVersion, for comparisons (a status write changes
        the version, not what kubeinfer wrote)."""
        return replace(self, resource_version="")


class Action(Enum):
    NONE = "none"
    CREATE = "create"  # missing: create it (a name someone else holds fails the create)
    APPLY = "apply"  # ours and only kubeinfer's, but differs (or the spec changed)
    RECLAIM = "reclaim"  # another manager owns part of it: take those fields, then apply
    CONFLICT = "conflict"  # the name is held by an object this ModelDeployment does not control


@dataclass(frozen=True)
class Step:
    action: Action
    obj: Mapping[str, Any]
    state: ChildState | None
    why: str  # empty when nothing drifted


def child_state(body: Mapping[str, Any]) -> ChildState:
    meta = body.get("metadata") or {}
    controller = next(
        (o for o in meta.get("ownerReferences") or () if o.get("controller")),
        None,
    )
    return ChildState(
        kind=str(body.get("kind") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        controller_uid=controller.get("uid") if controller else None,
        foreign_managers=foreign_managers(meta.get("managedFields") or ()),
        created=any(_own_update(entry) for entry in meta.get("managedFields") or ()),
        labels=dict(meta.get("labels") or {}),
        content={key: body[key] for key in _CONTENT if key in body},
    )


def foreign_managers(managed_fields: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """Managers other than kubeinfer that own part of the spec or data (status excluded)."""
    found = {
        str(entry.get("manager") or "?")
        for entry in managed_fields
        if entry.get("manager") != FIELD_MANAGER and _owns_content(entry)
    }
    return tuple(sorted(found))


def _owns_content(entry: Mapping[str, Any]) -> bool:
    return entry.get("subresource", "") != "status" and bool(
        _OWNED_ROOTS & set(entry.get("fieldsV1") or {})
    )


def _own_update(entry: Mapping[str, Any]) -> bool:
    """kubeinfer's entry of a create (or an update): its fields belong in the apply entry."""
    return (
        entry.get("manager") == FIELD_MANAGER
        and entry.get("operation") != "Apply"
        and _owns_content(entry)
    )


def plan_child(
    desired: Mapping[str, Any], state: ChildState | None, owner_uid: str, *, changed_spec: bool
) -> Step:
    kind, name = desired["kind"], desired["metadata"]["name"]
    where = f"{kind} {desired['metadata']['namespace']}/{name}"
    if state is None:
        return Step(Action.CREATE, desired, None, f"{where} is missing")
    if state.controller_uid != owner_uid:
        holder = "has no controller" if state.controller_uid is None else "has another controller"
        return Step(
            Action.CONFLICT,
            desired,
            state,
            f"{kind} {name} already exists and {holder}: kubeinfer leaves it alone; "
            "rename or delete it, or rename this ModelDeployment",
        )
    if state.foreign_managers:
        return Step(
            Action.RECLAIM,
            desired,
            state,
            f"{where} was changed by {', '.join(state.foreign_managers)}",
        )
    live = {"metadata": {"labels": dict(state.labels)}, **state.content}
    wanted = {key: desired[key] for key in ("metadata", *_CONTENT) if key in desired}
    wanted["metadata"] = {"labels": desired["metadata"].get("labels", {})}
    path = difference(wanted, live)
    if path is None and not changed_spec:
        return Step(Action.NONE, desired, state, "")
    why = f"{where} differs at {path}" if path is not None else ""  # "": a new spec
    # A child made by a create: its fields go to the apply entry first, so that the apply
    # prunes what the desired object leaves out.
    return Step(Action.RECLAIM if state.created else Action.APPLY, desired, state, why)


def difference(desired: Any, live: Any, path: str = "") -> str | None:
    """The first path where `live` lacks or contradicts `desired` (fields `live` has beyond
    `desired` are the apiserver's defaults), or None."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return path or "."
        for key in sorted(desired):
            if key not in live:
                return f"{path}.{key}"
            found = difference(desired[key], live[key], f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return path
        key = _merge_key(desired)
        if key is not None:
            by_key = {item.get(key): item for item in live if isinstance(item, Mapping)}
            for item in desired:
                found = difference(item, by_key.get(item[key]), f"{path}[{item[key]}]")
                if found is not None:
                    return found
            return None
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            found = difference(want, have, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if desired == live or _same_quantity(desired, live):
        return None
    return path


def adopted_managed_fields(
    managed_fields: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """managedFields with every foreign entry that owns spec or data merged into kubeinfer's
    apply entry: the next apply then removes what kubeinfer's object leaves out."""
    kept: list[dict[str, Any]] = []
    merged: dict[str, Any] = {}
    for entry in managed_fields:
        fields = entry.get("fieldsV1") or {}
        ours = entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
        if ours or _owns_content(entry):
            merged = _union(merged, fields)
        else:
            kept.append(dict(entry))
    apply_entry = {
        "manager": FIELD_MANAGER,
        "operation": "Apply",
        "apiVersion": next(
            (e["apiVersion"] for e in managed_fields if e.get("manager") == FIELD_MANAGER),
            managed_fields[0]["apiVersion"] if managed_fields else "v1",
        ),
        "fieldsType": "FieldsV1",
        "fieldsV1": merged,
    }
    return [*kept, apply_entry]


def _union(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _union(out[key], value) if key in out else value
    return out


def _merge_key(items: list[Any]) -> str | None:
    if not items or not all(isinstance(i, Mapping) for i in items):
        return None
    return next((k for k in _MERGE_KEYS if all(k in i for i in items)), None)


def _same_quantity(a: Any, b: Any) -> bool:
    """The apiserver rewrites quantities in canonical form ("0.5" reads back as "500m")."""
    if not isinstance(a, str | int) or not isinstance(b, str | int):
        return False
    left, right = quantity_value(str(a)), quantity_value(str(b))
    return left is not None and left == right
