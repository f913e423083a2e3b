"""Ray Tune sweeps: tuned Adam/RMSProp baselines and meta-hyperparameter sensitivity."""
