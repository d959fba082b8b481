"""benchmarks.cifar10_quality: the pieces that decide what is compared, on tiny spaces and a
synthetic latency table (no training, no timing): the rejection sampler of the random networks,
the MAC count, and the bookkeeping of several searches (each against the best random network)
on made-up results."""

import json

import pytest

from benchmarks import cifar10_quality  # noqa: F401  (the runner: its imports resolve)
from benchmarks import cifar10_quality_report as report
from benchmarks import cifar10_quality_settings as settings
from benchmarks import cifar10_quality_steps as cq_steps
from benchmarks import progress, stats
from conftest import synthetic_table, tiny_space
from proxyless_tf import architecture, blocks, latency
from proxyless_tf.errors import UsageError


def test_random_networks_are_distinct_and_within_the_window_of_the_target():
    space = tiny_space(depths=(3, 3))  # 5 searchable blocks: enough distinct networks
    table = synthetic_table(space, overhead_ms=0.001)
    target = table.predict(architecture.resolve("all:k3e3", space))
    archs = cq_steps.sample_near_target(space, table, target, 6, tolerance=0.05, seed=3)
    assert len(archs) == 6
    assert len({tuple(cq_steps.searchable_ops(a)) for a in archs}) == 6
    for i, arch in enumerate(archs):
        assert abs(table.predict(arch) / target - 1) <= 0.05
        assert arch.name == f"random{i + 1}"
    # seeded, and a larger count extends a smaller one (a resumed run keeps its networks)
    again = cq_steps.sample_near_target(space, table, target, 8, tolerance=0.05, seed=3)
    assert [a.ops for a in again[:6]] == [a.ops for a in archs]
    other = cq_steps.sample_near_target(space, table, target, 6, tolerance=0.05, seed=4)
    assert [a.ops for a in other] != [a.ops for a in archs]


def test_an_unreachable_target_is_a_usage_error():
    space = tiny_space()
    table = synthetic_table(space, overhead_ms=0.001)
    fastest, _ = latency.LatencyObjective(table, space, 1.0, "abs").range_ms()
    with pytest.raises(UsageError, match="choose another target"):
        cq_steps.sample_near_target(space, table, fastest / 3, 1, max_tries=500)


def test_macs_of_a_small_network_by_hand():
    space = tiny_space()  # 16x16 input, stem stride 1, stages (16 ch stride 2, 24 ch stride 1)
    arch = architecture.from_space(space, ["k3e3", "zero", "k5e6", "k3e3"], name="tiny")
    model = blocks.build_network(arch)
    stem, first = arch.stem_channels, arch.blocks[0].out_channels
    c1, c2, head = arch.blocks[1].out_channels, arch.blocks[3].out_channels, arch.head_channels
    hw = 16 * 16
    expected = (hw * 9 * 3 * stem                                   # stem 3x3 conv
                + hw * 9 * stem + hw * stem * first                 # k3e1: dw 3x3, project
                + hw * first * 3 * first                            # k3e3 expand (stride 2 dw)
                + 8 * 8 * (9 * 3 * first + 3 * first * c1)          # its dw and project at 8x8
                + 8 * 8 * (c1 * 6 * c1 + 25 * 6 * c1 + 6 * c1 * c2)  # k5e6 ('zero' costs 0)
                + 8 * 8 * (c2 * 3 * c2 + 9 * 3 * c2 + 3 * c2 * c2)  # k3e3
                + 8 * 8 * c2 * head + head * 10)                    # head 1x1 conv, classifier
    assert blocks.count_macs(model) == expected


def test_short_ops():
    assert report.short_ops(["k3e6", "zero", "k7e3"]) == "36 -- 73"


def fake_row(name, kind, acc, measured_ms=0.44, search_seed=None, supernet=None, derived=None):
    """A network's line of the results as net_row writes it, with made-up numbers."""
    row = {"name": name, "kind": kind, "ops": ["k3e6", "zero"], "params": 1000, "macs": 2e6,
           "predicted_ms": 0.45, "measured_ms": measured_ms,
           "measured_vs_target": measured_ms / 0.44, "measured_vs_baseline": measured_ms / 0.55,
           "test_accuracy": [acc], "acc_mean": acc, "acc_std": None, "test_examples": 1000,
           "train_examples": 1000}
    if kind == "searched":
        row.update(search_seed=search_seed, supernet_train_acc=supernet, derived_test_acc=derived)
    return row


def fake_rows():
    return [fake_row("searched_s1", "searched", 0.45, 0.60, search_seed=1),  # out of order
            fake_row("searched_s0", "searched", 0.50, search_seed=0, supernet=0.41, derived=0.38),
            fake_row("searched_s2", "searched", 0.48, search_seed=2, supernet=0.4, derived=0.3),
            fake_row("baseline", "baseline", 0.49, 0.55),
            fake_row("random1", "random", 0.46), fake_row("random2", "random", 0.48),
            fake_row("random3", "random", 0.44)]


def test_summary_says_for_each_search_whether_it_beats_the_best_random_network():
    result = report.summary(fake_rows(), 0.44, 12.34, quick=True)
    searched = result["searched"]
    assert [s["search_seed"] for s in searched] == [0, 1, 2]
    assert [s["name"] for s in searched] == ["searched_s0", "searched_s1", "searched_s2"]
    assert [s["beats_best_random"] for s in searched] == [True, False, False]  # s2 ties: no
    assert [s["random_beaten"] for s in searched] == [3, 1, 2]
    assert [s["within_10pct"] for s in searched] == [True, False, True]
    assert searched[0]["supernet_train_acc"] == 0.41 and searched[0]["derived_test_acc"] == 0.38
    assert searched[1]["supernet_train_acc"] is None  # a search without results.json
    assert result["best_random"] == "random2" and result["random_acc_max"] == 0.48
    assert result["search_seeds"] == 3 and result["searched_beating_best_random"] == 1
    assert result["searched_acc_mean"] == round((0.50 + 0.45 + 0.48) / 3, 4)
    assert result["random_acc_mean"] == 0.46 and result["random_count"] == 3
    assert result["baseline_acc"] == 0.49 and result["seeds"] == 1
    assert result["quick"] is True and result["wall_s"] == 12.3
    json.dumps(result)  # the last line printed


def test_markdown_has_a_line_per_search_against_the_best_random_network():
    rows = fake_rows()
    text = report.markdown(rows, report.summary(rows, 0.44, 1.0), 0.44, "Target T = 0.440 ms")
    assert text.startswith("Target T = 0.440 ms\n")
    assert "best random network (random2, 48.00%)" in text
    search_lines = [line for line in text.splitlines()
                    if line.startswith(("| 0 |", "| 1 |", "| 2 |"))]
    assert len(search_lines) == 3
    assert search_lines[0].startswith("| 0 | searched_s0 | 41.00 | 38.00 | 50.00 |")
    assert search_lines[0].endswith("| 3 of 3 | yes |")
    assert search_lines[1].startswith("| 1 | searched_s1 | - | - | 45.00 |")
    assert search_lines[1].endswith("| no |")
    names = [line.split(" | ")[0][2:] for line in text.splitlines()
             if line.startswith(("| searched_s", "| baseline", "| random"))]
    assert names == [r["name"] for r in rows]  # every network in the first table


def with_seeds(rows, accs):
    for row in rows:
        row["test_accuracy"] = accs[row["name"]]
        row["acc_mean"] = sum(accs[row["name"]]) / len(accs[row["name"]])
    return rows


def test_the_summary_says_whether_the_seeds_tell_the_networks_apart():
    names = [r["name"] for r in fake_rows()]
    # seed noise of +-1 point around equal networks: nothing to tell apart
    level = {name: [0.48 + 0.01 * (-1) ** i, 0.48 - 0.01 * (-1) ** i]
             for i, name in enumerate(names)}
    level_result = report.summary(with_seeds(fake_rows(), level), 0.44, 1.0)["told_apart"]
    assert level_result["anova_p"] > 0.9 and level_result["networks"] == 7
    assert level_result["seed_sd"] == pytest.approx(0.01 * 2 ** 0.5, abs=1e-4)
    assert level_result["means_sd"] == 0.0 and level_result["networks_sd"] == 0.0
    # three random networks, three searches: by luck the three searched are the top 3 of 6
    assert level_result["chance_every_search_beats_best_random_if_all_equal"] == \
        round(1 / 20, 4)
    # the same noise, searched_s0 ten points better: told apart (one network five points
    # better is not, at two seeds: p 0.06)
    apart = dict(level, searched_s0=[0.58 + 0.01, 0.58 - 0.01])
    apart_result = report.summary(with_seeds(fake_rows(), apart), 0.44, 1.0)["told_apart"]
    assert apart_result["anova_p"] < 0.01
    # the seed noise (sd 0.014) explains 0.01 of the means' spread, the network most of it
    assert apart_result["networks_sd"] == pytest.approx(
        (apart_result["means_sd"] ** 2 - 0.0002 / 2) ** 0.5, abs=1e-4)
    assert 0.9 * apart_result["means_sd"] < apart_result["networks_sd"] < apart_result["means_sd"]
    assert apart_result["networks_sd_upper95"] > apart_result["networks_sd"]  # its interval
    # networks with 2 and 8 seeds: the seed noise in a mean is seed_sd^2 / n with n the
    # harmonic mean of the seed counts (32/13), not their arithmetic mean (3.5): 0.0240, not 0.0255
    uneven = [{"kind": "random", "test_accuracy": accs} for accs in (
        [0.45, 0.49], [0.49, 0.53], [0.52, 0.56], [0.50, 0.51] * 4)]
    assert stats.told_apart(uneven)["networks_sd"] == pytest.approx(0.0240, abs=2e-4)
    # four networks pin their spread down poorly: the 95% interval reaches far above it (0.149)
    assert stats.told_apart(uneven)["networks_sd_upper95"] > 0.05
    text = report.markdown(fake_rows(), report.summary(with_seeds(fake_rows(), apart), 0.44, 1.0),
                          0.44, "T")
    assert "Are the networks told apart at this scale? One-way ANOVA over the 7 networks" in text
    # one seed per network: no test
    assert report.summary(fake_rows(), 0.44, 1.0)["told_apart"] is None
    assert "told apart at this scale" not in report.markdown(
        fake_rows(), report.summary(fake_rows(), 0.44, 1.0), 0.44, "T")


def test_the_summary_says_what_the_accuracies_follow():
    rows = fake_rows()
    for k, row in enumerate(rows):  # more expand-6 blocks, more accuracy; skips in every other
        row["ops"] = ["k3e6"] * k + ["k3e3"] * (6 - k) + ["zero"] * (k % 2)
        row["acc_mean"] = 0.40 + 0.01 * k
        row["params"] = 1000 * (7 - k)
    follows = report.summary(rows, 0.44, 1.0)["accuracy_follows"]
    assert follows["expand6_blocks"]["rho"] == 1.0 and follows["expand6_blocks"]["p"] < 1e-3
    assert follows["params"]["rho"] == -1.0
    assert abs(follows["skipped_blocks"]["rho"]) < 0.5
    text = report.markdown(rows, report.summary(rows, 0.44, 1.0), 0.44, "T")
    assert "accuracy follows over these networks (Spearman's rho, p): expand6 blocks +1.00" in text
    # a trait every network shares orders nothing
    assert report.summary(fake_rows(), 0.44, 1.0)["accuracy_follows"]["expand6_blocks"] == \
        {"rho": None, "p": None}


def test_steps_bar_counts_the_estimated_seconds_of_the_planned_steps(capsys):
    steps = progress.Steps()
    steps.add("search 0", 100.4)
    steps.add("train baseline seed 0", 20)
    assert steps.total_s() == 120
    steps.start_bar()
    steps.finish("latency")  # not planned (a previous run finished it): the bar stays
    assert steps.done_s == 0
    steps.finish("search 0")
    assert steps.done_s == 100
    steps.finish("train baseline seed 0")
    assert steps.done_s == steps.bar.target == 120
    assert "120/120" in capsys.readouterr().out  # not a terminal: Progbar's one line at the end


def test_the_recipe_names_a_flag_added_late_only_away_from_its_default():
    """recipe.cfg must match for a rerun to continue: a directory written before
    --seed_candidate existed (no such line) still resumes at the default."""
    flag = settings.FLAGS["seed_candidate"]
    assert "seed_candidate" not in settings.recipe_text()
    flag.value = "widest"
    try:
        assert "--seed_candidate=widest\n" in settings.recipe_text()
    finally:
        flag.value = flag.default


def test_a_rerun_adds_its_time_to_the_earlier_runs_rather_than_replacing_it(tmp_path):
    assert report.earlier_wall_s(str(tmp_path)) == 0.0  # the first run
    (tmp_path / "results.json").write_text(json.dumps({"summary": {"wall_s": 4075.3}}))
    assert report.earlier_wall_s(str(tmp_path)) == 4075.3
