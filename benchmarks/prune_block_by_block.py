"""What pruning block by block buys on the models torch-pruning cannot follow as a whole.

ShuffleNet's channel shuffle and Swin's window partition defeat torch-pruning's dependency graph
over the whole model, so the prune stage prunes them block by block (each branch's inner channels,
each MLP's hidden layer; docs/your-model.md). Per architecture (torchvision, random weights, 10
classes, 3x32x32 inputs), the prune stage at each ``--ratios`` x ``--round-to`` (L1 importance,
uniform allocation, no fine-tuning), then the fp32 model and every pruned one exported to ONNX and
timed in ONNX Runtime (one thread, batch 32) in interleaved rounds: the parameter counts and the
median latency over the fp32 model's. Random weights: this measures structure, not accuracy.

    python benchmarks/prune_block_by_block.py [--architectures shufflenet_v2_x1_0,swin_t] [--ratios 0.3,0.5]
                                              [--round-to 1,8] [--rounds 15] [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _compress_common import finished_run  # noqa: F401  (installs the torchvision shim)

DEFAULT_ARCHITECTURES = ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "swin_t")
BATCH = 32


def _context() -> Any:
    """A prune stage context on generated colour images (the pruning reads only their shapes here)."""
    from evoforge.compression.stages import StageContext
    from evoforge.workload.data import splits_from_mapping
    from evoforge.workload.recipe import TrainingSettings
    from evoforge.workload.task import example_input

    rng = np.random.default_rng(0)
    data = {f"{axis}_{split}": (rng.normal(size=(64, 3, 32, 32)).astype(np.float32) if axis == "x" else rng.integers(0, 10, 64))
            for split in ("train", "test") for axis in "xy"}
    splits = splits_from_mapping(data, task_type="classification", seed=0, what="generated images")
    return StageContext(data=splits, training=TrainingSettings(), example_input=example_input(splits), seed=0)


def _session(model: Any, x: np.ndarray) -> Any:
    import onnxruntime as ort
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.from_numpy(x),), buffer, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def measure(name: str, ratios: list[float], round_tos: list[int], rounds: int) -> list[dict[str, Any]]:
    """One row per model (fp32 first): ratio, round_to, parameters, median ms, latency ratio."""
    import torch
    import torchvision

    from evoforge.compression.genome import Stage
    from evoforge.compression.stages import apply_stage

    ctx = _context()

    def build() -> Any:
        torch.manual_seed(0)
        return getattr(torchvision.models, name)(num_classes=10).eval()

    models: dict[tuple[float, int], Any] = {(0.0, 1): build()}
    for ratio in ratios:
        for round_to in round_tos:
            stage = Stage.make("prune", importance="l1", ratio=ratio, steps=1, allocation="uniform", round_to=round_to, epochs=0)
            models[(ratio, round_to)] = apply_stage(build(), stage, ctx)
    x = np.random.default_rng(1).standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    sessions = {key: _session(model, x) for key, model in models.items()}
    times: dict[tuple[float, int], list[float]] = {key: [] for key in sessions}
    for _ in range(rounds):
        for key, session in sessions.items():
            feed = {session.get_inputs()[0].name: x}
            start = time.perf_counter()
            session.run(None, feed)
            times[key].append(time.perf_counter() - start)
    base = statistics.median(times[(0.0, 1)])
    return [{"architecture": name, "ratio": ratio, "round_to": round_to,
             "parameters": sum(p.numel() for p in models[(ratio, round_to)].parameters()),
             "median_ms": 1e3 * statistics.median(times[(ratio, round_to)]),
             "latency_ratio": statistics.median(times[(ratio, round_to)]) / base} for ratio, round_to in models]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", default=",".join(DEFAULT_ARCHITECTURES), help="torchvision model names")
    parser.add_argument("--ratios", default="0.3,0.5")
    parser.add_argument("--round-to", default="1,8", help="channel counts rounded to these multiples")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torchvision

    names = [n for n in args.architectures.split(",") if n]
    unknown = [n for n in names if not callable(getattr(torchvision.models, n, None))]
    if unknown:
        raise SystemExit(f"unknown torchvision models {unknown}; for example: {', '.join(DEFAULT_ARCHITECTURES)}")
    rows = []
    print(f"{'architecture':<20} {'ratio':>5} {'round_to':>8} {'parameters':>11} {'ms':>8} {'latency ratio':>13}")
    for name in names:
        for row in measure(name, [float(r) for r in args.ratios.split(",")], [int(r) for r in args.round_to.split(",")], args.rounds):
            rows.append(row)
            print(f"{name:<20} {row['ratio']:>5} {row['round_to']:>8} {row['parameters']:>11,} {row['median_ms']:>8.1f} "
                  f"{row['latency_ratio']:>13.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
