"""Reading run configurations from YAML or TOML files, with strict key checking."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomllib

from evoforge.errors import ConfigError


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a ``.yaml``/``.yml`` or ``.toml`` file into a dict; errors name the file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"config file {path} must end in .yaml, .yml or .toml")
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - parser errors of either format
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot parse {path}: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values at the top level")
    return data


def check_keys(section: str, data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise `ConfigError` naming the first unknown key and listing the valid ones."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} in {section}; valid keys: {', '.join(allowed)}")
