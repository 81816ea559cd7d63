"""The model the worker serves: the registry's champion, or the core's own when none is registered."""

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

    async def reload(self) -> None:
        """Serve the registry's champion; keep serving the current model when it is unchanged."""
        version = await asyncio.to_thread(registry.champion_version, self.settings)
        if self.processor is not None and version == self.version:
            return
        config = CoreConfig.from_settings(self.settings)
        model = await asyncio.to_thread(registry.load_champion, self.settings) if version else None
        reference = None
        if model is None:
            log.warning("no champion registered as %r in %s: serving the core's %r model",
                        self.settings.model_name, self.settings.mlflow_registry_uri, config.model)
            name, served = config.model, "core"
        else:
            config = CoreConfig(**{**config.__dict__, "model": "external"})
            raw_reference = await asyncio.to_thread(registry.load_reference, self.settings) or {}
            reference = {name: Reference.from_dict(data) for name, data in raw_reference.items()}
            name, served = model.name, model.version
            log.warning("serving champion %s version %s", name, served)
        self.processor = BatchProcessor(config, model, topic=self.settings.topic_bars)
        self.version = version
        self.monitor.set_model(name, served, reference, FEATURE_NAMES)

    async def check_for_new_champion(self) -> None:
        """Reload if the champion changed (once a model is served); a failure keeps the current one."""
        if self.processor is None:
            return
        try:
            await self.reload()
        except Exception:  # a registry hiccup must not stop the stream
            log.exception("checking the registry for a new champion failed; keeping the current model")
