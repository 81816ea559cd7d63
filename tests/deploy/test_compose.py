"""docker-compose.yml, validated and resolved by a real Compose v2 client (no engine needed)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from forecaster.settings import Settings
from tests.deploy.compose import COMPOSE_FILE, ENV_EXAMPLE, MLFLOW_UI_FILE, compose_config, resolved_stack
from tests.deploy.observability import ROOT

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
    used = {name for path in (COMPOSE_FILE, MLFLOW_UI_FILE)
            for name in re.findall(r"(?<!\$)\$\{(\w+)", path.read_text())}
    documented = set(re.findall(r"^(\w+)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert used == documented


def test_env_example_holds_no_secret() -> None:
    values = dict(re.findall(r"^(\w+)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    assert values["GRAFANA_ADMIN_PASSWORD"] == values["FORECASTER_API_TOKEN"] == ""


# -- network exposure --------------------------------------------------------------------------------

def _host_addresses(stack: dict[str, Any]) -> dict[str, list[str | None]]:
    """The host address of every published port, by service (None: every interface)."""
    return {name: [port.get("host_ip") for port in spec["ports"]]
            for name, spec in stack["services"].items() if spec.get("ports")}


def test_every_published_port_is_on_loopback_by_default(stack: dict[str, Any]) -> None:
    assert _host_addresses(stack) == {"kafka": ["127.0.0.1"], "api": ["127.0.0.1"],
                                      "prometheus": ["127.0.0.1"], "grafana": ["127.0.0.1"]}


def test_the_bind_address_opens_only_the_services_that_ask_for_credentials() -> None:
    # Grafana has its login and the API its token; Prometheus and the PLAINTEXT Kafka have neither.
    opened = resolved_stack(FORECASTER_BIND_ADDRESS="192.0.2.10")
    assert _host_addresses(opened) == {"kafka": ["127.0.0.1"], "api": ["192.0.2.10"],
                                       "prometheus": ["127.0.0.1"], "grafana": ["192.0.2.10"]}


def test_mlflow_is_reached_on_the_compose_network_only(stack: dict[str, Any]) -> None:
    mlflow = stack["services"]["mlflow"]
    assert "ports" not in mlflow and mlflow["expose"] == ["5000"]
    assert {stack["services"][name]["environment"]["FORECASTER_MLFLOW_TRACKING_URI"]
            for name in ("trainer", "worker", "api")} == {"http://mlflow:5000"}


def test_the_mlflow_ui_override_publishes_it_on_loopback_whatever_the_bind_address() -> None:
    stack = resolved_stack(MLFLOW_UI_FILE, FORECASTER_BIND_ADDRESS="0.0.0.0", MLFLOW_PORT="5555")
    (port,) = stack["services"]["mlflow"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "5555", 5000)


def test_the_api_gets_its_access_settings_from_the_environment(stack: dict[str, Any]) -> None:
    default = stack["services"]["api"]["environment"]
    assert (default["FORECASTER_API_TOKEN"], default["FORECASTER_API_TRUSTED_HOSTS"]) == ("", "")
    api = resolved_stack(FORECASTER_API_TOKEN="token-from-env",
                         FORECASTER_API_TRUSTED_HOSTS="forecast.example.com")["services"]["api"]
    assert api["environment"]["FORECASTER_API_TOKEN"] == "token-from-env"
    assert api["environment"]["FORECASTER_API_TRUSTED_HOSTS"] == "forecast.example.com"


# -- images ------------------------------------------------------------------------------------------

PINNED_IMAGE = re.compile(r"^[\w./-]+:(?P<tag>\w[\w.-]*)$")


def test_every_image_has_a_version_tag(stack: dict[str, Any]) -> None:
    tags = {name: PINNED_IMAGE.match(spec["image"]) for name, spec in stack["services"].items()}
    assert {name: spec["image"] for name, spec in stack["services"].items()
            if (tag := tags[name]) is None or tag["tag"] == "latest"} == {}


def test_the_app_image_is_tagged_with_the_project_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # Once from .env.example, once from the compose file's own default (an empty variable).
    for stack in (resolved_stack(), resolved_stack(FORECASTER_IMAGE="")):
        assert {spec["image"] for name, spec in stack["services"].items()
                if "build" in spec} == {f"stream-forecaster:{version}"}


def test_trainer_and_replay_read_the_sample_data_folder_read_only(stack: dict[str, Any]) -> None:
    # The default DATA_DIR is the folder the application itself defaults to (the package's sample data).
    for name in ("trainer", "replay"):
        (data,) = [m for m in stack["services"][name]["volumes"] if m["target"] == "/data"]
        assert data["read_only"] is True
        assert Path(data["source"]) == Path(Settings().data_dir).resolve()
    assert "forecaster train /data/bokeh-stocks.csv.gz" in stack["services"]["trainer"]["command"][0]
    assert stack["services"]["replay"]["command"][:2] == ["replay", "/data/bokeh-stocks.csv.gz"]
