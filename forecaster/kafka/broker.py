"""A real, local, single-node Apache Kafka broker (KRaft) for development, tests and the demo.

The jars come from Maven Central through ``resources/pom.xml`` (package data) into a cache folder
(:func:`resolve_jars`); the broker runs as a background JVM whose PID and bootstrap address are
recorded in its data folder, so ``forecaster kafka status`` and ``stop`` find it from any shell;
a recorded PID counts only while it is this folder's Kafka JVM (:meth:`LocalBroker.owns`), since
after a crash or a reboot the OS may have given it to any process.
Starting again on the same data folder keeps every topic and message. Started with a
:class:`BrokerSecurity`, its client port requires TLS and a SCRAM login (SASL_SSL).

Examples
--------
>>> broker = LocalBroker("/tmp/example-kafka")
>>> broker.pid_file.name, broker.running()
('broker.pid', False)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from string import Template
from typing import Any, get_type_hints

from forecaster.kafka.client import kafka_python_client

# kafka-python (slow to import) loads only where a client is made: `forecaster kafka`
# and the broker fixture of the tests import this module without one.

KAFKA_VERSION = "3.9.2"
#: The pom, the KRaft configuration template and the logging configuration, shipped in the package.
RESOURCES = Path(__file__).resolve().parent / "resources"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
#: The largest PID any OS gives (``pid_t`` is a 32-bit int); a larger one overflows ``os.kill``.
PID_MAX = 2**31 - 1
#: The broker's main class, followed on its command line by its ``server.properties`` (LocalBroker.start).
KAFKA_MAIN = "kafka.Kafka"


class BrokerError(RuntimeError):
    """The local broker cannot be installed, started or stopped; the message says why and what to do."""


def cache_dir() -> Path:
    """Where the resolved jars live: ``$FORECASTER_KAFKA_CACHE`` or the user's cache folder."""
    configured = os.environ.get("FORECASTER_KAFKA_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stream-forecaster" / f"kafka-{KAFKA_VERSION}"


def _require(program: str, package_hint: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise BrokerError(
            f"`{program}` was not found on PATH; the local Kafka broker needs it. "
            f"Install {package_hint} (Debian/Ubuntu: `apt-get install {package_hint}`)."
        )
    return path


def java_major_version(java: str) -> int:
    """The major version of a ``java`` executable (17 for ``openjdk version "17.0.15"``)."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    for token in out.split():
        token = token.strip('"')
        if token[:1].isdigit():
            head = token.split(".")[0]
            return int(head) if head != "1" else int(token.split(".")[1])
    raise BrokerError(f"cannot tell the version of {java}: {out.strip()!r}")


def resolve_jars(libs: Path | None = None) -> Path:
    """Make sure the Kafka jars are in ``libs`` (default :func:`cache_dir`/libs), running Maven once."""
    libs = libs or cache_dir() / "libs"
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return libs
    mvn = _require("mvn", "maven")
    _require("java", "openjdk-17-jre-headless")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    # Maven runs on a copy of the pom in the cache: an installed package's folder may be read-only.
    pom = libs.parent / "pom.xml"
    shutil.copyfile(RESOURCES / "pom.xml", pom)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-Dkafka.libs={staging}", f"-Dkafka.version={KAFKA_VERSION}"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0 or not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        raise BrokerError(
            "Maven could not resolve Apache Kafka from Maven Central:\n"
            + (result.stdout + result.stderr)[-3000:]
        )
    # Renamed at the end so an interrupted download never looks complete.
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


#: Where :func:`free_port` looks first: below the OS's ephemeral ports (Linux's default starts at
#: 32768), above the well-known and most registered services' ports.
_QUIET_PORTS = range(20000, 32768)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, for a listener the caller starts next.

    It is taken below the OS's ephemeral range where the OS says where that starts: a port the OS
    hands out as free (bind to port 0) is an ephemeral one, which any outgoing connection of the
    machine (a Kafka client's) can take before the listener binds it, and a test worker once failed
    with "Address already in use" that way.
    """
    low = _ephemeral_start()
    quiet = range(_QUIET_PORTS.start, min(_QUIET_PORTS.stop, low)) if low is not None else range(0)
    for port in secrets.SystemRandom().sample(quiet, min(len(quiet), 50)):
        if port_is_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _ephemeral_start() -> int | None:
    """The first port of the OS's ephemeral range, where it says (Linux), else None."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def quiet_kafka_logs() -> Iterator[None]:
    """Silence kafka-python's logger: a broker still starting refuses connections, which is expected
    while we poll it, and kafka-python would log each refusal as an error."""
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_log.setLevel(level)


def broker_answers(bootstrap: str, timeout_s: float = 5.0, options: Mapping[str, Any] | None = None) -> bool:
    """True when the broker answers a metadata request; ``options``: kafka-python's security options."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    with quiet_kafka_logs():
        try:
            admin = kafka_python_client(
                KafkaAdminClient, bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                bootstrap_timeout_ms=int(timeout_s * 1000), **(options or {}),
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            admin.list_topics()
            return True
        except (KafkaError, OSError):
            return False
        finally:
            admin.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _command_line(pid: int) -> list[str] | None:
    """The arguments of process ``pid`` from ``/proc``; empty when it is gone (or a zombie or kernel
    thread, which have none), None where the OS has no ``/proc`` (macOS) to tell."""
    if not Path("/proc/self/cmdline").exists():
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [os.fsdecode(arg) for arg in raw.rstrip(b"\0").split(b"\0")] if raw else []


#: The SASL mechanisms a secured local broker offers; its users get credentials for one of them.
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
#: Characters that Kafka's ``--add-scram`` syntax (``MECH=[name=N,password=P]``) cannot carry unquoted.
_SCRAM_RESERVED = ',[]="\\'


@dataclass(frozen=True)
class BrokerSecurity:
    """A client listener that requires TLS and a SCRAM login (``SASL_SSL``), with its users.

    The broker's own (inter-broker) traffic goes through the same listener, logged in as the first
    user, so no port of the broker but the controller's (loopback, no client API) takes a client
    that did not log in.

    Parameters
    ----------
    keystore
        PKCS12 file with the broker's private key and certificate chain; the certificate must name
        the address clients use (``127.0.0.1``: an IP subject alternative name).
    keystore_password
        Password of ``keystore`` (and of the key in it).
    cafile
        PEM certificate of the CA that signed the broker's certificate: what clients are given as
        ``ssl_cafile``, and what the broker trusts when it connects to itself.
    users
        User name -> password. SCRAM credentials are created when the data folder is first formatted;
        a broker started again on the same folder keeps the users it had.
    mechanism
        ``SCRAM-SHA-512`` or ``SCRAM-SHA-256``.

    Examples
    --------
    >>> s = BrokerSecurity(Path("ks.p12"), "pw", Path("ca.pem"), {"admin": "s3cret"})
    >>> s.scram_arguments()
    ['--add-scram', 'SCRAM-SHA-512=[name=admin,password=s3cret]']
    >>> "s3cret" in repr(s)
    False
    >>> BrokerSecurity(Path("ks.p12"), "pw", Path("ca.pem"), {"a,b": "x"})
    Traceback (most recent call last):
    ...
    ValueError: SCRAM user names and passwords cannot hold spaces or any of ,[]="\\ (user 'a,b')
    """

    keystore: Path
    keystore_password: str = field(repr=False)
    cafile: Path
    users: Mapping[str, str] = field(repr=False)
    mechanism: str = "SCRAM-SHA-512"

    def __post_init__(self) -> None:
        if self.mechanism not in SCRAM_MECHANISMS:
            raise ValueError(f"the broker's SASL mechanism must be one of {', '.join(SCRAM_MECHANISMS)}, "
                             f"not {self.mechanism!r}")
        if not self.users:
            raise ValueError("a broker that requires SASL needs at least one user")
        for name, password in self.users.items():
            if not name or not password or any(c.isspace() or c in _SCRAM_RESERVED for c in name + password):
                raise ValueError("SCRAM user names and passwords cannot hold spaces or any of "
                                 f"{_SCRAM_RESERVED} (user {name!r})")

    @property
    def admin(self) -> str:
        """The first user: the broker's own login, and the one its readiness check uses."""
        return next(iter(self.users))

    def scram_arguments(self) -> list[str]:
        """The ``kafka-storage format`` arguments that create the users' SCRAM credentials."""
        return [arg for name, password in self.users.items()
                for arg in ("--add-scram", f"{self.mechanism}=[name={name},password={password}]")]

    def client_options(self) -> dict[str, Any]:
        """kafka-python's options for the first user (how the broker checks that it answers)."""
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.admin, "sasl_plain_password": self.users[self.admin],
                "ssl_cafile": str(self.cafile)}

    def server_properties(self) -> str:
        """The lines of ``server.properties`` for the SASL_SSL listener."""
        login = ("org.apache.kafka.common.security.scram.ScramLoginModule required "
                 f'username="{self.admin}" password="{self.users[self.admin]}";')
        return "\n".join([
            "# SASL_SSL: TLS with the broker's keystore, then a SCRAM login (BrokerSecurity).",
            f"sasl.enabled.mechanisms={self.mechanism}",
            f"sasl.mechanism.inter.broker.protocol={self.mechanism}",
            f"listener.name.sasl_ssl.{self.mechanism.lower()}.sasl.jaas.config={login}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.location={self.keystore}",
            f"ssl.keystore.password={self.keystore_password}",
            f"ssl.key.password={self.keystore_password}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.cafile}",
            "ssl.client.auth=none",
            "",
        ])


def self_signed_keystore(folder: Path) -> tuple[Path, str, Path]:
    """A PKCS12 keystore in ``folder`` with a self-signed certificate for 127.0.0.1 and localhost, made
    by the JDK's ``keytool`` once and kept: ``(keystore, its password, the certificate as PEM)``.

    The certificate is its own CA: clients trust it through ``ssl_cafile``. For a local broker; a
    shared one gets its certificate from the organisation's CA.
    """
    keystore, password_file, cafile = folder / "broker.p12", folder / "keystore.password", folder / "ca.pem"
    if keystore.exists() and password_file.exists() and cafile.exists():
        return keystore, password_file.read_text().strip(), cafile
    keytool = _require("keytool", "openjdk-17-jre-headless")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    password = secrets.token_urlsafe(24)
    for path in (keystore, cafile):
        path.unlink(missing_ok=True)
    for command in (
        [keytool, "-genkeypair", "-alias", "broker", "-keyalg", "EC", "-groupname", "secp256r1",
         "-dname", "CN=localhost", "-ext", "SAN=ip:127.0.0.1,dns:localhost", "-validity", "3650",
         "-storetype", "PKCS12", "-keystore", str(keystore), "-storepass:env", "KEYTOOL_STOREPASS"],
        [keytool, "-exportcert", "-rfc", "-alias", "broker", "-keystore", str(keystore),
         "-storepass:env", "KEYTOOL_STOREPASS", "-file", str(cafile)],
    ):
        result = subprocess.run(command, capture_output=True, text=True, check=False,
                                env={**os.environ, "KEYTOOL_STOREPASS": password})
        if result.returncode != 0:
            raise BrokerError(f"keytool could not make the broker's certificate in {folder}:\n"
                              f"{result.stdout}{result.stderr}")
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    return keystore, password, cafile


@dataclass
class BrokerInfo:
    pid: int
    bootstrap: str
    port: int
    controller_port: int
    data_dir: str
    #: The client listener's protocol: PLAINTEXT, or SASL_SSL for a broker started with a BrokerSecurity.
    security_protocol: str = "PLAINTEXT"

    @classmethod
    def from_record(cls, record: object) -> BrokerInfo:
        """The info in a decoded ``broker.json``.

        Raises
        ------
        ValueError
            Naming the first field that is missing, unknown or not of its type, or a PID the broker
            cannot have: 1 (init), 0 or a negative one (``os.kill`` reads those as process groups, -1
            as every process) or one past :data:`PID_MAX`.

        Examples
        --------
        >>> BrokerInfo.from_record({"pid": 4242, "bootstrap": "127.0.0.1:9092", "port": 9092,
        ...                         "controller_port": 20001, "data_dir": "/tmp/k"}).pid
        4242
        >>> BrokerInfo.from_record({"pid": "4242", "bootstrap": "127.0.0.1:9092", "port": 9092,
        ...                         "controller_port": 20001, "data_dir": "/tmp/k"})
        Traceback (most recent call last):
        ...
        ValueError: "pid" is "4242", not a whole number
        """
        if not isinstance(record, dict):
            raise ValueError(f"{json.dumps(record)[:40]} where a JSON object is expected")
        types = get_type_hints(cls)
        unknown = sorted(set(record) - set(types))
        if unknown:
            raise ValueError(f"an unknown field {json.dumps(unknown[0])[:40]}")
        for spec in fields(cls):
            if spec.name not in record:
                if spec.default is MISSING:
                    raise ValueError(f'no "{spec.name}"')
                continue
            value, kind = record[spec.name], types[spec.name]
            # json reads `true` as a bool, which Python counts as an int.
            if not isinstance(value, kind) or isinstance(value, bool):
                said = "a whole number" if kind is int else "a string"
                raise ValueError(f'"{spec.name}" is {json.dumps(value)[:40]}, not {said}')
        if not 1 < record["pid"] <= PID_MAX:
            raise ValueError(f'"pid" is {str(record["pid"])[:30]}, not a PID the broker can have '
                             f"(2 to {PID_MAX})")
        return cls(**record)


class LocalBroker:
    """One broker living in ``data_dir``: its config, logs, storage, PID and address.

    Parameters
    ----------
    data_dir
        Folder of the broker's state; created on first start. Topics and messages kept there
        survive a stop and start.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.log_dir = self.data_dir / "kraft-logs"
        self.pid_file = self.data_dir / "broker.pid"
        self.info_file = self.data_dir / "broker.json"
        self.config_file = self.data_dir / "server.properties"
        self.output_file = self.data_dir / "logs" / "broker.out"
        #: The SCRAM users (names and mechanism, no passwords) created when the storage was formatted.
        self.users_file = self.data_dir / "scram-users.json"

    # -- inspection ------------------------------------------------------------------------

    def info(self) -> BrokerInfo | None:
        """What the last start recorded, or None when it never started here (or the file cannot be read).

        The record stays after the broker stops: its PID may name another process since (see :meth:`owns`).

        Raises
        ------
        BrokerError
            When ``broker.json`` is not the record :meth:`start` writes: its PID could name any
            process, so nothing is signalled or reported running on its word.
        """
        try:
            text = self.info_file.read_text()
        except OSError:
            return None
        try:
            return BrokerInfo.from_record(json.loads(text))
        except ValueError as exc:  # json's errors are ValueErrors too
            raise BrokerError(f"{self.info_file} is not the record `forecaster kafka start` writes ({exc}): "
                              f"remove it once no broker runs from {self.data_dir}") from None

    def owns(self, pid: int) -> bool:
        """True when process ``pid`` is alive and is this folder's broker: ``java`` running
        ``kafka.Kafka`` on this folder's ``server.properties``, as :meth:`start` launches it.

        A recorded PID outlives its broker (a crash, a reboot) and the OS may give it to any process,
        which ``stop`` would then kill. Where the OS has no ``/proc`` (macOS) the command line cannot be
        read, and a live PID other than this process's is taken for the broker, as it always was.
        """
        if not 1 < pid <= PID_MAX or not _pid_alive(pid):
            return False
        argv = _command_line(pid)
        if argv is None:
            return pid != os.getpid()
        main = argv.index(KAFKA_MAIN) if KAFKA_MAIN in argv else -1
        return (main > 0 and Path(argv[0]).name == "java"
                and argv[main + 1:main + 2] == [str(self.config_file)])

    def running(self) -> bool:
        """True when the recorded process is alive and is this folder's broker (:meth:`owns`)."""
        info = self.info()
        return info is not None and self.owns(info.pid)

    # -- control ---------------------------------------------------------------------------

    def start(self, port: int = 9092, timeout_s: float = START_TIMEOUT_S,
              security: BrokerSecurity | None = None) -> BrokerInfo:
        """Start the broker in the background and wait until it answers; idempotent.

        With ``security``, the client port requires TLS and a SCRAM login (SASL_SSL), and the
        broker counts as answering once its first user can log in.
        """
        info = self.info()
        if info is not None and self.owns(info.pid):
            if info.port != port:
                raise BrokerError(
                    f"a broker of {self.data_dir} already runs on port {info.port} (PID {info.pid}); "
                    "stop it first to change its port"
                )
            return info
        java = _require("java", "openjdk-17-jre-headless")
        if java_major_version(java) < 17:
            raise BrokerError(f"{java} is older than Java 17; install openjdk-17-jre-headless")
        if not port_is_free(port):
            raise BrokerError(
                f"port {port} is already in use; stop what listens there or choose another "
                "with --port (or FORECASTER_BOOTSTRAP to use a broker that already runs)"
            )
        libs = resolve_jars()
        controller_port = free_port()
        if (self.log_dir / "meta.properties").exists():
            self._check_users(security)
        self._write_config(port, controller_port, security)
        if not (self.log_dir / "meta.properties").exists():
            self._format(java, libs, security)
        self.output_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.output_file, "ab") as out:
            process = subprocess.Popen(
                [java, *self._jvm_options(), "-cp", f"{libs}/*", KAFKA_MAIN, str(self.config_file)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the CLI and is not hit by its Ctrl-C
            )
        info = BrokerInfo(process.pid, f"127.0.0.1:{port}", port, controller_port, str(self.data_dir),
                          "PLAINTEXT" if security is None else "SASL_SSL")
        self.pid_file.write_text(f"{process.pid}\n")
        # Renamed into place: a record cut short (a crash, a full disk) would stop every later command.
        partial = self.info_file.with_name(self.info_file.name + ".partial")
        partial.write_text(json.dumps(info.__dict__))
        partial.replace(self.info_file)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with status {process.returncode} while starting; "
                    f"see {self.output_file} and {self.data_dir / 'logs' / 'server.log'}:\n"
                    + self._tail(self.output_file)
                )
            if broker_answers(info.bootstrap, timeout_s=2.0,
                              options=None if security is None else security.client_options()):
                return info
            time.sleep(0.25)
        self.stop()
        raise BrokerError(f"the broker did not answer within {timeout_s:.0f} s; see {self.output_file}")

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker cleanly (SIGTERM, then wait); False when none was running.

        A recorded PID that is gone or is another process (:meth:`owns`) means none runs: nothing is
        signalled, and ``broker.json`` is kept, as after any stop (the next start rewrites it).
        """
        info = self.info()
        if info is None or not self.owns(info.pid):
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        # Asked again each time, not just whether the PID lives: once the broker exits, the OS may give
        # its PID to another process, which the SIGKILL below must not reach.
        while self.owns(info.pid):
            if time.monotonic() > deadline:
                os.kill(info.pid, signal.SIGKILL)
                raise BrokerError(
                    f"the broker (PID {info.pid}) did not stop within {timeout_s:.0f} s and was killed"
                )
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    # -- helpers ---------------------------------------------------------------------------

    def _write_config(self, port: int, controller_port: int, security: BrokerSecurity | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        template = Template((RESOURCES / "server.properties").read_text())
        name = "PLAINTEXT" if security is None else "SASL_SSL"
        text = template.substitute(
            listeners=f"{name}://127.0.0.1:{port}", advertised_listeners=f"{name}://127.0.0.1:{port}",
            inter_broker_listener=name, controller_port=controller_port, log_dir=self.log_dir,
            security="" if security is None else security.server_properties(),
        )
        # The file holds the keystore's and the first user's passwords when the broker is secured: created
        # owner-only, not made so once written, and narrowed before writing when an older one was wider.
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as out:
            os.fchmod(fd, 0o600)
            out.write(text)

    def _jvm_options(self) -> list[str]:
        heap = os.environ.get("FORECASTER_KAFKA_HEAP", "512m")
        return [
            f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{RESOURCES / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
        ]

    def _format(self, java: str, libs: Path, security: BrokerSecurity | None) -> None:
        cluster_id = _kafka_uuid()
        result = subprocess.run(
            [java, *self._jvm_options(), "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
             # `=`: a random id may start with "-", which would read as an option.
             f"--cluster-id={cluster_id}", f"--config={self.config_file}",
             *(security.scram_arguments() if security else [])],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting {self.log_dir} failed:\n{result.stdout}{result.stderr}")
        users = sorted(security.users) if security else []
        self.users_file.write_text(json.dumps({"mechanism": security.mechanism if security else None,
                                               "users": users}))

    def _check_users(self, security: BrokerSecurity | None) -> None:
        """BrokerError when ``security`` names a user the formatted storage does not have: SCRAM users
        are created by the format, so the broker would refuse every login."""
        if security is None:
            return
        try:
            formatted = json.loads(self.users_file.read_text())
        except (OSError, ValueError):
            formatted = {"mechanism": None, "users": []}
        missing = [name for name in security.users
                   if name not in formatted["users"] or formatted["mechanism"] != security.mechanism]
        if missing:
            raise BrokerError(
                f"the broker data in {self.data_dir} has no {security.mechanism} user {missing[0]!r} (SCRAM "
                "users are created when a data folder is first used): start the secured broker with a new "
                "--data-dir, or stop it and remove this one"
            )

    @staticmethod
    def _tail(path: Path, lines: int = 20) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _kafka_uuid() -> str:
    # Kafka cluster ids are 16 random bytes in URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
