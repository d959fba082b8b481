"""The Python API (proxyless_tf/api.py): README.md's example run as written, with smaller values
for the names in capitals at its top, in a fresh process that never parses absl flags; the
arguments it refuses; and the search command's flags translated into the API's arguments."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

MARKER = "<!-- api-example:"
# flags/smoke.cfg's space and lengths (the shipped table covers it), one retraining epoch
SMALL = {"WIDTH": "0.25", "DEPTHS": "(1, 2, 1, 2, 1, 1)", "EPOCHS": "3", "WARMUP_EPOCHS": "1",
         "STEPS_PER_EPOCH": "8", "RETRAIN_EPOCHS": "1"}


def readme_example():
    """The python block after the api-example marker in README.md."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    assert text.count(MARKER) == 1, "README.md should mark its API example once"
    match = re.search(r"```python\n(.*?)```", text[text.index(MARKER):], re.S)
    assert match, "no ```python block after the api-example marker in README.md"
    return match.group(1)


def with_values(code, values):
    """`code` with the line `NAME = ...` of each name replaced (each must occur once)."""
    for name, value in values.items():
        code, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", code, flags=re.M)
        assert count == 1, f"the README example should set {name} on one line of its own"
    return code


# Runs in the child process after the example, in its namespace; writes what the test checks.
CHECKS = r"""
import json, os, sys
import numpy as np
from absl import flags
from proxyless_tf import architecture, measure
from proxyless_tf.arch_flags import build_model
images, labels = next(iter(splits.test))
arch_file = architecture.Architecture.load(os.path.join(OUT, "arch.json"))
tflite_path = report["tflite"]
logits = measure.run_tflite(open(tflite_path, "rb").read(), images.numpy()[:4])
facts = {
    "ops": result.arch.ops, "searchable": len(space.searchable_positions()),
    "arch_file_matches": arch_file.to_json() == result.arch.to_json(),
    "json_round_trip": architecture.Architecture.from_json(result.arch.to_json()).to_json()
        == result.arch.to_json(),
    "built_logits": list(build_model(result.arch)(images[:2]).shape),
    "phases": [h["phase"] for h in result.history],
    "expected_ms": [h.get("expected_latency_ms") for h in result.history],
    "results": result.results, "target_ms": result.target_ms,
    "retrained_logits": list(model(images[:2]).shape), "retrain_results": results,
    "tflite": tflite_path, "tflite_exists": os.path.isfile(tflite_path),
    "tflite_logits": list(np.shape(logits)), "report_latency": report["latency"],
    "report_validation": report["validation"],
    "predicted": predicted, "measured": measured,
    "flags_parsed": flags.FLAGS.is_parsed(),
}
with open(sys.argv[1], "w") as f:
    json.dump(facts, f)
"""


def run_python(code, *args, env=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_readme_example_runs_end_to_end_without_flags(tmp_path):
    out = tmp_path / "nb"
    code = with_values(readme_example(), {**SMALL, "OUT": repr(str(out))})
    facts_path = tmp_path / "facts.json"
    # A cache of its own: the latency check times its networks here, not in ~/.cache.
    result = run_python(code + CHECKS, str(facts_path),
                        env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    facts = json.loads(facts_path.read_text())
    assert not facts["flags_parsed"]  # absl's flags were never parsed, nor read (that raises)

    # search: the derived architecture is plain data, written and buildable
    assert facts["arch_file_matches"] and facts["json_round_trip"]
    assert len(facts["ops"]) == facts["searchable"] + 1  # the fixed first block and the rest
    assert facts["built_logits"] == [2, 10]
    assert facts["phases"] == ["seed", "search", "search"]  # EPOCHS 3, WARMUP_EPOCHS 1
    assert all(ms > 0 for ms in facts["expected_ms"]) and facts["target_ms"] > 0
    assert 0 <= facts["results"]["derived_test_acc"] <= 1
    assert facts["results"]["derived_predicted_ms"] > 0
    assert "latency check:" in result.stdout  # on by default, as in the command

    # retraining, export and latency
    assert facts["retrained_logits"] == [2, 10]
    assert facts["retrain_results"]["epochs"] == 1
    assert 0 <= facts["retrain_results"]["test_accuracy"] <= 1
    assert os.path.isfile(out / "train" / "model.keras")
    assert facts["tflite"] == str(out / "model.tflite") and facts["tflite_exists"]
    assert facts["tflite_logits"] == [4, 10]
    assert os.path.isfile(out / "model.report.json") and os.path.isfile(out / "model.report.md")
    assert facts["report_validation"]["top1_agreement"] > 0.9
    assert facts["report_latency"]["predicted_ms"] == pytest.approx(facts["predicted"])
    assert facts["report_latency"]["target_ms"] == pytest.approx(facts["target_ms"])
    assert facts["report_latency"]["median_ms"] > 0
    assert facts["predicted"] > 0 and facts["measured"] > 0
    assert f"predicted {facts['predicted']:.3f} ms" in result.stdout


def test_importing_the_api_loads_neither_tensorflow_nor_absl():
    result = run_python("import sys\nfrom proxyless_tf import api\n"
                        "print(sorted(m for m in ('absl', 'tensorflow', 'keras') "
                        "if m in sys.modules))")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_example_substitution_fails_loudly_when_the_readme_changes():
    code = readme_example()
    assert "from proxyless_tf import api" in code
    with pytest.raises(AssertionError, match="NOT_THERE"):
        with_values(code, {"NOT_THERE": "1"})


def test_bad_arguments_are_one_line_usage_errors():
    from conftest import tiny_space
    from proxyless_tf import api
    from proxyless_tf.search_loop import SearchConfig
    cases = [
        (lambda: api.space(depth=(1, 1)), ["unknown setting", "depth"]),
        (lambda: api.space(candidates=("k3e3", "k4e6")), ["k4e6"]),
        (lambda: api.search_config(epochs=0), ["epochs must be positive"]),
        (lambda: api.search_config(epoch=3), ["unknown search setting", "epoch"]),
        (lambda: api.search_config(warmup_epochs=-1), ["warmup_epochs", "negative"]),
        (lambda: api.search_config(search_weight_lr=-1), ["search_weight_lr", "negative"]),
        (lambda: api.search_config(search_weight_lr=0.02, warmup_epochs=0),
         ["search_weight_lr=0.02", "warmup_epochs=0", "weight_lr instead"]),
        (lambda: api.search_config(warmup_epochs=2, seed_epochs=3), ["seed_epochs=3"]),
        (lambda: api.search_config(weight_mode="full", warmup_epochs=2, seed_epochs=1),
         ["seed_epochs", "binary"]),
        (lambda: api.search_config(derive="best"), ["derive", "target, argmax"]),
        (lambda: api.search_config(zero_pairs="exact"), ["zero_pairs", "gate, loss"]),
        (lambda: api.search_config(seed_candidate="middle"), ["seed_candidate", "largest"]),
        (lambda: api.search_config(seed_candidate="widest", warmup_epochs=0),
         ["seed_candidate", "seed phase", "seed_epochs"]),
        # a SearchConfig made by hand is checked where it is used
        (lambda: api.make_search(tiny_space(), None, SearchConfig(skip_rate=1.5), "out"),
         ["skip_rate=1.5"]),
        (lambda: api.latency_objective(None, "t.json"), ["target_ms", "target_ratio",
                                                         "neither"]),
        (lambda: api.latency_objective(None, "t.json", target_ms=1, target_ratio=0.8),
         ["both"]),
        (lambda: api.latency_table("no/such/table.json"), ["no/such/table.json"]),
    ]
    for call, words in cases:
        with pytest.raises(api.UsageError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        for word in words:
            assert word in message, message


def test_search_refuses_a_target_without_a_table_and_a_space_without_a_choice(tmp_path):
    import types

    from proxyless_tf import api
    splits = types.SimpleNamespace(num_classes=10)
    with pytest.raises(api.UsageError, match="need a latency_table"):
        api.search(api.space(), splits, output_dir=str(tmp_path), target_ratio=0.8, epochs=1)
    with pytest.raises(api.UsageError, match="nothing to search"):
        api.search(api.space(candidates=("k3e6",)), splits, output_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []  # refused before anything was written


def test_the_search_command_translates_its_flags_into_the_api(tmp_path, monkeypatch):
    """build_search (python -m proxyless_tf.search) hands make_search the flags' space, data,
    config and objective; REINFORCE's factory hands the flags' configs on, the evaluation by
    keyword."""
    from absl.testing import flagsaver

    from proxyless_tf import api, options, reinforce, search
    if not options.FLAGS.is_parsed():
        options.FLAGS.mark_as_parsed()
    calls = {}
    monkeypatch.setattr(api, "make_search", lambda *args, **kwargs: calls.update(
        args=args, kwargs=kwargs) or "the search")
    monkeypatch.setattr(reinforce, "from_config", lambda *args, **kwargs: (args, kwargs))
    with flagsaver.flagsaver(width_multiplier=0.25, depths=["1", "1"], widths=["16", "24"],
                             strides=["1", "2"], epochs=3, warmup_epochs=2, seed_fraction=1.0,
                             arch_algo="reinforce", arch_init_std=0.01, max_train_examples=64,
                             batch_size=16, latency_table=None, target_ratio=None):
        assert search.build_search(str(tmp_path), verbose=0) == "the search"
    space, splits, config, output_dir, objective = calls["args"]
    assert space.depths == (1, 1) and space.width_multiplier == 0.25
    assert splits.num_classes == space.num_classes == 10 and splits.train_size == 64
    assert (config.epochs, config.warmup_epochs, config.seed_epochs) == (3, 2, 2)
    assert output_dir == str(tmp_path) and objective is None
    assert calls["kwargs"]["arch_init_std"] == 0.01 and calls["kwargs"]["verbose"] == 0
    (net, objective, settings, latency_config), kwargs = calls["kwargs"]["reinforce"](
        "net", "objective", "evaluate")
    assert (net, objective, kwargs) == ("net", "objective", {"evaluate": "evaluate"})
    assert settings == reinforce.ReinforceConfig()  # the flags' defaults
    assert latency_config.table is None and latency_config.source == "table"


def test_an_accuracy_only_reinforce_search_on_a_tiny_space(tmp_path):
    """latency_table=None: no latency term, no latency in the history; REINFORCE through the
    API's factory; a finished search rerun returns the same architecture at once."""
    from conftest import tiny_space
    from proxyless_tf import api
    splits = api.data("digits", input_size=16, batch_size=16, max_train_examples=64)
    settings = dict(output_dir=str(tmp_path), epochs=2, warmup_epochs=1, seed_epochs=0,
                    steps_per_epoch=2, arch_update_every=1, arch_algo="reinforce",
                    reinforce={"samples": 2}, verbose=0)
    result = api.search(tiny_space(num_classes=3), splits, **settings)
    assert result.search.net.space.num_classes == 10  # the space took the dataset's classes
    assert result.latency_table is None and result.target_ms is None
    assert [h["phase"] for h in result.history] == ["warm-up", "search"]
    assert "expected_latency_ms" not in result.history[-1] and "valid_acc" in result.history[-1]
    assert result.search.reinforce.samples == 2
    assert 0 <= result.results["derived_test_acc"] <= 1
    again = api.search(tiny_space(), splits, **settings)
    assert again.arch.to_json() == result.arch.to_json() and len(again.history) == 2
