"""The MLflow store: logging trained models in their native flavour, loading them, the champion.

A registered version of ``settings.model_name`` is one trained model. Its MLflow model (``source``)
is the family's ``"model"`` component, logged with ``mlflow.keras`` or ``mlflow.xgboost`` and a
tensor signature; a second component (the attention network of ``attention_xgboost``) is a logged
model of the same run whose URI is the version's ``component.<name>`` tag. The version's tags
``family``, ``params`` and ``feature_names`` say how to rebuild the model, so loading never goes
through the pyfunc wrapper (much slower than calling Keras directly: docs/benchmarks.md, "Figures
behind comments").

The ``arima`` family has no native model: the core runs its own incremental ARIMA and exposes the
forecast as a feature, so its version's source is a JSON of the ARIMA settings it was evaluated with.

The worker serves ``models:/<model_name>@champion``: :func:`load_champion` at start,
:func:`champion_version` on every reload check (a single registry query), and :func:`promote` and
:func:`promote_from_shadow` (the ``forecaster promote`` command) are the only code that moves the
alias. The worker also runs, in shadow, the versions that the model's ``challenger`` aliases name
(:func:`challenger_versions`, :mod:`models.shadow`).

"No champion" and "no answer" are told apart: :func:`champion_version` returns None when the
registry says the model or its alias does not exist, and raises :class:`RegistryUnavailable` when
the registry cannot be reached or read, so that a caller keeps the champion it has instead of
swapping it for the fallback. How long MLflow's HTTP client tries before it gives up is MLflow's
own ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` and ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (docs/reliability.md).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.dataset import FeatureTable
from models.evaluation import evaluate
from models.families import FAMILIES
from models.families import family as family_spec
from models.families.neural import require_neural
from models.shadow import ALPHA, MIN_DAYS, Comparison, Pairs, compare, is_challenger

# MLflow, XGBoost and Keras (slow to import) load inside the functions that use them, not with the
# worker and the API, which import this module (champion_version answers without MLflow when no
# store exists).

CHAMPION = "champion"
log = logging.getLogger(__name__)
#: MLflow's error codes for a model or alias that does not exist: an answer, "no champion".
_ABSENT = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


class RegistryUnavailable(RuntimeError):
    """The model registry could not be reached or read (not: it holds no champion).

    The message names the cause (the exception's type, MLflow's error code, the innermost system
    error) and never the registry's address, which may carry credentials.
    """

    @classmethod
    def of(cls, error: BaseException) -> RegistryUnavailable:
        """The unavailability that ``error``, raised by a registry query, means.

        >>> try:
        ...     try:
        ...         raise ConnectionRefusedError(111, "Connection refused")
        ...     except OSError:
        ...         raise RuntimeError("API request to http://user:secret@host/ failed")
        ... except RuntimeError as error:
        ...     print(RegistryUnavailable.of(error))  # doctest: +NORMALIZE_WHITESPACE
        the model registry did not answer: RuntimeError, caused by ConnectionRefusedError:
        [Errno 111] Connection refused
        """
        code = getattr(error, "error_code", None)
        said = f"{type(error).__name__}" + (f" ({code})" if code else "")
        root, seen = error, {id(error)}
        while (inner := root.__cause__ or root.__context__) is not None and id(inner) not in seen:
            root = inner
            seen.add(id(inner))
        if root is not error:
            said += f", caused by {type(root).__name__}"
            if isinstance(root, OSError) and root.strerror:  # the system's words hold no address
                said += f": [Errno {root.errno}] {root.strerror}"
        return cls(f"the model registry did not answer: {said}")

_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")


def client(settings: Any) -> Any:
    """An ``MlflowClient`` on ``settings.mlflow_uri`` and ``settings.mlflow_registry_uri``, also made
    the process's tracking and registry URIs (MLflow's variables count only through the settings).

    A SQLite store gets its folder created first.
    """
    import mlflow

    tracking, registry = settings.mlflow_uri, settings.mlflow_registry_uri
    for uri in (tracking, registry):
        db = _sqlite_path(uri)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
    # MLflow also writes them to os.environ (for its child processes): restored, so that settings
    # loaded later in this process do not take MLflow's own writes for the user's choice.
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return mlflow.MlflowClient(tracking, registry_uri=registry)


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _store_missing(settings: Any) -> bool:
    # Asking a SQLite URI whose file does not exist would create (and migrate) a whole store just
    # to learn that it holds no champion; the worker asks every model_reload_s.
    db = _sqlite_path(settings.mlflow_registry_uri)
    return db is not None and not db.exists()


def _reading_client(settings: Any, absent: str) -> Any:
    """:func:`client` for a reader, which creates no store: ValueError saying ``absent`` when the
    registry is a SQLite file that does not exist yet."""
    if _store_missing(settings):
        raise ValueError(f"{absent}: no store exists there yet (`forecaster train` makes one)")
    return client(settings)


def store_missing(settings: Any) -> bool:
    """Whether the registry is a SQLite store whose file does not exist yet: any MLflow call on it
    would create one, so a reader (the API) answers "nothing registered" instead."""
    return _store_missing(settings)


def experiment_id(settings: Any, name: str) -> str:
    """The id of experiment ``name``, created if needed.

    With a SQLite store its artifacts go beside the database (``<db folder>/artifacts``) instead
    of MLflow's default ``./mlruns`` of whatever the working directory is.
    """
    mlflow_client = client(settings)
    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    db = _sqlite_path(settings.mlflow_uri)
    location = (db.parent / "artifacts").as_uri() if db is not None else None
    return mlflow_client.create_experiment(name, artifact_location=location)


def _signature(flavour: str, component: Any) -> Any:
    """A tensor signature read off the native component itself: its input shape, one output."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    dtype: np.dtype
    if flavour == "keras":
        shape, dtype = (-1, *component.input_shape[1:]), np.dtype("float32")
    else:
        shape, dtype = (-1, int(component.n_features_in_)), np.dtype("float64")
    return ModelSignature(inputs=Schema([TensorSpec(dtype, shape, "window")]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), (-1,), "log_return")]))


def _log_component(flavour: str, component: Any, name: str, registered_name: str | None) -> Any:
    import mlflow

    # Pinned requirements: MLflow would otherwise infer them by importing the model in a
    # subprocess, which costs longer than training the small models.
    if flavour == "keras":
        import keras

        return mlflow.keras.log_model(component, name=name, signature=_signature(flavour, component),
                                      registered_model_name=registered_name,
                                      pip_requirements=[f"keras=={keras.__version__}", "tensorflow-cpu"])
    import xgboost

    return mlflow.xgboost.log_model(component, name=name, signature=_signature(flavour, component),
                                    registered_model_name=registered_name, model_format="ubj",
                                    pip_requirements=[f"xgboost=={xgboost.__version__}"])


def log_and_register(model: Any, settings: Any, feature_names: tuple[str, ...],
                     tags: dict[str, str] | None = None) -> str:
    """Log ``model`` to the active MLflow run, register it as a new version; the version number.

    ``tags`` are added to the version (training window, test metrics) beside the ones
    :func:`load_model` needs.
    """
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register needs an active MLflow run")
    mlflow_client = client(settings)
    spec = family_spec(model.name)
    components = model.components()
    version_tags = {"family": model.name, "params": json.dumps(model.params, sort_keys=True),
                    "lookback": str(model.lookback), "feature_names": json.dumps(list(feature_names)),
                    **(tags or {})}
    for name, flavour in spec.flavours.items():
        if name != "model":
            logged = _log_component(flavour, components[name], name, None)
            version_tags[f"component.{name}"] = logged.model_uri
    if "model" in spec.flavours:
        info = _log_component(spec.flavours["model"], components["model"], "model", settings.model_name)
        version = str(info.registered_model_version)
    else:
        mlflow.log_dict(model.params, "model/params.json")
        if not _registered(mlflow_client, settings.model_name):
            mlflow_client.create_registered_model(settings.model_name)
        version = mlflow_client.create_model_version(
            settings.model_name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id).version
    for key, value in version_tags.items():
        mlflow_client.set_model_version_tag(settings.model_name, version, key, value)
    return str(version)


#: MLflow's error codes of a name or version the registry does not hold (any other error is the
#: registry's own: a server out of reach, a store that cannot be read).
_ABSENT = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})


def _registered(mlflow_client: Any, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code in _ABSENT:
            return False
        raise
    return True


def _model_version(uri: str, settings: Any) -> Any:
    """The ``ModelVersion`` that ``models:/name@alias`` or ``models:/name/version`` names."""
    from mlflow.exceptions import MlflowException

    match = _VERSION_URI.match(uri)
    if match is None:
        raise ValueError(f"expected models:/NAME@ALIAS or models:/NAME/VERSION, got {uri!r}")
    absent = f"{uri} is not in the registry at {settings.mlflow_registry_uri}"
    mlflow_client = _reading_client(settings, absent)
    try:
        if match["alias"]:
            return mlflow_client.get_model_version_by_alias(match["name"], match["alias"])
        return mlflow_client.get_model_version(match["name"], match["version"])
    except MlflowException as exc:
        if exc.error_code not in _ABSENT:
            raise
        raise ValueError(f"{absent}: {exc.message}") from None


def _load_component(flavour: str, uri: str) -> Any:
    import mlflow

    if flavour == "keras":
        require_neural(f"the Keras model at {uri}")
    return mlflow.keras.load_model(uri) if flavour == "keras" else mlflow.xgboost.load_model(uri)


def _restore(version: Any) -> Any:
    tags = version.tags
    if "family" not in tags:
        raise ValueError(f"version {version.version} of {version.name} was not registered by `forecaster "
                         "train` (no family tag)")
    spec = family_spec(tags["family"])
    components = {
        name: _load_component(flavour, version.source if name == "model" else tags[f"component.{name}"])
        for name, flavour in spec.flavours.items()
    }
    model = spec.restore(tags["family"], json.loads(tags["params"]), components)
    model.version = str(version.version)
    return model


def load_model(uri: str, settings: Any) -> Any:
    """The model that ``uri`` (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``) names, native.

    The result is a ``PointModel``: ``name`` is its family, ``version`` its registry version.
    """
    return _restore(_model_version(uri, settings))


def champion_version(settings: Any) -> str | None:
    """The version that ``settings.model_name@champion`` names, or None; one registry query.

    Raises
    ------
    RegistryUnavailable
        The registry did not answer (unreachable, timed out, a server error, an unreadable store):
        whether there is a champion is not known.
    """
    if _store_missing(settings):
        return None  # before importing MLflow: seconds of a worker's start when there is no store
    version = _champion_of(settings, settings.model_name)
    return None if version is None else str(version.version)


def _champion_of(settings: Any, name: str) -> Any | None:
    """The ``ModelVersion`` that ``name@champion`` names, None when no version holds the alias, and
    :class:`RegistryUnavailable` when the registry does not say (opening a SQL store may fail too)."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return client(settings).get_model_version_by_alias(name, CHAMPION)
    except MlflowException as error:
        if error.error_code in _ABSENT:
            return None
        raise RegistryUnavailable.of(error) from error
    except (OSError, SQLAlchemyError) as error:  # raised underneath MLflow: the network, a SQL store
        raise RegistryUnavailable.of(error) from error


def challenger_versions(settings: Any) -> dict[str, str]:
    """``{alias: version}`` of every challenger alias of ``settings.model_name`` (see
    :func:`models.shadow.is_challenger`); empty when the model is not registered. One registry query.

    Raises
    ------
    RegistryUnavailable
        The registry did not answer.
    """
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    if _store_missing(settings):
        return {}
    try:
        model = client(settings).get_registered_model(settings.model_name)
    except MlflowException as error:
        if error.error_code in _ABSENT:
            return {}
        raise RegistryUnavailable.of(error) from error
    except (OSError, SQLAlchemyError) as error:
        raise RegistryUnavailable.of(error) from error
    return {alias: str(version) for alias, version in sorted(model.aliases.items()) if is_challenger(alias)}


def require_champion_extras(settings: Any) -> None:
    """MissingExtraError when the champion's family needs an extra that is not installed.

    A worker checks this before it starts, so that a Keras champion on an install without the
    ``neural`` extra ends in one line rather than in the worker's first batch. While the registry
    does not answer there is nothing to check: the worker starts, and says so when it asks again.
    """
    if _store_missing(settings):
        return
    try:
        version = _champion_of(settings, settings.model_name)
    except RegistryUnavailable:
        return
    if version is None:
        return
    family = version.tags.get("family")
    if family in FAMILIES and "keras" in FAMILIES[family].flavours.values():
        require_neural(f"the champion {settings.model_name} version {version.version} ({family})")


def load_champion(settings: Any) -> Any | None:
    """The champion in its native flavour, or None when no version holds the alias."""
    if champion_version(settings) is None:
        return None
    return load_model(f"models:/{settings.model_name}@{CHAMPION}", settings)


def load_reference(settings: Any) -> dict[str, dict[str, list[float]]] | None:
    """The champion's training-feature reference: ``{feature: {"edges": [...], "proportions": [...]}}``.

    None when there is no champion or its run logged no ``reference.json`` (see
    :func:`models.training.feature_reference`); the format is ``models.drift.Reference.to_dict``.
    """
    from mlflow.exceptions import MlflowException

    if champion_version(settings) is None:
        return None
    version = _model_version(f"models:/{settings.model_name}@{CHAMPION}", settings)
    try:
        return _download_json(settings, version.run_id, "reference.json")
    except (MlflowException, OSError):
        return None


def _download_json(settings: Any, run_id: str, path: str) -> Any:
    with tempfile.TemporaryDirectory() as folder:
        local = client(settings).download_artifacts(run_id, path, folder)
        return json.loads(Path(local).read_text())


@dataclass(frozen=True)
class PromotionDecision:
    """What ``forecaster promote`` decided and why.

    ``scores`` holds each model's figures on the shared days (``relative_mae`` is the panel's
    geometric mean; ``mae`` and ``rmse`` are pooled dollar figures, shown but not deciding);
    ``tickers`` is how many tickers they cover and ``wins`` on how many of them the candidate's MAE
    is below naive's (``"naive"``) and the champion's (``"champion vN"``).
    """

    promoted: bool
    name: str
    candidate: str
    champion: str | None
    rule: str
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    tickers: int = 0
    wins: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """The printed verdict: the rule, the scores on the shared test window, the wins, the outcome."""
        lines = [f"rule: {self.rule}"]
        for who, metrics in self.scores.items():
            shown = ", ".join(f"{k} {v:.6g}" for k, v in metrics.items())
            lines.append(f"  {who}: {shown}")
        for rival, won in self.wins.items():
            lines.append(f"  the candidate's MAE is below {rival}'s on {won} of {self.tickers} tickers")
        verdict = (f"promoted {self.name} version {self.candidate} to @{CHAMPION}" if self.promoted else
                   f"not promoted: {self.name} version {self.candidate} stays a candidate")
        lines.append(verdict + ("" if self.promoted else "; " + "; ".join(self.reasons)))
        return "\n".join(lines)


def _latest_version(mlflow_client: Any, name: str) -> str:
    versions = mlflow_client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise ValueError(f"registered model {name!r} has no versions; run `forecaster train` first")
    return str(max(int(v.version) for v in versions))


def _scored_on_same_days(models: dict[str, Any], table: Any, first: Any, last: Any,
                         scales: dict[str, float]) -> dict[str, Any]:
    """Evaluate each model (and naive) on the test samples that every one of them can predict."""
    samples = {who: table.samples(model.lookback).between(first, last) for who, model in models.items()}
    keys = {who: [f"{t}|{d}" for t, d in zip(s.tickers, s.dates, strict=True)] for who, s in samples.items()}
    common = set.intersection(*(set(k) for k in keys.values()))
    if not common:
        raise ValueError(f"no test day between {first} and {last} can be predicted by every model")
    scored = {}
    for who, model in models.items():
        chosen = samples[who].select(np.array([k in common for k in keys[who]]))
        scored[who] = evaluate(model.predict_returns(chosen.windows), chosen, scales)
    return scored


def _scores(evaluation: Any) -> dict[str, float]:
    panel = evaluation.panel
    return {"relative_mae": panel.relative_mae, "mase": panel.mase,
            "tickers_beating_naive": float(panel.beating_naive), "panel_dm_p_value": panel.dm.p_value,
            "mae": evaluation.metrics["mae"], "rmse": evaluation.metrics["rmse"]}


def _wins(mine: Any, theirs: Any) -> int:
    """Tickers where ``mine``'s MAE is below ``theirs`` (both scored on the same days)."""
    return sum(a.mae < b.mae for a, b in zip(mine.per_ticker, theirs.per_ticker, strict=True))


def promote(settings: Any, name: str, version: str | None = None, *,
            significance: float | None = None) -> PromotionDecision:
    """Move ``name@champion`` to ``version`` (default: the latest) if it wins on its test window.

    The candidate, the current champion and naive are scored on the same days: the candidate's
    test window, stored with its run (``test_set.npz``). The measure is scale-free, so that no
    ticker decides for its price level: the geometric mean over tickers of each ticker's MAE
    relative to naive's. The candidate wins when its measure is below 1 (naive's), below the
    champion's (if there is one) and, with ``significance``, when the panel Diebold-Mariano test
    against naive (losses scaled by each ticker's training-period naive MAE, from the run's
    ``naive_scales.json``) gives a negative statistic with a p-value below it. Otherwise nothing
    changes and the decision says why.
    """
    from mlflow.exceptions import MlflowException

    if significance is not None and not 0 < significance < 1:
        raise ValueError(f"significance must be in (0, 1), got {significance}")
    absent = f"no registered model {name!r} at {settings.mlflow_registry_uri}"
    mlflow_client = _reading_client(settings, absent)
    if not _registered(mlflow_client, name):
        raise ValueError(absent)
    candidate = version or _latest_version(mlflow_client, name)
    candidate_version = _model_version(f"models:/{name}/{candidate}", settings)
    # A registry that does not answer here is no reason to compare the candidate with naive alone.
    current = _champion_of(settings, name)
    champion = None if current is None else str(current.version)
    rule = ("candidate relative MAE (geometric mean over tickers of MAE / naive MAE) < 1"
            + (" and < the champion's" if champion else "")
            + (f" and panel Diebold-Mariano p-value vs naive < {significance}" if significance else "")
            + " on the candidate's test window")
    if champion == candidate:
        return PromotionDecision(False, name, candidate, champion, rule,
                                 [f"version {candidate} is already the {CHAMPION}"])
    tags = candidate_version.tags
    if "test_start" not in tags:
        raise ValueError(f"version {candidate} of {name} has no test window (not made by `forecaster train`)")
    try:
        scales = _download_json(settings, candidate_version.run_id, "naive_scales.json")
    except (MlflowException, OSError):
        raise ValueError(f"version {candidate} of {name} has no naive_scales.json (trained before scale-free "
                         "promotion): train it again") from None
    with tempfile.TemporaryDirectory() as folder:
        local = mlflow_client.download_artifacts(candidate_version.run_id, "test_set.npz", folder)
        table = FeatureTable.load(local)
    models = {f"candidate v{candidate}": _restore(candidate_version)}
    reasons = []
    if champion is not None:
        incumbent = _model_version(f"models:/{name}/{champion}", settings)
        if json.loads(incumbent.tags.get("feature_names", "[]")) != list(table.feature_names):
            reasons.append(f"champion version {champion} uses other features than the candidate: "
                           "they cannot be scored on the same inputs")
        else:
            models[f"champion v{champion}"] = _restore(incumbent)
    first, last = (dt.date.fromisoformat(tags["test_start"]), dt.date.fromisoformat(tags["test_end"]))
    scored = _scored_on_same_days(models, table, first, last, scales)
    mine = scored[f"candidate v{candidate}"]
    scores = {who: _scores(e) for who, e in scored.items()}
    scores["naive"] = {"relative_mae": 1.0, "mase": mine.panel.naive_mase,
                       "mae": mine.naive_metrics["mae"], "rmse": mine.naive_metrics["rmse"]}
    wins = {"naive": mine.panel.beating_naive}
    if not mine.beats_naive():
        reasons.append(f"relative MAE {mine.panel.relative_mae:.6g} is not below naive's 1")
    dm = mine.panel.dm
    if significance is not None and not (dm.p_value < significance and dm.statistic < 0):
        reasons.append(f"panel Diebold-Mariano statistic {dm.statistic:.3g}, p-value {dm.p_value:.3g}: "
                       f"not significantly better than naive at {significance}")
    if champion is not None and f"champion v{champion}" in scored:
        theirs = scored[f"champion v{champion}"]
        wins[f"champion v{champion}"] = _wins(mine, theirs)
        if not mine.panel.relative_mae < theirs.panel.relative_mae:
            reasons.append(f"relative MAE {mine.panel.relative_mae:.6g} is not below champion version "
                           f"{champion}'s {theirs.panel.relative_mae:.6g}")
    decided = PromotionDecision(not reasons, name, candidate, champion, rule, reasons, scores,
                                mine.panel.tickers, wins)
    if reasons:
        return decided
    mlflow_client.set_registered_model_alias(name, CHAMPION, candidate)
    log.info("promoted %s version %s to @%s (was %s)", name, candidate, CHAMPION, champion)
    return decided


#: The experiment where :func:`promote_from_shadow` logs each decision and its evidence.
SHADOW_EXPERIMENT = "promotions"


@dataclass(frozen=True)
class ShadowDecision:
    """What ``forecaster promote --from-shadow`` decided, on which evidence, and where it is logged."""

    promoted: bool
    name: str
    alias: str
    challenger: str
    champion: str
    rule: str
    comparison: Comparison
    reasons: list[str] = field(default_factory=list)
    run_id: str = ""

    def summary(self) -> str:
        """The printed verdict: the rule, the evidence, the outcome."""
        c = self.comparison
        lines = [f"rule: {self.rule}",
                 f"  {self.alias} version {self.challenger} against champion version {self.champion}: "
                 f"{c.pairs} pairs on {c.days} days, relative MAE {c.relative_mae:.6g}, panel "
                 f"Diebold-Mariano {c.dm.statistic:.3g} (one-sided p = {c.p_better:.3g})",
                 f"  evidence: MLflow run {self.run_id} of experiment {SHADOW_EXPERIMENT!r}"]
        verdict = (f"promoted {self.name} version {self.challenger} to @{CHAMPION}" if self.promoted else
                   f"not promoted: {self.name} version {self.challenger} stays @{self.alias}")
        lines.append(verdict + ("" if self.promoted else "; " + "; ".join(self.reasons)))
        return "\n".join(lines)


def promote_from_shadow(settings: Any, alias: str, champion_scores: Any, challenger_scores: Any, *,
                        min_days: int = MIN_DAYS, alpha: float = ALPHA) -> ShadowDecision:
    """Move ``settings.model_name@champion`` to the version ``alias`` names if it won live, in shadow.

    ``champion_scores`` and ``challenger_scores`` are callables that return the score records of
    ``settings.topic_predictions`` and of ``settings.topic_shadow`` (any order, repeats allowed);
    only the champion's version's and the challenger's version's are paired (:mod:`models.shadow`).
    The challenger wins when its relative MAE is below 1 and the panel Diebold-Mariano test says its
    losses are lower with a one-sided p-value below ``alpha``, on at least ``min_days`` days. Either
    way the decision and its evidence go to an MLflow run (metrics, ``shadow_decision.json``) and to
    tags on both versions; a win moves ``champion`` and removes ``alias`` from the promoted version.

    Raises
    ------
    ValueError
        The alias is not a challenger's, or names no version; the model has no champion.
    RegistryUnavailable
        The registry did not answer.
    """
    import mlflow

    if not is_challenger(alias):
        raise ValueError(f"{alias!r} is not a challenger alias (challenger, or challenger-<name>)")
    if min_days < 3:
        raise ValueError(f"min_days must be at least 3 (the panel test needs 3 days), got {min_days}")
    name = settings.model_name
    challenger = challenger_versions(settings).get(alias)
    if challenger is None:
        raise ValueError(f"no version of {name!r} holds the alias {alias!r}")
    current = _champion_of(settings, name)
    if current is None:
        raise ValueError(f"{name!r} has no {CHAMPION} to compare {alias!r} with")
    champion = str(current.version)
    pairs = Pairs()
    pairs.add_champion(s for s in champion_scores() if s.get("model_version") == champion)
    pairs.add_challenger(s for s in challenger_scores() if s.get("model_version") == challenger)
    comparison = compare(*pairs.losses())
    rule = (f"{alias} relative MAE (summed absolute error over the prediction day's close, against the "
            f"champion's on the same ticker-days) < 1 and panel Diebold-Mariano one-sided p-value < {alpha} "
            f"on at least {min_days} days")
    reasons = []
    if champion == challenger:
        reasons.append(f"version {challenger} is already the {CHAMPION}")
    if comparison.days < min_days:
        reasons.append(f"{comparison.days} days of pairs, fewer than {min_days}")
    if not comparison.relative_mae < 1:
        reasons.append(f"relative MAE {comparison.relative_mae:.6g} is not below 1")
    if not comparison.p_better < alpha:
        reasons.append(f"panel Diebold-Mariano {comparison.dm.statistic:.3g}, one-sided p-value "
                       f"{comparison.p_better:.3g}: not significantly better at {alpha}")
    evidence = {"name": name, "alias": alias, "challenger_version": challenger, "champion_version": champion,
                "promoted": not reasons, "reasons": reasons, "rule": rule, "min_days": min_days,
                "alpha": alpha, **comparison.metrics(),
                "topics": [settings.topic_predictions, settings.topic_shadow]}
    mlflow_client = client(settings)
    with mlflow.start_run(experiment_id=experiment_id(settings, SHADOW_EXPERIMENT),
                          run_name=f"{alias}-v{challenger}-vs-v{champion}") as run:
        mlflow.log_params({"name": name, "alias": alias, "challenger_version": challenger,
                           "champion_version": champion, "min_days": min_days, "alpha": alpha})
        mlflow.log_metrics({k: v for k, v in {**comparison.metrics(), "promoted": float(not reasons)}.items()
                            if v == v})  # MLflow refuses NaN
        mlflow.log_dict(evidence, "shadow_decision.json")
        run_id = run.info.run_id
    outcome = "promoted" if not reasons else "not promoted"
    mlflow_client.set_model_version_tag(name, challenger, "shadow_decision", f"{outcome} (run {run_id})")
    mlflow_client.set_model_version_tag(name, champion, "shadow_decision",
                                        f"challenged by version {challenger}: {outcome} (run {run_id})")
    decided = ShadowDecision(not reasons, name, alias, challenger, champion, rule, comparison, reasons,
                             run_id)
    if reasons:
        return decided
    mlflow_client.set_registered_model_alias(name, CHAMPION, challenger)
    mlflow_client.delete_registered_model_alias(name, alias)
    log.info("promoted %s version %s (@%s) to @%s (was %s)", name, challenger, alias, CHAMPION, champion)
    return decided
