"""deploy/k8s: valid Kubernetes objects, scaled within the partitions, scraped by Prometheus."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from forecaster import settings as settings_module
from tests.deploy.k8s import K8S_DIR, manifests, worker_container


@pytest.mark.parametrize("kind", sorted(manifests()))
def test_manifest_is_a_valid_kubernetes_object(kind: str) -> None:
    kubernetes_validate.validate(manifests()[kind], desired_version="1.30.0", strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def _configured() -> settings_module.Settings:
    return settings_module.load(manifests()["ConfigMap"]["data"])


def test_replicas_never_exceed_the_partitions() -> None:
    objects: dict[str, Any] = manifests()
    partitions = _configured().partitions
    assert objects["Deployment"]["spec"]["replicas"] <= partitions
    assert objects["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == partitions


def test_prometheus_scrapes_the_port_the_worker_serves_metrics_on() -> None:
    annotations = manifests()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    container_ports = {p["name"]: p["containerPort"] for p in worker_container()["ports"]}
    configured = _configured()
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container_ports["metrics"] == configured.metrics_port
    assert configured.metrics_host == "0.0.0.0"


def test_every_variable_is_a_setting() -> None:
    names = {settings_module.env_name(name) for name in settings_module.DOCS}
    variables = set(manifests()["ConfigMap"]["data"]) | {e["name"] for e in worker_container().get("env", [])}
    assert variables - names == set()
