"""Layers. Each works on activations laid out (features, batch) and keeps what backward needs.

A layer is declared first and built by ``Sequential`` (which owns the seed, the device and the
flat parameter buffers); ``weights`` and ``grad`` are views into those buffers.
"""
import numpy as np

from . import choice as choices, gates, gumbel
from ._checks import check_choice, check_float, check_int, check_rows, check_temperature
from .estimators import ESTIMATORS, rho, rho_grad
from .init import INITS, init_iwp, init_op, target_table
from .wiring import CONNECTIONS, make_connections, reverse_index

PARAMS = ("iwp", "op")
#: the wiring of a logic layer: fixed (pylgn.wiring) or learned among candidates (pylgn.choice)
LAYER_CONNECTIONS = CONNECTIONS + ("learned",)


class LogicLayer:
    """A layer of ``out_dim`` learned logic gates of ``arity`` inputs each, with fixed wiring.

    IWP: 2**arity parameters W per gate, table omega = rho(W).
    OP (arity 2): 16 logits per gate, table omega = softmax(W) @ OP_TABLES.
    Relaxed output: the multilinear extension of omega at the inputs; discretized output: the
    truth table [omega >= 0.5] (IWP) or the argmax gate (OP) applied to the inputs as bits.

    ``connections="learned"``: each gate input chooses its source among ``candidates`` rows (an
    int >= 2, or "all" inputs, as DWN's learnable mapping of a first layer), relaxed by
    ``choice`` ("ste": straight-through argmax; "softmax": a mixture at temperature
    ``choice_tau``); see pylgn.choice. In eval and in circuits it is the argmax wiring.
    """

    def __init__(self, in_dim, out_dim, arity=2, param="iwp", estimator="sin", init="residual",
                 connections="random", grad_factor=1.0, sigma=None, shift=None, init_target="a",
                 gumbel=None, candidates=16, choice="ste", choice_tau=1.0):
        self.in_dim = check_int("in_dim", in_dim, 1)
        self.out_dim = check_int("out_dim", out_dim, 1)
        self.arity = check_int("arity", arity, 1, 6)
        self.param = check_choice("param", param, PARAMS)
        if param == "op" and arity != 2:
            raise ValueError(f"arity: param='op' supports arity 2 only, got {arity}")
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        self.init = check_choice("init", init, INITS)
        self.connections_kind = check_choice("connections", connections, LAYER_CONNECTIONS)
        self.learned = connections == "learned"
        if candidates == "all":
            candidates = self.in_dim
        self.candidates_count = (check_int("candidates", candidates, 2, self.in_dim)
                                 if self.learned else None)
        self.choice = check_choice("choice", choice, choices.CHOICES)
        self.choice_tau = check_temperature("choice_tau", choice_tau)
        self.grad_factor = check_float("grad_factor", grad_factor)
        self.sigma = None if sigma is None else check_float("sigma", sigma, 0.0)
        self.shift = None if shift is None else check_float("shift", shift)
        target_table(init_target, arity)                      # validates init_target
        self.init_target = init_target
        self.gumbel = None if not gumbel else check_temperature("gumbel", gumbel)
        self.noise_key = None        # (seed, layer, step, micro) during a Gumbel training step
        self._sampled = None
        self._conn = self.weights = self.grad = None
        self.candidates = self.theta = self.theta_grad = None
        self.backend = None
        self._saved = None

    @property
    def n_params_per_gate(self):
        return 16 if self.param == "op" else 2 ** self.arity

    @property
    def n_choice_params(self):
        """Choice logits: arity * out_dim slots x candidates (0 with fixed wiring)."""
        return self.arity * self.out_dim * self.candidates_count if self.learned else 0

    @property
    def n_params(self):
        return self.out_dim * self.n_params_per_gate + self.n_choice_params

    @property
    def param_shape(self):
        """Shape of the parameter block ``bind`` takes: (out_dim, params per gate), or flat
        (n_params,) with learned wiring (the gate weights, then the choice logits)."""
        return (self.n_params,) if self.learned else (self.out_dim, self.n_params_per_gate)

    @property
    def connections(self):
        """(arity, out_dim) int array: which inputs each gate reads (with learned wiring, the
        argmax of its choice logits now)."""
        if not self.learned or self.candidates is None:
            return self._conn
        chosen = choices.argmax_rows(self.candidates, self.theta, self.backend.xp)
        return self.backend.xp.ascontiguousarray(chosen.reshape(self.out_dim, self.arity).T)

    @property
    def wiring(self):
        """What ``bind`` takes back (checkpoints store it): the candidates (arity * out_dim, C)
        with learned wiring, else the connections."""
        return self.candidates if self.learned else self._conn

    def config(self):
        """Constructor arguments (what a checkpoint stores to rebuild the layer)."""
        return dict(type="LogicLayer", in_dim=self.in_dim, out_dim=self.out_dim, arity=self.arity,
                    param=self.param, estimator=self.estimator, init=self.init,
                    connections=self.connections_kind, grad_factor=self.grad_factor,
                    sigma=self.sigma, shift=self.shift, init_target=self.init_target,
                    gumbel=self.gumbel, **(dict(candidates=self.candidates_count,
                                                choice=self.choice, choice_tau=self.choice_tau)
                                           if self.learned else {}))

    def initial_weights(self, rng):
        """Fresh parameters (out_dim, params per gate) float64 from ``rng``."""
        if self.param == "op":
            return init_op(self.init, self.arity, self.out_dim, self.sigma, self.shift,
                           self.init_target, rng)
        return init_iwp(self.init, self.arity, self.out_dim, self.estimator, self.sigma,
                        self.shift, self.init_target, rng)

    def bind(self, backend, weights, grad, connections):
        """Attach the parameter/gradient blocks (``param_shape``) and the wiring: connections
        (arity, out_dim), or with learned wiring the candidates (arity * out_dim, C)."""
        self.backend = backend
        shape = (self.arity, self.out_dim) if not self.learned else \
            (self.arity * self.out_dim, self.candidates_count)
        conn = np.asarray(connections)                   # range-checked before the int32 cast
        if conn.dtype.kind not in "iu" or conn.shape != shape \
                or conn.min() < 0 or conn.max() >= self.in_dim:
            raise ValueError(f"{'candidates' if self.learned else 'connections'}: expected ints "
                             f"in [0, {self.in_dim}) of shape {shape}")
        conn = np.ascontiguousarray(conn, dtype=np.int32)
        self.block, self.block_grad = weights, grad
        self._op_tables = backend.asarray(gates.OP_TABLES, dtype=weights.dtype)
        if self.learned:
            self._bind_choice(backend, weights, grad, conn)
            return
        self.weights, self.grad = weights, grad
        rev_ptr, rev_idx = reverse_index(conn, self.in_dim)
        self._conn = backend.asarray(conn)
        self._rev = backend.asarray(rev_ptr), backend.asarray(rev_idx)

    def _bind_choice(self, backend, weights, grad, cand):
        """Learned wiring: split the flat blocks into gate weights (out_dim, params per gate) and
        choice logits (slots, C); the gate kernels read the slot rows through identity wiring."""
        G, n, P = self.out_dim, self.arity, self.n_params_per_gate
        self.weights, self.grad = weights[:G * P].reshape(G, P), grad[:G * P].reshape(G, P)
        self.theta = weights[G * P:].reshape(G * n, -1)
        self.theta_grad = grad[G * P:].reshape(G * n, -1)
        self.candidates = backend.asarray(cand)
        ident = np.arange(G * n, dtype=np.int32).reshape(G, n).T.copy()     # slot g*n + k
        self._ident = backend.asarray(ident)
        self._rev = tuple(backend.asarray(a) for a in reverse_index(ident, G * n))
        self._cand_rev = None                       # built on the first backward that needs dx

    def build(self, rng, backend, weights, grad):
        """Draw wiring and initial parameters from ``rng`` into the given views."""
        if not self.learned:
            conn = make_connections(self.connections_kind, self.in_dim, self.out_dim, self.arity,
                                    rng)
        init = self.initial_weights(rng)
        if self.learned:
            conn = choices.draw_candidates(choices.first_wiring(self.in_dim, self.out_dim,
                                                                self.arity, rng),
                                           self.in_dim, self.candidates_count, rng)
            init = np.concatenate([init.ravel(),
                                   choices.initial_logits(*conn.shape, rng).ravel()])
        weights[...] = backend.asarray(init.reshape(weights.shape), dtype=weights.dtype)
        self.bind(backend, weights, grad, conn)

    # relaxed table and its Jacobian, side by side ------------------------------------------

    def table(self):
        """Relaxed truth table omega (out_dim, 2**arity); with ``gumbel`` and a ``noise_key``
        (set by Sequential.set_noise for a training step) the 0/1 sampled table (pylgn.gumbel)."""
        xp, w = self.backend.xp, self.weights
        key = self.noise_key if self.gumbel else None
        self._sampled = None
        if self.param == "op":
            logits = w if key is None else gumbel.op_noisy_logits(w, key, self.gumbel, xp)
            self._softmax = xp.empty_like(w)
            omega = xp.empty((self.out_dim, 4), dtype=w.dtype)
            self.backend.kernels.op_table(logits, self._op_tables, self._softmax, omega)
            if key is None:
                return omega
            self._sampled = True
            return self._op_tables[xp.argmax(logits, axis=1)]
        omega = rho(self.estimator, w, xp)
        if key is None:
            return omega
        hard, soft = gumbel.iwp_sample(omega, key, self.gumbel, xp)
        self._sampled = (omega, soft)
        return hard

    def table_backward(self, dtable):
        """dL/dW from dL/domega at the weights of the last table() call.
        IWP: dtable * rho'(W). OP: p * (dp - <p, dp>), dp = dtable @ T^T, p = softmax(W).
        After a Gumbel sample: the straight-through gradients of pylgn.gumbel."""
        xp, w = self.backend.xp, self.weights
        if self.param == "op":
            dw = xp.empty_like(w)
            self.backend.kernels.op_table_backward(self._softmax, self._op_tables, dtable, dw)
            return dw / self.gumbel if self._sampled else dw
        omega = rho(self.estimator, w, xp)
        drho = rho_grad(self.estimator, w, omega, xp)
        if self._sampled is None:
            return dtable * drho
        omega, soft = self._sampled
        return gumbel.iwp_backward(dtable, omega, soft, drho, self.gumbel, xp)

    def discrete_table(self):
        """0/1 truth table (out_dim, 2**arity) as uint8: argmax gate (OP) or [omega >= 0.5] (IWP)."""
        xp = self.backend.xp
        if self.param == "op":
            return self._op_tables[xp.argmax(self.weights, axis=1)].astype(xp.uint8)
        return (rho(self.estimator, self.weights, xp) >= 0.5).astype(xp.uint8)

    # forward and backward ------------------------------------------------------------------

    def forward(self, x, train=True):
        """(in_dim, batch) -> (out_dim, batch); relaxed when ``train``, discretized otherwise."""
        xp, k = self.backend.xp, self.backend.kernels
        check_rows("x", x, self.in_dim)
        y = xp.empty((self.out_dim, x.shape[1]), dtype=x.dtype)
        if train and self.learned:
            table = self.step_state(x.dtype)
            route = xp.ascontiguousarray(
                choices.route(self.choice, self.theta, self.choice_tau, xp), dtype=x.dtype)
            xs = xp.empty((self.theta.shape[0], x.shape[1]), dtype=x.dtype)
            k.choice_forward(x, self.candidates, route, xs)
            k.gate_forward(xs, self._ident, table, y)
            self._saved = (x, table, xs, route)
        elif train:
            table = self.step_state(x.dtype)
            k.gate_forward(x, self._conn, table, y)
            self._saved = (x, table)
        else:
            table = xp.ascontiguousarray(self.discrete_table(), dtype=x.dtype)
            k.gate_forward_discrete(x, self.connections, table, y)
            self._saved = None
        return y

    def backward(self, dy, need_dx=True):
        """Accumulates dL/dW into ``grad``; returns dL/dx (in_dim, batch) scaled by grad_factor."""
        if self._saved is None:
            raise RuntimeError("backward: call forward in train mode first")
        xp, k = self.backend.xp, self.backend.kernels
        x, table = self._saved[:2]
        check_rows("dy", dy, self.out_dim, x.shape[1], x.dtype)
        if self.learned:
            return self._backward_choice(dy, need_dx)
        dtable = xp.empty(table.shape, dtype=x.dtype)
        k.gate_backward_table(x, self._conn, dy, dtable)
        self.grad += self.table_backward(dtable)
        if not need_dx:
            return None
        dx = xp.empty_like(x)
        k.gate_backward_inputs(x, self._conn, *self._rev, table, dy, self.grad_factor, dx)
        return dx

    def _backward_choice(self, dy, need_dx):
        """Learned wiring: the gate gradients on the slot rows xs, the slot gradients
        gs = dL/dxs, then the choice logits' gradient and dL/dx through the route."""
        xp, k = self.backend.xp, self.backend.kernels
        x, table, xs, route = self._saved
        dtable = xp.empty(table.shape, dtype=x.dtype)
        k.gate_backward_table(xs, self._ident, dy, dtable)
        self.grad += self.table_backward(dtable)
        gs = xp.empty_like(xs)
        k.gate_backward_inputs(xs, self._ident, *self._rev, table, dy, 1.0, gs)
        corr = xp.empty(route.shape, dtype=x.dtype)
        k.choice_backward(x, self.candidates, gs, corr)
        self.theta_grad += choices.theta_grad(self.choice, corr, route, xs, gs, self.choice_tau, xp)
        if not need_dx:
            return None
        dx = xp.empty_like(x)
        k.choice_backward_inputs(gs, *self._route_index(route), self.grad_factor, dx)
        return dx

    def _route_index(self, route):
        """(rev_ptr, rev_idx, weights) of choice_backward_inputs. Straight-through on the CPU:
        the reverse index of this step's argmax wiring with weights 1 (one entry per slot, read
        in order, instead of C entries per slot at scattered places of the route); otherwise the
        fixed reverse index of every candidate, weighted by the route."""
        host = self.backend.to_host
        if self.choice == "ste" and self.backend.device == "cpu":
            chosen = choices.argmax_rows(self.candidates, self.theta, np)
            ones = np.ones((chosen.shape[0], 1), dtype=route.dtype)
            return (*reverse_index(chosen.reshape(1, -1), self.in_dim), ones)
        if self._cand_rev is None:
            rev = reverse_index(host(self.candidates).reshape(1, -1), self.in_dim)
            self._cand_rev = tuple(self.backend.asarray(a) for a in rev)
        return (*self._cand_rev, route)

    # the tiled training step (pylgn.tiling): same kernels, serial, on one tile of samples ------
    # A step computes the shared ``state`` once, then each thread runs whole tiles (x, y, dy, dx:
    # that tile's columns) and adds dL/domega into its own ``acc``; the accs are summed in a
    # fixed order and turned into dL/dW once by step_grad (table_backward is linear).

    def step_state(self, dtype):
        """Shared, read-only state of one step: the relaxed table omega (out_dim, 2**arity)."""
        return self.backend.xp.ascontiguousarray(self.table(), dtype=dtype)

    def step_acc_shape(self):
        """Shape of a thread's dL/domega accumulator."""
        return (self.out_dim, 2 ** self.arity)

    def forward_tile(self, table, x, y):
        """y = relaxed gates of x on one tile (serial kernel)."""
        self.backend.kernels.gate_forward_range(x, self.connections, table, y, 0, self.out_dim)

    def backward_tile(self, table, x, dy, dtable, dx):
        """dtable += dL/domega of the tile; dx (unless None) = dL/dx of the tile."""
        k = self.backend.kernels
        k.gate_backward_table_range(x, self.connections, dy, dtable, 0, self.out_dim)
        if dx is not None:
            k.gate_backward_inputs_range(x, self.connections, *self._rev, table, dy,
                                         self.grad_factor, dx, 0, self.in_dim)

    def step_grad(self, table, dtable):
        """grad += dL/dW from the step's summed dL/domega (at step_state's table() call)."""
        self.grad += self.table_backward(dtable)

    def __repr__(self):
        return (f"LogicLayer({self.in_dim}, {self.out_dim}, arity={self.arity}, "
                f"param={self.param!r}, init={self.init!r})")


class GroupSum:
    """logits[c, s] = sum of the c-th contiguous group of out_dim/k inputs, divided by tau."""

    n_params = 0

    def __init__(self, k, tau=1.0):
        self.k = check_int("k", k, 1)
        self.tau = check_temperature("tau", tau)
        self.in_dim = self.backend = None

    def config(self):
        return dict(type="GroupSum", k=self.k, tau=self.tau)

    def forward(self, x, train=True):
        """(in_dim, batch) -> (k, batch): logits[c] = (sum of rows c*m .. c*m+m-1) / tau."""
        check_rows("x", x, self.in_dim)
        out = self.backend.xp.empty((self.k, x.shape[1]), dtype=x.dtype)
        self.backend.kernels.group_sum(x, self.tau, out)
        return out

    def backward(self, dlogits, need_dx=True):
        """dx[c*m + j] = dlogits[c] / tau."""
        check_rows("dlogits", dlogits, self.k)
        dx = self.backend.xp.empty((self.in_dim, dlogits.shape[1]), dtype=dlogits.dtype)
        self.backend.kernels.group_sum_backward(dlogits, self.tau, dx)
        return dx

    # the tiled training step (see LogicLayer): no parameters, no state

    def step_state(self, dtype):
        return None

    def step_acc_shape(self):
        return None

    def forward_tile(self, state, x, y):
        self.backend.kernels.group_sum_range(x, self.tau, y, 0, self.k)

    def backward_tile(self, state, x, dy, acc, dx):
        self.backend.kernels.group_sum_backward_range(dy, self.tau, dx, 0, self.in_dim)

    def step_grad(self, state, acc):
        pass

    def __repr__(self):
        return f"GroupSum(k={self.k}, tau={self.tau})"

