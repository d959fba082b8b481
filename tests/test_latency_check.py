"""The latency check (issue 15): a table is checked against the machine that runs the search,
refitted to it, cached, and the target and the export report refer to what was measured here.

Timings are synthetic (a meter that answers with known scales and offset of the table's own
prediction), except for one tiny real check with LiteRT at the end."""

import json
import os

import numpy as np
import pytest
from absl.testing import flagsaver

from conftest import assert_usage_error, run_module, synthetic_table, tiny_space
from proxyless_tf import architecture, flag_configs, latency
from proxyless_tf.errors import UsageError
from proxyless_tf.latency import cache as cache_lib, check as check_lib

REFERENCE = "all:k5e6"  # inside tiny_space (k3e3, k5e6, zero)


class OtherLoad:
    """What other processes took of the CPUs while the synthetic machine timed."""

    def __init__(self, busy):
        self.busy = busy

    def start(self):
        return self

    def stop(self):
        return self.busy


class MachineMeter(latency.Meter):
    """This 'machine' runs a network in `scale` x `truth`'s prediction + `offset` ms, each
    group of parts (`Part.group`) also times its `groups` entry; with `noise`, every network's
    second round is that much slower; `busy`: the share of the CPUs other processes take
    meanwhile. Nothing is converted."""

    def __init__(self, truth, scale=1.0, offset=0.0, noise=0.0, groups=None, busy=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.truth, self.scale, self.offset, self.noise = truth, scale, offset, noise
        self.busy = busy
        self.groups = groups or {}
        self.timings = 0
        self.rounds = {}

    def network(self, arch):
        return arch

    def other_load(self):
        return OtherLoad(self.busy)

    def prepare(self, model, interior=False):
        return model

    def latency(self, arch):
        """What the network takes on this machine, noise aside."""
        return self.scale * sum(self.groups.get(group, 1.0) * group_ms for group, group_ms
                                in self.truth.group_ms(arch).items()) + self.offset

    def time(self, arch):
        self.timings += 1
        key = cache_lib.network_digest(arch)
        self.rounds[key] = self.rounds.get(key, 0) + 1
        ms = self.latency(arch) * (1 + self.noise * (self.rounds[key] == 2))
        return {"count": 5, "mean": ms, "var": 0.0, "median": ms, "p90": ms}


def measured_table(space, host="another-vm x86_64, 2 CPUs", runtime="tflite"):
    """A synthetic table as `latency build` would have written it on `host`."""
    table = synthetic_table(space, references=(REFERENCE,))
    table.settings.update(runtime=runtime, threads=1, batch=1, host=host)
    return table


def checked(table, meter, tmp_path, space=None, networks=4, reference=REFERENCE, **kwargs):
    space = space or tiny_space()
    machine = cache_lib.MachineCache(str(tmp_path / "cache"), space, meter).ensure_writable()
    ref = architecture.resolve(reference, space) if reference else None
    return check_lib.run_check(table, space, meter, machine, ref, networks, progress=False,
                               **kwargs)


# --- the refit ---------------------------------------------------------------------------
def test_fit_recovers_a_known_scale_and_offset():
    predicted = np.array([0.4, 0.9, 2.0, 5.0])
    scale, offset = latency.fit_machine_terms(predicted, 1.3 * predicted + 0.05)
    assert (scale, offset) == (pytest.approx(1.3, abs=1e-9), pytest.approx(0.05, abs=1e-9))


def test_fit_is_a_scale_alone_when_the_networks_are_too_close_to_separate_an_offset():
    predicted = np.array([1.0, 1.1, 1.2])  # spread 1.2x < 1.5x
    scale, offset = latency.fit_machine_terms(predicted, 1.3 * predicted + 0.05)
    assert offset == 0.0 and 1.3 < scale < 1.3 + 0.05 / 1.0


def test_the_group_fit_recovers_known_scales_and_refuses_what_it_cannot_tell_apart():
    rows = [{"fixed": 0.2, "k3": 1.0, "k5": 0.0}, {"fixed": 0.2, "k3": 0.0, "k5": 2.0},
            {"fixed": 0.2, "k3": 0.5, "k5": 1.0}, {"fixed": 0.2, "k3": 0.7, "k5": 0.3}]
    truth = {"fixed": 1.1, "k3": 1.5, "k5": 0.9}
    measured = [sum(truth[g] * ms for g, ms in row.items()) for row in rows]
    assert latency.fit_group_scales(rows, measured) == {
        g: pytest.approx(v, abs=1e-9) for g, v in truth.items()}
    # as many networks as groups: nothing left to check the fit against
    assert latency.fit_group_scales(rows[:3], measured[:3]) is None
    # k3 and k5 always in the same proportion: the two cannot be told apart
    same = [{"fixed": 0.2, "k3": x, "k5": 2 * x} for x in (0.5, 1.0, 1.5, 2.0)]
    assert latency.fit_group_scales(same, [1.0, 2.0, 3.0, 4.0]) is None
    # a group that would cost less than nothing (3x3 blocks x -0.3): not a machine
    heavy = [dict(row, fixed=1.0) for row in rows]
    odd = [1.0 - 0.3 * row["k3"] + row["k5"] for row in heavy]
    assert min(odd) > 0 and latency.fit_group_scales(heavy, odd) is None


def test_a_table_off_by_a_known_factor_and_overhead_is_corrected(tmp_path):
    space = tiny_space()
    table = measured_table(space)
    meter = MachineMeter(table, scale=1.3, offset=0.05)
    check = checked(table, meter, tmp_path)
    assert check.refitted and check.warning is None
    # every block group 1.3x; the fixed parts (the same in every network) take the offset too
    assert check.group_scales["k3"] == pytest.approx(1.3, abs=1e-4)
    assert check.group_scales["k5"] == pytest.approx(1.3, abs=1e-4)
    for arch in latency.random_archs(space, 5, seed=7):  # networks the check never timed
        assert check.table.predict(arch) == pytest.approx(1.3 * table.predict(arch) + 0.05,
                                                          rel=1e-4)
    # E[LAT] of the search uses the refit too
    objective = latency.LatencyObjective(check.table, space, 5.0, loss="abs")
    arch = latency.random_archs(space, 1, seed=8)[0]
    indices = [p.candidates.index(b.op) for p, b in
               zip(space.searchable_positions(), [b for b in arch.blocks if b.searchable])]
    assert objective.latency_of(indices) == pytest.approx(check.table.predict(arch), rel=1e-6)
    # the refit is a table file, as any other; it records where it came from
    saved = latency.LatencyTable.load(check.table.source)
    assert saved.predict(arch) == pytest.approx(check.table.predict(arch))
    assert saved.settings["refit"]["from"] == table.source
    assert saved.settings["refit"]["group_scales"]["k5"] == pytest.approx(1.3, abs=1e-5)


def test_a_table_off_by_kernel_size_is_corrected_group_by_group(tmp_path):
    """What a second VM did to the shipped table (docs/latency.md): 3x3 blocks 1.5x slower,
    5x5 blocks as fast. One scale and an offset cannot fit that; a scale per kernel can."""
    space = tiny_space()
    table = measured_table(space)
    meter = MachineMeter(table, groups={"k3": 1.5, "k5": 1.0, "fixed": 1.2})
    check = checked(table, meter, tmp_path)
    assert check.refitted and check.warning is None
    assert check.group_scales == {"fixed": pytest.approx(1.2, abs=1e-4),
                                  "k3": pytest.approx(1.5, abs=1e-4),
                                  "k5": pytest.approx(1.0, abs=1e-4)}
    unseen = latency.random_archs(space, 20, seed=7)
    truth = [meter.time(arch)["median"] for arch in unseen]
    assert [check.table.predict(a) for a in unseen] == pytest.approx(truth, rel=1e-4)
    # `latency predict` shows each group's share: its rows add up to the prediction
    assert sum(ms for _, ms in check.table.breakdown(unseen[0])) == pytest.approx(truth[0],
                                                                                rel=1e-4)
    scale, offset = latency.fit_machine_terms(check.predicted, check.measured)
    worst = max(abs((scale * table.predict(a) + offset) / t - 1) for a, t in zip(unseen, truth))
    assert worst > 0.05  # the single scale and offset of before
    # the uniform network of each kernel is among the networks timed
    assert {"all:k3e3", "all:k5e6"} <= set(check.names)


def test_a_refitted_table_checked_again_composes_the_two_refits(tmp_path):
    """A refit passed as --latency_table on a third machine: the new scales multiply the old
    ones, whether the new fit is per group or (too few networks) one scale and an offset."""
    space = tiny_space()
    table = measured_table(space)
    first = checked(table, MachineMeter(table, groups={"k3": 1.5, "fixed": 2.0}),
                    tmp_path / "a").table
    unseen = latency.random_archs(space, 10, seed=7)
    for how in (dict(), dict(networks=1, reference=None)):  # 3 networks, 3 groups
        third = MachineMeter(first, scale=1.1, offset=0.3)
        second = checked(first, third, tmp_path / str(len(how)), **how)
        assert second.refitted and (second.group_scales is None) == bool(how)
        assert [second.table.predict(a) for a in unseen] == pytest.approx(
            [third.time(a)["median"] for a in unseen], rel=1e-3)


def test_too_few_networks_to_tell_the_groups_apart_give_one_scale(tmp_path):
    table = measured_table(tiny_space())
    # the two uniform networks alone, against three groups (fixed, k3, k5)
    check = checked(table, MachineMeter(table, scale=1.3), tmp_path, networks=0, reference=None,
                    holdout=0)
    assert len(check.names) == 2 and check.refitted and check.group_scales is None
    assert check.scale == pytest.approx(1.3, abs=1e-4) and check.offset_ms == 0.0
    assert "refitted: x1.300 +0.000 ms" in check.line()


def test_a_table_within_five_percent_is_used_as_it_is(tmp_path):
    table = measured_table(tiny_space())
    check = checked(table, MachineMeter(table, scale=1.02), tmp_path)
    assert not check.refitted and check.table is table
    assert "not refitted (within 5%)" in check.line()


def test_the_one_line_names_the_table_the_other_host_and_both_ratios(tmp_path):
    table = measured_table(tiny_space(), host="another-vm x86_64, 2 CPUs")
    line = checked(table, MachineMeter(table, scale=1.3, offset=0.05), tmp_path).line()
    assert "\n" not in line and line.startswith("latency check: table synthetic")
    assert "measured on another machine: 'another-vm x86_64, 2 CPUs'" in line
    assert "before" in line and "after" in line
    assert "refitted: per part group fixed x" in line and "k3 x1.300, k5 x1.300" in line
    assert "1.00 (1.00-1.00) after" in line
    assert "reference all:k5e6 measured" in line


def test_the_networks_spread_over_the_spaces_latencies():
    space = tiny_space()
    table = measured_table(space)
    pool = sorted(table.predict(a) for a in latency.calibration_archs(space, 64, 2000, "check"))
    picked = [table.predict(a) for a in latency.spread_archs(space, table.predict, 4)]
    # from the fastest to the median: where targets (fractions of a reference network) lie
    assert picked[0] == pool[0] and picked[-1] == pool[32]
    assert picked == sorted(picked) and len(set(picked)) == 4


# --- the cache ---------------------------------------------------------------------------
def test_a_second_check_on_the_same_machine_times_only_the_reference_again(tmp_path):
    table = measured_table(tiny_space())
    meter = MachineMeter(table, scale=1.3, offset=0.05)
    first = checked(table, meter, tmp_path)
    n = len(first.names)  # the reference, the uniform networks, 4 spread and 3 held out
    assert n >= 8 and first.timed_now == n and meter.timings == n * 3  # in 3 rounds
    again = MachineMeter(table, scale=1.3, offset=0.05)  # the same machine, later
    second = checked(table, again, tmp_path)
    # cached timings are checked, not trusted: the reference is timed again, and agrees
    assert again.rounds == {cache_lib.network_digest(first.archs[0]): 3}
    assert second.timed_now == 1 and second.cached_at and second.drift is None
    assert second.group_scales == pytest.approx(first.group_scales)
    assert "cached from" in second.line()
    assert second.table.source == first.table.source
    rechecked = checked(table, MachineMeter(table, scale=9.9), tmp_path, recheck=True)
    assert rechecked.timed_now == n  # --latency_recheck
    assert rechecked.group_scales["k3"] == pytest.approx(9.9, rel=1e-3)


def test_another_host_does_not_reuse_them(tmp_path, monkeypatch):
    table = measured_table(tiny_space())
    n = checked(table, MachineMeter(table, scale=1.3), tmp_path).timed_now
    monkeypatch.setattr(cache_lib, "host_description", lambda: "other-host aarch64, 8 CPUs")
    meter = MachineMeter(table, scale=1.3)
    check = checked(table, meter, tmp_path)
    assert check.timed_now == n and meter.timings == 3 * n
    assert len(os.listdir(tmp_path / "cache")) == 2  # one folder per host


def test_another_space_or_runtime_setting_does_not_reuse_them(tmp_path):
    space = tiny_space()
    meter = latency.Meter()
    folder = lambda s, m: cache_lib.MachineCache(str(tmp_path), s, m).dir
    assert folder(space, meter) == folder(tiny_space(dropout=0.5), meter)  # no part changes
    assert folder(space, meter) != folder(tiny_space(input_size=32), meter)
    assert folder(space, meter) != folder(space, latency.Meter(threads=2))


def test_the_cache_respects_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert latency.cache_root() == str(tmp_path / "proxyless_tf" / "latency")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: only absolute
    assert latency.cache_root() == os.path.expanduser("~/.cache/proxyless_tf/latency")
    assert latency.cache_root("/given") == "/given"


# --- through the flags: the search's objective and its target ----------------------------
def saved(table, tmp_path, name="table.json"):
    path = str(tmp_path / name)
    table.save(path)
    return path


def test_a_ratio_target_is_resolved_against_the_reference_measured_here(tmp_path,
                                                                       flags_parsed):
    space = tiny_space()
    table = measured_table(space)
    path = saved(table, tmp_path)
    reference = architecture.resolve(REFERENCE, space)
    common = dict(latency_table=path, target_ms=None, target_ratio=0.8, latency_loss="abs",
                  target_reference=REFERENCE, latency_cache_dir=str(tmp_path / "cache"))

    class Meter(MachineMeter):  # the reference runs 10% slower than the refit can tell
        def time(self, arch):
            stats = super().time(arch)
            slower = 1.1 if arch.ops == reference.ops else 1.0
            return {k: v * slower if k != "count" else v for k, v in stats.items()}

    meter = Meter(table, scale=1.5, offset=0.1)
    with flagsaver.flagsaver(**common):
        objective = flag_configs.objective_from_flags(space, meter=meter)
    measured = 1.1 * (1.5 * table.predict(reference) + 0.1)
    assert objective.target_ms == pytest.approx(0.8 * measured, rel=1e-5)  # 6 digits kept
    assert objective.table.predict(reference) != pytest.approx(measured, rel=0.02)
    assert objective.table.source != path  # refitted
    with flagsaver.flagsaver(**common, latency_check=False):  # as before: the table's prediction
        objective = flag_configs.objective_from_flags(space, meter=meter)
    assert objective.target_ms == pytest.approx(0.8 * table.predict(reference))
    assert objective.table.source == path


def test_latency_table_auto_is_built_here_once_and_then_reused(tmp_path, monkeypatch):
    space = tiny_space()
    truth = measured_table(space)
    monkeypatch.setattr(latency.Part, "model", lambda self: self.key)

    class PartsMeter(MachineMeter):
        def time(self, prepared):  # a part's key, or a whole network
            if isinstance(prepared, str):
                self.timings += 1
                ms = truth.ms(prepared)
                return {"count": 5, "mean": ms, "var": 0.0, "median": ms, "p90": ms}
            return super().time(prepared)

    config = latency.LatencyConfig(table="auto", cache_dir=str(tmp_path), rounds=1,
                                   calibrate=0, references=(), check=False)
    meter = PartsMeter(truth)
    table = latency.load_table(space, meter, config)
    assert meter.timings == len(latency.table_parts(space))
    assert table.source.startswith(str(tmp_path)) and not table.missing(space)
    assert latency.table_path(space, meter, config) == table.source
    meter = PartsMeter(truth)
    assert latency.load_table(space, meter, config).source == table.source
    assert meter.timings == 0
    # a table for another space (here: 32x32) is no table for this one: built here too
    other = config.replace(table=saved(measured_table(tiny_space(input_size=32)), tmp_path,
                                       "other.json"), check=True)
    assert latency.load_table(space, PartsMeter(truth), other).source == table.source
    # --nolatency_check: as it is
    assert latency.load_table(space, PartsMeter(truth), other, build_missing=False) \
        .source == other.table


# --- bad input: one line, naming the flag or the file ------------------------------------
def test_a_table_for_another_runtime_is_a_one_line_error(tmp_path, flags_parsed):
    space = tiny_space()
    path = saved(measured_table(space, runtime="tf_cpu"), tmp_path)
    with flagsaver.flagsaver(latency_table=path, target_ms=1.0, target_ratio=None,
                             latency_cache_dir=str(tmp_path / "cache")):
        with pytest.raises(UsageError) as info:
            flag_configs.objective_from_flags(space, meter=latency.Meter())
    message = str(info.value)
    assert "\n" not in message and path in message and "runtime=tf_cpu" in message
    assert "--nolatency_check" in message and "--latency_table=auto" in message


def test_without_litert_the_check_is_a_one_line_error(tmp_path, monkeypatch, flags_parsed):
    space = tiny_space()
    path = saved(measured_table(space), tmp_path)
    real = latency.meter.importlib.util.find_spec
    monkeypatch.setattr(latency.meter.importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else real(name, *a))
    with flagsaver.flagsaver(latency_table=path, target_ms=1.0, target_ratio=None,
                             latency_cache_dir=str(tmp_path / "cache")):
        with pytest.raises(UsageError) as info:
            flag_configs.objective_from_flags(space, meter=latency.Meter())
    message = str(info.value)
    assert "\n" not in message and message.startswith("--latency_check: ")
    assert "ai_edge_litert" in message and "--nolatency_check" in message


def test_a_cache_folder_that_cannot_be_written_is_a_one_line_error(tmp_path, flags_parsed):
    space = tiny_space()
    table = measured_table(space)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with flagsaver.flagsaver(latency_table=saved(table, tmp_path), target_ms=1.0,
                             target_ratio=None, latency_cache_dir=str(blocker)):
        with pytest.raises(UsageError, match="--latency_cache_dir"):
            flag_configs.objective_from_flags(space, meter=MachineMeter(table))


def test_a_table_whose_parts_do_not_fit_this_machine_is_not_used_and_the_search_stops(
        tmp_path, flags_parsed):
    space = tiny_space()
    table = measured_table(space)
    # On this machine 5x5 blocks of stride 1 are 4x as slow, those of stride 2 and the rest as
    # in the table: no scale per kernel fits networks with many and few of them alike.
    slower = "expand:6-kernel:5-stride:1"
    here = latency.LatencyTable({k: dict(e, mean=e["mean"] * (4 if slower in k else 1))
                                 for k, e in table.entries.items()}, table.settings)
    check = checked(table, MachineMeter(here), tmp_path)
    assert not check.refitted and check.table is table
    assert "no refit predicts the networks within 10%" in check.stop
    assert "STOP: table synthetic is off by" in check.line()
    with flagsaver.flagsaver(latency_table=saved(table, tmp_path), target_ms=1.0,
                             target_ratio=None, latency_cache_dir=str(tmp_path / "cache")):
        with pytest.raises(UsageError) as info:
            flag_configs.objective_from_flags(space, meter=MachineMeter(here))
    message = str(info.value)
    assert "\n" not in message and message.startswith("latency check: table")
    assert "--latency_table=auto" in message and "--nolatency_check" in message


def test_a_table_with_no_runtime_is_not_checked_and_says_so(tmp_path, flags_parsed, capsys):
    space = tiny_space()
    path = saved(synthetic_table(space), tmp_path)  # runtime 'synthetic', like the official
    with flagsaver.flagsaver(latency_table=path, target_ms=1.0, target_ratio=None,
                             latency_loss="abs", latency_cache_dir=str(tmp_path / "cache")):
        objective = flag_configs.objective_from_flags(space, meter=latency.Meter())
    assert objective.table.source == path
    assert "latency check: skipped: table" in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "cache")


def test_a_gpu_table_on_a_machine_without_a_gpu_is_not_checked_and_says_so(
        tmp_path, flags_parsed, capsys):
    import tensorflow as tf
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    space = tiny_space()
    path = saved(measured_table(space, runtime="tf_gpu"), tmp_path)
    with flagsaver.flagsaver(latency_table=path, target_ms=1.0, target_ratio=None,
                             latency_loss="abs", latency_cache_dir=str(tmp_path / "cache")):
        objective = flag_configs.objective_from_flags(space, meter=latency.Meter(runtime="tf_gpu"))
    assert objective.table.source == path
    assert "latency check: skipped: --latency_runtime=tf_gpu" in capsys.readouterr().out


def test_validate_refuses_a_table_for_another_runtime_on_the_command_line(tmp_path):
    shipped = latency.LatencyTable.load("proxyless_tf/tables/mobile_32.json")
    table = shipped.with_calibration(shipped.calibration, "tf_cpu table")
    table.settings["runtime"] = "tf_cpu"
    path = saved(table, tmp_path, "tf_cpu.json")
    result = run_module("proxyless_tf.latency", "validate", "--flagfile=flags/mobile.cfg",
                        f"--table={path}", "--quick", f"--latency_cache_dir={tmp_path}/cache")
    assert_usage_error(result, "tf_cpu.json", "runtime=tf_cpu", "--nolatency_check")


# --- the export report --------------------------------------------------------------------
def test_the_report_says_plainly_when_the_measured_latency_misses():
    from export import report as report_lib
    misses = report_lib.latency_misses(0.784, target_ms=0.465, predicted_ms=0.8)
    assert misses == ["measured 0.784 ms is 69% above the target (0.465 ms), more than 10%"]
    assert report_lib.latency_misses(0.45, target_ms=0.465, predicted_ms=0.47) == []
    assert "below the table's prediction" in report_lib.latency_misses(0.4, None, 0.5)[0]
    lat = {"median_ms": 0.784, "p90_ms": 0.8, "runs": 50, "threads": 1, "target_ms": 0.465,
           "predicted_ms": 0.8, "table": "t.json", "misses": misses}
    rows = dict(report_lib._latency_rows(lat))
    assert rows["latency target"] == "0.465 ms (measured +68.6%)"
    assert rows["**latency verdict**"].startswith("**MISS**: measured 0.784 ms is 69% above")
    lat.update(median_ms=0.47, misses=[])
    assert dict(report_lib._latency_rows(lat))["**latency verdict**"] == \
        "within 10% of the target and the prediction"


def test_the_searchs_export_report_measures_the_derived_network_against_its_target(
        tmp_path, flags_parsed):
    """search --export_tflite: the report uses the search's own (refitted) table and target."""
    import types

    import export
    from proxyless_tf import data, search
    from proxyless_tf.train import build_model
    space = tiny_space()
    arch = architecture.from_space(space, ["k3e3", "zero", "k5e6", "k3e3"], name="tiny")
    table = saved(synthetic_table(space), tmp_path)  # as the check's refit would be
    finished = types.SimpleNamespace(
        objective=types.SimpleNamespace(table=latency.LatencyTable.load(table), target_ms=1e-4),
        derived_model=build_model(arch), results={"derived_test_acc": 0.5, "test_images": 16},
        splits=data.load("digits", 16, 32, max_train_examples=64))
    settings = export.ExportSettings(report_images=16, latency_runs=3, latency_warmup=1,
                                     batch_size=32, verbose=0, latency_table="other.json")
    with flagsaver.flagsaver(output_dir=str(tmp_path), output=None, dataset="digits"):
        search.export_derived(finished, arch, settings)
    report = json.loads((tmp_path / "derived.float32.report.json").read_text())["latency"]
    assert report["table"] == table and report["target_ms"] == 1e-4
    assert report["predicted_ms"] == pytest.approx(
        latency.LatencyTable.load(table).predict(arch))
    assert "above the target (0.000 ms)" in report["misses"][0]
    assert "**MISS**: measured" in (tmp_path / "derived.float32.report.md").read_text()


# --- for real, tiny ----------------------------------------------------------------------
def test_a_real_check_with_litert(tmp_path, monkeypatch):
    """A table built here for a one-block space, then checked here: converted and timed with
    LiteRT, cached, and the second check times the reference again (and the rest too when the
    machine drifted meanwhile: on a shared test machine it may). Whatever else the test
    machine runs, the timings are cached here: being busy has its own synthetic test."""
    monkeypatch.setattr(latency.Meter, "other_load", lambda self: OtherLoad(0.0))
    space = tiny_space(widths=(16,), depths=(1,), strides=(1,), candidates=("k3e3", "k5e6"))
    meter = latency.Meter(runs=5, warmup=2)
    table, _, _ = latency.build_table(space, meter, str(tmp_path / "t.json"), progress=False)
    first = checked(table, meter, tmp_path, space=space, networks=2, reference="all:k5e6",
                    rounds=2, budget_s=5)
    assert first.timed_now == len(first.measured) == 2  # the space has two networks
    assert all(0 < m < 100 for m in first.measured) and 0 < first.reference_ms < 100
    assert "rounds differ by" in first.line()
    second = checked(table, meter, tmp_path, space=space, networks=2, reference="all:k5e6",
                     rounds=2, budget_s=5)
    assert second.timed_now == (2 if second.drift else 1)


def random_draws():
    """What a seeded search draws next: Python's, NumPy's and Keras's random numbers, and a
    new layer's initial weights."""
    import random

    import keras
    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    return (random.random(), float(np.random.rand()),
            keras.random.normal((2,)).numpy().tolist(), layer.kernel.numpy().tolist())


def one_block_space():
    return tiny_space(widths=(16,), depths=(1,), strides=(1,), candidates=("k3e3", "k5e6"))


def test_a_seeded_run_draws_the_same_numbers_after_the_check_whether_its_timings_were_cached(
        tmp_path, monkeypatch):
    """The check builds networks of its own to time them (their weights drawn at random) and
    clears Keras's session between them; with its timings cached it builds only the
    reference. Neither may move the random state a seeded search goes on from, whether or not
    something drew from it before (docs/default_job.md)."""
    from keras.src.utils import rng_utils
    from proxyless_tf import reproducible
    monkeypatch.setattr(latency.Meter, "other_load", lambda self: OtherLoad(0.0))
    space = one_block_space()
    meter = latency.Meter(runs=2, warmup=1)
    table, _, _ = latency.build_table(space, meter, str(tmp_path / "t.json"), progress=False)
    reproducible.seed_everything(0)
    expected = [random_draws(), random_draws()]
    for cache in ("cold", "warm", "warm"):
        for drawn_before in (False, True):
            reproducible.seed_everything(0)
            before = [random_draws()] if drawn_before else []  # Keras's generator now exists
            check = checked(table, meter, tmp_path, space=space, networks=2,
                            reference="all:k5e6", rounds=1, budget_s=5)
            if cache == "warm" and not check.drift:
                assert check.timed_now == 1  # the reference alone
            assert before + [random_draws() for _ in range(2 - len(before))] == expected
            assert rng_utils.get_random_seed() == 0  # Keras's own seed, which others read


def test_a_seeded_run_draws_the_same_numbers_after_a_latency_table_built_here(tmp_path,
                                                                             monkeypatch):
    """--latency_table=auto builds the table in the search's own process, before the supernet,
    the first time only."""
    from proxyless_tf import reproducible
    from proxyless_tf.latency.objective import objective_from_config
    monkeypatch.setattr(latency.Meter, "other_load", lambda self: OtherLoad(0.0))
    space = one_block_space()
    config = latency.LatencyConfig(table="auto", cache_dir=str(tmp_path), rounds=1,
                                   calibrate=0, references=(), check=False, target_ms=1.0,
                                   loss="abs")
    meter = latency.Meter(runs=2, warmup=1)
    reproducible.seed_everything(0)
    expected = random_draws()
    for built in ("built now", "read from the cache"):
        reproducible.seed_everything(0)
        objective_from_config(space, config, meter=meter)
        assert random_draws() == expected, built


def test_the_table_drift_benchmark_reports_each_groups_ratio(tmp_path):
    """benchmarks/table_drift.py: a copy of the shipped table with its 3x3 blocks 1.5x slower
    shows k3 at 1.5 and every other group at 1.0."""
    shipped = latency.LatencyTable.load("proxyless_tf/tables/mobile_32.json")
    slower = {k: dict(e, median=e.get("median", e["mean"]) *
                      (1.5 if "kernel:3" in k and "expand:1-" not in k else 1.0))
              for k, e in shipped.entries.items()}
    path = str(tmp_path / "slower.json")
    latency.LatencyTable(slower, shipped.settings, path).save(path)
    result = run_module("benchmarks.table_drift", shipped.source, path)
    assert result.returncode == 0, result.stderr[-2000:]
    groups = json.loads(result.stdout.strip().splitlines()[-1])["groups"]
    assert groups["k3"]["median_ratio"] == pytest.approx(1.5, abs=1e-3)
    assert {g: r["median_ratio"] for g, r in groups.items() if g != "k3"} == \
        {g: pytest.approx(1.0) for g in groups if g != "k3"}


def test_the_table_drift_benchmark_refuses_tables_of_two_formats(tmp_path):
    """An int8 table against a float32 one would show the format's speed-up as drift: one
    `error:` line, exit status 2 (as a missing table), no traceback."""
    shipped = latency.LatencyTable.load("proxyless_tf/tables/mobile_32.json")
    path = str(tmp_path / "int8.json")
    latency.LatencyTable(shipped.entries, dict(shipped.settings, quantization="int8"),
                         path).save(path)
    for args in ((shipped.source, path), (shipped.source, str(tmp_path / "none.json"))):
        result = run_module("benchmarks.table_drift", *args)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
    assert "int8" in errors[0] or "none.json" in errors[0]
