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
    assert options["int8_weight_bits"] == "auto"
    assert options["run_dir"] == str(tmp_path / "runs" / "my-classifier")
    settings = {k: v for k, v in options.items() if k in RunSpec.__dataclass_fields__ and k != "eval_cache"}
    spec = RunSpec.build({}, **settings)  # every documented search setting passes the run's own checks
    assert spec.termination().stagnation_generations == 3 and spec.fidelity() is not None


def test_available_runtimes_say_what_each_offers_on_this_machine(monkeypatch):
    import importlib.util

    from evoforge import machine
    from evoforge.compression.api import available_runtimes

    monkeypatch.setattr(machine, "native_bf16", lambda: True)
    monkeypatch.setattr(machine, "int8_products_saturate", lambda: False)
    rows = {row["runtime"]: row for row in available_runtimes()}
    assert set(rows) == {"onnxruntime", "openvino", "inductor", "torchscript"}
    assert rows["onnxruntime"]["modes"] == ["dynamic", "static"] and rows["onnxruntime"]["note"] == "the default"
    assert rows["openvino"]["modes"] == ["static", "bf16"] and rows["openvino"]["artifact"] == "model.openvino.onnx"
    assert rows["torchscript"]["modes"] == ["dynamic", "static", "qat", "bf16"] and rows["torchscript"]["version"].startswith("2.")

    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    monkeypatch.setattr(machine, "int8_products_saturate", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "openvino" else real(name, *args))
    rows = {row["runtime"]: row for row in available_runtimes()}
    assert rows["openvino"]["installed"] is False and rows["openvino"]["modes"] == [] and "pip install" in rows["openvino"]["note"]
    assert rows["inductor"]["modes"] == ["dynamic", "static", "qat", "weight_only"]
    assert rows["inductor"]["note"].startswith("bf16 left out: this processor has none of avx512_bf16")
    assert "int8 weights" not in rows["inductor"]["note"]  # torchao's int8 does not narrow them
    assert rows["onnxruntime"]["note"] == ("the default; int8 weights in 7 bits: this processor has none of avx512_vnni, "
                                           "avx_vnni, amx_int8, and 8-bit products saturate its int8 kernels "
                                           "(int8_weight_bits sets it)")
