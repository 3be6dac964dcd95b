"""The CRDs in crds/ are generated from the pydantic models and stay structural."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from regionshift.cli import main
from regionshift.api.crdgen import crd_manifests, render_crds
from regionshift.api.models import DarkClusterSpec, RegionFailoverSpec

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_directory_matches_the_models() -> None:
    for name, text in render_crds().items():
        assert (CRDS / name).read_text() == text, f"crds/{name} drifted from the models: run `regionshift crds`"


def test_crds_check_command_reports_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds", "--output-dir", str(tmp_path)]) == 0
    assert main(["crds", "--check", "--output-dir", str(tmp_path)]) == 0
    (tmp_path / "darkclusters.yaml").write_text("stale\n")
    assert main(["crds", "--check", "--output-dir", str(tmp_path)]) == 1
    assert "darkclusters.yaml differs from the models" in capsys.readouterr().err


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.items():
            out.extend(_walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out.extend(_walk(value, f"{path}[{index}]"))
    return out


@pytest.mark.parametrize("kind", ["RegionFailover", "DarkCluster"])
def test_schema_is_structural(kind: str) -> None:
    schema = crd_manifests()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        if "properties" in node:
            assert node.get("type") == "object", path
        if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node["exclusiveMinimum"], bool):
            pytest.fail(f"{path}: exclusiveMinimum must be boolean in OpenAPI v3.0")


def _schema(kind: str) -> dict[str, Any]:
    return crd_manifests()[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["RegionFailover", "DarkCluster"])
def test_every_kind_and_every_field_is_documented(kind: str) -> None:
    schema = _schema(kind)
    assert schema.get("description"), f"{kind} has no top-level description (the resource model's docstring)"
    undocumented = [
        path for path, node in _walk(schema)
        if path.rsplit("/", 2)[-2:-1] == ["properties"] and not node.get("description")
        and path != "/properties/metadata"  # the API server forbids anything on it but its type
    ]
    assert not undocumented, f"{kind}: properties without a description: {undocumented}"


@pytest.mark.parametrize("kind", ["RegionFailover", "DarkCluster"])
def test_every_enum_value_is_pascal_case(kind: str) -> None:
    for path, node in _walk(_schema(kind)):
        for value in node.get("enum", []):
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", value), f"{kind}{path}: enum value {value!r} is not PascalCase"


def test_lists_keyed_by_name_and_sets_reject_duplicates() -> None:
    spec = _schema("RegionFailover")["properties"]["spec"]["properties"]
    assert spec["peers"]["x-kubernetes-list-type"] == "map"
    assert spec["peers"]["x-kubernetes-list-map-keys"] == ["name"]
    assert "name" in spec["peers"]["items"]["required"], "a list-map key must be required"
    assert spec["evacuate"]["x-kubernetes-list-type"] == "set"
    assert spec["traffic"]["items"]["properties"]["routes"]["x-kubernetes-list-type"] == "set"


@pytest.mark.parametrize(("kind", "field"), [("RegionFailover", "region"), ("DarkCluster", "targetDeployment")])
def test_identity_fields_are_immutable(kind: str, field: str) -> None:
    node = _schema(kind)["properties"]["spec"]["properties"][field]
    assert any(r["rule"] == "self == oldSelf" and field in r["message"] for r in node["x-kubernetes-validations"])
    assert field in _schema(kind)["properties"]["spec"]["required"], "a transition rule on an optional field can be dodged"


def test_selector_is_required_and_never_empty() -> None:
    spec = _schema("RegionFailover")["properties"]["spec"]
    assert "selector" in spec["required"]
    selector = spec["properties"]["selector"]
    assert selector["required"] == ["matchLabels"]
    assert any("size(self.matchLabels) > 0" == r["rule"] for r in selector["x-kubernetes-validations"])
    with pytest.raises(ValidationError):
        RegionFailoverSpec.model_validate({"region": "east", "peers": [{"name": "west"}],
                                           "signal": {"prometheusUrl": "http://p", "query": "q{region}"}})


@pytest.mark.parametrize(
    ("name", "valid"),
    [("a" * 63, True), ("api.v2.example", True), ("a" * 64, False), ("api.", False), ("Api", False),
     ("api_v2", False), ("-api", False)],
)
def test_target_deployment_is_a_dns_subdomain_of_at_most_63_characters(name: str, valid: bool) -> None:
    node = _schema("DarkCluster")["properties"]["spec"]["properties"]["targetDeployment"]
    by_schema = len(name) <= node["maxLength"] and re.fullmatch(node["pattern"].strip("^$"), name) is not None
    assert by_schema is valid
    try:
        DarkClusterSpec.model_validate({"targetDeployment": name})
    except ValidationError:
        assert not valid
    else:
        assert valid


def test_cross_field_rules_are_cel() -> None:
    rf = crd_manifests()["RegionFailover"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in rf["x-kubernetes-validations"]]
    assert any("self.evacuate.all" in r for r in rules)
    assert any("size(self.evacuate) <= size(self.peers)" in r for r in rules), "evacuating every region is refused"
    assert any("contains('{deployment}')" in r["rule"] for r in rf["properties"]["darkCapacity"]["x-kubernetes-validations"])
    assert any("minReplicas <= self.maxReplicas" in r["rule"] for r in rf["properties"]["darkCapacity"]["x-kubernetes-validations"])
    dc = crd_manifests()["DarkCluster"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert any("minReplicas <= self.maxReplicas" in r["rule"] for r in dc["properties"]["replicas"]["x-kubernetes-validations"])


def test_printer_columns_tell_the_story() -> None:
    columns = {kind: [c["name"] for c in m["spec"]["versions"][0]["additionalPrinterColumns"]]
               for kind, m in crd_manifests().items()}
    assert columns["DarkCluster"][:7] == ["Target", "Gate", "Spec-Gate", "Evacuation-Gate", "Desired", "Warm", "Serving"]
    paths = {c["name"]: c["jsonPath"] for c in crd_manifests()["DarkCluster"]["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert paths["Gate"] == ".status.effectiveGate", "GATE is the gate in force, not only the owner's"
    assert {"Region", "Mode", "Phase"} <= set(columns["RegionFailover"])
    story = columns["RegionFailover"]
    assert story[:5] == ["Region", "Mode", "Phase", "Evacuated", "Reason"], "what happens, first"
    assert {"Unhealthy", "Evaluated"} <= set(story)


def _field_of(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """The schema node a simple printer-column JSONPath ends on (filters and slices step into items)."""
    node: dict[str, Any] | None = schema
    for part in re.findall(r"\.([A-Za-z]+)|\[[^\]]*\]", json_path):
        if node is None:
            return None
        if part:  # a field
            node = node.get("properties", {}).get(part)
        else:  # [?(...)] or [-1:]: an element of the list
            node = node.get("items")
    return node


@pytest.mark.parametrize("kind", ["RegionFailover", "DarkCluster"])
def test_every_printer_column_reads_a_field_of_the_schema(kind: str) -> None:
    version = crd_manifests()[kind]["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for column in version["additionalPrinterColumns"]:
        if column["jsonPath"].startswith(".metadata."):
            continue
        assert _field_of(schema, column["jsonPath"]) is not None, f"{kind} column {column['name']}: {column['jsonPath']}"


def test_reason_column_is_the_last_transition_and_evacuated_a_status_field() -> None:
    columns = {c["name"]: c for c in crd_manifests()["RegionFailover"]["spec"]["versions"][0]["additionalPrinterColumns"]}
    # A negative slice is what client-go's JSONPath (the API server's table convertor) reads as "the last one".
    assert columns["Reason"]["jsonPath"] == ".status.history[-1:].reason"
    assert columns["Evacuated"]["jsonPath"] == ".status.evacuatedRegions"
    assert _field_of(_schema("RegionFailover"), ".status.evacuatedRegions")["type"] == "string"
