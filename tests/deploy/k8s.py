"""The manifests of ``deploy/k8s``, and the images the kustomization gives them."""

from __future__ import annotations

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


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


def deployed_images() -> dict[str, str]:
    """Each container's image as ``kubectl apply -k`` sends it, by ``deployment/container``.

    Kustomize's ``images`` entries give the images they name a new name and tag (no kustomize
    binary is needed for that, and CI has none).
    """
    entries = {entry["name"]: entry for entry in kustomization().get("images", [])}
    images = {}
    for deployment in of_kind("Deployment"):
        for spec in deployment["spec"]["template"]["spec"]["containers"]:
            name, _, tag = spec["image"].partition(":")
            entry = entries.get(name, {})
            name, tag = entry.get("newName", name), entry.get("newTag", tag)
            images[f"{deployment['metadata']['name']}/{spec['name']}"] = f"{name}:{tag}" if tag else name
    return images
