"""The manifests of ``deploy/k8s``, loaded by kind."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy.observability import ROOT

K8S_DIR = ROOT / "deploy" / "k8s"


def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object of ``deploy/k8s`` (the kustomization aside), by kind."""
    documents = [doc for path in sorted(K8S_DIR.glob("*.yaml"))
                 for doc in yaml.safe_load_all(path.read_text())]
    return {doc["kind"]: doc for doc in documents if doc and doc["kind"] != "Kustomization"}


def worker_container() -> dict[str, Any]:
    return manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]
