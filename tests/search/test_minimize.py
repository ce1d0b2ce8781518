"""Minimizing front members: the greedy removal alone, and through the engine, the store and the API."""

import pytest

import evoforge
from evoforge.api import open_store
from evoforge.errors import ConfigError
from evoforge.pareto import Objective
from evoforge.report.data import collect_run
from evoforge.report.text import run_summary
from evoforge.search.engine import Search
from evoforge.search.evaluation import Evaluation, Status
from evoforge.search.minimize import MINIMIZED_META, MINIMIZED_METRIC, Minimization
from evoforge.search.termination import Termination
from evoforge.testing.domains import PartsDomain, PartsGenome

MEMBER = ("idle-1", "fast-1", "costly-1", "idle-2")


def drive(minimization, domain):
    """Evaluate what the minimization wants until it is finished; returns the genomes evaluated."""
    from evoforge.search.domain import EvalContext

    asked = []
    while not minimization.finished:
        wanted = minimization.wanted()
        assert wanted, "an unfinished minimization must want something"
        for request in wanted:
            asked.append(request.genome)
            try:
                evaluation = domain.evaluate(request.genome, EvalContext(seed=0))
            except RuntimeError as exc:  # as an executor records it
                evaluation = Evaluation(Status.FAILED, {}, reason=str(exc))
            minimization.tell(request, evaluation)
    return asked


def minimization(domain, parts, **options):
    genome = PartsGenome(tuple(parts))
    return Minimization(genome.content_hash, genome, domain.parts(genome), domain.keep_parts, domain.objectives,
                        timed=domain.timed_objectives, **options)


def test_every_part_that_buys_nothing_goes_and_the_one_that_buys_speed_stays():
    domain = PartsDomain()
    run = minimization(domain, MEMBER)
    asked = drive(run, domain)
    # the member again, then 4 + 1 candidates: round 1 removes the costly part (the largest gain); round 2
    # removes both idle parts at once (removing the fast part was worse), and that is no worse
    assert len(asked) == 1 + 4 + 1 and asked[0] == PartsGenome(MEMBER) and asked[-1] == PartsGenome(("fast-1",))
    assert [MEMBER[i] for i in run.kept] == ["fast-1"] and run.rounds == 2
    record = run.record()
    assert record["result"] == PartsGenome(("fast-1",)).content_hash and record["finished"]
    assert record["path"] == [PartsGenome(("idle-1", "fast-1", "idle-2")).content_hash, record["result"]]
    assert record["removed_words"] == ["idle-1", "costly-1", "idle-2"]
    assert record["reference"] == {"cost": pytest.approx(0.6), "error": pytest.approx(0.05)}
    assert record["objectives"] == {"cost": pytest.approx(0.6), "error": 0.0}


def test_parts_that_can_go_one_at_a_time_but_not_together_go_one_at_a_time():
    domain = PartsDomain()
    member = ("spare-1", "spare-2", "spare-3", "idle-1")
    run = minimization(domain, member)
    asked = drive(run, domain)
    # round 1: each alone is no worse, spare-1 goes (a tie: the first); round 2: the other three at once leave
    # no spare (worse); round 3: one at a time, spare-2 goes; round 4: the last two at once leave nothing, as
    # in round 2 (not evaluated again); round 5: one at a time, idle-1 goes and spare-3 stays
    assert asked[5] == PartsGenome() and len(asked) == 1 + 4 + 1 + 3 + 2 and run.rounds == 5
    assert [member[i] for i in run.kept] == ["spare-3"]


def test_a_part_others_refer_to_stays_and_a_member_with_nothing_to_spare_is_kept_whole():
    domain = PartsDomain()
    run = minimization(domain, ("fast-1", "needs-1"))
    drive(run, domain)  # without fast-1 the member fails; without needs-1 it is as good: needs-1 goes
    assert run.kept == [0] and run.record()["removed_words"] == ["needs-1"]
    run = minimization(domain, ("fast-1", "fast-2"))
    drive(run, domain)
    assert run.kept == [0, 1] and run.rounds == 1 and run.record()["result"] == PartsGenome(("fast-1", "fast-2")).content_hash


def test_timed_objectives_get_the_relative_tolerance_and_the_others_none():
    objectives = (Objective("cost"), Objective("error"))
    run = Minimization("k", PartsGenome(("a", "b")), ["a", "b"], PartsDomain().keep_parts, objectives, timed=("cost",),
                       tolerance=0.02)
    run.tell(run.wanted()[0], Evaluation(Status.OK, {"cost": 1.0, "error": 0.1}))

    def ok(cost, error, constraints=None):
        return run.no_worse(Evaluation(Status.OK, {"cost": cost, "error": error}, constraints or {}))

    assert ok(1.019, 0.1) and not ok(1.021, 0.1)
    assert ok(0.5, 0.0999) and not ok(0.5, 0.1001)
    assert not ok(0.5, 0.05, {"limit": 0.01})  # the member was feasible: so must its shorter versions be
    assert not run.no_worse(Evaluation(Status.FAILED, {}, reason="edit: refers to a removed value"))


def test_a_member_that_fails_when_evaluated_again_ends_its_minimization_unchanged():
    run = minimization(PartsDomain(), MEMBER)
    run.tell(run.wanted()[0], Evaluation(Status.FAILED, {}, reason="timeout"))
    assert run.finished and not run.wanted()
    record = run.record()
    assert record["removed"] == [] and record["reference_failure"] == "timeout" and record["result"] == record["member"]


def stored_run(tmp_path, members=(MEMBER,), **domain_options):
    domain = PartsDomain(members=members, **domain_options)
    evoforge.optimize(domain, run_dir=tmp_path / "run", budget=1 + len(members), pop_size=1 + len(members))
    front = evoforge.load_front(tmp_path / "run")
    return tmp_path / "run", front


def test_minimize_adds_the_shorter_variants_to_the_run_and_the_result_joins_the_front(tmp_path):
    run_dir, front = stored_run(tmp_path)
    member = next(m for m in front if m.genome == PartsGenome(MEMBER))
    with open_store(run_dir, readonly=True) as store:
        before = store.evaluations()
    records = evoforge.minimize(run_dir, [member.id], workers=0)
    [record] = records
    assert record["member_id"] == member.id and record["removed_words"] == ["idle-1", "costly-1", "idle-2"]
    with open_store(run_dir, readonly=True) as store:
        after = store.evaluations()
        assert store.meta(MINIMIZED_META)[member.key]["result"] == record["result"]
    assert all(after[k] == e for k, e in before.items())  # nothing stored is changed
    added = {k: e for k, e in after.items() if k not in before}
    assert len(added) == 4 + 1 and all(e.metrics[MINIMIZED_METRIC] == member.key for e in added.values())
    new_front = evoforge.load_front(run_dir)
    result = new_front.by_id(record["result_id"])
    assert result.genome == PartsGenome(("fast-1",))
    assert member.key not in {m.key for m in new_front}  # the shorter, more accurate variant dominates it
    summary = run_summary(run_dir)
    assert f"variant): {member.id} -> {record['result_id']} (3 of 4 edits removed)" in summary["headline"]
    assert {r["id"]: r.get("minimized_from") for r in summary["front"]}[record["result_id"]] == member.id
    points = {p["id"]: p for p in collect_run(run_dir)["points"]}
    assert points[record["result_id"]]["metrics"]["minimized_from"] == member.id
    assert points[member.id]["metrics"]["minimized_to"] == record["result_id"]


def test_the_command_line_minimizes_and_refuses_bad_requests_in_one_line(tmp_path):
    from tests.test_cli import bad, run

    run_dir, front = stored_run(tmp_path)
    member = next(m for m in front if m.genome == PartsGenome(MEMBER))
    done = run("minimize", run_dir, "--id", member.id, "--workers", 0)
    out = done.stdout
    assert "minimize: measuring the " in done.stderr and " again (held-out data, timing)" in done.stderr
    assert f"member {member.id} (4 edits) -> member " in out and "(1 edit)" in out
    assert "    removed: costly-1" in out and "evoforge show" in out
    assert "minimized_from" in run("show", run_dir).stdout
    assert "tolerance must be a relative allowance" in bad("minimize", run_dir, "--tolerance", 2)
    assert "no front member with id 999" in bad("minimize", run_dir, "--id", 999)
    run("search", "--problem", "zdt1", "--budget", 8, "--pop-size", 4, "--run", tmp_path / "zdt", "--quiet")
    assert "domain 'benchmark' cannot minimize its members part by part; evolve runs can" in bad("minimize", tmp_path / "zdt")


def test_minimize_takes_every_feasible_front_member_with_two_parts(tmp_path):
    short, long = ("fast-1", "idle-1"), ("fast-1", "idle-1", "fast-2", "costly-1")  # both on the front
    run_dir, _ = stored_run(tmp_path, (short, long))
    records = evoforge.minimize(run_dir, workers=0)
    assert {r["member"]: r["removed_words"] for r in records} == {
        PartsGenome(short).content_hash: ["idle-1"], PartsGenome(long).content_hash: ["idle-1", "costly-1"]}
    assert {r["result"] for r in records} == {PartsGenome(g).content_hash for g in (("fast-1",), ("fast-1", "fast-2"))}


def test_a_budget_stops_minimizing_and_the_record_says_so(tmp_path):
    run_dir, front = stored_run(tmp_path)
    member = next(m for m in front if m.genome == PartsGenome(MEMBER))
    [record] = evoforge.minimize(run_dir, [member.id], budget=3, workers=0)
    assert not record["finished"] and record["removed"] == [] and record["result"] == member.key
    with open_store(run_dir, readonly=True) as store:  # 3 evaluations: the member again, then two of its shorter versions
        assert sum(MINIMIZED_METRIC in e.metrics for e in store.evaluations().values()) == 2


def test_the_engine_minimizes_on_an_executor_and_tells_the_store(tmp_path):
    from evoforge.execute.local import LocalExecutor

    domain = PartsDomain(members=(MEMBER,))
    search = Search.create(domain, algorithm_options={"pop_size": 2}, termination=Termination(max_evaluations=2))
    search.run()
    with LocalExecutor(workers=2) as executor:
        [record] = search.minimize(executor, [PartsGenome(MEMBER).content_hash])
    assert record["removed_words"] == ["idle-1", "costly-1", "idle-2"] and record["finished"]
    assert search.evaluations_done == 2 + 5
    with LocalExecutor(workers=2) as executor:  # again: only the member is evaluated, the rest the run holds
        [again] = search.minimize(executor, [PartsGenome(MEMBER).content_hash])
    assert again == record and search.evaluations_done == 2 + 5
    assert search.store.meta(MINIMIZED_META) == {record["member"]: record}


def test_bad_requests_fail_with_one_clear_line(tmp_path):
    run_dir, front = stored_run(tmp_path)
    original = next(m for m in front if m.genome == PartsGenome())
    with pytest.raises(ConfigError, match=f"front member {original.id} has 0 parts: nothing to minimize"):
        evoforge.minimize(run_dir, [original.id])
    with pytest.raises(ConfigError, match="tolerance must be a relative allowance in \\[0, 1\\)"):
        evoforge.minimize(run_dir, tolerance=2.0)
    with pytest.raises(ConfigError, match="no front member with id 999"):
        evoforge.minimize(run_dir, [999])
    with pytest.raises(ConfigError, match="is not an evoforge run directory"):
        evoforge.minimize(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="budget 'soon' is not understood"):
        evoforge.minimize(run_dir, budget="soon")


def test_a_minimized_run_resumes_with_its_variants_kept(tmp_path):
    run_dir, front = stored_run(tmp_path)
    member = next(m for m in front if m.genome == PartsGenome(MEMBER))
    [record] = evoforge.minimize(run_dir, [member.id], workers=0)
    with open_store(run_dir, readonly=True) as store:
        minimized = store.evaluations()
    evoforge.resume(run_dir, budget=len(minimized) + 6)
    with open_store(run_dir, readonly=True) as store:
        after = store.evaluations()
        assert store.meta(MINIMIZED_META)[member.key] == {k: v for k, v in record.items() if k not in ("member_id", "result_id")}
    assert len(after) == len(minimized) + 6 and all(after[k] == e for k, e in minimized.items())
    assert record["result"] in {m.key for m in evoforge.load_front(run_dir)}
