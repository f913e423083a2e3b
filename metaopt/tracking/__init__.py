"""Where runs leave their traces: checkpoints on disk and MLflow runs (meta-training, sweeps,
plans, train/compare)."""
