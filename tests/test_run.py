"""RunSpec: one name, one default per domain and one check for every run setting."""

import pytest

from evoforge.errors import ConfigError, UnknownNameError
from evoforge.run import SETTINGS, RunSpec, stored_spec
from evoforge.search.termination import Termination


def test_build_takes_domain_defaults_then_the_users_settings():
    defaults = {"algorithm": "petra", "pop_size": 10, "budget": "10m", "workers": 1}
    spec = RunSpec.build(defaults, budget=40, seed=0, workers=None, timeout_s=None)
    assert spec.algorithm == "petra" and spec.pop_size == 10 and spec.workers == 1  # None means "not given"
    assert spec.budget == 40 and spec.termination() == Termination(max_evaluations=40) and spec.seed == 0
    assert spec.algorithm_options() == {"pop_size": 10}
    assert RunSpec.build(defaults, budget={"max_generations": 3}).termination().max_generations == 3
    assert RunSpec.build(defaults, budget=Termination(max_seconds=5.0)).budget == Termination(max_seconds=5.0).to_dict()
    patient = RunSpec.build(defaults, budget=200, patience=3)
    assert patient.termination() == Termination(max_evaluations=200, stagnation_generations=3)  # the budget still caps it
    assert RunSpec.from_dict(patient.to_dict()) == patient


def test_json_round_trip_and_replace():
    spec = RunSpec(algorithm="random", pop_size=4, initial_size=12, budget="90s", seed=7, workers=2, timeout_s=30.0)
    assert RunSpec.from_dict(spec.to_dict()) == spec
    longer = spec.replace(budget=100, workers=None)
    assert longer.budget == 100 and longer.workers == 2 and longer.seed == 7
    ray = RunSpec(executor="ray", address="auto", resources={"num_cpus": 2})
    assert ray.replace(executor="local").address is None  # the stored address belongs to the old executor


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"algoritm": "petra"}, ConfigError, "unknown run settings \\['algoritm'\\]; valid: algorithm, pop_size"),
        ({"algorithm": "cmaes"}, UnknownNameError, "valid names: nsga2, petra, random"),
        ({"pop_size": 1}, ConfigError, "pop_size must be at least 2"),
        ({"initial_size": 0}, ConfigError, "initial_size=0 is invalid; use a positive integer"),
        ({"budget": "ten minutes"}, ConfigError, "budget 'ten minutes' is not understood"),
        ({"workers": -1}, ConfigError, "workers=-1"),
        ({"seed": -3}, ConfigError, "seed=-3"),
        ({"timeout_s": 0}, ConfigError, "timeout_s=0"),
        ({"executor": "dask"}, ConfigError, "valid: local, ray"),
        ({"address": "auto"}, ConfigError, "ray executor only"),
        ({"algorithm": "nsga2", "preselect": 4}, ConfigError, "preselect=4 applies to the petra algorithm only"),
        ({"algorithm": "petra", "preselect": 0}, ConfigError, "preselect=0 is invalid; use a positive integer"),
        ({"patience": 0}, ConfigError, "patience=0 is invalid; use a positive integer"),
        ({"budget": {"max_evaluations": 9, "stagnation_eps": 1.0}}, ConfigError, "stagnation_eps must be a relative gain in \\[0, 1\\)"),
        ({"algorithm": "nsga2", "explore": 0.25}, ConfigError, "explore=0.25 applies to the petra algorithm only"),
        ({"algorithm": "petra", "explore": 1.5}, ConfigError, "explore=1.5 is invalid; use a share from 0"),
        ({"algorithm": "petra", "explore": "some"}, ConfigError, "explore='some' is invalid"),
        ({"algorithm": "petra", "explore": 0.25}, ConfigError, "explore=0.25 has no effect without pre-selection; add preselect 8"),
    ],
)
def test_bad_settings_name_the_value_and_the_fix(settings, error, message):
    with pytest.raises(error, match=message):
        RunSpec.build({}, **settings)


def test_specs_of_runs_stored_before_specs_existed():
    legacy = {"algorithm": {"name": "petra", "options": {"pop_size": 6, "offspring_size": 6}},
              "termination": {"max_evaluations": 30}, "seed": 4}
    spec = stored_spec(legacy, {"workers": 2, "timeout_s": 100.0, "executor": "local"})
    assert (spec.algorithm, spec.pop_size, spec.seed, spec.workers, spec.timeout_s) == ("petra", 6, 4, 2, 100.0)
    assert spec.preselect == 1 and spec.explore == 0.0  # petra ran without pre-selection then
    assert spec.termination().max_evaluations == 30
    assert set(spec.to_dict()) == set(SETTINGS)
