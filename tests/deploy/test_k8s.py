"""deploy/k8s: valid Kubernetes objects, scaled within the partitions, scraped by Prometheus, locked down
(no privileges, no service account token, ingress only where needed), and an API Deployment."""

from __future__ import annotations

import tomllib
from typing import Any

import kubernetes_validate
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from forecaster import settings as settings_module
from tests.deploy import k8s
from tests.deploy.k8s import API, K8S_DIR, WORKER, container, find, of_kind, pod_spec, settings_data
from tests.deploy.observability import ROOT

DEPLOYMENTS = [WORKER, API]
#: MLflow's own client variables (basic auth on the tracking server), not settings of ours.
MLFLOW_CLIENT = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
#: The API's bearer token, read by the API's access control.
API_ACCESS = {"FORECASTER_API_TOKEN"}


@pytest.mark.parametrize("manifest", k8s.objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_manifest_is_a_valid_kubernetes_object(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, desired_version="1.30.0", strict=True)


def test_kustomization_lists_every_manifest() -> None:
    assert sorted(k8s.kustomization()["resources"]) == sorted(
        p.name for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def _configured(deployment: str = WORKER) -> settings_module.Settings:
    """The settings a Deployment's container reads: the ConfigMap, then its own plain values."""
    own = {e["name"]: e["value"] for e in container(deployment).get("env", []) if "value" in e}
    return settings_module.load(settings_data() | own)


def test_replicas_never_exceed_the_partitions() -> None:
    partitions = _configured().partitions
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == WORKER
    assert find("Deployment", WORKER)["spec"]["replicas"] <= partitions
    assert hpa["spec"]["maxReplicas"] == partitions


def test_prometheus_scrapes_the_port_the_worker_serves_metrics_on() -> None:
    annotations = find("Deployment", WORKER)["spec"]["template"]["metadata"]["annotations"]
    container_ports = {p["name"]: p["containerPort"] for p in container(WORKER)["ports"]}
    configured = _configured()
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container_ports["metrics"] == configured.metrics_port
    assert configured.metrics_host == "0.0.0.0"


def test_every_variable_is_a_setting() -> None:
    names = {settings_module.env_name(name) for name in settings_module.DOCS}
    env = {e["name"] for name in DEPLOYMENTS for e in container(name).get("env", [])}
    variables = set(settings_data()) | env
    assert variables - names - MLFLOW_CLIENT - API_ACCESS == set()


# -- images ------------------------------------------------------------------------------------------

def test_every_container_runs_the_project_version_not_latest() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert set(k8s.deployed_images().values()) == {f"stream-forecaster:{version}"}


# -- pod security ------------------------------------------------------------------------------------

@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_pods_run_unprivileged_with_the_default_seccomp_profile(deployment: str) -> None:
    pod = pod_spec(deployment)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container(deployment)["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_the_only_writable_paths_are_the_home_and_tmp_on_empty_dirs(deployment: str) -> None:
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container(deployment)["volumeMounts"]}
    assert set(mounts) == {"/var/lib/forecaster", "/tmp"}
    assert all(volume.get("emptyDir") == {} for volume in mounts.values())


# -- network policies --------------------------------------------------------------------------------

def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector
    return selector.get("matchLabels", {}).items() <= labels.items()


def _ingress_policies(deployment: str) -> list[dict[str, Any]]:
    labels = find("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    return [policy for policy in of_kind("NetworkPolicy")
            if "Ingress" in policy["spec"]["policyTypes"] and _selects(policy["spec"]["podSelector"], labels)]


#: Pods labelled as Prometheus, in any namespace.
PROMETHEUS_PODS = {"namespaceSelector": {},
                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}


def _source(peer: dict[str, Any] | None) -> str:
    if peer is None:
        return "anyone"
    return "prometheus" if peer == PROMETHEUS_PODS else repr(peer)


def _allowed(deployment: str) -> set[tuple[str, int | str]]:
    """``(source, container port)`` pairs the policies selecting ``deployment``'s pods let in."""
    named = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    allowed: set[tuple[str, int | str]] = set()
    for policy in _ingress_policies(deployment):
        for rule in policy["spec"].get("ingress", []):
            ports = [named.get(p["port"], p["port"]) for p in rule.get("ports", [])] or ["every port"]
            allowed |= {(_source(peer), port) for peer in rule.get("from", [None]) for port in ports}
    return allowed


def test_the_app_namespace_denies_ingress_to_every_app_pod_by_default() -> None:
    (deny,) = [p for p in of_kind("NetworkPolicy") if "ingress" not in p["spec"]]
    assert deny["spec"]["policyTypes"] == ["Ingress"]
    assert all(deny in _ingress_policies(name) for name in DEPLOYMENTS)


def test_ingress_reaches_only_the_port_each_pod_serves() -> None:
    assert {name: _allowed(name) for name in DEPLOYMENTS} == {
        WORKER: {("prometheus", _configured().metrics_port)},
        API: {("anyone", _configured(API).api_port)},
    }


# -- disruption budgets ------------------------------------------------------------------------------

@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_a_disruption_budget_takes_one_pod_at_a_time_even_at_one_replica(deployment: str) -> None:
    labels = find("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    (budget,) = [b for b in of_kind("PodDisruptionBudget") if _selects(b["spec"]["selector"], labels)]
    # minAvailable would block every drain while the autoscaler holds the workers at one replica.
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]


# -- the API -----------------------------------------------------------------------------------------

def test_the_api_deployment_serves_the_api_on_all_interfaces_of_its_pod() -> None:
    api = container(API)
    settings = _configured(API)
    assert api["args"] == ["serve"]
    assert settings.api_host == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in api["ports"]} == {"http": settings.api_port}


def test_the_api_is_probed_on_health_and_has_resources() -> None:
    api = container(API)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert api[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    assert set(api["resources"]["requests"]) == {"cpu", "memory"}
    assert set(api["resources"]["limits"]) == {"memory"}


def test_the_api_service_sends_its_port_to_the_api_pods() -> None:
    service = find("Service", API)
    labels = find("Deployment", API)["spec"]["template"]["metadata"]["labels"]
    assert _selects({"matchLabels": service["spec"]["selector"]}, labels)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_the_api_trusts_the_names_its_service_is_reached_by() -> None:
    """Through the Service (or an Ingress in front of it) a request's Host is one of the Service's DNS
    names, with or without its port: the API built from the manifests' settings answers each."""
    service = find("Service", API)
    name, port = service["metadata"]["name"], service["spec"]["ports"][0]["port"]
    # Without a namespace in the manifests, `kubectl apply -k` puts them in the context's, `default` here.
    namespace = service["metadata"].get("namespace", k8s.kustomization().get("namespace", "default"))
    names = [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]
    client = TestClient(create_app(_configured(API)))
    for host in (*names, *(f"{n}:{port}" for n in names)):
        assert client.get("/", headers={"Host": host}).status_code == 200, host
