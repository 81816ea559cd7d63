"""Compose, Kubernetes, Prometheus and Grafana configuration agree with each other and with the
application's settings (ports, topics, job names, thresholds, versions)."""

from __future__ import annotations

import fnmatch
import re
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from forecaster import settings as settings_module
from forecaster.kafka.broker import KAFKA_VERSION
from grafana.boards import WORKER_JOB
from tests.deploy.compose import resolved_stack
from tests.deploy.k8s import settings_data
from tests.deploy.observability import ROOT, RULES_DIR, alert_rules

APP_SERVICES = ("topics", "trainer", "worker", "replay")
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROVISIONING_DIR = ROOT / "grafana" / "provisioning"


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return resolved_stack()


def _forecaster_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in service.get("environment", {}).items() if k.startswith(settings_module.PREFIX)}


def _worker_settings(stack: dict[str, Any]) -> settings_module.Settings:
    return settings_module.load(_forecaster_env(stack["services"]["worker"]))


def _host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "//" in address else f"//{address}")
    assert parts.hostname is not None and parts.port is not None, address
    return parts.hostname, parts.port


def _options(command: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in command if arg.startswith("--") and "=" in arg)


def _prometheus_config() -> dict[str, Any]:
    return yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())


def test_app_services_share_one_configuration(stack: dict[str, Any]) -> None:
    # Same topics, group and registry for the topic initialiser, trainer, workers and replay.
    envs = [_forecaster_env(stack["services"][name]) for name in APP_SERVICES]
    assert all(env == envs[0] for env in envs)


def test_every_forecaster_variable_is_a_setting_that_parses(stack: dict[str, Any]) -> None:
    names = {settings_module.env_name(name) for name in settings_module.DOCS}
    env = _forecaster_env(stack["services"]["worker"])
    assert set(env) - names == set()
    settings_module.load(env)


def test_compose_and_kubernetes_configure_workers_alike(stack: dict[str, Any]) -> None:
    compose_env = _forecaster_env(stack["services"]["worker"])
    k8s_env = settings_data()
    shared = set(compose_env) & set(k8s_env) - {"FORECASTER_BOOTSTRAP", "FORECASTER_MLFLOW_TRACKING_URI"}
    assert {k: compose_env[k] for k in shared} == {k: k8s_env[k] for k in shared}
    assert "FORECASTER_METRICS_PORT" in shared and "FORECASTER_APP_ID" in shared


def test_workers_serve_metrics_where_prometheus_scrapes(stack: dict[str, Any]) -> None:
    settings = _worker_settings(stack)
    worker = stack["services"]["worker"]
    (job,) = [job for job in _prometheus_config()["scrape_configs"] if job["job_name"] == WORKER_JOB]
    (discovery,) = job["dns_sd_configs"]
    assert settings.metrics_host == "0.0.0.0"
    assert discovery["names"] == ["worker"]
    assert discovery["port"] == settings.metrics_port
    assert worker["expose"] == [str(settings.metrics_port)]
    assert f"localhost:{settings.metrics_port}/metrics" in " ".join(worker["healthcheck"]["test"])


def test_the_worker_down_alert_watches_the_scraped_job() -> None:
    (rule,) = [rule for rule in alert_rules() if rule["alert"] == "ForecasterWorkerDown"]
    assert f'job="{WORKER_JOB}"' in rule["expr"]


def test_apps_reach_kafka_on_its_internal_listener(stack: dict[str, Any]) -> None:
    kafka = stack["services"]["kafka"]["environment"]
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    internal = advertised[kafka["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert _host_port(_worker_settings(stack).bootstrap) == _host_port(internal)


def test_kafka_partitions_match_the_topics_the_workers_share(stack: dict[str, Any]) -> None:
    kafka = stack["services"]["kafka"]
    assert int(kafka["environment"]["KAFKA_NUM_PARTITIONS"]) == _worker_settings(stack).partitions
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_apps_reach_mlflow_where_it_listens_and_accepts_the_host(stack: dict[str, Any]) -> None:
    mlflow = _options(stack["services"]["mlflow"]["command"])
    host, port = _host_port(_worker_settings(stack).mlflow_tracking_uri)
    assert host == "mlflow" and port == int(mlflow["port"])
    assert f"{host}:{port}" in mlflow["allowed-hosts"].split(",")


def test_grafana_reads_the_prometheus_of_the_stack(stack: dict[str, Any]) -> None:
    provisioned = yaml.safe_load((PROVISIONING_DIR / "datasources" / "prometheus.yml").read_text())
    (datasource,) = provisioned["datasources"]
    host, port = _host_port(datasource["url"])
    assert host in stack["services"] and host == "prometheus"
    assert port in {p["target"] for p in stack["services"]["prometheus"]["ports"]}
    assert datasource["jsonData"]["timeInterval"] == _prometheus_config()["global"]["scrape_interval"]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    return {m["source"]: m["target"] for m in service["volumes"] if m["type"] == "bind"}


def test_grafana_provisions_the_generated_dashboards(stack: dict[str, Any]) -> None:
    mounts = _mounts(stack["services"]["grafana"])
    provisioned = yaml.safe_load((PROVISIONING_DIR / "dashboards" / "forecaster.yml").read_text())
    (provider,) = provisioned["providers"]
    assert mounts[str(ROOT / "grafana" / "dashboards")] == provider["options"]["path"]
    assert mounts[str(PROVISIONING_DIR)] == "/etc/grafana/provisioning"


def test_grafana_image_runs_the_dashboard_schema_version(stack: dict[str, Any]) -> None:
    # The SDK's version after the epoch is the Grafana release whose schema it writes.
    schema = metadata.version("grafana-foundation-sdk").split("!")[-1]
    image_version = stack["services"]["grafana"]["image"].rsplit(":", 1)[1]
    assert image_version.split(".")[:2] == schema.split(".")[:2]


def test_prometheus_loads_the_rules_of_the_repository(stack: dict[str, Any]) -> None:
    prometheus = stack["services"]["prometheus"]
    mount = _mounts(prometheus)[str(PROMETHEUS_DIR)]
    config_path = _options(prometheus["command"])["config.file"]
    assert config_path == f"{mount}/prometheus.yml"
    (pattern,) = _prometheus_config()["rule_files"]
    in_container = {f"{mount}/{p.relative_to(PROMETHEUS_DIR)}" for p in RULES_DIR.glob("*.yml")}
    assert in_container and all(fnmatch.fnmatch(path, pattern) for path in in_container)


def test_the_calibration_alert_checks_every_interval_level_with_the_tolerance() -> None:
    defaults = settings_module.Settings()
    rules = [rule for rule in alert_rules() if rule["alert"] == "ForecasterIntervalMiscalibrated"]
    assert sorted(float(rule["labels"]["level"]) for rule in rules) == sorted(defaults.interval_levels)
    for rule in rules:
        level = rule["labels"]["level"]
        (hits_level, nominal, tolerance, variance_level, complement) = re.findall(
            r'level="([\d.]+)"\}\[7d\]\)\)\s*'
            r'/ sum by \(horizon\) \(increase\(forecaster_scores_by_horizon_total\[7d\]\)\) - ([\d.]+)\s*\)'
            r'\s*> ([\d.]+) \+ 3 \* sqrt\(([\d.]+) \* \(1 - ([\d.]+)\)', rule["expr"])[0]
        assert hits_level == nominal == variance_level == complement == level, rule["expr"]
        assert float(tolerance) == defaults.coverage_tolerance
