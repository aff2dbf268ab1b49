"""The main job, end to end on CPU in a few minutes: the learngene story on real data.

    nox -s demo                                   # what the README's first command runs
    python tools/demo.py --output-dir runs/demo [--depths 2,4,6] [--epochs 10]

1. baseline: the digits-vit preset trained from scratch on all ten digits (the core Trainer's own check);
2. ancestry: a 6-layer ViT trained on digits 0-4 only;
3. TLEG and SWS learngenes extracted from it by distillation (tiny presets);
4. descendants of several depths learn digits 5-9 (never seen by the ancestry) from 20 images per class,
   initialised from each learngene and from scratch with the same data, budget and architecture.
Every step writes a run directory under --output-dir (config.yaml, metrics.jsonl, metrics.png, checkpoints).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from learngene_core.config import ExperimentConfig, load_config  # noqa: E402
from learngene_core.errors import LearngeneError  # noqa: E402
from learngene_core.experiment import train  # noqa: E402
from learngene_core.learngene import format_table  # noqa: E402
from learngene_story import run_method, train_ancestry  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--output-dir", default=f"runs/demo-{stamp}", help="where the runs are written")
    parser.add_argument("--depths", default="2,4,6", help="descendant depths")
    parser.add_argument(
        "--epochs", type=int, default=None, help="descendant epochs (default: the preset's 10)"
    )
    args = parser.parse_args()
    out = Path(args.output_dir)
    depths = [int(d) for d in args.depths.split(",")]

    print("== 1. baseline: digits-vit from scratch on all ten digits")
    start = time.perf_counter()
    baseline = train(
        load_config("digits-vit", ["train.progress=false"], ExperimentConfig), out / "digits-vit"
    )
    print(f"digits-vit test accuracy {baseline['accuracy']:.4f} ({time.perf_counter() - start:.0f} s)")

    print("\n== 2. ancestry: 6-layer ViT on digits 0-4")
    ancestry, metrics = train_ancestry(out)
    print(f"ancestry test accuracy {metrics['accuracy']:.4f}")

    results = []
    for name in ("tleg", "sws"):
        print(
            f"\n== 3. {name}: extract the learngene, then descendants of depths {depths} vs scratch on digits 5-9"
        )
        results.append(run_method(name, out, ancestry, depths, args.epochs))

    epochs = args.epochs or 10
    print(f"\n== results ({out})")
    print(f"baseline digits-vit (10 classes, scratch): test accuracy {baseline['accuracy']:.4f}")
    print(f"ancestry (digits 0-4): test accuracy {metrics['accuracy']:.4f}")
    for r in results:
        print(
            f"\n{r.method}: learngene {r.learngene_parameters:,} parameters vs ancestry {r.ancestry_parameters:,} "
            f"({r.learngene_parameters / r.ancestry_parameters:.0%}); aux net test accuracy {r.aux_test_accuracy:.3f}; "
            f"{r.seconds:.0f} s"
        )
        print(format_table(r.rows, epochs))
        print(f"curves: {out / f'{r.method}-compare' / 'compare.png'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LearngeneError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(2)
