"""The GEVO-ML domain through the engine: search, failures, replay, final numbers, export."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import evoforge
from evoforge.api import open_store
from evoforge.errors import ConfigError
from evoforge.genome import genome_from_json
from evoforge.layout import RunLayout
from evoforge.machine import machine_name
from evoforge.mlir.describe import describe_edits
from evoforge.mlir.edits import EditListGenome
from evoforge.mlir.mutate import apply_edits
from evoforge.search.evaluation import Status
from tests.mlir.evolve_helpers import uid_names

pytestmark = pytest.mark.iree


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, linalg_mlp_text):
    root = tmp_path_factory.mktemp("evolve")
    path = root / "mlp.mlir"
    path.write_text(linalg_mlp_text)
    run_dir = root / "run"
    front = evoforge.evolve(path, budget=14, pop_size=6, workers=0, run_dir=run_dir, seed=2)
    return run_dir, front


def test_search_records_every_variant_and_keeps_the_original(finished_run):
    run_dir, front = finished_run
    with open_store(run_dir, readonly=True) as store:
        evaluations = store.evaluations()
        final = store.meta("final")
        original = EditListGenome().content_hash
    assert len(evaluations) == 14
    assert evaluations[original].ok
    assert evaluations[original].objectives["error"] == pytest.approx(0.0)
    assert 0.5 < evaluations[original].objectives["runtime_ratio"] < 2.0
    for ev in evaluations.values():
        assert ev.ok or (ev.reason and ev.metrics.get("failure_kind"))
    assert len(front) >= 1 and final["baseline"]["error"] == pytest.approx(0.0)
    assert final["baseline"]["runtime_ratio"] == 1.0
    for member in front:  # re-timed on a test batch when the run ended, not the search's own timing
        assert 0.3 < final[member.key]["runtime_ratio"] < 3.0
        assert final[member.key]["runtime_ratio"] != member.evaluation.objectives["runtime_ratio"]


@pytest.mark.parametrize(("ms_per_call", "repeats"), [(1.0, 45), (500.0, 20), (5000.0, 15)])
def test_re_timing_takes_more_repeats_as_far_as_they_fit_in_its_time(finished_run, monkeypatch, ms_per_call, repeats):
    from evoforge.mlir import iree_runner
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.search.evaluation import Evaluation

    asked = []

    def measure(vmfb, original, batch, count, **kwargs):
        asked.append(count)
        return iree_runner.RuntimeComparison(variant_s=1.0, baseline_s=2.0)

    monkeypatch.setattr(iree_runner, "measure_runtime", measure)
    domain = EvolveDomain(repeats=15)
    domain.attach(RunLayout(finished_run[0]))
    evaluation = Evaluation(Status.OK, {}, metrics={"runtime_ms": ms_per_call, "original_runtime_ms": ms_per_call})
    ratio = domain._retime({"original_vmfb": b"", "batches_test": [[None]]}, b"", None, evaluation)
    assert ratio == 0.5 and asked == [repeats]  # 3x the run's 15, capped at 20 s per member, never below 15


def test_the_run_keeps_only_its_fronts_vmfb_and_export_compiles_a_pruned_one_again(finished_run, tmp_path):
    """The MLIR of a variant is its edits replayed (a ResNet-50's is 180 MB), so only the vmfb is
    kept, and only while the variant is on the front (a ResNet-50's is 90 MB). Export compiles a
    pruned one again, byte for byte the one that was evaluated."""
    from evoforge.search.domain import domain_from_spec

    run_dir, front = finished_run
    layout = RunLayout(run_dir)
    with open_store(run_dir, readonly=True) as store:
        domain = domain_from_spec(store.config()["domain"], layout)
        evaluations = store.evaluations()
        genomes = {key: genome_from_json(store.genome(key)) for key in evaluations}
    ok = {key: ev for key, ev in evaluations.items() if ev.ok}
    assert ok and all(set(ev.artifacts) == {"vmfb"} for ev in ok.values())
    assert not list(run_dir.glob("artifacts/*/*.mlir"))
    kept = {key for key, ev in ok.items() if layout.resolve(ev.artifacts["vmfb"]).exists()}
    assert {m.key for m in front} <= kept
    pruned = sorted(ok.keys() - kept, key=lambda k: -len(genomes[k].edits))
    assert pruned, "the first generations left no variant off the front"
    card = domain.export_member(pruned[0], genomes[pruned[0]], ok[pruned[0]], tmp_path / "pruned")
    assert card["vmfb_rebuilt"] and card["vmfb_same_as_evaluated"]
    assert (tmp_path / "pruned" / "variant.mlir").read_text() == apply_edits(domain.program, genomes[pruned[0]].edits)
    member = max(front, key=lambda m: len(m.genome.edits))
    card = evoforge.export_member(run_dir, member.id, tmp_path / "member")
    assert not card["vmfb_rebuilt"] and card["vmfb_same_as_evaluated"]
    assert (tmp_path / "member" / "variant.mlir").read_text() == apply_edits(domain.program, member.genome.edits)


def test_a_run_stored_before_pruning_kept_every_vmfb():
    from evoforge.mlir.domain import EvolveDomain

    assert EvolveDomain.from_config({}).keep_artifacts == "all" and not EvolveDomain.from_config({}).prunes_artifacts()
    assert EvolveDomain().prunes_artifacts()
    with pytest.raises(ConfigError, match="keep_artifacts must be one of front, all, got 'some'"):
        EvolveDomain(keep_artifacts="some")


def test_a_linalg_program_leaves_torch_only_operators_out(finished_run):
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.mlir.edits import EDIT_KINDS, TORCH_ONLY_KINDS

    run_dir, _ = finished_run
    domain = EvolveDomain()
    assert set(domain.mutations) == set(EDIT_KINDS)  # no program yet: every operator
    domain.attach(RunLayout(run_dir))
    assert set(domain.mutations) == set(EDIT_KINDS) - set(TORCH_ONLY_KINDS)


def test_identical_programs_compile_once_and_the_speedup_is_stated(finished_run, monkeypatch):
    from evoforge.mlir import iree_runner
    from evoforge.report import run_summary
    from evoforge.search.domain import EvalContext, domain_from_spec

    run_dir, front = finished_run
    assert list((run_dir / "cache" / "vmfb").glob("*.vmfb"))  # the run filled its cache
    with open_store(run_dir, readonly=True) as store:
        config = store.config()
        stored = store.evaluations()[EditListGenome().content_hash]
    domain = domain_from_spec(config["domain"], RunLayout(run_dir))

    def no_compile(*args, **kwargs):
        raise AssertionError("an identical program was compiled again")

    monkeypatch.setattr(iree_runner, "compile_program", no_compile)
    again = domain.evaluate(EditListGenome(), EvalContext(seed=0))
    assert again.ok and again.metrics["compile_cache_hit"] is True and stored.metrics["compile_cache_hit"] is False
    assert again.objectives["error"] == stored.objectives["error"]
    assert all(m.evaluation.metrics["speedup"] == pytest.approx(1 / m.objectives["runtime_ratio"]) for m in front)
    summary = run_summary(run_dir)
    assert "compile cache: " in summary["headline"] and all("speedup" in row for row in summary["table"])
    assert again.metrics["machine"] == machine_name() and f"timed on {machine_name()}" in summary["headline"]


def test_export_writes_words_diff_and_verified_card(finished_run, tmp_path):
    run_dir, front = finished_run
    member = max(front, key=lambda m: len(m.genome.edits))
    card = evoforge.export_member(run_dir, member.id, tmp_path / "out")
    for name in ("variant.mlir", "variant.vmfb", "edits.txt", "diff.patch", "card.json"):
        assert (tmp_path / "out" / name).exists()
    assert json.loads((tmp_path / "out" / "card.json").read_text())["edits"] == card["edits"]
    assert len(card["edits"]) == len(member.genome.edits) and card["objectives_timed_on"] == machine_name()
    with open_store(run_dir, readonly=True) as store:
        recorded = store.meta("final")[member.key]
    assert card["test"]["error"] == pytest.approx(recorded["error"])
    if member.genome.edits:
        assert (tmp_path / "out" / "diff.patch").read_text().startswith("---")


def test_runtime_hangs_are_recorded_and_the_run_finishes(tmp_path, linalg_mlp_text, monkeypatch):
    import time

    from evoforge.mlir import iree_runner
    from evoforge.mlir.api import prepare_program
    from evoforge.mlir.domain import EvolveDomain

    real_run = iree_runner.run_program

    def hanging_run(vmfb, batches, *, worker, timeout_s, **kwargs):
        """Variant runs (short timeout) hang in the sandbox; the trusted original runs normally."""
        if timeout_s < 5:
            return worker.call(time.sleep, 60, timeout_s=timeout_s)
        return real_run(vmfb, batches, worker=worker, timeout_s=timeout_s, **kwargs)

    monkeypatch.setattr(iree_runner, "run_program", hanging_run)
    path = tmp_path / "mlp.mlir"
    path.write_text(linalg_mlp_text)
    run_dir = tmp_path / "run"
    prepare_program(path, RunLayout(run_dir))
    domain = EvolveDomain(original_error=0.0, run_timeout_s=0.5)
    evoforge.optimize(domain, budget=4, pop_size=4, workers=0, run_dir=run_dir)  # in-process: the patch applies
    with open_store(run_dir, readonly=True) as store:
        evaluations = store.evaluations()
    original = evaluations[EditListGenome().content_hash]
    assert len(evaluations) == 4 and not any(e.ok for e in evaluations.values())
    assert original.status is Status.TIMEOUT and original.reason.startswith("timeout: no answer within 0.5 s")


def test_variants_may_compile_five_times_as_long_as_the_original(finished_run, monkeypatch):
    from evoforge.mlir import iree_runner
    from evoforge.mlir.domain import COMPILE_TIMEOUT_FACTOR, EvolveDomain

    run_dir, front = finished_run
    with open_store(run_dir, readonly=True) as store:
        config = store.config()["domain"]["config"]
    assert 0 < config["original_compile_s"] < 60  # measured when the run prepared, kept for resume
    domain = EvolveDomain.from_config({**config, "compile_cache_mb": 0, "original_compile_s": 40.0})
    domain.attach(RunLayout(run_dir))
    assert domain.variant_compile_timeout_s == 40.0 * COMPILE_TIMEOUT_FACTOR
    assert EvolveDomain(original_compile_s=2.0).variant_compile_timeout_s == domain.compile_timeout_s == 120.0
    timeouts = []
    monkeypatch.setattr(iree_runner, "compile_program", lambda *args, **kwargs: timeouts.append(kwargs["timeout_s"]) or b"")
    domain._compile(front[0].genome)
    assert timeouts == [200.0]
    with pytest.raises(ConfigError, match="compile_timeout_s must be > 0 seconds, got 0"):
        EvolveDomain(compile_timeout_s=0)


def test_bad_programs_are_clear_errors(tmp_path):
    from evoforge.errors import ConfigError

    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @main( {")
    with pytest.raises(ConfigError, match="cannot parse MLIR"):
        evoforge.evolve(bad, budget=2, run_dir=tmp_path / "r1")
    with pytest.raises(ConfigError, match="does not exist"):
        evoforge.evolve(tmp_path / "missing.mlir", budget=2, run_dir=tmp_path / "r2")
    with pytest.raises(ConfigError, match="cannot evolve"):
        evoforge.evolve(42, budget=2, run_dir=tmp_path / "r3")
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ConfigError, match="cannot read .*bad.onnx as an ONNX model"):
        evoforge.evolve(tmp_path / "bad.onnx", budget=2, run_dir=tmp_path / "r4")
    dynamic = tmp_path / "dynamic.mlir"
    dynamic.write_text("func.func @main(%x: tensor<?x6xf32>) -> tensor<?x6xf32> {\n  return %x : tensor<?x6xf32>\n}\n")
    with pytest.raises(ConfigError, match="is not a statically shaped tensor; give the program fixed shapes"):
        evoforge.evolve(dynamic, budget=2, run_dir=tmp_path / "r5")
    with pytest.raises(ConfigError, match="max_error_increase must be a number"):
        evoforge.evolve(dynamic, budget=2, run_dir=tmp_path / "r6", max_error_increase=-1)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("r")]  # a refused start leaves no run folder
    with pytest.raises(ConfigError, match="unknown objective .speed.; valid names: runtime_ratio, error, size_ratio"):
        from evoforge.mlir.domain import EvolveDomain

        EvolveDomain(objectives=["speed"])
    with pytest.raises(ConfigError, match="max_error_increase must be a number >= 0 .or None: no constraint., got 'abc'"):
        EvolveDomain(max_error_increase="abc")
    with pytest.raises(ConfigError, match=r"unknown edit kinds \['shrink'\]; choose one or more of: delete, copy"):
        evoforge.evolve(tmp_path / "missing.mlir", edit_kinds=["delete", "shrink"], run_dir=tmp_path / "r4")
    assert not (tmp_path / "r4").exists()  # refused before anything is written


def test_chosen_edit_kinds_are_the_only_ones_drawn(tmp_path, linalg_mlp_text):
    path = tmp_path / "mlp.mlir"
    path.write_text(linalg_mlp_text)
    evoforge.evolve(path, budget=8, pop_size=4, workers=0, run_dir=tmp_path / "run", edit_kinds=["delete"])
    with open_store(tmp_path / "run", readonly=True) as store:
        assert store.config()["domain"]["config"]["edit_kinds"] == ["delete"]
        edits = [e for key in store.evaluations() for e in genome_from_json(store.genome(key)).edits]
    assert edits and {e.KIND for e in edits} == {"delete"}


@pytest.mark.parametrize("second", [0.9, 0.3])
def test_fast_first_timings_are_confirmed_by_a_second_independent_one(tmp_path, linalg_mlp_text, monkeypatch, second):
    """A variant first timed below CONFIRM_BELOW is timed again and the search sees the slower of
    the two timings, whichever came first; one timed at or above it is timed once."""
    from evoforge.mlir import iree_runner
    from evoforge.mlir.domain import CONFIRM_BELOW

    calls: dict[bytes, int] = {}

    def fake_measure(vmfb, original_vmfb, batch, repeats=20, **kwargs):
        calls[vmfb] = calls.get(vmfb, 0) + 1
        if calls[vmfb] > 1:
            return iree_runner.RuntimeComparison(variant_s=second, baseline_s=1.0)
        first = 0.5 if len(calls) % 2 else 1.0  # alternate between a fast and a neutral first timing
        return iree_runner.RuntimeComparison(variant_s=first, baseline_s=1.0)

    monkeypatch.setattr(iree_runner, "measure_runtime", fake_measure)
    path = tmp_path / "mlp.mlir"
    path.write_text(linalg_mlp_text)
    evoforge.evolve(path, budget=8, pop_size=4, workers=0, run_dir=tmp_path / "run", seed=1)
    with open_store(tmp_path / "run", readonly=True) as store:
        timed = [e.metrics for e in store.evaluations().values() if e.ok]
    confirmed = [m for m in timed if "first_runtime_ratio" in m]
    single = [m for m in timed if "first_runtime_ratio" not in m]
    assert confirmed and single
    assert all(m["first_runtime_ratio"] == 0.5 < CONFIRM_BELOW and m["second_runtime_ratio"] == second for m in confirmed)
    assert all(m["runtime_ratio"] == max(0.5, second) for m in confirmed)
    assert all(m["runtime_ratio"] == 1.0 for m in single)


@pytest.mark.slow
def test_builtin_prediction_and_training_programs(tmp_path):
    from evoforge.mlir.flag_tuning import load_tuning

    front = evoforge.evolve("digits-mobilenet", budget=6, pop_size=3, workers=0, run_dir=tmp_path / "p", compare_runtimes="none")
    assert any(m.genome.edits == () and m.objectives["error"] < 0.1 for m in front) or len(front) >= 1
    front = evoforge.evolve("digits-2fcnet-train", budget=4, pop_size=2, workers=0, run_dir=tmp_path / "t")
    for run, timed in (("p", {"default", "im2col"}), ("t", set())):  # a convolutional program is tuned, an MLP is not
        tuning = load_tuning(RunLayout(tmp_path / run).program)
        with open_store(tmp_path / run, readonly=True) as store:
            assert tuning is not None and set(tuning.ms) == timed
            assert store.config()["domain"]["config"]["extra_flags"] == list(tuning.flags)  # a resume compiles the same
    with open_store(tmp_path / "t", readonly=True) as store:
        original = store.evaluations()[EditListGenome().content_hash]
    assert original.ok and original.metrics["accuracy"] > 0.5
    assert 0.3 < original.objectives["runtime_ratio"] < 3.0


def test_onnx_program_evolves_against_its_own_outputs(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import warnings

    class Small(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(6, 4)

        def forward(self, x):
            return torch.relu(self.a(x))

    path = tmp_path / "small.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Small().eval(), (torch.randn(2, 6),), str(path), dynamo=False)
    evoforge.evolve(path, budget=6, pop_size=3, workers=0, run_dir=tmp_path / "run")
    with open_store(tmp_path / "run", readonly=True) as store:
        original = store.evaluations()[EditListGenome().content_hash]
        final = store.meta("final")
    assert original.ok and original.objectives["error"] == pytest.approx(0.0, abs=1e-6)
    assert final["baseline"]["error"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_from_a_compress_run_member(tmp_path):
    front = evoforge.compress("digits-mlp", budget=4, pop_size=4, workers=0, run_dir=tmp_path / "c")
    evoforge.evolve(f"{tmp_path / 'c'}:1", budget=3, pop_size=3, workers=0, run_dir=tmp_path / "e",  # 1: the baseline
                    compare_runtimes="none")
    with open_store(tmp_path / "e", readonly=True) as store:
        original = store.evaluations()[EditListGenome().content_hash]
    assert original.ok and original.metrics["accuracy"] > 0.8
    quantized = [m for m in front if any(s.kind == "quantize" for s in m.genome.stages)]
    if quantized:
        from evoforge.errors import ConfigError

        with pytest.raises(ConfigError, match="int8-quantized"):
            evoforge.evolve(f"{tmp_path / 'c'}:{quantized[0].id}", budget=2, run_dir=tmp_path / "q")


def test_finalize_time_is_estimated_from_the_members_own_timings():
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.search.evaluation import Evaluation, Status

    domain = EvolveDomain(repeats=15)
    predict = Evaluation(Status.OK, {}, metrics={"run_s": 0.5, "runtime_ms": 1.0, "original_runtime_ms": 1.0})
    slow = Evaluation(Status.OK, {}, metrics={"run_s": 0.5, "runtime_ms": 1000.0, "original_runtime_ms": 1000.0})
    train = Evaluation(Status.OK, {}, metrics={"train_ms": 3000.0, "original_train_ms": 2000.0})
    assert domain.finalize_seconds([("p", predict)]) == pytest.approx(0.5 + 45 * 0.002)  # 3x the run's 15 rounds
    assert domain.finalize_seconds([("s", slow)]) == pytest.approx(0.5 + 15 * 2.0)  # never fewer than the run's
    assert domain.finalize_seconds([("t", train)]) == pytest.approx(3.0)  # the test score trains it again



def test_a_program_with_two_inputs_evolves_and_exports(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("iree.turbine")

    class Sum(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(6, 3)

        def forward(self, x, y):
            return self.a(x + 2 * y)

    torch.manual_seed(0)
    run_dir = tmp_path / "run"
    front = evoforge.evolve(Sum().eval(), example_input=(torch.randn(4, 6), torch.randn(4, 6)), budget=4, pop_size=4,
                            workers=0, run_dir=run_dir, compare_runtimes="none", tune_flags=False)
    with open_store(run_dir, readonly=True) as store:
        original = store.evaluations()[EditListGenome().content_hash]
    assert original.ok and original.objectives["error"] == pytest.approx(0.0, abs=1e-6)
    assert original.metrics["batch_coupling"] == 0.0
    card = evoforge.export_member(run_dir, front[0].id, tmp_path / "out")
    assert card["original_test"]["error"] == pytest.approx(0.0, abs=1e-6)  # both inputs of every test batch were fed
    assert "batch_coupling" in card and card["vmfb_same_as_evaluated"]


def test_a_module_evolves_on_the_labelled_splits_compress_takes(tmp_path):
    """Data as a compress user holds it: a dataset of dict items with a label (HuggingFace style),
    validation carved off train; the module takes the dict's inputs by name."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("iree.turbine")

    class Tagger(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(8, 4)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, input_ids, attention_mask):
            return self.head((self.embed(input_ids) * attention_mask[..., None]).sum(1))

    class Items(torch.utils.data.Dataset):
        def __init__(self, n: int, seed: int) -> None:
            self.ids = torch.as_tensor(np.random.default_rng(seed).integers(0, 8, (n, 5)))

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int):
            return {"attention_mask": torch.ones(5, dtype=torch.long), "input_ids": self.ids[i], "label": int(self.ids[i, 0] > 3)}

    torch.manual_seed(0)
    model = Tagger().eval()
    data = {"train": Items(300, 0), "test": Items(64, 1)}
    run_dir = tmp_path / "run"
    evoforge.evolve(model, data, batch_size=8, budget=3, pop_size=3, workers=0, run_dir=run_dir, compare_runtimes="none",
                    tune_flags=False, seed=5)
    with np.load(run_dir / "program" / "data.npz") as stored:
        assert set(stored.files) == {"x_val.0", "x_val.1", "y_val", "x_test.0", "x_test.1", "y_test"}
        np.testing.assert_array_equal(stored["y_test"], (data["test"].ids[:, 0] > 3).numpy())
        np.testing.assert_array_equal(stored["x_test.1"], data["test"].ids.numpy())  # the items' order: mask, then ids
        mask, ids, labels = (torch.as_tensor(stored[k]) for k in ("x_val.0", "x_val.1", "y_val"))
    assert len(labels) == 40  # 15% of train (45) carved off as validation, cut to whole batches of 8
    from evoforge.workload.data import splits_from_mapping

    carved, _ = splits_from_mapping(data, task_type="classification", seed=5, what="data").val.take(40)
    np.testing.assert_array_equal(ids.numpy(), carved["input_ids"].numpy())  # carved with the run's seed
    with torch.no_grad():
        torch_error = float((model(ids, mask).argmax(1) != labels).float().mean())  # by name, as the items say
    with open_store(run_dir, readonly=True) as store:
        original = store.evaluations()[EditListGenome().content_hash]
    assert original.ok and original.objectives["error"] == pytest.approx(torch_error, abs=1e-6)
    assert json.loads((run_dir / "program" / "program.json").read_text())["input_names"] == ["attention_mask", "input_ids"]
    with pytest.raises(ConfigError, match="give example_input or data splits, not both"):
        evoforge.evolve(model, data, example_input=torch.zeros(8, 5, dtype=torch.long), run_dir=tmp_path / "both")


def _two_edit_member(tmp_path, linalg_mlp_text, linalg_program):
    """A prepared evolve domain on the linalg MLP, and two resizes that change its error differently."""
    from evoforge.mlir.api import prepare_program
    from evoforge.mlir.domain import EvolveDomain
    from evoforge.mlir.edits import Resize

    path = tmp_path / "mlp.mlir"
    path.write_text(linalg_mlp_text)
    layout = RunLayout(tmp_path / "run")
    prepare_program(path, layout)
    domain = EvolveDomain()
    domain.attach(layout)
    domain.prepare()
    values = re.findall(r'evoforge\.uid = "(U\d+)"', linalg_program.text)
    generic = next(u for u, n in uid_names(linalg_program).items() if n == "linalg.generic")
    edits = (Resize(value=f"{generic}#0", dim=1, size=3, fill=0), Resize(value=f"{values[0]}#0", dim=1, size=2, fill=1))
    return domain, edits


def test_explain_evaluates_the_member_without_each_edit_and_each_edit_alone(tmp_path, linalg_mlp_text, linalg_program):
    """For two edits a and b, "without a" is b alone and "without b" is a alone: the same programs,
    so the same errors (timings differ by noise)."""
    domain, edits = _two_edit_member(tmp_path, linalg_mlp_text, linalg_program)
    rows = domain.explain_member(EditListGenome(edits=edits))
    assert [r["edit"] for r in rows[1:]] == describe_edits(linalg_program, edits)
    genome = EditListGenome(edits=edits)
    assert domain.part_count(genome) == len(domain.parts(genome)) == 2
    first, second = rows[1], rows[2]
    assert first["without"]["error"] == second["alone"]["error"] and second["without"]["error"] == first["alone"]["error"]
    assert first["alone"]["error"] != second["alone"]["error"]
    assert all(0.3 < r[part]["runtime_ratio"] < 3 for r in rows[1:] for part in ("without", "alone"))
    with pytest.raises(ConfigError, match="no edits to explain"):
        domain.explain_member(EditListGenome())


def test_minimizing_a_member_replays_sublists_of_its_edits(tmp_path, linalg_mlp_text, linalg_program):
    """An evolve member's parts are its edits: each shorter variant keeps the others in order,
    compiles and runs, and the result is no worse than the member on error."""
    from evoforge.search.domain import EvalContext
    from evoforge.search.minimize import Minimization

    domain, edits = _two_edit_member(tmp_path, linalg_mlp_text, linalg_program)
    member = EditListGenome(edits=edits)
    assert domain.parts(member) == describe_edits(linalg_program, edits)
    assert domain.keep_parts(member, [1]) == EditListGenome(edits=edits[1:])
    run = Minimization(member.content_hash, member, domain.parts(member), domain.keep_parts, domain.objectives,
                       timed=domain.timed_objectives, tolerance=0.9)  # timing noise is not what this test is about
    asked = []
    while not run.finished:
        for request in run.wanted():
            evaluation = domain.evaluate(request.genome, EvalContext(seed=0))
            assert evaluation.ok, evaluation.reason
            asked.append(request.genome)
            run.tell(request, evaluation)
    assert asked[0] == member and set(asked[1:3]) == {EditListGenome(edits=(e,)) for e in edits}
    record = run.record()
    assert record["objectives"]["error"] <= record["reference"]["error"]
    assert [edits[i] for i in run.kept] == list(domain.keep_parts(member, run.kept).edits)
