"""Edits as data: JSON round trips, order-insensitive genome hash, crossover semantics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evoforge.errors import ConfigError
from evoforge.genome import genome_from_json
from evoforge.mlir.edits import (
    Copy,
    Delete,
    EditListGenome,
    OperandReplace,
    Resize,
    Source,
    edit_from_data,
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
    pytest.importorskip("iree.compiler")
    from evoforge.mlir.mutate import crossover

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
