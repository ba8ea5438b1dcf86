"""Trainer: seeded mini-batch loop with gradient accumulation, relaxed + discretized evaluation,
progress bar, history and exact-resume checkpoints."""
import json
import sys
import time

import numpy as np

from ._checks import check_batch, check_int, check_labels
from .checkpoint import atomic_path, to_json

HISTORY_KEYS = ("step", "train_loss", "train_accuracy", "test_accuracy_relaxed",
                "test_accuracy_discrete", "discretization_gap", "seconds")


def accuracy(model, x, y, batch_size=1000):
    """Fraction of samples whose argmax logit equals the label, in the model's current mode."""
    host = model.backend.to_host
    correct = 0
    for i in range(0, len(x), batch_size):
        pred = host(model.forward(x[i:i + batch_size])).argmax(axis=1)
        correct += int((pred == np.asarray(y[i:i + batch_size])).sum())
    return correct / len(x)


def circuit_accuracy(model, x, y, batch_size=65536):
    """Discretized accuracy through the bit-packed circuit: the model's eval() forward reads its
    inputs as bits [x >= 0.5] (or the bits of its input encoder, ``model.encoder``), so
    ``model.to_circuit().predict(x >= 0.5)`` is the same prediction (ties to the lowest class
    in both), at a fraction of the float path's cost."""
    circuit, encoder = model.to_circuit(), model.encoder
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = np.asarray(x[i:i + batch_size])
        pred = circuit.predict(encoder.encode(xb) if encoder is not None else xb >= 0.5)
        correct += int((pred == np.asarray(y[i:i + batch_size])).sum())
    return correct / len(x)


def evaluate(model, x, y, batch_size=1000, packed=True):
    """dict(relaxed=accuracy in train(), discrete=accuracy of the discretized model,
    gap=relaxed - discrete); the model's mode is restored afterwards. ``packed``: the discrete
    accuracy through the bit-packed circuit (``circuit_accuracy``), else the eval() forward."""
    was_training = model.training
    try:
        relaxed = accuracy(model.train(), x, y, batch_size)
        discrete = (circuit_accuracy(model, x, y) if packed else
                    accuracy(model.eval(), x, y, batch_size))
    finally:
        model.train() if was_training else model.eval()
    return dict(relaxed=relaxed, discrete=discrete, gap=relaxed - discrete)


class Trainer:
    """Trains ``model`` with ``optimizer`` on mini-batches drawn epoch by epoch from seeded
    permutations. One step = ``accumulate`` micro-batches of ``batch_size`` (each micro-batch's
    loss gradient scaled by 1/accumulate), then one optimizer step. ``lr_schedule(step)`` (e.g.
    ``functools.partial(pylgn.optim.scheduled_lr, 0.01, total=..., kind="cosine")``) sets the
    optimizer's learning rate before each step; it depends on the step only, so resumes are exact.

    Everything a bit-identical resume needs (RNG state, current permutation and position, step,
    history) is in ``state()``; pass it to ``pylgn.save(..., trainer_state=...)`` and back through
    ``load_state``.

    Data parallel: with ``comm`` (a ``pylgn.distributed`` communicator of ``size`` ranks, one
    Trainer per rank) every rank draws the same permutations, takes its contiguous shard of each
    global micro-batch of ``batch_size`` (``comm.shard``), scales its loss gradient by shard /
    (batch_size * accumulate) and the gradients are all-reduced (summed) once per step, so each
    rank applies the single-process update of the global batch; the data order depends on the
    step, not on the number of ranks, and resumes may change it. Rank 0's parameters, moments and
    seed are broadcast at construction; losses and evaluation counts are reduced, rank 0 alone
    writes files and shows progress, and checkpoints first check that the ranks' parameters hash
    the same."""

    def __init__(self, model, optimizer, batch_size=100, accumulate=1, seed=0,
                 eval_batch_size=1000, lr_schedule=None, comm=None):
        if optimizer.model is not model:
            raise ValueError("optimizer: belongs to a different model")
        self.model, self.optimizer = model, optimizer
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.accumulate = check_int("accumulate", accumulate, 1)
        self.seed = check_int("seed", seed, 0)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, 1)
        if lr_schedule is not None and not callable(lr_schedule):
            raise TypeError("lr_schedule: expected a callable step -> learning rate, or None")
        self.lr_schedule = lr_schedule
        self.rng = np.random.default_rng(self.seed)
        self.step, self.epoch, self.position, self.seconds = 0, 0, 0, 0.0
        self.permutation = None
        self.best = None
        self.history = {k: [] for k in HISTORY_KEYS}
        self.comm = _check_comm(comm)
        if self.comm.size > 1:
            if self.batch_size < self.comm.size:
                raise ValueError(f"batch_size: {self.batch_size} is below the {self.comm.size} "
                                 f"ranks (each rank needs a sample of every micro-batch)")
            self.comm.check_identical(_structure(model), "model (layers and wiring)")
            self.seed = self.comm.broadcast_int(self.seed)
            self.rng = np.random.default_rng(self.seed)
            for buf in (model.params, optimizer.m, optimizer.v):
                self.comm.broadcast(buf)

    # state --------------------------------------------------------------------------------------

    def state(self):
        """JSON-able counters plus the permutation array: what checkpoints store."""
        state = dict(batch_size=self.batch_size, accumulate=self.accumulate, seed=self.seed,
                     step=self.step, epoch=self.epoch, position=self.position,
                     seconds=self.seconds, best=self.best, rng=self.rng.bit_generator.state,
                     history=self.history)
        if self.permutation is not None:
            state["permutation"] = self.permutation
        return state

    def load_state(self, state):
        """Restore from ``state()`` (e.g. ``pylgn.load(path).trainer_state``). Every field is
        checked first (ValueError naming it); on an error the trainer is unchanged."""
        if not isinstance(state, dict):
            raise TypeError(f"trainer_state: expected a dict, got {type(state).__name__}")
        fields = _checked_state(state)
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state["rng"]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"trainer_state: 'rng' is missing or invalid ({e!r})") from None
        self.rng = rng
        (self.step, self.epoch, self.position, self.seconds, self.best, self.history,
         self.permutation) = fields
        if self.comm.size > 1:
            self.comm.check_identical(to_json(self.state()).encode(), "trainer_state")
        return self

    # data ---------------------------------------------------------------------------------------

    def _next_indices(self, n):
        """Next ``batch_size`` indices of the current epoch permutation (a fresh one when the
        rest of the epoch is shorter than a batch)."""
        if self.permutation is not None and len(self.permutation) != n:
            raise ValueError(f"x: {n} samples, but the resumed trainer state was for "
                             f"{len(self.permutation)}")
        if self.permutation is None or self.position + self.batch_size > n:
            self.permutation = self.rng.permutation(n)
            self.position = 0
            self.epoch += 1
        idx = self.permutation[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return idx

    def _local_batch(self, x, y, idx, transform):
        """This rank's (xb, yb) of the global micro-batch ``idx``. ``transform`` sees the whole
        global batch on every rank, so its draws from the shared RNG (and the RNG state after
        them) are those of a single process."""
        if self.comm.size == 1:
            xb, yb = x[idx], y[idx]
            return (xb if transform is None else transform(xb, self.rng)), yb
        part = self.comm.shard(len(idx))
        if transform is None:
            return x[idx[part]], y[idx[part]]
        return transform(x[idx], self.rng)[part], y[idx[part]]

    def _all_reduce(self, loss_sum, correct):
        """Sum the gradients and the (loss, correct) of every rank's shards, in place."""
        if self.comm.size == 1:
            return loss_sum, correct
        self.comm.allreduce_sum(self.model.grads)
        totals = self.comm.allreduce_sum(np.array([loss_sum, correct], dtype=np.float64))
        return float(totals[0]), int(round(totals[1]))

    def _check_data(self, x, y, transform, eval_data):
        n = len(x) if hasattr(x, "__len__") and getattr(x, "ndim", 1) != 0 else 0  # 0-d: no len
        if transform is None:
            x = check_batch("x", x, self.model.in_dim)
        else:
            check_batch("transform(x)", transform(x[:2], np.random.default_rng(0)),
                        self.model.in_dim)
        y = check_labels("y", np.asarray(y), n, self.model.out_dim)
        if self.batch_size > n:
            raise ValueError(f"batch_size: {self.batch_size} exceeds the {n} training samples")
        if eval_data is not None:
            if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2:
                raise TypeError("eval_data: expected a tuple (x, y)")
            ex = check_batch("eval_data[0]", eval_data[0], self.model.in_dim)
            ey = check_labels("eval_data[1]", np.asarray(eval_data[1]), len(ex),
                              self.model.out_dim)
            eval_data = (ex, ey)
        return x, y, eval_data

    # one step -----------------------------------------------------------------------------------

    def train_step(self, x, y, transform=None):
        """One optimizer step over ``accumulate`` micro-batches; returns (mean loss, correct,
        samples, last micro-batch (x, y))."""
        model = self.model
        self.optimizer.zero_grad()
        if self.lr_schedule is not None:
            self.optimizer.lr = float(self.lr_schedule(self.step))
        loss_sum, correct = 0.0, 0
        try:
            for micro in range(self.accumulate):
                idx = self._next_indices(len(x))
                xb, yb = self._local_batch(x, y, idx, transform)
                model.set_noise(self.step, micro)          # Gumbel layers: keyed by the step
                share = len(yb) / self.batch_size          # this rank's part of the batch mean
                loss, logits = model.loss_and_grad(xb, yb, scale=share / self.accumulate)
                loss_sum += loss * share
                correct += int((logits.argmax(axis=1) == yb).sum())
        finally:
            model.set_noise(None)
        loss_sum, correct = self._all_reduce(loss_sum, correct)
        if not np.isfinite(loss_sum):
            raise FloatingPointError(f"step {self.step + 1}: the loss is {loss_sum}; training "
                                     f"stopped before the update (checkpoints untouched)")
        self.optimizer.step()
        self.step += 1
        return loss_sum / self.accumulate, correct, self.accumulate * self.batch_size, (xb, yb)

    def evaluate(self, x, y):
        """``evaluate`` of the model; with several ranks each scores its shard of (x, y) and
        the correct counts are summed (the same fractions as one process)."""
        if self.comm.size == 1:
            return evaluate(self.model, x, y, self.eval_batch_size)
        part = self.comm.shard(len(x))
        n = part.stop - part.start
        s = evaluate(self.model, x[part], y[part], self.eval_batch_size) if n else \
            dict(relaxed=0.0, discrete=0.0)
        counts = np.array([round(s["relaxed"] * n), round(s["discrete"] * n)], dtype=np.float64)
        relaxed, discrete = (self.comm.allreduce_sum(counts) / len(x)).tolist()
        return dict(relaxed=relaxed, discrete=discrete, gap=relaxed - discrete)

    # the loop -----------------------------------------------------------------------------------

    def fit(self, x, y, steps, eval_data=None, eval_every=1000, checkpoint_path=None,
            checkpoint_every=1000, best_path=None, history_path=None, progress=True,
            diagnostics_every=0, transform=None, meta=None):
        """Run ``steps`` more optimizer steps and return the history (dict of lists).

        Every ``eval_every`` steps (counted globally, and at the last step) the history gets the
        mean training loss/accuracy since the previous entry and, with ``eval_data`` = (x, y),
        the relaxed and discretized test accuracy and their gap; ``history_path`` (JSON) is
        rewritten then. ``checkpoint_path`` is saved every ``checkpoint_every`` steps and at the
        end; ``best_path`` whenever the discretized test accuracy improves. ``transform(xb, rng)``
        maps a raw batch to model inputs (encoding, augmentation) using the trainer's RNG.
        ``diagnostics_every`` > 0 stores ``pylgn.diagnostics.collect(model, xb, yb)`` of the
        current batch in history["diagnostics"] every that many steps."""
        steps = check_int("steps", steps, 1)
        eval_every = check_int("eval_every", eval_every, 1)
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, 1)
        diagnostics_every = check_int("diagnostics_every", diagnostics_every, 0)
        if diagnostics_every:
            from .diagnostics import collect
        x, y, eval_data = self._check_data(x, y, transform, eval_data)
        y = np.asarray(y, dtype=np.int64)
        self.model.train()
        self._meta = dict(meta or {})
        self._paths = dict(checkpoint=checkpoint_path, best=best_path, history=history_path)
        end, window = self.step + steps, [0.0, 0, 0, 0]       # loss sum, correct, samples, steps
        bar = _progress_bar(steps, progress and self.comm.rank == 0)
        t0, base = time.perf_counter(), self.seconds
        try:
            while self.step < end:
                loss, correct, count, batch = self.train_step(x, y, transform)
                window = [window[0] + loss, window[1] + correct, window[2] + count, window[3] + 1]
                bar.set_postfix(loss=f"{window[0] / window[3]:.3f}",
                                acc=f"{window[1] / window[2]:.3f}", refresh=False)
                bar.update(1)
                self.seconds = base + time.perf_counter() - t0
                if diagnostics_every and self.step % diagnostics_every == 0:
                    self._diagnostics(collect, *batch)
                if self.step % eval_every == 0 or self.step == end:
                    self._log(window, eval_data, bar)
                    window = [0.0, 0, 0, 0]
                if checkpoint_path and (self.step % checkpoint_every == 0 or self.step == end):
                    self.save(checkpoint_path)
        finally:
            bar.close()
        return self.history

    def _log(self, window, eval_data, bar):
        h = self.history
        scores = self.evaluate(*eval_data) if eval_data is not None else None
        h["step"].append(self.step)
        h["train_loss"].append(window[0] / window[3])
        h["train_accuracy"].append(window[1] / window[2])
        h["test_accuracy_relaxed"].append(scores and scores["relaxed"])
        h["test_accuracy_discrete"].append(scores and scores["discrete"])
        h["discretization_gap"].append(scores and scores["gap"])
        h["seconds"].append(self.seconds)
        line = (f"step {self.step}: loss {h['train_loss'][-1]:.4f}, "
                f"train acc {h['train_accuracy'][-1]:.4f}")
        if scores is not None:
            line += (f", test acc relaxed {scores['relaxed']:.4f} discrete {scores['discrete']:.4f}"
                     f" (gap {scores['gap']:+.4f})")
            if self.best is None or scores["discrete"] > self.best:
                self.best = scores["discrete"]
                if self._paths["best"]:
                    self.save(self._paths["best"])
        if not bar.disable:
            bar.write(line, file=sys.stderr)
        if self._paths["history"] and self.comm.rank == 0:
            self.write_history(self._paths["history"])

    def _diagnostics(self, collect, xb, yb):
        try:
            result = collect(self.model, xb, yb)
        finally:
            self.model.train()
        self.history.setdefault("diagnostics", []).append(dict(step=self.step, **result))

    def save(self, path):
        """Checkpoint the model, optimizer and trainer state (atomic). With several ranks:
        collective; the ranks' parameter hashes are compared first (DistributedError when they
        differ, nothing written), rank 0 writes, and every rank returns once the file is in place
        (or raises when rank 0 could not write it)."""
        from .checkpoint import save
        comm, error = self.comm, None
        if comm.size > 1:
            comm.check_identical(self.model.params, f"parameters at step {self.step}")
        if comm.rank == 0:
            try:
                save(path, self.model, self.optimizer, step=self.step, trainer_state=self.state(),
                     **getattr(self, "_meta", {}))
            except Exception as e:                  # the other ranks learn of it below
                error = e
        if comm.size > 1 and comm.broadcast_int(error is not None) and error is None:
            from .distributed import DistributedError
            raise DistributedError(f"{path}: rank 0 could not write the checkpoint (its error "
                                   f"is on its stderr)")
        if error is not None:
            raise error

    def write_history(self, path):
        """The history as JSON, written atomically."""
        text = to_json(self.history)
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write(text)


def _checked_state(state):
    """(step, epoch, position, seconds, best, history, permutation) of a trainer state, each
    checked: counters ints >= 0, seconds finite >= 0, best None or in [0, 1], history a dict of
    equally long lists, permutation a permutation of 0..n-1 with position <= n."""
    def count(key):
        v = state.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"trainer_state: {key!r} must be an int >= 0, got {v!r}")
        return int(v)
    step, epoch, position = count("step"), count("epoch"), count("position")
    seconds = state.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not 0 <= seconds < float("inf"):
        raise ValueError(f"trainer_state: 'seconds' must be a finite number >= 0, got "
                         f"{seconds!r}")
    best = state.get("best")
    if best is not None and (isinstance(best, bool) or not isinstance(best, (int, float))
                             or not 0.0 <= best <= 1.0):
        raise ValueError(f"trainer_state: 'best' must be None or an accuracy in [0, 1], got "
                         f"{best!r}")
    history = state.get("history")
    if not isinstance(history, dict) or not all(isinstance(history.get(k), list)
                                                for k in HISTORY_KEYS) \
            or len({len(history[k]) for k in HISTORY_KEYS}) != 1:
        raise ValueError(f"trainer_state: 'history' must map {HISTORY_KEYS} to lists of one "
                         f"length")
    perm = state.get("permutation")
    if perm is not None:
        perm = np.asarray(perm)
        if perm.ndim != 1 or perm.dtype.kind not in "iu" or not np.array_equal(
                np.sort(perm), np.arange(len(perm))):
            raise ValueError(f"trainer_state: 'permutation' must be a permutation of 0..n-1, "
                             f"got {perm.dtype} of shape {perm.shape}")
        if position > len(perm):
            raise ValueError(f"trainer_state: 'position' {position} is past the permutation's "
                             f"{len(perm)} samples")
        perm = perm.astype(np.int64)
    return step, epoch, position, float(seconds), best, history, perm


def _structure(model):
    """Bytes of the model's layer configs and wiring: what the ranks must share (the
    parameters are broadcast, the wiring is not)."""
    from .checkpoint import WIRING
    parts = [to_json(model.config()).encode()]
    for layer in model.layers:
        parts += [model.backend.to_host(getattr(layer, name)).tobytes() for name in WIRING
                  if getattr(layer, name, None) is not None]
    return b"".join(parts)


def _check_comm(comm):
    """The trainer's communicator: a single-process one when ``comm`` is None."""
    if comm is None:
        from .distributed import Communicator
        return Communicator()
    needed = ("rank", "size", "shard", "allreduce_sum", "broadcast", "broadcast_int",
              "check_identical")
    if not all(hasattr(comm, a) for a in needed):
        raise TypeError(f"comm: expected a pylgn.distributed communicator, got "
                        f"{type(comm).__name__}")
    return comm


def _progress_bar(total, enabled):
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, unit="step", dynamic_ncols=True, file=sys.stderr)


def read_history(path):
    with open(path) as f:
        return json.loads(f.read())
