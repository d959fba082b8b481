"""The bi-level loop: binary weight steps, architecture steps, checkpoints and resume."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import TFDS_DIR, require_shared, tiny_space
from proxyless_tf import architecture, blocks, data
from proxyless_tf.search_loop import BilevelSearch, SearchConfig, StopSearch
from proxyless_tf.supernet import Supernet


def make_search(output_dir, dataset="digits", data_dir=None, candidates=None, **config):
    settings = dict(epochs=2, warmup_epochs=1, steps_per_epoch=3, arch_update_every=1,
                    weight_lr=0.05, arch_lr=0.05)
    settings.update(config)
    splits = data.load(dataset, 16, 16, data_dir=data_dir, max_train_examples=256)
    space = tiny_space(num_classes=splits.num_classes,
                       **({"candidates": candidates} if candidates else {}))
    net = Supernet(space)
    return BilevelSearch(net, splits, SearchConfig(**settings), str(output_dir), verbose=0)


def path_variables(net, slot, k):
    return net.mixed_ops[slot].paths[k].variables


def test_weight_step_computes_and_updates_only_the_sampled_path(tmp_path):
    search = make_search(tmp_path)
    net = search.net
    before = [v.numpy().copy() for v in net.variables]
    images, labels = next(iter(search.splits.train))
    search.rng.reset_from_seed(7)
    expected = search.sample_paths().numpy()[:, 0]  # what the step will draw
    search.rng.reset_from_seed(7)
    search.weight_step(images, labels)
    after = {id(v): v.numpy() for v in net.variables}
    for slot, m in enumerate(net.mixed_ops):
        for k, path in enumerate(m.paths):
            if path is None:
                continue
            changed = [not np.array_equal(b, after[id(v)]) for v, b in
                       zip(net.variables, before) if any(v is w for w in path.variables)]
            # Moving BN statistics change only when the path ran; weights only when updated.
            assert all(changed) if k == expected[slot] else not any(changed), (slot, k)


def test_changing_the_sample_does_not_retrace_the_steps(tmp_path):
    search = make_search(tmp_path)
    batches = iter(search.splits.train)
    samples = set()
    for _ in range(6):
        samples.add(tuple(search.sample_paths().numpy()[:, 0]))
        search.weight_step(*next(batches))
        search.arch_step(*next(batches))
    assert len(samples) > 1
    assert search.traces == {"weight": 1, "arch": 1}


def _path_shares(search, fixed, skip_rate, draws=1500):
    """Per block, the share of weight steps that would train each candidate."""
    counts = np.zeros([len(search.net.mixed_ops), max(len(m.candidates)
                                                       for m in search.net.mixed_ops)])
    fixed, skip_rate = tf.constant(fixed, tf.int32), tf.constant(skip_rate, tf.float32)
    draw = tf.function(search.steps.training_paths)
    for _ in range(draws):
        counts[np.arange(len(counts)), draw(fixed, skip_rate)[:, 0].numpy()] += 1
    return counts / draws


def test_skip_rate_skips_blocks_in_the_seed_and_warm_up_phases_only(tmp_path):
    from proxyless_tf import growth
    search = make_search(tmp_path, skip_rate=0.5)
    seed, sample = growth.seed_paths(search.net), -np.ones_like(growth.seed_paths(search.net))
    skippable = [m.candidates.index("zero") if "zero" in m.candidates else None
                 for m in search.net.mixed_ops]
    assert any(z is not None for z in skippable) and any(z is None for z in skippable)
    seed_phase, warm_up = _path_shares(search, seed, 0.5), _path_shares(search, sample, 0.5)
    search_phase = _path_shares(search, sample, 0.0)
    for b, (m, zero) in enumerate(zip(search.net.mixed_ops, skippable)):
        n = len(m.candidates)
        if zero is None:  # never skipped: the seed, or a uniform candidate
            assert seed_phase[b, seed[b, 0]] == 1
            np.testing.assert_allclose(warm_up[b, :n], 1 / n, atol=0.05)
            continue
        # skipped half the time; otherwise the seed, or a uniform candidate other than zero
        assert seed_phase[b, zero] == pytest.approx(0.5, abs=0.05)
        assert seed_phase[b, seed[b, 0]] == pytest.approx(0.5, abs=0.05)
        assert warm_up[b, zero] == pytest.approx(0.5, abs=0.05)
        others = np.delete(warm_up[b, :n], zero)
        np.testing.assert_allclose(others, 0.5 / (n - 1), atol=0.04)
        # the search phase samples softmax(alpha) as it is: zero is one candidate of n
        assert search_phase[b, zero] == pytest.approx(1 / n, abs=0.04)


def test_the_loop_skips_in_the_seed_and_warm_up_phases_and_not_in_the_search(tmp_path):
    search = make_search(tmp_path, epochs=3, warmup_epochs=2, seed_epochs=1, skip_rate=0.3,
                         steps_per_epoch=1)
    rates = []
    step = search.steps.weight_step
    search.steps.weight_step = lambda *a, fixed=None, skip_rate=0.0: (
        rates.append(skip_rate) or step(*a, fixed=fixed, skip_rate=skip_rate))
    search.run()
    assert rates == [0.3, 0.3, 0.0]  # seed, warm-up, search


def test_without_skip_rate_the_sampling_stream_is_unchanged(tmp_path):
    search = make_search(tmp_path, skip_rate=0.0)
    sample = tf.fill([len(search.net.mixed_ops), 2], -1)
    search.rng.reset_from_seed(3)
    plain = [search.sample_paths().numpy() for _ in range(3)]
    search.rng.reset_from_seed(3)
    trained = [search.steps.training_paths(sample, tf.constant(0.5)).numpy() for _ in range(3)]
    np.testing.assert_array_equal(plain, trained)


def test_arch_step_moves_only_the_sampled_pair_and_keeps_the_others(tmp_path):
    search = make_search(tmp_path)
    net = search.net
    for m in net.mixed_ops:
        m.alpha.assign(tf.random.stateless_normal(m.alpha.shape, seed=[1, m.block_index]))
    before = [m.probs.numpy() for m in net.mixed_ops]
    search.rng.reset_from_seed(3)
    pairs = search.sample_paths().numpy()
    search.rng.reset_from_seed(3)
    search.arch_step(*next(iter(search.splits.valid)))
    for m, p_before, pair in zip(net.mixed_ops, before, pairs):
        others = [k for k in range(len(m.candidates)) if k not in pair]
        np.testing.assert_allclose(m.probs.numpy()[others], p_before[others], atol=1e-6)


def _cross_entropy_with(search, images, labels, paths):
    paths = tf.constant(np.stack([paths, paths], 1), tf.int32)
    logits = search.net(images, mode="binary", paths=paths, training=True)
    return float(search.steps._cross_entropy(labels, logits))


@pytest.mark.parametrize("zero_pairs, always_right", [("loss", True), ("gate", False)])
def test_a_pair_holding_zero_moves_alpha_zero_as_the_two_losses_say(tmp_path, zero_pairs,
                                                                    always_right):
    """With zero_pairs="loss" the architecture step raises alpha_zero against its pair's other
    path exactly when the network with the block skipped has the lower cross-entropy on the
    batch; dCE/dg ("gate", the paper's Eq. 4) gets the sign wrong in some of these pairs."""
    search = make_search(tmp_path, zero_pairs=zero_pairs, warmup_epochs=0)
    net, steps = search.net, search.steps
    batches = iter(search.splits.valid.repeat())
    for _ in range(2):  # weights that are not at their initial values
        search.weight_step(*next(batches))
    verdicts = []
    for seed in range(12):
        images, labels = next(batches)
        search.rng.reset_from_seed(seed)
        pairs = steps.sample_paths().numpy()
        gates = steps._sample_gates(tf.constant(pairs)).numpy()
        active = np.where(gates[:, 0] > 0.5, pairs[:, 0], pairs[:, 1])
        before = [m.alpha.numpy() for m in net.mixed_ops]
        expected = {}
        for s, (m, pair) in enumerate(zip(net.mixed_ops, pairs)):
            zero = m.layout.zero
            if zero in pair:
                op = pair[0] if pair[1] == zero else pair[1]
                with_op, skipped = active.copy(), active.copy()
                with_op[s], skipped[s] = op, zero
                expected[s] = (op, zero, _cross_entropy_with(search, images, labels, skipped) <
                               _cross_entropy_with(search, images, labels, with_op))
        search.rng.reset_from_seed(seed)
        search.arch_step(images, labels)
        for s, (op, zero, zero_better) in expected.items():
            alpha = net.mixed_ops[s].alpha.numpy()
            raised = alpha[zero] - alpha[op] > before[s][zero] - before[s][op]
            verdicts.append(raised == zero_better)
    assert len(verdicts) >= 5
    assert all(verdicts) if always_right else not all(verdicts)


@pytest.mark.parametrize("candidates", [None, ("k3e3", "zero")])
def test_a_pair_holding_zero_is_judged_by_the_whole_network_s_losses_with_each_path(
        tmp_path, candidates):
    """zero_pairs="loss" runs a flipped block's network again only from that block on, the
    blocks before it read from the step's own pass: its two losses are those of the whole
    network run with each path of the pair (every other block at its active path). With
    ("k3e3", "zero") the blocks that open a stage cannot be skipped, so fixed blocks stand
    between the searchable ones."""
    search = make_search(tmp_path, zero_pairs="loss", warmup_epochs=0, candidates=candidates)
    net, steps = search.net, search.steps
    assert net.slot_positions[0] > 0  # a fixed block first: positions are not slots
    losses_of = tf.function(steps._zero_pair_losses, autograph=False)  # as the step runs it
    batches = iter(search.splits.valid.repeat())
    search.weight_step(*next(batches))
    compared = 0
    for seed in range(6):
        images, labels = next(batches)
        search.rng.reset_from_seed(seed)
        pairs = steps.sample_paths()
        gates = steps._sample_gates(pairs)
        block_inputs = []
        logits = net.forward(images, "two", pairs, gates, training=True,
                             block_inputs=block_inputs)
        ce = steps._cross_entropy(labels, logits)
        losses = losses_of(labels, pairs, gates, ce, tf.zeros_like(gates), block_inputs).numpy()
        pairs, gates = pairs.numpy(), gates.numpy()
        active = np.where(gates[:, 0] > 0.5, pairs[:, 0], pairs[:, 1])
        for s, m in enumerate(net.mixed_ops):
            if m.layout.zero not in pairs[s]:
                np.testing.assert_array_equal(losses[s], 0.0)  # dCE/dg as given
                continue
            for k in range(2):
                paths = active.copy()
                paths[s] = pairs[s, k]
                whole = _cross_entropy_with(search, images, labels, paths)
                np.testing.assert_allclose(losses[s, k], whole, rtol=1e-5, atol=1e-6)
                compared += 1
    assert compared >= 10


def test_the_latency_term_of_the_arch_step_lowers_the_expected_latency(tmp_path):
    from proxyless_tf import latency
    search = make_search(tmp_path)
    space = search.net.space
    table = _table_where_expansion_and_kernel_cost(space)
    lo, hi = latency.LatencyObjective(table, space, 1.0, loss="abs").range_ms()
    # A target far below E[LAT] and a weight that dwarfs the cross-entropy: the step through
    # the supernet's tape must carry the latency gradient to alpha.
    search.objective = latency.LatencyObjective(table, space, lo, loss="abs", beta=100.0)
    before = float(search.objective.expected(search.net.alphas))
    batches = iter(search.splits.valid.repeat())
    for _ in range(5):
        search.arch_step(*next(batches))
    # Measured: 7% of the range with the latency gradient, 1% from the cross-entropy alone.
    assert float(search.objective.expected(search.net.alphas)) < before - 0.04 * (hi - lo)


def test_the_latency_term_lowers_costly_paths_the_arch_step_did_not_sample(tmp_path):
    """E[LAT] is over every candidate (the paper's Eq. 2), not only the sampled pair: a path
    costlier than its block's expectation loses probability even in a step that did not draw
    it. Over the pair alone its alpha would not move at all."""
    from proxyless_tf import latency
    search = make_search(tmp_path, candidates=("k3e3", "k3e6", "k5e3", "k5e6", "zero"))
    space = search.net.space
    table = _table_where_expansion_and_kernel_cost(space)
    lo, _ = latency.LatencyObjective(table, space, 1.0, loss="abs").range_ms()
    search.objective = latency.LatencyObjective(table, space, lo, loss="abs", beta=100.0)
    images, labels = next(iter(search.splits.valid))
    search.rng.reset_from_seed(7)
    pairs = search.sample_paths().numpy()  # what the step will draw
    search.rng.reset_from_seed(7)
    before = [a.numpy().copy() for a in search.net.alphas]
    search.arch_step(images, labels)
    lowered = []
    for s, alpha in enumerate(search.net.alphas):
        probs, costs = tf.nn.softmax(before[s]).numpy(), search.objective.costs[s]
        for k in set(range(len(costs))) - set(pairs[s]):
            if costs[k] > np.dot(probs, costs):
                lowered.append(alpha.numpy()[k] < before[s][k])
    assert len(lowered) >= 3
    assert all(lowered)


def _table_where_expansion_and_kernel_cost(space):
    from proxyless_tf import latency
    entries = {p.key: {"count": 1, "mean": 0.0 if p.kind == "overhead" else
                       0.1 * p.key.count("expand:6") + 0.05 * p.key.count("kernel:5") + 0.1,
                       "var": 0.0} for p in latency.table_parts(space)}
    return latency.LatencyTable(entries, {"runtime": "synthetic"}, "synthetic")


def test_search_writes_every_output_and_a_buildable_arch(tmp_path):
    search = make_search(tmp_path)
    search.run()
    for name in ("arch.json", "history.jsonl", "probabilities.png", "checkpoints", "tensorboard"):
        assert os.path.exists(tmp_path / name), name
    history = [json.loads(l) for l in open(tmp_path / "history.jsonl")]
    assert [h["epoch"] for h in history] == [1, 2]
    assert "valid_acc" in history[1] and "valid_acc" not in history[0]  # warm-up: weights only
    arch = architecture.Architecture.load(str(tmp_path / "arch.json"))
    model = blocks.build_network(arch)
    assert model(tf.zeros([1, 16, 16, 3])).shape == (1, 10)


def test_an_interrupted_search_resumes_with_the_same_epoch_step_and_alpha(tmp_path):
    first = make_search(tmp_path, epochs=3)

    def interrupt(search, record):
        raise StopSearch()

    first.epoch_callbacks.append(interrupt)
    with pytest.raises(StopSearch):
        first.run()
    saved_alpha = [a.numpy() for a in first.net.alphas]
    saved_variables = {v.path: v.numpy() for v in first.net.variables}  # paths + BN statistics
    saved_step = int(first.step.numpy())

    second = make_search(tmp_path, epochs=3)
    assert second.restore() == 1
    assert int(second.step.numpy()) == saved_step == 3
    for a, b in zip(second.net.alphas, saved_alpha):
        np.testing.assert_array_equal(a.numpy(), b)
    restored = {v.path: v.numpy() for v in second.net.variables}
    assert restored.keys() == saved_variables.keys()
    for name, value in saved_variables.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    second.run()
    history = [json.loads(l) for l in open(tmp_path / "history.jsonl")]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert int(second.step.numpy()) == 9


def test_searches_resumed_from_one_warm_up_sample_from_their_search_seed(tmp_path):
    """One warm-up, its checkpoint copied into several searches: the search phase's path
    sampler starts from --search_seed (the same seed, the same stream; another seed, another
    one), where without it every copy would go on with the warm-up's saved stream."""
    import shutil
    warm = make_search(tmp_path / "warm", epochs=1, warmup_epochs=1, seed_epochs=0)
    warm.run()

    def sampler_at_first_search_step(name, search_seed):
        shutil.copytree(tmp_path / "warm" / "checkpoints", tmp_path / name / "checkpoints")
        search = make_search(tmp_path / name, epochs=2, warmup_epochs=1, seed_epochs=0,
                             search_seed=search_seed)
        seen = []

        def first_step(*args, **kwargs):
            seen.append(search.rng.state.numpy().copy())
            raise StopSearch()

        search.steps.weight_step = first_step
        with pytest.raises(StopSearch):
            search.run()
        return seen[0]

    first, again = sampler_at_first_search_step("a", 1), sampler_at_first_search_step("b", 1)
    other = sampler_at_first_search_step("c", 2)
    saved = sampler_at_first_search_step("d", None)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other) and not np.array_equal(first, saved)
    np.testing.assert_array_equal(saved, warm.rng.state.numpy())


def test_a_resumed_search_steps_alpha_at_the_arch_lr_asked_for_now(tmp_path):
    """Adam keeps its learning rate in a checkpointed variable: a search resumed from a
    warm-up saved with another --arch_lr must use the rate it was given, not the saved one."""
    warm = make_search(tmp_path, epochs=1, warmup_epochs=1, seed_epochs=0, arch_lr=0.01)
    warm.run()
    resumed = make_search(tmp_path, epochs=2, warmup_epochs=1, seed_epochs=0, arch_lr=0.2)
    assert resumed.restore() == 1
    assert float(resumed.arch_optimizer.learning_rate.numpy()) == pytest.approx(0.2)


def weight_lr_at_first_search_step(tmp_path, search_weight_lr):
    """A warm-up run alone (its cosine ends at 0), then a search resumed from it."""
    warm = make_search(tmp_path, epochs=1, warmup_epochs=1, seed_epochs=0)
    warm.run()
    resumed = make_search(tmp_path, epochs=3, warmup_epochs=1, seed_epochs=0,
                          search_weight_lr=search_weight_lr)
    assert resumed.restore() == 1
    return float(resumed.weight_optimizer.learning_rate.numpy())


def test_a_search_resumed_from_a_finished_warm_up_trains_at_the_tail_of_one_cosine(tmp_path):
    # step 3 of a cosine over 9 steps: what is left of the one schedule
    assert weight_lr_at_first_search_step(tmp_path, 0.0) == \
        pytest.approx(0.05 * 0.5 * (1 + np.cos(np.pi * 3 / 9)))


def test_a_search_weight_lr_restarts_the_weights_cosine_at_that_rate(tmp_path):
    assert weight_lr_at_first_search_step(tmp_path, 0.02) == pytest.approx(0.02)


def test_checkpoint_seconds_saves_at_the_end_of_each_phase_and_when_due(tmp_path, monkeypatch):
    """Epoch 1 seed, 2 warm-up, 3-6 search, with a checkpoint at most every 100 s of a clock
    that advances 40 s per epoch."""
    import proxyless_tf.search_loop as loop
    clock = [0.0]
    monkeypatch.setattr(loop.time, "time", lambda: clock[0])
    search = make_search(tmp_path, epochs=6, warmup_epochs=2, checkpoint_seconds=100)
    saved = []
    search.epoch_callbacks.append(lambda s, record: clock.__setitem__(0, clock[0] + 40))
    original = search.manager.save

    def save(checkpoint_number):
        saved.append(checkpoint_number)
        return original(checkpoint_number=checkpoint_number)

    monkeypatch.setattr(search.manager, "save", save)
    search.run()
    # 1 and 2 end a phase; 3 and 4 end 40 s and 80 s after 2's save, 5 120 s after; 6 is last
    assert saved == [1, 2, 5, 6]
    assert search.manager.latest_checkpoint.endswith("ckpt-6")


def test_a_search_on_cifar10_runs_a_few_steps(tmp_path):
    require_shared(os.path.join(TFDS_DIR, "cifar10"))
    search = make_search(tmp_path, dataset="cifar10", data_dir=TFDS_DIR, epochs=1,
                         warmup_epochs=0, steps_per_epoch=2)
    arch = search.run()
    history = [json.loads(l) for l in open(tmp_path / "history.jsonl")]
    assert np.isfinite(history[0]["train_loss"]) and "valid_acc" in history[0]
    assert len([b for b in arch.blocks if b.searchable]) == len(search.net.mixed_ops)
