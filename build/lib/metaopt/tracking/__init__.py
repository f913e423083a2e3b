"""Where runs leave their traces: checkpoints on disk (and, with Ray, MLflow)."""
