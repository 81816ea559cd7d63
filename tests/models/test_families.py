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
