"""The generated dashboards: committed JSON equals the code's output, and each is well formed."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from grafana.__main__ import OUTPUT_DIR, stale_files
from tests.deploy.observability import ROOT

DASHBOARDS = {path.stem: json.loads(path.read_text()) for path in sorted(OUTPUT_DIR.glob("*.json"))}


def test_committed_json_is_what_the_code_generates() -> None:
    assert stale_files() == [], "run `python -m grafana` and commit grafana/dashboards"


def test_the_three_dashboards_and_the_calibration_panel_exist() -> None:
    titles = {board["title"]: [panel["title"] for panel in board["panels"]] for board in DASHBOARDS.values()}
    assert set(titles) == {"Forecast error", "Drift", "Operations"}
    assert any(title.startswith("Calibration") for title in titles["Forecast error"])


def _datasource_refs(node: object) -> list[object]:
    """Every ``datasource`` value anywhere in a dashboard's JSON (panels, targets, variables,
    annotations)."""
    if isinstance(node, dict):
        return [ref for key, value in node.items()
                for ref in ([value] if key == "datasource" else []) + _datasource_refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _datasource_refs(item)]
    return []


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_every_query_reads_the_datasource_variable_not_a_fixed_uid(uid: str) -> None:
    board = DASHBOARDS[uid]
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["name"] == "datasource" and variable["query"] == "prometheus"
    refs = _datasource_refs(board)
    panels = board["panels"]
    assert panels and all(panel["targets"] and "datasource" in panel for panel in panels)
    assert refs and all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs), refs


def test_the_provisioned_stack_opens_on_its_prometheus_without_a_choice() -> None:
    # An empty datasource variable takes the default datasource of its type: the provisioned one.
    provisioned = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    for board in DASHBOARDS.values():
        (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
        assert "current" not in variable or not variable["current"].get("value")


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_panels_have_unique_ids_and_do_not_overlap(uid: str) -> None:
    panels = DASHBOARDS[uid]["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    grid = [panel["gridPos"] for panel in panels]
    cells = [(pos["x"] + dx, pos["y"] + dy)
             for pos in grid for dx in range(pos["w"]) for dy in range(pos["h"])]
    assert len(cells) == len(set(cells))


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_queries_use_only_the_dashboards_own_variables(uid: str) -> None:
    board = DASHBOARDS[uid]
    defined = {variable["name"] for variable in board["templating"]["list"]}
    exprs = [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    exprs += [annotation["expr"] for annotation in board.get("annotations", {}).get("list", [])]
    used = {name for expr in exprs for name in re.findall(r"\$(\w+)", expr) if not name.startswith("__")}
    assert used == defined - {"datasource"}
