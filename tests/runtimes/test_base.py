"""The runtime contract's shared settings: int8 weight widths."""

import pytest

from evoforge.errors import ConfigError
from evoforge.runtimes.base import INT8_WEIGHT_BITS, check_int8_weight_bits


def test_int8_weight_bits_take_auto_7_or_8_as_a_command_line_or_config_file_spells_them():
    assert [check_int8_weight_bits(v) for v in ("auto", " Auto ", 7, "7", 8, "8")] == ["auto", "auto", 7, 7, 8, 8]
    assert all(check_int8_weight_bits(v) == v for v in INT8_WEIGHT_BITS)
    for bad in (6, "16", 7.0, True, None, "seven"):
        with pytest.raises(ConfigError, match=rf"^int8_weight_bits {bad!r} is not one of: auto, 7, 8$"):
            check_int8_weight_bits(bad)
