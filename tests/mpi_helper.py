"""Run by tests/test_distributed.py under ``mpiexec -n N python tests/mpi_helper.py MODE ...``.

    fit OUT.npz          a small float64 run (uneven shards, accumulation, an RNG-drawing
                         transform, sharded evaluation); rank 0 writes params, losses, scores
    cli ARGS...          ``pylgn train ARGS`` (pylgn.cli.main), with a fault injected when
                         PYLGN_TEST_FAULT = KIND:RANK:STEP (KIND: raise, exit, hang, drift)

``fit_run(comm)`` is also imported by the tests for the single-process reference.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

FIT = dict(batch_size=25, accumulate=2, steps=12, eval_every=4, seed=5)


def fit_data():
    """150 random 24-bit samples, 4 classes read off bits 0 and 1; an eval set of 41."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, size=(191, 24)).astype(np.float64)
    y = (2 * x[:, 0] + x[:, 1]).astype(np.int64)
    return x[:150], y[:150], x[150:], y[150:]


def flip_bits(xb, rng):
    """Flip each bit with probability 0.05 (draws from the trainer's RNG)."""
    return np.abs(xb - (rng.random(xb.shape) < 0.05))


def fit_run(comm, steps=FIT["steps"]):
    """Train the small float64 model with ``comm``; returns (trainer, history)."""
    import pylgn
    x, y, xe, ye = fit_data()
    layers = [pylgn.LogicLayer(24, 40), pylgn.LogicLayer(40, 40), pylgn.GroupSum(4, 2.0)]
    model = pylgn.Sequential(layers, seed=0, dtype=np.float64)
    model.params += 0.01 * comm.rank        # the Trainer must broadcast rank 0's parameters
    trainer = pylgn.Trainer(model, pylgn.Adam(model, lr=0.05), batch_size=FIT["batch_size"],
                            accumulate=FIT["accumulate"], seed=FIT["seed"] + comm.rank, comm=comm)
    history = trainer.fit(x, y, steps, eval_data=(xe, ye), eval_every=FIT["eval_every"],
                          progress=False, transform=flip_bits)
    return trainer, history


def _fit(out):
    from pylgn.distributed import get_communicator
    comm = get_communicator("mpi", timeout=60)
    trainer, h = fit_run(comm)
    if comm.rank == 0:
        np.savez(out, params=trainer.model.params, loss=np.array(h["train_loss"]),
                 acc=np.array(h["train_accuracy"]), relaxed=np.array(h["test_accuracy_relaxed"]),
                 discrete=np.array(h["test_accuracy_discrete"]), size=comm.size,
                 permutation=trainer.permutation)


def _inject(kind, rank, step):
    """Make ``rank`` misbehave after its optimizer step ``step``."""
    from pylgn.distributed import launched_size
    import pylgn.train
    original = pylgn.train.Trainer.train_step

    def train_step(self, *a, **kw):
        out = original(self, *a, **kw)
        if self.comm.rank == rank and self.step == step and launched_size() > 1:
            if kind == "raise":
                raise RuntimeError(f"injected fault at step {step}")
            if kind == "exit":
                os._exit(3)
            if kind == "hang":
                time.sleep(3600)
            if kind == "drift":
                self.model.params[0] += 1e-3
        return out
    pylgn.train.Trainer.train_step = train_step


def main(argv):
    mode = argv[0]
    if mode == "fit":
        _fit(argv[1])
        return 0
    if mode == "cli":
        fault = os.environ.get("PYLGN_TEST_FAULT")
        if fault:
            kind, rank, step = fault.split(":")
            _inject(kind, int(rank), int(step))
        from pylgn.cli import main as cli_main
        return cli_main(argv[1:])
    raise SystemExit(f"mpi_helper: unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
