"""The compress API's config files."""

import re
from pathlib import Path

from evoforge.compression.api import compress_options_from_config
from evoforge.run import RunSpec

DOCS = Path(__file__).resolve().parents[2] / "docs" / "compress.md"


def test_the_documented_config_file_is_a_valid_one(tmp_path):
    example = re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.S).group(1)
    path = tmp_path / "compress.yaml"
    path.write_text(example)
    options = compress_options_from_config(path)
    assert options["patience"] == 3 and options["rungs"] == "0.25,1" and options["timeout_s"] == 900
    assert options["screen_by"] == "examples" and options["prefix_cache_mb"] == 512  # domain settings pass through to compress()
    assert options["exclude"] == ["quantize:bf16"] and options["compare_runtimes"] == "fast"
    assert options["run_dir"] == str(tmp_path / "runs" / "my-classifier")
    settings = {k: v for k, v in options.items() if k in RunSpec.__dataclass_fields__ and k != "eval_cache"}
    spec = RunSpec.build({}, **settings)  # every documented search setting passes the run's own checks
    assert spec.termination().stagnation_generations == 3 and spec.fidelity() is not None
