"""What every kind of candidate op answers. The rest of the project asks these questions and
never looks at an op's name itself: a new kind of candidate is one new module in this package
and one line in its registry (`proxyless_tf.ops.KINDS`)."""

import dataclasses

FIXED_GROUP = "fixed"  # the latency refit's group of every part that is not an expanding MBConv


def keeps_shortcut(stride, in_channels, out_channels):
    """Whether a block keeps its identity shortcut: the one place this rule is written."""
    return stride == 1 and in_channels == out_channels


@dataclasses.dataclass(frozen=True)
class Op:
    """A candidate op. Subclasses are frozen dataclasses whose fields are what the name says."""

    @property
    def name(self):
        raise NotImplementedError

    # --- where it may stand ------------------------------------------------------------------
    def allowed_at(self, stride, in_channels, out_channels):
        """Whether the op can stand in a block of this stride and these channels."""
        return True

    where = "anywhere"  # how `allowed_at` reads in an error message

    def has_layers(self, stride, in_channels, out_channels):
        """False where the op adds nothing to the block (the block's shortcut carries its
        input): such a candidate has no path in the supernet and no part in a latency table."""
        return True

    # --- its layers ------------------------------------------------------------------------
    def build(self, K, x, out_channels, stride, prefix, act):
        """The op's layers on `x`, named `{prefix}_...`; the block adds the shortcut."""
        raise NotImplementedError

    # --- its latency-table part ----------------------------------------------------------------
    def latency_key(self, input_size, in_channels, output_size, out_channels, stride):
        raise NotImplementedError

    @property
    def group(self):
        """The op's group in a refit of a latency table to another machine (latency/check.py)."""
        return FIXED_GROUP

    def folded_weights(self, in_channels, out_channels):
        """Numbers the op reads from its weights per inference once batch norm is folded into
        its convolutions (as the TFLite converter does): each kernel plus one bias per output
        channel. The latency model's memory term."""
        raise NotImplementedError

    # --- growing and cropping (proxyless_tf/growth.py) ------------------------------------------
    seeds = False  # whether the seed network may use it (growth.seed_index)

    def can_grow(self, target):
        """Whether op `target` can start as this op's exact function."""
        return False

    def can_fit(self, target):
        """Whether op `target` can start from this op's weights (grown or cropped)."""
        return False
