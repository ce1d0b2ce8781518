"""The Python API with the objects a notebook holds: a model object with its trained weights, its
DataLoaders of int64 token ids in a dict, a class defined in __main__; workers get them without a
factory, and the run resumes in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytest.importorskip("cloudpickle")

NOTEBOOK = textwrap.dedent('''
    import sys
    import torch
    from torch import nn
    import evoforge

    class TokenModel(nn.Module):  # defined in __main__, as in a notebook
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))

        def forward(self, input_ids, attention_mask):
            h = self.embed(input_ids) * attention_mask.unsqueeze(-1)
            return self.mlp(h.sum(1) / attention_mask.sum(1, keepdim=True))

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(1, 50, (n, 10), generator=g)
            self.mask = torch.ones_like(self.ids)
            self.labels = self.ids[:, 0] % 3

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "attention_mask": self.mask[i]}, self.labels[i]

    if __name__ == "__main__":  # worker processes start by importing this script
        torch.manual_seed(0)
        model = TokenModel()
        train = torch.utils.data.DataLoader(Tokens(400, 0), batch_size=32, shuffle=True)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(5):  # the user's own training
            for x, y in train:
                opt.zero_grad()
                nn.functional.cross_entropy(model(**x), y).backward()
                opt.step()
        model.eval()
        front = evoforge.compress(model, {"train": train, "test": torch.utils.data.DataLoader(Tokens(90, 1), batch_size=32)},
                                  budget=4, pop_size=2, workers=1, run_dir=sys.argv[1], seed=1)
        print(len(front))
''')

RESUME = "import sys, evoforge; print(len(evoforge.resume(sys.argv[1], budget=6)))"


def test_a_model_object_and_dataloaders_run_and_resume_in_a_fresh_process(tmp_path):
    from evoforge.api import open_store

    (tmp_path / "notebook.py").write_text(NOTEBOOK)
    run_dir = tmp_path / "run"
    first = subprocess.run([sys.executable, str(tmp_path / "notebook.py"), str(run_dir)], capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((run_dir / "baseline" / "baseline.json").read_text())
    assert [(i["name"], i["dtype"]) for i in record["inputs"]] == [("input_ids", "int64"), ("attention_mask", "int64")]
    assert record["validation"]["accuracy"] > 0.45  # the user's weights (chance: 0.33), not retrained
    assert record["data_split"]["stratified"] and record["data_split"]["sizes"]["val"] in (59, 60, 61)  # 15% carved off train, recorded
    assert sorted(p.name for p in (run_dir / "inputs").iterdir()) == ["data.pt", "model.pt"]
    with open_store(run_dir, readonly=True) as store:
        first_evaluations = store.evaluations()
    assert len(first_evaluations) == 4 and all(e.ok for e in first_evaluations.values())

    (tmp_path / "notebook.py").unlink()  # the classes now live only in the run's stored objects
    second = subprocess.run([sys.executable, "-c", RESUME, str(run_dir)], capture_output=True, text=True, cwd=tmp_path.parent)
    assert second.returncode == 0, second.stderr[-3000:]
    with open_store(run_dir, readonly=True) as store:
        evaluations = store.evaluations()
    assert len(evaluations) == 6 and all(e.ok for e in evaluations.values())
    assert {k: evaluations[k] for k in first_evaluations} == first_evaluations


def test_export_front_exports_every_member_and_reports_the_one_that_fails(tmp_path) -> None:
    from pathlib import Path

    import evoforge
    from evoforge.testing.domains import PartsDomain
    from tests.test_cli import bad, run

    fails, cheap = ("fast-1", "fast-2", "slow-1"), ("fast-1", "fast-2", "fast-3", "costly-1")  # the toy cannot export a slow part
    run_dir = tmp_path / "run"
    evoforge.optimize(PartsDomain(members=(fails, cheap)), run_dir=run_dir, budget=3, pop_size=3)
    front = {m.genome.parts: m.id for m in evoforge.load_front(run_dir)}
    assert set(front) == {fails, cheap}

    cards = evoforge.export_front(run_dir)
    assert set(cards) == set(front.values())
    artifact = Path(cards[front[cheap]]["artifact"])
    assert artifact == run_dir / "exports" / str(front[cheap]) / "parts.json" and json.loads(artifact.read_text()) == list(cheap)
    assert isinstance(cards[front[cheap]]["seed"], int)  # the member's candidate seed, as export_member passes it
    assert "holds a slow part" in cards[front[fails]]["error"]
    assert not (run_dir / "exports" / str(front[fails])).exists()  # a failed export leaves no empty folder

    proc = run("export", run_dir, "--all", "--out", tmp_path / "all", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"evoforge: member {front[fails]} was not exported: {cards[front[fails]]['error']}"
    listed = {card["id"]: card for card in json.loads(proc.stdout)}
    assert set(listed) == set(front.values()) and "error" in listed[front[fails]]
    assert json.loads((tmp_path / "all" / str(front[cheap]) / "parts.json").read_text()) == list(cheap)
    assert "give --id or --pick with it, not --all" in bad("export", run_dir, "--all", "--format", "openvino")
    assert "not allowed with argument" in run("export", run_dir, "--all", "--id", front[cheap], check=False).stderr
