"""Challengers in shadow: registered versions run beside the champion on the same bars, and scored.

Every alias ``challenger`` or ``challenger-<name>`` of the served model names a challenger
(:func:`models.registry.challenger_versions`); :class:`Challengers` loads them at start and at each
reload check, keeps the ones it has while the registry does not answer, and runs none whose version
is the champion's. Without a challenger nothing here runs, and the worker's records are what they
were.

:class:`Shadow` runs each challenger on the bars the champion just stepped, with the same core
(:func:`~stream_app.processor.step_rounds`, model ``external``) and states of its own, and says what
to send and write:

* its predictions and scores go to ``FORECASTER_TOPIC_SHADOW`` in the same send as the champion's,
  the same records (``model_version``: the challenger's);
* its states live in the champion's table, all the challengers' of a ticker in one record (key
  ``\\xffshadow/<ticker>``, :mod:`stream_app.shadow_states`) that holds only those that ran, and are
  written with the champion's, under the ticker's event: their changelog records go in the same
  record batch of the ticker's partition, so that a restart recovers both or neither and the
  shadow's records after a kill -9 are exactly those of a run never killed;
* a challenger's first state for a ticker is the champion's state before the batch without its
  pending predictions, so the challenger predicts at once instead of warming up; a state whose
  pending predictions another version made (the alias moved), or that is past the champion's (whose
  state started afresh), starts again that way;
* each pair of scores (:mod:`models.shadow`) adds to the counters that Prometheus turns into the
  panel relative MAE over every worker, and to this worker's running panel Diebold-Mariano test;
* a challenger whose model (or whose step) raises on a batch stops running, said once in the log,
  and its version is not loaded again under its alias (a new version is): the champion's batch goes
  on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from forecaster.settings import Settings
from models import registry
from models.core.bar import Bar
from models.core.config import CoreConfig
from models.core.model_slot import PointModel
from models.core.state import MODEL_VERSION, TickerState
from models.core.step import ModelError, StepResult
from models.shadow import RunningPanelDM, paired, scaled_loss
from stream_app.faust_adapter import Event, TableAccess
from stream_app.metrics import WorkerMetrics
from stream_app.processor import BatchOutput, prediction_records, step_rounds
from stream_app.shadow_states import shadow_key
from stream_app.state_codec import challenger_states

log = logging.getLogger(__name__)

#: Days of pairs in each worker's running panel Diebold-Mariano statistic.
DM_DAYS = 250


def first_state(champion_prior: TickerState | None) -> TickerState | None:
    """A challenger's first state for a ticker: the champion's, without its pending predictions."""
    return None if champion_prior is None else dataclasses.replace(champion_prior, pending=())


def made_by(state: TickerState, version: str) -> bool:
    """Whether ``state``'s pending predictions are ``version``'s (else the state is another version's)."""
    return bool(state.pending) and all(p[MODEL_VERSION] == version for p in state.pending)


@dataclass(frozen=True)
class Challenger:
    """A challenger loaded: its alias, registry version and model."""

    alias: str
    version: str
    model: PointModel


class Challengers:
    """The challengers of ``settings.model_name`` that the worker runs, by alias.

    Parameters
    ----------
    settings
        The registry and the model's name.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.running: dict[str, Challenger] = {}
        self._twins: set[str] = set()  # aliases not run: their version runs under another alias
        self._failed: set[tuple[str, str]] = set()  # (alias, version) that failed on a batch: not run again

    def fail(self, challenger: Challenger, error: Exception) -> None:
        """Stop running ``challenger``, whose model or step failed on a batch (``error``): its version
        does not run again under its alias (a new version does), so that it fails once, not at every
        batch."""
        log.warning("challenger %r (version %s) failed on a batch and no longer runs; the champion is not "
                    "affected: %s: %s", challenger.alias, challenger.version, type(error).__name__, error,
                    exc_info=error)
        self._failed.add((challenger.alias, challenger.version))
        self.running.pop(challenger.alias, None)

    async def reload(self, champion_version: str | None) -> None:
        """Run the challengers the registry names now, but not the champion's version, and each
        version once (under the first of its aliases); keep the current ones when the registry
        does not answer, and a challenger's current version when its new one does not load."""
        try:
            versions = await asyncio.to_thread(registry.challenger_versions, self.settings)
        except registry.RegistryUnavailable:
            return  # the champion's holder says so, once per outage
        running: dict[str, Challenger] = {}
        # An alias that runs its version already keeps running it; the others in alias order.
        for alias, version in sorted(versions.items(), key=lambda item: (not self._runs(*item), item[0])):
            if version == champion_version or (alias, version) in self._failed:
                continue
            twin = next((c.alias for c in running.values() if c.version == version), None)
            if twin is not None:  # its records would be the twin's, twice: in the topic and the sums
                if alias not in self._twins:
                    log.warning("challenger %r is version %s, run as %r already: not run twice",
                                alias, version, twin)
                self._twins.add(alias)
                continue
            self._twins.discard(alias)
            current = self.running.get(alias)
            if current is not None and current.version == version:
                running[alias] = current
                continue
            uri = f"models:/{self.settings.model_name}/{version}"
            try:
                model = await asyncio.to_thread(registry.load_model, uri, self.settings)
            except Exception as error:  # a challenger that does not load must not stop the champion
                log.warning("challenger %s (%s) not loaded: %s", alias, uri, error)
                if current is not None:
                    running[alias] = current
                continue
            log.warning("running %s version %s in shadow as %r", self.settings.model_name, version, alias)
            running[alias] = Challenger(alias, version, model)
        for alias in self.running.keys() - running.keys():
            log.warning("challenger %r no longer runs", alias)
        self.running = running

    def _runs(self, alias: str, version: str) -> bool:
        current = self.running.get(alias)
        return current is not None and current.version == version


@dataclass
class ShadowOutput:
    """What the challengers made of one batch: their records (``(ticker, record)``) and new states
    (``ticker -> alias -> state``)."""

    records: list[tuple[str, dict]] = field(default_factory=list)
    states: dict[str, dict[str, TickerState]] = field(default_factory=dict)


class Shadow:
    """Runs the challengers on each batch the champion stepped, and scores them against it.

    Parameters
    ----------
    settings
        The core's configuration.
    table
        The table of ticker states (the challengers' are under
        :func:`~stream_app.shadow_states.shadow_key`).
    challengers
        The challengers to run.
    metrics
        Where the pairs' losses and the running test go.
    """

    def __init__(self, settings: Settings, table: Any, challengers: Challengers,
                 metrics: WorkerMetrics) -> None:
        self.table = table
        self.challengers = challengers
        self.metrics = metrics
        self.config = dataclasses.replace(CoreConfig.from_settings(settings), model="external")
        self.codec = challenger_states()
        self.tests: dict[tuple[str, str], RunningPanelDM] = {}

    def run(self, results: Sequence[tuple[Bar, StepResult]],
            champion_priors: Mapping[str, TickerState | None],
            champion_records: Sequence[tuple[str, dict]], tables: TableAccess,
            last_event: Mapping[bytes | None, Event]) -> ShadowOutput:
        """Step every challenger through the bars of ``results`` (the champion's, from
        ``champion_priors``) and observe its scores against ``champion_records``."""
        out = ShadowOutput()
        self._forget_stopped()
        if not self.challengers.running:
            return out
        queues: dict[str, list[Bar]] = {}
        for bar, _ in results:
            queues.setdefault(bar.ticker, []).append(bar)
        champion_scores = [r for _, r in champion_records if r["record_type"] == "score"]
        stored = {ticker: self._stored(ticker, tables, last_event) for ticker in queues}
        for challenger in list(self.challengers.running.values()):
            states = {t: _state(challenger, stored[t].get(challenger.alias), champion_priors.get(t),
                                queues[t][0].date) for t in queues}
            try:
                stepped, new_states, failures = step_rounds(queues, states, self.config, challenger.model)
            except ModelError as error:  # the model's own failure: the champion's batch goes on without it
                self.challengers.fail(challenger, error)
                continue
            if failures:  # bars the champion stepped: the challenger's own state or model is at fault
                self.challengers.fail(challenger, failures[0].error)
                continue
            records = prediction_records(BatchOutput(results=stepped))
            out.records += records
            for ticker, state in new_states.items():
                out.states.setdefault(ticker, {})[challenger.alias] = state
            self._observe(challenger, champion_scores, [r for _, r in records if r["record_type"] == "score"])
        return out

    def _stored(self, ticker: str, tables: TableAccess,
                last_event: Mapping[bytes | None, Event]) -> dict[str, TickerState]:
        """``ticker``'s challenger states in the table, by alias."""
        raw = tables.get(self.table, shadow_key(ticker), last_event[ticker.encode()])
        states = self.codec.decode(ticker, raw)
        self.codec.quarantined.clear()  # the codec logged it; the challengers start again (_state)
        return states or {}

    def placed_states(self, states: Mapping[str, dict[str, TickerState]], tables: TableAccess,
                      last_event: Mapping[bytes | None, Event]) -> list[tuple[str, int, bytes | None, bytes]]:
        """Put each ticker's challenger states (``ticker -> alias -> state``, those of the
        challengers that ran: any other's leave the record) in the table's store, under the
        ticker's event; the changelog records to send, ``(topic, partition, key, value)``, as the
        champion's."""
        changelog = self.table.changelog_topic.get_topic_name()
        records: list[tuple[str, int, bytes | None, bytes]] = []
        for ticker, by_alias in states.items():
            key = shadow_key(ticker)
            event = last_event[ticker.encode()]
            raw = self.codec.encode(ticker, by_alias)
            tables.put(self.table, key, raw, event)
            records.append((changelog, event.message.partition, key, raw))
        return records

    def _observe(self, challenger: Challenger, champion_scores: list[dict], scores: list[dict]) -> None:
        pairs = paired(champion_scores, scores)
        labels = (challenger.alias, challenger.version)
        m = self.metrics
        pairs_counter = m.shadow_pairs.labels(*labels)  # at zero from the challenger's first batch
        theirs = [scaled_loss(a) for a, _ in pairs]
        mine = [scaled_loss(b) for _, b in pairs]
        pairs_counter.inc(len(pairs))
        m.shadow_champion_loss.labels(*labels).inc(sum(theirs))
        m.shadow_challenger_loss.labels(*labels).inc(sum(mine))
        test = self.tests.setdefault(labels, RunningPanelDM(DM_DAYS))
        if pairs:
            test.add([b["as_of"] for _, b in pairs], theirs, mine)
            statistic = test.test().statistic
            if statistic == statistic:  # NaN before 3 days
                m.shadow_panel_dm.labels(*labels).set(statistic)

    def _forget_stopped(self) -> None:
        """Drop the running test and its gauge of each challenger version no longer run."""
        running = {(c.alias, c.version) for c in self.challengers.running.values()}
        for labels in self.tests.keys() - running:
            del self.tests[labels]
            with contextlib.suppress(KeyError):  # never set (fewer than 3 days)
                self.metrics.shadow_panel_dm.remove(*labels)


def _state(challenger: Challenger, stored: TickerState | None, champion_prior: TickerState | None,
           first: dt.date) -> TickerState | None:
    """The state ``challenger`` steps from (the ticker's bars start at ``first``): its stored one,
    unless another version made it (the alias moved), it has none, or it is past ``first`` (the
    champion's state started afresh, quarantined), then :func:`first_state`."""
    if (stored is not None and made_by(stored, challenger.version)
            and (stored.last_date is None or stored.last_date < first)):
        return stored
    return first_state(champion_prior)
