"""The functions Ray Tune runs as trials. Light on purpose: a trial's process imports this
module before it runs the trial, and the trial's code starts JAX's CPU backend as it is imported,
which sizes XLA's thread pool to the cores the process may use at that moment. So a trial first
claims and pins its cores (`metaopt.distributed.cores`), then imports the work
(`metaopt.tuning.trial_work`)."""

from __future__ import annotations

from metaopt.distributed.cores import kept_to_own_cores


def baseline_trial(params: dict, sweep_json: str, cores: int = 0) -> None:
    """One baseline-sweep trial (`trial_work.baseline_trial`) on `cores` cores of its own.

    Args:
      params, sweep_json: as `trial_work.baseline_trial`.
      cores: how many of the node's cores to claim and keep to; 0, or too few free: unpinned.
    """
    with kept_to_own_cores(cores):
        from metaopt.tuning.trial_work import baseline_trial as work  # after pinning: it starts JAX (above)

        work(params, sweep_json)


def sensitivity_trial(params: dict, base_json: str, results: str | None = None, cores: int = 0) -> None:
    """One sensitivity-sweep trial (`trial_work.sensitivity_trial`) on `cores` cores of its own.

    Args:
      params, base_json, results: as `trial_work.sensitivity_trial`.
      cores: how many of the node's cores to claim and keep to; 0, or too few free: unpinned.
    """
    with kept_to_own_cores(cores):
        from metaopt.tuning.trial_work import sensitivity_trial as work  # after pinning: it starts JAX (above)

        work(params, base_json, results)
