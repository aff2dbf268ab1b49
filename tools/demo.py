"""The main job, end to end on CPU: train the digits baseline from scratch and print a results table.

    nox -s demo                         # what the README's first command runs
    python tools/demo.py --output-dir runs/demo [key=value ...]

Each run writes a run directory (config.yaml, metrics.jsonl, metrics.png, best/, final/) under --output-dir.
Later method packages add their rows (learngene-initialised descendants) to this table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from learngene_core.config import ExperimentConfig, load_config
from learngene_core.errors import LearngeneError
from learngene_core.experiment import train
from learngene_core.metrics import PLOT_NAME


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--output-dir", default=f"runs/demo-{stamp}", help="where the runs are written")
    parser.add_argument(
        "overrides", nargs="*", help="overrides for the digits-vit preset, e.g. train.epochs=5"
    )
    args = parser.parse_args()
    out = Path(args.output_dir)

    rows = []
    for preset in ["digits-vit"]:
        cfg = load_config(preset, args.overrides, ExperimentConfig)
        start = time.perf_counter()
        metrics = train(cfg, out / preset)
        final = json.loads((out / preset / "final" / "metadata.json").read_text())
        rows.append(
            (
                preset,
                "scratch",
                final["parameters"],
                cfg.train.epochs,
                metrics["accuracy"],
                time.perf_counter() - start,
            )
        )

    print(f"\nresults ({out}):")
    print("| run | init | parameters | epochs | test accuracy | seconds |")
    print("|---|---|---|---|---|---|")
    for name, init, params, epochs, acc, secs in rows:
        print(f"| {name} | {init} | {params:,} | {epochs} | {acc:.4f} | {secs:.1f} |")
    print(f"curves: {out / rows[0][0] / PLOT_NAME}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LearngeneError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(2)
