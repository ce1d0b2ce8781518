"""The command line end to end, through real subprocesses."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import evoforge
from evoforge.api import open_store

EVOFORGE = [sys.executable, "-m", "evoforge.cli"]


def run(*args, check=True, **kwargs):
    proc = subprocess.run([*EVOFORGE, *map(str, args)], capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def bad(*args, **kwargs):
    proc = run(*args, check=False, **kwargs)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("evoforge: error:"), proc.stderr
    return lines[0]


def test_search_show_json(tmp_path):
    run("search", "--problem", "zdt1", "--budget", 40, "--pop-size", 8, "--run", tmp_path / "r", "--quiet")
    summary = json.loads(run("show", tmp_path / "r", "--format", "json").stdout)
    assert summary["front"] and "evaluation budget reached" in summary["headline"]
    assert "domain 'benchmark' cannot explain its members part by part; evolve runs can" in bad(
        "explain", tmp_path / "r", "--id", summary["front"][0]["id"])


def test_patience_stops_a_settled_search_and_show_says_why(tmp_path):
    run("search", "--problem", "zdt1", "--budget", 2000, "--pop-size", 4, "--patience", 2, "--run", tmp_path / "r", "--quiet")
    summary = json.loads(run("show", tmp_path / "r", "--format", "json").stdout)
    assert "hypervolume stagnated: gained under 0.1% in 2 generations" in summary["headline"]
    with open_store(tmp_path / "r", readonly=True) as store:
        assert store.config()["run"]["patience"] == 2 and len(store.evaluations()) < 2000


def test_preselect_and_explore_are_stored_run_settings(tmp_path):
    run("search", "--problem", "zdt1", "--budget", 24, "--pop-size", 6, "--algorithm", "petra", "--preselect", 3,
        "--explore", 0.5, "--run", tmp_path / "r", "--quiet")
    with open_store(tmp_path / "r", readonly=True) as store:
        config = store.config()
    assert config["run"]["preselect"] == 3 and config["algorithm"]["options"]["preselect"] == 3
    assert config["run"]["explore"] == 0.5 and config["algorithm"]["options"]["explore"] == 0.5


def test_eval_cache_is_shared_by_runs_and_marked_in_show(tmp_path):
    for name in ("a", "b"):
        run("search", "--problem", "zdt1", "--budget", 16, "--pop-size", 4, "--eval-cache", tmp_path / "cache",
            "--run", tmp_path / name, "--quiet")
    assert "evaluation cache" not in run("show", tmp_path / "a").stdout
    assert "evaluation cache: 16 of 16 evaluations were taken from the shared cache" in run("show", tmp_path / "b").stdout


def test_report_and_show_choose_what_they_print(tmp_path):
    run("search", "--problem", "dtlz2", "--budget", 40, "--pop-size", 8, "--run", tmp_path / "r", "--quiet")
    out = run("report", tmp_path / "r", "--out", tmp_path / "page.html").stdout
    assert out.startswith(f"report: {tmp_path / 'page.html'} (") and "opens offline" in out
    assert not (tmp_path / "r" / "report.html").exists()  # search runs write theirs on request only
    rows = json.loads(run("show", tmp_path / "r", "--format", "json", "--sort", "f2", "--descending", "--columns", "id,f2").stdout)["table"]
    assert rows and all(list(row) == ["id", "f2"] for row in rows)
    assert [row["f2"] for row in rows] == sorted((row["f2"] for row in rows), reverse=True)
    assert "unknown column 'speed'; columns: id, key, f1" in bad("show", tmp_path / "r", "--columns", "id,speed")
    assert "not an evoforge run directory" in bad("report", tmp_path / "missing")
    assert "cannot read 'f1<1' in pick rule" in bad("export", tmp_path / "r", "--pick", "f1<1")
    assert "--columns ',,' names no column" in bad("show", tmp_path / "r", "--columns", ",,")


def test_bad_inputs_give_one_line_and_exit_2(tmp_path):
    assert "zdt9" in bad("search", "--problem", "zdt9", "--run", tmp_path / "a")
    assert "'soon'" in bad("search", "--problem", "zdt1", "--budget", "soon", "--run", tmp_path / "b")
    assert "not an evoforge run directory" in bad("show", tmp_path / "missing")
    assert "cmaes" in bad("search", "--problem", "zdt1", "--algorithm", "cmaes", "--run", tmp_path / "c")
    assert "digits-xl" in bad("compress", "--task", "digits-xl", "--run", tmp_path / "d")
    assert "unknown runtime 'tensorrt'; valid names: inductor, onnxruntime, openvino, torchscript" in bad(
        "compress", "--task", "digits-mlp", "--runtime", "tensorrt", "--run", tmp_path / "f")
    assert not (tmp_path / "f").exists()
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("task: digits-mlp\nsearch:\n  budgt: 3\n")
    assert "unknown key 'budgt' in search; valid keys: algorithm" in bad("compress", cfg)
    cfg.write_text("task: digits-mlp\nruntime: [onnxruntime]\n")
    assert "runtime must be a runtime name such as 'onnxruntime'" in bad("compress", cfg)
    cfg.write_text("task: digits-mlp\nsearch:\n  exclude: [quantize:int4]\n")
    assert "cannot exclude 'quantize:int4'; name a stage kind, prune:<importance> or quantize:<mode>: finetune, lowrank" in bad(
        "compress", cfg, "--run", tmp_path / "g")
    assert "cannot exclude 'quantize:bf15'" in bad("compress", "--task", "digits-mlp", "--exclude", "lowrank,quantize:bf15",
                                                 "--run", tmp_path / "h")
    assert "leaves no stage to search" in bad("compress", "--task", "digits-mlp", "--exclude", "prune,quantize,lowrank,finetune",
                                              "--run", tmp_path / "i")
    assert "int8_weight_bits 7 applies to onnxruntime, openvino; torchscript chooses its own int8 weights" in bad(
        "compress", "--task", "digits-mlp", "--runtime", "torchscript", "--int8-weight-bits", "7", "--run", tmp_path / "j")
    cfg.write_text("task: digits-mlp\nsearch:\n  int8_weight_bits: 16\n")
    assert "int8_weight_bits 16 is not one of: auto, 7, 8" in bad("compress", cfg, "--run", tmp_path / "k")
    assert not any((tmp_path / name).exists() for name in "ghijk")
    cfg.write_text("task: [unclosed\n")
    assert "cannot parse" in bad("compress", cfg)
    toml = tmp_path / "bad.toml"
    toml.write_text('[task]\nname = "x"\nmodel = "nowhere.pkg:make"\ndataset = "digits"\n')
    assert "nowhere.pkg" in bad("compress", toml, "--run", tmp_path / "e")


def test_a_library_warning_is_printed_once_even_when_a_library_gave_the_root_logger_a_handler():
    """iree-turbine adds a root handler when imported; every evolve warning then printed twice."""
    code = ("import logging; logging.basicConfig()\n"
            "from evoforge.cli import _log_warnings_to_stderr; _log_warnings_to_stderr()\n"
            "logging.getLogger('evoforge.mlir').warning('IREE runs the original program 2.74x slower')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stderr.splitlines() == ["evoforge: warning: IREE runs the original program 2.74x slower"], out.stderr


def test_runtimes_lists_every_runtime_with_its_modes_here():
    listing = json.loads(run("runtimes", "--format", "json").stdout)
    assert listing["machine"] and [row["runtime"] for row in listing["runtimes"]] == ["inductor", "onnxruntime", "openvino",
                                                                                     "torchscript"]
    table = run("runtimes").stdout.splitlines()
    assert table[0] == f"machine: {listing['machine']}" and table[1].split() == ["runtime", "installed", "version", "artifact",
                                                                                 "modes", "note"]
    onnx = next(line for line in table if line.startswith("onnxruntime "))
    assert "model.onnx" in onnx and "dynamic, static" in onnx and "the default" in onnx


def test_compress_in_openvino_leaves_out_what_the_run_excludes_and_compares_no_runtime(tmp_path):
    pytest.importorskip("openvino")
    run("compress", "--task", "digits-mlp", "--runtime", "openvino", "--exclude", "quantize:bf16, lowrank", "--budget", 6,
        "--pop-size", 4, "--workers", 1, "--compare-runtimes", "none", "--run", tmp_path / "r", "--quiet")
    with open_store(tmp_path / "r", readonly=True) as store:
        config = store.config()["domain"]["config"]
        genomes = [store.genome(key) for key in store.evaluations()]
    assert config["runtime"] == "openvino" and config["exclude"] == ["quantize:bf16", "lowrank"]
    assert config["compare_runtimes"] == "none"
    assert json.loads((tmp_path / "r" / "baseline" / "baseline.json").read_text())["fp32_elsewhere"] == {}
    assert config["space"]["quant_modes"] == ["static"] and "lowrank" not in config["space"]["kinds"]
    assert genomes and not any('"bf16"' in g or '"lowrank"' in g for g in genomes)
    summary = json.loads(run("show", tmp_path / "r", "--format", "json").stdout)
    assert "runtime openvino: ratios are against the fp32 model exported to it" in summary["headline"]
    assert "left out of the search by the run's settings (exclude): quantize:bf16, lowrank" in summary["headline"]


def test_compress_kill_resume_show_export(tmp_path):
    """compress on a tiny budget, SIGKILL the driver mid-run, resume, show, export (verified in a
    fresh process), reload the export with plain onnxruntime and match the recorded test quality."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [*EVOFORGE, "compress", "--task", "digits-mlp", "--budget", "10", "--pop-size", "4", "--workers", "1",
         "--run", str(run_dir), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 300
    stored = 0
    while time.monotonic() < deadline and stored < 3 and proc.poll() is None:
        time.sleep(0.2)
        try:
            with open_store(run_dir, readonly=True) as store:
                stored = len(store.evaluations())
        except Exception:  # noqa: BLE001 - not created yet
            pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= stored < 10
    with open_store(run_dir, readonly=True) as store:
        before = store.evaluations()

    assert "in use" not in run("resume", run_dir, "--quiet").stderr
    with open_store(run_dir, readonly=True) as store:
        after = store.evaluations()
        final = store.meta("final")
    assert len(after) == 10 and {k: after[k] for k in before} == before

    summary = json.loads(run("show", run_dir, "--format", "json").stdout)
    assert summary["front"] and "baseline" in summary["final"]
    assert "runtime onnxruntime: ratios are against the fp32 model exported to it" in summary["headline"]
    assert "x torch eager's latency" in summary["headline"]
    member = summary["front"][0]
    assert member["test_accuracy"] == pytest.approx(final[member["key"]]["accuracy"])
    assert member["test_latency_ratio"] == pytest.approx(final[member["key"]]["latency_ratio"])  # timed again at the end
    assert member["test_latency_ratio"] > 0
    retimed = min(summary["front"], key=lambda m: (m["test_latency_ratio"], m["id"]))
    assert evoforge.load_front(run_dir).pick_rule("minimize=test_latency_ratio").id == retimed["id"]

    assert summary["report"] == str(run_dir / "report.html") and (run_dir / "report.html").stat().st_size > 1_000_000
    assert f"report: {run_dir / 'report.html'}" in run("show", run_dir).stdout

    card = json.loads(run("export", run_dir, "--pick", "minimize=quality_drop", "--out", tmp_path / "out").stdout)
    assert card["id"] == member["id"]  # the front is sorted by the first objective, quality_drop
    assert card["test"]["accuracy"] == pytest.approx(member["test_accuracy"])
    assert card["runtime"] == "onnxruntime" and card["verified_in_fresh_process"] and card["latency"]["ratio_batch"] > 0
    check = (
        "import sys, numpy as np, onnxruntime\n"
        "s = onnxruntime.InferenceSession(sys.argv[1])\n"
        "print(s.run(None, {'input0': np.zeros((3, 1, 8, 8), np.float32)})[0].shape[1])\n"
    )
    env = {**os.environ, "PYTHONPATH": ""}
    out = subprocess.run([sys.executable, "-I", "-c", check, str(tmp_path / "out" / "model.onnx")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"
    assert "no front member with id 99999" in bad("export", run_dir, "--id", 99999)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "model.onnx").write_text("mine")
    assert "holds files and no earlier export" in bad("export", run_dir, "--id", member["id"], "--out", tmp_path / "mine")
    assert "is a file; give a folder" in bad("export", run_dir, "--id", member["id"], "--out", tmp_path / "mine" / "model.onnx")
    assert [p.read_text() for p in (tmp_path / "mine").iterdir()] == ["mine"]


@pytest.mark.iree
def test_evolve_show_export_an_mlir_file(tmp_path):
    program = tmp_path / "mlp.mlir"
    program.write_text(
        "func.func @main(%x: tensor<4x6xf32>) -> tensor<4x6xf32> {\n"
        "  %c = arith.constant dense<0.5> : tensor<4x6xf32>\n"
        "  %m = arith.mulf %x, %c : tensor<4x6xf32>\n"
        "  %a = arith.addf %m, %x : tensor<4x6xf32>\n"
        "  return %a : tensor<4x6xf32>\n"
        "}\n"
    )
    run_dir = tmp_path / "run"
    out = run("evolve", program, "--budget", "8", "--pop-size", "4", "--workers", "1", "--run", run_dir, "--quiet",
              "--log-json", tmp_path / "events.jsonl", "--no-flag-tuning", "--edit-targets", "cost", "--keep-artifacts", "all",
              "--crossover", "anywhere", "--no-batch-check")
    assert "domain evolve" in out.stdout and "runtime_ratio" in out.stdout
    assert not (run_dir / "program" / "flag_tuning.json").exists()
    with open_store(run_dir, readonly=True) as store:
        assert store.config()["domain"]["config"]["edit_targets"] == "cost"
        assert store.config()["domain"]["config"]["keep_artifacts"] == "all"
        assert store.config()["domain"]["config"]["crossover"] == "anywhere"
        assert store.config()["domain"]["config"]["batch_check"] is False
        assert all((run_dir / e.artifacts["vmfb"]).exists() for e in store.evaluations().values() if e.ok)
    assert len((tmp_path / "events.jsonl").read_text().splitlines()) >= 8
    summary = json.loads(run("show", run_dir, "--format", "json").stdout)
    assert "batch check: off (--no-batch-check" in summary["headline"]
    from evoforge.genome import genome_from_json
    from evoforge.mlir.edits import EditListGenome  # noqa: F401 - registers the genome type

    for row in summary["front"]:  # the original has nothing to explain; an edited member one row per edit and one for itself
        if row["description"] == "original program":
            assert "no edits to explain" in bad("explain", run_dir, "--id", row["id"])
        else:
            rows = json.loads(run("explain", run_dir, "--id", row["id"], "--format", "json").stdout)
            with open_store(run_dir, readonly=True) as store:
                edits = genome_from_json(store.genome(row["key"])).edits
            assert len(rows) == 1 + len(edits) and "runtime_ratio" in rows[0]["member"]
            assert all("without" in r and "alone" in r for r in rows[1:])
    member = summary["front"][0]
    card = json.loads(run("export", run_dir, "--id", member["id"], "--out", tmp_path / "out").stdout)
    assert (tmp_path / "out" / "variant.vmfb").exists() and isinstance(card["edits"], list)
    assert card["batch_coupling"] == 0.0  # re-verified at export whatever the run checked: every edit here is per example
    again = json.loads(run("export", run_dir, "--id", member["id"], "--out", tmp_path / "out").stdout)  # an earlier export is replaced
    assert again["edits"] == card["edits"]
    page = (run_dir / "report.html").read_text()  # written when the run ended
    data = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])[0]
    details = [p["details"] for p in data["points"] if p["front"]]
    assert data["domain"] == "evolve" and details and all("edits" in d for d in details)
    assert any("diff against the original" in d for d in details) or all(p["description"] == "original program"
                                                                       for p in data["points"] if p["front"])
    assert "exactly one program" in bad("evolve", program, "--task", "digits-mobilenet")
    assert "cannot parse MLIR" in bad("evolve", _broken(tmp_path), "--run", tmp_path / "r2")
    assert "unknown edit kinds ['cut']" in bad("evolve", program, "--edits", "delete,cut", "--run", tmp_path / "r3")
    assert "--edit-targets: invalid choice: 'hot' (choose from 'uniform', 'cost')" in bad(
        "evolve", program, "--edit-targets", "hot", "--run", tmp_path / "r4")
    assert not (tmp_path / "r4").exists()
    assert "--keep-artifacts: invalid choice: 'some' (choose from 'front', 'all')" in bad(
        "evolve", program, "--keep-artifacts", "some", "--run", tmp_path / "r5")
    assert "--crossover: invalid choice: 'uniform' (choose from 'halves', 'anywhere')" in bad(
        "evolve", program, "--crossover", "uniform", "--run", tmp_path / "r6")


def _broken(tmp_path):
    path = tmp_path / "broken.mlir"
    path.write_text("func.func @main( {")
    return path


def test_runs_are_self_contained_and_refuse_changed_inputs(tmp_path):
    """A run started from a config with relative paths opens from any directory; a changed
    dataset file is refused by export and resume (and reported by show); --seed 0 overrides the
    config file's seed; the config's runtime (torchscript) is the artifacts' format."""
    import numpy as np

    from evoforge.api import run_settings
    from evoforge.workload.data import flat_arrays
    from evoforge.workload.datasets import load_dataset

    project = tmp_path / "project"
    project.mkdir()
    digits = load_dataset("digits")
    arrays = flat_arrays({n: digits.split(n) for n in ("train", "test")})
    np.savez(project / "data.npz", **arrays)
    (project / "task.yaml").write_text(
        "task:\n  name: mine\n  model: digits_mlp\n  dataset: data.npz\n  baseline_epochs: 3\n"
        "search:\n  budget: 4\n  pop_size: 2\n  seed: 5\n  workers: 1\nrun: runs/mine\nruntime: torchscript\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run("compress", "task.yaml", "--seed", "0", "--quiet", cwd=project)
    run_dir = project / "runs" / "mine"
    assert run_settings(run_dir).seed == 0  # the flag beats the config file, even at 0
    summary = json.loads(run("show", run_dir, "--format", "json", cwd=elsewhere).stdout)
    assert summary["front"] and "WARNING" not in summary["headline"]
    member = summary["front"][0]["id"]
    assert json.loads(run("export", run_dir, "--id", member, cwd=elsewhere).stdout)["test"]["accuracy"] > 0.5
    assert (run_dir / "exports" / str(member) / "model.pt").exists()
    refused = bad("resume", run_dir, "--budget", "6", "--seed", "3")
    assert "--seed cannot change on resume" in refused and "keeps its seed (0)" in refused
    run("resume", run_dir, "--budget", "6", "--quiet", cwd=elsewhere)
    with open_store(run_dir, readonly=True) as store:
        assert len(store.evaluations()) == 6
    member = json.loads(run("show", run_dir, "--format", "json").stdout)["front"][0]["id"]

    arrays["y_test"] = arrays["y_test"][::-1].copy()
    np.savez(project / "data.npz", **arrays)
    assert "changed since the run started" in bad("export", run_dir, "--id", member, "--out", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert "changed since the run started" in bad("resume", run_dir, "--budget", "8")
    assert "WARNING: the run's dataset file" in run("show", run_dir, cwd=elsewhere).stdout
    with open_store(run_dir, readonly=True) as store:
        assert len(store.evaluations()) == 6  # nothing ran on the changed data


@pytest.mark.iree
def test_evolve_a_model_factory_with_two_inputs_from_its_data(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "tagger.py").write_text(
        "import torch\n"
        "class Tagger(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        torch.manual_seed(0)\n"
        "        self.embed = torch.nn.Embedding(20, 6)\n"
        "        self.head = torch.nn.Linear(6, 3)\n"
        "    def forward(self, ids, mask):\n"
        "        keep = (mask > 0) & (ids > 0)\n"  # transformers-style mask arithmetic: aten.__and__.Tensor
        "        pooled = (self.embed(ids) * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)\n"
        "        return self.head(pooled)\n"
        "def make():\n"
        "    return Tagger()\n"
        "def splits():\n"  # the mapping compress takes: tuple inputs call the model positionally
        "    import numpy as np\n"
        "    ids = np.random.default_rng(1).integers(0, 20, (200, 5))\n"
        "    mask = (ids % 3 > 0).astype('float32')\n"
        "    return {'train': ((ids, mask), ids[:, 0] % 3), 'test': ((ids[:40], mask[:40]), ids[:40, 0] % 3)}\n"
        "def not_splits():\n"
        "    return [1, 2]\n"
    )
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, (16, 5)).astype(np.int64)
    np.savez(tmp_path / "data.npz", **{"x_val.0": ids, "x_val.1": (ids % 3 > 0).astype(np.float32)}, y_val=ids[:, 0] % 3)
    run_dir = tmp_path / "run"
    out = run("evolve", "--model", f"{tmp_path / 'tagger.py'}:make", "--data", tmp_path / "data.npz", "--batch-size", "8",
              "--budget", "4", "--pop-size", "4", "--workers", "0", "--run", run_dir, "--quiet", "--no-flag-tuning",
              "--compare-runtimes", "none")
    assert "domain evolve" in out.stdout
    warned = [ln for ln in out.stderr.splitlines() if ln.startswith("evoforge: warning: ")]  # random weights, labels it never saw
    assert len(warned) == 1 and "the original program's validation accuracy" in warned[0] and "untrained" in warned[0], out.stderr
    assert "WARNING: the original program's validation accuracy" in run("show", run_dir).stdout
    meta = json.loads((run_dir / "program" / "program.json").read_text())
    assert meta["inputs"] == [[[8, 5], "int64"], [[8, 5], "float32"]]  # the example came from the data, dtypes kept
    assert meta["exporter"] == "iree-turbine"
    assert "--model needs --example-input SHAPE" in bad("evolve", "--model", f"{tmp_path / 'tagger.py'}:make",
                                                        "--run", tmp_path / "r2")
    assert "x_val has 16 rows, fewer than the batch size 32" in bad(
        "evolve", "--model", f"{tmp_path / 'tagger.py'}:make", "--data", tmp_path / "data.npz", "--run", tmp_path / "r3")
    assert not (tmp_path / "r3").exists()

    run("evolve", "--model", f"{tmp_path / 'tagger.py'}:make", "--data", f"{tmp_path / 'tagger.py'}:splits", "--batch-size", "8",
        "--budget", "2", "--pop-size", "2", "--workers", "0", "--run", tmp_path / "r4", "--quiet", "--no-flag-tuning",
        "--compare-runtimes", "none")
    with np.load(tmp_path / "r4" / "program" / "data.npz") as stored:  # validation carved off train, test as given
        assert stored["x_val.0"].dtype == np.int64 and len(stored["y_val"]) == 24 and len(stored["y_test"]) == 40
    assert "returned list; return a mapping of splits" in bad(
        "evolve", "--model", f"{tmp_path / 'tagger.py'}:make", "--data", f"{tmp_path / 'tagger.py'}:not_splits", "--run", tmp_path / "r5")


def test_the_cli_offers_the_compare_runtimes_values_the_library_takes():
    from evoforge.cli import _COMPARE_RUNTIMES
    from evoforge.runtimes.base import COMPARE_RUNTIMES

    assert _COMPARE_RUNTIMES == COMPARE_RUNTIMES


def test_demo_is_the_compress_command_line_it_stands_for():
    """Parsed as `compress` parses it, so every compress option exists at its default (a new
    option cannot break the demo), with the demo's budget, run directory and global flags."""
    from evoforge.cli import _demo_compress_args, build_parser

    args = _demo_compress_args(build_parser().parse_args(["demo", "--quiet", "--budget", "90s", "--run", "runs/d"]))
    plain = build_parser().parse_args(["compress", "--task", "digits-cnn", "--budget", "90s", "--workers", str(args.workers),
                                       "--run", "runs/d"])
    assert vars(args) == {**vars(plain), "quiet": True}
    assert args.command == "compress" and args.config is None and args.int8_weight_bits is None and args.workers in (1, 2)
    assert _demo_compress_args(build_parser().parse_args(["demo"])).budget == "3m"


def test_the_cli_offers_the_int8_weight_bits_the_library_takes():
    from evoforge.cli import _INT8_WEIGHT_BITS
    from evoforge.runtimes.base import INT8_WEIGHT_BITS, check_int8_weight_bits

    assert tuple(check_int8_weight_bits(value) for value in _INT8_WEIGHT_BITS) == INT8_WEIGHT_BITS


def test_ctrl_c_names_the_run_to_resume(tmp_path):
    """An interrupted start names its run folder (here the default one under the working
    directory), the one a user did not choose."""
    proc = subprocess.Popen([*EVOFORGE, "search", "--problem", "zdt1", "--budget", "20m", "--pop-size", "4"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("runs/zdt1-*/run.db")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    (run,) = tmp_path.glob("runs/zdt1-*")
    assert f"continue with `evoforge resume runs/{run.name}`" in err
