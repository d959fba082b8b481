"""The Python API: the whole pipeline from a notebook, no absl flags and no argv.

    from proxyless_tf import api
    space = api.space(width_multiplier=0.5, depths=(2, 2, 2, 2, 2, 1))   # or api.space("imagenet")
    splits = api.data("digits", input_size=32, batch_size=32)   # a TFDS name, "digits", a folder
    result = api.search(space, splits, output_dir="runs/nb", epochs=7, warmup_epochs=4,
                        latency_table="proxyless_tf/tables/mobile_32.json", target_ratio=0.8,
                        target_reference="all:k3e6", latency_loss="abs")
    result.arch, result.history, result.results     # Architecture, per-epoch records, accuracies
    model, results = api.retrain(result.arch, splits, epochs=4, output_dir="runs/nb/train")
    report = api.export_tflite(model, "runs/nb/model.tflite", splits=splits, arch=result.arch)
    api.predict_latency(result.arch, result.latency_table), api.measure_latency(result.arch)

The commands are a layer of flags on top: `python -m proxyless_tf.search` translates its flags
into `make_search` and `export_derived`, and validates them with `check_search_config`;
`python -m proxyless_tf.train` and `retrain` share `proxyless_tf.train.train` and
`check_config`. Bad input raises `UsageError` (one line naming the argument; messages from the
layers below name the command-line flag of the same name). Keyword names follow the flags:
`latency_table`, `target_ms`, `target_ratio`, `target_reference`, `latency_loss` and the
`SearchConfig` fields mean what `--NAME` means (README.md, "Main flags").

Importing this module loads neither TensorFlow nor absl; each function loads what it needs.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Sequence, Union

from proxyless_tf import architecture, io_utils, reproducible, search_space
from proxyless_tf.api_latency import (latency_objective, latency_table, measure_latency,
                                      predict_latency)
from proxyless_tf.errors import UsageError, require_settings
from proxyless_tf.ops import parse_op

if TYPE_CHECKING:
    import keras

    from proxyless_tf.data import Splits
    from proxyless_tf.latency import LatencyObjective, LatencyTable, Meter
    from proxyless_tf.search_loop import BilevelSearch, SearchConfig

__all__ = ["UsageError", "SearchResult", "Retrained", "space", "architecture_of", "data",
           "latency_table", "latency_objective", "search_config", "check_search_config",
           "make_search", "search", "retrain", "export_tflite", "export_derived",
           "predict_latency", "measure_latency"]

Arch = Union[architecture.Architecture, str]
Table = Union["LatencyTable", str]


# --- space, architectures, data -------------------------------------------------------------
def space(preset: str = "small_input", **overrides: Any) -> search_space.SearchSpace:
    """A search space: `preset` "small_input" (32x32 images: stem and first stage at stride 1)
    or "imagenet" (224x224, the paper's), with any SearchSpace field overridden: input_size,
    num_classes, width_multiplier, widths, depths, strides, candidates (op names such as "k3e6"
    and "zero"), dropout, ... (None keeps the preset's). Channels round to multiples of 8."""
    fields = {f.name for f in dataclasses.fields(search_space.SearchSpace)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UsageError(f"space(): unknown setting(s) {', '.join(unknown)}; use "
                         f"{', '.join(sorted(fields))}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return search_space.make_space(preset, **overrides)


def architecture_of(spec: Arch, space: Optional[search_space.SearchSpace] = None
                    ) -> architecture.Architecture:
    """An Architecture: one as it is, an arch JSON file (a search's arch.json), a published
    network by name (mobilenet_v2, proxyless_mobile, proxyless_gpu, proxyless_cpu; laid out on
    `space` when given) or "all:OP" (every searchable block of `space` set to OP)."""
    return architecture.as_architecture(spec, space)


def data(name: str = "digits", *, input_size: int, batch_size: int = 64,
         data_dir: Optional[str] = None, download: bool = False, valid_fraction: float = 0.1,
         seed: int = 0, max_train_examples: int = 0) -> "Splits":
    """Train/valid/test pipelines (a `proxyless_tf.data.Splits`) of images resized to
    `input_size`: "digits" (embedded, no download), a TFDS name (cifar10, imagenette, ...;
    `data_dir`, `download`), or the path of an image folder (one subfolder per class). The
    search holds `valid_fraction` of the training data out for its architecture steps. Seeds
    Python, NumPy, TensorFlow and Keras with `seed` first, as the commands do, so that the
    augmentation is the same every time."""
    from proxyless_tf import data as data_lib
    if name not in (data_lib.EMBEDDED, "folder") and os.path.isdir(name):
        name, data_dir = "folder", name
    reproducible.seed_everything(seed)
    return data_lib.load(name, input_size, batch_size, data_dir, download, valid_fraction, seed,
                         max_train_examples)


# --- latency ------------------------------------------------------------------------------------
# --- search -----------------------------------------------------------------------------------
def search_config(config: Optional["SearchConfig"] = None, **knobs: Any) -> "SearchConfig":
    """A checked SearchConfig: `config` (default: the paper's settings) with `knobs` replaced.
    Knobs are SearchConfig's fields: epochs, warmup_epochs, steps_per_epoch (0: one pass),
    weight_lr, search_weight_lr (above 0: the search epochs' weights restart a cosine from
    it), weight_decay, momentum, label_smoothing, arch_lr, arch_beta1, arch_beta2,
    arch_update_every, arch_algo ("grad", "reinforce"), weight_mode ("binary", "full"), seed,
    path_sampling, derive ("target", "argmax"), derive_tolerance, seed_epochs (the first
    warm-up epochs that train the seed network alone; default half the warm-up), seed_candidate
    ("smallest": grown exactly into the others; "widest", "largest" or an op such as "k3e6":
    cropped into the candidates smaller than it; any but "smallest" needs seed_epochs > 0),
    skip_rate
    (seed and warm-up: the probability that a block which can be skipped is skipped),
    zero_pairs ("gate", "loss": how the architecture step judges a pair that holds zero)."""
    from proxyless_tf.search_loop import SearchConfig
    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    unknown = sorted(set(knobs) - fields)
    if unknown:
        raise UsageError(f"unknown search setting(s) {', '.join(unknown)}; use "
                         f"{', '.join(sorted(fields))}")
    if config is None:
        config = SearchConfig(**knobs)
    elif knobs:
        config = dataclasses.replace(config, **knobs)
    check_search_config(config)
    return config


def check_search_config(config: "SearchConfig", prefix: str = "",
                        candidates: Optional[Sequence[str]] = None) -> None:
    """A UsageError naming the first setting the search cannot run with (`prefix` "--": as the
    command line names them; `candidates`: the space's ops, which seed_candidate must be one
    of when it names an op)."""
    require_settings(config, ("epochs", "arch_update_every", "weight_lr", "arch_lr"),
                     ("warmup_epochs", "steps_per_epoch", "checkpoint_seconds",
                      "search_weight_lr"),
                     lambda field: prefix + field)
    choices = {"arch_algo": ("grad", "reinforce"), "weight_mode": ("binary", "full"),
               "derive": ("target", "argmax"), "zero_pairs": ("gate", "loss")}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise UsageError(f"{prefix}{name}={getattr(config, name)!r}: use one of "
                             f"{', '.join(allowed)}")
    _check_seed_candidate(config.seed_candidate, prefix, candidates)
    if config.search_weight_lr > 0 and config.warmup_epochs == 0:
        raise UsageError(f"{prefix}search_weight_lr={config.search_weight_lr} restarts the "
                         f"weights' cosine where the warm-up ends, and {prefix}warmup_epochs=0 "
                         f"has none; set {prefix}weight_lr instead")
    if not 0 <= config.skip_rate < 1:
        raise UsageError(f"{prefix}skip_rate={config.skip_rate} must be at least 0 and below 1")
    if not 0 <= config.seed_epochs <= config.warmup_epochs:
        raise UsageError(f"seed_epochs={config.seed_epochs} must be between 0 and "
                         f"{prefix}warmup_epochs={config.warmup_epochs}")
    if config.seed_epochs and config.weight_mode != "binary":
        raise UsageError("seed_epochs needs weight_mode='binary' (the full mode trains every "
                         "path at once)")
    if not config.seed_epochs and config.seed_candidate != "smallest":
        # without a seed phase nothing is grown or cropped: the setting would be ignored
        phase = "--seed_fraction above 0" if prefix else "seed_epochs above 0"
        mode = f", {prefix}weight_mode=binary" if config.weight_mode != "binary" else ""
        raise UsageError(f"{prefix}seed_candidate={config.seed_candidate!r} needs a seed phase "
                         f"({phase} and warm-up epochs{mode})")


def _check_seed_candidate(seed_candidate: str, prefix: str = "",
                          candidates: Optional[Sequence[str]] = None) -> None:
    """A UsageError unless `seed_candidate` is "smallest", "widest", "largest" or an op that can
    seed (one of `candidates` when given: the rule is growth.seed_index's, which picks the
    seed)."""
    from proxyless_tf import growth
    if candidates is not None:
        try:
            growth.seed_index(candidates, seed_candidate)
        except ValueError as error:
            raise UsageError(f"{prefix}{error}") from None
        except UsageError:
            pass  # a bad op among the candidates: the space's own check names it
        return
    if seed_candidate in growth.SEED_CANDIDATES:
        return
    try:
        seeds = parse_op(seed_candidate).seeds
    except UsageError:
        seeds = False
    if not seeds:
        raise UsageError(f"{prefix}seed_candidate={seed_candidate!r}: use "
                         f"{', '.join(growth.SEED_CANDIDATES)} or an MBConv op")


def make_search(space: search_space.SearchSpace, splits: "Splits", config: "SearchConfig",
                output_dir: str, objective: Optional["LatencyObjective"] = None, *,
                arch_init_std: float = 1e-3, reinforce: Optional[Callable] = None,
                verbose: int = 1,
                strategy=None) -> "BilevelSearch":
    """The BilevelSearch of `space` on `splits`, ready to `run()` (what `search` and the
    command run). `objective`: the latency term (`latency_objective`) or None (accuracy
    only). `reinforce` (for arch_algo="reinforce"): a callable (supernet, objective,
    evaluate) -> proxyless_tf.reinforce.Reinforce. `strategy`: a tf.distribute strategy
    (default: one device); the supernet is built in its scope. Does not seed anything."""
    import tensorflow as tf

    from proxyless_tf.search_loop import BilevelSearch
    from proxyless_tf.supernet import Supernet
    check_search_config(config, candidates=space.candidates)  # also for a hand-made config
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():  # the supernet's and REINFORCE's variables are mirrored
        supernet = Supernet(space, alpha_init_std=arch_init_std)
        make_reinforce = None
        if config.arch_algo == "reinforce":
            make_reinforce = lambda evaluate: reinforce(supernet, objective, evaluate)  # noqa: E731
        return BilevelSearch(supernet, splits, config, output_dir, objective, make_reinforce,
                             verbose, strategy=strategy)


@dataclasses.dataclass
class SearchResult:
    """What `search` found. `arch`: the derived architecture (also OUTPUT_DIR/arch.json);
    `history`: one record per epoch (losses, accuracies, alpha entropy, E[LAT], probabilities;
    history.jsonl); `results`: the supernet's last-epoch training accuracy next to the derived
    network's test accuracy with the supernet's weights (results.json); `search`: the
    BilevelSearch (its supernet is `search.net`)."""

    arch: architecture.Architecture
    history: list
    results: Optional[dict]
    output_dir: str
    search: "BilevelSearch"

    @property
    def derived_model(self) -> "keras.Model":
        """The derived network with the supernet's weights, batch norm re-estimated."""
        return self.search.derived_model

    @property
    def latency_table(self) -> Optional["LatencyTable"]:
        """The table the search used (refitted to this machine by the check), or None."""
        objective = self.search.objective
        return objective.table if objective is not None else None

    @property
    def target_ms(self) -> Optional[float]:
        objective = self.search.objective
        return objective.target_ms if objective is not None else None


def search(space: search_space.SearchSpace, splits: "Splits",
           config: Optional["SearchConfig"] = None, *, output_dir: str,
           latency_table: Optional[Table] = None, target_ms: Optional[float] = None,
           target_ratio: Optional[float] = None, target_reference: str = "mobilenet_v2",
           latency_loss: str = "mul_log", latency_check: bool = True,
           latency_options: Optional[dict] = None, arch_init_std: float = 1e-3,
           reinforce: Optional[dict] = None, deterministic: bool = False, verbose: int = 1,
           strategy=None, **knobs: Any) -> SearchResult:
    """Runs the ProxylessNAS search of `space` on `splits` into `output_dir` and returns its
    SearchResult. Rerunning it with the same `output_dir` resumes from the last epoch's
    checkpoint (a finished search returns at once).

    `config` and `knobs`: the SearchConfig (see `search_config`; e.g. epochs=7,
    warmup_epochs=4, arch_lr=0.1, seed=0). `latency_table` (a path or LatencyTable; None: an
    accuracy-only search) with `target_ms` or `target_ratio`, `target_reference`,
    `latency_loss` and `latency_check`: as in `latency_objective`, which `latency_options`
    (a dict of its other keywords) reaches too. `reinforce`: keywords of
    proxyless_tf.reinforce.Reinforce (samples, reward, w, beta, latency_source, ...) for
    arch_algo="reinforce". `deterministic`: TensorFlow's op determinism from here on (the same
    call twice gives the same arch.json). The space takes the dataset's number of classes."""
    config = search_config(config, **knobs)
    if space.num_classes != splits.num_classes:
        space = dataclasses.replace(space, num_classes=splits.num_classes)
    if not space.searchable_positions():
        raise UsageError("the space has one candidate in every block: nothing to search; "
                         "retrain that network with api.retrain")
    if latency_table is None and (target_ms is not None or target_ratio is not None):
        raise UsageError("target_ms/target_ratio need a latency_table")
    io_utils.ensure_writable_dir(output_dir, "output_dir")
    reproducible.seed_everything(config.seed, deterministic)
    objective = None
    if latency_table is not None:
        objective = latency_objective(
            space, latency_table, target_ms=target_ms, target_ratio=target_ratio,
            target_reference=target_reference, latency_loss=latency_loss,
            latency_check=latency_check, verbose=verbose, **(latency_options or {}))
    make_reinforce = None
    if config.arch_algo == "reinforce":
        from proxyless_tf.reinforce import Reinforce
        make_reinforce = lambda net, objective, evaluate: Reinforce(  # noqa: E731
            net, objective, **{"lr": config.arch_lr, "beta1": config.arch_beta1,
                               "beta2": config.arch_beta2, "seed": config.seed,
                               **(reinforce or {}), "evaluate": evaluate})
    found = make_search(space, splits, config, output_dir, objective,
                        arch_init_std=arch_init_std, reinforce=make_reinforce, verbose=verbose,
                        strategy=strategy)
    arch = found.run()
    return SearchResult(arch, found.history(), found.results, output_dir, found)


# --- retraining and export ----------------------------------------------------------------------
class Retrained(NamedTuple):
    """What `retrain` returns: the trained Keras model and its results (results.json: test
    accuracy and loss, parameters, the settings)."""

    model: "keras.Model"
    results: dict


def retrain(arch: Arch, splits: "Splits", *, output_dir: str, epochs: int = 300,
            lr: float = 0.05, warmup_epochs: int = 0, steps_per_epoch: int = 0,
            momentum: float = 0.9, weight_decay: float = 4e-5, label_smoothing: float = 0.1,
            dropout: Optional[float] = None, seed: int = 0, deterministic: bool = False,
            verbose: int = 1, space: Optional[search_space.SearchSpace] = None,
            dataset: Optional[str] = None, strategy=None) -> Retrained:
    """Trains `arch` (an Architecture, an arch JSON file, or a name resolved in `space`) from
    scratch on `splits` with the paper's recipe, as `python -m proxyless_tf.train` does: SGD
    Nesterov, cosine learning rate after `warmup_epochs` of linear warm-up, label smoothing,
    L2 on the kernels, `dropout` before the classifier (None: the arch's). Writes
    `output_dir` (checkpoints: rerunning resumes; model.keras, results.json, history.csv,
    tensorboard/). The batch size is the pipelines'. Returns (model, results)."""
    from proxyless_tf import train as train_lib
    arch = architecture_of(arch, space)
    if dropout is not None:
        arch = dataclasses.replace(arch, dropout=dropout)
    size = splits.train.element_spec[0].shape
    if arch.num_classes != splits.num_classes or (size[1] and size[1] != arch.input_size):
        raise UsageError(f"{arch.name} takes {arch.input_size}x{arch.input_size} images of "
                         f"{arch.num_classes} classes, the data has {size[1]}x{size[2]} "
                         f"images of {splits.num_classes}")
    config = train_lib.TrainConfig(
        epochs=epochs, batch_size=int(size[0] or 1), warmup_epochs=warmup_epochs,
        steps_per_epoch=steps_per_epoch, lr=lr, momentum=momentum, weight_decay=weight_decay,
        label_smoothing=label_smoothing, seed=seed, deterministic=deterministic,
        verbose=verbose)
    train_lib.check_config(config, arch.dropout)
    io_utils.ensure_writable_dir(output_dir, "output_dir")
    model, results = train_lib.train(arch, splits, output_dir, config, dataset=dataset,
                                     strategy=strategy)
    return Retrained(model, results)


def export_derived(search: "BilevelSearch", arch: architecture.Architecture, output: str,
                   settings=None, dataset: Optional[str] = None) -> dict:
    """The derived network with the supernet's weights (not retrained) as `output` plus its
    report, its measured latency next to the search's own (refitted) table and target."""
    import export
    settings = settings or export.ExportSettings()
    if search.objective is not None:
        settings = dataclasses.replace(  # the target is of the table's format
            settings, latency_table=search.objective.table.source,
            target_ms=search.objective.target_ms)
    return export.export_model(search.derived_model, output, settings, splits=search.splits,
                               arch=arch, source="search (supernet weights, batch norm "
                               "re-estimated)", weights="supernet", dataset=dataset,
                               search=search.results)


def export_tflite(model: Union["keras.Model", SearchResult], output: str, *,
                  splits: Optional["Splits"] = None, arch: Optional[Arch] = None,
                  latency_table: Optional[Table] = None, target_ms: Optional[float] = None,
                  dataset: Optional[str] = None, settings=None, **options: Any) -> dict:
    """Converts `model` to the TFLite file `output` and writes its validation report next to
    it (OUTPUT.report.json and .report.md): size, operators, Keras-vs-TFLite logits and
    accuracy on `splits`' test images, LiteRT latency (median, p90), and with `latency_table`
    and `arch` the table's prediction (with `target_ms`, how far off). Returns the report
    (`report["tflite"]` is the path, `report["latency"]["median_ms"]` the latency).

    `model`: a Keras model (`retrain`'s), or a SearchResult: its derived network with the
    supernet's weights, reported against the search's table and target. `options`:
    export.ExportSettings fields, e.g. quantize="int8" (or "float16", "dynamic"),
    qat_epochs=N, latency_runs=50, report_images=10000, verbose=1."""
    import export
    settings = dataclasses.replace(settings or export.ExportSettings(), **options)
    if isinstance(model, SearchResult):
        return export_derived(model.search, model.arch, output, settings, dataset)
    if splits is None:
        raise UsageError("export_tflite needs splits= (its test images validate the file, "
                         "its held-out images calibrate int8)")
    if latency_table is not None:  # the target and prediction are of the table's format
        from proxyless_tf import api_latency  # `latency_table` is the argument here
        table = api_latency.latency_table(latency_table)
        settings = dataclasses.replace(settings, latency_table=table.source)
    if target_ms is not None:
        settings = dataclasses.replace(settings, target_ms=target_ms)
    arch = architecture_of(arch) if arch is not None else None
    return export.export_model(model, output, settings, splits=splits, arch=arch,
                               source="keras model", weights="trained", dataset=dataset)
