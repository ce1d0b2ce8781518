import io
import json

import pytest

from evoforge.errors import ConfigError
from evoforge.front import Front, parse_pick_rule
from evoforge.pareto import Objective
from evoforge.problems import RealVector
from evoforge.progress import Callbacks, JsonEventLog, ProgressPrinter
from evoforge.search.engine import Search
from evoforge.search.evaluation import Evaluation, Status
from evoforge.search.termination import Termination
from evoforge.testing.domains import FaultDomain

OBJS = (Objective("drop"), Objective("latency"), Objective("acc", "maximize"))


def make_front(rows, constraints=None):
    evaluations, genomes = {}, {}
    for i, row in enumerate(rows):
        key = f"k{i}"
        c = {"limit": constraints[i]} if constraints else {}
        evaluations[key] = Evaluation(Status.OK, dict(zip(("drop", "latency", "acc"), row)), c)
        genomes[key] = RealVector((float(i),))
    evaluations["bad"] = Evaluation.failure(Status.CRASHED, "boom")
    return Front.from_evaluations(evaluations, genomes, OBJS)


def test_front_keeps_non_dominated_feasible_members_with_stable_ids():
    front = make_front([(0.0, 1.0, 0.9), (0.5, 0.5, 0.9), (1.0, 1.0, 0.8), (0.2, 0.3, 0.95)])
    assert front.feasible
    assert sorted(m.id for m in front) == [1, 4]  # row 2 and 3 are dominated by row 4
    assert [m.id for m in front] == [1, 4]  # sorted by the first objective
    assert front.by_id(4).key == "k3"
    with pytest.raises(ConfigError, match="no front member with id 2; front ids: 1, 4"):
        front.by_id(2)


def test_infeasible_front_holds_the_least_violating():
    front = make_front([(0.0, 1.0, 0.9), (0.5, 0.5, 0.9), (1.0, 0.2, 0.8)], constraints=[2.0, 0.5, 0.5])
    assert not front.feasible
    assert sorted(m.id for m in front) == [2, 3]
    assert not any(m.feasible for m in front)


def test_pick_and_frame():
    front = make_front([(0.0, 1.0, 0.9), (0.4, 0.5, 0.9), (0.9, 0.1, 0.9), (0.2, 0.8, 0.95)])
    assert front.pick(minimize="latency", max_drop=0.5).id == 2
    assert front.pick(minimize="acc").id == 4  # maximized objective
    assert front.pick(minimize="latency", min_acc=0.93).id == 4
    assert front.pick().id in {1, 2, 3, 4}
    with pytest.raises(ConfigError, match="unknown bound 'max_speed'"):
        front.pick(max_speed=1)
    with pytest.raises(ConfigError, match="relax the bounds"):
        front.pick(max_drop=-1)
    with pytest.raises(ConfigError, match="cannot minimize 'size'"):
        front.pick(minimize="size")
    frame = front.to_frame()
    assert list(frame.index) == [m.id for m in front] and {"drop", "latency", "acc", "key"} <= set(frame.columns)


def test_pick_by_the_numbers_measured_again_when_the_run_ended():
    rows = [(0.0, 1.0, 0.9), (0.4, 0.5, 0.9), (0.9, 0.1, 0.9), (0.2, 0.8, 0.95)]
    evaluations = {f"k{i}": Evaluation(Status.OK, dict(zip(("drop", "latency", "acc"), row))) for i, row in enumerate(rows)}
    genomes = {k: RealVector((float(i),)) for i, k in enumerate(evaluations)}
    retimed = {"k0": {"latency": 1.0}, "k1": {"latency": 0.3}, "k2": {"latency": 0.6}, "k3": {"latency": 0.9, "accuracy": 0.9}}
    front = Front.from_evaluations(evaluations, genomes, OBJS, retimed)
    assert front.by_id(3).held_out == {"latency": 0.6}
    assert front.pick_names() == ["drop", "latency", "acc", "test_latency"]
    assert front.pick(minimize="latency").id == 3  # the search's timing
    assert front.pick(minimize="test_latency").id == 2  # the timing taken after the search chose
    assert front.pick_rule("max_test_latency=0.7,minimize=drop").id == 2
    assert front.pick(minimize="latency", max_test_latency=0.5).id == 2
    with pytest.raises(ConfigError, match="cannot minimize 'test_acc'; names are .*'test_latency'"):
        front.pick(minimize="test_acc")
    partial = Front.from_evaluations(evaluations, genomes, OBJS, {"k1": {"latency": 0.3}, "k2": {"latency": float("nan")}})
    with pytest.raises(ConfigError, match="test_latency is not known for front members 1, 3, 4 .*; use latency"):
        partial.pick(minimize="test_latency")
    assert "test_latency" not in make_front(rows).pick_names()  # a run that has not ended yet


def test_pick_rules_written_as_text_choose_like_pick():
    front = make_front([(0.0, 1.0, 0.9), (0.4, 0.5, 0.9), (0.9, 0.1, 0.9), (0.2, 0.8, 0.95)])
    assert front.pick_rule("max_drop=0.5,minimize=latency").id == 2
    assert front.pick_rule(" min_acc = 0.93 , minimize=latency ").id == 4
    assert front.pick_rule("max_drop=0.5").id == front.pick(max_drop=0.5).id  # no minimize: the knee
    assert parse_pick_rule("max_drop=1,minimize=latency") == ("latency", {"max_drop": 1.0})
    with pytest.raises(ConfigError, match="cannot read 'drop<1' in pick rule"):
        front.pick_rule("drop<1")
    with pytest.raises(ConfigError, match="max_drop='one' in pick rule .* is not a number"):
        front.pick_rule("max_drop=one")
    with pytest.raises(ConfigError, match="names minimize twice"):
        front.pick_rule("minimize=latency,minimize=drop")
    with pytest.raises(ConfigError, match="unknown bound 'max_speed'"):
        front.pick_rule("max_speed=1")


def test_empty_front():
    front = Front.from_evaluations({"x": Evaluation.failure(Status.FAILED, "no")}, {}, OBJS)
    assert len(front) == 0 and not front.feasible and front.to_records() == []


def test_progress_and_json_log(tmp_path):
    stream = io.StringIO()
    term = Termination(max_evaluations=12)
    log = JsonEventLog(tmp_path / "events.jsonl")
    s = Search.create(FaultDomain(["ok", "raise", "ok", "nan"]), algorithm_options={"pop_size": 4}, termination=term)
    s.run(callback=Callbacks(ProgressPrinter(term, stream=stream), log))
    log.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == s.generation + 1
    assert lines[0].startswith("gen   0 | evals     4 | failures failed 2 | HV ")
    assert "ETA" in lines[-1] and "best f1=" in lines[-1]
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "evaluation" for e in events) == 12
    assert sum(e["event"] == "generation" for e in events) == s.generation + 1
    assert {e["status"] for e in events if e["event"] == "evaluation"} >= {"ok", "failed"}


def test_with_patience_the_progress_counts_the_plateau_up_to_the_stop(tmp_path):
    from evoforge.problems import BenchmarkDomain

    stream = io.StringIO()
    term = Termination(max_evaluations=2000, stagnation_generations=2)
    log = JsonEventLog(tmp_path / "events.jsonl")
    s = Search.create(BenchmarkDomain("zdt1", n_var=4), algorithm_options={"pop_size": 4}, termination=term, seed=3)
    s.run(callback=Callbacks(ProgressPrinter(term, stream=stream), log))
    log.close()
    archive = [r["archive_hypervolume"] for r in s.store.generations()]
    expected = [min(term.plateau(archive[: i + 1]), 2) for i in range(len(archive))]
    plateaus = [line.split("plateau ")[1].split(" |")[0] for line in stream.getvalue().splitlines()]
    assert plateaus == [f"{p}/2" for p in expected] and plateaus[-1] == "2/2" and "1/2" in plateaus[:-1]
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [min(e["plateau"], 2) for e in events if e["event"] == "generation"] == expected
    without = Termination(max_evaluations=8)
    stream = io.StringIO()
    Search.create(BenchmarkDomain("zdt1", n_var=4), algorithm_options={"pop_size": 4}, termination=without).run(
        callback=ProgressPrinter(without, stream=stream))
    assert stream.getvalue() and "plateau" not in stream.getvalue()  # no patience, no count


class _MeasuringDomain(FaultDomain):
    measures_front = True

    def finalize(self, members):
        return {key: {"test_score": 1.0} for key, _ in members}


@pytest.mark.parametrize("measures", [True, False])
def test_the_progress_says_when_the_front_members_are_measured_again_and_only_then(tmp_path, measures):
    import evoforge
    from evoforge.api import open_store

    stream = io.StringIO()
    log = JsonEventLog(tmp_path / "events.jsonl")
    printer = ProgressPrinter(Termination(max_evaluations=8), stream=stream)
    domain = _MeasuringDomain(["ok"]) if measures else FaultDomain(["ok"])
    front = evoforge.optimize(domain, run_dir=tmp_path / "run", budget=8, pop_size=4, callback=Callbacks(printer, log))
    log.close()
    plural = "" if len(front) == 1 else "s"
    said = f"measuring the {len(front)} front member{plural} again (held-out data, timing)"
    last = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])
    with open_store(tmp_path / "run", readonly=True) as store:
        final = store.meta("final", {}) or {}
    if measures:
        assert stream.getvalue().splitlines()[-1] == said
        assert last["event"] == "finalize" and last["members"] == len(front) > 0
        assert set(final) == {m.key for m in front}
    else:  # a domain with nothing to measure (a benchmark problem) does not claim to
        assert said not in stream.getvalue() and last["event"] != "finalize" and final == {}


def test_the_live_line_counts_screenings_apart_from_evaluations():
    from evoforge.search.engine import Candidate

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    printer = ProgressPrinter(Termination(max_evaluations=10), stream=stream)
    for i, fidelity in enumerate((0.25, 0.25, 0.25, 1.0)):
        candidate = Candidate(f"k{i}", None, 0, "sample", None, 0, fidelity)  # type: ignore[arg-type]
        result = Evaluation.failure(Status.FAILED, "screened out") if i == 0 else Evaluation(Status.OK, {"f1": 1.0})
        printer.on_evaluation(candidate, result)
    assert stream.getvalue().rsplit("\r", 1)[-1].startswith("  gen 0 | 1 evaluated (3 screened) this session | failures 0")


def test_tables_escape_control_characters():
    from evoforge.report import format_table

    table = format_table([{"id": 1, "pipeline": "evil\x1b[2Jname\nnext"}])
    assert "\x1b" not in table and "\\x1b[2J" in table and "\n" not in table.splitlines()[1]
