"""The latency model for the machine that runs the command: the table a LatencyConfig names
(or one built here and cached, `table="auto"`), checked against this machine and refitted to
it (`check.py`) unless its `check` is off."""

import dataclasses
import os

from proxyless_tf.errors import UsageError
from proxyless_tf.latency.build import build_table
from proxyless_tf.latency.cache import MachineCache, cache_root
from proxyless_tf.latency.check import run_check, unchecked_reason
from proxyless_tf.latency.table import QUANTIZATION_SETTING, LatencyTable

AUTO = "auto"  # --latency_table=auto: the table built on this machine for the space


def machine_cache(space, meter, config):
    """The cache of measurements made here with `meter` for `space` (config.cache_dir)."""
    return MachineCache(cache_root(config.cache_dir), space, meter)


def table_path(space, meter, config):
    """The file config.table names: `auto` is this machine's cached table for the space."""
    spec = config.table
    return machine_cache(space, meter, config).table_path if spec == AUTO else spec


def built_here(space, meter, config, progress=True):
    """This machine's table for `space` from the cache, measured now where it has none (or
    only part of one: an interrupted build resumes)."""
    cache = machine_cache(space, meter, config).ensure_writable()
    path = cache.table_path
    if not os.path.exists(path) or LatencyTable.load(path).missing(space):
        build_table(space, meter, path, list(config.references), progress=progress,
                    rounds=config.rounds, calibration=config.calibrate)
    return LatencyTable.load(path, stat=config.stat, quantization=config.quantization)


def load_table(space, meter, config, build_missing=True, progress=True):
    """The table config.table names; `auto`, or (with `build_missing`) a table without
    entries for this space, gives the one built here (`built_here`)."""
    if config.table == AUTO:
        return built_here(space, meter, config, progress)
    table = LatencyTable.load(config.table, stat=config.stat, quantization=config.quantization)
    missing = table.missing(space)
    if missing and build_missing:
        print(f"latency table {table.source} has no entry for {len(missing)} part(s) of this "
              f"space (e.g. {missing[0]!r}): using a table built on this machine instead "
              f"(--latency_table=auto)", flush=True)
        return built_here(space, meter, config, progress)
    return table


@dataclasses.dataclass
class Checked:
    """The table to use on this machine, and what the check found (None when it did not run)."""

    table: LatencyTable
    check: object = None

    @property
    def reference_ms(self):
        """The target's reference network measured here (None unless the check timed it)."""
        return self.check.reference_ms if self.check is not None else None


def checked_table(space, config, meter=None, enabled=None, reference=None, progress=True):
    """config's table, checked against this machine and refitted to it (config.check, unless
    `enabled` says otherwise); prints the check's one line. `meter`: how the check times
    networks (default: config's). `reference`: the network of a ratio target (`target.
    reference_network`), timed with the others so that the target refers to its latency here."""
    enabled = config.check if enabled is None else enabled
    meter = meter or config.meter()
    table = load_table(space, meter, config, build_missing=enabled, progress=progress)
    if not enabled:
        return Checked(table)
    return check_here(table, space, meter, machine_cache(space, meter, config), reference,
                      config.check_networks, config.rounds, config.recheck, progress)


# How the check's messages name its settings: the command line's flags (FLAG_WORDS) or the
# Python API's keyword arguments.
FLAG_WORDS = {"table": "--latency_table={}", "off": "pass --nolatency_check to use it as it is",
              "auto": "--latency_table=auto",
              "compatible": "time a table with these settings here (--latency_table=auto) or "
                            "pass --nolatency_check to use it as it is",
              "check": "--latency_check", "cache": "--latency_cache_dir",
              "gpu": "--latency_runtime=tf_gpu"}


def check_here(table, space, meter, machine_cache, reference, networks, rounds, recheck,
               progress=True, words=FLAG_WORDS):
    """`table` checked against this machine and refitted to it (`check.run_check`), its one
    line printed when `progress`; a Checked. Skipped, with a line, for a table that names no
    runtime to time or a GPU table on a machine without one."""
    log = print if progress else (lambda *args, **kwargs: None)
    reason = unchecked_reason(table)
    if reason:
        log(f"latency check: skipped: {reason}", flush=True)
        return Checked(table)
    meter.require_compatible(table.settings, words["table"].format(table.source),
                             words["compatible"],
                             words.get("quantization", QUANTIZATION_SETTING))
    try:
        meter.check_available()
    except UsageError as e:
        if meter.runtime == "tf_gpu":  # the table is for a GPU elsewhere: nothing to time here
            log(f"latency check: skipped: {words['gpu']} and this machine has no GPU; table "
                f"{table.source} is used as it is", flush=True)
            return Checked(table)
        raise UsageError(f"{words['check']}: {e}; or {words['off']}") from None
    check = run_check(table, space, meter, machine_cache.ensure_writable(words["cache"]),
                      reference, networks, rounds, recheck, progress)
    log(check.line(), flush=True)
    if check.stop:  # a table measured to be off is never used as it is without the user's word
        raise UsageError(f"latency check: {check.stop}; build a table on this machine with "
                         f"{words.get('auto', '--latency_table=auto')}, or {words['off']}")
    return Checked(check.table, check)
