"""keras-tuner integration (proxyless_tf.tuner, proxyless_tf.tune): the space as HyperParameters
and back to arch.json, the ProxylessOracle's REINFORCE controller on synthetic objectives, its
state round trip, the scoring shared by every oracle, and the CLI. Synthetic trials need no
training; one CLI run trains two tiny candidates for a few steps."""

import json
import math
import os
import subprocess
import sys

import keras_tuner
import numpy as np
import pytest

from conftest import REPO, assert_usage_error, run_module, tiny_space
from proxyless_tf import architecture, reinforce, tuner
from proxyless_tf.errors import UsageError


def synthetic_tuner(oracle, directory, accuracy, latency=None, project="p"):
    """A ProxylessTuner whose trials are scored by `accuracy(arch)` (no training)."""
    return tuner.ProxylessTuner(oracle, tuner.ProxylessHyperModel(oracle.space),
                                lambda arch, trial_dir: accuracy(arch), latency,
                                directory=str(directory), project_name=project)


def best_op_accuracy(space, best):
    """Accuracy = share of searchable blocks whose op is `best[block]` (a known optimum)."""
    def accuracy(arch):
        ops = [b.op for b in arch.blocks if b.searchable]
        return float(np.mean([op == b for op, b in zip(ops, best)]))
    return accuracy


def alphas(oracle):
    return [a.numpy().copy() for a in oracle.reinforce.alphas]


# --- the space as hyperparameters -------------------------------------------------------------
def test_proxyless_oracle_is_a_keras_tuner_oracle():
    assert issubclass(tuner.ProxylessOracle, keras_tuner.Oracle)
    assert issubclass(tuner.RandomOracle, keras_tuner.oracles.RandomSearchOracle)
    assert issubclass(tuner.BayesianOracle, keras_tuner.oracles.BayesianOptimizationOracle)


def test_hyperparameters_of_the_space_round_trip_through_arch_json(space, tmp_path):
    hp = tuner.hyperparameters(space)
    positions = space.searchable_positions()
    assert [h.name for h in hp.space] == [f"block{p.index}" for p in positions]
    assert [tuple(h.values) for h in hp.space] == [p.candidates for p in positions]
    rng = np.random.default_rng(0)
    for i in range(5):
        values = {f"block{p.index}": p.candidates[rng.integers(len(p.candidates))]
                  for p in positions}
        arch = tuner.architecture_from_values(space, values, name=f"a{i}")
        path = tmp_path / f"a{i}.json"
        arch.save(str(path))
        loaded = architecture.Architecture.load(str(path))
        assert tuner.values_from_architecture(space, loaded) == values
        assert loaded.to_json() == arch.to_json()
    with pytest.raises(UsageError, match="block2"):
        tuner.architecture_from_values(space, dict(values, block2="k9e9"))
    other = architecture.resolve("all:k3e3", tiny_space(depths=(2, 3)))
    with pytest.raises(UsageError, match="blocks"):
        tuner.values_from_architecture(space, other)


def test_keras_tuners_own_oracles_search_the_same_space(space, tmp_path):
    """Random search and Hyperband propose values that are architectures of the space (Hyperband's
    own `tuner/...` entries are ignored), and the HyperModel builds the same network as the
    block builder."""
    hp = tuner.hyperparameters(space)
    for oracle in (keras_tuner.oracles.RandomSearchOracle(objective="val_accuracy", max_trials=4,
                                                          hyperparameters=hp, seed=1),
                   keras_tuner.oracles.HyperbandOracle(objective="val_accuracy", max_epochs=3,
                                                       hyperparameters=hp, seed=1)):
        oracle._set_project_dir(str(tmp_path), type(oracle).__name__)
        for i in range(3):
            values = oracle.populate_space(str(i))["values"]
            arch = tuner.architecture_from_values(space, values)
            assert tuner.values_from_architecture(space, arch) == \
                {k: v for k, v in values.items() if k.startswith("block")}
    from proxyless_tf import blocks
    hp = tuner.hyperparameters(space)
    hp.values.update({"block2": "zero", "block3": "k5e6"})
    model = tuner.ProxylessHyperModel(space).build(hp)
    reference = blocks.build_network(tuner.architecture_from_values(space, hp.values, "candidate"))
    assert [l.name for l in model.layers] == [l.name for l in reference.layers]
    assert model.count_params() == reference.count_params()


# --- the ProxylessOracle ------------------------------------------------------------------------
def test_oracle_probabilities_concentrate_on_the_best_op_of_every_block(space, tmp_path):
    best = ["k5e6", "zero", "k3e3", "k5e6"]
    oracle = tuner.ProxylessOracle(space, max_trials=60, lr=0.15, baseline_decay=0.8, seed=0,
                                   report=False)
    synthetic_tuner(oracle, tmp_path, best_op_accuracy(space, best)).search()
    assert len(oracle.trials) == 60 and oracle.updates == 60
    for p, probs, op in zip(space.searchable_positions(), oracle.probabilities(), best):
        assert probs[p.candidates.index(op)] > 0.75, (p.index, op, probs)
    assert oracle.derived_architecture().ops[1:] == best


def test_oracle_state_round_trip_resumes_exactly(space, tmp_path):
    """Stop after 4 trials, resume in a new process-like oracle + tuner: alpha, the Adam slots,
    the baseline and the sampler continue, so 4 + 4 trials equal 8 uninterrupted ones."""
    best = ["k3e3", "k5e6", "zero", "k3e3"]
    accuracy = best_op_accuracy(space, best)
    settings = dict(lr=0.2, baseline_decay=0.5, samples_per_update=2, seed=3, report=False)

    first = tuner.ProxylessOracle(space, max_trials=4, **settings)
    synthetic_tuner(first, tmp_path / "resumed", accuracy).search()
    saved = alphas(first)
    assert len(first.trials) == 4 and first.updates == 2
    assert any(np.abs(a).max() > 0 for a in saved)

    resumed = tuner.ProxylessOracle(space, max_trials=8, **settings)
    tuning = synthetic_tuner(resumed, tmp_path / "resumed", accuracy)  # reloads the project
    assert len(resumed.trials) == 4 and resumed.updates == 2
    for a, b in zip(alphas(resumed), saved):
        np.testing.assert_array_equal(a, b)
    assert resumed.get_state()["proxyless"] == first.get_state()["proxyless"]
    tuning.search()
    assert len(resumed.trials) == 8 and resumed.updates == 4
    assert sorted(resumed.trials) == [str(i) for i in range(8)]

    straight = tuner.ProxylessOracle(space, max_trials=8, **settings)
    synthetic_tuner(straight, tmp_path / "straight", accuracy).search()
    # Bit for bit: the state round-trips float32 values exactly (as float64 in JSON), and both
    # runs then do the same float32 operations in this process.
    for a, b in zip(alphas(resumed), alphas(straight)):
        np.testing.assert_array_equal(a, b)
    assert [resumed.trials[i].hyperparameters.values for i in sorted(resumed.trials)] == \
        [straight.trials[i].hyperparameters.values for i in sorted(straight.trials)]
    saved_state = json.load(open(tmp_path / "resumed" / "p" / "oracle.json"))
    assert saved_state["proxyless"]["updates"] == 4


def test_oracle_starts_from_a_search_s_probabilities(space, tmp_path):
    probs = [np.array([0.9, 0.1]), np.array([0.2, 0.3, 0.5]), np.array([1 / 3] * 3),
             np.array([0.05, 0.9, 0.05])]
    arch = architecture.from_space(space, ["k3e3", "zero", "k3e3", "k5e6"], probs=[
        dict(zip(p.candidates, row)) for p, row in zip(space.searchable_positions(), probs)])
    path = tmp_path / "arch.json"
    arch.save(str(path))
    init = tuner.probabilities_from_architecture(space, architecture.Architecture.load(str(path)))
    oracle = tuner.ProxylessOracle(space, init_probs=init, report=False)
    for got, want in zip(oracle.probabilities(), probs):
        np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(UsageError, match="no probabilities"):
        tuner.probabilities_from_architecture(space, architecture.resolve("all:k3e3", space))


def test_scores_are_the_reinforce_reward_of_accuracy_and_latency(space, tmp_path):
    """Every oracle scores a trial by reinforce's reward; latency from the oracle's table-like
    function, or from the trial's own measurement when the oracle has none."""
    def fake_latency(arch):  # ms: bigger kernels and expansions cost more, zero costs nothing
        return 1.0 + sum(0 if b.op == "zero" else int(b.op[1]) * int(b.op[3]) / 10
                         for b in arch.blocks if b.searchable)

    def accuracy(arch):
        return 0.5 + 0.1 * sum(b.op == "k5e6" for b in arch.blocks)

    spec = tuner.RewardSpec("mul", w=-0.07, target_ms=4.0)
    agent = reinforce.Reinforce(types_policy(space), samples=1, reward="mul", w=-0.07,
                                target_ms=4.0, latency_source="measure",
                                meter=tuner._ExternalLatency())
    assert spec(0.8, 5.0) == pytest.approx(agent.reward(0.8, 5.0))
    assert tuner.RewardSpec("abs", beta=-0.5, target_ms=4.0)(0.8, 5.0) == pytest.approx(0.675)
    assert tuner.RewardSpec()(0.8, math.nan) == 0.8  # no target: the accuracy
    for name, oracle, trial_latency in [
            ("table", tuner.RandomOracle(space=space, latency=fake_latency, reward=spec,
                                         objective=keras_tuner.Objective("val_accuracy", "max"),
                                         max_trials=5, seed=1,
                                         hyperparameters=tuner.hyperparameters(space),
                                         report=False), None),
            ("measured", tuner.ProxylessOracle(space, max_trials=5, reward=spec, report=False),
             fake_latency)]:
        synthetic_tuner(oracle, tmp_path, accuracy, trial_latency, project=name).search()
        scores = []
        for trial in oracle.trials.values():
            arch = oracle.trial_architecture(trial)
            acc, lat, reward = oracle.trial_summary(trial)
            assert (acc, lat) == (pytest.approx(accuracy(arch)), pytest.approx(fake_latency(arch)))
            assert trial.score == reward == pytest.approx(spec(acc, lat))
            scores.append(trial.score)
        assert oracle.get_best_trials(1)[0].score == max(scores)


def saved_search(space, directory):
    """A search's output as the evaluator reads it: checkpoints/ of the supernet and arch.json
    with its probabilities."""
    import tensorflow as tf
    from proxyless_tf.supernet import Supernet
    net = Supernet(space)
    for m, value in zip(net.mixed_ops, ([0.5, -0.5], [1.0, 0.0, -1.0], [0, 2.0, 0], [0, 0, 1.0])):
        m.alpha.assign(np.array(value, "float32"))
    tf.train.Checkpoint(supernet=net).save(str(directory / "checkpoints" / "ckpt"))
    net.derive().save(str(directory / "arch.json"))
    return net


def test_supernet_evaluator_refuses_a_search_of_another_space_or_point(space, tmp_path):
    from proxyless_tf import data
    splits = data.load("digits", space.input_size, 32, max_train_examples=160)
    net = saved_search(space, tmp_path)
    with pytest.raises(UsageError, match="--tune_supernet.*blocks"):
        tuner.SupernetEvaluator(tiny_space(depths=(2, 3)), str(tmp_path), splits, 32)
    other = architecture.from_space(space, net.derive().ops[1:], probs=[  # neither the saved
        dict(zip(p.candidates, np.linspace(1, 2, len(p.candidates)) /  # alphas' nor uniform
                 np.linspace(1, 2, len(p.candidates)).sum()))
        for p in space.searchable_positions()])
    other.save(str(tmp_path / "arch.json"))  # probabilities the checkpoint's alphas do not give
    with pytest.raises(UsageError, match="do not give the probabilities"):
        tuner.SupernetEvaluator(space, str(tmp_path), splits, 32)


def test_supernet_evaluator_scores_candidates_with_the_search_s_weights(space, tmp_path):
    import tensorflow as tf
    from proxyless_tf import data
    splits = data.load("digits", space.input_size, 32, max_train_examples=160)
    net = saved_search(space, tmp_path)
    evaluate = tuner.SupernetEvaluator(space, str(tmp_path), splits, 32)
    arch = tuner.architecture_from_values(space, {"block1": "k5e6", "block2": "zero",
                                                  "block3": "k3e3", "block4": "k5e6"})
    images, labels = next(iter(splits.valid))  # the 32 held-out images: one batch
    logits = net(images, mode="binary", paths=net.paths_for(arch), training=False)
    expected = float(tf.reduce_mean(tf.cast(
        tf.argmax(logits, -1, output_type=tf.int32) == labels, tf.float32)))
    assert evaluate(arch, str(tmp_path)) == pytest.approx(expected)


def types_policy(space):
    return tuner._Policy(space, [np.zeros(len(p.candidates)) for p in space.searchable_positions()])


# --- the CLI ------------------------------------------------------------------------------------
SMOKE = ["--flagfile=flags/mobile.cfg", "--flagfile=flags/smoke.cfg"]


def run(*args):
    return run_module("proxyless_tf.tune", *args, unset=("KERASTUNER_",))


@pytest.mark.parametrize("args, words", [
    (["--oracle=grid"], ["--oracle", "grid"]),
    (["--max_trials=0"], ["--max_trials"]),
    (["--tune_epochs=-1"], ["--tune_epochs"]),
    (["--tune_init_from=TMP/missing.json"], ["--tune_init_from", "missing.json"]),
    (["--oracle=random", "--tune_init_from=TMP/missing.json"], ["--tune_init_from", "proxyless"]),
    (["--tune_supernet=TMP/nope"], ["--tune_supernet", "nope"]),
    # flags/mobile.cfg sets a table and --target_ratio: without the table its ratio target has
    # nothing to refer to.
    (["--latency_table="], ["--target_ratio", "--latency_table"]),
])
def test_cli_rejects_bad_flags_with_one_line(args, words, tmp_path):
    args = [a.replace("TMP", str(tmp_path)) for a in args]
    assert_usage_error(run(*SMOKE, f"--output_dir={tmp_path}/out", *args), *words)


def test_cli_tunes_writes_arch_json_and_resumes(tmp_path):
    out = tmp_path / "tune"
    common = [*SMOKE, f"--output_dir={out}", "--tune_epochs=1", "--tune_steps_per_epoch=2",
              "--oracle=proxyless"]
    first = run(*common, "--max_trials=1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "[1/1] trial 0" in first.stdout
    again = run(*common, "--max_trials=2")  # resumes the project: one more trial
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Reloading Tuner" in again.stdout and "[2/2] trial 1" in again.stdout
    data = json.load(open(out / "arch.json"))
    arch = architecture.Architecture.load(str(out / "arch.json"))
    assert data["tune"]["trials_completed"] == 2 and data["tune"]["latency_ms"] > 0
    assert 0 <= data["tune"]["val_accuracy"] <= 1
    assert all(b.probs for b in arch.blocks if b.searchable)
    results = json.load(open(out / "tune_results.json"))
    assert [t["status"] for t in results["trials"]] == ["COMPLETED"] * 2
    assert results["proxyless"]["updates"] == 2
    for trial in ("trial_0", "trial_1"):
        assert (out / "proxyless" / trial / "train" / "history.csv").exists()


# --- keras-tuner's distributed tuning -----------------------------------------------------------
DRIVER = """
import json, os, sys, time
sys.path.insert(0, sys.argv[2])
from conftest import tiny_space
from proxyless_tf import tuner
space = tiny_space()
best = ["k5e6", "zero", "k3e3", "k5e6"]
oracle = tuner.ProxylessOracle(space, max_trials=6, lr=0.2, seed=0)
me = os.environ["KERASTUNER_TUNER_ID"]
def accuracy(arch, trial_dir):
    # Each worker's first trial waits until the other worker holds a trial too, so that both
    # take part however their start-up times differ.
    mark = os.path.join(sys.argv[1], "started_" + me)
    if not os.path.exists(mark):
        open(mark, "w").close()
        for _ in range(1200):
            if all(os.path.exists(os.path.join(sys.argv[1], "started_" + w))
                   for w in ("worker0", "worker1")):
                break
            time.sleep(0.1)
    ops = [b.op for b in arch.blocks if b.searchable]
    return sum(op == b for op, b in zip(ops, best)) / len(best)
tuning = tuner.ProxylessTuner(oracle, tuner.ProxylessHyperModel(space), accuracy,
                              directory=sys.argv[1], project_name="p", announce=True)
tuning.search()
if me == "chief":
    print("STATE " + json.dumps({"trials": sorted(oracle.trials),
                                 "status": sorted({t.status for t in oracle.trials.values()}),
                                 "updates": oracle.updates}))
"""


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_tuning_chief_and_two_workers_on_loopback(tmp_path):
    """keras-tuner's own distribution: the ProxylessOracle serves on 127.0.0.1 in the chief,
    two workers run the trials (synthetic accuracy) and report back over gRPC."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3",
               KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()))
    procs = {tid: subprocess.Popen(
        [sys.executable, str(driver), str(tmp_path / "project"), os.path.join(REPO, "tests")],
        env=dict(env, KERASTUNER_TUNER_ID=tid), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for tid in ("chief", "worker0", "worker1")}
    outputs = {}
    try:
        for tid, proc in procs.items():
            outputs[tid] = proc.communicate(timeout=240)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for tid, proc in procs.items():
        assert proc.returncode == 0, (tid, outputs[tid][1][-3000:])
    state = json.loads(next(line[6:] for line in outputs["chief"][0].splitlines()
                            if line.startswith("STATE ")))
    assert state == {"trials": [str(i) for i in range(6)], "status": ["COMPLETED"], "updates": 6}
    ran = {tid: [line for line in outputs[tid][0].splitlines() if line.startswith(f"{tid}: trial")]
           for tid in ("worker0", "worker1")}
    assert sum(len(lines) for lines in ran.values()) == 6, ran
    assert all(ran.values()), ran  # both workers ran trials
