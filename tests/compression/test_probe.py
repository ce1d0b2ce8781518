"""The capability probe: what fails on a model is left out of the search with its reason, and the
measured epoch time caps each pipeline's training to fit the evaluation timeout."""

import json

import numpy as np
import pytest
from torch import nn

from evoforge.compression.domain import CompressDomain
from evoforge.compression.operators import training_epochs
from evoforge.compression.probe import probe_capabilities, seconds_per_epoch
from evoforge.layout import RunLayout
from evoforge.machine import native_bf16
from evoforge.workload.data import splits_from_mapping
from evoforge.workload.task import Task

pytestmark = pytest.mark.usefixtures("single_thread")


class ReadsItsWeight(nn.Module):
    """Reads a layer's ``.weight`` in forward, as ViT's patch embedding does: eager int8 islands break it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = self.conv(x.to(self.conv.weight.dtype))
        return self.head(h.mean((2, 3)))


def _data(n=120):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    return {"train": (rng.normal(size=(n, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, n)),
            "test": (rng.normal(size=(30, 1, 6, 6)).astype(np.float32), rng.integers(0, 4, 30))}


def test_refused_stages_leave_the_space_with_their_reason(monkeypatch):
    import torch.fx

    model = ReadsItsWeight()
    task = Task("w", model, _data(), batch_size=16)
    splits = splits_from_mapping(task.dataset, task_type="classification", seed=0, what="data")
    monkeypatch.setattr(torch.fx, "symbolic_trace", lambda m: (_ for _ in ()).throw(torch.fx.proxy.TraceError("no")))
    space, refused = probe_capabilities(model, splits, task)  # FX refused: eager islands, which break .weight
    assert {"quantize:static", "quantize:qat"} <= set(refused) and "weight" in refused["quantize:static"]
    assert space.quant_modes == ("dynamic",) + (("bf16",) if native_bf16() else ())
    assert "prune" in space.kinds and len(space.importances) == 7


@pytest.mark.parametrize("native", [True, False])
def test_bf16_is_probed_only_on_a_processor_with_bfloat16_arithmetic(monkeypatch, native):
    from evoforge import machine

    monkeypatch.setattr(machine, "native_bf16", lambda: native)
    model = ReadsItsWeight()
    task = Task("w", model, _data(), batch_size=16)
    splits = splits_from_mapping(task.dataset, task_type="classification", seed=0, what="data")
    space, refused = probe_capabilities(model, splits, task)
    assert ("bf16" in space.quant_modes) is native
    if not native:
        assert refused["quantize:bf16"].startswith("not available on this processor: it has no bfloat16 arithmetic")


def test_layers_pruning_keeps_whole_are_recorded_once():
    import warnings

    from tests.support.torch_fixtures import RegroupCNN

    model = RegroupCNN("shuffle", classes=4)
    task = Task("s", model, _data(), batch_size=16)
    splits = splits_from_mapping(task.dataset, task_type="classification", seed=0, what="data")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        space, refused = probe_capabilities(model, splits, task)
    assert refused["prune:layers"].startswith("pruning keeps the channels of ['mid.0']: removing some of their dead")
    assert len(space.importances) == 7  # every importance still prunes the other layers
    assert not [w for w in shown if "mid.0" in str(w.message)]  # recorded, not shown


def test_epoch_time_scales_with_the_train_split(monkeypatch):
    import time

    import evoforge.workload.training as training

    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 256), nn.ReLU(), nn.Linear(256, 4))
    task = Task("m", model, _data(), batch_size=16)
    small = splits_from_mapping(_data(200), task_type="classification", seed=0, what="data")
    large = splits_from_mapping(_data(4000), task_type="classification", seed=0, what="data")
    real = seconds_per_epoch(model, small, task), seconds_per_epoch(model, large, task)
    assert 0 < real[0] < real[1]  # about 20x apart: timing noise cannot flip them

    clock = [0.0]  # a machine where a training example costs 1 ms and an inference one a third of that

    def timed_train(model, splits, *args, **kwargs):  # type: ignore[no-untyped-def]
        clock[0] += 1e-3 * (len(splits.train) + len(splits.val) / 3)

    monkeypatch.setattr(training, "train", timed_train)
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    for splits in (small, large):
        expected = 1e-3 * (len(splits.train) + len(splits.val) / 3)
        assert seconds_per_epoch(model, splits, task) == pytest.approx(expected)


def test_a_timeout_caps_each_pipelines_training(tmp_path, monkeypatch):
    import evoforge.compression.probe as probe

    monkeypatch.setattr(probe, "seconds_per_epoch", lambda *a, **k: 30.0)  # a model whose epoch takes 30 s
    task = Task("m", nn.Sequential(nn.Flatten(), nn.Linear(36, 4)), _data(), batch_size=16)
    domain = CompressDomain(task, timeout_s=300.0)
    domain.attach(RunLayout(tmp_path))
    domain.prepare()
    record = json.loads((tmp_path / "baseline" / "baseline.json").read_text())
    assert record["epoch_seconds"] == 30.0 and record["space"]["max_epochs"] == 6.0  # 0.6 x 300 s / 30 s
    pop = domain.initial_population(np.random.default_rng(0), 12)
    assert all(training_epochs(g) <= 6 for g in pop)
    rebuilt = CompressDomain(**domain.config())
    assert rebuilt.space.max_epochs == 6.0  # resume draws from the same space
