"""How much speed can single edits buy on the digits-mobilenet program, and at what accuracy?

Measures, against the original program (interleaved medians, single-threaded `local-sync`, as
`evoforge evolve` times variants):

1. each convolution deleted, its uses rewired to its own input where the types match;
2. each convolution's output channels cut to 3/4 and 1/2 with a type-changing resize of its result
   (the following batch norm, ReLU, depthwise conv and the next conv's inputs shrink with it);
3. the input image cropped to 6x6 with two type-changing resizes (every feature map shrinks);
4. the batch cut to half (half of all the work) and a trivial program with the same input and
   output (the fixed cost of a call).

Prints validation accuracy change (points) and runtime ratio for each; this bounds what the
search can find without retraining.

    python benchmarks/evolve_headroom.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from evoforge.layout import RunLayout
    from evoforge.mlir import irtools
    from evoforge.mlir.edits import Delete, Edit, Resize, Source
    from evoforge.mlir.iree_runner import Worker, compile_program, evaluate_variant, measure_runtime
    from evoforge.mlir.mutate import Session
    from evoforge.mlir.program import from_mlir, from_torch
    from evoforge.mlir.sources import prepare_from_task

    layout = RunLayout(Path(tempfile.mkdtemp(prefix="evoforge-headroom-")))
    prepare_from_task("digits-mobilenet", layout.program, layout.baseline, level="torch", batch_size=32)
    program = from_mlir(layout.program / "original.mlir")
    data = np.load(layout.program / "data.npz")
    batch = 32
    x, y = data["x_val"], data["y_val"]
    batches = [[x[i:i + batch]] for i in range(0, len(x), batch)]
    original = compile_program(program.text, input_type=program.input_type)

    cases: list[tuple[str, list[Edit]]] = []
    with Session(program) as s:
        for op in irtools.walk(s.fn):
            if op.name != "torch.aten.conv2d":
                continue
            uid, out = irtools.uid_of(op), op.results[0]
            info = irtools.tensor_info(out.type)
            assert info is not None
            channels = info.shape[1]
            if op.operands[0].type == out.type:
                cases.append((f"delete conv {uid}", [Delete(uid, (Source(irtools.value_name(op.operands[0], s.fn)),))]))
            for keep in (channels * 3 // 4, channels // 2):
                cases.append((f"conv {uid} channels {channels}->{keep}", [Resize(f"{uid}#0", 1, keep, propagate=True)]))
    cases.append(("input cropped to 6x6", [Resize("arg0", 2, 6, propagate=True), Resize("arg0", 3, 6, propagate=True)]))
    cases.append(("half the batch", [Resize("arg0", 0, batch // 2, propagate=True)]))

    def accuracy(outputs: list[list[np.ndarray]]) -> float:
        pred = np.concatenate([o[0] for o in outputs]).argmax(1)
        return float((pred == y[: len(pred)]).mean())

    with Worker() as worker:
        base = evaluate_variant(program, [], batches, worker=worker, driver="local-sync")
        assert base.outputs is not None
        base_acc = accuracy(base.outputs)
        print(f"original: validation accuracy {base_acc:.4f}")
        print(f"{'edit':<40} {'acc change (pt)':>16} {'runtime ratio':>14}")
        for name, edits in cases:
            r = evaluate_variant(program, edits, batches, worker=worker, baseline_vmfb=original, repeats=40, driver="local-sync")
            if r.failure is not None or r.outputs is None or r.runtime is None:
                print(f"{name:<40} {'invalid: ' + (r.failure.kind if r.failure else '?'):>31}")
                continue
            change = 100 * (accuracy(r.outputs) - base_acc)
            print(f"{name:<40} {change:>+16.2f} {r.runtime.ratio:>14.3f}")
        trivial = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
        tiny = from_torch(trivial, torch.as_tensor(x[:batch]))
        floor = measure_runtime(compile_program(tiny.text, input_type=tiny.input_type), original, [x[:batch]],
                                repeats=40, worker=worker, driver="local-sync")
        print(f"{'a trivial program (one 64x10 linear)':<40} {'':>16} {floor.ratio:>14.3f}"
              f"   (original {floor.baseline_s * 1e6:.0f} us per call)")


if __name__ == "__main__":
    main()
