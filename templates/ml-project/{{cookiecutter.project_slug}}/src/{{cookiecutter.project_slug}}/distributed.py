"""One process or many: the torchrun/DDP environment of a training run.

torchrun starts one process per GPU (or one per node on CPU) and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each. On the platform a training job with
``nodes > 1`` is a Kubeflow ``PyTorchJob``: its operator gives every pod torchrun's rendezvous
(``PET_NNODES``, ``PET_NODE_RANK``, ``PET_NPROC_PER_NODE``, ``PET_MASTER_ADDR``...), so the job's
command ``torchrun -m {{ cookiecutter.project_slug }}.train`` runs unchanged from 1 to N nodes. Without torchrun
the world is one process and nothing is initialised.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def primary(self) -> bool:
        """Rank 0 evaluates, saves, logs and uploads; the others only train."""
        return self.rank == 0


def context() -> Context:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local % torch.cuda.device_count())
    else:
        device = torch.device("cpu")
    return Context(rank=rank, world_size=world, local_rank=local, device=device)


def setup() -> Context:
    """Join the process group when started by torchrun (NCCL on GPUs, gloo on CPU)."""
    ctx = context()
    if ctx.world_size > 1 and not dist.is_initialized():
        if ctx.device.type == "cuda":
            torch.cuda.set_device(ctx.device)
        dist.init_process_group(backend="nccl" if ctx.device.type == "cuda" else "gloo")
    return ctx


def stop_unless_primary() -> None:
    """After training every rank leaves the group; ranks > 0 then exit 0 (torchrun counts them
    as done) and rank 0 goes on to evaluate, save and upload alone."""
    if dist.is_initialized():
        dist.destroy_process_group()
    if not context().primary:
        sys.exit(0)
