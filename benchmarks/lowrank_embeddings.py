"""Low-rank with and without factorizing the embedding tables, on a trained transformer.

The ``lowrank`` stage factorizes embedding tables too (a narrow table and a projection, as
ALBERT's). For each energy this script applies the stage (``--reg-epochs`` with Hoyer and
orthogonality losses, then ``--epochs`` of fine-tuning) to the task's trained baseline twice, once
with embedding tables left dense (the stage before the change) and once factorized, and reports
the parameters, the size of the ONNX Runtime file in fp32 and in static int8 against the
baseline's fp32 file, and test quality of both files.

    python benchmarks/lowrank_embeddings.py [--task bert-tokens] [--energies 0.9,0.95,0.98]
        [--reg-epochs 2] [--epochs 3] [--root runs/lowrank-embeddings] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _compress_common  # noqa: F401  (installs the torchvision shim)
import torch
from torch import nn

from evoforge import machine
from evoforge.compression.domain import calibration_batches
from evoforge.compression.genome import Stage
from evoforge.compression.measure import parameter_count
from evoforge.compression.stages import StageContext, apply_stage, protected_layers
from evoforge.compression.stages import lowrank as lowrank_module
from evoforge.runtimes import QuantSettings, get_runtime
from evoforge.workload import task as tasks
from evoforge.workload.inputs import ExportedModel


@contextlib.contextmanager
def embeddings_left_dense() -> Iterator[None]:
    """The stage as it was before embedding tables were factorized."""
    kinds = lowrank_module._FACTORIZABLE
    lowrank_module._FACTORIZABLE = tuple(k for k in kinds if k is not nn.Embedding)  # type: ignore[assignment]
    try:
        yield
    finally:
        lowrank_module._FACTORIZABLE = kinds  # type: ignore[assignment]


def measure(name: str, root: Path, energies: list[float], reg_epochs: int, epochs: int) -> dict[str, Any]:
    """The baseline's row and one row per energy and embedding setting, printed as measured."""
    task = tasks.BUILTIN_TASKS[name]
    splits = tasks.load_splits(task)
    baseline = tasks.baseline_model(task, splits, root / name).eval()
    example = tasks.example_input(splits, 1)
    calibration = calibration_batches(splits, task.batch_size)
    metric = tasks.metric_of(task).name
    runtime = get_runtime("onnxruntime")
    ctx = StageContext(data=splits, training=task.training, example_input=example, seed=1,
                       protected=protected_layers(baseline, example), batch_size=task.batch_size)

    def files(model: nn.Module, folder: Path) -> dict[str, Any]:
        row: dict[str, Any] = {"params": parameter_count(model)}
        for mode in ("fp32", "static"):
            quant = None if mode == "fp32" else QuantSettings("static", True, calibration)
            path = Path(runtime.export(model.eval(), tasks.example_input(splits, 8), folder / f"{mode}.onnx", quant=quant))
            row[f"{mode}_bytes"] = path.stat().st_size
            row[f"{mode}_{metric}"] = tasks.quality(task, ExportedModel(runtime.load(path), splits.input_spec), splits.test)[metric]
        return row

    with tempfile.TemporaryDirectory(prefix="evoforge-lowrank-emb-") as tmp:
        base = files(baseline, Path(tmp))
        print(json.dumps({"baseline": base}), flush=True)
        rows = []
        for energy in energies:
            for factorized in (False, True):
                stage = Stage.make("lowrank", energy=energy, reg_epochs=reg_epochs, epochs=epochs)
                started = time.perf_counter()
                with torch.random.fork_rng(), (contextlib.nullcontext() if factorized else embeddings_left_dense()):
                    torch.manual_seed(1)
                    model = apply_stage(copy.deepcopy(baseline), stage, ctx)
                folder = Path(tmp) / f"{energy}-{factorized}"
                folder.mkdir()
                row = {"energy": energy, "embeddings": "factorized" if factorized else "dense",
                       "stage_s": round(time.perf_counter() - started, 1), **files(model, folder)}
                row["size_ratio_fp32"] = row["fp32_bytes"] / base["fp32_bytes"]
                row["size_ratio_int8"] = row["static_bytes"] / base["fp32_bytes"]
                row["drop_pt_int8"] = 100 * (base[f"fp32_{metric}"] - row[f"static_{metric}"])
                rows.append(row)
                print(json.dumps(row), flush=True)
    return {"task": name, "metric": metric, "baseline": base, "rows": rows, "reg_epochs": reg_epochs, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="bert-tokens")
    parser.add_argument("--energies", default="0.9,0.95,0.98")
    parser.add_argument("--reg-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--root", default="runs/lowrank-embeddings", help="where trained baselines are cached")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    energies = [float(e) for e in args.energies.split(",")]
    result = measure(args.task, Path(args.root), energies, args.reg_epochs, args.epochs)
    metric, base = result["metric"], result["baseline"]
    print(f"\nmachine: {machine.machine_name()}; {args.task}, baseline test {metric} {base[f'fp32_{metric}']:.4f} (fp32), "
          f"{base[f'static_{metric}']:.4f} (static int8, size {base['static_bytes'] / base['fp32_bytes']:.3f})")
    print("\n| energy | embeddings | params | size fp32 | size int8 | test fp32 | test int8 | drop pt (int8) | stage s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {r['energy']} | {r['embeddings']} | {r['params']:,} | {r['size_ratio_fp32']:.3f} | {r['size_ratio_int8']:.3f} | "
              f"{r[f'fp32_{metric}']:.4f} | {r[f'static_{metric}']:.4f} | {r['drop_pt_int8']:.2f} | {r['stage_s']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine.machine_name(), **result}, indent=2))


if __name__ == "__main__":
    main()
