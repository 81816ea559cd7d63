"""The latest prediction and score per ticker and horizon, read from the ``predictions`` topic in a
background thread.

:class:`LatestPredictions` owns one kafka-python consumer with no group: it assigns itself every
partition of ``settings.topic_predictions`` and reads from the beginning, so it never moves anyone's
offsets and sees every ticker the worker ever forecast. Records of a ticker share a partition, so
the last one read is the latest one written. With no broker reachable the thread keeps retrying,
and :meth:`LatestPredictions.status` says what is wrong; :meth:`LatestPredictions.stop` ends it
within a few seconds.

Each ticker keeps the latest records of the horizons its last two bars were forecast at (a record
without ``horizon``, written before horizons existed, is one day ahead): a horizon taken out of
``FORECASTER_HORIZONS`` drops out a bar later, and a ticker holds at most ``MAX_HORIZON`` of them.

Examples
--------
>>> from forecaster.settings import Settings
>>> latest = LatestPredictions(Settings())
>>> latest.apply({"record_type": "prediction", "ticker": "ACME", "as_of": "2024-01-05"})
True
>>> latest.apply({"record_type": "heartbeat"})
False
>>> latest.get("ACME")["prediction"]["as_of"], latest.get("ACME")["score"], latest.get("NONE")
('2024-01-05', None, None)
>>> def predict(day, horizon):
...     return latest.apply({"record_type": "prediction", "ticker": "ACME", "as_of": day, "horizon": horizon})
>>> predict("2024-01-08", 1), predict("2024-01-08", 5), predict("2024-01-09", 5)  # 1 is taken out
(True, True, True)
>>> [(e["horizon"], e["prediction"]["as_of"]) for e in latest.get("ACME")["horizons"]]
[(1, '2024-01-08'), (5, '2024-01-09')]
>>> predict("2024-01-10", 5), predict("2024-01-10", 999)
(True, False)
>>> entry = latest.get("ACME")
>>> entry["horizon"], [e["horizon"] for e in entry["horizons"]]
(5, [5])
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

import orjson

from forecaster.kafka.client import kafka_python_client, kafka_python_options
from forecaster.kafka.login import refused_login
from forecaster.settings import Settings
from models.core.config import MAX_HORIZON

# kafka-python (slow to import) loads inside the functions that consume, not with the module.

log = logging.getLogger(__name__)

RECORD_TYPES = ("prediction", "score")


class _Ticker:
    """A ticker's latest records per horizon, and the dates of its last two bars' predictions."""

    __slots__ = ("horizons", "newest", "previous")

    def __init__(self) -> None:
        self.horizons: dict[int, dict[str, Any]] = {}
        self.newest = ""
        self.previous = ""

    def take(self, kind: str, horizon: int, record: dict[str, Any], as_of: str) -> None:
        if kind == "prediction" and as_of > self.newest:
            # A new bar: horizons last forecast before the bar before it are no longer configured.
            self.previous, self.newest = self.newest, as_of
            for h in [h for h, e in self.horizons.items()
                      if e["prediction"] is not None and e["prediction"]["as_of"] < self.previous]:
                del self.horizons[h]
        entry = self.horizons.setdefault(horizon, {"horizon": horizon, "prediction": None, "score": None})
        entry[kind] = record

    def entry(self, ticker: str) -> dict[str, Any]:
        """What the API shows: the shortest horizon's records, and each horizon's."""
        horizons = [dict(self.horizons[h]) for h in sorted(self.horizons)]
        return {"ticker": ticker, **horizons[0], "horizons": horizons}


class LatestPredictions:
    """The latest ``prediction`` and ``score`` record per ticker and horizon of the predictions topic.

    Parameters
    ----------
    settings
        Bootstrap servers, security settings and ``topic_predictions``.
    check_every_s
        Seconds between checks that the broker answers (which also measure the lag).
    retry_s
        Seconds between attempts to connect while the broker or the topic is missing.
    """

    def __init__(self, settings: Settings, *, check_every_s: float = 5.0, retry_s: float = 2.0) -> None:
        self.settings = settings
        self.topic = settings.topic_predictions
        self._check_every_s = check_every_s
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._latest: dict[str, _Ticker] = {}
        self._positions: dict[Any, int] = {}
        self._records = 0
        self._skipped = 0
        self._reachable = False
        self._detail = "not started"
        self._lag: int | None = None
        self._checked_at: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what the app reads -------------------------------------------------------------------

    def get(self, ticker: str) -> dict[str, Any] | None:
        """``{"ticker", "horizon", "prediction", "score", "horizons"}`` of one ticker (the shortest
        horizon's latest records, and ``{"horizon", "prediction", "score"}`` of each), or None if none
        was read."""
        with self._lock:
            latest = self._latest.get(ticker)
            return None if latest is None else latest.entry(ticker)

    def all(self) -> list[dict[str, Any]]:
        """Every ticker's entry, by ticker."""
        with self._lock:
            return [self._latest[t].entry(t) for t in sorted(self._latest)]

    def status(self) -> dict[str, Any]:
        """Whether the broker answered the last check, why not, and how far the reading is."""
        with self._lock:
            return {"topic": self.topic, "reachable": self._reachable, "detail": self._detail,
                    "checked_at": self._checked_at, "records_read": self._records,
                    "records_skipped": self._skipped, "tickers": len(self._latest), "lag": self._lag}

    def apply(self, record: Any) -> bool:
        """Keep ``record`` if it is a prediction or score of a ticker, dated, at a horizon in
        1..MAX_HORIZON; whether it was kept."""
        fields = record if isinstance(record, dict) else {}
        ticker, kind, as_of = fields.get("ticker"), fields.get("record_type"), fields.get("as_of", "")
        horizon = fields.get("horizon", 1)
        with self._lock:
            if (not isinstance(ticker, str) or kind not in RECORD_TYPES or not isinstance(as_of, str)
                    or type(horizon) is not int or not 1 <= horizon <= MAX_HORIZON):
                self._skipped += 1
                return False
            self._latest.setdefault(ticker, _Ticker()).take(kind, horizon, record, as_of)
            self._records += 1
            return True

    # --- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start reading in a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("the predictions reader was already started")
        self._set_status(False, f"connecting to {self.settings.bootstrap}")
        self._thread = threading.Thread(target=self._run, name="latest-predictions", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread and close its consumer; returns once both are done."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError(f"the predictions reader did not stop within {timeout_s} s")

    def _set_status(self, reachable: bool, detail: str, lag: int | None = None) -> None:
        with self._lock:
            self._reachable, self._detail, self._lag = reachable, detail, lag
            self._checked_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    def _run(self) -> None:
        from kafka.errors import KafkaError

        consumer = None
        next_check = 0.0
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._connect()
                    if consumer is None:
                        self._stop.wait(self._retry_s)
                        continue
                for batch in consumer.poll(timeout_ms=500).values():
                    for message in batch:
                        self._take(message)
                if time.monotonic() >= next_check:
                    self._check(consumer)
                    next_check = time.monotonic() + self._check_every_s
            except KafkaError as error:
                name, text = type(error).__name__, str(error)
                # kafka-python reports a refused SASL login as a broker it cannot reach.
                refused = refused_login(self.settings) if consumer is None else None
                self._set_status(False, refused or (text if text.startswith(name) else f"{name}: {text}"))
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(self._retry_s)
        if consumer is not None:
            consumer.close()
        self._set_status(False, "stopped")

    def _connect(self) -> Any:
        """A consumer assigned every partition, at the saved positions; None if the topic is missing."""
        from kafka import KafkaConsumer, TopicPartition

        # A short bootstrap timeout keeps a connection attempt from delaying stop() for long; a reader
        # never creates the topic (brokers may auto-create it on a metadata request).
        consumer = kafka_python_client(KafkaConsumer, **kafka_python_options(self.settings),
                                       enable_auto_commit=False, client_id="forecaster-api",
                                       bootstrap_timeout_ms=2000, allow_auto_create_topics=False)
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            consumer.close()
            self._set_status(True, f"the topic {self.topic} does not exist yet")
            return None
        assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        for tp in assigned:
            if tp in self._positions:
                consumer.seek(tp, self._positions[tp])
            else:
                consumer.seek_to_beginning(tp)
        return consumer

    def _take(self, message: Any) -> None:
        from kafka import TopicPartition

        self._positions[TopicPartition(message.topic, message.partition)] = message.offset + 1
        try:
            record = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            record = None
        self.apply(record)

    def _check(self, consumer: Any) -> None:
        """Ask the broker for the end offsets: it answers (or raises), and the lag follows."""
        end = consumer.end_offsets(list(consumer.assignment()), timeout_ms=3000)
        lag = sum(max(0, offset - consumer.position(tp)) for tp, offset in end.items())
        self._set_status(True, "ok", lag)
