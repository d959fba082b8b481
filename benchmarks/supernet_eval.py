"""A supernet's weights on given networks: the supernet restored from a search directory's last
checkpoint, and each network's test accuracy with those weights, batch norm re-estimated on the
same seeded, cached batches for every network and every rerun (supernet_ranking,
inherited_accuracy; nas_bench_macro restores its supernet the same way)."""

import os


def restore_supernet(space, folder):
    """The supernet of `space` with the weights of search directory `folder`'s last checkpoint."""
    import tensorflow as tf
    from proxyless_tf.supernet import Supernet
    net = Supernet(space)
    latest = tf.train.latest_checkpoint(os.path.join(folder, "checkpoints"))
    tf.train.Checkpoint(supernet=net).restore(latest).expect_partial()
    return net


def evaluation_data(args):
    """(calibration, splits): the batches batch norm is re-estimated on, the same for every
    network and every rerun, so that networks differ by their weights only, not by which
    images their statistics saw; and the data's splits. The batches are held-out training
    images (the validation split: not augmented, so seeding makes them repeatable, which the
    training split's parallel random crops are not), shuffled with args.calibration_seed,
    cached. The split holds max_train_examples // 5 images (2,000 for the full benchmark):
    20 batches of 128 see some of them twice."""
    from proxyless_tf import data, reproducible
    seed = getattr(args, "calibration_seed", 0)
    reproducible.seed_everything(seed)  # before loading: the shuffle's seed
    splits = data.load("cifar10", 32, args.batch_size, args.data_dir, False, 0.1, seed,
                       args.max_train_examples)
    return splits.valid.take(args.recalibration_batches).cache(), splits


def evaluate_inherited(args, space, folder, archs, net=None):
    """({name: test accuracy} of every (arch, _) of `archs` with the supernet's weights (`net`,
    or restored from `folder`), batch norm re-estimated; the number of test images)."""
    from proxyless_tf import derived
    calibration, splits = evaluation_data(args)
    net = net or restore_supernet(space, folder)
    result = {}
    for arch, _ in archs:
        model = derived.derived_network(net, calibration, arch, args.recalibration_batches)
        result[arch.name] = derived.accuracy(model, splits.test)
    return result, splits.test_size
