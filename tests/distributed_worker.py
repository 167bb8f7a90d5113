"""One process of a multi-process joint training run (driven by tests/test_distributed.py).

Every process (one per host) runs the same command with its own
``--process-id``; process 0 also hosts the coordinator at ``--coordinator``::

    # on host i of N (i = 0 .. N-1), HOST0 = host 0's address, PORT a free port on it
    python tests/distributed_worker.py --coordinator HOST0:PORT --num-processes N \\
        --process-id i --mesh model=2,data=2 --steps 5 --checkpoints /shared/ckpt \\
        [--resume] [--out params.npz]

The mesh spans the devices of every process (``model * data`` = all of
them); every process builds the same cohort train state from the same seeds,
reads the same global batches, trains ``--steps`` steps in all (``--resume``:
from the latest checkpoint on) and saves a checkpoint of the last step into
``--checkpoints``, a directory every process sees (a shared file system or a
bucket). Process 0 writes the final parameters, gathered, to ``--out``.

On one machine, ``--cpu`` (gloo collectives) and per process
``XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_PLATFORMS=cpu``
stand in for two hosts of two devices each.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import jax
import numpy as np
from helpers import cohort_optimizer
from jax.experimental import multihost_utils
from test_cohorts import BERT, GPT2, batch_at, bert_params, gpt2_params

import mmojax
from mmojax import train as mtrain

K = 4  # cohort members: a multiple of the model axis
SEED = 3
MODELS = {"bert": BERT, "gpt2": GPT2}
WEIGHTS = {"bert": [1.0, 0.8, 1.2, 0.9], "gpt2": 0.9}


def cohort_tree() -> dict[str, Any]:
    """A cohort of ``K`` BERT-like members and one GPT-2-like model."""
    return {"bert": mmojax.stack_models([bert_params(s) for s in range(K)]), "gpt2": gpt2_params(7)}


def make_tx():
    """The tests' role_depth optimizer (syncs every 4 updates), with weights for ``K`` members."""
    return cohort_optimizer("role_depth", WEIGHTS)


def train(state, step, start: int, stop: int, mesh=None):
    """Steps ``start .. stop - 1`` on the tests' batches (global, placed on ``mesh`` if any)."""
    for i in range(start, stop):
        batch = batch_at(i) if mesh is None else mtrain.shard_batch(batch_at(i), mesh)
        state, _ = step(state, batch)
    return state


def flat_params(params) -> dict[str, np.ndarray]:
    """``{key path: host array}`` of a (host or fully addressable) parameter tree."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path): np.asarray(x) for path, x in leaves}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", required=True, help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, required=True)
    parser.add_argument("--process-id", type=int, required=True)
    parser.add_argument("--mesh", default="model=2,data=2")
    parser.add_argument("--steps", type=int, required=True, help="train steps in all")
    parser.add_argument("--checkpoints", required=True, help="a directory all processes see")
    parser.add_argument("--resume", action="store_true", help="from the latest checkpoint")
    parser.add_argument("--out", help="process 0 writes the final parameters here (.npz)")
    parser.add_argument("--cpu", action="store_true", help="gloo collectives (one machine)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    began = time.perf_counter()
    # Before any other JAX work: the backend must see every process's devices.
    mtrain.initialize_distributed(
        args.coordinator, args.num_processes, args.process_id, cpu=args.cpu
    )
    mesh = mtrain.make_mesh(args.mesh)
    tx = make_tx()
    state = mtrain.shard_state(mtrain.init_train_state(cohort_tree(), tx, seed=SEED), mesh)
    ckpt = mtrain.Checkpointer(args.checkpoints)
    try:
        start = 0
        if args.resume:
            state, _, start = ckpt.restore(state)
        step = mtrain.make_train_step(MODELS, tx, mesh=mesh)
        state = train(state, step, start, args.steps, mesh)
        ckpt.save(args.steps, state, {"step": args.steps})
    finally:
        ckpt.close()
    # Every process takes part in the gather; process 0 writes.
    params = multihost_utils.process_allgather(state.params, tiled=True)
    if args.out and jax.process_index() == 0:
        np.savez(args.out, **flat_params(params))
    seconds = time.perf_counter() - began
    print(f"process {jax.process_index()}: steps {start}..{args.steps} in {seconds:.0f} s")
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
