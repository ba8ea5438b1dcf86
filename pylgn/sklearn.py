"""scikit-learn estimators: logic gate networks on tabular data.

    from pylgn.sklearn import LogicGateClassifier
    clf = LogicGateClassifier(random_state=0).fit(X_train, y_train)
    clf.predict(X_test); clf.predict_proba(X_test); clf.score(X_test, y_test)
    circuit = clf.to_circuit()           # raw-feature comparisons + discrete gates
    circuit.predict(X_test)              # == clf.predict(X_test)

Encoding. ``QuantileThermometer`` learns, per column j, the quantiles of the training values at
the thermometer levels (i+1)/(n+1), i = 0..n-1 (``pylgn.data.quantile_thresholds``), keeps the
distinct ones below the column's maximum (a threshold at the maximum would give a bit that is 0
on every training sample), and emits one bit per kept threshold t:

    bit(x) = [x_j > t]

so raw columns of any scale and distribution use their bits evenly. A constant column keeps one
threshold, at its value (its bit is 0 on the training data and 1 only for larger values later).
NaN is a ValueError unless ``missing="low"``: then NaN reads as below every threshold (all bits
0) and the quantiles ignore it.

Model. ``layers`` LogicLayers of the same width and a GroupSum over the classes, trained with
Adam on a cosine-decayed learning rate by ``pylgn.Trainer``. The width is ``width`` raised so
that the first layer reads every input bit (width * arity >= bits) and rounded up to a multiple
of the number of classes (GroupSum's groups are equal).

Predictions are those of the discretized network (``pylgn.Circuit``, what a DLGN deploys):
``predict`` is the class of the largest group count (the lowest class on ties) and
``predict_proba`` is ``softmax(counts / tau)``, the same logits the network was trained on, so
its argmax is always ``predict``.

This module imports scikit-learn; ``import pylgn`` does not import it.
"""
import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted

try:
    from sklearn.utils.validation import validate_data
except ImportError:                                          # pragma: no cover
    raise ImportError("pylgn.sklearn needs scikit-learn >= 1.6 (sklearn.utils.validation."
                      "validate_data); upgrade it with pip install -U scikit-learn") from None

from ._checks import check_choice, check_float, check_int
from .data import quantile_encode, quantile_thresholds

MISSING = ("error", "low")

__all__ = ["LogicGateClassifier", "QuantileThermometer", "ThresholdCircuit"]


# encoding --------------------------------------------------------------------------------------

class QuantileThermometer(TransformerMixin, BaseEstimator):
    """Per-column quantile thermometer encoding of raw numeric data (see the module doc).

    Parameters: ``thresholds`` (int >= 1, the most bits per column), ``missing`` ("error": NaN
    raises ValueError; "low": NaN encodes as all-zero bits). Fitted: ``features_`` (which column
    each output bit reads), ``thresholds_`` (bit k = [X[:, features_[k]] > thresholds_[k]]),
    ``n_features_in_``, ``feature_names_in_`` (for DataFrames with string column names)."""

    def __init__(self, thresholds=8, missing="error"):
        self.thresholds = thresholds
        self.missing = missing

    def fit(self, X, y=None):
        n = check_int("thresholds", self.thresholds, 1, 255)
        X = self._validate(X, reset=True)
        self.features_, self.thresholds_ = quantile_thresholds(X, n)
        return self

    def transform(self, X):
        """Bits (samples, len(thresholds_)) uint8."""
        check_is_fitted(self)
        return quantile_encode(self._validate(X, reset=False), self.features_, self.thresholds_)

    def get_feature_names_out(self, input_features=None):
        """Names "<column> > <threshold>" of the output bits."""
        check_is_fitted(self)
        names = getattr(self, "feature_names_in_", None)
        if input_features is not None:
            if len(input_features) != self.n_features_in_:
                raise ValueError(f"input_features: expected {self.n_features_in_} names, got "
                                 f"{len(input_features)}")
            names = input_features
        if names is None:
            names = [f"x{j}" for j in range(self.n_features_in_)]
        return np.asarray([f"{names[j]} > {t:.6g}" for j, t in
                           zip(self.features_, self.thresholds_)], dtype=object)

    def _validate(self, X, reset):
        check_choice("missing", self.missing, MISSING)
        return validate_data(self, X, reset=reset, dtype=np.float64,
                             ensure_all_finite="allow-nan" if self.missing == "low" else True)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.missing == "low"
        tags.transformer_tags.preserves_dtype = []          # the output is uint8 bits
        return tags


# the deployable circuit ------------------------------------------------------------------------

class ThresholdCircuit:
    """A fitted classifier as comparisons of raw features plus discrete logic gates.

    ``features`` (bits,) and ``thresholds`` (bits,): input bit k = [X[:, features[k]] >
    thresholds[k]]; ``circuit``: the ``pylgn.Circuit`` of the network on those bits; ``classes``:
    the label of each of the circuit's groups. ``predict(X)`` = classes[circuit.predict(bits)].
    ``missing``: as the classifier's ("error": NaN is a ValueError, as in its ``predict``;
    "low": NaN reads as below every threshold). Holds numpy arrays only (picklable)."""

    def __init__(self, features, thresholds, circuit, classes, n_features, missing="error"):
        self.features = np.asarray(features, dtype=np.int64)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.circuit, self.classes = circuit, np.asarray(classes)
        self.n_features = int(n_features)
        self.missing = check_choice("missing", missing, MISSING)
        if self.features.shape != self.thresholds.shape or circuit.in_dim != self.features.size:
            raise ValueError(f"thresholds: expected one feature index and threshold per circuit "
                             f"input ({circuit.in_dim}), got {self.features.size} and "
                             f"{self.thresholds.size}")
        if circuit.k != len(self.classes):
            raise ValueError(f"classes: expected {circuit.k} labels (the circuit's groups), got "
                             f"{len(self.classes)}")

    @property
    def num_gates(self):
        return self.circuit.num_gates

    def encode(self, X):
        """Raw samples (n, n_features) -> input bits (n, circuit.in_dim) uint8 (with
        ``missing="low"`` a NaN reads as below every threshold, all its bits 0; else it is a
        ValueError)."""
        X = check_array(X, dtype=np.float64, input_name="X",
                        ensure_all_finite="allow-nan" if self.missing == "low" else True)
        if X.shape[1] != self.n_features:
            raise ValueError(f"X: expected {self.n_features} features, got {X.shape[1]}")
        return quantile_encode(X, self.features, self.thresholds)

    def scores(self, X):
        """(n, classes) int32 ones per group of the last layer (logits = scores / tau)."""
        return self.circuit.scores(self.encode(X))

    def predict(self, X):
        """Labels: classes[argmax scores], the lowest class index winning ties."""
        return self.classes[np.argmax(self.scores(X), axis=1)]

    def simplify(self):
        """The same function with ``circuit.simplify()`` (fewer gates)."""
        return ThresholdCircuit(self.features, self.thresholds, self.circuit.simplify(),
                                self.classes, self.n_features, self.missing)

    @property
    def encoder(self):
        """The comparisons as a ``pylgn.encoders.QuantileEncoder`` (columns x0, x1, ...; the
        class labels as names): what the C export compiles in."""
        from .encoders import QuantileEncoder
        return QuantileEncoder(self.features, self.thresholds,
                               [f"x{j}" for j in range(self.n_features)],
                               class_names=[str(c) for c in self.classes], missing=self.missing)

    def to_c(self, main=False):
        """C of the whole classifier: ``pylgn_predict(x, n, cls)`` on raw float rows (cls[s] =
        the index into ``classes``), the comparisons, circuit, popcount and argmax compiled in;
        ``main`` adds a main() printing one label per line (``pylgn.export``). Values are read
        as float32, the cut points rounded to float32."""
        return self.circuit.to_c(encoder=self.encoder, main=main)

    def __repr__(self):
        return (f"ThresholdCircuit({self.n_features} features -> {self.features.size} bits, "
                f"{self.num_gates} gates, {len(self.classes)} classes)")


# the classifier --------------------------------------------------------------------------------

class LogicGateClassifier(ClassifierMixin, BaseEstimator):
    """A differentiable logic gate network for tabular classification (see the module doc).

    Parameters
    ----------
    layers : int, logic layers (default 4).
    width : int, gates per layer before rounding (see the module doc; default 2000).
    arity : int, inputs per gate, 1..6 (default 2).
    param : "iwp" (input-wise, 2**arity parameters per gate) or "op" (16 gate logits, arity 2).
    connections : "random" or "unique" wiring (``pylgn.LogicLayer``).
    thresholds : int, the most thermometer bits per column (``QuantileThermometer``; default 8).
    missing : "error" (NaN is a ValueError) or "low" (NaN encodes as all bits 0).
    tau : float, GroupSum temperature: logits = (ones per class group) / tau; None (default):
        sqrt(gates per class group), so a class ahead by one standard deviation of a random
        group's count gets a logit about 1/2 higher (the value used is ``tau_``).
    lr : float, peak Adam learning rate, decayed to 0 over ``steps`` by a cosine.
    steps : int, optimizer steps per ``fit``.
    batch_size : int, samples per step (at most the number of training samples).
    device : "cpu" or "cuda".
    random_state : None, int or numpy RandomState: wiring, initial gates and batch order.
    warm_start : bool, ``fit`` continues training the fitted network (same classes and columns;
        the encoding stays that of the first fit; Adam's moments are kept, the learning-rate
        schedule restarts).
    verbose : bool, progress bar while training.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (DataFrame input with string column names),
    encoder_ (the fitted ``QuantileThermometer``), model_ (the trained ``pylgn.Sequential``),
    circuit_ (its discretized ``pylgn.Circuit``, which ``predict`` runs), tau_ (the temperature
    used), loss_curve_ (mean training loss per logged window of steps).
    """

    def __init__(self, layers=4, width=2000, arity=2, param="iwp", connections="random",
                 thresholds=8, missing="error", tau=None, lr=0.02, steps=1000, batch_size=64,
                 device="cpu", random_state=None, warm_start=False, verbose=False):
        self.layers = layers
        self.width = width
        self.arity = arity
        self.param = param
        self.connections = connections
        self.thresholds = thresholds
        self.missing = missing
        self.tau = tau
        self.lr = lr
        self.steps = steps
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose

    # fit ---------------------------------------------------------------------------------------

    def fit(self, X, y):
        """Fit the encoding (unless warm-starting) and train the network on (X, y)."""
        cfg = self._settings()                 # every hyper-parameter, before any state is set
        warm = bool(self.warm_start) and hasattr(self, "model_")
        X, y = validate_data(self, X, y, reset=not warm, dtype=np.float64,
                             ensure_all_finite="allow-nan" if self.missing == "low" else True)
        check_classification_targets(y)
        y = self._labels(y, warm)
        seeds = check_random_state(self.random_state).randint(0, 2 ** 31 - 1, size=2)
        if not warm:
            self.encoder_ = QuantileThermometer(self.thresholds, self.missing).fit(X)
            self.model_, self.optimizer_ = self._build(cfg, self.encoder_.thresholds_.size,
                                                       len(self.classes_), int(seeds[0]))
        self._train(cfg, self.encoder_.transform(X), y, int(seeds[1]))
        self.circuit_ = self.model_.to_circuit()
        self.circuit_.plan()                  # built now, so predict leaves the estimator as is
        return self

    def _labels(self, y, warm):
        """y as class indices; sets classes_ (a warm start must see the same classes)."""
        enc = LabelEncoder().fit(y)
        if len(enc.classes_) < 2:
            raise ValueError(f"y: expected at least 2 classes, got 1 class ({enc.classes_[0]!r})")
        if warm and not np.array_equal(enc.classes_, self.classes_):
            raise ValueError(f"y: warm_start=True needs the classes of the first fit "
                             f"{self.classes_.tolist()}, got {enc.classes_.tolist()}")
        self.classes_ = enc.classes_
        return enc.transform(y).astype(np.int64)

    def _settings(self):
        """The hyper-parameters, checked (ValueError/TypeError naming the one at fault)."""
        from .backend import DEVICES
        from .layers import PARAMS
        from .wiring import CONNECTIONS
        return dict(
            layers=check_int("layers", self.layers, 1), width=check_int("width", self.width, 1),
            arity=check_int("arity", self.arity, 1, 6), param=check_choice("param", self.param,
                                                                           PARAMS),
            connections=check_choice("connections", self.connections, CONNECTIONS),
            thresholds=check_int("thresholds", self.thresholds, 1, 255),
            missing=check_choice("missing", self.missing, MISSING),
            tau=None if self.tau is None else check_float("tau", self.tau, 0.0, low_open=True),
            lr=check_float("lr", self.lr, 0.0, low_open=True),
            steps=check_int("steps", self.steps, 1),
            batch_size=check_int("batch_size", self.batch_size, 1),
            device=check_choice("device", self.device, DEVICES))

    def _build(self, cfg, n_in, k, seed):
        """(Sequential, Adam): ``layers`` LogicLayers of width = ``width`` raised to read all
        n_in inputs (width * arity >= n_in) and rounded up to a multiple of k; GroupSum(k, tau_)."""
        from . import Adam, GroupSum, LogicLayer, Sequential
        width = -(-max(cfg["width"], -(-n_in // cfg["arity"])) // k) * k
        self.tau_ = float(np.sqrt(width / k)) if cfg["tau"] is None else cfg["tau"]
        kw = dict(arity=cfg["arity"], param=cfg["param"], connections=cfg["connections"])
        dims = [n_in] + [width] * cfg["layers"]
        layers = [LogicLayer(a, b, **kw) for a, b in zip(dims, dims[1:])]
        model = Sequential(layers + [GroupSum(k, self.tau_)], seed=seed, device=cfg["device"])
        return model, Adam(model, lr=cfg["lr"])

    def _train(self, cfg, bits, y, seed):
        """``steps`` Adam steps on batches of min(batch_size, samples), lr cosine-decayed to 0."""
        from functools import partial
        from .optim import scheduled_lr
        from .train import Trainer
        steps = cfg["steps"]
        trainer = Trainer(self.model_, self.optimizer_, batch_size=min(cfg["batch_size"], len(y)),
                          seed=seed, lr_schedule=partial(scheduled_lr, cfg["lr"], total=steps,
                                                         kind="cosine"))
        history = trainer.fit(bits, y, steps, eval_every=max(1, steps // 20),
                              progress=bool(self.verbose))
        self.loss_curve_ = list(history["train_loss"])

    # predict -----------------------------------------------------------------------------------

    def _scores(self, X):
        check_is_fitted(self)
        return self.circuit_.scores(self.encoder_.transform(X))

    def predict(self, X):
        """Labels of the discretized network: classes_[argmax of the group counts]."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self._scores(X), axis=1)]

    def predict_proba(self, X):
        """softmax(group counts / tau_) of the discretized network: (n, classes), classes_ order."""
        return softmax(self._scores(X) / self.tau_, axis=1)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def to_circuit(self):
        """``ThresholdCircuit``: the encoding's comparisons of raw features and the discretized
        network; its ``predict(X)`` equals ``self.predict(X)``."""
        check_is_fitted(self)
        return ThresholdCircuit(self.encoder_.features_, self.encoder_.thresholds_, self.circuit_,
                                self.classes_, self.n_features_in_, self.missing)

    def to_c(self, main=False, simplify=True):
        """C source of the fitted classifier (``ThresholdCircuit.to_c``): raw rows in, class
        index (into ``classes_``) out; with ``main`` a standalone program printing labels."""
        tc = self.to_circuit()
        return (tc.simplify() if simplify else tc).to_c(main=main)

    # pickling ----------------------------------------------------------------------------------

    def __getstate__(self):
        """The network as plain arrays (the model's backend holds modules, which do not pickle)."""
        state = dict(super().__getstate__())          # a copy: object's is __dict__ itself
        if "model_" in state:
            state["model_"] = _model_state(state["model_"], state.pop("optimizer_"))
        return state

    def __setstate__(self, state):
        if isinstance(state.get("model_"), dict):
            state = dict(state)
            state["model_"], state["optimizer_"] = _restore_model(state["model_"])
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.missing == "low"
        return tags


def _model_state(model, optimizer):
    """The model's config, parameters and wiring and Adam's state, as host numpy arrays."""
    host = model.backend.to_host
    return dict(config=model.config(), device=model.device, params=host(model.params).copy(),
                connections=[host(l.connections).copy() for l in model.logic_layers],
                adam=dict(config=optimizer.config(), m=host(optimizer.m).copy(),
                          v=host(optimizer.v).copy(), t=optimizer.t))


def _restore_model(state):
    """(Sequential, Adam) from ``_model_state``."""
    import pylgn
    layers = []
    for cfg in state["config"]["layers"]:
        cfg = dict(cfg)
        layers.append(getattr(pylgn, cfg.pop("type"))(**cfg))
    model = pylgn.Sequential(layers, seed=state["config"]["seed"], device=state["device"],
                             dtype=state["config"]["dtype"])
    model.params[...] = model.backend.asarray(state["params"], dtype=model.dtype)
    for layer, conn in zip(model.logic_layers, state["connections"]):
        layer.bind(model.backend, layer.weights, layer.grad, conn)
    opt = pylgn.Adam(model, **state["adam"]["config"])
    opt.load_state(state["adam"]["m"], state["adam"]["v"], state["adam"]["t"])
    return model, opt
