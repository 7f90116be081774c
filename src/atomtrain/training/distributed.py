"""Several processes training one model: process group, sharding, reductions.

A run is distributed when it is started by ``torchrun`` (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) or by SLURM's
``srun`` (``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``/``SLURM_NTASKS``,
``SLURM_LOCALID``; the master address is the first host of the job's node list).
CUDA runs use NCCL with one GPU per process (``cuda:LOCAL_RANK``), CPU runs gloo.

Gradients are summed by hand after ``backward`` rather than through
``DistributedDataParallel``: the loss holds forces from ``autograd.grad(...,
create_graph=True)``, which DDP's hooks handle poorly, while each process
back-propagating its share of one global loss and summing the gradients is
exact. A world of one process communicates nothing, so single-process runs
take exactly the code path they always took.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Sequence, TypeVar

import torch

from atomtrain.data.info import TargetInfo
from atomtrain.errors import UserError
from atomtrain.training.losses import total_loss
from atomtrain.training.metrics import Metrics


T = TypeVar("T")
DEFAULT_TIMEOUT_S = 1800  # collectives wait this long (ATOMTRAIN_DIST_TIMEOUT)


@dataclass
class Launch:
    """Where this process sits in a multi-process launch."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def _int(environ, name: str) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise UserError(
            f"environment variable {name} is '{environ[name]}', which is not an "
            "integer; it is set by torchrun or srun and should not be changed."
        ) from None


def _first_host(nodelist: str) -> str:
    """First host of a SLURM node list such as ``node[01-04,07]``."""
    try:
        result = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist],
            capture_output=True,
            text=True,
            check=True,
        )
        hosts = result.stdout.split()
    except (OSError, subprocess.CalledProcessError):
        hosts = []
    if not hosts:
        raise UserError(
            f"cannot find the master address of this SLURM job: MASTER_ADDR is not "
            f"set and 'scontrol show hostnames {nodelist}' gave no host. Set "
            "MASTER_ADDR to the first node of the job in the batch script, e.g. "
            "export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | "
            "head -n 1)."
        )
    return hosts[0]


def launch_from_env(environ=os.environ) -> Launch | None:
    """The launch described by torchrun's or srun's variables; None when this
    process was started alone (also inside an sbatch script without srun)."""
    if "RANK" in environ and "WORLD_SIZE" in environ:  # torchrun, or by hand
        if "MASTER_ADDR" not in environ or "MASTER_PORT" not in environ:
            raise UserError(
                "RANK and WORLD_SIZE are set but MASTER_ADDR or MASTER_PORT is not: "
                "start several processes with 'torchrun --nproc-per-node N "
                "atomtrain train options.yaml', or set all four variables."
            )
        return Launch(
            _int(environ, "RANK"),
            _int(environ, "WORLD_SIZE"),
            _int(environ, "LOCAL_RANK") if "LOCAL_RANK" in environ else 0,
            environ["MASTER_ADDR"],
            _int(environ, "MASTER_PORT"),
        )
    # an sbatch script has SLURM_PROCID and SLURM_NTASKS too; only a job step
    # started by srun (SLURM_STEP_ID) runs the tasks in parallel
    if "SLURM_PROCID" in environ and "SLURM_STEP_ID" in environ:
        tasks = environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS")
        if not tasks or int(tasks) <= 1:
            return None
        address = environ.get("MASTER_ADDR") or _first_host(
            environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST", "")
        )
        port = environ.get("MASTER_PORT") or str(
            20000 + int(environ.get("SLURM_JOB_ID", "0")) % 20000
        )
        return Launch(
            _int(environ, "SLURM_PROCID"),
            int(tasks),
            int(environ.get("SLURM_LOCALID", "0")),
            address,
            int(port),
        )
    return None


class World:
    """This process's view of the group. A world of one communicates nothing."""

    def __init__(
        self, rank: int = 0, size: int = 1, device: torch.device | None = None
    ):
        self.rank = rank
        self.size = size
        self.device = device if device is not None else torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every file and log line; the others stay silent."""
        return self.rank == 0

    # --------------------------------------------------------------- sharding
    def shard(self, batches: Sequence[List[int]]) -> List[List[int]]:
        """This process's batch at each step: step ``k`` takes the ``size``
        batches from ``k * size`` on, one per process (the last step may leave
        some processes an empty batch). With per-process batches of ``B``
        structures, the structures of a step are those of one batch of
        ``B * size`` in a single process."""
        size, rank = self.size, self.rank
        return [
            list(batches[k + rank]) if k + rank < len(batches) else []
            for k in range(0, len(batches), size)
        ]

    # ------------------------------------------------------------ collectives
    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes (a new tensor on this process)."""
        values = values.detach().to(self.device).clone()
        if self.size > 1:
            torch.distributed.all_reduce(values)
        return values

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on at least one."""
        if self.size == 1:
            return flag
        return bool(self.sum(torch.tensor([float(flag)], dtype=torch.float64)) > 0)

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()

    def broadcast_object(self, value: T) -> T:
        """Rank 0's ``value`` on every process."""
        if self.size == 1:
            return value
        holder = [value]
        torch.distributed.broadcast_object_list(holder, src=0, device=self._objects())
        return holder[0]

    def on_main(self, function: Callable[[], T]) -> T:
        """Run ``function`` on rank 0 and give its result (or its UserError) to
        every process, so that a decision (a run folder, a random seed, a
        checkpoint to resume) is taken once."""
        if self.size == 1:
            return function()
        payload = None
        if self.is_main:
            try:
                payload = ("ok", function())
            except UserError as error:
                payload = ("error", str(error))
        kind, value = self.broadcast_object(payload)
        if kind == "error":
            raise UserError(value)
        return value

    def broadcast_tensors(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite ``tensors`` (in place) with rank 0's values."""
        if self.size == 1:
            return
        for group in _by_dtype(list(tensors)).values():
            flat = torch.cat([t.detach().reshape(-1) for t in group]).to(self.device)
            torch.distributed.broadcast(flat, src=0)
            _unflatten_into(flat, group)

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Give every process rank 0's parameters and buffers."""
        self.broadcast_tensors([*module.parameters(), *module.buffers()])

    def sum_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Sum ``.grad`` over processes. A parameter keeps ``grad = None`` only
        when no process has a gradient for it, as in one process (AdamW skips
        such parameters, but not zero gradients)."""
        if self.size == 1:
            return
        trainable = [p for p in parameters if p.requires_grad]
        for group in _by_dtype(trainable).values():
            parts = [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                for p in group
            ]
            present = torch.tensor(
                [float(p.grad is not None) for p in group], dtype=parts[0].dtype
            )
            flat = torch.cat([*parts, present.to(parts[0].device)]).to(self.device)
            torch.distributed.all_reduce(flat)
            has = flat[-len(group) :] > 0
            offset = 0
            for parameter, keep in zip(group, has.tolist()):
                n = parameter.numel()
                values = flat[offset : offset + n].view_as(parameter)
                parameter.grad = values.to(parameter.device).clone() if keep else None
                offset += n

    def _objects(self) -> torch.device:
        # NCCL moves pickled objects through the GPU, gloo through the CPU
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def close(self) -> None:
        global _CURRENT
        if self.size > 1 and torch.distributed.is_initialized():
            # tearing down while a peer still talks aborted a process (gloo's
            # threads) at exit: meet first, then destroy
            try:
                torch.distributed.barrier()
            except RuntimeError:
                pass  # a peer is gone: nothing left to wait for
            torch.distributed.destroy_process_group()
        _CURRENT = None


def _by_dtype(tensors: List[torch.Tensor]) -> Dict[torch.dtype, List[torch.Tensor]]:
    groups: Dict[torch.dtype, List[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault(tensor.dtype, []).append(tensor)
    return groups


def _unflatten_into(flat: torch.Tensor, tensors: List[torch.Tensor]) -> None:
    offset = 0
    with torch.no_grad():
        for tensor in tensors:
            n = tensor.numel()
            tensor.copy_(flat[offset : offset + n].view_as(tensor))
            offset += n


_CURRENT: World | None = None


def current() -> World:
    """The world started by :func:`start`, or a world of one process."""
    return _CURRENT if _CURRENT is not None else World()


def start(device: torch.device, environ=os.environ) -> World:
    """Join the process group when launched by torchrun or srun; a world of one
    otherwise. CUDA devices become ``cuda:LOCAL_RANK``."""
    global _CURRENT
    launch = launch_from_env(environ)
    if launch is None or launch.world_size <= 1:
        return World(device=device)
    if not 0 <= launch.rank < launch.world_size:
        raise UserError(
            f"process rank {launch.rank} is outside a world of {launch.world_size} "
            "processes; check RANK/WORLD_SIZE (or SLURM_PROCID/SLURM_NTASKS)."
        )
    backend = "gloo"
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if launch.local_rank >= count:
            raise UserError(
                f"process {launch.rank} has local rank {launch.local_rank} but its "
                f"node has {count} GPU(s): start at most one process per GPU "
                "(torchrun --nproc-per-node, or srun --ntasks-per-node/--gpus-per-"
                "task)."
            )
        device = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    timeout = int(environ.get("ATOMTRAIN_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    host = launch.master_addr
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    try:
        torch.distributed.init_process_group(
            backend,
            init_method=f"tcp://{host}:{launch.master_port}",
            rank=launch.rank,
            world_size=launch.world_size,
            timeout=datetime.timedelta(seconds=timeout),
        )
    except (RuntimeError, ValueError) as error:
        raise UserError(
            f"process {launch.rank} of {launch.world_size} could not join the "
            f"process group at {launch.master_addr}:{launch.master_port} "
            f"({backend}): {str(error).splitlines()[0]}. Check that every process "
            "was started with the same MASTER_ADDR and MASTER_PORT and that the "
            "port is free."
        ) from None
    _CURRENT = World(launch.rank, launch.world_size, device)
    return _CURRENT


@dataclass
class StepResult:
    """A batch's loss over the structures of every process."""

    loss: torch.Tensor | None  # this process's share, to back-propagate
    value: float  # the loss of the global batch
    count: int  # structures in the global batch
    metric_sums: Dict[tuple, list]  # summed over processes


def _term_keys(targets: Dict[str, TargetInfo]) -> List[tuple]:
    """Loss terms and metrics every process lists in the same order."""
    keys = []
    for name, info in targets.items():
        keys.append((name, "values"))
        if "positions" in info.gradients:
            keys.append((name, "forces"))
        if "strain" in info.gradients:
            keys.append((name, "stress"))
    return keys


def combine(
    world: World,
    targets: Dict[str, TargetInfo],
    loss: torch.Tensor | None,
    errors: Dict[str, Dict[str, torch.Tensor]],
    loss_options: dict,
    scales: Dict[str, torch.Tensor],
    n_structures: int,
) -> StepResult:
    """The global loss of a step from each process's errors.

    Every loss term is a mean over its elements (energies, force components, ...),
    so the global term is the sum over processes of each one's mean weighted by
    its share of the elements: one all-reduce of the element counts and sums
    gives each process the weights of its share and the global value."""
    metrics = Metrics(targets)
    metrics.update(errors)
    if world.size == 1:
        return StepResult(loss, float(loss.detach()), n_structures, metrics.sums)
    keys = _term_keys(targets)
    terms: List[torch.Tensor | None] = []
    counts, sums, metric_sums = [], [], []
    for name, kind in keys:
        error = errors.get(name, {}).get("_virial" if kind == "stress" else kind)
        term = None
        if error is not None:
            loss_kind = "_virial" if kind == "stress" else kind
            term = total_loss({name: {loss_kind: error}}, loss_options, scales)
        terms.append(term)
        counts.append(float(error.numel()) if error is not None else 0.0)
        sums.append(float(term.detach()) * counts[-1] if term is not None else 0.0)
        metric_sums.extend(metrics.sums.get((name, kind), [0.0, 0.0, 0]))
    local = torch.tensor(
        [*counts, *sums, *metric_sums, float(n_structures)], dtype=torch.float64
    )
    total = world.sum(local).cpu().tolist()
    n_keys = len(keys)
    global_counts, global_sums = total[:n_keys], total[n_keys : 2 * n_keys]
    value = sum(s / n for s, n in zip(global_sums, global_counts) if n > 0)
    share = None
    for term, count, global_count in zip(terms, counts, global_counts):
        if term is not None:
            piece = term * (count / global_count)
            share = piece if share is None else share + piece
    reduced = {}
    for i, key in enumerate(keys):
        squares, absolute, n = total[2 * n_keys + 3 * i : 2 * n_keys + 3 * i + 3]
        if n > 0:
            reduced[key] = [squares, absolute, int(round(n))]
    return StepResult(share, value, int(round(total[-1])), reduced)
