"""Configuration: a TOML file, then `PROFILESTREAM_<SECTION>_<KEY>` environment overrides.

Everything here is parsed and checked once, at start-up, into frozen dataclasses, so the rest of
the program sees typed values (durations as int milliseconds) and a mistake in the configuration
stops the program with a message naming the key, instead of surfacing hours later as odd results.

The sections are table-driven: each one is a frozen dataclass whose fields carry their parser in
`metadata`, and `Config` lists the sections as fields. Adding a section (say `[scores]`) is a new
dataclass plus one field of `Config`; loading, environment overrides and error messages follow.

Environment variables (the section is matched first, the rest is the key):

- `PROFILESTREAM_TIME_ALLOWED_LATENESS=5s` sets `[time] allowed_lateness`;
- `PROFILESTREAM_TOPICS_PARTITIONS=6` sets `[topics] partitions` (parsed as an integer);
  `PROFILESTREAM_TOPICS_REPLICATION_FACTOR=3` sets `[topics] replication_factor` (production: 3);
- `PROFILESTREAM_IDENTITY_BLOCKED_VALUES` is a JSON array (`["", "n/a"]`) or a comma-separated
  list (`n/a, none`; items are trimmed; an empty variable means no blocked values);
- `PROFILESTREAM_KAFKA_BROKERS` sets `[kafka] brokers`; any other `PROFILESTREAM_KAFKA_<NAME>` is a
  librdkafka property whose underscores become dots: `PROFILESTREAM_KAFKA_SASL_MECHANISM=PLAIN`
  sets `sasl.mechanism`, `PROFILESTREAM_KAFKA_SECURITY_PROTOCOL` sets `security.protocol`.

An unknown key in a known section is an error (file or environment), so a typo cannot pass
silently. Variables whose section is not a configuration section (e.g. `PROFILESTREAM_CONFIG`)
are left alone: they may belong to the command line or the tooling around it.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from profilestream.domain.roles import TOPIC_ROLES
from profilestream.domain.rules import DEFAULT_BLOCKED, Rules
from profilestream.domain.scores import MODES, Band, ScoreSettings
from profilestream.domain.units import DAY, HOUR, MINUTE, SECOND

ENV_PREFIX = "PROFILESTREAM_"


class ConfigError(ValueError):
    """A bad configuration value; `str()` names the key (`time.allowed_lateness: ...`)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


# --- value kinds: a TOML parser and a parser for environment text -------------------------

MAX_DURATION_DAYS = 36_500  # a century: longer is a typo, and would overflow event-time arithmetic
MAX_DURATION_MS = MAX_DURATION_DAYS * DAY
_UNITS_MS = {"ms": 1, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY}
_DURATION = re.compile(r"(-?)([0-9]+)(ms|s|m|h|d)")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def parse_duration(text: str) -> int:
    """`"90s"`, `"30m"`, `"1h"`, `"7d"`, `"500ms"`, `"0s"` -> int milliseconds."""
    if not isinstance(text, str):
        got = f"{type(text).__name__} {text!r}"
        raise ValueError(f"expected a duration string (e.g. 90s, 30m, 1h, 7d), got {got}")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f'"{text}" is not a duration (use e.g. 90s, 30m, 1h, 7d)')
    if match.group(1):
        raise ValueError(f'"{text}" is negative; a duration must be 0s or more')
    ms = int(match.group(2)) * _UNITS_MS[match.group(3)]
    if ms > MAX_DURATION_MS:
        raise ValueError(f'"{text}" is longer than the longest duration accepted ({MAX_DURATION_DAYS}d)')
    return ms


def parse_optional_duration(text: Any) -> int | None:
    """A duration, or `"off"` (None): no bound at all (`time.max_future`)."""
    if isinstance(text, str) and text.strip().lower() == "off":
        return None
    return parse_duration(text)


def _check_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__} {value!r}")
    return value


def _check_topic(value: Any) -> str:
    name = _check_str(value)
    if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f'"{name}" is not a valid Kafka topic name (letters, digits, ".", "_", "-")')
    return name


def _check_brokers(value: Any) -> str:
    brokers = _check_str(value).strip()
    if not brokers:
        raise ValueError("must name at least one broker (host:port)")
    return brokers


def _check_positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"must be 1 or more, got {value}")
    return value


def _check_str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of strings, got {type(value).__name__} {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"expected a list of strings, found {type(item).__name__} {item!r}")
    return tuple(value)


def _check_mode(value: Any) -> str:
    mode = _check_str(value)
    if mode not in MODES:
        raise ValueError(f'"{mode}" is not a scoring mode (use {" or ".join(MODES)})')
    return mode


def _check_band(value: Any) -> tuple[float, float]:
    """`[low, high]`: two numbers, 0 <= low <= high."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
    ):
        raise ValueError(f"expected [low, high] (two numbers), got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or low > high:
        raise ValueError(f"need 0 <= low <= high, got [{value[0]}, {value[1]}]")
    return low, high


def _check_sketch_k(value: Any) -> int:
    k = _check_positive_int(value)
    if not 8 <= k <= 65535:
        raise ValueError(f"must be from 8 to 65535 (the KLL sketch's k), got {k}")
    return k


def _check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {type(value).__name__} {value!r}")
    return value


def _bool_text(text: str) -> bool:
    word = text.strip().lower()
    if word not in ("true", "false", "1", "0"):
        raise ValueError(f'"{text}" is not true or false')
    return word in ("true", "1")


def _band_text(text: str) -> list[Any]:
    items = _list_text(text)
    try:
        return [float(v) if isinstance(v, str) else v for v in items]
    except ValueError:
        raise ValueError(f'"{text}" is not two numbers (e.g. 30,90)') from None


def _int_text(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f'"{text}" is not an integer') from None


def _list_text(text: str) -> list[Any]:
    if text.strip().startswith("["):
        try:
            items: list[Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a valid JSON array: {exc}") from None
        return items
    return [item.strip() for item in text.split(",")] if text.strip() else []


class Kind(NamedTuple):
    """How to check a value from TOML, and how to turn environment text into such a value."""

    check: Callable[[Any], Any]
    from_env: Callable[[str], Any] = lambda text: text


STR = Kind(_check_str)
TOPIC = Kind(_check_topic)
BROKERS = Kind(_check_brokers)
POSITIVE_INT = Kind(_check_positive_int, _int_text)
DURATION = Kind(parse_duration)
OPTIONAL_DURATION = Kind(parse_optional_duration)
STR_LIST = Kind(_check_str_list, _list_text)
SCORE_MODE = Kind(_check_mode)
BAND = Kind(_check_band, _band_text)
SKETCH_K = Kind(_check_sketch_k, _int_text)
BOOL = Kind(_check_bool, _bool_text)


def _setting(kind: Kind, default: Any) -> Any:
    """A dataclass field carrying its kind; defaults go through the same check as user values."""
    value = kind.check(default)
    return field(default=value, metadata={"kind": kind})


# --- the sections --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """`[kafka]`: `brokers`, and every other key passed to librdkafka as is (`extra`)."""

    OPEN = True  # unknown keys are librdkafka properties, not typos

    brokers: str = _setting(BROKERS, "127.0.0.1:9092")
    extra: dict[str, str] = field(default_factory=dict)

    def client_config(self) -> dict[str, str]:
        """The librdkafka configuration: `bootstrap.servers` plus the extra properties."""
        return {"bootstrap.servers": self.brokers, **self.extra}


@dataclass(frozen=True, slots=True)
class TopicsConfig:
    """`[topics]`: the topic name of each role, and the layout `topics create` gives new topics.

    `partitions` is the partition count of each topic; `replication_factor` the number of brokers
    holding a copy of each partition (default 1, right for one local broker; in production use 3,
    so that a broker lost keeps every partition readable and writable). A factor above the number
    of brokers is refused by the cluster, and `topics create` says so naming this key.
    """

    clickstream: str = _setting(TOPIC, "clickstream")
    crm_changes: str = _setting(TOPIC, "crm-changes")
    profiles: str = _setting(TOPIC, "profiles")
    merges: str = _setting(TOPIC, "profile-merges")
    triggers: str = _setting(TOPIC, "triggers")
    crm_feed: str = _setting(TOPIC, "crm-feed")
    dead_letters: str = _setting(TOPIC, "dead-letters")
    partitions: int = _setting(POSITIVE_INT, 3)
    replication_factor: int = _setting(POSITIVE_INT, 1)

    def name(self, role: str) -> str:
        """The configured topic name of a role (`"merges"` -> `"profile-merges"` by default)."""
        if role not in TOPIC_ROLES:
            raise KeyError(f"unknown topic role {role!r} (known: {', '.join(TOPIC_ROLES)})")
        name: str = getattr(self, role)
        return name

    def names(self) -> dict[str, str]:
        """Every role with its topic name."""
        return {role: getattr(self, role) for role in TOPIC_ROLES}


@dataclass(frozen=True, slots=True)
class SessionsConfig:
    """`[sessions]` (ms)."""

    gap: int = _setting(DURATION, "30m")


@dataclass(frozen=True, slots=True)
class TriggersConfig:
    """`[triggers]` (ms)."""

    cart_abandon_after: int = _setting(DURATION, "60m")
    return_visit_after: int = _setting(DURATION, "7d")


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """`[identity]`: blocked values as written (normalised by `Config.rules()`), window in ms."""

    blocked_values: tuple[str, ...] = _setting(STR_LIST, list(DEFAULT_BLOCKED))
    order_match_window: int = _setting(DURATION, "30d")


@dataclass(frozen=True, slots=True)
class TimeConfig:
    """`[time]` (ms)."""

    allowed_lateness: int = _setting(DURATION, "30s")
    idle_after: int = _setting(DURATION, "10s")
    dedup_window: int = _setting(DURATION, "1d")
    max_future: int | None = _setting(OPTIONAL_DURATION, "1h")  # None: "off"


@dataclass(frozen=True, slots=True)
class RunConfig:
    """`[run]` (additions to the contract): how `run` meets the brokers and snapshots state."""

    connect_timeout: int = _setting(DURATION, "30s")  # no broker answering by then: exit non-zero
    snapshot_interval: int = _setting(DURATION, "10s")  # Bytewax epoch / recovery snapshot interval
    progress_interval: int = _setting(DURATION, "10s")  # between `progress` log lines
    emit_interval: int = _setting(DURATION, "500ms")  # at most this often a changed profile's record
    metrics_host: str = _setting(STR, "127.0.0.1")  # where `run --metrics-port` listens; "0.0.0.0": everywhere
    # an always-on run's recovery state: <state_dir>/<hash of brokers and topic names>; "off": none
    state_dir: str = _setting(STR, ".profilestream/state")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """`[store]` (an addition to the contract): where `profile get` keeps its local store."""

    path: str = _setting(STR, ".profilestream/store")


@dataclass(frozen=True, slots=True)
class ScoresConfig:
    """`[scores]` (an addition to the contract): RFM/RFE bands and the BG/NBD model file.

    Each band is `[low, high]`: a count or revenue below `low` scores 1, above `high` 3, else 2;
    days since the last order / activity the other way round. `mode = "auto"` replaces the bands
    by the tertiles of the live profiles (a KLL sketch of `sketch_k`). `model` is the JSON file of
    `profilestream fit-model` (relative to the working directory); "" means no predictions.
    """

    mode: str = _setting(SCORE_MODE, "static")
    rfm_recency_days: tuple[float, float] = _setting(BAND, [30, 90])
    rfm_frequency: tuple[float, float] = _setting(BAND, [2, 4])
    rfm_monetary: tuple[float, float] = _setting(BAND, [50, 250])
    rfe_recency_days: tuple[float, float] = _setting(BAND, [7, 30])
    rfe_frequency: tuple[float, float] = _setting(BAND, [2, 5])
    rfe_engagement: tuple[float, float] = _setting(BAND, [5, 20])
    sketch_k: int = _setting(SKETCH_K, 200)
    model: str = _setting(STR, "")

    def settings(self) -> ScoreSettings:
        """The domain's view; reads the model file (ConfigError naming `scores.model` if bad)."""
        model = None
        if self.model:
            from profilestream.bgnbd import BgNbd

            try:
                model = BgNbd.load(self.model)
            except FileNotFoundError:
                raise ConfigError(
                    "scores.model", f"no such file: {self.model} (write one with `profilestream fit-model --out FILE`)"
                ) from None
            except (OSError, ValueError) as exc:
                raise ConfigError("scores.model", f"{self.model}: {exc}") from None
        bands = {
            name: Band(*getattr(self, name))
            for name in (
                "rfm_recency_days",
                "rfm_frequency",
                "rfm_monetary",
                "rfe_recency_days",
                "rfe_frequency",
                "rfe_engagement",
            )
        }
        from profilestream.scoring.kll import KllSketch  # the shell injects auto mode's sketch

        return ScoreSettings(mode=self.mode, sketch_k=self.sketch_k, model=model, sketch=KllSketch, **bands)


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """`[serve]` (contract v2, "HTTP"): where `profilestream serve` listens and how its collector
    treats the browser: the device cookie, the newsletter key parameter, the largest body taken."""

    host: str = _setting(STR, "127.0.0.1")
    port: int = _setting(POSITIVE_INT, 8080)
    api_token: str = _setting(STR, "")  # set: /v1/profiles* and /ui/* need "Authorization: Bearer <token>"
    cookie_name: str = _setting(STR, "ps_device")
    cookie_max_age: int = _setting(DURATION, "400d")
    url_key_param: str = _setting(STR, "ps_ck")
    max_body: int = _setting(POSITIVE_INT, 1048576)
    # additions to the contract (docs/http.md): the origins whose pages may post to the collector
    # from the browser (CORS with credentials, so the device cookie travels; "*": any origin), and
    # the cookie's Secure flag even when the request reached us over plain HTTP (behind a proxy
    # that ends TLS without sending X-Forwarded-Proto)
    cors_origins: tuple[str, ...] = _setting(STR_LIST, [])
    cookie_secure: bool = _setting(BOOL, False)


@dataclass(frozen=True, slots=True)
class SchemaRegistryConfig:
    """`[schema_registry]` (contract v2, "Wire format"): "" = raw schemaless Avro; a URL = the
    Confluent wire format, schemas registered under `<topic>-value`."""

    url: str = _setting(STR, "")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; each field is one TOML section of the same name."""

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    sessions: SessionsConfig = field(default_factory=SessionsConfig)
    triggers: TriggersConfig = field(default_factory=TriggersConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    time: TimeConfig = field(default_factory=TimeConfig)
    run: RunConfig = field(default_factory=RunConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    scores: ScoresConfig = field(default_factory=ScoresConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    schema_registry: SchemaRegistryConfig = field(default_factory=SchemaRegistryConfig)

    def rules(self) -> Rules:
        """The domain's view: durations in ms, blocked values trimmed and lower-cased."""
        return Rules(
            session_gap=self.sessions.gap,
            cart_abandon_after=self.triggers.cart_abandon_after,
            return_visit_after=self.triggers.return_visit_after,
            order_match_window=self.identity.order_match_window,
            allowed_lateness=self.time.allowed_lateness,
            idle_after=self.time.idle_after,
            dedup_window=self.time.dedup_window,
            max_future=self.time.max_future,
            blocked_values=frozenset(v.strip().lower() for v in self.identity.blocked_values),
            scores=self.scores.settings(),
        )


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(Config)}  # type: ignore[misc]


# --- loading -------------------------------------------------------------------------------


def _settings(cls: type) -> dict[str, Kind]:
    return {f.name: f.metadata["kind"] for f in fields(cls) if "kind" in f.metadata}


def _scalar_text(key: str, value: Any) -> str:
    """A librdkafka property value as the string librdkafka wants (`true`, `5000`, ...)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ConfigError(key, f"expected a string, number or boolean, got {type(value).__name__}")


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`security.protocol = "SSL"` unquoted is a nested table in TOML; librdkafka wants the dots."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "no such configuration file") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read the configuration file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML: {exc}") from None


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, tuple[Any, str]]]:
    """{section: {key: (value, variable name)}} from the `PROFILESTREAM_*` variables."""
    by_length = sorted(SECTIONS, key=len, reverse=True)  # longest first: sections may hold "_"
    found: dict[str, dict[str, tuple[Any, str]]] = {}
    for var, text in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :]
        section = next((s for s in by_length if rest.lower().startswith(s + "_")), None)
        if section is None:
            continue
        key = rest[len(section) + 1 :].lower()
        cls = SECTIONS[section]
        kinds = _settings(cls)
        if key in kinds:
            try:
                value = kinds[key].from_env(text)
            except ValueError as exc:
                raise ConfigError(f"{section}.{key}", f"{exc} (from {var})") from None
        elif getattr(cls, "OPEN", False) and key:
            key, value = key.replace("_", "."), text
        else:
            raise ConfigError(f"{section}.{key}", f"unknown key (from {var}); known: {', '.join(kinds)}")
        found.setdefault(section, {})[key] = (value, var)
    return found


def _build_section(name: str, table: dict[str, tuple[Any, str | None]]) -> Any:
    cls = SECTIONS[name]
    kinds = _settings(cls)
    values: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, (raw, source) in table.items():
        where = f" (from {source})" if source else ""
        if key in kinds:
            try:
                values[key] = kinds[key].check(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}.{key}", f"{exc}{where}") from None
        elif getattr(cls, "OPEN", False):
            extra[key] = _scalar_text(f"{name}.{key}", raw)
        else:
            raise ConfigError(f"{name}.{key}", f"unknown key{where}; known: {', '.join(kinds)}")
    if getattr(cls, "OPEN", False):
        if "bootstrap.servers" in extra:
            raise ConfigError(f"{name}.bootstrap.servers", f"set {name}.brokers instead")
        values["extra"] = extra
    return cls(**values)


def _check_topic_names(topics: TopicsConfig) -> None:
    seen: dict[str, str] = {}
    for role, name in topics.names().items():
        if name in seen:
            raise ConfigError(f"topics.{role}", f'"{name}" is already the topic of topics.{seen[name]}')
        seen[name] = role


_PROPERTY = re.compile(r'"([^"]+)"')


def _librdkafka_refusal(conf: dict[str, str]) -> str | None:
    """librdkafka's reason for refusing a property or value of `conf` (None: all accepted).

    A producer is made once without `bootstrap.servers` (no connection) and with a silent logger:
    librdkafka sets every property first (unknown names and bad values fail there, for consumer
    properties too: the configuration is shared) and only then builds the client. What fails in
    that second step ("Failed to create ...": a CA file not there yet, SASL without credentials)
    depends on the machine it runs on and is left to the clients, which report it when they start.
    """
    import logging

    from confluent_kafka import KafkaException, Producer

    silent = logging.getLogger("profilestream.config.kafka_check")
    silent.propagate = False
    if not silent.handlers:
        silent.addHandler(logging.NullHandler())
    try:
        Producer({"logger": silent, **conf})
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        reason: str = error.str() if hasattr(error, "str") else str(error)
        return None if reason.startswith("Failed to create") else reason
    except (TypeError, ValueError) as exc:  # the Python client's own keys (callbacks), given a string
        return str(exc)
    return None


def _check_kafka(kafka: KafkaConfig, sources: Mapping[str, str | None]) -> None:
    """The `[kafka]` properties as librdkafka sees them, checked once at load: an unknown property
    or a bad value is a `ConfigError` naming the key as the user wrote it (and its variable), not a
    traceback at the first client. Nothing to check (and no client made) without extra keys; about
    1 ms otherwise."""
    if not kafka.extra:
        return
    reason = _librdkafka_refusal(kafka.extra)
    if reason is None:
        return
    named = [name for name in _PROPERTY.findall(reason) if name in kafka.extra]
    key = named[0] if named else None
    if key is None:  # an alias (`linger.ms` is reported as `queue.buffering.max.ms`): try each alone
        key = next((k for k in kafka.extra if _librdkafka_refusal({k: kafka.extra[k]}) is not None), None)
    source = sources.get(key) if key is not None else None
    where = f" (from {source})" if source else ""
    raise ConfigError("kafka" if key is None else f"kafka.{key}", f"{reason}{where}")


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file at `path` (if given), then the environment (`os.environ` if
    `env` is None). Raises `ConfigError` naming the key (or the file) on anything wrong."""
    document = _read_toml(path) if path is not None else {}
    tables: dict[str, dict[str, tuple[Any, str | None]]] = {name: {} for name in SECTIONS}
    for section, table in document.items():
        if section not in SECTIONS:
            raise ConfigError(section, f"unknown section in {path}; known: {', '.join(SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(section, f"expected a [{section}] table in {path}")
        flat = _flatten(table) if getattr(SECTIONS[section], "OPEN", False) else table
        tables[section].update((k, (v, None)) for k, v in flat.items())
    for section, table in _env_overrides(os.environ if env is None else env).items():
        tables[section].update(table)
    config = Config(**{name: _build_section(name, table) for name, table in tables.items()})
    _check_topic_names(config.topics)
    _check_kafka(config.kafka, {key: source for key, (_, source) in tables["kafka"].items()})
    return config


__all__ = [
    "TOPIC_ROLES",
    "Config",
    "ConfigError",
    "IdentityConfig",
    "KafkaConfig",
    "RunConfig",
    "SchemaRegistryConfig",
    "ScoresConfig",
    "ServeConfig",
    "SessionsConfig",
    "StoreConfig",
    "TimeConfig",
    "TopicsConfig",
    "TriggersConfig",
    "load_config",
    "parse_duration",
]
