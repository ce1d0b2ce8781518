"""The fp32 reference in each runtime, and each runtime's int8, timed interleaved in one process.

What a user deploys without evoforge is the unmodified fp32 model in the fastest runtime for it.
For each model this script exports the same weights to every registered runtime and times them
against ONNX Runtime fp32 (and torch eager against it), alternating under the host-wide
measurement lock, single-threaded as compress workers run. Each runtime's int8 modes that export
at quantization time (ONNX Runtime's, Inductor's torchao ones; QAT deploys static's graph) are
timed the same way, and so is ``bf16`` where a runtime has it. Weights are random: these are
latency and size numbers only.

With ``--compress TASKS`` it then compresses each task in each of ``--runtimes`` (same seed,
budget and workers) and reports, per runtime, the fastest front member at <= 1 point test drop as a
ratio to that runtime's fp32 model and to fp32 torch eager (both timed interleaved in the run), with
its size ratio, against the target of <= 0.33 latency and >= 85% size reduction.

    python benchmarks/runtimes.py [--models digits_cnn,resnet18,bert_tokens] [--repeats 15]
    python benchmarks/runtimes.py --models none --compress digits-cnn --runtimes onnxruntime,torchscript --budget 5m
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import _compress_common  # (torchvision/transformers shim)
import torch

from evoforge.compression.measure import measure_latency
from evoforge.runtimes import RUNTIMES, QuantSettings, get_runtime
from evoforge.workload.inputs import InputSpec, ModelAdapter
from evoforge.workload.models import BUILTIN_MODELS

INPUTS = {
    "digits_cnn": lambda n: torch.randn(n, 1, 8, 8),
    "resnet18": lambda n: torch.randn(n, 3, 32, 32),
    "bert_tokens": lambda n: {"input_ids": torch.randint(0, 1000, (n, 32)), "attention_mask": torch.ones(n, 32, dtype=torch.long)},
}
BATCH = {"digits_cnn": 64, "resnet18": 32, "bert_tokens": 32}


def bench_model(name: str, repeats: int, tmp: Path) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    model = BUILTIN_MODELS[name]().eval()
    example, batch = INPUTS[name](1), INPUTS[name](BATCH[name])
    spec = InputSpec.of(example)
    positional = spec.flatten(batch)
    ort = get_runtime("onnxruntime")
    reference = ort.load(ort.export(model, example, tmp / f"{name}.onnx"), threads=1)
    contenders = {"torch eager fp32": ModelAdapter(model, spec).eval()}
    sizes = {"onnxruntime fp32": ort.size_bytes(tmp / f"{name}.onnx")}
    for runtime_name in RUNTIMES:
        if runtime_name != "onnxruntime":
            runtime = get_runtime(runtime_name)
            path = runtime.export(model, example, tmp / f"{name}-{runtime_name}-{runtime.artifact_name}")
            contenders[f"{runtime_name} fp32"] = runtime.load(path, threads=1)
            sizes[f"{runtime_name} fp32"] = runtime.size_bytes(path)
    calibration = [spec.flatten(INPUTS[name](BATCH[name])) for _ in range(4)]
    for runtime_name in RUNTIMES:
        runtime = get_runtime(runtime_name)
        for mode in runtime.quant_modes:
            if mode == "qat":  # deploys the same int8 graph as static, after training we cannot do on random weights
                continue
            int8 = mode != "bf16"
            for per_channel in (False, True) if runtime_name == "onnxruntime" and int8 else (True,):
                label = f"{runtime_name} {'int8 ' if int8 else ''}{mode}{' per-channel' if per_channel and int8 else ''}"
                path = tmp / f"{name}-{runtime_name}-{mode}-{per_channel}-{runtime.artifact_name}"
                try:
                    runtime.export(model, example, path, quant=QuantSettings(mode, per_channel, calibration))
                except Exception as exc:  # noqa: BLE001 - a runtime that cannot take a model is a finding
                    print(f"{name}: {label} failed: {exc}", file=sys.stderr)
                    continue
                contenders[label] = runtime.load(path, threads=1)
                sizes[label] = runtime.size_bytes(path)
    out: dict[str, dict[str, float]] = {"onnxruntime fp32": {"ratio_b1": 1.0, "ratio_batch": 1.0, "size_ratio": 1.0}}
    for label, module in contenders.items():
        timing = measure_latency(module, reference, positional, repeats=repeats, threads=1)
        out[label] = {
            "ratio_b1": round(timing.b1.ratio, 3),
            "ratio_batch": round(timing.batch.ratio, 3),
            "ms_batch": round(timing.batch.candidate_ms, 2),
            "ort_fp32_ms_batch": round(timing.batch.baseline_ms, 2),
        }
        if label in sizes:
            out[label]["size_ratio"] = round(sizes[label] / sizes["onnxruntime fp32"], 3)
    return out


def main() -> None:
    parser = _compress_common.benchmark_args("30m")
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--models", default="digits_cnn,resnet18,bert_tokens", help="fp32/int8 timing models, or none")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--compress", default="", help="tasks to compress in each runtime, e.g. resnet18-img32,bert-tokens")
    parser.add_argument("--runtimes", default="onnxruntime")
    args = parser.parse_args()
    results: dict[str, object] = {}
    models = [m for m in args.models.split(",") if m and m != "none"]
    with tempfile.TemporaryDirectory(prefix="evoforge-runtimes-") as tmp:
        for name in models:
            results[name] = bench_model(name, args.repeats, Path(tmp))
            print(f"\n{name} (batch {BATCH[name]}, 1 thread): latency and size / ONNX Runtime fp32")
            for label, row in results[name].items():
                size = f"{row['size_ratio']:.3f}" if "size_ratio" in row else "-"
                print(f"  {label:40s} b1 {row['ratio_b1']:6.3f}  batch {row['ratio_batch']:6.3f}  size {size}")
    if args.compress:
        results["compress"] = compress_runs(args)
    print(json.dumps(results))


TARGET = [{"name": "latency <=0.33 at <=1pt", "objective": "latency_ratio", "max_ratio": 0.33, "max_drop": 1.0},
          {"name": "size <=0.15 at <=1pt", "objective": "size_ratio", "max_ratio": 0.15, "max_drop": 1.0}]


def compress_runs(args: argparse.Namespace) -> list[dict[str, object]]:
    """Compress each task in each runtime; print the fastest member at <= 1 point test drop."""
    out = []
    prefix = args.run or "runs/bench-runtimes"
    tasks = args.compress.split(",")
    given = args.baseline_from if len(tasks) == 1 else None  # --baseline-from names one task's run
    for task in tasks:
        args.baseline_from = given
        for runtime in args.runtimes.split(","):
            args.run, args.runtime = f"{prefix}-{task}-{runtime}", runtime
            result = _compress_common.run_benchmark(task, "30m", TARGET, metric="accuracy", relative=False, args=args)
            args.baseline_from = args.run  # the task's other runtimes reuse its trained baseline
            best = result["targets"][TARGET[0]["name"]].get("best_member")
            if best:
                print(f"{task} in {runtime}: fastest at <=1pt: latency {best['latency_ratio']:.3f} of {runtime} fp32, "
                      f"{best['latency_vs_eager']:.3f} of torch eager, size {best['size_ratio']:.3f}, "
                      f"test drop {best['test_drop']:+.2f} pt: {best['pipeline']}")
            out.append(result)
    return out


if __name__ == "__main__":
    main()
