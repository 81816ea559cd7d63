"""docker-compose.yml, validated and resolved by a real Compose v2 client (no engine needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from forecaster.settings import Settings
from tests.deploy.compose import COMPOSE_FILE, ENV_EXAMPLE, compose_config, resolved_stack

ONE_SHOT = {"topics", "trainer", "replay"}
LONG_RUNNING = {"kafka", "mlflow", "worker", "api", "prometheus", "grafana"}


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return resolved_stack()


def test_the_stack_refuses_to_start_without_a_grafana_password() -> None:
    result = compose_config()
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr


def test_the_grafana_password_comes_from_the_environment() -> None:
    grafana = resolved_stack(GRAFANA_ADMIN_PASSWORD="s3cret-from-env")["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret-from-env"


def test_the_stack_has_every_part(stack: dict[str, Any]) -> None:
    assert set(stack["services"]) == ONE_SHOT | LONG_RUNNING


def test_one_shot_services_run_once(stack: dict[str, Any]) -> None:
    restart = {name: stack["services"][name].get("restart") for name in ONE_SHOT}
    assert restart == dict.fromkeys(ONE_SHOT, "no")


def test_long_running_services_have_health_checks(stack: dict[str, Any]) -> None:
    assert [name for name in LONG_RUNNING if "healthcheck" not in stack["services"][name]] == []


def test_workers_publish_no_host_port_so_they_can_scale(stack: dict[str, Any]) -> None:
    assert "ports" not in stack["services"]["worker"]


def _conditions(stack: dict[str, Any], service: str) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in stack["services"][service].get("depends_on", {}).items()}


def test_services_start_in_order(stack: dict[str, Any]) -> None:
    assert _conditions(stack, "topics") == {"kafka": "service_healthy"}
    assert _conditions(stack, "trainer") == {"mlflow": "service_healthy"}
    assert _conditions(stack, "worker") == {"topics": "service_completed_successfully",
                                            "trainer": "service_completed_successfully"}
    assert _conditions(stack, "replay") == {"worker": "service_healthy"}
    assert _conditions(stack, "grafana") == {"prometheus": "service_healthy"}


def test_state_lives_in_named_volumes(stack: dict[str, Any]) -> None:
    named = {service: [m["source"] for m in spec.get("volumes", []) if m["type"] == "volume"]
             for service, spec in stack["services"].items()}
    assert {service: sources for service, sources in named.items() if sources} == {
        "kafka": ["kafka-data"], "mlflow": ["mlflow-data"], "prometheus": ["prometheus-data"],
        "grafana": ["grafana-data"]}


def test_every_compose_variable_is_documented_in_env_example() -> None:
    # `$${NAME}` is the container shell's variable, not one Compose interpolates.
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert used == documented


def test_env_example_holds_no_secret() -> None:
    values = dict(re.findall(r"^(\w+)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert values["GRAFANA_ADMIN_PASSWORD"] == ""


def test_trainer_and_replay_read_the_sample_data_folder_read_only(stack: dict[str, Any]) -> None:
    # The default DATA_DIR is the folder the application itself defaults to (the package's sample data).
    for name in ("trainer", "replay"):
        (data,) = [m for m in stack["services"][name]["volumes"] if m["target"] == "/data"]
        assert data["read_only"] is True
        assert Path(data["source"]) == Path(Settings().data_dir).resolve()
    assert "forecaster train /data/bokeh-stocks.csv.gz" in stack["services"]["trainer"]["command"][0]
    assert stack["services"]["replay"]["command"][:2] == ["replay", "/data/bokeh-stocks.csv.gz"]
