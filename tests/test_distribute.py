"""tf.distribute: the search on 2 logical CPU devices (MirroredStrategy) against the one-device
step, per-replica path sampling, checkpoints across strategies, and a two-worker
MultiWorkerMirroredStrategy search on loopback; retraining under mirrored resumed under default.

Logical devices must be configured before TensorFlow initialises its devices, so the mirrored
checks run in one subprocess (this file run as a script), which writes its findings to a JSON
file that the tests below read; the two-worker search runs as two `proxyless_tf.search`
processes. Tiny space, 16-image global batches: about three minutes on 2 shared CPU cores.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, tiny_space

TINY_FLAGS = ["--dataset=digits", "--input_size=16", "--width_multiplier=0.25",
              "--widths=16,24", "--depths=2,2", "--strides=2,1", "--candidates=k3e3,k5e6,zero",
              "--batch_size=16", "--max_train_examples=256", "--epochs=2", "--warmup_epochs=1",
              "--steps_per_epoch=2", "--arch_update_every=1", "--weight_lr=0.05",
              "--arch_lr=0.05"]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """Runs `mirrored_checks` on 2 logical CPUs in a subprocess; returns what it found."""
    tmp = tmp_path_factory.mktemp("mirrored")
    out = tmp / "findings.json"
    result = subprocess.run([sys.executable, os.path.abspath(__file__), str(tmp), str(out)],
                            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("finding", ["equivalence", "equivalence_zero_pairs_loss"])
def test_mirrored_shared_sample_step_equals_the_one_device_step(mirrored, finding):
    eq = mirrored[finding]
    assert eq["replicas"] == 2
    # The steps moved things far more than the tolerance...
    assert eq["weights_moved"] > 1e-3 and eq["alpha_moved"] > 1e-3
    # ...and the mirrored run ends where the one-device run ends: weights (BN statistics
    # included), alpha, both optimisers' slots (the summed, globally scaled gradients), the
    # RNG state, the step counter and the optimisers' iteration counts.
    # Float32 sums in another order differ by ~1e-7, but now and then a rounding puts one
    # activation on the other side of ReLU6's kink and that element's gradient differs
    # outright. In the weights that stays ~4e-5 (1e-3 of their largest value is the bound); in
    # an alpha gradient it is a small absolute change too, but where a block's two dL/dg
    # nearly cancel it is a large part of that block's gradient, and Adam divides each alpha's
    # gradient by its own size. So alpha and the optimiser slots are held to 5% of the group's
    # largest value: over 22 fresh initialisations plus one CI run the largest such difference
    # was 1.3% (weights equal to 1e-7 in that run: no kink in the weight steps), while a wrong
    # mask, rescale or gradient scaling moves a slot or alpha by the size of the step, 100%.
    for group, rtol in (("weights", 1e-3), ("bn_statistics", 1e-3), ("alpha", 5e-2),
                        ("weight_optimizer", 5e-2), ("arch_optimizer", 5e-2)):
        assert eq["max_abs_diff"][group] <= rtol * eq["scale"][group] + 1e-6, \
            (group, eq["max_abs_diff"], eq["scale"])
    assert eq["optimizer_counters_equal"]
    assert eq["rng_equal"] and eq["step"] == [2, 2]
    assert eq["copies_equal"]  # every replica's copy of every mirrored variable is the same


def test_per_replica_sampling_updates_the_union_of_the_sampled_paths_and_alpha(mirrored):
    per = mirrored["per_replica"]
    assert per["replicas_sampled_differently"]
    # A path's weights moved iff some replica sampled it (the union of the masks).
    assert per["moved_paths"] == per["expected_paths"]
    assert per["alpha_moved"] > 1e-3
    assert per["copies_equal"]
    # BatchNorm statistics come from each replica's share: per-replica copies until the
    # epoch-end sync sets each to the replicas' mean.
    assert per["bn_copies_differ_before_sync"] and per["copies_equal_after_sync"]
    assert all(abs(p - 1.0) < 1e-5 for p in per["prob_sums"])


def test_a_mirrored_checkpoint_resumes_under_the_default_strategy_and_back(mirrored):
    ck = mirrored["checkpoint"]
    assert ck["mirrored_epochs"] == [1]
    # 3 weight steps: one before the run (the per-replica check), two in epoch 1
    assert ck["default_restored_epoch"] == 1 and ck["default_restored_step"] == 3
    assert ck["default_restore_max_diff"] == 0.0  # bit-exact: weights, alpha, slots, RNG
    assert ck["history_epochs"] == [1, 2]
    assert ck["mirrored_restored_epoch"] == 2 and ck["mirrored_restore_max_diff"] == 0.0
    assert ck["copies_equal_after_restore"]


def test_retraining_under_mirrored_resumes_under_the_default_strategy(tmp_path):
    from proxyless_tf import architecture
    arch = architecture.from_space(tiny_space(input_size=32), ["k3e3", "zero", "k5e6", "k3e3"],
                                   name="tiny")
    arch.save(str(tmp_path / "arch.json"))
    common = [f"--arch={tmp_path / 'arch.json'}", f"--train_output_dir={tmp_path / 'train'}",
              "--train_steps_per_epoch=2", "--batch_size=32", "--max_train_examples=128"]
    first = subprocess.run(
        [sys.executable, "-m", "proxyless_tf.train", *common, "--train_epochs=1",
         "--strategy=mirrored", "--logical_cpus=2"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "(mirrored: 2 replicas, global batch 32)" in first.stdout
    second = subprocess.run(
        [sys.executable, "-m", "proxyless_tf.train", *common, "--train_epochs=2"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from" in second.stdout and "epoch 1/2, step 2" in second.stdout
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert results["resumed_from_epoch"] == 1 and results["epochs"] == 2


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_worker_multi_worker_mirrored_search_on_loopback(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    out = tmp_path / "search"
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers},
                                "task": {"type": "worker", "index": index}})
        log = open(tmp_path / f"worker{index}.log", "w")
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "proxyless_tf.search", "--strategy=multi_worker",
             f"--output_dir={out}", *TINY_FLAGS], cwd=REPO, env=_env(TF_CONFIG=tf_config),
            stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.time() + 420
    try:
        for proc, _ in procs:
            proc.wait(timeout=max(1, deadline - time.time()))
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    for (proc, _), text in zip(procs, logs):
        assert proc.returncode == 0, text[-4000:]
    assert "strategy multi_worker: 2 replica(s), global batch 16" in logs[0]
    digests = [[l for l in text.splitlines() if "alpha digest" in l][0].split()[-1]
               for text in logs]
    assert digests[0] == digests[1]  # the workers' alphas stayed in sync
    history = [json.loads(l) for l in open(out / "history.jsonl")]
    assert [h["epoch"] for h in history] == [1, 2] and "valid_acc" in history[1]
    assert (out / "arch.json").exists() and (out / "probabilities.png").exists()
    assert any(n.startswith("ckpt-2") for n in os.listdir(out / "checkpoints"))
    assert "wrote" in logs[0] and "wrote" not in logs[1]  # only the chief writes


# --- the subprocess -----------------------------------------------------------------------------


def mirrored_checks(tmp, out_path):
    from proxyless_tf import distribute
    distribute.split_cpu(2)  # before anything initialises TensorFlow's devices
    import keras
    import numpy as np
    import tensorflow as tf
    from proxyless_tf import data
    from proxyless_tf.search_loop import BilevelSearch, SearchConfig, StopSearch
    from proxyless_tf.supernet import Supernet

    mirrored = distribute.make_strategy("mirrored")
    default = tf.distribute.get_strategy()
    splits = data.load("digits", 16, 16, max_train_examples=256)
    ckpt_dir = os.path.join(tmp, "search")

    def make(strategy, sampling="shared", zero_pairs="gate"):
        config = SearchConfig(epochs=2, warmup_epochs=0, steps_per_epoch=2, arch_update_every=1,
                              weight_lr=0.05, arch_lr=0.05, path_sampling=sampling,
                              zero_pairs=zero_pairs)
        with strategy.scope():
            net = Supernet(tiny_space(num_classes=splits.num_classes))
        return BilevelSearch(net, splits, config, ckpt_dir, verbose=0, strategy=strategy)

    def copies(v):
        if isinstance(v, keras.Variable):
            v = v.value
        return [c.numpy() for c in mirrored.experimental_local_results(v)]

    def state(search):
        """Everything a checkpoint holds, as numpy arrays by group."""
        net = search.net
        bn = [v for v in net.non_trainable_variables if "moving" in v.name]
        return {"weights": [v.numpy() for v in net.trainable_variables],
                "bn_statistics": [v.numpy() for v in bn],
                "alpha": [a.numpy() for a in net.alphas],
                # the slots; the scalars (iteration counts, learning rates) on their own
                "weight_optimizer": [v.numpy() for v in search.weight_optimizer.variables
                                     if len(v.shape)],
                "arch_optimizer": [v.numpy() for v in search.arch_optimizer.variables
                                   if len(v.shape)],
                "optimizer_counters": [v.numpy() for v in search.weight_optimizer.variables +
                                       search.arch_optimizer.variables if not len(v.shape)],
                "rng": [search.rng.state.numpy()],
                "counters": [search.epoch.numpy(), search.step.numpy()]}

    def max_diff(a, b):
        return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
                   if np.size(x) else 0.0 for x, y in zip(a, b))

    def max_abs(a):
        return max(float(np.max(np.abs(x))) if np.size(x) else 0.0 for x in a)

    def all_copies_equal(search, bn=True):
        variables = [v for v in search.net.variables if bn or "moving" not in v.name] + \
            search.weight_optimizer.variables + search.arch_optimizer.variables
        return all(all(np.array_equal(c[0], other) for other in c[1:])
                   for c in (copies(v) for v in variables)) and \
            all(np.array_equal(c, copies(search.rng.state)[0]) for c in copies(search.rng.state))

    findings = {}

    # 1. Shared sample: mirrored step == one-device step on the same global batch. BatchNorm
    # normalises each replica's share with that share's statistics (as per-replica BN does on
    # GPUs); the global batch here is one 8-image batch twice, so each replica's statistics
    # are the global batch's, and everything else is compared within float32 tolerance: loss
    # scaling by the global batch, summed weight and alpha gradients, the path mask, the
    # rescale. The images are random noise, not digits: with digits the one-device gradient
    # itself moves by up to 3% between an 8-image batch twice and the same 8 images alone (no
    # strategy involved; most likely the uniform background puts many equal activations at
    # ReLU6's kink, where rounding decides); with noise images the two agree to ~1e-6.
    def equivalence(zero_pairs):
        keras.utils.set_random_seed(0)  # one initialisation, so that a failure reproduces
        one, two = make(default, zero_pairs=zero_pairs), make(mirrored, zero_pairs=zero_pairs)
        for a, b in zip(two.net.variables, one.net.variables):
            a.assign(b)
        two.rng.reset_from_seed(11)
        one.rng.reset_from_seed(11)
        start = state(one)
        noise = np.random.RandomState(0)
        for kind in ("weight", "arch", "weight", "arch"):
            images = tf.constant(noise.uniform(-1, 1, (8, 16, 16, 3)), tf.float32)
            labels = tf.constant(noise.randint(0, splits.num_classes, 8), tf.int32)
            getattr(one, f"{kind}_step")(tf.concat([images, images], 0),
                                         tf.concat([labels, labels], 0))
            dist = mirrored.experimental_distribute_values_from_function(
                lambda ctx: (images, labels))
            getattr(two, f"{kind}_step")(*dist)
        a, b = state(one), state(two)
        groups = ("weights", "bn_statistics", "alpha", "weight_optimizer", "arch_optimizer")
        return {
            "replicas": mirrored.num_replicas_in_sync,
            "max_abs_diff": {k: max_diff(a[k], b[k]) for k in groups},
            "scale": {k: max_abs(a[k]) for k in groups},
            "optimizer_counters_equal": all(np.array_equal(x, y) for x, y in
                                            zip(a["optimizer_counters"], b["optimizer_counters"])),
            "weights_moved": max_diff(start["weights"], a["weights"]),
            "alpha_moved": max_diff(start["alpha"], a["alpha"]),
            "rng_equal": bool(np.array_equal(a["rng"][0], b["rng"][0])),
            "step": [int(one.step.numpy()), int(two.step.numpy())],
            "copies_equal": all_copies_equal(two)}

    findings["equivalence"] = equivalence("gate")
    # The same with pairs that hold `zero` judged by their two losses (the reruns from each
    # flipped block run on each replica's share and sum like the gate gradients).
    findings["equivalence_zero_pairs_loss"] = equivalence("loss")

    # 2. Per-replica sampling: each replica draws its own paths; the weights of every path
    # some replica sampled move, the others do not; alpha moves; the copies stay equal.
    per = make(mirrored, "per_replica")
    sample = tf.function(lambda: mirrored.run(per.sample_paths))
    draws = [np.stack([x.numpy()[:, 0] for x in mirrored.experimental_local_results(sample())])
             for _ in range(5)]
    per.rng.reset_from_seed(7)
    predicted = [x.numpy()[:, 0] for x in mirrored.experimental_local_results(sample())]
    per.rng.reset_from_seed(7)
    batches = iter(distribute.distribute_dataset(mirrored, splits.train))
    before = {id(v): v.numpy() for v in per.net.trainable_variables}
    per.weight_step(*next(batches))
    moved, expected = [], []
    for slot, m in enumerate(per.net.mixed_ops):
        for k, path in enumerate(m.paths):
            if path is None:
                continue
            changed = [not np.array_equal(before[id(v)], v.numpy())
                       for v in path.trainable_variables]
            assert all(changed) or not any(changed), (slot, k)
            moved.append(bool(all(changed)))
            expected.append(bool(any(p[slot] == k for p in predicted)))
    alpha_start = [a.numpy() for a in per.net.alphas]
    valid_batches = iter(distribute.distribute_dataset(mirrored, splits.valid))
    for _ in range(3):
        per.arch_step(*next(valid_batches))
    findings["per_replica"] = {
        "replicas_sampled_differently": any(not np.array_equal(d[0], d[1]) for d in draws),
        "moved_paths": moved, "expected_paths": expected,
        "alpha_moved": max_diff(alpha_start, [a.numpy() for a in per.net.alphas]),
        "prob_sums": [float(np.sum(p)) for p in per.net.probabilities()],
        # BatchNorm's moving statistics are per replica until the epoch-end sync.
        "copies_equal": all_copies_equal(per, bn=False),
        "bn_copies_differ_before_sync": not all_copies_equal(per)}
    per.sync_batchnorm_statistics()
    findings["per_replica"]["copies_equal_after_sync"] = all_copies_equal(per)

    # 3. Checkpoints: a per-replica mirrored run stops after epoch 1; the one-device search
    # resumes from it and finishes epoch 2; a mirrored search restores that checkpoint.
    def interrupt(search, record):
        raise StopSearch()

    per.epoch_callbacks.append(interrupt)
    try:
        per.run()
    except StopSearch:
        pass
    saved = state(per)
    mirrored_history = [json.loads(l) for l in open(os.path.join(ckpt_dir, "history.jsonl"))]
    one = make(default)
    restored_epoch = one.restore()
    restored = state(one)
    one.run()
    finished = state(one)
    back = make(mirrored)
    mirrored_epoch = back.restore()
    history = [json.loads(l) for l in open(os.path.join(ckpt_dir, "history.jsonl"))]
    findings["checkpoint"] = {
        "mirrored_epochs": [h["epoch"] for h in mirrored_history],
        "default_restored_epoch": restored_epoch,
        "default_restored_step": int(restored["counters"][1]),
        "default_restore_max_diff": max(max_diff(saved[k], restored[k]) for k in saved),
        "history_epochs": [h["epoch"] for h in history],
        "mirrored_restored_epoch": mirrored_epoch,
        "mirrored_restore_max_diff": max(max_diff(finished[k], state(back)[k]) for k in saved),
        "copies_equal_after_restore": all_copies_equal(back)}
    with open(out_path, "w") as f:
        json.dump(findings, f, indent=1)
    print(json.dumps(findings, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, REPO)
    mirrored_checks(sys.argv[1], sys.argv[2])
