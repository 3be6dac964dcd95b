"""Generate the CustomResourceDefinitions from the pydantic models.

The models in :mod:`regionshift.api.models` are the one source of truth; this module turns
their JSON schema into what Kubernetes calls a *structural* OpenAPI v3 schema: every
``$ref`` inlined, ``anyOf: [X, null]`` turned into an optional field, no ``title``,
``exclusiveMinimum`` in its OpenAPI 3.0 (boolean) form, maps as ``additionalProperties``,
and the models' CEL rules kept where they stand. Schema extras a model declares (list
types, map keys, transition rules) pass through unchanged, so the YAML is never edited by
hand. Every description comes from the models: a field's ``description``, or a model's
docstring (the resource model's docstring is the CRD's top-level description).
``regionshift crds`` writes the result to ``crds/``; a unit test fails when the files there
drift from the models.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from regionshift.api.models import API_GROUP, API_VERSION, DarkCluster, RegionFailover

__all__ = ["CRD_FILES", "crd_manifests", "render_crds", "resource_schema", "structural_schema", "write_crds"]

CRD_FILES = {"regionfailovers.yaml": "RegionFailover", "darkclusters.yaml": "DarkCluster"}
"""File name in ``crds/`` for each kind."""

_DROP = {"title", "$defs", "discriminator"}


def _prose(text: str) -> str:
    """A docstring as a description: each paragraph on one line, paragraphs apart."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every $ref and rewrite JSON-schema idioms into structural OpenAPI v3."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) == 1:
            merged = {**_resolve(options[0], defs), **_resolve(rest, defs)}
            if merged.get("default", 0) is None:
                merged.pop("default")
            return merged
        raise ValueError(f"a union other than Optional cannot be structural: {node['anyOf']}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "description" and isinstance(value, str):
            out[key] = _prose(value)
        elif key == "additionalProperties" and isinstance(value, bool):
            if value:
                out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out[key] = _resolve(value, defs)
    if out.get("type") == "array" and out.get("items", {}).get("properties", {}).get("type") and _is_condition(out["items"]):
        out["x-kubernetes-list-type"] = "map"
        out["x-kubernetes-list-map-keys"] = ["type"]
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _is_condition(items: dict[str, Any]) -> bool:
    props = items.get("properties", {})
    return {"type", "status", "reason", "lastTransitionTime"} <= set(props)


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one model."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _resolve(raw, raw.get("$defs", {}))


def _status_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = structural_schema(model)
    schema["properties"]["kopf"] = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "description": "kopf's own bookkeeping (the operator is configured to keep it in annotations).",
    }
    return schema


_COLUMNS = {
    "RegionFailover": [
        {"name": "Region", "type": "string", "jsonPath": ".spec.region"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Evacuated", "type": "string", "jsonPath": ".status.evacuatedRegions",
         "description": "The regions under evacuation, with the phase of those not yet (or no longer) Evacuated."},
        # A slice from the end: the last entry of the bounded history (blank while it is empty).
        {"name": "Reason", "type": "string", "jsonPath": ".status.history[-1:].reason",
         "description": "Why the last transition of an evacuation happened (status.history)."},
        {"name": "Unhealthy", "type": "string", "jsonPath": ".status.unhealthy"},
        {"name": "Held-Back", "type": "string", "jsonPath": ".status.heldBack"},
        {"name": "Detecting", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Detecting\")].status"},
        {"name": "Evaluated", "type": "date", "jsonPath": ".status.lastEvaluatedAt"},
        {"name": "Detection", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Detecting\")].reason",
         "priority": 1, "description": "The reason of the Detecting condition."},
        {"name": "Evacuate", "type": "string", "jsonPath": ".spec.evacuate", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
    "DarkCluster": [
        {"name": "Target", "type": "string", "jsonPath": ".spec.targetDeployment"},
        {"name": "Gate", "type": "string", "jsonPath": ".status.effectiveGate",
         "description": "The gate in force: Open when spec.gate or status.evacuationGate is Open."},
        {"name": "Spec-Gate", "type": "string", "jsonPath": ".spec.gate",
         "description": "The owner's gate (spec.gate)."},
        {"name": "Evacuation-Gate", "type": "string", "jsonPath": ".status.evacuationGate",
         "description": "The gate an evacuation holds (status.evacuationGate); empty when none ever did."},
        {"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"},
        {"name": "Warm", "type": "integer", "jsonPath": ".status.warmReplicas"},
        {"name": "Serving", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Forecast", "type": "integer", "jsonPath": ".status.forecastReplicas", "priority": 1},
        {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
        {"name": "Reason", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].reason"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ],
}

_MODELS: dict[str, tuple[type[BaseModel], str, list[str]]] = {
    "RegionFailover": (RegionFailover, "regionfailovers", ["rf", "rfo"]),
    "DarkCluster": (DarkCluster, "darkclusters", ["dark"]),
}


def _field_model(resource: type[BaseModel], field: str) -> type[BaseModel]:
    annotation = resource.model_fields[field].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (resource, field)
    return annotation


def _description(resource: type[BaseModel], field: str) -> str:
    description = resource.model_fields[field].description
    if not description:
        raise ValueError(f"{resource.__name__}.{field} needs a description: it becomes the CRD's")
    return description


def resource_schema(resource: type[BaseModel]) -> dict[str, Any]:
    """The openAPIV3Schema of one resource model: apiVersion, kind, metadata, spec, status."""
    spec = structural_schema(_field_model(resource, "spec"))
    spec["description"] = _description(resource, "spec")
    status = _status_schema(_field_model(resource, "status"))
    status["description"] = _description(resource, "status")
    return {
        "type": "object",
        "description": _prose(resource.__doc__ or ""),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": _description(resource, "api_version")},
            "kind": {"type": "string", "description": _description(resource, "kind")},
            # The API server allows nothing on metadata but its type (not even a description).
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def crd_manifests() -> dict[str, dict[str, Any]]:
    """Every CRD of regionshift as a Kubernetes object, by kind."""
    out: dict[str, dict[str, Any]] = {}
    for kind, (resource, plural, short) in _MODELS.items():
        out[kind] = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{API_GROUP}"},
            "spec": {
                "group": API_GROUP,
                "scope": "Namespaced",
                "names": {
                    "kind": kind,
                    "listKind": f"{kind}List",
                    "plural": plural,
                    "singular": kind.lower(),
                    "shortNames": short,
                    "categories": ["regionshift"],
                },
                "versions": [
                    {
                        "name": API_VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "additionalPrinterColumns": _COLUMNS[kind],
                        "schema": {"openAPIV3Schema": resource_schema(resource)},
                    }
                ],
            },
        }
    return out


_HEADER = "# Generated by `regionshift crds` from operator/regionshift/api/models.py. Do not edit.\n"


def render_crds() -> dict[str, str]:
    """The text of every file in ``crds/``, by file name."""
    manifests = crd_manifests()
    return {
        fname: _HEADER + yaml.safe_dump(manifests[kind], sort_keys=False, width=100)
        for fname, kind in CRD_FILES.items()
    }


def write_crds(*, directory: Path) -> list[Path]:
    """Write the CRDs into ``directory``; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fname, text in render_crds().items():
        path = directory / fname
        path.write_text(text)
        written.append(path)
    return written
