"""A latency table: the latency of every network part in milliseconds, and the prediction of a
whole network from it.

A table is JSON (`{"format": "proxyless_tf.latency/1", "settings": {...}, "entries": {...}}`)
with one entry per part (`count`, `mean`, `var`; tables built here add `median`, `p90` and, with
--latency_quiet, `busy`), or the official release's bare YAML mapping. A network's predicted
latency is

    factor x (sum of its parts - (parts - 1) x invoke overhead)
        + ms_per_mweight x its weights (millions) + offset_ms

where `settings["calibration"]` holds factor, ms_per_mweight (`latency build`/`calibrate`) and
offset_ms (a refit to another machine, `check.py`); without it the prediction is the plain sum.
`settings["quantization"]` is the TFLite format the entries were timed in (none = float32, the
default of tables that record none; int8, ...: --latency_quantization), which every use checks.
A refit may also scale each group of parts (`Part.group`: the blocks by depthwise kernel, the
rest 'fixed') by its own `group_scales[group]`, the fixed group carrying the invoke overhead
and offset_ms; every term stays a sum over the parts, so E[LAT] stays differentiable.
"""

import hashlib
import json
import math
import os

import numpy as np

from proxyless_tf import io_utils
from proxyless_tf.errors import UsageError
from proxyless_tf.latency.parts import FIXED_GROUP, OVERHEAD_KEY, arch_parts, space_parts

FORMAT = "proxyless_tf.latency/1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUANTIZATION_SETTING = "--latency_quantization={}"  # how the commands set a format


def table_quantization(settings):
    """The TFLite format a table's entries were timed in (`settings["quantization"]`: none,
    float16, dynamic or int8); tables that record none are float32 ("none")."""
    return (settings or {}).get("quantization") or "none"


def require_quantization(settings, quantization, what, setting=QUANTIZATION_SETTING,
                         remedy=None):
    """A one-line UsageError when the table `what` (its `settings`) was timed in another format
    than `quantization`, the one asked for: a float32 table does not predict an int8 network.
    `setting` words a format as the user sets it (default the flag: "--latency_quantization={}";
    the Python API: "quantization='{}'"), `remedy` how to get a table of the format asked for
    (default: the commands')."""
    from proxyless_tf.quantize import kind
    recorded = table_quantization(settings)
    if recorded != quantization:
        remedy = remedy or (f"--latency_table=auto builds one here, or `python -m "
                            f"proxyless_tf.latency build {setting.format(quantization)} "
                            f"--output=...`")
        raise UsageError(f"{what} holds latencies of {kind(recorded)} TFLite files "
                         f"({setting.format(recorded)}), not {kind(quantization)} "
                         f"({setting.format(quantization)}): pass "
                         f"{setting.format(recorded)} to use it, or use a {kind(quantization)} "
                         f"table ({remedy})")


def resolve_table_path(path):
    """`path` as given, or relative to the repository root (so flagfiles may name shipped
    tables from any working directory)."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    candidate = os.path.join(REPO_ROOT, path)
    return candidate if os.path.exists(candidate) else path


def _load_yaml(path):
    import yaml
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise UsageError(f"latency table {path!r} is not valid YAML: {problem}{at}") from None
    except OSError as e:
        raise UsageError(f"latency table {path!r} cannot be read: {e.strerror}") from None


class LatencyTable:
    """Latency of network parts, in milliseconds, keyed as in the official release."""

    def __init__(self, entries, settings=None, source="latency table", stat="auto"):
        if stat not in ("auto", "mean", "median"):
            raise UsageError(f"--latency_stat={stat!r}: use auto, mean or median")
        self.entries = entries
        self.settings = dict(settings or {})
        self.source = source
        self.stat = stat
        self._check()

    def _check(self):
        where = f"latency table {self.source!r}"
        if not isinstance(self.entries, dict) or not self.entries:
            raise UsageError(f"{where} has no entries (is it a latency table?)")
        for key, entry in self.entries.items():
            if not isinstance(entry, dict):
                raise UsageError(f"{where}: entry {key!r} is not a mapping with count/mean/var")
            for field in ("mean",) + (("median",) if self.stat == "median" else ()):
                value = entry.get(field)
                if isinstance(value, bool) or not isinstance(value, (int, float)) \
                        or not math.isfinite(value) or value < 0:
                    hint = " (the official table has only mean: use --latency_stat=mean)" \
                        if field == "median" and "median" not in entry else ""
                    raise UsageError(f"{where}: entry {key!r} has no valid {field!r} "
                                     f"(got {value!r}){hint}")

    # loading and saving
    @classmethod
    def load(cls, path, stat="auto", quantization=None):
        """The table at `path`; with `quantization`, a one-line error unless its entries were
        timed in that format (`require_quantization`)."""
        table = cls._load(path, stat)
        if quantization is not None:
            require_quantization(table.settings, quantization,
                                 f"latency table {table.source!r}")
        return table

    @classmethod
    def _load(cls, path, stat):
        path = resolve_table_path(path)
        if not os.path.exists(path):
            raise UsageError(f"latency table {path!r} does not exist; build one with "
                             f"`python -m proxyless_tf.latency build --flagfile=... --output={path}`")
        if path.endswith((".yaml", ".yml")):
            return cls(_load_yaml(path), {"source": "official yaml"}, path, stat)
        data = io_utils.read_json(path, what="latency table")
        if isinstance(data, dict) and "entries" in data:
            if data.get("format") != FORMAT:
                raise UsageError(f"latency table {path!r} has format {data.get('format')!r}, "
                                 f"expected {FORMAT!r}")
            return cls(data["entries"], data.get("settings"), path, stat)
        return cls(data, {}, path, stat)  # a bare {key: {count, mean, var}} mapping

    def to_json(self):
        return {"format": FORMAT, "settings": self.settings,
                "entries": dict(sorted(self.entries.items()))}

    def save(self, path):
        io_utils.write_json(path, self.to_json())

    def digest(self):
        """A short fingerprint of the content: a rebuilt or recalibrated table gets another."""
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    def with_calibration(self, calibration, source, refit=None):
        """The same entries with another calibration, as a table from `source`; `refit`
        records a refit to this machine (a calibration made otherwise drops the old one's)."""
        settings = {k: v for k, v in self.settings.items() if k != "refit"}
        settings["calibration"] = calibration
        if refit is not None:
            settings["refit"] = refit
        return LatencyTable(self.entries, settings, source, self.stat)

    # lookups
    def __contains__(self, key):
        return key in self.entries

    def ms(self, key):
        entry = self.entries.get(key)
        if entry is None:
            raise UsageError(f"latency table {self.source!r} has no entry {key!r}: it was built "
                             "for another space, resolution or number of classes; build a table "
                             "for these flags with `python -m proxyless_tf.latency build`")
        if self.stat == "mean" or (self.stat == "auto" and "median" not in entry):
            return float(entry["mean"])
        return float(entry["median"])

    @property
    def quantization(self):
        """The TFLite format its entries were timed in (none = float32, `table_quantization`)."""
        return table_quantization(self.settings)

    @property
    def overhead_ms(self):
        return self.ms(OVERHEAD_KEY) if OVERHEAD_KEY in self.entries else 0.0

    @property
    def calibration(self):
        return self.settings.get("calibration") or {}

    @property
    def factor(self):
        """The calibration factor on the parts' sum (see `build.calibrate`), 1 for tables
        without a calibration (the official table)."""
        return float(self.calibration.get("factor", 1.0))

    @property
    def ms_per_mweight(self):
        """The calibration's cost of streaming a million weights from memory (see
        `build.calibrate`), 0 for tables without one (and calibrations made before it)."""
        return float(self.calibration.get("ms_per_mweight", 0.0))

    def group_scale(self, group):
        """A refit's scale of one group of parts (`Part.group`), 1 where it has none."""
        return float((self.calibration.get("group_scales") or {}).get(group, 1.0))

    @property
    def offset_ms(self):
        """A constant per network, from a refit to the machine that runs the search (see
        `check.py`); 0 for tables that were not refitted."""
        return float(self.calibration.get("offset_ms", 0.0))

    def part_ms(self, part):
        """What `part` adds to a network's prediction: its entry less the invoke overhead,
        calibrated, plus its weights' cost, times its group's scale."""
        base = self.factor * (self.ms(part.key) - self.overhead_ms) + \
            self.ms_per_mweight * part.weights / 1e6
        return self.group_scale(part.group) * base

    @property
    def network_ms(self):
        """What every network adds once: one invoke overhead and a refit's offset."""
        return self.group_scale(FIXED_GROUP) * (self.factor * self.overhead_ms + self.offset_ms)

    def breakdown(self, arch):
        """(key, ms) of every part of `arch` as the table holds it, then the overhead
        correction when the table has one: -(number of parts - 1) * the invoke overhead, then
        what the calibration adds ((factor - 1) * that sum, ms_per_mweight * the network's
        weights in millions, the refit's offset, each group's scale); they sum to `predict`."""
        parts, rows = self._summed_rows(arch)
        if self.factor != 1.0:
            total = sum(ms for _, ms in rows)
            rows.append((f"calibration x {self.factor:.4f}", (self.factor - 1.0) * total))
        if self.ms_per_mweight:
            mweights = sum(part.weights for part in parts) / 1e6
            rows.append((f"weights {mweights:.3f}M x {self.ms_per_mweight:.4f} ms/M",
                         self.ms_per_mweight * mweights))
        if self.offset_ms:
            rows.append(("offset (refit to this machine)", self.offset_ms))
        for group, ms in sorted(self.group_ms(arch).items()):
            scale = self.group_scale(group)
            if scale != 1.0:  # ms is the group's share after the scale
                rows.append((f"refit: {group} parts x {scale:.4f}", ms * (scale - 1.0) / scale))
        return rows

    def _summed_rows(self, arch):
        """(parts of `arch`, [(key, ms) of every part, then the overhead correction]); a
        network is invoked once, each part was timed in an invoke of its own."""
        parts = arch_parts(arch)
        rows = [(part.key, self.ms(part.key)) for part in parts]
        if self.overhead_ms:
            rows.append((f"{OVERHEAD_KEY} x -{len(rows) - 1}", -(len(rows) - 1) * self.overhead_ms))
        return parts, rows

    def raw_sum(self, arch):
        """The parts' sum with the overhead correction, before the calibration."""
        return float(sum(ms for _, ms in self._summed_rows(arch)[1]))

    def group_ms(self, arch):
        """{group: ms} of `arch`'s prediction by group of parts (the fixed group with the
        network's constant terms): what a refit scales (`check.py`)."""
        groups = {FIXED_GROUP: self.network_ms}
        for part in arch_parts(arch):
            groups[part.group] = groups.get(part.group, 0.0) + self.part_ms(part)
        return groups

    def predict(self, arch):
        """Predicted latency of a whole network in ms (a UsageError names a missing key)."""
        return float(sum(self.group_ms(arch).values()))

    def covers(self, arch):
        return all(part.key in self.entries for part in arch_parts(arch))

    def missing(self, space):
        """Keys of the parts of `space` the table has no entry for (the invoke overhead aside:
        tables without it are summed)."""
        fixed, searchable = space_parts(space)
        parts = fixed + [p for options in searchable for p in options if p is not None]
        return sorted({p.key for p in parts if p.key not in self.entries})

    def space_costs(self, space):
        """(ms of the parts every network of `space` has, [np.array of ms per candidate, in
        `position.candidates` order, for every searchable position]); `zero` costs 0."""
        fixed, searchable = space_parts(space)
        costs = [np.array([0.0 if part is None else self.part_ms(part) for part in options])
                 for options in searchable]
        fixed_ms = self.network_ms + float(sum(self.part_ms(part) for part in fixed))
        return fixed_ms, costs
