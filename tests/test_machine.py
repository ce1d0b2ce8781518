from evoforge import machine
from evoforge.machine import available_cores, machine_name, machines_note, parse_cpuinfo, timing_machines

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx2
"""
ARM = """processor\t: 0
Features\t: fp asimd asimddp i8mm
CPU implementer\t: 0x41
"""


def test_cpuinfo_gives_the_model_and_the_kernel_features_of_the_first_processor():
    assert parse_cpuinfo(X86) == ("Intel(R) Xeon(R) Processor", ("avx2", "avx512f", "avx512_vnni", "amx_int8"))
    assert parse_cpuinfo(ARM) == ("", ("asimddp", "i8mm"))
    assert parse_cpuinfo("") == ("", ())


def test_native_bf16_needs_a_bfloat16_flag(monkeypatch):
    for flags, native in (("avx2 avx512f avx512_vnni", False), ("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True)):
        monkeypatch.setattr(machine, "processor", lambda flags=flags: parse_cpuinfo(f"flags\t: {flags}\n"))
        assert machine.native_bf16() is native
    monkeypatch.setattr(machine, "processor", lambda: parse_cpuinfo("Features\t: fp asimd bf16 i8mm\n"))  # Arm
    assert machine.native_bf16() is True


def test_int8_products_saturate_on_x86_without_an_8_bit_dot_product(monkeypatch):
    monkeypatch.setattr(machine.platform, "machine", lambda: "x86_64")
    for flags, saturate in (("avx2", True), ("avx2 avx512f", True), ("avx2 avx512f avx512_vnni", False), ("avx2 avx_vnni", False),
                            ("avx2 amx_tile amx_int8", False)):
        monkeypatch.setattr(machine, "processor", lambda flags=flags: parse_cpuinfo(f"flags\t: {flags}\n"))
        assert machine.int8_products_saturate() is saturate, flags
    monkeypatch.setattr(machine.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(machine, "processor", lambda: parse_cpuinfo(ARM))
    assert machine.int8_products_saturate() is False


def test_this_machine_is_named_with_its_cores():
    name = machine_name()
    assert f", {available_cores()} cores" in name and available_cores() >= 1
    assert machine_name() is name  # measured once per process


def test_a_run_says_where_it_was_timed_and_warns_when_machines_mix():
    a, b = "A (x86_64), 2 cores", "B (x86_64), 8 cores, avx512_vnni"
    assert machines_note([{}, {"machine": None}]) is None
    assert machines_note([{"machine": a}, {"machine": a}, {}]) == f"timed on {a}"
    assert timing_machines([{"machine": a}, {"machine": b}, {"machine": b}]) == {b: 2, a: 1}
    note = machines_note([{"machine": a}, {"machine": b}, {"machine": b}])
    assert note is not None and note.startswith("WARNING: latencies were timed on 2 different machines")
    assert f"{b}: 2; {a}: 1" in note
