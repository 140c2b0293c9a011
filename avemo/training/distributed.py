"""This process's place in a `torchrun` job (DistributedDataParallel over GPUs or gloo on CPU)."""
from __future__ import annotations

import os

import torch

from ..errors import ParamError
from ..device import pick_device


class Distributed:
    """This process's place in a `torchrun` job, from the variables torchrun sets (WORLD_SIZE, RANK,
    LOCAL_RANK); world size 1, rank 0 when started without it. `start` joins the process group (nccl on
    CUDA, gloo on CPU), `close` leaves it; collectives are no-ops in a single process."""

    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.world_size = int(env.get("WORLD_SIZE", "1"))
        self.rank = int(env.get("RANK", "0"))
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        self.backend, self.owns_group = None, False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        """pick_device's choice; under torchrun with CUDA, the GPU cuda:LOCAL_RANK of this node."""
        device = pick_device(requested)
        if not self.enabled or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise ParamError(f"torchrun: local rank {self.local_rank} but {torch.cuda.device_count()} CUDA "
                             f"device(s) on this machine; start at most that many processes per node")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        if not self.enabled:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            self.backend = dist.get_backend()
            return
        self.backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(self.backend, device_id=device if device.type == "cuda" else None)
        self.owns_group = True

    def close(self) -> None:
        import torch.distributed as dist

        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over all ranks."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def from_main(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's `values` on every rank."""
        if not self.enabled:
            return values
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return tensor.tolist()

    def gather(self, value) -> list:
        """Every rank's (picklable) `value`, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()
