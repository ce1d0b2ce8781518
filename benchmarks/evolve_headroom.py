"""How much speed can single edits buy on a built-in program, and at what accuracy?

Measures, against the original program (interleaved medians, single-threaded `local-sync`, as
`evoforge evolve` times variants):

1. each convolution deleted, its uses rewired to its own input where the types match;
2. each convolution's output channels cut to 3/4 and 1/2 with a type-changing resize of its result
   (the following batch norm, ReLU, depthwise conv and the next conv's inputs shrink with it);
   with ``--importance``, also of its weight, keeping the largest-L2-norm channels (the same
   compute, other channels kept: the pair shows what importance buys in accuracy);
3. each block whose input and output types match (a depthwise-separable block of the same-shape
   run) deleted, its uses rewired to its input; with ``--branches``, each residual branch deleted
   with its add instead (`evoforge.mlir.mutate.branch_bypass`);
4. the input image cropped by a quarter with two type-changing resizes (every feature map shrinks);
5. the batch cut to half (half of all the work) and a trivial program with the same input and
   output (the fixed cost of a call).

Prints validation accuracy change (points) and runtime ratio for each; this bounds what the
search can find without retraining. Programs with convolutions are compiled with the im2col flags,
as `evolve`'s flag tuning picks for them.

    python benchmarks/evolve_headroom.py [--task digits-mobilenet|mobilenet-img32] [--program-dir RUN/program]
        [--importance] [--no-conv-cuts] [--branches] [--no-timing]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits-mobilenet")
    parser.add_argument("--program-dir", default=None, help="a prepared program/ folder of an evolve run of the task")
    parser.add_argument("--importance", action="store_true", help="cut weights by importance instead of results centered")
    parser.add_argument("--no-conv-cuts", action="store_true", help="only block deletions, crops and the batch cases")
    parser.add_argument("--branches", action="store_true", help="delete residual branches (joins) rather than V1 blocks")
    parser.add_argument("--no-timing", action="store_true", help="accuracy only (for a machine that is not quiet)")
    args = parser.parse_args()
    import torch

    from evoforge.layout import RunLayout
    from evoforge.mlir import irtools
    from evoforge.mlir.edits import Delete, Edit, Resize, Source
    from evoforge.mlir.flag_tuning import FLAG_SETS, has_convolution
    from evoforge.mlir.iree_runner import Worker, compile_program, evaluate_variant, measure_runtime
    from evoforge.mlir.mutate import WEIGHT_OPS, Session, branch_bypass, bypass, is_join, largest_norm_rows
    from evoforge.mlir.program import from_mlir, from_torch
    from evoforge.mlir.sources import prepare_from_task

    if args.program_dir:
        program_dir = Path(args.program_dir)
    else:
        layout = RunLayout(Path(tempfile.mkdtemp(prefix="evoforge-headroom-")))
        prepare_from_task(args.task, layout.program, layout.baseline, level="torch", batch_size=32)
        program_dir = layout.program
    program = from_mlir(program_dir / "original.mlir")
    data = np.load(program_dir / "data.npz")
    batch = program.inputs[0].shape[0]
    x, y = data["x_val"], data["y_val"]
    batches = [[x[i:i + batch]] for i in range(0, len(x) - batch + 1, batch)]
    flags = FLAG_SETS["im2col"].flags if has_convolution(program.text) else ()
    original = compile_program(program.text, input_type=program.input_type, extra_flags=flags)

    cases: list[tuple[str, list[Edit]]] = []
    with Session(program) as s:
        relus = []
        for op in irtools.walk(s.fn):
            if op.name == "torch.aten.relu":
                relus.append(op)
            if op.name != "torch.aten.conv2d" or args.no_conv_cuts:
                continue
            uid, out = irtools.uid_of(op), op.results[0]
            info = irtools.tensor_info(out.type)
            assert info is not None
            channels = info.shape[1]
            if op.operands[0].type == out.type:
                cases.append((f"delete conv {uid}", [Delete(uid, (Source(irtools.value_name(op.operands[0], s.fn)),))]))
            weight = op.operands[1].owner
            for keep in (channels * 3 // 4, channels // 2):
                cases.append((f"conv {uid} channels {channels}->{keep}", [Resize(f"{uid}#0", 1, keep, propagate=True)]))
                if args.importance and weight.name in WEIGHT_OPS and (w := s.constant(weight)) is not None:
                    name = irtools.value_name(op.operands[1], s.fn)
                    cases.append((f"conv {uid} channels {channels}->{keep} by norm",
                                  [Resize(name, 0, keep, propagate=True, keep=largest_norm_rows(w, keep))]))
        for op in irtools.walk(s.fn) if args.branches else ():
            if irtools.uid_of(op) and is_join(op):
                edit = branch_bypass(s, op)
                if edit is not None:
                    cases.append((f"delete branch ending at {irtools.uid_of(op)} ({len(edit.erased)} ops)", [edit]))
        for i, end in enumerate(relus if not args.branches else ()):  # a depthwise-separable block ends two ReLUs after its input
            if i >= 2 and relus[i - 2].results[0].type == end.results[0].type:
                edit = bypass(s, end, relus[i - 2].results[0])
                if edit is not None:
                    cases.append((f"delete block ending at {irtools.uid_of(end)} ({len(edit.erased)} ops)", [edit]))
    side = program.inputs[0].shape[2]
    crop = side * 3 // 4
    cases.append((f"input cropped to {crop}x{crop}", [Resize("arg0", 2, crop, propagate=True), Resize("arg0", 3, crop, propagate=True)]))
    cases.append(("half the batch", [Resize("arg0", 0, batch // 2, propagate=True)]))

    def accuracy(outputs: list[list[np.ndarray]]) -> float:
        pred = np.concatenate([o[0] for o in outputs]).argmax(1)
        return float((pred == y[: len(pred)]).mean())

    with Worker() as worker:
        base = evaluate_variant(program, [], batches, worker=worker, driver="local-sync", extra_flags=flags)
        assert base.outputs is not None
        base_acc = accuracy(base.outputs)
        print(f"original: validation accuracy {base_acc:.4f}")
        print(f"{'edit':<40} {'acc change (pt)':>16} {'runtime ratio':>14}")
        for name, edits in cases:
            r = evaluate_variant(program, edits, batches, worker=worker, baseline_vmfb=None if args.no_timing else original,
                                 repeats=40, driver="local-sync", extra_flags=flags)
            if r.failure is not None or r.outputs is None or (r.runtime is None and not args.no_timing):
                print(f"{name:<40} {'invalid: ' + (r.failure.kind if r.failure else '?'):>31}")
                continue
            change = 100 * (accuracy(r.outputs) - base_acc)
            ratio = f"{r.runtime.ratio:>14.3f}" if r.runtime is not None else f"{'':>14}"
            print(f"{name:<40} {change:>+16.2f} {ratio}", flush=True)
        if args.no_timing:
            return
        features = int(np.prod(program.inputs[0].shape[1:]))
        trivial = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, 10)).eval()
        tiny = from_torch(trivial, torch.as_tensor(x[:batch]))
        floor = measure_runtime(compile_program(tiny.text, input_type=tiny.input_type), original, [x[:batch]],
                                repeats=40, worker=worker, driver="local-sync")
        print(f"{'a trivial program (one linear layer)':<40} {'':>16} {floor.ratio:>14.3f}"
              f"   (original {floor.baseline_s * 1e6:.0f} us per call)")


if __name__ == "__main__":
    main()
