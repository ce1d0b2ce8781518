"""The PETRA domain on a real (small) task: baseline preparation and evaluation in-process."""

import dataclasses
import json

import numpy as np
import pytest

from evoforge import machine
from evoforge.compression.domain import CompressDomain, hand_recipes, initial_pipelines
from evoforge.compression.genome import QUANT_MODES, PipelineGenome, Stage
from evoforge.errors import ConfigError, UnknownNameError
from evoforge.layout import RunLayout
from evoforge.machine import native_bf16
from evoforge.search.domain import EvalContext, domain_from_spec, domain_spec
from evoforge.workload.task import BUILTIN_TASKS


@pytest.fixture(scope="module", params=["onnxruntime", "torchscript"])
def domain(request, tmp_path_factory):
    d = CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), latency_repeats=5, runtime=request.param)
    d.attach(RunLayout(tmp_path_factory.mktemp("run")))
    d.prepare()
    d.setup_worker()
    return d


def test_prepare_records_the_baseline(domain):
    record = json.loads((domain.layout.baseline / "baseline.json").read_text())
    assert record["validation"]["accuracy"] > 0.9
    assert record["runtime"] == domain.runtime.name
    assert record["size_bytes"] == (domain.layout.baseline / domain.artifact).stat().st_size
    if domain.runtime.name == "torchscript":  # torch.ao's modes, and bf16 where the processor has it
        refused = {k: v for k, v in record["refused"].items() if k != "quantize:bf16" or native_bf16()}
        assert refused == {"quantize:weight_only": "not available on runtime 'torchscript'"}
        assert record["space"]["quant_modes"] == ["dynamic", "static", "qat"] + (["bf16"] if native_bf16() else [])
    else:  # int8 is ONNX Runtime's own: no QAT, no weight-only there
        assert record["refused"] == {"quantize:qat": "not available on runtime 'onnxruntime'",
                                     "quantize:weight_only": "not available on runtime 'onnxruntime'",
                                     "quantize:bf16": "not available on runtime 'onnxruntime'"}
        assert record["space"]["quant_modes"] == ["dynamic", "static"]
    assert record["inputs"] == [{"name": "input0", "dtype": "float32", "shape": ["batch", 1, 8, 8]}]
    assert "data" in domain.task.fingerprints  # the data the run started with
    eager = record["versus_eager"]
    assert eager["ratio_batch"] > 0 and eager["eager_batch_ms"] > 0


def test_baseline_genome_is_neutral(domain, tmp_path):
    ev = domain.evaluate(PipelineGenome(training=domain.task.training), EvalContext(seed=1, artifact_dir=tmp_path))
    assert ev.ok
    assert ev.objectives["quality_drop"] == pytest.approx(0.0)
    assert ev.objectives["size_ratio"] == pytest.approx(1.0, abs=0.05)
    assert 0.3 < ev.objectives["latency_ratio"] < 3.0
    assert ev.constraints["quality_drop_limit"] == pytest.approx(-1.0)
    assert (tmp_path / domain.artifact).exists() and ev.artifacts["model"].endswith(domain.artifact)
    assert ev.metrics["runtime"] == domain.runtime.name
    record = json.loads((domain.layout.baseline / "baseline.json").read_text())
    assert ev.metrics["latency_vs_eager"] == pytest.approx(ev.metrics["latency_ratio_batch"] * record["versus_eager"]["ratio_batch"])
    share = min([1.0] + [row["ratio_batch"] for row in record["fp32_elsewhere"].values() if "ratio_batch" in row])
    assert ev.metrics["latency_vs_best_fp32"] == pytest.approx(ev.metrics["latency_ratio_batch"] * share)


def test_int8_pipeline_is_smaller_and_keeps_quality(domain, tmp_path):
    genome = initial_pipelines(PipelineGenome(training=domain.task.training))[1]  # static int8
    ev = domain.evaluate(genome, EvalContext(seed=1, artifact_dir=tmp_path))
    assert ev.ok and ev.objectives["size_ratio"] < 0.6
    assert ev.objectives["quality_drop"] < 3.0
    assert "quantize(static" in ev.metrics["pipeline"]


def test_finalize_scores_artifacts_on_test_and_times_them_again(domain, monkeypatch):
    from evoforge.compression import measure

    ev = domain.evaluate(PipelineGenome(training=domain.task.training), EvalContext(seed=1, artifact_dir=domain.layout.artifact_dir("k")))
    assert ev.metrics["latency_threads"] == 1
    final = domain.finalize([("k", ev)])
    assert final["k"]["accuracy"] == pytest.approx(final["baseline"]["accuracy"])
    assert 0.3 < final["k"]["latency_ratio"] < 3.0 and 0.3 < final["k"]["latency_b1_ratio"] < 3.0
    quality = domain.test_quality([("k", ev)])
    assert quality["baseline"] == final["baseline"]  # no latency there: `show` prints no Δ for a ratio to the baseline
    assert final["k"] == {**quality["k"], "latency_ratio": final["k"]["latency_ratio"], "latency_b1_ratio": final["k"]["latency_b1_ratio"]}

    timed: list[tuple[int, int | None]] = []
    original = measure.measure_latency

    def spy(*args, repeats, threads, **kwargs):
        timed.append((repeats, threads))
        return original(*args, repeats=1, threads=threads, **kwargs)

    monkeypatch.setattr(measure, "measure_latency", spy)
    slow = dataclasses.replace(ev, metrics={**ev.metrics, "latency_batch_ms": 1000.0, "latency_threads": 2})
    old = dataclasses.replace(ev, metrics={k: v for k, v in ev.metrics.items() if k != "latency_threads"})
    draft = dataclasses.replace(ev, metrics={**ev.metrics, "draft_artifact": True})
    final = domain.finalize([("fast", ev), ("slow", slow), ("old", old), ("draft", draft)])
    # three fresh timings where they fit in 20 s, one where they do not; the run's repeats and threads
    assert timed == [(5, 1)] * 3 + [(5, 2)]
    assert "latency_ratio" in final["slow"] and final["old"] == final["draft"] == quality["k"]


def test_config_round_trip_and_validation(domain):
    rebuilt = domain_from_spec(domain_spec(domain))
    assert isinstance(rebuilt, CompressDomain) and rebuilt.config() == domain.config() and rebuilt.layout is None
    assert "run_dir" not in domain.config() and domain_from_spec(domain_spec(domain, domain.layout)).layout == domain.layout
    with pytest.raises(UnknownNameError, match="valid names: .*size_ratio"):
        CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), objectives=["speed"])
    with pytest.raises(ConfigError, match="max_quality_drop must be a number >= 0 .or None: no constraint., got -3"):
        CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), max_quality_drop=-3)
    regression = CompressDomain(BUILTIN_TASKS["series-regression"].to_dict())
    assert regression.relative_drop and regression.max_quality_drop == 5.0


def test_initial_population_is_seeded_and_valid(domain):
    pop = domain.initial_population(np.random.default_rng(0), 10)
    assert pop[0].stages == () and len(pop) == 10
    warm = domain.warm_starts()
    assert 2 <= len(warm) < 10 and pop[: len(warm)] == warm  # the warm starts come first, then samples
    assert len({g.content_hash for g in pop}) == 10
    assert all(isinstance(s, Stage) for g in pop for s in g.stages)


def test_the_warm_starts_hold_every_hand_recipe_the_space_allows(domain):
    """A run's evaluations then include each recipe's point: the same genome under the same run
    seed trains the same model, so the search never ends below a recipe."""
    warm = {g.content_hash for g in domain.warm_starts()}
    recipes = [domain.operators.canonical(g) for g in hand_recipes(domain.task.training).values()]
    allowed = [g for g in recipes if domain.space.allows(g)]
    assert len(recipes) == 6 and allowed and all(g.content_hash in warm for g in allowed)
    assert any(s.kind == "finetune" for g in allowed for s in g.stages)  # not only the int8 recipes


def test_what_a_run_excludes_leaves_its_space_and_warm_starts_and_is_named_in_show(domain):
    excluded = CompressDomain.from_config({**domain.config(), "exclude": "quantize:bf16, lowrank,prune:random"})
    assert excluded.exclude == ("quantize:bf16", "lowrank", "prune:random") and excluded.config()["exclude"] == list(excluded.exclude)
    assert "lowrank" not in excluded.space.kinds and "random" not in excluded.space.importances
    assert "bf16" not in excluded.space.quant_modes
    starts = excluded.warm_starts()
    assert starts and not any(s.kind == "lowrank" or (s.kind == "quantize" and s["mode"] == "bf16") for g in starts for s in g.stages)
    assert len(starts) < len(domain.warm_starts())
    rng = np.random.default_rng(0)
    parent = excluded.warm_starts()[-1]
    drawn = [excluded.sample(rng) for _ in range(100)] + [op(parent, rng) for op in excluded.mutations.values() for _ in range(40)]
    assert all(excluded.space.allows(g) for g in drawn)
    excluded.attach(domain.layout)
    excluded.prepare()  # resume: the stored space, less the exclusions again
    assert excluded.space == domain.space.without(excluded.exclude)
    assert "left out of the search by the run's settings (exclude): quantize:bf16, lowrank, prune:random" in excluded.headline_notes({})
    with pytest.raises(ConfigError, match=r"^excluding prune, lowrank, finetune, quantize:dynamic, quantize:static, quantize:qat, "
                                          r"quantize:weight_only, quantize:bf16 leaves no stage to search; exclude less"):
        CompressDomain(domain.task, exclude=["prune", "lowrank", "finetune", *(f"quantize:{m}" for m in QUANT_MODES)])
    with pytest.raises(ConfigError, match=r"cannot exclude 'quantize:fp8'; name a stage kind, prune:<importance> or quantize:<mode>: "
                                          r"finetune, lowrank, prune, quantize, prune:l1"):
        CompressDomain(domain.task, exclude=["quantize:fp8"])


def test_a_mode_the_runtime_lacks_fails_with_its_modes(domain, tmp_path):
    qat = PipelineGenome((Stage.make("quantize", mode="qat", per_channel=True, keep_float_edges=False, epochs=1),), domain.task.training)
    if domain.runtime.name == "torchscript":
        assert domain.evaluate(qat, EvalContext(seed=1, artifact_dir=tmp_path)).ok
    else:
        with pytest.raises(ConfigError, match="quantize mode 'qat' is not available on runtime 'onnxruntime'; its modes: dynamic, static"):
            domain.evaluate(qat, EvalContext(seed=1, artifact_dir=tmp_path))


def test_the_bf16_recipe_halves_the_file_where_the_runtime_has_bf16(domain, tmp_path):
    bf16 = domain.operators.canonical(hand_recipes(domain.task.training)["bf16"])
    assert bf16.stages[0]["mode"] == "bf16"
    if domain.runtime.name == "onnxruntime":
        with pytest.raises(ConfigError, match="quantize mode 'bf16' is not available on runtime 'onnxruntime'"):
            domain.evaluate(bf16, EvalContext(seed=1, artifact_dir=tmp_path))
        return
    ev = domain.evaluate(bf16, EvalContext(seed=1, artifact_dir=tmp_path))
    assert ev.ok, ev.reason
    assert abs(ev.objectives["quality_drop"]) < 2.0 and 0.4 < ev.objectives["size_ratio"] < 0.7


def test_onnxruntime_int8_keeps_the_edge_layers_float_on_request(domain, tmp_path):
    if domain.runtime.name != "onnxruntime":
        pytest.skip("edge layers of torch.ao int8 are covered by the quantize stage tests")
    import onnx

    sizes = {}
    for keep in (False, True):
        genome = PipelineGenome((Stage.make("quantize", mode="static", per_channel=True, keep_float_edges=keep, epochs=0),),
                                domain.task.training)
        ev = domain.evaluate(genome, EvalContext(seed=1, artifact_dir=tmp_path / str(keep)))
        assert ev.ok and ev.objectives["quality_drop"] < 3.0
        assert ev.metrics["int8_weight_bits"] == (7 if machine.int8_products_saturate() else 8)  # what the file holds
        graph = onnx.load(str(tmp_path / str(keep) / "model.onnx")).graph
        float_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2]
        sizes[keep] = (len(float_weights), ev.metrics["size_bytes"])
    assert sizes[False][0] == 0 and sizes[True][0] == 2  # the first and last Linear weights stay float
    assert sizes[True][1] > sizes[False][1]


def test_an_int8_members_card_says_how_wide_its_weights_are_and_what_that_means_elsewhere():
    from evoforge.compression.domain import _int8_weight_note

    assert _int8_weight_note(None) == {}
    narrow, wide = _int8_weight_note(7), _int8_weight_note(8)
    assert narrow["int8_weight_bits"] == 7 and narrow["int8_note"].endswith("keeps its accuracy on any processor")
    assert wide["int8_weight_bits"] == 8 and "without VNNI (avx512_vnni, avx_vnni or amx_int8)" in wide["int8_note"]
    assert "int8_weight_bits 7" in wide["int8_note"]  # how to make one that does


def test_int8_weight_bits_set_the_files_weights_whatever_the_processor(domain, tmp_path, monkeypatch):
    """A run for a processor without VNNI, made on one with it (and the reverse): the width asked
    for is what the file holds and what the evaluation records; ``auto`` follows the processor."""
    if not domain.runtime.narrows_int8_weights:
        with pytest.raises(ConfigError, match="int8_weight_bits 7 applies to onnxruntime, openvino; torchscript chooses"):
            CompressDomain.from_config({**domain.config(), "int8_weight_bits": 7})
        return
    import onnx

    static = PipelineGenome((Stage.make("quantize", mode="static", per_channel=True, keep_float_edges=False, epochs=0),),
                            domain.task.training)
    for saturate, setting, bits in ((False, 7, 7), (True, "8", 8), (True, "auto", 7), (False, "auto", 8)):
        monkeypatch.setattr(machine, "int8_products_saturate", lambda saturate=saturate: saturate)
        run = CompressDomain.from_config({**domain.config(), "int8_weight_bits": setting})
        run.attach(domain.layout)
        run.setup_worker()
        folder = tmp_path / f"{saturate}-{setting}"
        ev = run.evaluate(static, EvalContext(seed=1, artifact_dir=folder))
        assert ev.ok, ev.reason
        assert ev.metrics["int8_weight_bits"] == bits
        weights = [onnx.numpy_helper.to_array(init) for init in onnx.load(str(folder / run.artifact)).graph.initializer
                   if init.data_type == onnx.TensorProto.INT8 and len(init.dims) >= 2]
        largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
        assert largest <= 64 if bits == 7 else largest == 127
        assert run.config()["int8_weight_bits"] == (setting if setting == "auto" else int(setting))
    with pytest.raises(ConfigError, match="int8_weight_bits 6 is not one of: auto, 7, 8"):
        CompressDomain(domain.task, int8_weight_bits=6)


def test_show_says_how_wide_the_int8_weights_are_and_why(domain):
    from evoforge.search.evaluation import Evaluation, Status

    def evaluations(*widths):
        return {str(i): Evaluation(Status.OK, metrics={"int8_weight_bits": w} if w else {}) for i, w in enumerate(widths)}

    assert not any("int8 weights" in note for note in domain.headline_notes(evaluations(None)))
    assert "int8 weights in 7 bits, as the evaluating processor needs (int8_weight_bits auto: 7 without VNNI)" in (
        domain.headline_notes(evaluations(7, None)))
    mixed = domain.headline_notes(evaluations(7, 8))
    assert any(note.startswith("int8 weights in 7 and 8 bits") and "WARNING: the widths differ" in note for note in mixed)
    if domain.runtime.narrows_int8_weights:
        chosen = CompressDomain.from_config({**domain.config(), "int8_weight_bits": 7})
        chosen.attach(domain.layout)
        assert "int8 weights in 7 bits, as the run set (int8_weight_bits)" in chosen.headline_notes(evaluations(7))


def test_stored_configs_without_a_runtime_are_torchscript_runs(domain):
    config = {k: v for k, v in domain.config().items() if k != "runtime"}
    assert CompressDomain.from_config(config).runtime.name == "torchscript"
    assert CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict()).runtime.name == "onnxruntime"
    with pytest.raises(UnknownNameError, match="unknown runtime 'tensorrt'; valid names: inductor, onnxruntime, openvino, torchscript"):
        CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), runtime="tensorrt")


def test_export_reverifies_in_a_fresh_process_and_converts_float_members(domain, tmp_path, monkeypatch):
    if domain.runtime.name != "onnxruntime":
        pytest.skip("one runtime is enough for the export path; the CLI tests export torchscript runs")
    from evoforge.errors import EvaluationError

    prune = Stage.make("prune", importance="l2", ratio=0.3, steps=1, allocation="uniform", round_to=1, epochs=1)
    genome = PipelineGenome((prune,), domain.task.training)
    ev = domain.evaluate(genome, EvalContext(seed=3, artifact_dir=domain.layout.artifact_dir("float")))
    claimed = domain.finalize([("float", ev)])["float"]
    card = domain.export_member("float", genome, ev, tmp_path / "out", claimed=claimed, formats=["torchscript"], seed=3)
    assert card["verified_in_fresh_process"] and card["test"]["accuracy"] == pytest.approx(claimed["accuracy"])
    assert card["load_with"].startswith("onnxruntime.InferenceSession(")
    assert card["objectives_timed_on"] == ev.metrics["machine"] and card["latency_timed_on"] == ev.metrics["machine"]
    assert "int8_weight_bits" not in card and "int8_weight_bits" not in ev.metrics  # a float member
    converted = card["formats"]["torchscript"]
    assert (tmp_path / "out" / "model.pt").exists() and converted["test"]["accuracy"] == pytest.approx(claimed["accuracy"], abs=0.01)

    assert card["latency_threads"] == ev.metrics["latency_threads"] == 1
    two = dataclasses.replace(ev, metrics={**ev.metrics, "latency_threads": 2})  # a run of one worker on 2 cores
    assert domain.export_member("float", genome, two, tmp_path / "two", claimed=claimed)["latency_threads"] == 2

    wrong = {**claimed, "accuracy": claimed["accuracy"] - 0.05}
    with pytest.raises(EvaluationError, match="reloaded in a fresh onnxruntime process scores accuracy .* not the"):
        domain.export_member("float", genome, ev, tmp_path / "again", claimed=wrong)
    # an 8-bit int8 member exported on a processor whose int8 kernels saturate with 8 bits: the error says why, and the fix
    monkeypatch.setattr(machine, "int8_products_saturate", lambda: True)
    eight = dataclasses.replace(ev, metrics={**ev.metrics, "int8_weight_bits": 8})
    with pytest.raises(EvaluationError, match="not what was measured here: this processor has none of avx512_vnni, .*"
                                              "compress with int8_weight_bits 7"):
        domain.export_member("float", genome, eight, tmp_path / "eight", claimed=wrong)

    int8 = PipelineGenome((Stage.make("quantize", mode="dynamic", per_channel=False, keep_float_edges=False, epochs=0),),
                          domain.task.training)
    with pytest.raises(ConfigError, match="is int8 in onnxruntime, which does not convert to torchscript"):
        domain.export_member("q", int8, ev, tmp_path / "q", formats=["torchscript"], seed=3)


def test_onnxruntime_runs_never_call_torch_ao_quantization(domain, tmp_path, monkeypatch):
    if domain.runtime.name != "onnxruntime":
        pytest.skip("torchscript's int8 is torch.ao's by design")
    import warnings

    import torch.ao.quantization as tq
    from torch.ao.quantization import quantize_fx

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.ao.quantization was called in an onnxruntime run")

    for module, name in [(tq, "quantize_dynamic"), (tq, "prepare"), (tq, "prepare_qat"), (tq, "convert"),
                         (quantize_fx, "prepare_fx"), (quantize_fx, "prepare_qat_fx"), (quantize_fx, "convert_fx")]:
        monkeypatch.setattr(module, name, forbidden)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for mode in ("dynamic", "static"):
            stage = Stage.make("quantize", mode=mode, per_channel=True, keep_float_edges=False, epochs=0)
            ev = domain.evaluate(PipelineGenome((stage,), domain.task.training), EvalContext(seed=1, artifact_dir=tmp_path / mode))
            assert ev.ok and ev.objectives["size_ratio"] < 0.6
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning) or "torch.ao" in str(w.message)]


def test_cache_identity_changes_with_the_task_its_data_the_baseline_the_runtime_the_machine_and_the_code(domain, tmp_path, monkeypatch):
    import shutil

    import evoforge.compression.domain as compress_domain

    base = domain.cache_identity()
    assert json.loads(json.dumps(base)) == base and domain.cache_identity() == base

    def identity(layout=None, **changes):
        other = CompressDomain.from_config({**domain.config(), **changes})
        other.attach(layout or domain.layout)
        return other.cache_identity()

    # what could be drawn is not what was drawn
    assert identity(timeout_s=123.0, space={"kinds": ["prune"]}, quantize_operator=False) == base
    # what a screening trains changes screenings only: `screening_identity`, keyed with the fidelity
    assert identity(screen_by="epochs") == base and domain.screening_identity() == {"screen_by": domain.screen_by}
    other_runtime = RunLayout(tmp_path / "other-runtime")
    shutil.copytree(domain.layout.baseline, other_runtime.baseline)
    for name in ("model.onnx", "model.pt"):  # the same bytes under both runtimes' names: only the runtime differs
        shutil.copyfile(domain.layout.baseline / domain.artifact, other_runtime.baseline / name)
    assert identity(other_runtime) == base
    assert identity(other_runtime, runtime="torchscript" if domain.runtime.name == "onnxruntime" else "onnxruntime") != base
    task = domain.task.to_dict()
    assert identity(task={**task, "baseline_epochs": task["baseline_epochs"] + 1}) != base
    assert identity(task={**task, "fingerprints": {**task["fingerprints"], "data": "0" * 64}}) != base
    assert identity(max_quality_drop=2.5) != base
    if domain.runtime.narrows_int8_weights:
        assert identity(int8_weight_bits=7) != base and identity(int8_weight_bits=8) != base
    copy = RunLayout(tmp_path / "copy")
    shutil.copytree(domain.layout.baseline, copy.baseline)
    assert identity(copy) == base
    artifact = copy.baseline / domain.artifact
    artifact.write_bytes(artifact.read_bytes() + b"\0")  # another baseline
    assert identity(copy) != base
    monkeypatch.setattr(compress_domain, "machine_name", lambda: "Other CPU (aarch64), 64 cores, i8mm")
    assert identity() != base  # a cached latency is only reused on the machine that measured it
    monkeypatch.undo()
    assert identity() == base
    monkeypatch.setattr(compress_domain, "code_identity", lambda libraries: {"source": "edited", "libraries": {}})
    assert identity() != base  # other code (an edited evoforge, another torch) computes it again
    monkeypatch.undo()
    real = compress_domain.code_identity

    def older_onnxruntime(libraries):
        identity = real(libraries)
        return {**identity, "libraries": {**identity["libraries"], "onnxruntime": "0.0"}}

    monkeypatch.setattr(compress_domain, "code_identity", older_onnxruntime)
    assert identity() != base


def test_a_screening_scores_the_baseline_against_itself_on_the_same_examples(domain, tmp_path):
    base = PipelineGenome(training=domain.task.training)
    half = domain.evaluate(base, EvalContext(seed=1, fidelity=0.5))
    assert half.ok and half.objectives["quality_drop"] == pytest.approx(0.0, abs=1e-9)
    full_val = domain.baseline_record()["validation"]["accuracy"]
    subset, subset_quality = domain._validation(0.5, 1)
    assert len(subset) == domain.screening_examples(0.5, len(domain._state["splits"].val)) < len(domain._state["splits"].val)
    assert half.metrics["val_accuracy"] == pytest.approx(subset_quality["accuracy"])
    assert 0 < subset_quality["accuracy"] and full_val > 0
    # ONNX Runtime screens a draft export against the baseline's draft: the same model measures 1.0
    assert half.metrics["draft_artifact"] is (domain.runtime.name == "onnxruntime")
    assert half.metrics["size_ratio"] == pytest.approx(1.0, abs=0.01)
    full = domain.evaluate(base, EvalContext(seed=1))
    assert full.metrics["draft_artifact"] is False and full.metrics["size_ratio"] == pytest.approx(1.0, abs=0.01)


def test_a_screening_scores_on_enough_examples_to_resolve_the_quality_limit():
    task = BUILTIN_TASKS["digits-mlp"].to_dict()
    one_point = CompressDomain(task, max_quality_drop=1.0)
    assert one_point.screening_examples(0.25, 1000) == 250
    assert one_point.screening_examples(0.25, 269) == 200  # one example is worth 0.5 points, not 1.5
    assert one_point.screening_examples(0.25, 150) == 150  # the whole split when it is smaller
    assert CompressDomain(task, max_quality_drop=None).screening_examples(0.25, 269) == 68
    assert CompressDomain(task, max_quality_drop=0.0).screening_examples(0.25, 269) == 269


def test_a_prefix_hit_is_bit_identical_to_recomputing_the_pipeline(domain, tmp_path):
    import torch

    from evoforge.compression.prefix import PrefixCache

    prune = Stage.make("prune", importance="taylor", ratio=0.4, steps=2, allocation="uniform", round_to=1, epochs=1)
    tune = Stage.make("finetune", epochs=1)
    first = PipelineGenome((prune, tune), domain.task.training)
    second = PipelineGenome((prune, tune, Stage.make("lowrank", energy=0.9, reg_epochs=1, epochs=1)), domain.task.training)
    cache = PrefixCache(tmp_path / "prefix", 2**30)
    state = domain._state
    _, reused = domain._compressed(first, 11, state, cache)
    assert reused == 0 and len(list((tmp_path / "prefix").glob("*.pt"))) == 2  # after each stage
    cached, reused = domain._compressed(second, 99, state, cache)  # another candidate seed: stage seeds come from the prefix
    fresh, none = domain._compressed(second, 99, state, None)
    assert reused == 2 and none == 0
    a, b = cached.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again, reused = domain._compressed(first, 5, state, cache)
    recomputed = domain._compressed(first, 5, state)[0].state_dict()
    assert reused == 2 and all(torch.equal(again.state_dict()[k], v) for k, v in recomputed.items())


def test_prefix_keys_follow_the_stages_the_training_settings_and_the_run(domain):
    import dataclasses

    from evoforge.compression.prefix import prefix_keys

    stages = (Stage.make("finetune", epochs=2), Stage.make("finetune", epochs=3))
    g = PipelineGenome(stages, domain.task.training)
    keys = prefix_keys(g, 0)
    assert len(keys) == 2 and prefix_keys(PipelineGenome(stages[:1], domain.task.training), 0) == keys[:1]
    assert prefix_keys(g, 1)[0] != keys[0]  # another run seed
    assert prefix_keys(dataclasses.replace(g, training=dataclasses.replace(g.training, lr=0.005)), 0)[0] != keys[0]
    assert prefix_keys(PipelineGenome((stages[1], stages[0]), domain.task.training), 0)[0] != keys[0]
    assert prefix_keys(g, 0, examples_fraction=1.0) == keys
    assert prefix_keys(g, 0, examples_fraction=0.25)[0] != keys[0]  # a screening's shorter epochs train another model


def test_a_prefix_stored_by_other_code_is_a_miss(domain, tmp_path):
    """Entries are keyed by the code that computed them: a run resumed after evoforge, a library or
    the machine changed recomputes its prefixes."""
    import torch

    from evoforge.compression.domain import evaluation_code_digest
    from evoforge.compression.prefix import PrefixCache

    model = torch.nn.Linear(3, 2)
    PrefixCache(tmp_path, 2**20, code="evoforge 1").save("k", model)
    loaded = PrefixCache(tmp_path, 2**20, code="evoforge 1").load("k")
    assert loaded is not None and torch.equal(loaded.weight, model.weight)
    assert PrefixCache(tmp_path, 2**20, code="evoforge 2").load("k") is None
    cache = domain._prefix_cache()
    assert cache is not None and cache.code == evaluation_code_digest() != ""


def test_a_screening_by_examples_keeps_every_epoch_and_trains_on_part_of_each(domain, tmp_path, monkeypatch):
    import evoforge.workload.training as training

    by_examples = CompressDomain.from_config({**domain.config(), "screen_by": "examples"})
    by_epochs = CompressDomain.from_config({**domain.config(), "screen_by": "epochs"})
    for other in (by_examples, by_epochs):
        other.attach(domain.layout)
    assert CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict()).screen_by == "examples"  # the default
    shares: list[tuple[int, float]] = []
    real = training.train

    def spy(model, data, settings, *, epochs, **kwargs):
        shares.append((epochs, training._EXAMPLES_PER_EPOCH.get()))
        return real(model, data, settings, epochs=epochs, **kwargs)

    import evoforge.compression.stages.finetune as finetune

    monkeypatch.setattr(finetune, "train", spy)
    genome = PipelineGenome((Stage.make("finetune", epochs=5),), domain.task.training)
    ev = by_examples.evaluate(genome, EvalContext(seed=1, fidelity=0.25))
    assert ev.ok and shares == [(5, 0.25)] and "finetune(5ep)" in ev.metrics["pipeline"]
    shares.clear()
    ev = by_epochs.evaluate(genome, EvalContext(seed=1, fidelity=0.25))
    assert ev.ok and shares == [(2, 1.0)]  # by epochs: a quarter of 5, the floor of 2, whole epochs
    shares.clear()
    assert by_examples.evaluate(genome, EvalContext(seed=1)).ok and shares == [(5, 1.0)]
    with pytest.raises(ConfigError, match="screen_by 'steps' is not one of: epochs, examples"):
        CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), screen_by="steps")
    assert CompressDomain.from_config({k: v for k, v in domain.config().items() if k != "screen_by"}).screen_by == "epochs"


def test_runs_stored_before_the_quantize_operator_resume_with_the_operators_they_had(domain):
    assert "quantize" in domain.mutations and domain.config()["quantize_operator"] is True
    legacy = {k: v for k, v in domain.config().items() if k != "quantize_operator"}
    assert "quantize" not in CompressDomain.from_config(legacy).mutations


def test_runs_stored_before_prefix_seeds_rebuild_members_with_their_old_seeds(domain):
    legacy = {k: v for k, v in domain.config().items() if k not in ("prefix_seed", "prefix_cache_mb")}
    assert CompressDomain.from_config(legacy).prefix_seed is None
    assert domain.prefix_seed == 0 and domain.prefix_cache_mb == 512.0
    with pytest.raises(ConfigError, match="prefix_cache_mb must be >= 0"):
        CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), prefix_cache_mb=-1)


def test_show_counts_what_prefix_reuse_saved(domain):
    from evoforge.search.evaluation import Evaluation, Status

    evaluations = {"a": Evaluation(Status.OK, metrics={"prefix_reused_stages": 2}), "b": Evaluation(Status.OK, metrics={}),
                   "c": Evaluation(Status.OK, metrics={"prefix_reused_stages": 1})}
    notes = domain.headline_notes(evaluations)
    assert "prefix reuse: 2 of 3 evaluations started from a stored intermediate model (3 stages not recomputed)" in notes
    assert not any("prefix reuse" in n for n in domain.headline_notes({"b": evaluations["b"]}))


def test_the_fp32_baseline_is_timed_in_every_other_runtime_but_inductor(domain, monkeypatch):
    elsewhere = domain.baseline_record()["fp32_elsewhere"]
    others = {"onnxruntime": {"openvino": True, "torchscript": False},  # the same file in OpenVINO, exported to TorchScript
              "torchscript": {"onnxruntime": False, "openvino": False}}[domain.runtime.name]  # one ONNX export for both
    assert {name: row["same_file"] for name, row in elsewhere.items() if "ratio_batch" in row} == others
    assert all(row["ratio_b1"] > 0 and row["ratio_batch"] > 0 for row in elsewhere.values() if "ratio_batch" in row)
    assert elsewhere["inductor"] == {"skipped": "its export compiles native code (tens of seconds); compare_runtimes='all' times it"}
    notes = domain.headline_notes({})
    assert sum(n.startswith(("the same fp32 file runs in ", "the fp32 model exported to ")) for n in notes) == len(others)
    for ratio, overstated in ((0.8, True), (1.1, False)):
        record = {"fp32_elsewhere": {"openvino": {"ratio_b1": 1.2, "ratio_batch": ratio, "same_file": True},
                                     "torchscript": {"ratio_b1": 2.0, "ratio_batch": 1.5, "same_file": False}}}
        monkeypatch.setattr(domain, "baseline_record", lambda r=record: r)
        notes = domain.headline_notes({})
        note = next(n for n in notes if n.startswith("the same fp32 file"))
        assert note.startswith(f"the same fp32 file runs in openvino at 1.2x this reference's latency at batch 1 and {ratio:.3g}x at batch")
        assert ("overstate the gain" in note) is overstated
        exported = next(n for n in notes if n.startswith("the fp32 model exported to torchscript runs at 2x"))
        assert "overstate" not in exported
        fastest = [n for n in notes if n.startswith("the fastest fp32 timed at batch")]
        assert fastest == ([f"the fastest fp32 timed at batch {domain.task.latency_batch} is openvino's, at 0.8x this reference: "
                            "latency_vs_best_fp32 = latency_ratio x 0.8, the gain over the best fp32 deployment measured here"]
                           if overstated else [])


def test_the_fastest_fp32_skips_runtimes_that_were_not_timed():
    from evoforge.compression.domain import fastest_fp32

    assert fastest_fp32({}) == (None, 1.0)
    record = {"fp32_elsewhere": {"inductor": {"skipped": "..."}, "openvino": {"error": "RuntimeError: x"},
                                 "torchscript": {"ratio_b1": 0.5, "ratio_batch": 1.3, "same_file": False},
                                 "onnxruntime": {"ratio_b1": 1.1, "ratio_batch": 0.7, "same_file": True}}}
    assert fastest_fp32(record) == ("onnxruntime", 0.7)


def test_compare_runtimes_none_times_nothing_else_and_bad_values_are_named(domain, tmp_path):
    quiet = CompressDomain.from_config({**domain.config(), "compare_runtimes": "none"})
    assert quiet._fp32_elsewhere(None, None, tmp_path / "unused", None, None) == {}
    with pytest.raises(ConfigError, match="compare_runtimes 'some' is not one of: fast, all, none"):
        CompressDomain(domain.task, compare_runtimes="some")


def test_show_names_what_the_probe_left_out(domain, monkeypatch):
    refused = {"quantize:static": "RuntimeError: " + "x" * 400, "prune:layers": "pruning keeps the channels of ['mid.0']",
               "quantize:qat": "not available on runtime 'onnxruntime'"}
    monkeypatch.setattr(domain, "baseline_record", lambda: {"refused": refused})
    note = next(n for n in domain.headline_notes({}) if n.startswith("the probe left out"))
    assert "refused): prune:layers: pruning keeps the channels of ['mid.0']; quantize:static: RuntimeError: xxx" in note
    assert note.endswith("...") and len(note) < 300  # a long reason is clipped
    assert "qat" not in note  # a mode the runtime lacks is its documented list, not a finding
    lacks = {"quantize:qat": "not available on runtime 'onnxruntime'", "quantize:bf16": "not available on this processor: ..."}
    monkeypatch.setattr(domain, "baseline_record", lambda: {"refused": lacks})
    assert not any(n.startswith("the probe left out") for n in domain.headline_notes({}))


def test_evaluations_and_the_baseline_record_the_machine_that_timed_them(domain, tmp_path):
    from evoforge.machine import machine_name

    assert domain.baseline_record()["machine"] == machine_name()
    ev = domain.evaluate(PipelineGenome(training=domain.task.training), EvalContext(seed=1, artifact_dir=tmp_path / "base"))
    assert ev.metrics["machine"] == machine_name()
    assert f"timed on {machine_name()}" in domain.headline_notes({"a": ev})


def test_finalize_time_is_estimated_from_the_members_own_timings():
    from evoforge.search.evaluation import Evaluation, Status

    d = CompressDomain(BUILTIN_TASKS["digits-mlp"].to_dict(), latency_repeats=5)
    def timed(latency_s, batch_ms, **more):
        return Evaluation(Status.OK, {}, metrics={"quality_s": 0.5, "latency_s": latency_s, "latency_batch_ms": batch_ms,
                                                  "baseline_latency_batch_ms": batch_ms, **more})

    fast, slow = timed(2.0, 1.0), timed(30.0, 900.0)
    assert d.finalize_seconds([("a", fast)]) == pytest.approx(0.5 + 3 * 2.0)  # three fresh timings fit in 20 s
    assert d.finalize_seconds([("b", slow)]) == pytest.approx(0.5 + 30.0)  # one
    assert d.finalize_seconds([("a", fast), ("b", slow)]) == pytest.approx(37.0)
    assert d.finalize_seconds([]) == 0.0
    slow_to_load = timed(2.0, 1.0, load_s=0.25)  # loaded for the test split, then with the baseline for each timing
    assert d.finalize_seconds([("c", slow_to_load)]) == pytest.approx(0.25 + 0.5 + 3 * (2 * 0.25 + 2.0))



def test_an_untrained_model_is_flagged_at_the_start_and_in_show(domain, tmp_path, caplog):
    import torch
    from torch import nn

    from evoforge.workload.task import Task

    assert not any(n.startswith("WARNING") for n in domain.headline_notes({}))  # the trained baseline is not flagged
    assert domain.baseline_record()["constant_prediction"]["validation"]["accuracy"] < 0.15  # digits: ten balanced classes
    torch.manual_seed(0)
    untrained = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    nn.init.zeros_(untrained[1].weight)  # every example gets the same scores: the constant prediction exactly
    d = CompressDomain(Task("untrained", untrained, "digits"), latency_repeats=3)
    d.attach(RunLayout(tmp_path / "run"))
    with caplog.at_level("WARNING", logger="evoforge"):
        d.prepare()
    warned = [r.getMessage() for r in caplog.records if r.name == "evoforge"]
    assert len(warned) == 1 and "the baseline's validation accuracy" in warned[0] and "untrained" in warned[0]
    assert d.headline_notes({})[0] == "WARNING: " + warned[0]
