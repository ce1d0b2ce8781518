import numpy as np
import pytest

from evoforge.errors import ConfigError, UnknownNameError
from evoforge.problems import BenchmarkDomain
from evoforge.search.algorithms import ALGORITHMS, adapted_rates, make_algorithm
from evoforge.search.engine import Search
from evoforge.search.termination import Termination
from evoforge.testing.domains import AdaptationDomain


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(UnknownNameError, match="valid names: nsga2, petra, random"):
        make_algorithm("cmaes")
    with pytest.raises(ConfigError, match="pop_size"):
        make_algorithm("nsga2", pop_size=1)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_improves_on_zdt1(name):
    s = Search.create(BenchmarkDomain("zdt1", n_var=10), algorithm=name, algorithm_options={"pop_size": 20},
                      termination=Termination(max_evaluations=400), seed=1)
    s.run()
    hv = [r["hypervolume"] for r in s.store.generations()]
    assert hv[-1] >= hv[0]
    assert all(len(r["population"]) <= 20 for r in s.store.generations())


def test_nsga2_beats_random_on_zdt1():
    def final_hv(name):
        s = Search.create(BenchmarkDomain("zdt1", n_var=10), algorithm=name, algorithm_options={"pop_size": 20},
                          termination=Termination(max_evaluations=1000), seed=2)
        s.run()
        return s.store.generations()[-1]["hypervolume"]

    assert final_hv("nsga2") > final_hv("random") + 0.05


def test_adapted_rates_formula():
    rates = adapted_rates({"a": [8, 10], "b": [0, 10]}, floor=0.05)
    assert sum(rates.values()) == pytest.approx(1.0)
    qa, qb = 9 / 12, 1 / 12
    assert rates["a"] == pytest.approx(0.05 + 0.9 * qa / (qa + qb))
    extreme = adapted_rates({"a": [1000, 1000], "b": [0, 1000], "c": [0, 1000]}, floor=0.05)
    assert min(extreme.values()) >= 0.05 - 1e-12
    assert adapted_rates({"a": [0, 0], "b": [0, 0]}, floor=0.05) == {"a": 0.5, "b": 0.5}


def test_petra_rates_move_towards_the_operator_that_succeeds():
    s = Search.create(AdaptationDomain(), algorithm="petra", algorithm_options={"pop_size": 8},
                      termination=Termination(max_generations=25), seed=0)
    s.run()
    records = s.store.generations()
    first, last = records[1]["operator_rates"], records[-1]["operator_rates"]
    assert last["improve"] > first["improve"]
    assert last["improve"] > last["worsen"] and last["improve"] > last["wander"]
    assert all(v >= 0.05 - 1e-12 for v in last.values())
    successes, trials = records[-1]["operator_stats"]["improve"]
    assert 0 < successes <= trials


def test_petra_state_round_trips_and_survival_keeps_front():
    algo = make_algorithm("petra", pop_size=4)
    algo.load_state({"stats": {"x": [2, 5]}})
    assert algo.state() == {"stats": {"x": [2, 5]}}
    s = Search.create(BenchmarkDomain("zdt1", n_var=4), algorithm="petra", algorithm_options={"pop_size": 6},
                      termination=Termination(max_evaluations=60), seed=4)
    s.run()
    # elitism: the hypervolume of the population never drops
    hv = np.array([r["hypervolume"] for r in s.store.generations()])
    assert np.all(np.diff(hv) >= -1e-12)
