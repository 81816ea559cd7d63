"""The manifests of ``deploy/k8s``: as written, and as kustomize renders them."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import yaml

from tests.deploy.observability import ROOT

K8S_DIR = ROOT / "deploy" / "k8s"
WORKER = "forecaster-worker"
API = "forecaster-api"


def objects() -> list[dict[str, Any]]:
    """Every Kubernetes object of ``deploy/k8s`` (the kustomization aside), in file order."""
    documents = [doc for path in sorted(K8S_DIR.glob("*.yaml"))
                 for doc in yaml.safe_load_all(path.read_text())]
    return [doc for doc in documents if doc and doc["kind"] != "Kustomization"]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in objects() if doc["kind"] == kind]


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in of_kind(kind) if doc["metadata"]["name"] == name]
    return found


def settings_data() -> dict[str, str]:
    """The ConfigMap every app container reads its ``FORECASTER_*`` settings from."""
    return find("ConfigMap", "forecaster-settings")["data"]


def pod_spec(deployment: str) -> dict[str, Any]:
    return find("Deployment", deployment)["spec"]["template"]["spec"]


def container(deployment: str) -> dict[str, Any]:
    (only,) = pod_spec(deployment)["containers"]
    return only


def rendered() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/k8s``: the objects ``kubectl apply -k`` would send."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is missing (it renders the kustomization without a cluster)"
    result = subprocess.run([kubectl, "kustomize", str(K8S_DIR)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
