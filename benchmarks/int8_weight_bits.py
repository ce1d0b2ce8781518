"""int8 with 8-bit and 7-bit weights on this processor: test quality and latency of trained models.

x86 processors without an 8-bit dot-product instruction (VNNI) multiply uint8 activations by int8
weights with an instruction whose 16-bit pair sums saturate, and the int8 kernels of ONNX Runtime
and OpenVINO use it; compress then quantizes weights to 7 bits (`evoforge.machine.int8_products_saturate`,
and the run setting ``int8_weight_bits``).
For each task this script trains (or loads from ``--root``) its baseline, exports it in fp32 and
in each int8 mode with both weight widths (the rule forced either way), and reports test quality
and the latency at batch ``--batch`` on one thread, each int8 artifact timed interleaved against
the fp32 file in the same runtime.

    python benchmarks/int8_weight_bits.py [--tasks digits-cnn,bert-tokens] [--root runs/int8-weight-bits] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import _compress_common  # noqa: F401  (installs the torchvision shim)

from evoforge import machine
from evoforge.compression.domain import calibration_batches
from evoforge.compression.measure import measure_latency
from evoforge.runtimes import QuantSettings
from evoforge.runtimes.base import installed_runtimes
from evoforge.workload import task as tasks
from evoforge.workload.inputs import ExportedModel, to_tensors

MODES = {"onnxruntime": ("static", "dynamic"), "openvino": ("static",)}


def measure(name: str, root: Path, batch: int) -> list[dict[str, Any]]:
    """One row per runtime and mode (fp32, and each int8 mode at 8 and 7 weight bits) of task
    ``name``'s trained baseline (cached under ``root``), printed as it is measured."""
    task = tasks.BUILTIN_TASKS[name]
    splits = tasks.load_splits(task)
    model = tasks.baseline_model(task, splits, root / name)
    spec = splits.input_spec
    example = tasks.example_input(splits, batch)
    inputs = spec.flatten(to_tensors(splits.test.take(batch)[0]))
    calibration = calibration_batches(splits, task.batch_size)
    metric = tasks.metric_of(task).name
    rows = []
    runtimes = [r for r in installed_runtimes() if r.name in MODES]
    with tempfile.TemporaryDirectory(prefix="evoforge-int8-bits-") as tmp:
        for runtime in runtimes:
            fp32_path = runtime.export(model, example, Path(tmp) / f"{runtime.name}-fp32.onnx")
            fp32 = runtime.load(fp32_path)
            base = tasks.quality(task, ExportedModel(fp32, spec), splits.test)[metric]
            rows.append({"task": name, "runtime": runtime.name, "mode": "fp32", "weight_bits": 32, metric: base})
            for mode in MODES[runtime.name]:
                for bits in (8, 7):
                    path = runtime.export(model, example, Path(tmp) / f"{runtime.name}-{mode}-{bits}.onnx",
                                          quant=QuantSettings(mode, True, calibration, weight_bits=bits))
                    loaded = runtime.load(path)
                    quality = tasks.quality(task, ExportedModel(loaded, spec), splits.test)[metric]
                    timing = measure_latency(runtime.load(path, threads=1), runtime.load(fp32_path, threads=1), inputs,
                                             threads=1).to_dict()
                    rows.append({"task": name, "runtime": runtime.name, "mode": mode, "weight_bits": bits, metric: quality,
                                 "drop_pt": 100 * (base - quality), "latency_ratio_batch": timing["latency_ratio_batch"],
                                 "latency_batch_ms": timing["latency_batch_ms"],
                                 "fp32_batch_ms": timing["baseline_latency_batch_ms"]})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits-cnn,bert-tokens")
    parser.add_argument("--root", default="runs/int8-weight-bits", help="where trained baselines are cached")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rule = machine.int8_products_saturate()
    print(f"machine: {machine.machine_name()}; int8 products saturate here: {rule} (compress uses {7 if rule else 8}-bit weights)")
    rows = [row for name in args.tasks.split(",") for row in measure(name.strip(), Path(args.root), args.batch)]
    print("\n| task | runtime | mode | weight bits | test quality | drop pt | latency vs fp32 (batch) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        quality = next(v for k, v in r.items() if k not in ("task", "runtime", "mode", "weight_bits") and isinstance(v, float))
        drop = f"{r['drop_pt']:.2f}" if "drop_pt" in r else "-"
        ratio = f"{r['latency_ratio_batch']:.3f}" if "latency_ratio_batch" in r else "1"
        print(f"| {r['task']} | {r['runtime']} | {r['mode']} | {r['weight_bits']} | {quality:.4f} | {drop} | {ratio} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine.machine_name(), "saturates": rule, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
