"""acquisition stays pure numpy: importing it must not pull in torch, SQLAlchemy or Prefect."""

from __future__ import annotations

import subprocess
import sys


def test_acquisition_imports_no_torch_sql_or_prefect() -> None:
    code = (
        "import sys, activelabel.acquisition, activelabel.acquisition.batchbald, "
        "activelabel.acquisition.density, activelabel.acquisition.decomposition, activelabel.acquisition.pixelwise; "
        "bad = sorted(m for m in ('torch', 'sqlalchemy', 'prefect') if m in sys.modules); "
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
