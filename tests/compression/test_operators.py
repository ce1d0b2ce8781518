import dataclasses

import numpy as np
import pytest

from evoforge.compression.genome import CLASSIFICATION_LOSSES, REGRESSION_LOSSES, STAGE_SPACES, PipelineGenome, Stage, TrainingSettings
from evoforge.compression.operators import (
    SCREENING_MIN_EPOCHS,
    PipelineOperators,
    SearchSpace,
    at_fidelity,
    pipeline_features,
    sample_value,
    step_value,
    uses_training_settings,
)
from evoforge.errors import ConfigError, UnknownNameError

OPS = PipelineOperators("classification")
REG = OPS.registry()


def some_pipeline(rng):
    return OPS.sample(rng, base=TrainingSettings())


def test_registry_names_and_unknown():
    assert sorted(REG) == sorted(["local", "insert", "remove", "swap", "replace", "quantize", "training"])
    assert "quantize" not in PipelineOperators("classification", quantize_operator=False).registry()  # runs stored before it
    assert "quantize" not in PipelineOperators("classification", SearchSpace(kinds=("prune", "finetune"))).registry()
    with pytest.raises(UnknownNameError, match="valid names: .*insert"):
        REG["crossbreed"]


@pytest.mark.parametrize("name", sorted(REG))
def test_every_operator_returns_valid_new_genomes(name):
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(200):
        g = some_pipeline(rng)
        child = REG[name](g, rng)
        assert isinstance(child, PipelineGenome)
        PipelineGenome(child.stages, child.training)  # re-validates every rule
        assert child.training.loss in CLASSIFICATION_LOSSES
        changed += child != g
    assert changed >= 190  # operators must actually move


def test_local_changes_exactly_one_hyperparameter_of_one_stage():
    rng = np.random.default_rng(1)
    for _ in range(100):
        g = some_pipeline(rng)
        child = OPS.local(g, rng)
        assert [s.kind for s in child.stages] == [s.kind for s in g.stages]
        diffs = [(k, a, b) for s0, s1 in zip(g.stages, child.stages) for (k, a), (_, b) in zip(s0.params, s1.params) if a != b]
        assert len(diffs) <= 1
        assert child.training == g.training


def test_a_quantize_stage_that_does_not_train_carries_no_epochs():
    """Only QAT trains, so epochs in a static, dynamic or weight-only stage would make two genomes
    of one model: the canonical form drops them and local moves never touch them."""
    rng = np.random.default_rng(4)
    for mode in ("static", "dynamic", "weight_only"):
        stage = Stage.make("quantize", mode=mode, per_channel=True, keep_float_edges=False, epochs=3)
        g = PipelineGenome((Stage.make("finetune", epochs=2), stage))
        assert OPS.canonical(g).stages[1]["epochs"] == 0
        assert OPS.canonical(g).stages[0]["epochs"] == 2
        parent = OPS.canonical(g)
        children = [REG["local"](parent, rng) for _ in range(60)]
        assert all(c.stages[1]["epochs"] == 0 for c in children)
        assert all(c != parent for c in children)  # every local move changes the model
    qat = PipelineGenome((Stage.make("quantize", mode="qat", per_channel=True, keep_float_edges=False, epochs=3),))
    assert OPS.canonical(qat).stages[0]["epochs"] == 3


def test_weight_only_int8_has_one_form_whatever_its_per_channel_flag():
    """int8 weight-only keeps one scale per output row either way, so per_channel would make two
    genomes of one model."""
    rng = np.random.default_rng(5)
    stage = Stage.make("quantize", mode="weight_only", per_channel=False, keep_float_edges=False, epochs=0)
    g = PipelineGenome((Stage.make("finetune", epochs=2), stage))
    parent = OPS.canonical(g)
    assert parent.stages[1]["per_channel"] is True and parent == OPS.canonical(parent)
    children = [REG["local"](parent, rng) for _ in range(60)]
    assert all(c.stages[1]["per_channel"] is True for c in children if c.stages[1]["mode"] == "weight_only")
    assert any(c.stages[1]["keep_float_edges"] for c in children)  # the flag that matters still moves
    for mode in ("static", "dynamic", "qat"):
        other = Stage.make("quantize", mode=mode, per_channel=False, keep_float_edges=False, epochs=0)
        assert OPS.canonical(PipelineGenome((other,))).stages[0]["per_channel"] is False


def test_a_space_without_named_parts_never_draws_them():
    space = SearchSpace().without(["lowrank", "prune:random", "prune:taylor", "quantize:bf16"])
    assert "lowrank" not in space.kinds and {"random", "taylor"}.isdisjoint(space.importances) and "bf16" not in space.quant_modes
    assert len(space.importances) == len(SearchSpace().importances) - 2
    ops = PipelineOperators("classification", space)
    rng = np.random.default_rng(0)
    drawn = [ops.sample(rng, base=TrainingSettings()) for _ in range(300)]
    assert all(space.allows(g) for g in drawn)
    assert {s.kind for g in drawn for s in g.stages} == {"prune", "quantize", "finetune"}
    without_quantize = SearchSpace().without([f"quantize:{m}" for m in SearchSpace().quant_modes])
    assert "quantize" not in without_quantize.kinds  # no mode left: no stage of that kind


def test_bf16_has_one_form_whatever_its_int8_flags():
    forms = {OPS.canonical(PipelineGenome((Stage.make("quantize", mode="bf16", per_channel=pc, keep_float_edges=edges, epochs=e),)))
             for pc in (False, True) for edges in (False, True) for e in (0, 3)}
    assert len(forms) == 1
    (form,) = forms
    assert dict(form.stages[0].params) == {"mode": "bf16", "per_channel": True, "keep_float_edges": False, "epochs": 0}
    static = Stage.make("quantize", mode="static", per_channel=True, keep_float_edges=True, epochs=0)
    assert OPS.canonical(PipelineGenome((static,))).stages[0]["keep_float_edges"] is True  # int8 keeps the flag


def test_structural_operators():
    rng = np.random.default_rng(2)
    empty = PipelineGenome()
    assert len(OPS.insert(empty, rng).stages) == 1
    assert len(OPS.remove(empty, rng).stages) == 1  # falls back to insert
    full = PipelineGenome(tuple(OPS.random_stage("finetune", rng) for _ in range(4)))
    assert len(OPS.insert(full, rng).stages) == 4  # falls back to replace
    g = PipelineGenome((OPS.random_stage("prune", rng), OPS.random_stage("lowrank", rng), OPS.random_stage("quantize", rng)))
    swapped = OPS.swap(g, rng)
    assert [s.kind for s in swapped.stages] == ["lowrank", "prune", "quantize"]
    replaced = OPS.replace(g, rng)
    assert sum(a.kind != b.kind for a, b in zip(g.stages, replaced.stages)) == 1


def test_the_quantize_operator_appends_int8_or_draws_the_int8_stage_anew():
    rng = np.random.default_rng(6)
    float_pipeline = PipelineGenome((OPS.random_stage("finetune", rng), OPS.random_stage("prune", rng)))
    for _ in range(20):
        child = REG["quantize"](float_pipeline, rng)
        assert child.stages[:2] == float_pipeline.stages and [s.kind for s in child.stages] == ["finetune", "prune", "quantize"]
        again = REG["quantize"](child, rng)
        assert again.stages[:2] == float_pipeline.stages and again.stages[2].kind == "quantize"
        assert OPS.canonical(again) != OPS.canonical(child)  # another mode or flags, never the same stage
    full = PipelineGenome(tuple(OPS.random_stage("finetune", rng) for _ in range(4)))
    assert len(OPS.quantize(full, rng).stages) == 4  # no room: falls back to local


def test_the_quantize_operator_finds_the_int8_versions_a_toy_domain_rewards():
    """On `PipelineRateDomain` int8 quarters a pipeline's size at no quality cost, so the best
    front is int8 throughout (the known answer). With the operator, petra's fronts hold more
    int8 members and more hypervolume, in most seeds."""
    from evoforge.front import feasible_hypervolume
    from evoforge.pareto import reference_point
    from evoforge.search.engine import Search
    from evoforge.search.termination import Termination
    from evoforge.testing.domains import PipelineRateDomain

    def run(quantize_operator: bool, seed: int) -> float:
        domain = PipelineRateDomain(quantize_operator=quantize_operator)
        search = Search.create(domain, algorithm="petra", algorithm_options={"pop_size": 10},
                               termination=Termination(max_evaluations=60), seed=seed)
        search.run()
        return feasible_hypervolume(search.store.evaluations().values(), domain.objectives, reference_point(domain.objectives))

    wins = sum(run(True, seed) > run(False, seed) for seed in range(8))
    assert wins >= 6


def test_the_training_operator_changes_one_training_setting_and_nothing_else():
    rng = np.random.default_rng(3)
    g = PipelineGenome((OPS.random_stage("prune", rng),))
    changed: set[str] = set()
    for _ in range(200):
        child = REG["training"](g, rng)
        diff = [f.name for f in dataclasses.fields(g.training) if getattr(child.training, f.name) != getattr(g.training, f.name)]
        assert child.stages == g.stages and len(diff) == 1
        changed.update(diff)
    assert changed == {"optimizer", "lr", "loss", "hoyer_weight", "ortho_weight", "weight_decay"}
    assert OPS.optimizer(g, rng).training.optimizer != g.training.optimizer


def test_regression_losses():
    ops = PipelineOperators("regression")
    rng = np.random.default_rng(4)
    g = PipelineGenome(training=TrainingSettings(loss="mse"))
    assert {ops.loss(g, rng).training.loss for _ in range(30)} == set(REGRESSION_LOSSES) - {"mse"}


def test_value_moves_stay_in_range():
    rng = np.random.default_rng(5)
    for specs in STAGE_SPACES.values():
        for spec in specs:
            for _ in range(50):
                v = sample_value(spec, rng)
                spec.validate(v, "t")
                spec.validate(step_value(spec, v, rng), "t")
    round_to = next(s for s in STAGE_SPACES["prune"] if s.name == "round_to")
    assert {step_value(round_to, 4, rng) for _ in range(40)} == {1, 8}  # ordinal neighbours


def test_operators_are_deterministic_in_the_rng():
    a = [OPS.insert(PipelineGenome(), np.random.default_rng(9)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    assert dataclasses.is_dataclass(a[0]) and isinstance(a[0].stages[0], Stage)


def test_a_narrowed_search_space_is_all_the_operators_draw():
    space = SearchSpace(kinds=("finetune", "prune", "quantize"), importances=("l1",), quant_modes=("dynamic",))
    ops = PipelineOperators("classification", space)
    rng = np.random.default_rng(4)
    genomes = [ops.sample(rng, base=TrainingSettings()) for _ in range(200)]
    for _ in range(5):
        genomes = [ops.registry()[name](g, rng) for g in genomes for name in ("local", "insert", "replace")][:600]
    stages = [s for g in genomes for s in g.stages]
    assert {s.kind for s in stages} == {"finetune", "prune", "quantize"}
    assert {s["importance"] for s in stages if s.kind == "prune"} == {"l1"}
    assert {s["mode"] for s in stages if s.kind == "quantize"} == {"dynamic"}
    assert all(space.allows(g) for g in genomes)
    assert SearchSpace(importances=()).kinds == ("finetune", "lowrank", "quantize")  # no importance: no prune stage
    assert SearchSpace.from_dict(space.to_dict()) == space
    with pytest.raises(ConfigError, match="unknown; valid"):
        SearchSpace(quant_modes=("int4",))


def test_pipelines_are_fitted_to_the_epoch_cap():
    from evoforge.compression.operators import training_epochs

    g = PipelineGenome((
        Stage.make("prune", importance="l1", ratio=0.5, steps=2, allocation="uniform", round_to=4, epochs=6),
        Stage.make("lowrank", energy=0.9, reg_epochs=4, epochs=3),
        Stage.make("quantize", mode="qat", per_channel=True, keep_float_edges=False, epochs=2),
    ))
    assert training_epochs(g) == 6 + 1.5 * 4 + 3 + 2 * 2
    space = SearchSpace(max_epochs=8)
    fitted = space.fit(g)
    assert training_epochs(fitted) <= 8 and space.allows(fitted) and not space.allows(g)
    assert [s.kind for s in fitted.stages] == ["prune", "lowrank", "quantize"]  # epochs lowered, stages kept
    assert space.fit(fitted) == fitted and SearchSpace().fit(g) == g
    tight = SearchSpace(max_epochs=1)
    assert training_epochs(tight.fit(g)) <= 1  # lowrank needs 1.5: it goes
    ops = PipelineOperators("classification", space)
    rng = np.random.default_rng(5)
    children = [ops.registry()[name](g, rng) for name in ops.registry() for _ in range(20)]
    assert all(training_epochs(c) <= 8 for c in children)
    assert all(training_epochs(ops.sample(rng, base=TrainingSettings())) <= 8 for _ in range(50))


def test_training_settings_of_a_pipeline_that_never_trains_stay_the_base():
    base = TrainingSettings(lr=3e-3)
    ops = PipelineOperators("classification", SearchSpace(), base)
    static = PipelineGenome((Stage.make("quantize", mode="static", per_channel=True, keep_float_edges=False, epochs=0),), base)
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert ops.registry()["training"](static, rng) == static  # nothing to change: the engine draws again
    tuned = PipelineGenome((Stage.make("finetune", epochs=2),), base)
    assert ops.registry()["training"](tuned, rng).training != base  # a training pipeline keeps its change
    taylor = PipelineGenome((Stage.make("prune", importance="taylor", ratio=0.3, steps=1, allocation="uniform", round_to=1,
                                        epochs=0),), base)
    assert ops.loss(taylor, rng).training.loss != base.loss  # the loss drives taylor's gradients
    assert ops.canonical(ops.loss(taylor, rng)).training.loss != base.loss


def test_sampled_pipelines_fine_tune_below_the_training_rate():
    from evoforge.compression.operators import fine_tuning_rate, uses_training_settings

    base = TrainingSettings(lr=3e-3, loss="label_smoothing")
    ops = PipelineOperators("classification", SearchSpace(), base)
    rng = np.random.default_rng(0)
    genomes = [ops.sample(rng, base=base) for _ in range(300)]
    trained = [g for g in genomes if uses_training_settings(g)]
    rates = np.array([g.training.lr for g in trained])
    assert len(trained) > 100 and rates.min() >= 3e-4 and rates.max() <= 3e-3
    assert np.mean(rates < 3e-3 / np.sqrt(10)) == pytest.approx(0.5, abs=0.1)  # log-uniform: half below the middle
    assert all(dataclasses.replace(g.training, lr=base.lr) == base for g in trained)  # only the rate is drawn
    assert all(g.training == base for g in genomes if not uses_training_settings(g))  # canonical where it cannot matter
    assert 1e-4 <= fine_tuning_rate(5e-4, rng) <= 5e-4 and fine_tuning_rate(0.05, rng) <= 1e-2  # inside the range


def test_pipeline_features_describe_what_a_model_can_learn_from():
    training = TrainingSettings(lr=1e-3, weight_decay=1e-4)
    g = PipelineGenome((Stage.make("prune", importance="l2", ratio=0.5, steps=1, allocation="global", round_to=8, epochs=3),
                        Stage.make("prune", importance="l1", ratio=0.5, steps=1, allocation="uniform", round_to=1, epochs=0),
                        Stage.make("quantize", mode="static", per_channel=True, keep_float_edges=False, epochs=0)), training)
    f = pipeline_features(g)
    assert f["stages"] == "prune -> prune -> quantize"
    assert f["prune importance"] == "l2" and f["prune ratio"] == 0.5  # the first stage of a kind
    assert f["prune kept"] == pytest.approx(0.25)  # both prunings together
    assert f["quantize mode"] == "static" and f["quantize per_channel"] == "True"  # bools are categories
    assert f["training epochs"] == 3.0
    assert f["training lr"] == pytest.approx(-3.0) and f["training weight_decay"] == pytest.approx(-4.0)
    assert f["training optimizer"] == "adam"
    assert "quantize epochs" not in f  # only QAT trains
    qat = dataclasses.replace(g, stages=g.stages[:2] + (g.stages[2].replace(mode="qat", epochs=2),))
    assert pipeline_features(qat)["quantize epochs"] == 2
    quant_only = pipeline_features(PipelineGenome((Stage.make("quantize", mode="dynamic", per_channel=False,
                                                              keep_float_edges=False, epochs=0),), training))
    assert "training lr" not in quant_only and "prune kept" not in quant_only  # settings that cannot matter are left out
    assert pipeline_features(PipelineGenome((), training)) == {"stages": "none", "training epochs": 0.0}


def test_a_screening_trains_a_fraction_of_every_epoch_count_but_keeps_the_first_epochs():
    g = PipelineGenome((Stage.make("lowrank", energy=0.9, reg_epochs=10, epochs=3),
                        Stage.make("finetune", epochs=1),
                        Stage.make("prune", ratio=0.4, importance="l2", steps=1, allocation="uniform", round_to=4, epochs=6),
                        Stage.make("quantize", mode="qat", per_channel=True, keep_float_edges=False, epochs=5)))
    quarter = at_fidelity(g, 0.25)
    assert [s["epochs"] for s in quarter.stages] == [SCREENING_MIN_EPOCHS, 1, SCREENING_MIN_EPOCHS, SCREENING_MIN_EPOCHS]
    assert quarter.stages[0]["reg_epochs"] == 3  # 10 * 0.25 = 2.5 -> 3
    assert quarter.stages[1]["epochs"] == 1  # a count below the floor is kept as it is
    assert [s.kind for s in quarter.stages] == [s.kind for s in g.stages]
    assert at_fidelity(g, 0.1).stages[0]["reg_epochs"] == SCREENING_MIN_EPOCHS
    assert [s["epochs"] for s in at_fidelity(g, 0.25, min_epochs=0).stages] == [1, 1, 2, 1]  # plain scaling, half up
    assert at_fidelity(g, 1.0) is g


def test_structural_mutations_of_a_training_pipeline_drift_its_rate_about_half_the_time():
    rng = np.random.default_rng(5)
    trains = PipelineGenome((Stage.make("prune", importance="l2", ratio=0.5, steps=1, allocation="uniform", round_to=8, epochs=3),),
                            TrainingSettings(lr=3e-3))
    for drift, low, high in ((0.5, 0.35, 0.65), (0.0, 0.0, 0.0), (1.0, 0.9, 1.0)):
        reg = PipelineOperators("classification", rate_drift=drift).registry()
        children = [reg[name](trains, rng) for name in ("local", "insert", "remove", "swap", "replace") for _ in range(60)]
        moved = [c.training.lr != trains.training.lr for c in children if uses_training_settings(c)]
        assert moved and low <= np.mean(moved) <= high, (drift, np.mean(moved))
        assert all(c.training.optimizer == trains.training.optimizer and c.training.loss == trains.training.loss for c in children)
    with pytest.raises(ConfigError, match="rate_drift must be in"):
        PipelineOperators("classification", rate_drift=1.5)


def test_rate_drift_finds_the_better_fine_tuning_rate_that_warm_starts_miss():
    """On a toy domain whose best rate is a tenth of the warm starts' (the known answer), runs with
    the drift reach a better front than runs where only the training operator moves the rate."""
    from evoforge.front import feasible_hypervolume
    from evoforge.pareto import reference_point
    from evoforge.search.engine import Search
    from evoforge.search.termination import Termination
    from evoforge.testing.domains import PipelineRateDomain

    def final_hypervolume(drift: float, seed: int) -> float:
        domain = PipelineRateDomain(rate_drift=drift)
        search = Search.create(domain, algorithm="petra", algorithm_options={"pop_size": 10},
                               termination=Termination(max_evaluations=100), seed=seed)
        search.run()
        return feasible_hypervolume(list(search.store.evaluations().values()), domain.objectives, reference_point(domain.objectives))

    without = [final_hypervolume(0.0, seed) for seed in range(10)]
    drifting = [final_hypervolume(0.5, seed) for seed in range(10)]
    assert np.median(drifting) > np.median(without) and np.mean(drifting) > np.mean(without), (drifting, without)
