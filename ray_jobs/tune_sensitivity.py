"""`ray job submit` entry point for meta-hyperparameter sensitivity sweeps on Ray Tune (Optim4RL
meta learning rate x reset interval x L2, OPEN sigma x lr x population); plain
`python ray_jobs/tune_sensitivity.py ...` starts an embedded local Ray.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python ray_jobs/tune_sensitivity.py --config configs/tune/sensitivity_optim4rl_ant.yaml \\
        --out runs/sensitivity_ant --set resources.gpus_per_trial=1
    python ray_jobs/tune_sensitivity.py --config configs/tune/sensitivity_optim4rl_tiny.yaml --out runs/sens_tiny

Each trial meta-trains and then evaluates the result on fresh seeds. Writes heatmap.png,
tuning_shift.png, trials.csv and an MLflow parent run with one child per trial. Running the
same command again resumes an interrupted sweep; an interrupted trial continues its
meta-training from its last checkpoint.

Thin on purpose: `metaopt tune-sensitivity` with the same arguments.
"""

import sys

from metaopt.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune-sensitivity", *sys.argv[1:]]))
