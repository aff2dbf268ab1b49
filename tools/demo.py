"""The main job, end to end on CPU in a few minutes: the learngene story on real data.

    nox -s demo                                   # what the README's first command runs
    python tools/demo.py --output-dir runs/demo [--depths 2,4,6] [--epochs 10] [--json results.json] [--threads N]
    python tools/demo.py --depths 4 --skip-baseline   # its smallest size (CI: tests/test_demo.py)

1. baseline: the digits-vit preset trained from scratch on all ten digits (the core Trainer's own check);
2. ancestry: a 6-layer ViT trained on digits 0-4 only;
3. TLEG, then 4. SWS: the method's learngene extracted from the ancestry by distillation (tiny preset), and
   descendants of several depths learning digits 5-9 (never seen by the ancestry) from 20 images per class,
   initialised from the learngene and from scratch with the same data, budget and architecture;
5. the results: one table per method.
Every step writes a run directory under --output-dir (config.yaml, metrics.jsonl, metrics.png, checkpoints).
The tables are the ones the root README quotes; `--json` also writes them as data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from learngene_core.errors import LearngeneError
from learngene_core.threads import add_threads_argument, apply_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))


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
    parser.add_argument(
        "--skip-baseline", action="store_true", help="skip step 1 (the core tests train it already)"
    )
    parser.add_argument("--json", help="also write the results (tables as data) to this JSON file")
    add_threads_argument(parser)
    args = parser.parse_args()
    apply_threads(args.threads)  # before torch loads: the console scripts' load-proof default, or --threads N

    from learngene_core.config import ExperimentConfig, load_config
    from learngene_core.experiment import train
    from learngene_core.learngene import format_table
    from learngene_story import run_method, train_ancestry

    out = Path(args.output_dir)
    depths = [int(d) for d in args.depths.split(",")]
    methods = ("tleg", "sws")

    baseline = None
    if not args.skip_baseline:
        print("== 1. baseline: digits-vit from scratch on all ten digits")
        start = time.perf_counter()
        config = load_config("digits-vit", ["train.progress=false"], ExperimentConfig)
        baseline = train(config, out / "digits-vit")
        print(f"digits-vit test accuracy {baseline['accuracy']:.4f} ({time.perf_counter() - start:.0f} s)")

    print("\n== 2. ancestry: 6-layer ViT on digits 0-4")
    ancestry, metrics = train_ancestry(out)
    print(f"ancestry test accuracy {metrics['accuracy']:.4f}")

    results = []
    for section, name in enumerate(methods, start=3):
        print(
            f"\n== {section}. {name}: extract the learngene, then descendants of depths {depths} vs scratch "
            "on digits 5-9"
        )
        results.append(run_method(name, out, ancestry, depths, args.epochs))

    epochs = args.epochs or 10
    print(f"\n== {3 + len(methods)}. results ({out})")
    if baseline is not None:
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
    if args.json:
        data = {
            "epochs": epochs,
            "baseline_accuracy": baseline and baseline["accuracy"],
            "ancestry_accuracy": metrics["accuracy"],
            "methods": [dataclasses.asdict(r) for r in results],
        }
        Path(args.json).write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LearngeneError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        sys.exit(2)
