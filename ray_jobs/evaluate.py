"""`ray job submit` entry point for evaluations.

With --plan: an evaluation plan (configs/eval/*.yaml), each optimizer x env cell a Ray task on
the cluster (a GPU each where the cluster has them), every cell an MLflow child run, results
in --out (an absolute path on the head, where the driver writes every cell; the job's working
folder is temporary):

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python ray_jobs/evaluate.py --plan configs/eval/minatar_1e7.yaml --out /home/metaopt/data/eval/minatar_1e7

Without: one env, several optimizers on the same seeds in this process (`metaopt compare`):

    python ray_jobs/evaluate.py --env breakout --optimizers models:/open-breakout@champion adam rmsprop \\
        --total-steps 1e7 --seeds 4 --out runs/eval_breakout

models:/ URIs are fetched from the MLflow registry at $MLFLOW_TRACKING_URI (default ~/.local/share/metaopt/mlruns.db).
"""

import sys

from metaopt.cli import main


def show_help() -> None:
    """Both modes' options: this entry point is `metaopt evaluate` with --plan and `metaopt compare` without."""
    print(__doc__)
    for mode, title in (("evaluate", "with --plan (metaopt evaluate)"), ("compare", "without --plan (metaopt compare)")):
        print(f"=== options {title} ===")
        try:
            main([mode, "--help"])
        except SystemExit:  # argparse's --help exits after printing
            pass


if __name__ == "__main__":
    args = sys.argv[1:]
    if any(a in ("-h", "--help") for a in args):
        show_help()
        sys.exit(0)
    sys.exit(main(["evaluate" if "--plan" in args else "compare", *args]))
