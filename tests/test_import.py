import subprocess
import sys


def test_package_import_is_light():
    code = (
        "import sys, evoforge, evoforge.cli, evoforge.search.engine, evoforge.api; "
        "heavy = [m for m in ('torch', 'iree', 'iree.compiler', 'ray', 'pandas') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
