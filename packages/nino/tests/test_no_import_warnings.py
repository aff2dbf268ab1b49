"""Using NiNo prints no third-party deprecation noise (torch_geometric's import calls torch.jit.script)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_nino_network_warns_nothing():
    code = "import nino.model, nino.graph, torch_geometric.data"
    result = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
