"""The user cache of latency measurements made on this machine, so that the next search on it
reuses them: a table built here (`--latency_table=auto`, or for a space the given table does
not cover), the whole networks the check timed, and the refitted tables.

    $XDG_CACHE_HOME/proxyless_tf/latency/   (default ~/.cache/proxyless_tf/latency/)
        tflite-1t-b1-<key>/                 one folder per host, runtime, threads, batch, space
        tflite-int8-1t-b1-<key>/            ... and format (--latency_quantization; float32
                                            folders name none, so older caches stay valid)
            key.json                        what <key> stands for, readable
            table.json                      the table built here for the space
            networks.json                   whole networks timed by the check
            refit-<table>-<digest>.json     a table refitted to this machine by the check
                                            (digest: the table's content, the space, the refit)
            .lock                           held while networks.json is merged and written

Several processes may share the folder (two searches started together): networks.json is
read, merged and written under an exclusive lock (`fcntl.flock`) and replaced atomically, so
that neither loses the other's records nor reads a half-written file.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import time

from proxyless_tf import io_utils
from proxyless_tf.errors import UsageError
from proxyless_tf.latency.host import host_description
from proxyless_tf.latency.parts import arch_parts, table_parts

FORMAT = "proxyless_tf.latency_cache/1"


def cache_root(directory=None):
    """--latency_cache_dir when given, else the XDG cache folder (an absolute
    $XDG_CACHE_HOME, else ~/.cache) + proxyless_tf/latency."""
    if directory:
        return directory
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is to be ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "proxyless_tf", "latency")


def _digest(lines):
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:12]


def space_digest(space):
    """What a space is to latency: the keys of the parts its networks are made of (so flags
    that do not change any part, e.g. --dropout, do not change it)."""
    return _digest(sorted(p.key for p in table_parts(space)))


def network_digest(arch):
    """What a network is to latency: its parts, in order."""
    return _digest([p.key for p in arch_parts(arch)])


class MachineCache:
    """The cache folder of one host, runtime, threads, batch, format and space."""

    def __init__(self, root, space, meter):
        self.key = {"format": FORMAT, "host": host_description(), "runtime": meter.runtime,
                    "threads": meter.threads, "batch": meter.batch,
                    "space": space_digest(space)}
        quantization = meter.quantization
        if quantization != "none":  # float32 keys as before: the caches built so far still hold
            self.key["quantization"] = quantization
        digest = _digest([json.dumps(self.key, sort_keys=True)])
        runtime = meter.runtime if quantization == "none" else f"{meter.runtime}-{quantization}"
        self.dir = os.path.join(root, f"{runtime}-{meter.threads}t-b{meter.batch}-{digest}")
        self.table_path = os.path.join(self.dir, "table.json")
        self.networks_path = os.path.join(self.dir, "networks.json")

    def refit_path(self, table, refit=""):
        """Where the refit of `table` goes: named after it, its content, the space and the refit
        itself (`refit`: its calibration, as text), so that a table rebuilt at the same path
        gets a refit of its own, and two processes that fit differently do not overwrite the
        table the other one uses."""
        stem = os.path.splitext(os.path.basename(table.source))[0] or "table"
        digest = _digest([table.digest(), self.key["space"], refit])
        return os.path.join(self.dir, f"refit-{stem}-{digest[:8]}.json")

    def ensure_writable(self, flag="--latency_cache_dir"):
        io_utils.ensure_writable_dir(self.dir, flag)
        key_path = os.path.join(self.dir, "key.json")
        if not os.path.exists(key_path):
            io_utils.write_json(key_path, self.key)
        return self

    def load_networks(self):
        """{network digest: record} of the networks timed here before ({} when none, or when
        the file is unreadable: a cache is only ever a shortcut)."""
        try:
            data = io_utils.read_json(self.networks_path, "latency cache")
        except UsageError:
            return {}
        if not isinstance(data, dict) or data.get("key") != self.key:
            return {}
        return dict(data.get("networks") or {})

    @contextlib.contextmanager
    def _locked(self):
        """The folder's lock, held exclusively (another process waits for it)."""
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def save_networks(self, networks):
        """Merges `networks` ({digest: record}) into networks.json under the lock: the records
        another process wrote meanwhile are kept, and of two records of one network the one
        measured last."""
        with self._locked():
            merged = self.load_networks()
            for digest, record in networks.items():
                if record.get("measured_at", "") >= merged.get(digest, {}).get("measured_at", ""):
                    merged[digest] = record
            io_utils.write_json(self.networks_path, {"key": self.key, "networks": merged})


def network_record(arch, stats, rounds=None):
    """How the cache keeps a network timed here: readable name and ops, the combined timing,
    each round's median and mean (`rounds`, {"median": [ms], "mean": [ms]}: what the check
    estimates its uncertainty from) and when it was measured."""
    record = {"name": arch.name, "ops": arch.ops, "stats": stats,
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    if rounds is not None:
        record["rounds"] = rounds
    return record
