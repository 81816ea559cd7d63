"""The Keras and XGBoost families: causal scaling, batch independence, native round trips.

TensorFlow's import and graph building cost seconds, so the Keras families get one test each, with
tiny networks and one or two epochs.
"""

from __future__ import annotations

import numpy as np
import pytest

from models import registry
from models.families import create
from models.training import train


def _windows(seed: int, n: int, lookback: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    windows = rng.normal(loc=shift, size=(n, lookback, 6))
    return windows, 0.01 * np.tanh(windows[:, -1, 0]) + 0.001 * rng.normal(size=n)


def test_bigru_scaler_sees_training_rows_only_and_predictions_do_not_depend_on_the_batch() -> None:
    train_w, train_y = _windows(0, 128, 4)
    val_w, val_y = _windows(1, 32, 4, shift=5.0)  # far from the training rows on purpose
    model = create("bigru", lookback=4, units=4, epochs=2, batch_size=32).fit(train_w, train_y, val_w, val_y)
    scaler = next(layer for layer in model.network.layers if layer.__class__.__name__ == "Normalization")
    np.testing.assert_allclose(np.ravel(scaler.mean), train_w.reshape(-1, 6).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.ravel(scaler.variance), train_w.reshape(-1, 6).var(axis=0), rtol=1e-5)
    together = model.predict_returns(val_w)
    np.testing.assert_allclose(model.predict_returns(val_w[:3]), together[:3], rtol=1e-5)
    assert together.shape == (32,) and np.isfinite(together).all()
    with pytest.raises(ValueError, match=r"expected windows \[n, 4, features\]"):
        model.predict_returns(val_w[:, :3])


def test_attention_hybrid_round_trips_through_mlflow_natively(aph_bars, store) -> None:
    import mlflow

    outcome = train(aph_bars, "attention_xgboost", store, experiment="families-test", test_days=60, epochs=1,
                    params={"attention": {"lookback": 3, "units": 4, "filters": 4},
                            "booster": {"n_estimators": 20}})
    uri = f"models:/{store.model_name}/{outcome.version}"
    loaded = registry.load_model(uri, store)
    assert (loaded.name, loaded.version, loaded.lookback) == ("attention_xgboost", outcome.version, 3)
    windows, _ = _windows(2, 16, 3)
    expected = outcome.model.predict_returns(windows)
    np.testing.assert_allclose(loaded.predict_returns(windows), expected, rtol=1e-6)
    # Both components are stored in their native flavour with a tensor signature.
    network_uri = mlflow.MlflowClient(store.mlflow_uri).get_model_version(
        store.model_name, outcome.version).tags["component.attention"]
    for component in (mlflow.models.get_model_info(network_uri), mlflow.models.get_model_info(
            registry.client(store).get_model_version(store.model_name, outcome.version).source)):
        assert component.signature is not None
    assert "keras" in mlflow.models.get_model_info(network_uri).flavors
    assert outcome.counts["train"] > outcome.counts["validation"] > 0 and outcome.counts["test"] == 60


def test_attention_hybrid_booster_learns_from_out_of_fold_network_forecasts(monkeypatch) -> None:
    from models.families import hybrid
    from models.families.neural import KerasWindowModel

    seen = {}

    def recording(features, targets, *args):
        seen["features"] = features
        return real(features, targets, *args)

    real = hybrid.fit_booster
    monkeypatch.setattr(hybrid, "fit_booster", recording)
    train_w, train_y = _windows(3, 96, 2)
    val_w, val_y = _windows(4, 24, 2)
    attention = {"lookback": 2, "units": 4, "filters": 4, "epochs": 1, "batch_size": 32}
    model = create("attention_xgboost", attention=attention, booster={"n_estimators": 10})
    model.fit(train_w, train_y, val_w, val_y)
    stacked = seen["features"][:, -1]
    # Not the served network's forecasts of its own training windows ...
    assert not np.allclose(stacked, model.attention.predict_returns(train_w))
    # ... but, block by block, those of a network that never saw the block or its neighbours.
    first = np.array_split(np.arange(96), hybrid.FOLDS)[0]
    keep = np.ones(96, dtype=bool)
    keep[: first[-1] + 1 + 2] = False
    without = KerasWindowModel("cnn_bilstm_attention", **model.attention.params).fit(
        train_w[keep], train_y[keep], val_w, val_y)
    np.testing.assert_allclose(stacked[first], without.predict_returns(train_w[first]), rtol=1e-5)
