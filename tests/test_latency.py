"""Latency tables, prediction, validation and the latency objective (proxyless_tf.latency).

Everything runs on tiny spaces; the one real measurement builds a table of a few parts.
The official Pixel-1 table is read from ../shared/reference (skipped when absent)."""

import json
import re
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_module, synthetic_table
from proxyless_tf import architecture, flag_configs, latency, search_space
from proxyless_tf.errors import UsageError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OFFICIAL = os.path.normpath(os.path.join(ROOT, "..", "shared", "reference", "proxylessnas",
                                         "mobile_trim.yaml"))
needs_official = pytest.mark.skipif(
    not os.path.exists(OFFICIAL),
    reason=f"the official table {OFFICIAL} is not here (it is not part of the repository)")


def tiny_space(**overrides):
    settings = dict(input_size=16, width_multiplier=0.25, widths=(16, 24), depths=(2, 1),
                    strides=(2, 1))
    settings.update(overrides)
    return search_space.small_input_space(**settings)


def run_cli(*args, timeout=120):
    return run_module("proxyless_tf.latency", *args, timeout=timeout)


def cli_error_line(proc):
    """The one line a UsageError prints (TensorFlow may log other lines to stderr first)."""
    lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# --- the official table ------------------------------------------------------------------
@needs_official
@pytest.mark.parametrize("op, expected", [("k3e3", 76.05), ("k3e6", 136.47), ("k7e6", 191.03)])
def test_official_table_predicts_the_published_sums(op, expected):
    table = latency.LatencyTable.load(OFFICIAL)
    space = search_space.imagenet_space()
    arch = architecture.resolve(f"all:{op}", space)
    assert table.predict(arch) == pytest.approx(expected, abs=0.01)
    # What is summed: stem, the fixed first block, the 21 searchable blocks, Conv_1, Logits.
    keys = [key for key, _ in table.breakdown(arch)]
    assert keys[0] == "Conv-input:224x224x3-output:112x112x32"
    assert keys[1] == ("expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-"
                       "stride:1-idskip:0")
    assert keys[-2:] == ["Conv_1-input:7x7x320-output:7x7x1280",
                         "Logits-input:7x7x1280-output:1000"]
    assert len(keys) == 1 + 1 + 21 + 2


@needs_official
def test_official_table_covers_the_paper_space_and_zero_costs_nothing():
    table = latency.LatencyTable.load(OFFICIAL)
    objective = latency.LatencyObjective(table, search_space.imagenet_space(), 80.0)
    assert len(objective.costs) == 21
    lo, hi = objective.range_ms()
    assert lo < 80.0 < hi
    for cands, cost in zip(objective.candidates, objective.costs):
        assert (cost[list(cands).index("zero")] == 0.0) if "zero" in cands else (cost > 0).all()


@needs_official
def test_predict_cli_prints_the_latency_last():
    proc = run_cli("predict", "--space=imagenet", f"--table={OFFICIAL}", "--arch=all:k3e3")
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.strip().splitlines()[-1]) == pytest.approx(76.05, abs=0.01)


@needs_official
def test_missing_entry_is_a_one_line_error_naming_the_key():
    # mobilenet_v2's widths (32, 64, 160) are not in the paper's search space.
    proc = run_cli("predict", "--space=imagenet", f"--table={OFFICIAL}", "--arch=mobilenet_v2")
    assert proc.returncode == 2
    line = cli_error_line(proc)
    assert "has no entry 'expanded_conv-input:56x56x24-output:28x28x32-" in line
    assert "Traceback" not in proc.stderr


def test_calibrating_a_table_that_lacks_the_spaces_parts_is_a_one_line_error(tmp_path):
    table = os.path.join(ROOT, "proxyless_tf", "tables", "mobile_32.json")
    proc = run_cli("calibrate", "--space=imagenet", f"--table={table}", "--latency_calibrate=2")
    assert proc.returncode == 2
    assert "has no entry 'Conv-input:224x224x3" in cli_error_line(proc)
    assert "build it first" in cli_error_line(proc)


def test_calibrating_with_other_measuring_settings_than_the_tables_is_a_one_line_error():
    table = os.path.join(ROOT, "proxyless_tf", "tables", "mobile_32.json")
    proc = run_cli("calibrate", "--flagfile=flags/mobile.cfg", f"--table={table}",
                   "--latency_threads=2")
    assert proc.returncode == 2
    line = cli_error_line(proc)
    assert "threads=1" in line and "not runtime=tflite, threads=2" in line, line


# --- tables: loading, errors ---------------------------------------------------------------
def test_table_round_trip_and_stat(tmp_path):
    space = tiny_space()
    table = synthetic_table(space)
    key = next(iter(table.entries))
    table.entries[key]["median"] = 123.0
    path = str(tmp_path / "t.json")
    table.save(path)
    assert latency.LatencyTable.load(path, stat="mean").ms(key) == table.entries[key]["mean"]
    assert latency.LatencyTable.load(path).ms(key) == 123.0  # auto: median where present
    with pytest.raises(UsageError, match="only mean"):
        latency.LatencyTable.load(path, stat="median")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"format": "proxyless_tf.latency/1", "entries": {}}', "has no entries"),
    ('{"format": "proxyless_tf.latency/1", "entries": {"Conv-x": {"mean": "fast"}}}',
     "entry 'Conv-x' has no valid 'mean'"),
    ('{"format": "other/9", "entries": {"a": {"mean": 1}}}', "has format 'other/9'"),
    ('[1, 2]', "has no entries"),
])
def test_corrupt_tables_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as info:
        latency.LatencyTable.load(str(path))
    assert "\n" not in str(info.value)


def test_corrupt_yaml_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1, 2\nb: {")
    with pytest.raises(UsageError, match="not valid YAML"):
        latency.LatencyTable.load(str(path))
    with pytest.raises(UsageError, match="does not exist; build one"):
        latency.LatencyTable.load(str(tmp_path / "none.json"))


def test_incomplete_table_names_the_missing_key():
    space = tiny_space()
    table = synthetic_table(space)
    missing = next(k for k in table.entries if k.startswith("expanded_conv") and "kernel:7" in k)
    del table.entries[missing]
    with pytest.raises(UsageError, match="has no entry " + re.escape(repr(missing))):
        latency.LatencyObjective(table, space, 5.0, loss="abs")


def test_corrupt_table_on_the_command_line(tmp_path):
    path = tmp_path / "corrupt.json"
    path.write_text('{"format": "proxyless_tf.latency/1", "entries": {"k": {"count": 1}}}')
    proc = run_cli("predict", "--input_size=16", f"--table={path}", "--arch=all:k3e3")
    assert proc.returncode == 2
    assert "entry 'k' has no valid 'mean'" in cli_error_line(proc)
    assert "Traceback" not in proc.stderr


# --- building (the cache) and validating ---------------------------------------------------
class CountingMeter(latency.Meter):
    """Counts conversions (prepare) and timings; every timing gives the next number."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = self.timings = 0

    def prepare(self, model, interior=False):
        self.calls += 1
        return None

    def time(self, prepared):
        self.timings += 1
        value = float(self.timings)
        return {"count": 3, "mean": value, "var": 0.0, "median": value, "p90": value}


def test_build_reuses_entries_already_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(latency.Part, "model", lambda self: None)  # no Keras models needed
    space = tiny_space()
    output = str(tmp_path / "table.json")
    meter = CountingMeter()
    table, measured, reused = latency.build_table(space, meter, output, progress=False)
    total = len(latency.table_parts(space))
    assert (measured, reused, meter.calls) == (total, 0, total)
    assert len(table.entries) == total

    meter = CountingMeter()
    _, measured, reused = latency.build_table(space, meter, output, progress=False)
    assert (measured, reused, meter.calls) == (0, total, 0)

    data = json.load(open(output))  # an interrupted build: one entry missing
    dropped = sorted(data["entries"])[3]
    del data["entries"][dropped]
    json.dump(data, open(output, "w"))
    meter = CountingMeter()
    table, measured, _ = latency.build_table(space, meter, output, progress=False)
    assert (measured, meter.calls) == (1, 1) and dropped in table.entries

    wider = tiny_space(candidates=("k3e3", "k9e6", "zero"))  # a new op: only its parts
    meter = CountingMeter()
    _, measured, _ = latency.build_table(wider, meter, output, progress=False)
    assert measured == meter.calls == sum(1 for p in latency.table_parts(wider)
                                          if "kernel:9" in p.key)

    meter = CountingMeter()  # rounds: converted once, timed once per round, median of rounds
    table, measured, _ = latency.build_table(space, meter, str(tmp_path / "rounds.json"),
                                             progress=False, rounds=3)
    assert (meter.calls, meter.timings) == (total, 3 * total)
    first = latency.table_parts(space)[0].key
    assert table.entries[first]["rounds"] == 3
    assert table.entries[first]["median"] == 1.0  # rounds gave 1, 1 + total, 1 + 2 total
    assert table.entries[first]["count"] == 9

    with pytest.raises(UsageError, match="threads=1"):
        latency.build_table(space, CountingMeter(threads=2), output, progress=False)
    _, measured, _ = latency.build_table(space, CountingMeter(threads=2), output,
                                         rebuild=True, progress=False)
    assert measured == total


def test_calibration_factor(tmp_path, monkeypatch):
    """Whole networks measured 10% slower than their parts' sum give a factor of 1.1, which
    predict and the expected latency both apply."""
    space = tiny_space()
    synthetic = synthetic_table(space)

    class Meter(latency.Meter):
        def prepare(self, model, interior=False):
            return model

        def time(self, prepared):
            ms = 1.1 * synthetic.predict(prepared) if isinstance(prepared, architecture.Architecture) \
                else synthetic.ms(prepared)
            return {"count": 1, "mean": ms, "var": 0.0, "median": ms, "p90": ms}

    monkeypatch.setattr(latency.Part, "model", lambda self: self.key)
    monkeypatch.setattr(latency.Meter, "network", staticmethod(lambda arch: arch))
    output = str(tmp_path / "t.json")
    table, _, _ = latency.build_table(space, Meter(), output, progress=False, calibration=3)
    assert table.factor == pytest.approx(1.1, abs=1e-4)
    assert latency.LatencyTable.load(output).factor == table.factor
    arch = architecture.resolve("all:k5e3", space)
    assert table.predict(arch) == pytest.approx(1.1 * synthetic.predict(arch), rel=1e-4)
    assert table.raw_sum(arch) == pytest.approx(synthetic.predict(arch), rel=1e-5)
    objective = latency.LatencyObjective(table, space, 5.0, loss="abs")
    ops = [b.op for b in arch.blocks if b.searchable]
    idx = [p.candidates.index(op) for p, op in zip(space.searchable_positions(), ops)]
    assert objective.latency_of(idx) == pytest.approx(table.predict(arch), rel=1e-6)


def test_calibration_fits_the_cost_of_streaming_the_weights(tmp_path, monkeypatch):
    """Whole networks measured as 1.05 x their parts' sum + 0.4 ms per million weights: the
    calibration recovers both, and predict and the expected latency apply both."""
    space = tiny_space()
    synthetic = synthetic_table(space)

    def whole(arch):
        weights = sum(p.weights for p in latency.arch_parts(arch)) / 1e6
        return 1.05 * synthetic.predict(arch) + 0.4 * weights

    class Meter(latency.Meter):
        def prepare(self, model, interior=False):
            return model

        def time(self, prepared):
            ms = whole(prepared) if isinstance(prepared, architecture.Architecture) \
                else synthetic.ms(prepared)
            return {"count": 1, "mean": ms, "var": 0.0, "median": ms, "p90": ms}

    monkeypatch.setattr(latency.Part, "model", lambda self: self.key)
    monkeypatch.setattr(latency.Meter, "network", staticmethod(lambda arch: arch))
    table, _, _ = latency.build_table(space, Meter(), str(tmp_path / "t.json"), progress=False,
                                      calibration=8)
    assert table.factor == pytest.approx(1.05, abs=1e-3)
    assert table.ms_per_mweight == pytest.approx(0.4, abs=1e-3)
    objective = latency.LatencyObjective(table, space, 5.0, loss="abs")
    for op in ("k3e3", "k5e6"):
        arch = architecture.resolve(f"all:{op}", space)
        assert table.predict(arch) == pytest.approx(whole(arch), rel=1e-3)
        idx = [p.candidates.index(b.op) for p, b in
               zip(space.searchable_positions(), [b for b in arch.blocks if b.searchable])]
        assert objective.latency_of(idx) == pytest.approx(table.predict(arch), rel=1e-6)


def test_calibration_networks_range_from_uniform_to_dominated_by_one_op():
    space = search_space.small_input_space(width_multiplier=0.5)
    calibration = latency.calibration_archs(space, 20)
    assert [a.ops for a in calibration] == [a.ops for a in latency.calibration_archs(space, 20)]
    assert len({tuple(a.ops) for a in calibration}) == 20
    top_share = lambda arch: max(arch.ops.count(op) for op in set(arch.ops)) / len(arch.ops)
    # over half the blocks one op in several calibration networks; never in uniform samples
    assert sum(top_share(a) > 0.5 for a in calibration) >= 3
    assert not any(top_share(a) > 0.5 for a in latency.random_archs(space, 20))


@pytest.mark.parametrize("kind,op", [("stem", None), ("block", "k3e1"), ("block", "k3e3"),
                                     ("block", "k7e6"), ("head", None), ("logits", None)])
def test_a_parts_weights_are_its_kernels_and_one_bias_per_output_channel(kind, op):
    """What TFLite keeps of the Keras part once batch norm is folded into the convolutions."""
    part = latency.Part(kind, "key", 8, 16, 24, 1, op)
    model = part.model()
    expected = 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            expected += int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.BatchNormalization):
            expected += int(layer.gamma.shape[0])  # the folded bias
        elif isinstance(layer, keras.layers.Dense):
            expected += layer.count_params()
    assert part.weights == expected > 0


def test_a_blocks_weights_worked_by_hand():
    # k3e6 from 16 to 24 channels: hidden 96; expand 16*96 + 96, depthwise 9*96 + 96,
    # projection 96*24 + 24
    assert latency.Part("block", "key", 8, 16, 24, 1, "k3e6").weights == 1632 + 960 + 2328


def test_build_and_validate_for_real(tmp_path):
    """A real table (TFLite + LiteRT) for a one-block space, then validation against whole
    networks: the JSON, markdown and PNG are written and the metrics are sane."""
    space = search_space.small_input_space(input_size=16, width_multiplier=0.25, widths=(16,),
                                           depths=(1,), strides=(1,), head_width=64,
                                           candidates=("k3e3", "k5e6"))
    meter = latency.Meter(runs=5, warmup=2)
    output = str(tmp_path / "table.json")
    table, measured, _ = latency.build_table(space, meter, output, progress=False, calibration=1)
    # overhead, stem, first block, 2 candidates, head, logits
    assert measured == len(table.entries) == 7
    # Whole network / parts' sum: about 1.1 here, but these are microsecond timings on whatever
    # machine runs the tests; the window only catches a unit slip or a broken sum (1000x, < 0).
    assert 0.1 < table.factor < 10
    for entry in table.entries.values():
        assert entry["count"] >= 1 and entry["mean"] > 0 and entry["var"] >= 0
    metrics = latency.validate(space, table, meter, 2, str(tmp_path / "val"), references=(),
                               progress=False, rounds=2)
    assert set(metrics) == {"within_10pct", "rmse_ms", "mape", "pearson_r", "n"}
    assert metrics["n"] == 2 and 0 <= metrics["within_10pct"] <= 1
    for name in ("validate.json", "validate.md", "validate.png"):
        assert os.path.getsize(tmp_path / "val" / name) > 0


def test_gpu_runtime_without_a_gpu_is_a_clear_error(tmp_path):
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(UsageError, match="needs a GPU"):
        latency.build_table(tiny_space(), latency.Meter(runtime="tf_gpu", batch=8),
                            str(tmp_path / "gpu.json"), progress=False)


def test_combining_rounds():
    timings = [{"count": 2, "mean": 1.0, "var": 0.0, "median": 1.0, "p90": 1.0, "busy": 0.1},
               {"count": 2, "mean": 3.0, "var": 1.0, "median": 3.0, "p90": 3.5, "busy": 0.4},
               {"count": 2, "mean": 2.0, "var": 0.0, "median": 2.0, "p90": 2.0, "busy": 0.2}]
    entry = latency.combine(timings)
    assert entry["median"] == 1.0  # the quietest round's median
    assert entry["round_medians"] == [1.0, 3.0, 2.0]
    assert entry["mean"] == 2.0 and entry["count"] == 6
    values = [1, 1, 2, 4, 2, 2]  # runs with those means and variances
    assert entry["var"] == pytest.approx(np.var(values))
    assert entry["busy"] == 0.4 and entry["rounds"] == 3


def test_validation_metrics():
    m = latency.validation_metrics([1.0, 2.0, 3.45], [1.0, 2.1, 3.0])
    assert m["n"] == 3 and m["within_10pct"] == pytest.approx(2 / 3, abs=1e-3)
    assert m["mape"] == pytest.approx(100 * (0 + 0.1 / 2.1 + 0.15) / 3, abs=1e-2)
    assert m["rmse_ms"] == pytest.approx(np.sqrt((0.01 + 0.45 ** 2) / 3), abs=1e-3)


# --- the objective -------------------------------------------------------------------------
def _alphas(space, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return [keras.Variable(rng.normal(0, scale, len(p.candidates)).astype("float32"),
                           trainable=False) for p in space.searchable_positions()]


def test_expected_latency_of_one_hot_alpha_is_the_table_sum():
    space = tiny_space()
    table = synthetic_table(space)
    objective = latency.LatencyObjective(table, space, 5.0, loss="abs")
    rng = np.random.default_rng(1)
    for _ in range(5):
        positions = space.searchable_positions()
        idx = [int(rng.integers(len(p.candidates))) for p in positions]
        alphas = [keras.Variable(np.where(np.arange(len(p.candidates)) == k, 40.0, -40.0)
                                 .astype("float32"), trainable=False)
                  for p, k in zip(positions, idx)]
        arch = architecture.from_space(space, [p.candidates[k] for p, k in zip(positions, idx)])
        want = table.predict(arch)
        assert float(objective.expected(alphas)) == pytest.approx(want, rel=1e-5)
        assert objective.latency_of(idx) == pytest.approx(want, rel=1e-9)  # float64 sums


def test_prediction_counts_the_invoke_overhead_once():
    space = tiny_space()
    table = synthetic_table(space)
    arch = architecture.resolve("all:k5e6", space)
    parts = latency.arch_parts(arch)
    total = sum(table.ms(p.key) for p in parts)
    assert table.overhead_ms == 0.01
    assert table.predict(arch) == pytest.approx(total - (len(parts) - 1) * 0.01)
    del table.entries[latency.OVERHEAD_KEY]  # as in the official table: a plain sum
    assert table.predict(arch) == pytest.approx(total)


def test_expected_latency_matches_numpy_and_works_in_tf_function():
    space = tiny_space()
    objective = latency.LatencyObjective(synthetic_table(space), space, 5.0, loss="abs")
    alphas = _alphas(space)
    probs = [tf.nn.softmax(a).numpy() for a in alphas]
    assert float(objective.expected(alphas)) == pytest.approx(objective.expected_np(probs),
                                                              rel=1e-5)
    compiled = tf.function(lambda: objective.expected(alphas))
    assert float(compiled()) == pytest.approx(objective.expected_np(probs), rel=1e-5)


def test_expected_latency_first_computed_inside_a_trace_still_works_outside_it():
    """The architecture step may be the first to ask for E[LAT] (no warm-up epochs), and a
    tf.function may trace twice: nothing of one trace may be kept for the next or for eager."""
    space = tiny_space()
    objective = latency.LatencyObjective(synthetic_table(space), space, 5.0, loss="abs")
    alphas = _alphas(space)
    first = float(tf.function(lambda: objective.expected(alphas))())
    assert float(tf.function(lambda: objective.expected(alphas))()) == first
    assert float(objective.expected(alphas)) == pytest.approx(first, rel=1e-6)


def test_latency_gradient_lowers_expected_latency():
    space = tiny_space()
    objective = latency.LatencyObjective(synthetic_table(space), space, 5.0, loss="abs")
    alphas = _alphas(space)
    before = float(objective.expected(alphas))
    with tf.GradientTape() as tape:
        tape.watch([a.value for a in alphas])  # alphas are non-trainable: watch explicitly
        e = objective.expected(alphas)
    grads = tape.gradient(e, [a.value for a in alphas])
    assert all(g is not None for g in grads)
    for a, g in zip(alphas, grads):
        a.assign(a - 0.5 * g)
    assert float(objective.expected(alphas)) < before - 1e-3


def test_loss_forms():
    space = tiny_space()
    table = synthetic_table(space)
    ce, e, t = tf.constant(2.0), tf.constant(12.0), 10.0

    def loss(form, **kw):
        return float(latency.LatencyObjective(table, space, t, loss=form, **kw).loss(ce, e))

    assert loss("lambda", lam=0.01) == pytest.approx(2.0 + 0.01 * 12)
    assert loss("lambda") == pytest.approx(2.0 + 0.2 / t * 12)  # default 0.2/T
    assert loss("mul_log") == pytest.approx(2.0 * 0.2 * (np.log(12) / np.log(10)) ** 0.3, rel=1e-5)
    assert loss("add_linear") == pytest.approx(2.0 + 0.2 * (12 - 10) / 10)
    assert loss("abs", beta=2.0) == pytest.approx(2.0 + 2.0 * 0.2)
    objective = latency.LatencyObjective(table, space, t, loss="abs", beta=2.0)
    assert float(objective.loss(ce, tf.constant(8.0))) == pytest.approx(2.0 + 2.0 * 0.2)

    hinge = latency.LatencyObjective(table, space, t, loss="hinge", beta=2.0)
    assert float(hinge.loss(ce, e)) == pytest.approx(2.0 + 2.0 * 0.2)
    assert float(hinge.loss(ce, tf.constant(8.0))) == pytest.approx(2.0)

    # abs aims at the target from both sides: below T its gradient raises E[LAT]; hinge only
    # lowers E[LAT] above T, and below T leaves the architecture to the cross-entropy
    for form, value, sign in (("abs", 8.0, -1.0), ("abs", 12.0, 1.0), ("hinge", 8.0, 0.0),
                              ("hinge", 12.0, 1.0)):
        x = tf.constant(value)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = {"abs": objective, "hinge": hinge}[form].loss(ce, x)
        assert np.sign(float(tape.gradient(out, x))) == sign, (form, value)
    with pytest.raises(UsageError, match="above 1 ms"):
        latency.LatencyObjective(table, space, 0.5, loss="mul_log")


@pytest.fixture
def saved_table(tmp_path):
    """(space, table, path): a synthetic table of the tiny space saved as JSON, with the flags
    marked parsed so that tests can set them with flagsaver."""
    from proxyless_tf import options
    if not options.FLAGS.is_parsed():
        options.FLAGS.mark_as_parsed()
    space = tiny_space()
    table = synthetic_table(space)
    path = str(tmp_path / "t.json")
    table.save(path)
    return space, table, path


def test_target_from_ratio_and_objective_from_flags(saved_table):
    from absl.testing import flagsaver
    space, table, path = saved_table
    base = table.predict(architecture.resolve("all:k3e6", space))
    with flagsaver.flagsaver(latency_table=None, target_ms=None, target_ratio=None):
        assert flag_configs.objective_from_flags(space) is None
    with flagsaver.flagsaver(latency_table=path, target_ratio=0.8, target_reference="all:k3e6",
                             latency_loss="abs", target_ms=None):
        objective = flag_configs.objective_from_flags(space)
        assert objective.target_ms == pytest.approx(0.8 * base)
        assert objective.form == "abs"
        assert [len(c) for c in objective.costs] == [len(p.candidates)
                                                    for p in space.searchable_positions()]
    with flagsaver.flagsaver(latency_table=path, target_ms=None, target_ratio=None):
        with pytest.raises(UsageError, match="needs a target"):
            flag_configs.objective_from_flags(space)
    with flagsaver.flagsaver(latency_table=path, target_ms=None, target_ratio=0.8,
                             target_reference="mobilenet_v2"):
        with pytest.raises(UsageError, match="--target_reference=mobilenet_v2: "):
            flag_configs.objective_from_flags(space)
    with flagsaver.flagsaver(latency_table=None, target_ms=3.0, target_ratio=None):
        with pytest.raises(UsageError, match="need --latency_table"):
            flag_configs.objective_from_flags(space)


def test_the_objective_of_a_latency_config(saved_table):
    """The library takes a LatencyConfig; the flags are only one way to fill it."""
    space, table, path = saved_table
    base = table.predict(architecture.resolve("all:k3e6", space))
    assert latency.objective_from_config(space, latency.LatencyConfig()) is None
    config = latency.LatencyConfig(table=path, target_ratio=0.8, target_reference="all:k3e6",
                                   loss="hinge", beta=3.0)
    objective = latency.objective_from_config(space, config)
    assert objective.target_ms == pytest.approx(0.8 * base)
    assert (objective.form, objective.beta, objective.table.source) == ("hinge", 3.0, path)
    with pytest.raises(UsageError, match="need --latency_table"):
        latency.objective_from_config(space, latency.LatencyConfig(target_ms=1.0))
    with pytest.raises(UsageError, match="not both"):
        latency.objective_from_config(space, config.replace(target_ms=1.0))


def test_a_later_target_flag_overrides_a_flagfiles_other_target_flag(saved_table, tmp_path,
                                                                    monkeypatch):
    """flags/mobile.cfg sets --target_ratio; `--flagfile=flags/mobile.cfg --target_ms=0.5`
    means 0.5 ms, as later flags win everywhere else; the other order means the ratio."""
    from absl.testing import flagsaver
    space, table, path = saved_table
    flagfile = tmp_path / "target.cfg"
    flagfile.write_text("--target_ratio=0.8\n--target_reference=all:k3e6\n")
    base = table.predict(architecture.resolve("all:k3e6", space))
    for argv, expected in (([f"--flagfile={flagfile}", "--target_ms=0.5"], 0.5),
                           (["--target_ms=0.5", f"--flagfile={flagfile}"], 0.8 * base)):
        monkeypatch.setattr(sys, "argv", ["search", *argv])
        with flagsaver.flagsaver(latency_table=path, target_ms=0.5, target_ratio=0.8,
                                 target_reference="all:k3e6", latency_loss="abs"):
            assert flag_configs.objective_from_flags(space).target_ms == pytest.approx(expected)
    with pytest.raises(UsageError, match="not both"):  # both given in code: no order to go by
        latency.resolve_target(table, space, 0.5, 0.8, "all:k3e6")


def test_objective_lines_up_with_the_supernet():
    from proxyless_tf.supernet import Supernet
    space = tiny_space(candidates=("k3e3", "k5e6", "zero"))
    objective = latency.LatencyObjective(synthetic_table(space), space, 5.0, loss="abs")
    net = Supernet(space)
    assert [m.candidates for m in net.mixed_ops] == [tuple(c) for c in objective.candidates]
    assert float(objective.expected(net.alphas)) > objective.fixed_ms


def test_networks_are_built_for_timing_in_float32_and_the_callers_dtype_policy_is_kept():
    """Timing clears Keras's session between networks, which resets its global settings; a user
    who trains in mixed precision must find the policy as it was, and the networks timed are
    built in float32 (the format timed is the meter's quantization, not the training policy)."""
    def tiny_models(n):
        for _ in range(n):
            yield keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    meter = latency.Meter(runtime="tf_cpu", runs=1, warmup=0)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        models = meter.prepare_all(tiny_models(3))
        assert keras.config.dtype_policy().name == "mixed_float16"
        arch = architecture.resolve("all:k3e3", tiny_space())
        latency.time_networks(meter, [arch, arch], progress=False)  # as the check times them
        meter.measure_arch(arch)  # as REINFORCE times a sampled network, mid-search
        assert keras.config.dtype_policy().name == "mixed_float16"
    finally:
        keras.config.set_dtype_policy("float32")
    assert [m.dtype_policy.name for m in models] == ["float32"] * 3
