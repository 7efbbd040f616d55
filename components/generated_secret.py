"""GeneratedSecret: a random password generated once, kept secret in the stack's state.

It stands in for ``pulumi_random.RandomPassword``, whose provider plugin is one more download
(and one the Go module proxy does not serve, so an engine built from source cannot run it). This
is a Pulumi dynamic resource: the engine runs it through ``pulumi-resource-pulumi-python``, which
ships with every Pulumi CLI and runs Python from the project's own virtual environment.

The value is made by :mod:`secrets` at create time only, stored encrypted (``result`` is a secret
output), and never changes on later updates; changing ``length`` or ``alphabet`` replaces it.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

import pulumi
import pulumi.dynamic

TYPE_TOKEN = "pulumi-python:dynamic/mlplatform:GeneratedSecret"  # noqa: S105 - a type name
ALPHANUMERIC = string.ascii_letters + string.digits
_INPUTS = ("length", "alphabet")


class _Provider(pulumi.dynamic.ResourceProvider):
    # Nothing secret is in the provider itself; the serialized provider can stay in plain text.
    serialize_as_secret_always = False

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = []
        if not isinstance(news.get("length"), int | float) or not 16 <= news["length"] <= 256:
            failures.append(pulumi.dynamic.CheckFailure("length", "must be 16-256"))
        if len(set(str(news.get("alphabet") or ""))) < 10:
            failures.append(pulumi.dynamic.CheckFailure("alphabet", "needs 10+ distinct symbols"))
        return pulumi.dynamic.CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        alphabet, length = str(props["alphabet"]), int(props["length"])
        value = "".join(secrets.choice(alphabet) for _ in range(length))
        return pulumi.dynamic.CreateResult(
            id_=secrets.token_hex(8), outs={**_inputs(props), "result": value}
        )

    def diff(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        changed = [k for k in _INPUTS if olds.get(k) != news.get(k)]
        return pulumi.dynamic.DiffResult(
            changes=bool(changed), replaces=changed, delete_before_replace=False
        )

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        return pulumi.dynamic.ReadResult(id_, props)


def _inputs(props: dict[str, Any]) -> dict[str, Any]:
    return {k: props[k] for k in _INPUTS}


class GeneratedSecret(pulumi.dynamic.Resource, module="mlplatform", name="GeneratedSecret"):
    """``GeneratedSecret(name, length=32)``; read the value from ``.result`` (a secret Output)."""

    result: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        length: int = 32,
        alphabet: str = ALPHANUMERIC,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=["result"])
        super().__init__(
            _Provider(),
            name,
            {"length": length, "alphabet": alphabet, "result": None},
            pulumi.ResourceOptions.merge(opts, secret_opts),
        )
