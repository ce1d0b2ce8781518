"""Train torchvision's ResNet-50 (ImageNet layout, 10 classes) on ``img32`` for seed check 3 of
`evolve_paper.py`: the weights a user would bring to ``evoforge evolve``.

Needs only torch, torchvision, numpy and scikit-learn (for the bundled digits behind ``img32``), so it
also runs on a GPU machine without evoforge's other dependencies (``PYTHONPATH=src``). On 2 CPU cores
an epoch takes about 30 s (40 epochs: 29.5 minutes, test accuracy 84.9%); on an H200 80 epochs take
64 seconds (91.6%).
The recipe is AdamW (lr 1e-3, weight decay 0.05, one-cycle schedule, batch 256, random shifts of up
to 4 pixels); SGD at lr 0.1 diverged.

    python benchmarks/train_resnet50_img32.py [--out runs/evolve-paper/resnet50-img32.pt] [--epochs 80] [--force]

Writes ``--out`` (a float32 state dict; where `evolve_paper.py` looks by default) and ``--out``
with ``.json`` (accuracies, seconds, the data's sha256). An existing ``--out`` is kept unless
``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def install_torchvision_shim() -> None:
    """With a CPU torch (these machines), torchvision is a CUDA build that needs the test suite's
    operator shim to import; a GPU machine's matched pair needs nothing."""
    import torch

    if torch.version.cuda is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support" / "torchvision_shim"))
        import sitecustomize  # noqa: F401  (the shim's import hook)


def img32_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The ``img32`` train, val and test splits (`evoforge.workload.datasets`) as arrays."""
    from evoforge.workload.datasets import load_dataset

    splits = load_dataset("img32")
    return {name: (splits.split(name).x, splits.split(name).y) for name in ("train", "val", "test")}


def accuracy(model: Any, x: Any, y: Any, batch: int = 500) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


def train(splits: dict[str, tuple[np.ndarray, np.ndarray]], *, epochs: int, device: str,
          seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A ResNet-50 trained by the recipe above: the model (on the CPU, float32, eval mode) and
    its record (seconds, validation accuracy)."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet50(num_classes=10).to(device).to(memory_format=torch.channels_last)
    xt, yt = (torch.as_tensor(a).to(device) for a in splits["train"])
    steps = epochs * ((len(xt) + 255) // 256)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.15)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen).to(device)
        for i in range(0, len(xt), 256):
            idx = order[i:i + 256]
            shift = torch.randint(-4, 5, (2,), generator=gen).tolist()
            xb = torch.roll(torch.nn.functional.pad(xt[idx], (4, 4, 4, 4)), shifts=shift, dims=(2, 3))[..., 4:36, 4:36]
            with autocast:
                loss = torch.nn.functional.cross_entropy(model(xb.contiguous(memory_format=torch.channels_last)), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    seconds = time.perf_counter() - start
    model = model.float().cpu().to(memory_format=torch.contiguous_format).eval()
    record = {"epochs": epochs, "device": device, "train_s": seconds,
              "val_accuracy": accuracy(model, torch.as_tensor(splits["val"][0]), torch.as_tensor(splits["val"][1]))}
    return model, record


def train_and_save(out: Path, *, epochs: int = 80, device: str | None = None,
                   splits: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """Train (`train`), score the test split, write ``out`` and ``out`` with ``.json``; the record."""
    import torch

    install_torchvision_shim()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    splits = splits or img32_splits()
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for pair in splits.values() for a in pair)).hexdigest()
    model, record = train(splits, epochs=epochs, device=device)
    record = {**record, "test_accuracy": accuracy(model, torch.as_tensor(splits["test"][0]), torch.as_tensor(splits["test"][1])),
              "data_sha256": digest, "torch": torch.__version__}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/evolve-paper/resnet50-img32.pt")
    parser.add_argument("--force", action="store_true", help="train again when --out exists")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--device", default=None, help="cuda when there is one, else cpu")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists; keeping it (--force trains again)")
        return
    print(json.dumps(train_and_save(out, epochs=args.epochs, device=args.device)), flush=True)


if __name__ == "__main__":
    main()
