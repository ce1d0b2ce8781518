"""Edits as data: JSON round trips, order-insensitive genome hash, crossover semantics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evoforge.errors import ConfigError
from evoforge.genome import genome_from_json
from evoforge.mlir.edits import (
    CROSSOVER_CUTS,
    Copy,
    Delete,
    EditListGenome,
    OperandReplace,
    Resize,
    Source,
    crossover,
    edit_from_data,
    edit_key,
    edit_to_data,
)

EDITS = (
    Delete(uid="U3", sources=(Source("U1#0", 1), Source(""))),
    Copy(uid="U4", before="U2", new_uid="U4.c00ab12", operands=(Source(""), Source("arg0", 0)),
         rewire_user="U7", rewire_operand=1, rewire_fill=1),
    Resize(value="U5#0", dim=1, size=3, fill=1),
    OperandReplace(user="U9", operand=0, source=Source("U8^1", 0)),
)


@pytest.mark.parametrize("edit", EDITS, ids=lambda e: e.KIND)
def test_edit_json_round_trip(edit):
    data = json.loads(json.dumps(edit_to_data(edit)))
    assert edit_from_data(data) == edit


def test_genome_round_trip_and_registry():
    g = EditListGenome(edits=EDITS)
    back = genome_from_json(g.to_json())
    assert isinstance(back, EditListGenome)
    assert back == g
    assert back.content_hash == g.content_hash
    assert json.loads(g.to_json())["_type"] == "mlir-edits"


def test_content_hash_ignores_order_but_not_content():
    a = EditListGenome(edits=EDITS)
    b = EditListGenome(edits=tuple(reversed(EDITS)))
    assert a.content_hash == b.content_hash
    assert a.edits != b.edits  # replay order is still kept
    c = EditListGenome(edits=EDITS[:-1] + (OperandReplace(user="U9", operand=1, source=Source("U8^1", 0)),))
    assert c.content_hash != a.content_hash
    assert EditListGenome().with_edit(EDITS[0]).edits == (EDITS[0],)


def test_bad_edit_data_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown edit kind"):
        edit_from_data({"kind": "swap"})
    with pytest.raises(ConfigError, match="unknown fields"):
        edit_from_data({"kind": "resize", "value": "U1#0", "dim": 0, "size": 1, "colour": 2})
    with pytest.raises(ConfigError, match="fill must be 0 or 1"):
        Source("U1#0", 2)


def test_crossover_keeps_common_and_splits_the_rest():
    common = EDITS[0]
    a = [common, EDITS[1], EDITS[2]]
    b = [EDITS[3], common, Resize(value="U6#0", dim=0, size=1)]
    c1, c2 = crossover(a, b, np.random.default_rng(0))
    assert common in c1 and common in c2
    rest1, rest2 = set(c1) - {common}, set(c2) - {common}
    assert not rest1 & rest2
    assert rest1 | rest2 == (set(a) | set(b)) - {common}
    assert abs(len(rest1) - len(rest2)) <= 1
    # children keep the parents' relative order (a's edits first, then b's)
    order = [common, EDITS[1], EDITS[2], EDITS[3], b[2]]
    for child in (c1, c2):
        assert list(child) == [e for e in order if e in child]
    assert crossover(a, b, np.random.default_rng(0)) == (c1, c2)
    seen = {crossover(a, b, np.random.default_rng(s)) for s in range(20)}
    assert len(seen) > 1


def test_crossover_cut_anywhere_can_stack_two_single_edit_parents():
    a, b = [EDITS[0]], [EDITS[1]]
    halves = {crossover(a, b, np.random.default_rng(s)) for s in range(40)}
    assert halves == {((EDITS[0],), (EDITS[1],)), ((EDITS[1],), (EDITS[0],))}  # never both in one child
    anywhere = {crossover(a, b, np.random.default_rng(s), "anywhere") for s in range(40)}
    assert ((EDITS[0], EDITS[1]), ()) in anywhere and ((), (EDITS[0], EDITS[1])) in anywhere
    assert ((EDITS[0],), (EDITS[1],)) in anywhere or ((EDITS[1],), (EDITS[0],)) in anywhere
    common = EDITS[2]
    for s in range(20):  # shared edits stay in both children, the rest is split without loss, order kept
        c1, c2 = crossover([common, *a], [*b, common], np.random.default_rng(s), "anywhere")
        assert common in c1 and common in c2
        assert sorted(map(edit_key, (set(c1) | set(c2)) - {common})) == sorted(map(edit_key, (EDITS[0], EDITS[1])))
        assert not (set(c1) & set(c2)) - {common}
        for child in (c1, c2):
            assert list(child) == [e for e in (common, EDITS[0], EDITS[1]) if e in child]
    # the default cut draws exactly as before the option existed (stored runs resume alike)
    assert crossover(a, b, np.random.default_rng(3)) == crossover(a, b, np.random.default_rng(3), "halves")


def test_the_evolve_domain_crosses_over_with_its_cut():
    from evoforge.mlir.domain import EvolveDomain

    pa, pb = EditListGenome(edits=(EDITS[0],)), EditListGenome(edits=(EDITS[1],))

    def child_sizes(domain: EvolveDomain) -> set[int]:
        return {len(c.edits) for s in range(20) for c in domain.crossover(pa, pb, np.random.default_rng(s))}

    assert child_sizes(EvolveDomain()) == {1}
    assert child_sizes(EvolveDomain(crossover="anywhere")) == {0, 1, 2}


def test_unknown_crossover_cut_is_a_config_error_naming_the_valid_ones(tmp_path):
    import evoforge
    from evoforge.mlir.domain import EvolveDomain

    with pytest.raises(ConfigError, match="unknown crossover 'uniform'; valid: halves, anywhere"):
        crossover([EDITS[0]], [EDITS[1]], np.random.default_rng(0), "uniform")
    with pytest.raises(ConfigError, match="unknown crossover 'uniform'; valid: halves, anywhere"):
        EvolveDomain(crossover="uniform")
    with pytest.raises(ConfigError, match="unknown crossover"):
        evoforge.evolve(tmp_path / "missing.mlir", crossover="uniform", run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert EvolveDomain(crossover="anywhere").config()["crossover"] == "anywhere"
    assert EvolveDomain().config()["crossover"] == CROSSOVER_CUTS[0] == "halves"
    stored_before = {k: v for k, v in EvolveDomain().config().items() if k != "crossover"}
    assert EvolveDomain.from_config(stored_before).crossover_cut == "halves"
