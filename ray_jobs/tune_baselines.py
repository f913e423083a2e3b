"""`ray job submit` entry point for tuned baselines: Adam and RMSProp learning-rate sweeps per
env on Ray Tune; plain `python ray_jobs/tune_baselines.py ...` starts an embedded local Ray.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python ray_jobs/tune_baselines.py --config configs/tune/baselines_minatar.yaml \\
        --out runs/tune_baselines --set resources.gpus_per_trial=1
    python ray_jobs/tune_baselines.py --config configs/tune/baselines_tiny.yaml --out runs/tune_tiny

Writes the tuned-baselines file (configs/tuned/baselines.yaml unless `tuned_file` says
otherwise; `metaopt compare --optimizers adam:tuned rmsprop:tuned` reads it), trials.csv,
lr_sweep.png, and an MLflow parent run with one child per trial. Running the same command
again resumes an interrupted sweep without redoing finished trials.

Thin on purpose: `metaopt tune-baselines` with the same arguments.
"""

import sys

from metaopt.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune-baselines", *sys.argv[1:]]))
