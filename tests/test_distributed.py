"""Two gloo processes train like one process with the doubled batch size; only
rank 0 writes; a stop signal on one rank stops both at the same step."""

from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import sys
import time

import ase.io
import pytest
import torch
import yaml

from atomtrain.training.distributed import World, launch_from_env


RESOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources")
ATOMTRAIN = [sys.executable, "-m", "atomtrain"]
PER_PROCESS_BATCH = 4


def write_options(folder: str, batch_size: int, epochs: int) -> str:
    """A small float64 run with a constant learning rate; the data path is
    absolute so that each rank may run in its own folder."""
    data = os.path.join(folder, "ethanol.xyz")
    if not os.path.exists(data):
        frames = ase.io.read(os.path.join(RESOURCES, "ethanol_reduced_100.xyz"), ":24")
        ase.io.write(data, frames)
    options = {
        "architecture": {
            "name": "soap_bpnn",
            "model": {
                "soap": {"max_radial": 3, "max_angular": 2},
                "bpnn": {"num_neurons_per_layer": 16},
            },
            "training": {
                "num_epochs": epochs,
                "batch_size": batch_size,
                "scheduler": "constant",
                "warmup_epochs": 0.0,
            },
        },
        "training_set": {
            "systems": data,
            "targets": {"energy": {"unit": "kcal/mol", "forces": True}},
        },
        # 18 training structures: per-process batches of 4, 4, 4, 4, 2 give three
        # steps, the last one leaving rank 1 an empty batch
        "validation_set": 0.25,
        "base_precision": 64,
        "seed": 7,
    }
    path = os.path.join(folder, f"options_{batch_size}_{epochs}.yaml")
    with open(path, "w") as file:
        yaml.safe_dump(options, file)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(folders: list[str], arguments: list[str], port: int) -> list:
    """One ``atomtrain`` process per folder, ranks in order, as torchrun would."""
    processes = []
    for rank, folder in enumerate(folders):
        environment = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(len(folders)),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        processes.append(
            subprocess.Popen(
                [*ATOMTRAIN, "train", *arguments],
                cwd=folder,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return processes


def finish(processes: list, timeout: float = 240) -> list[tuple[int, str]]:
    results = []
    for process in processes:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        results.append((process.returncode, output))
    return results


def single_process(folder: str, options: str) -> dict:
    from atomtrain.cli import main

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        assert main(["train", options]) == 0
    finally:
        os.chdir(cwd)
    return torch.load(os.path.join(folder, "model.ckpt"), weights_only=True)


def assert_close_weights(a: dict, b: dict) -> None:
    for state in ("model_state_dict", "best_model_state_dict"):
        assert a[state].keys() == b[state].keys()
        for key in a[state]:
            torch.testing.assert_close(
                a[state][key], b[state][key], rtol=1e-9, atol=1e-10, msg=key
            )


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(epochs)``: final checkpoint of one process with batch 8."""
    runs: dict = {}

    def run(epochs: int) -> dict:
        if epochs not in runs:
            folder = str(tmp_path_factory.mktemp(f"single{epochs}"))
            options = write_options(folder, 2 * PER_PROCESS_BATCH, epochs)
            runs[epochs] = single_process(folder, options)
        return runs[epochs]

    return run


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """A 2-epoch run in two processes, each in its own working folder."""
    main, other = (str(tmp_path_factory.mktemp(name)) for name in ("rank0", "rank1"))
    options = write_options(main, PER_PROCESS_BATCH, epochs=2)
    results = finish(launch([main, other], [options], free_port()))
    for code, output in results:
        assert code == 0, output
    return main, other, results


def test_two_processes_match_one_with_the_doubled_batch(two_ranks, reference):
    main, _, _ = two_ranks
    distributed = torch.load(os.path.join(main, "model.ckpt"), weights_only=True)
    reference = reference(2)
    assert distributed["epoch"] == reference["epoch"] == 2
    assert_close_weights(distributed, reference)
    # the composition baseline and scale were fitted once and broadcast
    for key, value in reference["model_state_dict"].items():
        if "composition" in key or "scale" in key:
            assert torch.equal(distributed["model_state_dict"][key], value), key


def test_only_rank_0_writes(two_ranks):
    main, other, results = two_ranks
    assert os.listdir(other) == []  # rank 1 ran in an empty folder: still empty
    (run,) = glob.glob(os.path.join(main, "outputs", "*", "*"))
    for name in ("train.log", "train.csv", "options_restart.yaml", "model.ckpt"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert os.path.isfile(os.path.join(main, "model.pt"))
    with open(os.path.join(run, "train.log")) as file:
        log = file.read()
    assert "in 2 processes" in log
    assert log.count("Epoch    2") == 1
    rank0_output, rank1_output = results[0][1], results[1][1]
    assert "Epoch    2" in rank0_output and "training finished" in rank0_output
    assert "Epoch" not in rank1_output and "error" not in rank1_output


def test_a_signal_to_one_rank_stops_both_at_the_same_step(tmp_path, reference):
    main, other = str(tmp_path / "rank0"), str(tmp_path / "rank1")
    os.makedirs(main)
    os.makedirs(other)
    options = write_options(main, PER_PROCESS_BATCH, epochs=200)
    processes = launch([main, other], [options], free_port())
    deadline = time.time() + 180
    while not glob.glob(os.path.join(main, "outputs", "*", "*", "restart.ckpt")):
        if time.time() > deadline or any(p.poll() is not None for p in processes):
            finish(processes, timeout=10)
            pytest.fail("the run ended before its first epoch")
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGUSR1)
    results = finish(processes, timeout=120)
    assert [code for code, _ in results] == [75, 75], results
    assert "a signal to another process" in results[0][1]
    (restart,) = glob.glob(os.path.join(main, "outputs", "*", "*", "restart.ckpt"))
    stopped = torch.load(restart, weights_only=True)
    assert 1 <= stopped["epoch"] < 200
    assert os.listdir(other) == []

    # resume both ranks for one more epoch: as one process with batch 8
    epochs = stopped["epoch"] + 1
    override = f"architecture.training.num_epochs={epochs}"
    results = finish(
        launch(
            [main, other], [options, "--restart", restart, "-o", override], free_port()
        )
    )
    for code, output in results:
        assert code == 0, output
    (resumed,) = glob.glob(os.path.join(main, "outputs", "*", "*", "model.ckpt"))
    resumed = torch.load(resumed, weights_only=True)
    assert resumed["epoch"] == epochs
    assert_close_weights(resumed, reference(epochs))


# ------------------------------------------------------------- launch parsing
def test_launch_from_torchrun_and_srun_variables(monkeypatch):
    assert launch_from_env({}) is None
    torchrun = {
        "RANK": "3",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "node1",
        "MASTER_PORT": "29500",
    }
    launch = launch_from_env(torchrun)
    assert (launch.rank, launch.world_size, launch.local_rank) == (3, 4, 1)
    srun = {
        "SLURM_PROCID": "5",
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_ID": "1234",
        "MASTER_ADDR": "node7",
    }
    launch = launch_from_env(srun)
    assert (launch.rank, launch.world_size, launch.local_rank) == (5, 8, 1)
    assert (launch.master_addr, launch.master_port) == ("node7", 21234)
    # an sbatch script (no srun step) is one process
    batch = {k: v for k, v in srun.items() if k != "SLURM_STEP_ID"}
    assert launch_from_env(batch) is None


def test_srun_without_master_addr_or_scontrol_is_a_clear_error(monkeypatch):
    from atomtrain.errors import UserError

    monkeypatch.setenv("PATH", "")  # no scontrol
    srun = {
        "SLURM_PROCID": "0",
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": "2",
        "SLURM_JOB_NODELIST": "node[01-02]",
    }
    with pytest.raises(UserError, match="MASTER_ADDR"):
        launch_from_env(srun)


def test_shard_gives_each_rank_its_part_of_the_doubled_batch():
    batches = [[0, 1], [2, 3], [4, 5], [6, 7], [8]]
    assert World(0, 2).shard(batches) == [[0, 1], [4, 5], [8]]
    assert World(1, 2).shard(batches) == [[2, 3], [6, 7], []]
    assert World(0, 1).shard(batches) == batches
