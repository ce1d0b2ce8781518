"""Data in every form a user holds it: arrays, tensors, Datasets, DataLoaders, tuple and dict
inputs, int64 token ids, and splits carved off train."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evoforge.errors import ConfigError  # noqa: E402
from evoforge.workload.data import ArraySplit, DatasetSplit, load_npz, splits_from_mapping  # noqa: E402
from evoforge.workload.inputs import InputSpec, call_model  # noqa: E402


def _tokens(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 100, (n, 12)).astype(np.int64)
    mask = np.ones_like(ids)
    return {"input_ids": ids, "attention_mask": mask}, (ids[:, 0] % 3).astype(np.int64)


class TokenDataset(torch.utils.data.Dataset):
    """Generates items on demand and counts how many it was asked for (nothing held in memory)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.reads = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        self.reads += 1
        rng = np.random.default_rng(self.seed * 100_000 + i)
        ids = torch.as_tensor(rng.integers(1, 100, 12), dtype=torch.int64)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, int(ids[0]) % 3


def test_arrays_and_tensors_keep_int64_and_dict_inputs() -> None:
    x, y = _tokens(200)
    splits = splits_from_mapping({"train": (x, y), "test": ({k: torch.as_tensor(v) for k, v in x.items()}, torch.as_tensor(y))},
                                 task_type="classification", seed=0, what="data")
    spec = splits.input_spec
    assert spec.kind == "dict" and spec.names == ("input_ids", "attention_mask")
    assert spec.dtypes == ("int64", "int64") and spec.shapes == ((12,), (12,))
    batch, targets = next(splits.train.batches(16))
    assert batch["input_ids"].dtype == torch.int64 and targets.dtype == torch.int64 and len(targets) == 16
    assert splits.num_classes == 3


def test_only_train_and_test_carve_calib_and_val_seeded_and_stratified() -> None:
    x = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    y = np.repeat(np.arange(4), [100, 200, 300, 400]).astype(np.int64)
    data = {"train": (x, y), "test": (x[:50], y[:50])}
    a = splits_from_mapping(data, task_type="classification", seed=1, what="data")
    b = splits_from_mapping(data, task_type="classification", seed=1, what="data")
    c = splits_from_mapping(data, task_type="classification", seed=2, what="data")
    assert a.carved is not None and a.carved["stratified"] and a.carved["seed"] == 1
    assert a.carved["sizes"] == {"train": 750, "calib": 100, "val": 150}
    assert len(a.train) + len(a.calib) + len(a.val) == 1000
    np.testing.assert_array_equal(np.bincount(a.val.targets()), [15, 30, 45, 60])  # class shares kept
    assert a.carved["indices_sha256"] == b.carved["indices_sha256"] != c.carved["indices_sha256"]
    train_rows = {r.tobytes() for r in a.train.x}
    assert not any(r.tobytes() in train_rows for r in a.val.x) and not any(r.tobytes() in train_rows for r in a.calib.x)


def test_a_dataset_streams_and_a_dataloader_lends_its_dataset_and_collate() -> None:
    train, test = TokenDataset(5000), TokenDataset(300, seed=1)
    calls = []

    def collate(items):  # type: ignore[no-untyped-def]
        calls.append(len(items))
        return torch.utils.data.default_collate(items)

    splits = splits_from_mapping({"train": train, "val": TokenDataset(200, seed=2), "calib": TokenDataset(100, seed=3),
                                  "test": torch.utils.data.DataLoader(test, batch_size=7, collate_fn=collate, shuffle=True)},
                                 task_type="classification", seed=0, what="data")
    assert isinstance(splits.train, DatasetSplit) and train.reads < 200  # checking and sizing read a few items only
    reads = train.reads
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
    first = next(splits.train.batches(32, order))
    assert train.reads - reads == 32 and first[0]["input_ids"].shape == (32, 12)
    batches = list(splits.test.batches(50))
    assert [len(t) for _, t in batches] == [50] * 6 and calls[-1] == 50  # our batch size, the user's collate function
    np.testing.assert_array_equal(np.concatenate([t.numpy() for _, t in batches]), splits.test.targets())  # in order


class HuggingFaceStyleDataset:
    """Like a tokenized ``datasets.Dataset`` in torch format: no torch Dataset, items are dicts
    with the target under ``label``."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.items = TokenDataset(n, seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        inputs, target = self.items[i]
        return {**inputs, "label": torch.tensor(target)}


def test_dict_items_with_a_label_entry_as_huggingface_datasets_and_collators_give_them() -> None:
    transformers = pytest.importorskip("transformers")
    train, test = HuggingFaceStyleDataset(400), HuggingFaceStyleDataset(60, seed=1)
    listed = [test[i] for i in range(len(test))]
    # a plain non-torch dataset; a DataLoader whose collator renames label -> labels; a list of dict items
    for given in (test, torch.utils.data.DataLoader(test, batch_size=8, collate_fn=transformers.default_data_collator), listed):
        splits = splits_from_mapping({"train": train, "test": given}, task_type="classification", seed=0, what="data")
        assert splits.input_spec.names == ("input_ids", "attention_mask")  # the target is no model input
        expected = [int(test.items[i][1]) for i in range(len(test))]
        np.testing.assert_array_equal(splits.test.targets(), expected)
        batch, targets = next(splits.test.batches(16))
        assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].dtype == torch.int64 and len(targets) == 16

    class Named(HuggingFaceStyleDataset):
        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            return {**super().__getitem__(i), "sentence": f"text {i}"}

    with pytest.raises(ConfigError, match="input 'sentence' collates to list, not a tensor; remove that column"):
        splits_from_mapping({"train": Named(50), "test": Named(10)}, task_type="classification", seed=0, what="data")

    class Unlabelled(HuggingFaceStyleDataset):
        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            return self.items[i][0]

    with pytest.raises(ConfigError, match="target under exactly one of labels, label .*got keys input_ids, attention_mask"):
        splits_from_mapping({"train": Unlabelled(50), "test": Unlabelled(10)}, task_type="classification", seed=0, what="data")


def test_batches_padded_to_their_longest_item_are_refused_with_the_fix() -> None:
    def pad_to_longest(items):  # type: ignore[no-untyped-def]
        n = max(len(x["input_ids"]) for x, _ in items)
        padded = [torch.nn.functional.pad(x["input_ids"], (0, n - len(x["input_ids"]))) for x, _ in items]
        return {"input_ids": torch.stack(padded)}, torch.tensor([y for _, y in items])

    class Ragged(TokenDataset):
        def __init__(self, n: int, short_from: int) -> None:
            super().__init__(n)
            self.short_from = short_from

        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            inputs, target = super().__getitem__(i)
            return {"input_ids": inputs["input_ids"][: 4 + i % 8 if i >= self.short_from else 12]}, target

    def loader(dataset):  # type: ignore[no-untyped-def]
        return torch.utils.data.DataLoader(dataset, collate_fn=pad_to_longest)

    ragged_start = r"train inputs change shape from batch to batch .*\(4,\).*\(11,\)\} in a batch of 64.*padding='max_length'"
    with pytest.raises(ConfigError, match=ragged_start):
        splits_from_mapping({"train": loader(Ragged(200, 0)), "test": loader(Ragged(50, 0))}, task_type="classification", seed=0, what="d")
    split = DatasetSplit(Ragged(300, 150), collate_fn=pad_to_longest)  # the first items agree; the end does not
    ragged_end = r"dataset inputs change shape from batch to batch \(\[\(12,\)\], then \[\(11,\)\] in a later batch"
    with pytest.raises(ConfigError, match=ragged_end):
        list(split.batches(64))


def test_tuple_inputs_call_the_model_positionally() -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=(40, 2)).astype(np.float32))
    split = ArraySplit(x, np.zeros(40, dtype=np.int64))
    batch, _ = next(split.batches(8))
    spec = InputSpec.of(batch)
    assert spec.kind == "tuple" and spec.shapes == ((3,), (2,))

    class TwoInputs(torch.nn.Module):
        def forward(self, a, b):  # type: ignore[no-untyped-def]
            return torch.cat([a, b], dim=1)

    assert call_model(TwoInputs(), batch).shape == (8, 5)


def test_npz_with_several_inputs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x, y = _tokens(100)
    arrays = {f"x_{s}.{k}": v for s in ("train", "test") for k, v in x.items()} | {"y_train": y, "y_test": y}
    np.savez(tmp_path / "tokens.npz", **arrays)
    splits = load_npz(str(tmp_path / "tokens.npz"), task_type="classification", seed=0)
    assert splits.input_spec.names == ("input_ids", "attention_mask") and splits.input_spec.dtypes == ("int64", "int64")


def test_fingerprints_follow_the_data() -> None:
    x, y = _tokens(100)
    a = splits_from_mapping({"train": (x, y), "test": (x, y)}, task_type="classification", seed=0, what="d")
    again = splits_from_mapping({"train": (x, y), "test": (x, y)}, task_type="classification", seed=0, what="d")
    y2 = y.copy()
    y2[50] = (y2[50] + 1) % 3
    changed = splits_from_mapping({"train": (x, y2), "test": (x, y)}, task_type="classification", seed=0, what="d")
    assert a.fingerprint() == again.fingerprint() != changed.fingerprint()
    assert DatasetSplit(TokenDataset(50)).fingerprint() != DatasetSplit(TokenDataset(50, seed=9)).fingerprint()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": ([[1.0]], [0])}, "lacks the test split"),
        ({"train": (np.zeros((3, 2)), np.zeros(2)), "test": (np.zeros((3, 2)), np.zeros(3))}, r"\[3\] inputs but 2 targets"),
        ({"train": "nope", "test": "nope"}, "give \\(inputs, targets\\) arrays"),
        ({"train": (np.zeros((3, 2)), np.zeros(3)), "test": (np.zeros((3, 2)), np.zeros(3)), "holdout": 1}, "unknown splits"),
        ({"train": (np.zeros((9, 2)), np.full(9, -2)), "test": (np.zeros((3, 2)), np.zeros(3))}, "non-negative integer"),
    ],
)
def test_bad_data_is_a_clear_error(data, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        splits_from_mapping(data, task_type="classification", seed=0, what="data")


def test_iterable_datasets_are_refused() -> None:
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield from ()

    with pytest.raises(ConfigError, match="IterableDataset; give a map-style Dataset"):
        splits_from_mapping({"train": Stream(), "test": Stream()}, task_type="classification", seed=0, what="data")
