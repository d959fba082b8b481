"""`python -m proxyless_tf.show --arch=A`: print an architecture block by block, with its
parameter count. A is an arch JSON file, a reference name, or all:OP (on the flags' space)."""

if __name__ == "__main__":  # before anything loads TensorFlow: no native start-up lines
    from proxyless_tf import quiet
    quiet.start_tensorflow()

from absl import app

from proxyless_tf import architecture, blocks, options
from proxyless_tf.errors import UsageError, exit_on_usage_error

FLAGS = options.FLAGS  # --arch and the space flags


def describe(arch):
    lines = [f"{arch.name}: {arch.input_size}x{arch.input_size} input, {arch.num_classes} classes",
             f"  stem      3x3 conv -> {arch.stem_channels}, stride {arch.stem_stride}"]
    for i, (b, size) in enumerate(zip(arch.blocks, arch.block_input_sizes())):
        tag = "" if b.searchable else " (fixed)"
        skip = " + shortcut" if b.has_shortcut and not b.skipped else ""
        lines.append(f"  block {i:2d}  {b.op:8s} {b.in_channels:4d} -> {b.out_channels:4d} "
                     f"stride {b.stride} at {size}x{size}{skip}{tag}")
    lines.append(f"  head      1x1 conv -> {arch.head_channels}, pool, classifier")
    model = blocks.build_network(arch)
    lines.append(f"  parameters: {blocks.count_params(model):,}; multiply-accumulates: "
                 f"{blocks.count_macs(model):,}")
    return "\n".join(lines)


def main(argv):
    if not FLAGS.arch:
        raise UsageError("--arch is required (a JSON file, a reference name, or all:OP)")
    space = options.space_from_flags() if FLAGS.arch.startswith("all:") else None
    print(describe(architecture.resolve(FLAGS.arch, space)))


if __name__ == "__main__":
    app.run(exit_on_usage_error(main))
