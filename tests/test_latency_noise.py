"""Issue 27: latency truth on a slower, noisier, shared machine. The check tells a table's
bias from the machine's noise (a 2.5x bias must never hide behind 20% noise, and noise alone is
not fitted), judges its refit on networks it did not fit, checks cached timings instead of
trusting them, and the export report compares the ratio to the reference, which holds while
the machine drifts.

Timings are synthetic: each timing of a network is its latency on the 'machine' (the table's
prediction, biased as the test says) times a random factor, log-normal with a standard
deviation of 25%, seeded. Three such rounds differ by more than 20% in the median network (the
old check then refused to fit); the check must time more rounds and fit anyway."""

import dataclasses
import json
import os

import numpy as np
import pytest
from absl.testing import flagsaver

from conftest import tiny_space
from proxyless_tf import architecture, latency
from proxyless_tf.latency import cache as cache_lib, refit, uncertainty
from test_latency_check import REFERENCE, MachineMeter, checked, measured_table

NOISE = 0.25


class NoisyMachine(MachineMeter):
    """MachineMeter whose every timing is off by a log-normal factor (sd `jitter`); keeps each
    network's timings in `seen`."""

    def __init__(self, truth, jitter=NOISE, seed=0, **kwargs):
        super().__init__(truth, **kwargs)
        self.jitter, self.rng, self.seen = jitter, np.random.default_rng(seed), {}

    def time(self, arch):
        stats = super().time(arch)
        ms = stats["median"] * float(np.exp(self.jitter * self.rng.standard_normal()))
        self.seen.setdefault(cache_lib.network_digest(arch), []).append(ms)
        return {"count": 5, "mean": ms, "var": 0.0, "median": ms, "p90": ms}


def space():
    return tiny_space(depths=(3, 3))  # 3^5 networks: room for 20 the check never timed


def unseen(check, count=20):
    timed = {cache_lib.network_digest(a) for a in check.archs}
    archs = [a for a in latency.random_archs(space(), 3 * count, seed=7)
             if cache_lib.network_digest(a) not in timed]
    assert len(archs) >= count
    return archs[:count]


def three_rounds_differ(machine):
    """How far apart the first 3 rounds were in the median network (the old check's noise)."""
    return float(np.median([max(t[:3]) / min(t[:3]) - 1 for t in machine.seen.values()]))


# --- what issue 27 must show ------------------------------------------------------------
@pytest.mark.parametrize("bias", [dict(scale=2.5), dict(groups={"k3": 1.5})],
                         ids=["2.5x uniform", "1.5x on k3 blocks"])
def test_a_bias_behind_25_percent_noise_is_refitted_to_predict_unseen_networks_within_10_percent(
        tmp_path, bias):
    table = measured_table(space())
    machine = NoisyMachine(table, **bias)
    check = checked(table, machine, tmp_path, space=space())
    assert three_rounds_differ(machine) > 0.20  # what the old check called too noisy to fit
    assert check.refitted and check.warning is None and check.stop is None
    others = unseen(check)
    assert [check.table.predict(a) for a in others] == pytest.approx(
        [machine.latency(a) for a in others], rel=0.10)


def test_noise_alone_is_not_refitted(tmp_path):
    table = measured_table(space())
    check = checked(table, NoisyMachine(table), tmp_path, space=space())
    assert not check.refitted and check.table is table and check.warning is None
    assert "not refitted (within 5%)" in check.line()


# --- more rounds while they disagree -----------------------------------------------------
def test_rounds_are_added_while_they_disagree_and_the_line_says_so(tmp_path):
    table = measured_table(space())
    machine = NoisyMachine(table, scale=1.3)
    check = checked(table, machine, tmp_path, space=space())
    rounds = {len(t) for t in machine.seen.values()}
    assert len(rounds) == 1 and rounds.pop() > 3
    # each network's latency is then known within 3% (one standard error), and the line says so
    assert max(check.ses) <= uncertainty.SE_GOAL
    sigma = uncertainty.noise_sigma(list(machine.seen.values()))
    assert sigma == pytest.approx(NOISE, rel=0.15)
    assert (f"rounds differ by {100 * np.expm1(sigma):.0f}%, each known within "
            f"{100 * max(check.ses):.1f}%") in check.line()


def test_a_quiet_machine_is_timed_in_the_rounds_asked_for(tmp_path):
    table = measured_table(space())
    machine = MachineMeter(table, scale=1.3)
    check = checked(table, machine, tmp_path, space=space())
    assert machine.timings == 3 * len(check.names)
    assert "; 3 rounds, rounds differ by 0%" in check.line()


def test_one_round_under_load_does_not_move_a_networks_latency(tmp_path):
    """Every network's second round 50% slower: the median of the rounds ignores it."""
    table = measured_table(space())
    check = checked(table, MachineMeter(table, scale=1.3, noise=0.5), tmp_path, space=space())
    assert check.group_scales == {g: pytest.approx(1.3, rel=1e-3) for g in check.group_scales}


def test_without_time_for_more_rounds_a_2_5x_bias_is_still_refitted(tmp_path):
    """The issue's VM: 3 rounds 20-44% apart, every network 1.8-2.9x slower than the table."""
    table = measured_table(space())
    machine = NoisyMachine(table, scale=2.5)
    check = checked(table, machine, tmp_path, space=space(), budget_s=0)
    assert "; 3 rounds, rounds differ by" in check.line()
    assert check.refitted
    # 3 rounds of 25% noise leave each network known within about 18%: the refit is rough
    # (in 30 seeds up to 41% off an unseen network), but no longer 60% below every one
    others = unseen(check)
    ratios = np.array([check.table.predict(a) / machine.latency(a) for a in others])
    assert np.all(np.abs(ratios - 1) < 0.5)


def test_a_small_bias_the_noise_hides_is_named_when_there_is_no_time_for_more_rounds(tmp_path):
    table = measured_table(space())
    check = checked(table, NoisyMachine(table, scale=1.08, seed=1), tmp_path, space=space(),
                    budget_s=0)
    assert not check.refitted and check.table is table
    assert "not refitted (within the noise)" in check.line()
    assert "WARNING: measurements too noisy to tell" in check.line()


# --- the refit, judged -------------------------------------------------------------------
def test_a_refit_is_judged_on_networks_it_was_not_fitted_on(tmp_path):
    table = measured_table(space())
    check = checked(table, MachineMeter(table, scale=1.3), tmp_path, space=space())
    assert sum(check.held_out) == 3 and "; 3 held out)" in check.line()
    assert "judged on 3 held-out networks within 0.0%" in check.line()
    record = latency.LatencyTable.load(check.table.source).settings["refit"]
    assert record["held_out"] == 3 and record["networks"] == len(check.names) - 3


def test_an_implausible_group_scale_is_shrunk_toward_the_machines_overall_ratio():
    """The fixed parts, a small share of every network, take the machine's negative
    per-network constant: alone they would come out at x0.05 on a machine 1.3x slower."""
    rows = [{"fixed": 0.2, "k3": 1.0, "k5": 0.0}, {"fixed": 0.2, "k3": 0.0, "k5": 2.0},
            {"fixed": 0.2, "k3": 0.5, "k5": 1.0}, {"fixed": 0.2, "k3": 0.7, "k5": 0.3},
            {"fixed": 0.2, "k3": 1.5, "k5": 0.6}]
    measured = [1.3 * sum(row.values()) - 0.25 for row in rows]
    assert latency.fit_group_scales(rows, measured)["fixed"] == pytest.approx(0.05)
    overall = refit.overall_scale([sum(row.values()) for row in rows], measured)
    fit = refit.group_fit(rows, measured, overall)
    assert not refit.implausible(fit.group_scales, overall)
    assert fit.note.startswith(f"shrunk toward the overall x{overall:.3f}: fixed x0.050")
    predicted = [sum(fit.group_scales[g] * ms for g, ms in row.items()) for row in rows]
    assert predicted == pytest.approx(measured, rel=0.05)  # the networks hardly notice


# --- cached timings are checked, not trusted ----------------------------------------------
def test_a_machine_that_drifted_since_the_cache_is_timed_again(tmp_path):
    """The issue's VM: the same network measured 1.170 ms at 11:02 and 2.274 ms at 12:50."""
    table = measured_table(tiny_space())
    n = checked(table, MachineMeter(table, scale=1.0), tmp_path).timed_now
    slower = MachineMeter(table, scale=1.9)
    check = checked(table, slower, tmp_path)
    assert check.timed_now == n and slower.timings == 3 * n  # the reference first, then the rest
    assert "all:k5e6 drifted from" in check.line() and "timed again" in check.line()
    assert check.refitted and check.group_scales["k3"] == pytest.approx(1.9, rel=1e-3)
    # the new timings replace the old: a third check finds the reference as cached
    third = checked(table, MachineMeter(table, scale=1.9), tmp_path)
    assert third.timed_now == 1 and third.drift is None


def test_timings_made_while_the_machine_was_busy_are_not_cached(tmp_path):
    """Two searches started together each timed while the other trained: what they measured
    is not what the machine does alone, and must not be reused."""
    table = measured_table(tiny_space())
    busy = checked(table, MachineMeter(table, scale=1.3, busy=0.6), tmp_path)
    assert busy.refitted and "other processes took 60% of the CPUs: not cached" in busy.line()
    folder = tmp_path / "cache" / os.listdir(tmp_path / "cache")[0]
    assert not (folder / "networks.json").exists()
    alone = MachineMeter(table, scale=1.3)
    assert checked(table, alone, tmp_path).timed_now == busy.timed_now
    assert (folder / "networks.json").exists()


def test_two_processes_saving_into_one_cache_keep_each_others_records(tmp_path):
    import threading
    space, meter = tiny_space(), latency.Meter()
    archs = latency.random_archs(space, 40, seed=3)
    records = {cache_lib.network_digest(a): cache_lib.network_record(a, {"median": 1.0})
               for a in archs}
    digests = sorted(records)
    halves = [digests[::2], digests[1::2]]

    def save(half):  # each its own MachineCache, as two processes would have
        machine = cache_lib.MachineCache(str(tmp_path), space, meter).ensure_writable()
        for digest in half:
            machine.save_networks({digest: records[digest]})

    threads = [threading.Thread(target=save, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    saved = cache_lib.MachineCache(str(tmp_path), space, meter).load_networks()
    assert sorted(saved) == digests  # valid JSON, nothing lost


def test_a_refit_is_cached_per_table_and_space(tmp_path):
    """The smoke space after the mobile one: a refit fitted on one space's networks is not the
    refit of another, even from the same table."""
    table = measured_table(tiny_space())
    one = checked(table, MachineMeter(table, scale=1.3), tmp_path, space=tiny_space())
    other_space = tiny_space(depths=(1, 2))
    other = checked(table, MachineMeter(table, scale=1.3), tmp_path, space=other_space)
    assert one.table.source != other.table.source
    spaces = {latency.LatencyTable.load(c.table.source).settings["refit"]["space"]
              for c in (one, other)}
    assert spaces == {cache_lib.space_digest(tiny_space()), cache_lib.space_digest(other_space)}


# --- the uncertainty ---------------------------------------------------------------------
def test_the_noise_of_a_round_is_estimated_robustly():
    rng = np.random.default_rng(0)
    rounds = [list(ms * np.exp(0.2 * rng.standard_normal(5))) for ms in (0.5, 1.0, 2.0) * 4]
    assert uncertainty.noise_sigma(rounds) == pytest.approx(0.2, rel=0.25)
    loaded = [values[:-1] + [3 * values[-1]] for values in rounds[:2]] + rounds[2:]
    assert uncertainty.noise_sigma(loaded) == pytest.approx(0.2, rel=0.35)  # 2 rounds 3x slow
    assert uncertainty.noise_sigma([[1.0], [2.0]]) is None  # one round: nothing to compare
    assert uncertainty.standard_error(0.2, 4) == pytest.approx(np.sqrt(np.pi / 2) * 0.1)
    assert uncertainty.standard_error(0.0, 4) == uncertainty.MIN_SE


def test_a_bias_is_told_from_noise_by_the_standard_errors():
    rng = np.random.default_rng(0)
    ses = np.full(8, 0.05)
    assert not uncertainty.beyond_noise(rng.normal(0, 0.05, 8), ses)  # noise alone
    assert uncertainty.beyond_noise(np.full(8, 0.06), ses)  # uniform: 3.4 SE of the mean
    # k3 networks slower, k5 ones faster: no shift on average, yet no noise either
    assert uncertainty.beyond_noise(np.array([0.2, -0.2] * 4), ses)
    assert uncertainty.drifted(1.0, 1.3, 0.03, 0.03, 0.05)
    assert not uncertainty.drifted(1.0, 1.3, 0.2, 0.2, 0.05)  # within the noise
    assert not uncertainty.drifted(1.0, 1.04, 0.001, 0.001, 0.05)  # within 5%


# --- latency validate, the same logic ----------------------------------------------------
def test_validate_times_until_it_knows_each_network(tmp_path):
    table = measured_table(space())
    metrics = latency.validate(space(), table, NoisyMachine(table), 6, str(tmp_path),
                               references=(), progress=False)
    assert metrics["within_10pct"] == 1.0
    result = json.loads((tmp_path / "validate.json").read_text())
    assert "added), rounds differ by" in result["timing"]
    assert all(row["rounds"] > 3 and row["se_pct"] <= 3.0 for row in result["rows"])
    assert "timed in " in (tmp_path / "validate.md").read_text()


# --- the export report: the ratio to the reference, drift-proof ---------------------------
def test_the_report_compares_the_ratio_to_the_reference_with_the_target_ratio():
    """A ratio holds on a machine that drifts: the absolute figures may miss while the ratio,
    what --target_ratio aimed at, is within 10%."""
    from export import report as report_lib
    assert report_lib.ratio_misses(0.84, 0.8) == []
    assert report_lib.ratio_misses(0.95, 0.8) == [
        "measured ratio to the reference 0.950 is 19% above the target ratio (0.800), more "
        "than 10%"]
    lat = {"median_ms": 1.17, "p90_ms": 1.2, "runs": 50, "threads": 1, "target_ms": 0.452,
           "misses": report_lib.latency_misses(1.17, 0.452),
           "ratio": {"reference": "all:k3e6", "reference_ms": 1.45, "rounds": 5,
                     "measured_ratio": 0.807, "target_ratio": 0.8, "misses": []}}
    rows = dict(report_lib._latency_rows(lat))
    assert rows["**latency verdict**"].startswith("**MISS**: measured 1.170 ms")
    assert rows["latency / reference"] == "0.807 (target ratio 0.800: measured +0.9%)"
    assert rows["**ratio verdict**"] == "within 10% of the target ratio"
    assert rows["reference network"].startswith("all:k3e6: median 1.450 ms (timed in turn")


def test_the_export_report_times_the_reference_in_turn_with_the_network(tmp_path):
    import export
    from export import report as report_lib
    from proxyless_tf import data
    from proxyless_tf.train import build_model
    space = tiny_space()
    arch = architecture.from_space(space, ["k3e3", "zero", "k5e6", "k3e3"], name="tiny")
    reference = architecture.resolve(REFERENCE, space)
    settings = export.ExportSettings(report_images=16, latency_runs=3, latency_warmup=1,
                                     batch_size=32, verbose=0, target_ratio=0.8,
                                     target_reference=reference)
    report = export.export_model(build_model(arch), str(tmp_path / "net.tflite"), settings,
                                 data.load("digits", 16, 32, max_train_examples=64), arch=arch)
    ratio = report["latency"]["ratio"]
    assert ratio["reference"] == REFERENCE and ratio["rounds"] == 5
    assert ratio["target_ratio"] == 0.8 and 0 < ratio["measured_ratio"] < 10
    assert ratio["misses"] == report_lib.ratio_misses(ratio["measured_ratio"], 0.8)
    assert "| latency / reference |" in (tmp_path / "net.report.md").read_text()
    quantized = export.export_model(  # the target is a float network's: no ratio for int8
        build_model(arch), str(tmp_path / "int8.tflite"),
        dataclasses.replace(settings, quantize="int8", calibration_images=8),
        data.load("digits", 16, 32, max_train_examples=64), arch=arch)
    assert quantized["latency"]["ratio"] is None


def test_the_search_exports_with_the_flags_ratio_target(flags_parsed):
    import export
    with flagsaver.flagsaver(target_ratio=0.8, target_ms=None, target_reference="all:k3e6"):
        settings = export.settings_from_flags()
    assert settings.target_ratio == 0.8 and settings.target_reference.name == "all:k3e6"
    with flagsaver.flagsaver(target_ratio=None, target_ms=1.0):
        assert export.settings_from_flags().target_ratio is None
