"""Bad endpoint input gets one clean error naming every problem, before anything is declared."""

from __future__ import annotations

import json

import pytest

from components.common import InvalidArgsError, format_path
from components.serving_endpoint import check_endpoint, check_image
from mlplatform.plan import run_program
from tests.config.test_config_errors import BASE as CONFIG_BASE
from tests.config.test_config_errors import problems as config_problems
from tests.serving.helpers import (
    HTTP_ENDPOINT,
    POOLS,
    VLLM_ENDPOINT,
    endpoint_args,
    endpoint_program,
)


def problems(args, pools=POOLS, **kw) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {format_path(i.path): i.message for i in check_endpoint(args, pools, **kw)}


def test_valid_examples_have_no_issues() -> None:
    assert problems(endpoint_args(HTTP_ENDPOINT), on_aws=True) == {}
    assert problems(endpoint_args(VLLM_ENDPOINT), on_aws=True) == {}


def test_max_replicas_below_min() -> None:
    args = endpoint_args(HTTP_ENDPOINT, autoscaling={"minReplicas": 5, "maxReplicas": 2})
    found = problems(args)
    assert "autoscaling.maxReplicas" in found
    assert "5" in found["autoscaling.maxReplicas"]


def test_gpu_model_on_unknown_pool_lists_known_pools() -> None:
    args = endpoint_args(VLLM_ENDPOINT, gpuPool="gpu-b200")
    msg = problems(args)["gpuPool"]
    assert "gpu-b200" in msg
    for pool in POOLS:
        assert pool in msg


def test_pool_check_uses_the_runtime_pool_list() -> None:
    args = endpoint_args(VLLM_ENDPOINT, gpuPool="gpu-b200")
    assert "gpuPool" not in problems(args, pools=("gpu-b200",))
    assert "none are configured" in problems(args, pools=())["gpuPool"]


def test_gpu_model_needs_a_pool() -> None:
    data = {k: v for k, v in VLLM_ENDPOINT.items() if k != "gpuPool"}
    assert "gpuPool" in problems(endpoint_args(data))


@pytest.mark.parametrize(
    "image",
    [
        "serving",  # untagged means :latest
        "serving:latest",
        "registry.example.com/team/serving:latest",
        "Serving:1.0",  # repository names are lowercase
        "serving:1.0:extra",
        "serving@sha256:abc",
        "",
    ],
)
def test_invalid_or_unpinned_image(image: str) -> None:
    assert check_image("image", image)
    assert "image" in problems(endpoint_args(HTTP_ENDPOINT, image=image))


@pytest.mark.parametrize(
    "image",
    [
        "serving:1.0",
        "localhost:5000/serving:1.0",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml/serving:2026.11.1",
        "vllm/vllm-openai:v0.11.0",
        "ghcr.io/org/server@sha256:" + "a" * 64,
        "ghcr.io/org/server:latest@sha256:" + "b" * 64,  # the digest pins it
    ],
)
def test_pinned_images_pass(image: str) -> None:
    assert check_image("image", image) == []


@pytest.mark.parametrize("weight", [-1, 101, 250])
def test_canary_weight_outside_0_100(weight: int) -> None:
    args = endpoint_args(HTTP_ENDPOINT, canary={"model": {"path": "m"}, "weight": weight})
    assert str(weight) in problems(args)["canary.weight"]


@pytest.mark.parametrize("weight", [0, 100])
def test_canary_weight_bounds_are_allowed(weight: int) -> None:
    args = endpoint_args(HTTP_ENDPOINT, canary={"model": {"path": "m"}, "weight": weight})
    assert "canary.weight" not in problems(args)


def test_all_problems_are_reported_at_once() -> None:
    args = endpoint_args(
        VLLM_ENDPOINT,
        image="vllm/vllm-openai:latest",
        gpuPool="nope",
        autoscaling={"minReplicas": 3, "maxReplicas": 1},
        canary={"model": {"path": "m"}, "weight": 120},
    )
    assert {"image", "gpuPool", "autoscaling.maxReplicas", "canary.weight"} <= set(problems(args))


def test_other_checks() -> None:
    found = problems(
        endpoint_args(
            HTTP_ENDPOINT,
            model={"path": "s3://elsewhere/model"},
            ingress={"host": "Not A Host", "certificateArn": "arn:aws:iam::1:role/x"},
            keda={"enabled": True},
            env={"MODEL_URI": "x"},
            vllmArgs=["--x"],
        ),
        on_aws=True,
    )
    assert {
        "model.path",
        "ingress.host",
        "ingress.certificateArn",
        "keda.query",
        "env.MODEL_URI",
        "vllmArgs",
    } <= set(found)


def test_tls_is_required_on_aws_only() -> None:
    args = endpoint_args(HTTP_ENDPOINT, ingress={"host": "fraud.ml.example.com"})
    assert "ingress.certificateArn" in problems(args, on_aws=True)
    assert "ingress.certificateArn" not in problems(args, on_aws=False)
    sandbox = endpoint_args(
        HTTP_ENDPOINT, ingress={"host": "fraud.ml.example.com", "allowPlainHttp": True}
    )
    assert "ingress.certificateArn" not in problems(sandbox, on_aws=True)


def test_vllm_needs_gpus_and_s3() -> None:
    args = endpoint_args(
        VLLM_ENDPOINT,
        resources={"gpus": 0},
        model={"store": "mlflow", "path": "models:/llama/1"},
    )
    assert {"resources.gpus", "model.store"} <= set(problems(args))


def test_endpoint_name_must_be_a_dns_label() -> None:
    assert "name" in problems(endpoint_args(HTTP_ENDPOINT), name="Fraud_Scorer")


def test_component_raises_one_clean_error_and_declares_nothing() -> None:
    args = endpoint_args(
        VLLM_ENDPOINT, gpuPool="gpu-b200", canary={"model": {"path": "m"}, "weight": 101}
    )
    with pytest.raises(InvalidArgsError) as err:
        run_program(endpoint_program("chat", args))
    text = str(err.value)
    assert text.startswith("invalid ServingEndpoint args:")
    assert "gpuPool" in text and "canary.weight" in text


def test_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="replicas"):
        endpoint_args(HTTP_ENDPOINT, replicas=3)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "nan"])
def test_inference_log_sample_rate_outside_0_1_is_named(rate: object) -> None:
    endpoint = {**HTTP_ENDPOINT, "inferenceLogSampleRate": rate, "ingress": {"enabled": False}}
    got = config_problems(
        {**CONFIG_BASE, "ml-platform:servingEndpoints": json.dumps({"fraud": endpoint})}
    )
    assert "ml-platform:servingEndpoints.fraud.inferenceLogSampleRate" in got


def test_inference_log_sample_rate_is_http_only() -> None:
    found = problems(endpoint_args(VLLM_ENDPOINT, inferenceLogSampleRate=0.1))
    assert "http runtime" in found["inferenceLogSampleRate"]
    assert "inferenceLogSampleRate" not in problems(
        endpoint_args(HTTP_ENDPOINT, inferenceLogSampleRate=0)
    )
