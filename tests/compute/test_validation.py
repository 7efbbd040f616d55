"""Bad input: every problem at once, by property path, with the allowed values."""

from __future__ import annotations

import pydantic
import pytest

from components.common import InvalidArgsError, format_path
from components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from components.karpenter import KarpenterArgs
from components.network import NetworkArgs
from components.training_cluster import TrainingClusterArgs


def _messages(model) -> dict[str, str]:
    return {format_path(i.path): i.message for i in model.issues()}


def _pool(**kw):
    return GpuNodePoolArgs.model_validate(
        {"name": "p", "accelerator": "nvidia-a10g", "maxGpus": 8, **kw}
    )


def test_unknown_accelerator_lists_allowed_values():
    with pytest.raises(pydantic.ValidationError) as err:
        GpuNodePoolArgs.model_validate({"name": "p", "accelerator": "nvidia-b200", "maxGpus": 8})
    text = str(err.value)
    assert "accelerator" in text
    for allowed in (
        "nvidia-t4",
        "nvidia-a10g",
        "nvidia-l4",
        "nvidia-l40s",
        "nvidia-a100",
        "nvidia-h100",
    ):
        assert allowed in text


def test_min_greater_than_max():
    msgs = _messages(_pool(minGpusPerNode=4, maxGpusPerNode=1))
    assert "minGpusPerNode" in msgs and "maxGpusPerNode (1)" in msgs["minGpusPerNode"]


def test_pool_limit_below_smallest_node():
    msgs = _messages(_pool(minGpusPerNode=4, maxGpus=2))
    assert "maxGpus" in msgs


def test_efa_on_a_family_without_it():
    msgs = _messages(_pool(efa=True))
    assert "no EFA" in msgs["efa"]
    assert "nvidia-a100" in msgs["efa"] and "nvidia-h100" in msgs["efa"]
    assert _pool(accelerator="nvidia-h100", efa=True).issues() == []


def test_more_gpus_per_node_than_the_type_has():
    msgs = _messages(_pool(accelerator="nvidia-h100", maxGpusPerNode=16))
    assert msgs["maxGpusPerNode"] == "nvidia-h100 (p5) nodes have at most 8 GPUs, got 16"
    msgs = _messages(_pool(minGpusPerNode=2, maxGpusPerNode=3))
    assert "sizes" in msgs and "12xlarge" in msgs["sizes"]


def test_unknown_size_and_reserved_in_capacity_types():
    msgs = _messages(_pool(sizes=["xlarge", "huge"], capacityTypes=["reserved"]))
    assert "sizes[1]" in msgs and "48xlarge" in msgs["sizes[1]"]
    # reserved capacity is configured under reservations, with its priority
    assert "reservations" in msgs["capacityTypes"] and "'only'" in msgs["capacityTypes"]
    msgs = _messages(_pool(reservations={}))
    assert "reservations.select" in msgs
    msgs = _messages(_pool(reservations={"select": [{}]}))
    assert "exactly one of id, arn or tags" in msgs["reservations.select[0]"]


def test_capacity_type_enum_error_lists_values():
    with pytest.raises(pydantic.ValidationError) as err:
        _pool(capacityTypes=["preemptible"])
    assert "'spot', 'on-demand' or 'reserved'" in str(err.value)


def test_time_slicing_range_and_not_with_efa():
    assert "timeSlicingReplicas" in _messages(_pool(timeSlicingReplicas=1))
    msgs = _messages(_pool(accelerator="nvidia-h100", efa=True, timeSlicingReplicas=2))
    assert "timeSlicingReplicas" in msgs


def test_reserved_pool_names_and_labels():
    msgs = _messages(_pool(name="general", labels={"mlplatform.io/pool": "x", "team": "a"}))
    assert "name" in msgs and "labels.mlplatform.io/pool" in msgs and "labels.team" not in msgs


def test_component_refuses_bad_args_with_all_problems():
    bad = _pool(efa=True, minGpusPerNode=4, maxGpusPerNode=1)
    with pytest.raises(InvalidArgsError) as err:
        GpuNodePool("x", bad, karpenter=None)  # type: ignore[arg-type]
    text = str(err.value)
    assert text.startswith("invalid GpuNodePool args:")
    assert "efa:" in text and "minGpusPerNode:" in text


@pytest.mark.parametrize(
    ("args", "path", "fragment"),
    [
        ({"cidr": "10.0.0.0/33"}, "cidr", "invalid CIDR"),
        ({"cidr": "10.0.0.0/24"}, "cidr", "/16 to /20"),
        ({"cidr": "8.8.0.0/16"}, "cidr", "private"),
        ({"azCount": 1}, "azCount", "2 to 6"),
        ({"azCount": 7}, "azCount", "2 to 6"),
        ({"environment": "prod", "azCount": 2}, "azCount", "3 to 6 in prod"),
        ({"nat": "none"}, "nat", "ecr.api"),
        ({"environment": "prod", "azCount": 3, "nat": "instance"}, "nat", "not for prod"),
        ({"natInstance": {"instanceType": "t4g.micro"}}, "natInstance", "only with nat: instance"),
        ({"flowLogRetentionDays": 10}, "flowLogRetentionDays", "one of"),
        ({"availabilityZones": ["us-east-1a"]}, "availabilityZones", "azCount is 2"),
        (
            {"existing": {"vpcId": "vpc-0abc1234", "privateSubnetIds": ["sg-1"]}},
            "existing.privateSubnetIds[0]",
            "subnet id",
        ),
    ],
)
def test_network_issues(args, path, fragment):
    msgs = _messages(NetworkArgs.model_validate(args))
    assert path in msgs and fragment in msgs[path], msgs


def test_nat_enum_error_lists_values():
    with pytest.raises(pydantic.ValidationError) as err:
        NetworkArgs.model_validate({"nat": "double"})
    assert "'gateway-per-az', 'single-gateway', 'instance' or 'none'" in str(err.value)


@pytest.mark.parametrize(
    ("old", "new"), [("single", "single-gateway"), ("per-az", "gateway-per-az")]
)
def test_renamed_nat_modes_say_what_to_write_instead(old, new):
    with pytest.raises(pydantic.ValidationError) as err:
        NetworkArgs.model_validate({"nat": old})
    assert f"'{old}' was renamed '{new}'" in str(err.value)


@pytest.mark.parametrize("instance_type", ["t3.nano", "m5.large", "t4g", "T4G.NANO"])
def test_nat_instance_must_be_graviton(instance_type):
    with pytest.raises(pydantic.ValidationError):
        NetworkArgs.model_validate(
            {"nat": "instance", "natInstance": {"instanceType": instance_type}}
        )


def test_nat_instance_accepts_graviton_types_and_is_clean_in_dev():
    for itype in ("t4g.nano", "t4g.micro", "c7gn.medium", "m7g.large"):
        args = NetworkArgs.model_validate(
            {"nat": "instance", "natInstance": {"instanceType": itype}}
        )
        assert args.issues() == []


@pytest.mark.parametrize(
    ("args", "path", "fragment"),
    [
        ({"kubernetesVersion": "1.27"}, "kubernetesVersion", "1.33"),
        (
            {"kubernetesVersion": "1.32"},
            "addons.kubeProxy",
            "must match kubernetesVersion 1.32",
        ),
        ({"publicEndpoint": True}, "publicAccessCidrs", "0.0.0.0/0"),
        (
            {"environment": "prod", "publicEndpoint": True, "publicAccessCidrs": ["0.0.0.0/0"]},
            "publicAccessCidrs[0]",
            "internet",
        ),
        (
            {"publicEndpoint": True, "publicAccessCidrs": ["10.0.0.0/8", "nope"]},
            "publicAccessCidrs[1]",
            "invalid CIDR",
        ),
        ({"publicAccessCidrs": ["10.0.0.0/8"]}, "publicAccessCidrs", "no effect"),
        ({"adminRoleArns": ["arn:aws:iam::123:user/bob"]}, "adminRoleArns[0]", "IAM role ARN"),
        ({"logRetentionDays": 2}, "logRetentionDays", "one of"),
        (
            {"systemNodes": {"minSize": 3, "maxSize": 2, "desiredSize": 3}},
            "systemNodes.desiredSize",
            "maxSize",
        ),
        (
            {"systemNodes": {"httpPutResponseHopLimit": 3}},
            "systemNodes.httpPutResponseHopLimit",
            "1 or 2",
        ),
        (
            {"systemNodes": {"instanceTypes": ["t3.large", "t4g.large"]}},
            "systemNodes.instanceTypes",
            "arm64",
        ),
        ({"addons": {"coredns": "latest"}}, "addons.coredns", "eksbuild"),
    ],
)
def test_cluster_issues(args, path, fragment):
    msgs = _messages(TrainingClusterArgs.model_validate(args))
    assert path in msgs and fragment in msgs[path], msgs


def test_dev_may_open_public_endpoint_explicitly():
    args = TrainingClusterArgs.model_validate(
        {"publicEndpoint": True, "publicAccessCidrs": ["0.0.0.0/0"]}
    )
    assert args.issues() == []


@pytest.mark.parametrize(
    ("args", "path"),
    [
        ({"amiAlias": "al2023@latest"}, "amiAlias"),
        ({"replicas": 5}, "replicas"),
        ({"cpuPool": {"capacityTypes": ["reserved"]}}, "cpuPool.capacityTypes"),
        ({"cpuPool": {"architectures": ["x86"]}}, "cpuPool.architectures[0]"),
    ],
)
def test_karpenter_issues(args, path):
    assert path in _messages(KarpenterArgs.model_validate(args))


def test_unknown_keys_are_errors():
    with pytest.raises(pydantic.ValidationError):
        GpuNodePoolArgs.model_validate(
            {"name": "p", "accelerator": "nvidia-t4", "maxGpus": 1, "minNodes": 1}
        )


def test_stack_examples_are_valid():
    from tests.compute.stacks import DEV, PROD

    for cfg in (DEV, PROD):
        assert NetworkArgs.model_validate(cfg["network"]).issues() == []
        assert TrainingClusterArgs.model_validate(cfg["cluster"]).issues() == []
        assert KarpenterArgs.model_validate(cfg["karpenter"]).issues() == []
        for pool in cfg["gpuPools"]:
            assert GpuNodePoolArgs.model_validate(pool).issues() == []


def test_pool_list_reports_duplicates_and_nested_issues_with_indexes():
    from components.gpu_node_pool import pool_list_issues

    pools = [_pool(), _pool(efa=True)]
    paths = {format_path(i.path) for i in pool_list_issues(pools)}
    assert paths == {"[1].name", "[1].efa"}


def test_nat_instance_settings_need_nat_instance_but_its_defaults_do_not():
    # what a stack sets by hand
    tuned = NetworkArgs.model_validate(
        {"nat": "single-gateway", "natInstance": {"instanceType": "t4g.micro"}}
    )
    assert "natInstance" in _messages(tuned)
    # what the engine hands every stack: Pulumi.yaml's typed default of network, natInstance included
    defaults = NetworkArgs().model_dump(by_alias=True, mode="json")
    assert defaults["natInstance"]
    assert _messages(NetworkArgs.model_validate(defaults)) == {}
