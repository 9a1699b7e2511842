"""The profile store: a local, materialised view of the `profiles` topic, found by any identifier.

`profiles` is keyed by profile id and its latest record per key is the profile, so a store that
applies the topic in order (records replace, tombstones delete) holds exactly the live profiles.
Lookup by device id, customer key or customer id goes through an index kept in the same RocksDB
(rocksdict) database and updated in the same write batch as the profile, so the two never
disagree. The consumed offsets live there too: catching up is incremental.

Two ways to keep it current: `profilestream serve-store` follows the topic continuously, and
`profilestream profile get` first catches up to the end of the topic (unless a `serve-store`
holds the store, in which case it reads what that process has written).

Personal data at rest (issue 11): the store, like the run's recovery directory and a recording,
holds profiles (identifiers, behaviour, CRM attributes). `private_files` and `make_private` make
such a directory its owner's alone: directories 0700, files 0600, including the files RocksDB
(or Bytewax's SQLite) creates later while it runs, because the umask is 077 for as long as the
directory is in use and the tree is swept again when it is closed. A directory that cannot be
written (read-only disk, no permission) or whose disk is full is found before any work starts
(`check_writable`), and a RocksDB error during the work is a `StoreError` naming `store.path`:
one line for the user, not a traceback.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from rocksdict import AccessType, Rdict, WriteBatch

from profilestream.codec import avro, registry
from profilestream.kafka.clients import end_offsets, quiet

INDEXES = (("device", "device_ids"), ("key", "customer_key"), ("customer", "customer_id"))

if TYPE_CHECKING:
    from profilestream.config import Config


def _identifiers(profile: dict[str, Any]) -> list[str]:
    """Index entries `ix:<kind>:<identifier>\x00<profile id>`. The profile id is part of the key
    because the topic's partitions are applied in no particular order relative to each other: a
    device may briefly appear in two records (its old profile's, not yet tombstoned, and its new
    one), and neither must erase the other's entry."""
    pid = profile["profile_id"]
    ids = [f"ix:profile:{pid}\x00{pid}"]
    for kind, name in INDEXES:
        value = profile.get(name)
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                ids.append(f"ix:{kind}:{v}\x00{pid}")
    return ids


# --- files that hold personal data --------------------------------------------------------------

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
MIN_FREE = 1 << 20  # bytes a directory of personal data needs free to start work in
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_FULL = {errno.ENOSPC, errno.EDQUOT}


class StoreError(RuntimeError):
    """A directory of personal data that cannot be used; the message names it (the key or
    flag). `code`: 2 when it cannot be written at all (a configuration to correct), 1 when the
    work failed (a full disk, a RocksDB error)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


_umask_lock = threading.Lock()
_umask_holds = 0
_umask_saved = 0


def hold_private() -> None:
    """umask 077 from now until the matching `release_private` (see `private_files`)."""
    global _umask_holds, _umask_saved
    with _umask_lock:
        if _umask_holds == 0:
            _umask_saved = os.umask(0o077)
        _umask_holds += 1


def release_private() -> None:
    global _umask_holds
    with _umask_lock:
        _umask_holds -= 1
        if _umask_holds == 0:
            os.umask(_umask_saved)


@contextmanager
def private_files() -> Iterator[None]:
    """umask 077 while personal data is written, so what RocksDB, SQLite and we create is
    0600/0700 from the start. The umask is the process's: nested and concurrent holds share one
    setting, and the caller's umask comes back when the last one ends."""
    hold_private()
    try:
        yield
    finally:
        release_private()


def make_private(root: str | Path) -> None:
    """Directories 0700 and files 0600 under `root` (itself included): for a tree made by an
    older version or under another umask. Symbolic links are neither followed nor changed."""
    root = Path(root)
    paths = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        paths.extend(Path(dirpath) / name for name in dirnames + filenames)
    for path in paths:
        try:
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode) and stat.S_IMODE(mode) != PRIVATE_DIR:
                path.chmod(PRIVATE_DIR)
            elif stat.S_ISREG(mode) and stat.S_IMODE(mode) != PRIVATE_FILE:
                path.chmod(PRIVATE_FILE)
        except FileNotFoundError:  # removed meanwhile (a RocksDB log rolled over)
            continue


def check_writable(path: str | Path, name: str) -> Path:
    """Create the directory `path` (0700) if need be and prove it can take work: a probe file is
    written, synced and removed, and at least `MIN_FREE` bytes must be free. `name` is what the
    user set it by (`store.path`, `--recovery-dir`), for the message. Raises `StoreError`."""
    path = Path(path)
    try:
        with private_files():
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".profilestream-probe-{os.getpid()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
            try:
                os.write(fd, b"\0" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        free = os.statvfs(path)
        available = free.f_bavail * free.f_frsize
    except OSError as exc:
        raise _dir_error(path, name, exc) from None
    if available < MIN_FREE:
        raise StoreError(
            f"{name} {path}: the disk is full ({available:,} bytes free, at least "
            f"{MIN_FREE >> 20} MiB needed); free some space or choose another directory"
        )
    make_private(path)
    return path


def _dir_error(path: Path, name: str, exc: OSError) -> StoreError:
    why = (exc.strerror or str(exc)).lower()
    if exc.errno in _FULL:
        return StoreError(f"{name} {path}: the disk is full ({why}); free some space or choose another directory")
    if exc.errno in _NOT_WRITABLE:
        return StoreError(f"{name} {path}: not writable ({why}); choose a directory this user can write to", code=2)
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return StoreError(f"{name} {path}: exists and is not a directory", code=2)
    return StoreError(f"{name} {path}: cannot use it ({why})")


def _rocks_error(path: str | Path, exc: Exception) -> StoreError:
    """A RocksDB failure (rocksdict raises a plain Exception) as one line naming the store."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    lower = text.lower()
    if "no space left" in lower or "disk is full" in lower:
        return StoreError(
            f"store.path {path}: the disk is full (no space left on device); free some space and try again ({text})"
        )
    if "read-only" in lower or "permission denied" in lower:
        return StoreError(f"store.path {path}: not writable ({text})", code=2)
    return StoreError(f"store.path {path}: the profile store failed: {text}")


class ProfileStore:
    """The store at `path`, private to its owner (see the module doc) while it is open."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        hold_private()  # until `close`: RocksDB writes new files as long as it is open
        self._held = True
        try:
            if not read_only:
                check_writable(self.path, "store.path")
            access = AccessType.read_only() if read_only else AccessType.read_write()
            try:
                self._db = Rdict(str(path), access_type=access)
            except Exception as exc:  # rocksdict raises a plain Exception
                if "lock" in str(exc).lower():
                    raise
                raise _rocks_error(path, exc) from None
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._held:
            self._held = False
            release_private()

    def __del__(self) -> None:  # a store never closed must not keep the process's umask at 077
        if getattr(self, "_held", False):
            self._release()

    @classmethod
    def open(cls, path: str | Path) -> tuple[ProfileStore, bool]:
        """Open for writing, or read-only when a `serve-store` process holds the lock."""
        try:
            return cls(path), True
        except StoreError:
            raise
        except Exception as exc:  # rocksdict raises a plain Exception on a held lock
            if "lock" not in str(exc).lower():
                raise
            return cls(path, read_only=True), False

    def close(self) -> None:
        try:
            self._db.close()
        except Exception as exc:
            raise _rocks_error(self.path, exc) from None
        finally:
            make_private(self.path)
            self._release()

    # --- applying the topic -------------------------------------------------------------------

    def apply(self, key: str, profile: dict[str, Any] | None, partition: int, offset: int) -> None:
        """One record of `profiles`: replace (or delete) the profile and move its index entries."""
        batch = WriteBatch()
        old_raw = self._db.get(f"p:{key}")
        old = set(_identifiers(json.loads(old_raw))) if old_raw is not None else set()
        new = set(_identifiers(profile)) if profile is not None else set()
        for entry in old - new:
            batch.delete(entry)
        for entry in new:
            batch.put(entry, "")
        if profile is None:
            batch.delete(f"p:{key}")
        else:
            batch.put(f"p:{key}", json.dumps(profile, sort_keys=True))
        batch.put(f"o:{partition}", str(offset + 1))
        try:
            self._db.write(batch)
        except Exception as exc:  # rocksdict raises a plain Exception (a full disk, ...)
            raise _rocks_error(self.path, exc) from None

    def offset(self, partition: int) -> int | None:
        value = self._db.get(f"o:{partition}")
        return None if value is None else int(value)

    # --- reading ------------------------------------------------------------------------------

    def find(self, identifier: str) -> dict[str, Any] | None:
        """The profile a device id, customer key, customer id or profile id belongs to; should
        two records hold it (partitions caught up unevenly), the more recently updated one."""
        for kind in ("device", "key", "customer", "profile"):
            prefix = f"ix:{kind}:{identifier}\x00"
            found: list[dict[str, Any]] = []
            for entry in self._db.keys(from_key=prefix):
                if not isinstance(entry, str) or not entry.startswith(prefix):  # every key is a str
                    break
                raw = self._db.get(f"p:{entry[len(prefix) :]}")
                if raw is not None:
                    found.append(json.loads(raw))
            if found:
                return max(found, key=lambda p: (p["updated_at"] or "", p["profile_id"]))
        return None

    def profiles(self) -> Iterator[dict[str, Any]]:
        """Every live profile, in profile id order."""
        for key, raw in self._db.items(from_key="p:"):
            if not isinstance(key, str) or not key.startswith("p:"):  # every key is a str
                break
            profile: dict[str, Any] = json.loads(raw)
            yield profile

    def count(self) -> int:
        # Rdict is not iterable itself: .keys() is its only way to walk the keys
        return sum(1 for k in self._db.keys() if isinstance(k, str) and k.startswith("p:"))  # noqa: SIM118


def _records(config: Config, store: ProfileStore, follow: bool, poll: float = 0.2) -> Iterator[Message]:
    """Records of the profiles topic after the store's offsets; to the current end, or forever."""
    topic = config.topics.name("profiles")
    consumer = Consumer(
        quiet({**config.kafka.client_config(), "group.id": "profilestream-store", "enable.auto.commit": False})
    )
    try:
        ends: dict[int, int] = {}
        assignment: list[TopicPartition] = []
        for p, (low, end) in sorted(end_offsets(config, topic).items()):
            start = store.offset(p)
            start = low if start is None or start < low else start
            ends[p] = end
            assignment.append(TopicPartition(topic, p, start))
        pending = {tp.partition for tp in assignment if tp.offset < ends[tp.partition]}
        consumer.assign(assignment)
        while follow or pending:
            for m in consumer.consume(1000, poll):
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                yield m
                partition, offset = _position(m)
                if offset + 1 >= ends[partition]:
                    pending.discard(partition)
    finally:
        consumer.close()


def _position(m: Message) -> tuple[int, int]:
    """The partition and offset of a consumed record (only an error event lacks them)."""
    partition, offset = m.partition(), m.offset()
    if partition is None or offset is None:
        raise ValueError(f"a record of {m.topic()} without a partition or offset")
    return partition, offset


def sync(config: Config, store: ProfileStore, follow: bool = False) -> int:
    """Apply the profiles topic to the store; returns how many records were applied."""
    applied = 0
    decode = registry.decoder(config)  # raw values, or framed ones when a registry is configured
    for m in _records(config, store, follow):
        apply_message(store, m, decode)
        applied += 1
    return applied


def apply_message(
    store: ProfileStore, m: Message, decode: Callable[[str, bytes], dict[str, Any]] = avro.decode
) -> None:
    """One consumed record of the profiles topic into the store; `decode`: `registry.decoder`'s
    when values may be in the Confluent wire format."""
    value = m.value()
    profile = None if value is None else avro.to_json("profiles", decode("profiles", value))
    key = m.key()
    if key is None:
        raise ValueError(f"a record of {m.topic()} without a key (partition {m.partition()}, offset {m.offset()})")
    partition, offset = _position(m)
    store.apply(key.decode(), profile, partition, offset)


@contextmanager
def current(config: Config) -> Iterator[ProfileStore]:
    """The store at `store.path`, caught up with the profiles topic first unless a `serve-store`
    process holds it (then it is as current as that process keeps it)."""
    store, writable = ProfileStore.open(config.store.path)
    try:
        if writable:
            sync(config, store)
        yield store
    finally:
        store.close()


def get(config: Config, identifier: str) -> dict[str, Any] | None:
    with current(config) as store:
        return store.find(identifier)


def all_profiles(config: Config) -> list[dict[str, Any]]:
    with current(config) as store:
        return list(store.profiles())


def exclusive(config: Config) -> ProfileStore:
    """The store at `store.path` open for writing, or a `StoreError` naming the key when another
    process (a `serve-store`, a `serve`) holds it: two followers of one store would fight."""
    try:
        return ProfileStore(config.store.path)
    except StoreError:
        raise
    except Exception as exc:  # rocksdict raises a plain Exception on a held lock
        if "lock" not in str(exc).lower():
            raise
        raise StoreError(
            f"store.path {config.store.path}: held by another process (a `serve-store` or a `serve`); "
            "give this one its own store.path"
        ) from None


def serve(config: Config, store: ProfileStore | None = None) -> None:
    """Follow the profiles topic into the store (`exclusive`'s, if not given) until interrupted."""
    store = store if store is not None else exclusive(config)
    try:
        sync(config, store, follow=True)
    finally:
        store.close()


__all__ = [
    "INDEXES",
    "MIN_FREE",
    "ProfileStore",
    "StoreError",
    "all_profiles",
    "apply_message",
    "check_writable",
    "current",
    "exclusive",
    "get",
    "hold_private",
    "make_private",
    "private_files",
    "release_private",
    "serve",
    "sync",
]
