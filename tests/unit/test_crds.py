"""The CRDs in crds/ are generated from the pydantic models and stay structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from regionshift.cli import main
from regionshift.api.crdgen import crd_manifests, render_crds

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


def test_every_spec_field_is_documented() -> None:
    for kind, manifest in crd_manifests().items():
        spec = manifest["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        for path, node in _walk(spec):
            if path.count("/properties/") and path.rsplit("/", 2)[-2] == "properties":
                assert node.get("description"), f"{kind} spec{path} has no description"


def test_cross_field_rules_are_cel() -> None:
    rf = crd_manifests()["RegionFailover"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in rf["x-kubernetes-validations"]]
    assert any("self.evacuate.all" in r for r in rules)
    assert any("minReplicas <= self.maxReplicas" in r["rule"] for r in rf["properties"]["darkCapacity"]["x-kubernetes-validations"])
    dc = crd_manifests()["DarkCluster"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert any("minReplicas <= self.maxReplicas" in r["rule"] for r in dc["properties"]["replicas"]["x-kubernetes-validations"])


def test_printer_columns_tell_the_story() -> None:
    columns = {kind: [c["name"] for c in m["spec"]["versions"][0]["additionalPrinterColumns"]]
               for kind, m in crd_manifests().items()}
    assert columns["DarkCluster"][:5] == ["Target", "Gate", "Desired", "Warm", "Serving"]
    assert {"Region", "Mode", "Phase"} <= set(columns["RegionFailover"])
