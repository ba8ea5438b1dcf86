"""pylgn.sklearn: scikit-learn's own estimator checks, model selection, pickling, the circuit."""
import pickle

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from pylgn.sklearn import LogicGateClassifier, QuantileThermometer, ThresholdCircuit

#: small and quick, still accurate enough for the checks' easy problems
TINY = dict(layers=2, width=64, steps=150, batch_size=32, thresholds=6, random_state=0)


@parametrize_with_checks([LogicGateClassifier(**TINY), QuantileThermometer()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def fitted(iris):
    X, y = iris
    return LogicGateClassifier(**TINY).fit(X, y)


# model selection ---------------------------------------------------------------------------------

def test_cross_val_score_learns_iris(iris):
    from sklearn.model_selection import cross_val_score
    scores = cross_val_score(LogicGateClassifier(**TINY), *iris, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.85


def test_pipeline_and_grid_search(iris):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = iris
    pipe = make_pipeline(StandardScaler(), LogicGateClassifier(**TINY)).fit(X, y)
    assert pipe.score(X, y) > 0.85
    grid = GridSearchCV(LogicGateClassifier(**TINY), {"width": [16, 64]}, cv=2).fit(X, y)
    assert grid.best_params_["width"] in (16, 64) and len(grid.cv_results_["mean_test_score"]) == 2
    assert grid.best_estimator_.predict(X).shape == y.shape


# predictions, probabilities, labels -------------------------------------------------------------

def test_predict_proba_is_softmax_of_circuit_scores(fitted, iris):
    X = iris[0]
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(fitted.classes_[proba.argmax(axis=1)], fitted.predict(X))
    scores = fitted.to_circuit().scores(X)
    z = np.exp(scores / fitted.tau_)
    np.testing.assert_allclose(proba, z / z.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(fitted.predict_log_proba(X), np.log(proba))


def test_predictions_are_the_discretized_network(fitted, iris):
    """predict == argmax of the eval() forward of the float model on the encoded bits."""
    X = iris[0]
    bits = fitted.encoder_.transform(X)
    logits = fitted.model_.eval().forward(bits)
    fitted.model_.train()
    np.testing.assert_allclose(fitted.to_circuit().scores(X) / fitted.tau_, logits, rtol=1e-6)
    assert np.array_equal(fitted.predict(X), fitted.classes_[logits.argmax(axis=1)])


@pytest.mark.parametrize("labels", [["setosa", "versicolor", "virginica"], [-7, 3, 1000],
                                    [10.0, -1.0, 3.0]])
def test_labels_of_any_type(iris, labels):
    X, y = iris
    labels = np.asarray(labels)
    clf = LogicGateClassifier(**TINY).fit(X, labels[y])
    assert np.array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(X)
    assert pred.dtype == labels.dtype and set(pred) <= set(labels)
    assert clf.score(X, labels[y]) > 0.85


def test_binary_problem():
    from sklearn.datasets import load_breast_cancer
    X, y = load_breast_cancer(return_X_y=True)
    labels = np.array(["benign", "malignant"])[1 - y]
    clf = LogicGateClassifier(**TINY).fit(X, labels)
    assert clf.predict_proba(X).shape == (len(X), 2) and clf.circuit_.k == 2
    assert clf.model_.layers[-2].out_dim % 2 == 0 and clf.score(X, labels) > 0.85


def test_monotone_rescaling_of_columns_changes_nothing(iris):
    """Quantile thresholds follow any increasing map of a column: exp(x) * 1e6 + 3 encodes to
    the same bits, so the same seed trains the same network."""
    X, y = iris
    a = LogicGateClassifier(**TINY).fit(X, y)
    b = LogicGateClassifier(**TINY).fit(np.exp(X) * 1e6 + 3, y)
    assert np.array_equal(a.encoder_.transform(X), b.encoder_.transform(np.exp(X) * 1e6 + 3))
    assert np.array_equal(a.predict(X), b.predict(np.exp(X) * 1e6 + 3))


def test_random_state_reproducible_and_different_seeds_differ(iris):
    X, y = iris
    p = [LogicGateClassifier(**{**TINY, "random_state": s}).fit(X, y).model_.params
         for s in (1, 1, 2)]
    assert np.array_equal(p[0], p[1]) and not np.array_equal(p[0], p[2])


def test_width_covers_inputs_and_divides_into_classes():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 30)), np.arange(60) % 7
    clf = LogicGateClassifier(layers=2, width=5, arity=2, thresholds=4, steps=3).fit(X, y)
    width = clf.model_.layers[0].out_dim
    assert width * 2 >= clf.encoder_.thresholds_.size and width % 7 == 0
    assert clf.model_.layers[0].in_dim == clf.encoder_.thresholds_.size


def test_warm_start_continues_the_same_network(iris):
    X, y = iris
    clf = LogicGateClassifier(**{**TINY, "warm_start": True}).fit(X, y)
    model, t, before = clf.model_, clf.optimizer_.t, clf.model_.params.copy()
    clf.fit(X, y)
    assert clf.model_ is model and clf.optimizer_.t == 2 * t
    assert not np.array_equal(before, clf.model_.params)
    with pytest.raises(ValueError, match="y: warm_start"):
        clf.fit(X[y < 2], y[y < 2])
    cold = LogicGateClassifier(**TINY).fit(X, y)
    first, first_model = cold.model_.params.copy(), cold.model_
    assert cold.fit(X, y).model_ is not first_model          # a cold refit builds a new network
    assert np.array_equal(cold.model_.params, first)         # ... from the same seed


# encoding ---------------------------------------------------------------------------------------

def test_quantile_thresholds_split_evenly_and_constant_columns():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.permutation(1000).astype(float), np.full(1000, 4.0),
                         rng.integers(0, 2, 1000).astype(float)])
    enc = QuantileThermometer(thresholds=3).fit(X)
    assert enc.features_.tolist() == [0, 0, 0, 1, 2]
    bits = enc.transform(X)
    np.testing.assert_allclose(bits[:, :3].mean(axis=0), [0.75, 0.5, 0.25], atol=0.01)
    assert enc.thresholds_[3] == 4.0 and not bits[:, 3].any()       # constant column: one bit
    assert enc.transform([[0.0, 5.0, 0.0]])[0, 3] == 1              # set by larger values later
    assert enc.thresholds_[4] == 0.0                               # 0/1 column: one bit, x > 0
    assert enc.get_feature_names_out().tolist()[3] == "x1 > 4"


def test_nan_is_an_error_unless_missing_low(iris):
    X, y = iris
    Xn = X.copy()
    Xn[::7, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        LogicGateClassifier(**TINY).fit(Xn, y)
    strict = LogicGateClassifier(**TINY).fit(X, y)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        strict.predict(Xn)
    with pytest.raises(ValueError, match="Input X contains NaN"):     # nor does its circuit
        strict.to_circuit().predict(Xn)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        strict.to_circuit().simplify().predict(Xn)
    clf = LogicGateClassifier(**{**TINY, "missing": "low"}).fit(Xn, y)
    bits = clf.encoder_.transform(Xn)
    cols = clf.encoder_.features_ == 1
    assert not bits[::7][:, cols].any() and bits[1::7][:, cols].any()
    assert clf.score(Xn, y) > 0.8
    assert np.array_equal(clf.to_circuit().predict(Xn), clf.predict(Xn))


# the circuit and pickling -----------------------------------------------------------------------

def test_circuit_predicts_like_the_estimator_on_raw_features(fitted, iris):
    X = iris[0] + np.random.default_rng(0).normal(scale=0.3, size=iris[0].shape)   # unseen
    circuit = fitted.to_circuit()
    assert isinstance(circuit, ThresholdCircuit) and circuit.num_gates == fitted.circuit_.num_gates
    assert np.array_equal(circuit.predict(X), fitted.predict(X))
    bits = (X[:, circuit.features] > circuit.thresholds)            # comparisons of raw columns
    assert np.array_equal(circuit.classes[circuit.circuit.predict(bits)], fitted.predict(X))
    assert np.array_equal(circuit.simplify().predict(X), fitted.predict(X))
    again = pickle.loads(pickle.dumps(circuit))
    assert np.array_equal(again.predict(X), fitted.predict(X))
    with pytest.raises(ValueError, match="X: expected 4 features"):
        circuit.predict(X[:, :3])


def test_pickle_round_trip_keeps_predictions_and_warm_start(fitted, iris):
    X, y = iris
    clone = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(clone.predict(X), fitted.predict(X))
    assert np.array_equal(clone.predict_proba(X), fitted.predict_proba(X))
    assert np.array_equal(clone.model_.params, fitted.model_.params)
    for a, b in zip(clone.model_.logic_layers, fitted.model_.logic_layers):
        assert np.array_equal(a.connections, b.connections)
    assert np.array_equal(clone.optimizer_.m, fitted.optimizer_.m)
    clone.set_params(warm_start=True).fit(X, y)                    # the restored model trains
    assert clone.optimizer_.t == 2 * fitted.optimizer_.t
    assert pickle.loads(pickle.dumps(LogicGateClassifier())).get_params() == \
        LogicGateClassifier().get_params()


# errors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, error, name", [
    (dict(layers=0), ValueError, "layers"), (dict(width="wide"), TypeError, "width"),
    (dict(arity=7), ValueError, "arity"), (dict(tau=-1.0), ValueError, "tau"),
    (dict(lr=0.0), ValueError, "lr"), (dict(steps=0), ValueError, "steps"),
    (dict(batch_size=0), ValueError, "batch_size"), (dict(thresholds=0), ValueError, "thresholds"),
    (dict(missing="drop"), ValueError, "missing"), (dict(param="xyz"), ValueError, "param"),
    (dict(connections="all"), ValueError, "connections"),
    (dict(device="tpu"), ValueError, "device"),
])
def test_bad_hyperparameters_name_the_argument(iris, params, error, name):
    with pytest.raises(error, match=f"^{name}: "):
        LogicGateClassifier(**{**TINY, **params}).fit(*iris)


def test_bad_data_errors(fitted, iris):
    X, y = iris
    with pytest.raises(ValueError, match="y: expected at least 2 classes, got 1 class"):
        LogicGateClassifier(**TINY).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="Unknown label type"):
        LogicGateClassifier(**TINY).fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="X has 3 features"):
        fitted.predict(X[:, :3])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LogicGateClassifier(**TINY).fit(X, y[:-1])
    with pytest.raises(ValueError, match="Expected 2D array"):
        fitted.predict(X[0])


def test_feature_names_in_from_a_dataframe(iris):
    pd = pytest.importorskip("pandas")
    X, y = iris
    df = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    clf = LogicGateClassifier(**TINY).fit(df, y)
    assert clf.feature_names_in_.tolist() == ["sl", "sw", "pl", "pw"]
    assert np.array_equal(clf.to_circuit().predict(df), clf.predict(df))


def test_import_pylgn_does_not_import_sklearn():
    import subprocess
    import sys
    code = ("import sys, pylgn; "
            "assert 'sklearn' not in sys.modules and 'pylgn.sklearn' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# the CLI's tabular case: pylgn train --dataset FILE.csv --target COLUMN --------------------------

@pytest.fixture
def iris_csv(tmp_path, iris):
    import csv
    from sklearn.datasets import load_iris
    names = load_iris().target_names
    path = tmp_path / "iris.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sepal length", "sepal width", "species", "petal length", "petal width"])
        for x, t in zip(*iris):
            w.writerow([x[0], x[1], names[t], x[2], x[3]])
    return path


def test_load_csv_splits_and_encodes_with_train_quantiles(iris_csv, iris):
    from pylgn.data import TableDataset, load_csv, quantile_thresholds
    ds = load_csv(str(iris_csv), "species")
    assert isinstance(ds, TableDataset) and ds.name == "iris"
    assert ds.class_names == ["setosa", "versicolor", "virginica"]
    assert ds.feature_names == ["sepal length", "sepal width", "petal length", "petal width"]
    assert (len(ds.x_train), len(ds.x_test)) == (120, 30) and ds.shape == (4,)
    rows = {tuple(r): c for r, c in zip(iris[0], iris[1])}
    assert all(rows[tuple(r)] == c for r, c in zip(ds.x_train, ds.y_train))
    bits = ds.encode(ds.x_test, 3)
    assert bits.shape == (30, 12) and ds.encoded_dim(3) == 12
    feats, cuts = quantile_thresholds(ds.x_train, 3, distinct=False)
    assert np.array_equal(bits, (ds.x_test[:, feats] > cuts).astype(np.uint8))
    assert np.array_equal(load_csv(str(iris_csv), "species").y_test, ds.y_test)    # fixed split


def test_load_csv_errors_name_the_problem(tmp_path, iris_csv):
    from pylgn.data import load_csv, load_dataset
    with pytest.raises(ValueError, match="target: no column 'label'"):
        load_csv(str(iris_csv), "label")
    with pytest.raises(ValueError, match="target: a .csv dataset needs the label column"):
        load_dataset(str(iris_csv))
    with pytest.raises(ValueError, match="target: only a .csv dataset"):
        load_dataset("digits", target="species")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,x\n3,,y\n5,6,x\n")
    with pytest.raises(ValueError, match="line 3, column 'b': expected a finite number"):
        load_csv(str(bad), "y")
    bad.write_text("a,y\n1,x\n2,x\n")
    with pytest.raises(ValueError, match="target: column 'y' of .* has 1 class"):
        load_csv(str(bad), "y")
    bad.write_text("a,y\n1,10\n2,9\n3,10\n4,9\n5,2\n")
    assert load_csv(str(bad), "y").class_names == ["2", "9", "10"]              # numeric order


def test_cli_trains_and_evaluates_a_csv_table(iris_csv, tmp_path, capsys):
    import json
    from pylgn.cli import main
    tiny = ["--layers", "2", "--width", "300", "--steps", "60", "--eval-every", "30", "--lr",
            "0.05", "--no-progress", "--json", "--threads", "1"]
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(iris_csv), "--target", "species", "--out", str(out),
                 *tiny]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["steps"] == 60 and res["test_accuracy_discrete"] > 0.6
    assert main(["eval", str(out / "checkpoint.h5"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["test_accuracy_discrete"] == res["test_accuracy_discrete"]
    assert main(["train", "--dataset", str(iris_csv), "--target", "species", "--width", "200",
                 "--out", str(out), "--no-progress", "--overwrite"]) == 2
    assert "--width: must be a multiple of the 3 classes" in capsys.readouterr().err


def test_a_failed_fit_leaves_the_estimator_unfitted(iris):
    from sklearn.exceptions import NotFittedError
    clf = LogicGateClassifier(**{**TINY, "steps": -1})
    with pytest.raises(ValueError, match="^steps: "):
        clf.fit(*iris)
    assert not hasattr(clf, "n_features_in_") and not hasattr(clf, "classes_")
    with pytest.raises(NotFittedError):
        clf.predict(iris[0])
