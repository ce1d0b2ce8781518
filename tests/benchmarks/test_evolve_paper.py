"""benchmarks/evolve_paper.py's ablation harness: one run per edit set and seed, side by side on request."""

from pathlib import Path

import pytest

from tests.benchmarks import benchmark_module


@pytest.fixture()
def paper(monkeypatch):
    module = benchmark_module("evolve_paper")
    ran: list[tuple[str, int, int]] = []
    finished: set[Path] = set()

    def evolve_run(run, template, program, *, seed, workers, **options):  # as the real one, a finished run is kept
        if run not in finished:
            ran.append((run.name, seed, workers))
            finished.add(run)
        return run

    monkeypatch.setattr(module, "evolve_run", evolve_run)
    monkeypatch.setattr(module, "finished_run", lambda run: run in finished)
    monkeypatch.setattr(module, "run_stats", lambda run: {"run": run.name})
    monkeypatch.setattr(module, "prepare_template", lambda template, program: None)
    return module, ran, finished


def test_each_edit_set_runs_once_per_seed_and_seed_1_keeps_its_folder(paper, tmp_path):
    module, ran, _ = paper
    sets = module.chosen_ablations("centered-narrowing-only,all")
    assert list(sets) == ["all", "centered narrowing only"]  # the table's order, not the command line's
    results = module.ablation_runs(tmp_path, tmp_path / "_template", sets, range(1, 3), "1m", 2, side_by_side=False)
    assert ran == [("ablation-all", 1, 2), ("ablation-centered-narrowing-only", 1, 2),
                   ("ablation-all-seed2", 2, 2), ("ablation-centered-narrowing-only-seed2", 2, 2)]
    assert results["all"][2] == {"run": "ablation-all-seed2"}
    with pytest.raises(SystemExit, match=r"unknown edit set\(s\) \['everything'\]"):
        module.chosen_ablations("all,everything")


def test_side_by_side_starts_one_process_per_unfinished_set_with_a_share_of_the_workers(paper, tmp_path, monkeypatch):
    module, ran, finished = paper
    started = []

    class Child:
        def __init__(self, argv):
            self.argv = argv
            started.append(argv)
            finished.add(module.ablation_run_dir(tmp_path, argv[argv.index("--ablations") + 1].replace("-", " "), 3))

        def wait(self):
            return 0

    monkeypatch.setattr(module.subprocess, "Popen", Child)
    sets = module.chosen_ablations("all,no-resize")
    finished.add(module.ablation_run_dir(tmp_path, "no resize", 4))  # seed 4 of one set is already done
    module.ablation_runs(tmp_path, tmp_path / "_template", sets, range(3, 5), "5m", 2, side_by_side=True)
    assert [(a[a.index("--ablations") + 1], a[a.index("--ablation-first-seed") + 1], a[a.index("--workers") + 1])
            for a in started] == [("all", "3", "1"), ("no-resize", "3", "1")]  # seed 4: one set left, run in-process
    assert all(a[a.index("--skip") + 1].split(",") == [s for s in module.SECTIONS if s != "ablation"] for a in started)
    assert ("ablation-all-seed4", 4, 2) in ran and all(seed == 4 for _, seed, _ in ran)

    monkeypatch.setattr(Child, "wait", lambda self: 1 if "no-resize" in self.argv else 0)
    with pytest.raises(SystemExit, match=r"ablation seed 5: the side-by-side run\(s\) of \['no resize'\] failed"):
        module.ablation_runs(tmp_path, tmp_path / "_template", sets, range(5, 6), "5m", 2, side_by_side=True)
