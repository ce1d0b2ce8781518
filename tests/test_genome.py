import dataclasses

import pytest

from evoforge.errors import ConfigError, UnknownNameError
from evoforge.genome import GENOME_TYPES, genome_from_json
from evoforge.problems import RealVector
from evoforge.registry import Registry
from evoforge.testing.domains import FaultGenome


@pytest.mark.parametrize("genome", [RealVector((0.1, 0.25, 1e-300)), FaultGenome("hang", 0.3)], ids=lambda g: g.TYPE)
def test_json_round_trip_and_hash(genome):
    back = genome_from_json(genome.to_json())
    assert back == genome and back.content_hash == genome.content_hash
    assert type(back) is type(genome)


def test_hash_depends_on_content_only():
    assert RealVector((1.0, 2.0)).content_hash == RealVector((1.0, 2.0)).content_hash
    assert RealVector((1.0, 2.0)).content_hash != RealVector((2.0, 1.0)).content_hash


def test_unknown_type_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="valid names: .*real-vector"):
        genome_from_json('{"_type": "nope", "_version": 1, "_data": {}}')


def test_bad_json_shape_and_version():
    with pytest.raises(ConfigError, match="_type"):
        genome_from_json("[1, 2]")
    with pytest.raises(ConfigError, match="version 9"):
        genome_from_json('{"_type": "real-vector", "_version": 9, "_data": {"values": []}}')
    with pytest.raises(ConfigError, match="unknown fields"):
        genome_from_json('{"_type": "real-vector", "_version": 1, "_data": {"values": [], "x": 1}}')


def test_genome_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        RealVector((1.0,)).values = (2.0,)  # type: ignore[misc]


def test_registry_refuses_duplicates_and_lists_names():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 2)
    with pytest.raises(UnknownNameError, match="unknown widget 'b'; valid names: a"):
        reg["b"]
    assert "real-vector" in GENOME_TYPES
