"""The validation report written next to every .tflite: what is in the file, how far its logits
are from the Keras model's, its accuracy, and its latency in the LiteRT interpreter."""

import collections

import numpy as np

from proxyless_tf import io_utils, measure

FORMAT = "proxyless_tf.export_report/1"
MISS = 0.10  # a measured latency further than this from the target (or prediction) is a miss
RATIO_ROUNDS = 5  # the network and the reference of --target_ratio, timed in turn this often


def inspect(tflite_bytes):
    """Operators used (name -> count), tensor types (dtype -> count), input and output details.
    Read without the default XNNPACK delegate, which would fold operators into one DELEGATE."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_content=tflite_bytes, experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    ops = collections.Counter(op["op_name"] for op in interp._get_ops_details())
    types = collections.Counter(np.dtype(t["dtype"]).name for t in interp.get_tensor_details())

    def io(detail):
        scale, zero = detail["quantization"]
        return {"shape": [int(s) for s in detail["shape"]], "dtype": np.dtype(detail["dtype"]).name,
                "scale": float(scale), "zero_point": int(zero)}

    return {"size_bytes": len(tflite_bytes), "operators": dict(sorted(ops.items())),
            "tensor_types": dict(sorted(types.items())),
            "input": io(interp.get_input_details()[0]),
            "output": io(interp.get_output_details()[0])}


class Runner:
    """One interpreter for a whole evaluation: float images in, float logits out (quantized
    input and output are converted with the tensors' scale and zero point)."""

    def __init__(self, tflite_bytes, threads=1):
        self.interp = measure.interpreter(tflite_bytes, threads)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def __call__(self, images):
        inp, out = self.inp, self.out
        results = []
        for image in images:
            x = image[None]
            if inp["dtype"] != np.float32:
                scale, zero = inp["quantization"]
                info = np.iinfo(inp["dtype"])
                x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
            self.interp.set_tensor(inp["index"], x)
            self.interp.invoke()
            y = self.interp.get_tensor(out["index"])[0]
            if out["dtype"] != np.float32:
                scale, zero = out["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            results.append(y)
        return np.stack(results)


def evaluate(keras_model, tflite_bytes, dataset, max_images=0, others=None, labelled=True):
    """Compares the TFLite model with `keras_model` on `dataset` (batched (images, labels)):
    max |logits difference|, top-1 agreement and, when `labelled`, both accuracies.
    `others` maps names to more Keras models whose accuracy is wanted too (e.g. the QAT model)."""
    runner = Runner(tflite_bytes)
    others = others or {}
    n = agree = 0
    max_diff = 0.0
    correct = collections.Counter()
    for images, labels in dataset:
        images, labels = images.numpy(), labels.numpy()
        if max_images:
            images, labels = images[:max_images - n], labels[:max_images - n]
        reference = np.asarray(keras_model(images, training=False))
        lite = runner(images)
        max_diff = max(max_diff, float(np.abs(reference - lite).max()))
        agree += int((reference.argmax(-1) == lite.argmax(-1)).sum())
        correct["keras"] += int((reference.argmax(-1) == labels).sum())
        correct["tflite"] += int((lite.argmax(-1) == labels).sum())
        for name, model in others.items():
            logits = np.asarray(model(images, training=False))
            correct[name] += int((logits.argmax(-1) == labels).sum())
        n += len(images)
        if max_images and n >= max_images:
            break
    result = {"images": n, "max_abs_logits_diff": max_diff,
              "top1_agreement": agree / max(n, 1)}
    if labelled:
        accuracy = {name: correct[name] / max(n, 1) for name in ("keras", "tflite", *others)}
        result.update({f"{name}_accuracy": value for name, value in accuracy.items()})
        result["accuracy_drop_points"] = 100.0 * (accuracy["keras"] - accuracy["tflite"])
    return result


def latency_misses(measured_ms, target_ms=None, predicted_ms=None, tolerance=MISS):
    """Plain sentences for each way the measured latency misses by more than `tolerance`: the
    target the search aimed at, and the table's prediction it steered by."""
    misses = []
    for what, value in (("the target", target_ms), ("the table's prediction", predicted_ms)):
        if value is None or not value > 0:
            continue
        off = measured_ms / value - 1.0
        if abs(off) > tolerance:
            misses.append(f"measured {measured_ms:.3f} ms is {100 * abs(off):.0f}% "
                          f"{'above' if off > 0 else 'below'} {what} ({value:.3f} ms), more than "
                          f"{100 * tolerance:.0f}%")
    return misses


def reference_ratio(tflite_bytes, settings, rounds=RATIO_ROUNDS):
    """The network's latency over its reference's (`settings.target_reference`, the network of
    `settings.target_ratio`), the two timed in turn `rounds` times (the median of the rounds'
    ratios), next to the target ratio; None without a ratio target, or for a file of another
    format than the target's (`settings.latency_quantization`; the reference, converted as the
    latency table converts it, is timed in that format). On a shared machine an absolute
    latency holds for minutes; the ratio of two networks timed together holds much longer, and
    is what a search with --target_ratio aims at."""
    if settings.target_ratio is None or settings.target_reference is None or \
            settings.quantize != settings.latency_quantization:
        return None
    from proxyless_tf.latency.meter import Meter, building_for_timing
    from proxyless_tf.quantize import convert_for_timing
    with building_for_timing():
        reference = convert_for_timing(Meter.network(settings.target_reference),
                                       settings.quantize)
    timed = [[measure.latency_ms(model, threads=settings.threads, warmup=settings.latency_warmup,
                                 runs=settings.latency_runs)["median"]
              for model in (tflite_bytes, reference)] for _ in range(rounds)]
    # rounded before the misses are judged, so that the report's misses are its ratio's
    ratio = round(float(np.median([ms / reference_ms for ms, reference_ms in timed])), 4)
    return {"reference": settings.target_reference.name, "rounds": rounds,
            "reference_ms": float(np.median([reference_ms for _, reference_ms in timed])),
            "measured_ratio": ratio, "target_ratio": settings.target_ratio,
            "misses": ratio_misses(ratio, settings.target_ratio)}


def ratio_misses(measured_ratio, target_ratio, tolerance=MISS):
    """A plain sentence when the measured ratio to the reference misses the target ratio by
    more than `tolerance` (relative), else none."""
    off = measured_ratio / target_ratio - 1.0
    if abs(off) <= tolerance:
        return []
    return [f"measured ratio to the reference {measured_ratio:.3f} is {100 * abs(off):.0f}% "
            f"{'above' if off > 0 else 'below'} the target ratio ({target_ratio:.3f}), more "
            f"than {100 * tolerance:.0f}%"]


def _ratio_rows(ratio):
    """The report's rows of the ratio to the reference, when there is one."""
    if not ratio:
        return []
    off = 100 * (ratio["measured_ratio"] / ratio["target_ratio"] - 1)
    verdict = ("; ".join(f"**MISS**: {m}" for m in ratio["misses"]) if ratio["misses"] else
               f"within {100 * MISS:.0f}% of the target ratio")
    return [("reference network", f"{ratio['reference']}: median {ratio['reference_ms']:.3f} ms "
                                  f"(timed in turn with the network, {ratio['rounds']} rounds)"),
            ("latency / reference", f"{ratio['measured_ratio']:.3f} (target ratio "
                                    f"{ratio['target_ratio']:.3f}: measured {off:+.1f}%)"),
            ("**ratio verdict**", verdict)]


def _latency_rows(lat):
    rows = [("latency (LiteRT)", f"median {lat['median_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms "
                                 f"({lat['runs']} runs, {lat['threads']} thread(s), batch 1)")]
    if lat.get("target_ms") is not None:
        off = 100 * (lat["median_ms"] / lat["target_ms"] - 1)
        rows += [("latency target", f"{lat['target_ms']:.3f} ms (measured {off:+.1f}%)")]
    elif lat.get("target_note"):
        rows += [("latency target", lat["target_note"])]
    if lat.get("predicted_ms") is not None:
        off = 100 * (lat["median_ms"] / lat["predicted_ms"] - 1)
        rows += [("predicted latency", f"{lat['predicted_ms']:.3f} ms (table {lat['table']}; "
                                       f"measured {off:+.1f}%)")]
    elif lat.get("predicted_note"):
        rows += [("predicted latency", lat["predicted_note"])]
    compared = [what for what, key in (("the target", "target_ms"),
                                       ("the prediction", "predicted_ms"))
                if lat.get(key) is not None]
    if compared:
        misses = lat.get("misses") or []
        rows += [("**latency verdict**", "; ".join(f"**MISS**: {m}" for m in misses) if misses
                  else f"within {100 * MISS:.0f}% of {' and '.join(compared)}")]
    return rows + _ratio_rows(lat.get("ratio"))


def _search_rows(search):
    """What the search that produced the network said about it (search --export_tflite)."""
    if not search:
        return []
    rows = []
    if search.get("supernet_train_acc") is not None:
        rows.append(("supernet train accuracy (sampled paths, last epoch)",
                     f"{100 * search['supernet_train_acc']:.2f}%"))
    if search.get("derived_test_acc") is not None:
        rows.append(("derived network test accuracy (supernet weights, batch norm re-estimated)",
                     f"{100 * search['derived_test_acc']:.2f}% ({search['test_images']} images)"))
    return rows


def markdown(report):
    v, lat, info = report["validation"], report["latency"], report["tflite_info"]
    rows = [
        ("file", f"`{report['tflite']}`"),
        ("model", f"`{report['source']}` ({report['weights']} weights)"),
        ("architecture", f"{report['arch']}" if report.get("arch") else "-"),
        ("parameters", f"{report['params']:,}"),
        ("quantization", report["mode"] + (f", QAT {report['qat']['epochs']} epochs"
                                           if report.get("qat") else "")),
        ("size", f"{info['size_bytes'] / 1024:.1f} KiB ({info['size_bytes']} bytes)"),
        ("input / output", f"{info['input']['dtype']} {info['input']['shape']} / "
                           f"{info['output']['dtype']} {info['output']['shape']}"),
        ("operators", ", ".join(f"{k} x{c}" for k, c in info["operators"].items())),
        ("tensor types", ", ".join(f"{k} x{c}" for k, c in info["tensor_types"].items())),
        ("images compared", f"{v['images']} ({report['dataset']} test split)"),
        ("max abs logits diff vs Keras", f"{v['max_abs_logits_diff']:.3g}"),
        ("top-1 agreement with Keras", f"{100 * v['top1_agreement']:.2f}%"),
    ]
    if "keras_accuracy" in v:
        label = "accuracy Keras / TFLite" if report["mode"] == "float32" else \
            f"accuracy Keras (float32) / TFLite {report['mode']}"
        rows += [(label,
                  f"{100 * v['keras_accuracy']:.2f}% / {100 * v['tflite_accuracy']:.2f}% "
                  f"(drop {v['accuracy_drop_points']:.2f} points)")]
        if "qat_keras_accuracy" in v:
            rows += [("accuracy QAT Keras model", f"{100 * v['qat_keras_accuracy']:.2f}%")]
    rows += _latency_rows(lat)
    rows += _search_rows(report.get("search"))
    lines = [f"# TFLite export report: {report['tflite']}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def write(report, json_path, md_path):
    io_utils.write_json(json_path, report)
    io_utils.write_text(md_path, markdown(report))
