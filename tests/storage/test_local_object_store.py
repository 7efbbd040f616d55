"""LocalObjectStore: MinIO standing in for S3 on the local stack."""

from __future__ import annotations

import pytest

from components.common import InvalidArgsError, KubeTarget
from components.local_object_store import LocalObjectStore, LocalObjectStoreArgs
from mlplatform.report import run_stack


def test_local_object_store_credentials_wait_for_their_namespace() -> None:
    graph = run_stack("local")[0]
    for ns in ("churn", "mlflow"):
        secret = graph.by_name(f"model-store-credentials-{ns}")
        assert secret.inputs["metadata"]["namespace"] == ns
        assert secret.inputs["stringData"] == "[secret]"
        assert graph.depends_on(secret, graph.by_name(f"namespaces-{ns}"))
        assert graph.depends_on(secret, graph.by_name("model-store-minio"))
    release = graph.by_name("model-store-minio")
    assert release.inputs["version"] == "5.4.0"
    assert release.inputs["values"]["buckets"][0]["versioning"] is True
    assert release.inputs["values"]["containerSecurityContext"]["runAsNonRoot"] is True
    mlflow = graph.one("kubernetes:apps/v1:Deployment", "model-registry")
    assert graph.depends_on(mlflow, graph.by_name("namespaces-mlflow"))


def test_local_object_store_rejects_bad_args(run) -> None:
    args = LocalObjectStoreArgs(bucket="Bad_Bucket", volumeSize="lots", chartVersion="5.x")
    paths = {i.path for i in args.issues()}
    assert paths == {("bucket",), ("volumeSize",), ("chartVersion",)}

    def program() -> None:
        LocalObjectStore("s", args, target=KubeTarget(provider=None, on_aws=False))

    with pytest.raises(InvalidArgsError):
        run(program)
