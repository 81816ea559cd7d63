"""The model the worker serves: the registry's champion, or the core's own when none is registered.

A champion whose model raises on a batch is not served again: the batch and the ones after it are
the core's own model's (:meth:`ModelHolder.demote`, called by :class:`stream_app.batch.BatchHandler`),
until another version is champion.

A registry that does not answer (:class:`~models.registry.RegistryUnavailable`) is not a registry
without a champion: the worker keeps serving the model it has, says so once per outage in its log
and in ``forecaster_registry_up`` (0) and ``forecaster_registry_errors_total``, and goes on asking
at every reload check. A worker that starts while the registry does not answer serves the core's
own model until the registry answers, then the champion: waiting would hold every bar back for as
long as the outage lasts.

The holder also keeps the challengers (:class:`~stream_app.shadow.Challengers`), asked for at the
same checks once the registry has answered about the champion.
"""

from __future__ import annotations

import asyncio
import logging

from forecaster.settings import Settings
from models import registry
from models.core.config import CoreConfig
from models.core.features import FEATURE_NAMES
from models.drift import Reference
from stream_app.monitor import ForecastMonitor
from stream_app.processor import BatchProcessor
from stream_app.shadow import Challengers

log = logging.getLogger(__name__)


class ModelHolder:
    """Loads the champion into a :class:`BatchProcessor`, and again when the champion changes.

    Parameters
    ----------
    settings
        The worker's settings (the registry, the model's name, the core's configuration).
    monitor
        Told which model is served, and its features' reference for the drift monitors.
    """

    def __init__(self, settings: Settings, monitor: ForecastMonitor) -> None:
        self.settings = settings
        self.monitor = monitor
        self.processor: BatchProcessor | None = None  # None until the first load
        self.version: str | None = None  # the champion's version served (None: the core's model)
        self.registry_answers: bool | None = None  # as of the last query (None: not asked yet)
        self.failed_version: str | None = None  # a champion that raised on a batch: not served again
        self.challengers = Challengers(settings)

    async def reload(self) -> None:
        """Serve the registry's champion; keep serving the current model when it is unchanged, or
        when the registry does not answer. Then the challengers, when it answered."""
        config = CoreConfig.from_settings(self.settings)
        try:
            version = await asyncio.to_thread(registry.champion_version, self.settings)
            if version is not None and version == self.failed_version:
                version = None  # served by the core's model until another version is champion
            if self.processor is not None and version == self.version:
                self._answered()
                await self.challengers.reload(self.version)
                return
            model = await asyncio.to_thread(registry.load_champion, self.settings) if version else None
            raw_reference = None
            if model is not None:
                raw_reference = await asyncio.to_thread(registry.load_reference, self.settings)
        except registry.RegistryUnavailable as error:
            self._unanswered(error)
            if self.processor is not None:
                return
            version, model, raw_reference = None, None, None
        else:
            self._answered()
            if model is None:
                log.warning("no champion registered as %r in %s: serving the core's %r model",
                            self.settings.model_name, self.settings.mlflow_registry_uri, config.model)
        reference = None
        if model is None:
            name, served = config.model, "core"
        else:
            config = CoreConfig(**{**config.__dict__, "model": "external"})
            reference = {name: Reference.from_dict(data) for name, data in (raw_reference or {}).items()}
            name, served = model.name, model.version
            log.warning("serving champion %s version %s", name, served)
        self.processor = BatchProcessor(config, model, topic=self.settings.topic_bars)
        self.version = version
        self.monitor.set_model(name, served, reference, FEATURE_NAMES)
        if self.registry_answers:
            await self.challengers.reload(version)

    def core_processor(self) -> BatchProcessor:
        """A processor of the core's own model (``FORECASTER_MODEL``), as served without a champion."""
        return BatchProcessor(CoreConfig.from_settings(self.settings), None, topic=self.settings.topic_bars)

    def demote(self, processor: BatchProcessor, error: Exception) -> None:
        """Serve ``processor``, the core's model, instead of the champion, which failed on a batch
        (``error``, a :class:`~models.core.step.ModelError`); its version is not served again (a new
        champion version is)."""
        log.error("champion %s version %s failed on a batch (%s): serving the core's %r model until another "
                  "version is champion", self.settings.model_name, self.version, error,
                  processor.config.model)
        self.failed_version, self.version, self.processor = self.version, None, processor
        self.monitor.set_model(processor.config.model, "core", None, FEATURE_NAMES)

    def _answered(self) -> None:
        if self.registry_answers is False:
            log.warning("the model registry answers again")
        self.registry_answers = True
        self.monitor.observe_registry(answered=True)

    def _unanswered(self, error: registry.RegistryUnavailable) -> None:
        if self.registry_answers is not False:  # once per outage, not at every check
            if self.processor is None:
                serving = f"serving the core's {self.settings.model!r} model until it answers"
            else:
                kept = f"champion version {self.version}" if self.version else "the core's model"
                serving = f"keeping {kept}"
            log.warning("%s; %s (asked again every %g s)", error, serving, self.settings.model_reload_s)
        self.registry_answers = False
        self.monitor.observe_registry(answered=False)

    async def check_for_new_champion(self) -> None:
        """Reload if the champion changed (once a model is served); a failure keeps the current one."""
        if self.processor is None:
            return
        try:
            await self.reload()
        except Exception:  # a registry hiccup must not stop the stream
            log.exception("checking the registry for a new champion failed; keeping the current model")
