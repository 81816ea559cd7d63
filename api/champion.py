"""Which model a forecast uses: the registry's champion (reloaded when the alias moves) or a chosen one.

The app serves what the stream worker serves: ``models:/<model_name>@champion`` through
:func:`models.registry.load_champion`, and the core's own model (``settings.model``) while no champion
is registered. A request may choose another: ``naive``, ``arima``, a version number of
``settings.model_name`` or a ``models:/NAME/VERSION`` URI. A version is loaded once and kept
(:class:`Versions`, the ``FORECASTER_API_MODEL_CACHE`` most recently used), and only when the
registry holds it: a read never creates the registry's store.

Examples
--------
>>> import tempfile
>>> from forecaster.settings import Settings
>>> settings = Settings(home=tempfile.mkdtemp())
>>> choice = resolve("naive", settings, ChampionSlot(settings), Versions(settings))
>>> choice.config.model, choice.model, choice.requested
('naive', None, 'naive')
>>> resolve("lstm", settings, ChampionSlot(settings), Versions(settings))
Traceback (most recent call last):
...
api.champion.UnknownModel: model 'lstm' is not champion, naive, arima, a version number of next-close \
or models:/NAME/VERSION
>>> resolve("3", settings, ChampionSlot(settings), Versions(settings))
Traceback (most recent call last):
...
api.champion.UnknownModel: models:/next-close/3: no model is registered (the registry at sqlite:///... \
does not exist)
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from forecaster.redaction import printable, redact
from forecaster.settings import Settings
from models import registry
from models.core.config import CoreConfig

log = logging.getLogger(__name__)

CORE_MODELS = ("naive", "arima")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>[0-9]+)$")


class UnknownModel(ValueError):
    """A requested model that is not a choice or not in the registry."""


@dataclass(frozen=True)
class ModelChoice:
    """The core configuration and the model (None for the core's own) that a forecast runs with."""

    config: CoreConfig
    model: Any | None
    requested: str


class ChampionSlot:
    """The loaded champion, replaced when ``settings.model_name@champion`` names another version.

    A registry that does not answer (:class:`~models.registry.RegistryUnavailable`) is not one
    without a champion: the slot keeps what it has loaded, and :meth:`status` says the registry is
    unreachable (``/health`` is then ``degraded``) until it answers again.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._model: Any | None = None
        self._version: str | None = None
        self._error: str | None = None
        self._registry: str | None = None  # "reachable" or "unreachable" as of the last query

    def current(self) -> Any | None:
        """The champion after one registry query (a reload when the alias moved), or None."""
        with self._lock:
            try:
                version = registry.champion_version(self.settings)
                self._answered()
                if version != self._version:
                    self._model = registry.load_champion(self.settings) if version else None
                    self._version = version
                    log.info("champion of %s: version %s", self.settings.model_name, version)
                self._error = None
            except registry.RegistryUnavailable as error:
                if self._registry != "unreachable":  # once per outage, not per request
                    log.warning("%s; keeping %s", error, self._serving(self._model))
                self._registry = "unreachable"
                self._error = f"registry unreachable: {error}"
            except Exception as error:  # a broken registry must not stop the app serving forecasts
                self._error = redact(f"{type(error).__name__}: {error}")
                log.warning("cannot load the champion: %s", self._error)
            return self._model

    def _answered(self) -> None:
        if self._registry == "unreachable":
            log.warning("the model registry answers again")
        self._registry = "reachable"

    def _serving(self, model: Any | None) -> str:
        if model is not None:
            return f"{model.name} version {model.version}"
        why = "the registry does not answer" if self._registry == "unreachable" else "no champion registered"
        return f"the core's {self.settings.model} model ({why})"

    def status(self) -> dict[str, Any]:
        """What /health shows: whether a champion is loaded, which, and the fallback otherwise, and
        whether the registry answered its last query (``registry``: reachable, unreachable, or None
        before the first)."""
        with self._lock:
            model = self._model
            loaded = {"loaded": model is not None, "name": self.settings.model_name,
                      "version": self._version, "error": self._error, "registry": self._registry}
        return {**loaded, "serving": self._serving(model)}


class Versions:
    """Registry versions loaded for ``?model=``: each loaded once, the ``settings.api_model_cache``
    most recently used kept."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, Any] = OrderedDict()

    def get(self, uri: str) -> Any:
        """The model of ``models:/NAME/VERSION``; :class:`UnknownModel` when the registry lacks it."""
        if _VERSION.match(uri) is None:
            raise UnknownModel(f"{printable(uri, 100)}: expected models:/NAME/VERSION (a version number, "
                               "not an alias)")
        # One load at a time: a second request for a version being loaded waits and finds it kept.
        with self._lock:
            if uri in self._loaded:
                self._loaded.move_to_end(uri)
                return self._loaded[uri]
            if registry.store_missing(self.settings):
                raise UnknownModel(f"{uri}: no model is registered (the registry at "
                                   f"{redact(self.settings.mlflow_registry_uri)} does not exist)")
            try:
                model = registry.load_model(uri, self.settings)
            except ValueError as error:
                raise UnknownModel(redact(str(error))) from None
            self._loaded[uri] = model
            while len(self._loaded) > max(1, self.settings.api_model_cache):
                self._loaded.popitem(last=False)
            return model


def resolve(requested: str, settings: Settings, champion: ChampionSlot, versions: Versions) -> ModelChoice:
    """The model of a forecast request's ``model`` parameter.

    Raises
    ------
    UnknownModel
        ``requested`` is none of the choices, or names a version the registry does not hold.
    """
    if requested == "champion":
        model = champion.current()
        if model is None:
            return ModelChoice(CoreConfig.from_settings(settings), None, requested)
        return ModelChoice(CoreConfig.from_settings(settings, model="external"), model, requested)
    if requested in CORE_MODELS:
        return ModelChoice(CoreConfig.from_settings(settings, model=requested), None, requested)
    if requested.isascii() and requested.isdigit():
        uri = f"models:/{settings.model_name}/{requested}"
    elif requested.startswith("models:/"):
        uri = requested
    else:
        raise UnknownModel(f"model '{printable(requested, 100)}' is not champion, {', '.join(CORE_MODELS)}, "
                           f"a version number of {settings.model_name} or models:/NAME/VERSION")
    return ModelChoice(CoreConfig.from_settings(settings, model="external"), versions.get(uri), requested)


def describe(settings: Settings) -> dict[str, Any]:
    """``GET /models``: the registered model's champion with its test metrics, or what serves instead."""
    champion = registry.champion_version(settings)
    described: dict[str, Any] = {"name": settings.model_name,
                                 "registry": redact(settings.mlflow_registry_uri),
                                 "champion": None, "serving": f"the core's {settings.model} model"}
    if champion is None:
        return described
    mlflow_client = registry.client(settings)
    version = mlflow_client.get_model_version(settings.model_name, champion)
    tags = dict(version.tags)
    metrics = mlflow_client.get_run(version.run_id).data.metrics if version.run_id else {}
    described["champion"] = {
        "version": str(version.version), "family": tags.get("family"), "run_id": version.run_id,
        "test_start": tags.get("test_start"), "test_end": tags.get("test_end"),
        "metrics": _prefixed(metrics, "test_"), "naive_metrics": _prefixed(metrics, "naive_"),
        "diebold_mariano": _prefixed(metrics, "panel_dm_"),
    }
    described["serving"] = f"{tags.get('family')} version {version.version}"
    return described


def _prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {key.removeprefix(prefix): value for key, value in sorted(metrics.items())
            if key.startswith(prefix)}
