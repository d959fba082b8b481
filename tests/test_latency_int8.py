"""Latency tables for the format that ships (issue 29): --latency_quantization recorded in every
table and in the per-machine cache key, checked wherever a table is used (one-line errors), int8
parts and networks converted by the export's own conversion function, the int8 export report
against an int8 table, flags/mobile_int8.cfg, and `latency compare`. Tiny spaces throughout."""

import json
import os

import numpy as np
import pytest
from absl.testing import flagsaver

from conftest import REPO, run_module, synthetic_table
from proxyless_tf import architecture, flag_configs, latency, options, quantize, search_space
from proxyless_tf.errors import UsageError
from proxyless_tf.latency import cache as cache_lib, compare, machine


pytestmark = pytest.mark.usefixtures("flags_parsed")


def one_block_space():
    return search_space.small_input_space(input_size=16, width_multiplier=0.25, widths=(16,),
                                          depths=(1,), strides=(1,),
                                          candidates=("k3e3", "k5e6", "zero"))


class FakeMeter(latency.Meter):
    """No conversion, no timing: every part costs 1 ms."""

    def prepare(self, model, interior=False):
        return None

    def time(self, prepared):
        return {"count": 3, "mean": 1.0, "var": 0.0, "median": 1.0, "p90": 1.0}


def saved(table, path, quantization=None):
    settings = dict(table.settings, runtime="tflite", threads=1, batch=1)
    if quantization is not None:
        settings["quantization"] = quantization
    latency.LatencyTable(table.entries, settings, str(path)).save(str(path))
    return str(path)


# --- the format in the table, on load and on use ---------------------------------------------
def test_a_built_table_records_its_format_and_a_mismatch_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(latency.Part, "model", lambda self: None)
    space = one_block_space()
    output = str(tmp_path / "int8.json")
    table, measured, _ = latency.build_table(space, FakeMeter(quantization="int8"), output,
                                             progress=False)
    assert measured > 0 and table.quantization == "int8"
    assert json.load(open(output))["settings"]["quantization"] == "int8"
    refit = table.with_calibration({"factor": 1.1, "offset_ms": 0.1}, "refit.json", refit={})
    assert refit.quantization == "int8"  # a refit to this machine keeps the format
    assert latency.LatencyTable.load(output, quantization="int8").quantization == "int8"
    with pytest.raises(UsageError) as error:
        latency.LatencyTable.load(output, quantization="none")
    message = str(error.value)
    assert "\n" not in message and output in message
    assert "--latency_quantization=none" in message and "--latency_quantization=int8" in message
    # resuming the build in another format is refused, not mixed
    with pytest.raises(UsageError, match="--latency_quantization"):
        latency.build_table(space, FakeMeter(), output, progress=False)
    # a table that records no format is float32
    old = tmp_path / "old.json"
    data = json.load(open(output))
    del data["settings"]["quantization"]
    old.write_text(json.dumps(data))
    assert latency.LatencyTable.load(str(old), quantization="none").quantization == "none"
    with pytest.raises(UsageError, match="quantization=none"):
        latency.LatencyTable.load(str(old), quantization="int8")
    # the check compares the meter's format with the table's first
    with pytest.raises(UsageError, match="--latency_quantization=int8"):
        FakeMeter(quantization="int8").require_compatible(data["settings"], repr(str(old)), "")


def test_the_config_of_the_flags_and_the_machine_table_honour_the_format(tmp_path):
    space = one_block_space()
    path = saved(synthetic_table(space), tmp_path / "float.json")
    with flagsaver.flagsaver(latency_quantization="int8", latency_table=path):
        config = flag_configs.latency_config_from_flags()
    assert config.quantization == "int8" and config.meter().quantization == "int8"
    with pytest.raises(UsageError, match="--latency_quantization=int8"):
        machine.load_table(space, config.meter(), config, build_missing=False)
    assert machine.load_table(space, config.meter(), config.replace(quantization="none"),
                              build_missing=False).quantization == "none"


def test_cache_keys_and_folders_differ_by_format(tmp_path):
    space = one_block_space()
    caches = {q: cache_lib.MachineCache(str(tmp_path), space, latency.Meter(quantization=q))
              for q in quantize.MODES}
    assert len({c.dir for c in caches.values()}) == len({json.dumps(c.key, sort_keys=True)
                                                         for c in caches.values()}) == 4
    assert "quantization" not in caches["none"].key  # float32 caches built so far stay valid
    assert os.path.basename(caches["none"].dir).startswith("tflite-1t-b1-")
    assert os.path.basename(caches["int8"].dir).startswith("tflite-int8-1t-b1-")
    config = latency.LatencyConfig(table="auto", cache_dir=str(tmp_path))
    paths = {q: machine.table_path(space, latency.Meter(quantization=q), config)
             for q in ("none", "int8")}
    assert paths["none"] != paths["int8"]


def test_the_meter_checks_the_format():
    with pytest.raises(UsageError, match="--latency_quantization='int4'"):
        latency.Meter(quantization="int4")
    with pytest.raises(UsageError, match="--latency_runtime=tflite"):
        latency.Meter(runtime="tf_cpu", quantization="int8")
    meter = latency.Meter(quantization="int8")
    assert meter.settings()["quantization"] == "int8" and "int8" in meter.describe()
    assert latency.Meter().settings()["quantization"] == "none"


def test_every_format_setting_has_the_same_one_line_check(tmp_path):
    import export
    from proxyless_tf import api
    table = saved(synthetic_table(one_block_space()), tmp_path / "t.json")
    for setting, make in (("--latency_quantization", lambda: latency.Meter(quantization="int4")),
                          ("--quantize", lambda: export.ExportSettings(quantize="int4")),
                          ("quantization", lambda: api.latency_table(table, quantization="int4"))):
        with pytest.raises(UsageError) as error:
            make()
        assert str(error.value) == f"{setting}='int4': use one of none, float16, dynamic, int8"


# --- one conversion for the export and the tables ----------------------------------------------
def test_the_export_and_the_tables_use_the_same_conversion(monkeypatch):
    from export import convert as export_convert
    assert export_convert.convert is quantize.convert
    assert export_convert.MODES == quantize.MODES
    calls = []
    real = quantize.convert
    monkeypatch.setattr(quantize, "convert", lambda model, mode, representative=None,
                        int8_io=False: calls.append((mode, int8_io)) or real(
                            model, mode, representative, int8_io))
    space = one_block_space()
    meter = latency.Meter(quantization="int8")
    part = [p for p in latency.table_parts(space) if p.kind == "block"][0]
    inside = meter.prepare(part.model(), interior=True)
    network = meter.prepare(meter.network(architecture.resolve("all:k3e3", space)))
    assert calls == [("int8", True), ("int8", False)]
    from export import report as report_lib
    part_info, network_info = report_lib.inspect(inside), report_lib.inspect(network)
    assert part_info["input"]["dtype"] == "int8" and "QUANTIZE" not in part_info["operators"]
    assert network_info["input"]["dtype"] == "float32"  # as the export ships it by default
    assert network_info["tensor_types"]["int8"] > 10 and "QUANTIZE" in network_info["operators"]


# --- int8 through build, predict and the export report -----------------------------------------
def test_int8_build_and_predict_on_a_tiny_space(tmp_path):
    space = one_block_space()
    output = str(tmp_path / "int8.json")
    meter = latency.Meter(runs=3, warmup=1, quantization="int8")
    table, measured, _ = latency.build_table(space, meter, output, progress=False, calibration=1)
    assert measured == len(table.entries) == 7 and table.quantization == "int8"
    assert 0.1 < table.factor < 10
    arch = architecture.resolve("all:k5e6", space)
    assert table.predict(arch) > 0
    proc = run_module("proxyless_tf.latency", "predict", "--input_size=16", "--widths=16",
                      "--depths=1", "--strides=1", "--width_multiplier=0.25",
                      "--candidates=k3e3,k5e6,zero", f"--table={output}", "--arch=all:k5e6",
                      "--latency_quantization=int8", timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) == pytest.approx(table.predict(arch),
                                                                        abs=1e-3)
    proc = run_module("proxyless_tf.latency", "predict", "--input_size=16", "--widths=16",
                      "--depths=1", "--strides=1", "--width_multiplier=0.25",
                      "--candidates=k3e3,k5e6,zero", f"--table={output}", "--arch=all:k5e6",
                      timeout=180)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
    assert output in errors[0] and "--latency_quantization=int8" in errors[0]


def test_the_int8_export_is_reported_against_an_int8_table(tmp_path):
    import export
    from proxyless_tf import data
    from proxyless_tf.train import build_model
    space = one_block_space()
    arch = architecture.from_space(space, ["k5e6"], name="tiny")
    reference = architecture.resolve("all:k3e3", space)
    splits = data.load("digits", 16, 32, max_train_examples=64)
    int8_table = saved(synthetic_table(space), tmp_path / "int8.json", "int8")
    settings = export.ExportSettings(
        quantize="int8", latency_table=int8_table, target_ms=1.0,
        target_ratio=0.8, target_reference=reference, report_images=16, latency_runs=3,
        latency_warmup=1, calibration_images=8, batch_size=32, verbose=0)
    report = export.export_model(build_model(arch), str(tmp_path / "derived.int8.tflite"),
                                 settings, splits, arch=arch)
    lat = report["latency"]
    assert report["mode"] == "int8" and lat["predicted_ms"] == pytest.approx(
        latency.LatencyTable.load(int8_table).predict(arch))
    assert lat["target_ms"] == 1.0 and lat["ratio"]["reference"] == "all:k3e3"  # int8 reference
    md = (tmp_path / "derived.int8.report.md").read_text()
    assert "accuracy Keras (float32) / TFLite int8" in md and "predicted latency" in md
    float_table = saved(synthetic_table(space), tmp_path / "float.json")
    predicted, note = export.predicted_latency(float_table, arch, "int8")
    assert predicted is None and "--latency_quantization=int8" in note


# --- flags/mobile_int8.cfg ----------------------------------------------------------------------
def test_mobile_int8_cfg_composes_with_mobile_cfg():
    import export
    args = options.FLAGS.read_flags_from_files(
        [f"--flagfile={os.path.join(REPO, 'flags', name)}"
         for name in ("mobile.cfg", "mobile_int8.cfg")], force_gnu=False)
    with flagsaver.flagsaver():
        options.FLAGS(["prog"] + args)
        config = flag_configs.latency_config_from_flags()
        settings = export.settings_from_flags()
    assert config.quantization == "int8" and config.table == "auto"
    assert config.target_ratio == 0.8 and config.runtime == "tflite"
    assert settings.quantize == "int8" and "tflite-int8-" in settings.latency_table
    assert settings.kind == "int8"


def test_the_export_takes_the_target_s_format_from_its_table(tmp_path):
    import export
    space = one_block_space()
    int8_table = saved(synthetic_table(space), tmp_path / "int8.json", "int8")
    float_table = saved(synthetic_table(space), tmp_path / "float.json")
    assert export.ExportSettings().latency_quantization == "none"  # no table: float32
    assert export.ExportSettings(latency_table=int8_table).latency_quantization == "int8"
    with flagsaver.flagsaver(latency_quantization="int8", latency_table=float_table):
        settings = export.settings_from_flags(require_table=True)
    assert settings.latency_quantization == "none"  # the table's, not a flag that disagrees
    with pytest.raises(TypeError):  # no longer a setting of its own
        export.ExportSettings(latency_quantization="int8")


# --- latency compare ----------------------------------------------------------------------------
def test_compare_tables_finds_ratios_and_order_changes(tmp_path):
    space = one_block_space()
    base = synthetic_table(space, seed=1)
    _, searchable = latency.space_parts(space)
    keys = {op: part.key for op, part in zip(("k3e3", "k5e6"), searchable[0])}
    entries = {k: dict(v) for k, v in base.entries.items()}
    base.entries[keys["k3e3"]]["mean"], base.entries[keys["k5e6"]]["mean"] = 0.2, 0.4
    entries[keys["k3e3"]]["mean"], entries[keys["k5e6"]]["mean"] = 0.4, 0.2  # order swapped
    int8 = latency.LatencyTable(entries, {"quantization": "int8"}, "int8")
    result = compare.compare_tables(space, {"none": base, "int8": int8})
    assert set(result["ops"]) == {"k3e3", "k5e6"}  # zero costs nothing in either format
    ratio = (0.4 - 0.01) / (0.2 - 0.01)  # less the invoke overhead (synthetic_table's 0.01)
    assert result["ops"]["k3e3"]["ratio"]["int8"] == pytest.approx(ratio, rel=1e-3)
    assert result["positions"][0]["ratios"]["int8"]["k5e6"] == pytest.approx(1 / ratio)
    assert result["order"] == {"none": ["k3e3", "k5e6"], "int8": ["k5e6", "k3e3"]}
    assert result["order_changes"] and result["positions_reordered"] == 1
    assert result["rank_tau"]["int8"] == -1.0
    same = compare.compare_tables(space, {"none": base, "float16": base})
    assert not same["order_changes"] and same["rank_tau"]["float16"] == 1.0
    paths = compare.write(result, str(tmp_path / "out"), "tiny")
    assert all(os.path.getsize(p) > 0 for p in paths)
    text = open(paths[1]).read()
    assert "| k3e3 |" in text and "int8/none" in text and "changes" in text
    assert json.load(open(paths[0]))["formats"] == ["none", "int8"]


def test_compare_command_on_a_tiny_space(tmp_path):
    proc = run_module("proxyless_tf.latency", "compare", "--input_size=16", "--widths=16",
                      "--depths=1", "--strides=1", "--width_multiplier=0.25",
                      "--candidates=k3e3,k5e6", "--latency_runs=2", "--latency_warmup=0",
                      "--latency_rounds=1", "--latency_calibrate=0", "--latency_references=",
                      f"--latency_cache_dir={tmp_path / 'cache'}",
                      f"--output={tmp_path / 'out'}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert result["formats"] == ["none", "int8"] and set(result["ops"]) == {"k3e3", "k5e6"}
    assert all(np.isfinite(v["ratio"]["int8"]) and v["ratio"]["int8"] > 0
               for v in result["ops"].values())
    folders = sorted(os.listdir(tmp_path / "cache"))
    assert len(folders) == 2 and any(f.startswith("tflite-int8-") for f in folders)
    assert (tmp_path / "out" / "compare.png").stat().st_size > 0


# --- the review's fixes: auto resolved, the format through the API, compare's guards ------------
def test_the_export_settings_resolve_auto_and_fail_early_without_the_table(tmp_path):
    import export
    flags = dict(latency_quantization="int8", latency_table="auto",
                 latency_cache_dir=str(tmp_path), input_size=16, widths=[16], depths=[1],
                 strides=[1], width_multiplier=0.25, candidates=["k3e3", "k5e6", "zero"])
    with flagsaver.flagsaver(**flags):
        settings = export.settings_from_flags()  # the search builds the table later
        assert settings.latency_table.endswith("table.json")
        assert "tflite-int8-" in settings.latency_table
        with pytest.raises(UsageError, match="--latency_table=auto") as error:
            export.settings_from_flags(require_table=True)  # train / export: before the work
        assert "\n" not in str(error.value)
        space = options.space_from_flags()
        os.makedirs(os.path.dirname(settings.latency_table))
        saved(synthetic_table(space), settings.latency_table, "int8")
        assert export.settings_from_flags(require_table=True).latency_table == \
            settings.latency_table
        # tune predicts from the same table (it once read "auto" as a file name)
        from proxyless_tf import tune
        with flagsaver.flagsaver(target_ms=1.0, latency_check=False):
            predict, _, target, description = tune.latency_sources(space)
        assert target == 1.0 and settings.latency_table in description
        assert predict(architecture.resolve("all:k3e3", space)) > 0


def test_the_api_takes_a_format_and_words_a_mismatch_for_itself(tmp_path):
    from proxyless_tf import api
    space = one_block_space()
    float_table = saved(synthetic_table(space), tmp_path / "float.json")
    int8_table = saved(synthetic_table(space), tmp_path / "int8.json", "int8")
    assert api.latency_table(int8_table, quantization="int8").quantization == "int8"
    with pytest.raises(UsageError) as error:
        api.latency_table(float_table, quantization="int8")
    message = str(error.value)
    assert "quantization='int8'" in message and "pass quantization='none'" in message
    assert "float32" in message and "\n" not in message
    # the format defaults to the table's own
    objective = api.latency_objective(space, int8_table, target_ms=1.0, latency_check=False,
                                      latency_loss="abs", verbose=0)
    assert objective.table.quantization == "int8"
    with pytest.raises(UsageError, match="quantization='none'"):
        api.latency_objective(space, int8_table, target_ms=1.0, latency_check=False,
                              latency_loss="abs", quantization="none", verbose=0)


def test_export_derived_reports_in_the_search_table_s_format(tmp_path, monkeypatch):
    import types

    import export
    from proxyless_tf import api
    space = one_block_space()
    table = latency.LatencyTable.load(saved(synthetic_table(space), tmp_path / "t.json", "int8"))
    search = types.SimpleNamespace(
        objective=types.SimpleNamespace(table=table, target_ms=0.5), derived_model=None,
        splits=None, results={})
    seen = {}
    monkeypatch.setattr(export, "export_model",
                        lambda model, output, settings, **kw: seen.setdefault("s", settings))
    api.export_derived(search, None, str(tmp_path / "d.tflite"),
                       export.ExportSettings(quantize="int8"))
    settings = seen["s"]
    assert settings.latency_quantization == "int8" and settings.target_ms == 0.5
    assert settings.latency_table == table.source


def test_compare_guards_a_base_cost_of_zero_and_checks_formats_first(tmp_path):
    space = one_block_space()
    base = synthetic_table(space, seed=1)
    _, searchable = latency.space_parts(space)
    key = searchable[0][0].key  # k3e3: costs nothing in the base (its entry = the overhead)
    base.entries[key]["mean"] = base.entries[latency.OVERHEAD_KEY]["mean"]
    base.entries[key].pop("median", None)
    result = compare.compare_tables(space, {"none": base, "int8": synthetic_table(space)})
    assert result["ops"]["k3e3"]["ratio"]["int8"] is None and result["notes"]
    assert result["positions"][0]["ratios"]["int8"]["k3e3"] is None
    assert "n/a" in compare.markdown(result)
    assert all(os.path.getsize(p) > 0 for p in compare.write(result, str(tmp_path / "o")))
    assert compare.kendall_tau({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 3, "c": 2}) == \
        pytest.approx(1 / 3)
    from proxyless_tf.latency import cli
    with flagsaver.flagsaver(compare_formats=["none", "int4"], output=str(tmp_path / "c")):
        with pytest.raises(UsageError, match="--compare_formats='int4'"):
            cli.compare_command(space, flag_configs.latency_config_from_flags())
