"""What every metaopt sweep shares: starting or resuming a Ray Tune experiment, progress on
the terminal, per-group early stopping, and reading the trials back as plain rows.

A storage location holds one sweep: `ROOT/NAME/` is Tune's experiment (trial folders, state),
`ROOT/NAME.sweep.yaml` the resolved config it was started with. ROOT is the output folder, or
the sweep's `storage`: an object-store URI (s3://BUCKET/PREFIX, gs://...) through pyarrow, so
a cluster needs no shared file system (credentials and AWS_ENDPOINT_URL come from the
environment, as for any pyarrow or boto3 client). Running the same command again restores the
experiment (`Tuner.restore`): finished trials are kept, unfinished ones run again (from their
own checkpoints where they write them); a different config in the same place is refused
rather than mixed in.
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from metaopt.config import ConfigError, SweepResources
from metaopt.distributed.cores import cores_to_claim
from metaopt.tuning.trials import COMPLETED, FAILED, STOPPED, UNFINISHED


def cores_for_trial(resources: SweepResources) -> int:
    """How many cores each trial claims and keeps to (`metaopt.distributed.cores`).

    Args:
      resources: the sweep's resources.

    Returns:
      The count; 0: trials are not pinned.
    """
    return cores_to_claim(resources.cpus_per_trial, resources.gpus_per_trial, resources.pin_cpus)


def say(line: str) -> None:
    """A progress line on stderr (the sweep's own output; metaopt.console presents results).

    Args:
      line: the text.
    """
    print(line, file=sys.stderr, flush=True)


class SweepInterrupted(RuntimeError):
    """The sweep stopped (Ctrl-C, a lost driver) before all its trials finished."""


class GroupedASHA(FIFOScheduler):
    """ASHA within groups of trials: a trial is only compared with trials of its own group
    (same env and optimizer), since returns of different envs or optimizers are not
    comparable, and the best learning rate of each optimizer must survive."""

    def __init__(self, group_keys: Sequence[str], **asha: Any):
        super().__init__()
        self.group_keys, self.asha, self.groups = tuple(group_keys), asha, {}

    def _of(self, trial: Trial) -> AsyncHyperBandScheduler:
        key = tuple(trial.config.get(k) for k in self.group_keys)
        if key not in self.groups:
            self.groups[key] = AsyncHyperBandScheduler(**self.asha)
            self.groups[key].set_search_properties(self._metric, self._mode)
        return self.groups[key]

    def set_search_properties(self, metric, mode, **spec) -> bool:
        """Tune's hook: the metric and mode to compare trials by (None: those given to ASHA).

        Args:
          metric: the reported metric; None: ASHA's own.
          mode: "max" or "min"; None: ASHA's own.
          **spec: ignored.

        Returns:
          True (accepted).
        """
        self._metric = metric or self.asha.get("metric")
        self._mode = mode or self.asha.get("mode")
        return True

    def on_trial_add(self, tune_controller, trial):
        """Tune's hook: hand a new trial to its group's ASHA.

        Args:
          tune_controller: Tune's controller.
          trial: the trial.
        """
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result) -> str:
        """Tune's hook: the trial's group ASHA decides whether it goes on.

        Args:
          tune_controller: Tune's controller.
          trial: the trial.
          result: its latest report.

        Returns:
          CONTINUE or STOP, as ASHA decides within the group.
        """
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        """Tune's hook: pass a finished trial to its group's ASHA.

        Args:
          tune_controller: Tune's controller.
          trial: the trial.
          result: its last report.
        """
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        """Tune's hook: pass a removed trial to its group's ASHA.

        Args:
          tune_controller: Tune's controller.
          trial: the trial.
        """
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        """Tune's status line for this scheduler.

        Returns:
          The line.
        """
        return f"ASHA in {len(self.groups)} groups by {', '.join(self.group_keys)}"


class TrialProgress(tune.Callback):
    """One line per finished trial (in logs and on terminals alike), with a count and ETA.
    Restored sweeps bring this callback back from Tune's saved state; `setup` resets it."""

    def __init__(self, total: int, describe: Callable[[dict], str]):
        self.total, self.describe = total, describe

    def setup(self, **info):
        """Tune's hook at the start (and on restore): restart the clock and the count of trials finished
        here.

        Args:
          **info: ignored.
        """
        self.t0, self.finished_here = time.monotonic(), 0

    def _line(self, trials: list[Trial], trial: Trial, verdict: str) -> None:
        self.finished_here += 1
        done = 1 + sum(t is not trial and t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials)
        eta = (time.monotonic() - self.t0) / self.finished_here * (self.total - done)
        say(f"trial {done}/{self.total} {verdict}: {self.describe(trial.config)} "
            f"[{trial.last_result.get('time_total_s', 0.0):.0f}s; eta {eta:.0f}s]")

    def on_trial_complete(self, iteration, trials, trial, **info):
        """Tune's hook: a line with the trial's final return, or where it was stopped early.

        Args:
          iteration: Tune's loop count (unused).
          trials: all trials (for the count).
          trial: the finished trial.
          **info: ignored.
        """
        ret = trial.last_result.get("final_return")
        report = trial.last_result.get("training_iteration")
        verdict = f"final return {ret:.3f}" if ret is not None else f"{STOPPED} at report {report}"
        self._line(trials, trial, verdict)

    def on_trial_error(self, iteration, trials, trial, **info):
        """Tune's hook: a line for a failed trial.

        Args:
          iteration: Tune's loop count (unused).
          trials: all trials (for the count).
          trial: the failed trial.
          **info: ignored.
        """
        self._line(trials, trial, FAILED)


def trial_status(status: str, metrics: dict) -> str:
    """A Tune trial's outcome as one of COMPLETED, STOPPED, FAILED, UNFINISHED.

    Args:
      status: Tune's trial status.
      metrics: the trial's last reported metrics (a completed trial has final_return).

    Returns:
      The outcome.
    """
    if status == Trial.TERMINATED:
        return COMPLETED if "final_return" in metrics else STOPPED
    return FAILED if status == Trial.ERROR else UNFINISHED


def fit(
    trainable: Callable,
    param_space: dict[str, Any],
    *,
    out: Path,
    name: str,
    config_dump: dict[str, Any],
    resources: SweepResources,
    total_trials: int,
    describe: Callable[[dict], str],
    metric: str | None = None,
    scheduler: TrialScheduler | None = None,
    fresh: bool = False,
    storage: str | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the sweep; returns one row per trial: its config, status, last
    reported metrics, Tune id and folder.

    Args:
      trainable: the Tune function trainable.
      param_space: Tune's search space.
      out: the output folder (holds OUT/NAME/ and OUT/NAME.sweep.yaml).
      name: the experiment's name.
      config_dump: the resolved sweep config; a restore with another one is refused (ConfigError).
      resources: what each trial asks for, concurrency and retries.
      total_trials: the number of trials, for progress lines.
      describe: trial config -> its description in progress lines.
      metric: the metric the scheduler compares; None: no metric.
      scheduler: a Tune scheduler; None: FIFO.
      fresh: delete an existing experiment in the storage location first.
      storage: where Tune keeps the experiment: a folder or an object-store URI; None: `out`.

    Returns:
      Rows with trial_id, status, config, metrics and path (a folder, or a URI with object
      storage); raises SweepInterrupted if any trial is unfinished.
    """
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = experiment_root(out, storage)
    experiment, stamp = f"{root}/{name}", f"{root}/{name}.sweep.yaml"
    if fresh:
        _delete(experiment)
        _delete(stamp)
    trainable = tune.with_resources(trainable, {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial})
    if tune.Tuner.can_restore(experiment):
        started_with = _read_text(stamp)
        if started_with is not None and yaml.safe_load(started_with) != config_dump:
            raise ConfigError(f"{experiment} holds a sweep of another config ({stamp}); use another --out or --fresh")
        already = sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in _trials(experiment))
        say(f"resuming {experiment}: {already} of {total_trials} trials already finished")
        tuner = tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True)
    else:
        _write_text(stamp, yaml.safe_dump(config_dump, sort_keys=False))
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=metric, mode="max" if metric else None, scheduler=scheduler,
                max_concurrent_trials=resources.max_concurrent_trials,
                reuse_actors=False,  # reused, a trial's get_trial_dir() was another trial's (Ray 2.60)
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=root, verbose=0,
                failure_config=tune.FailureConfig(max_failures=resources.max_failures),
                callbacks=[TrialProgress(total_trials, describe)],
            ),
        )
    tuner.fit()
    rows = []
    for trial in _trials(experiment):
        metrics = dict(trial.last_result or {})
        rows.append({
            "trial_id": trial.trial_id, "status": trial_status(trial.status, metrics),
            "config": dict(trial.config), "metrics": metrics, "path": _trial_location(trial),
        })
    unfinished = sum(r["status"] == UNFINISHED for r in rows)
    if unfinished:
        raise SweepInterrupted(f"{len(rows) - unfinished} of {total_trials} trials finished; run the same command "
                               f"again to resume {experiment}")
    return rows


def _trials(experiment: str) -> list[Trial]:
    return list(tune.ExperimentAnalysis(experiment).trials)


def experiment_root(out: Path, storage: str | None) -> str:
    """Where a sweep's experiment and config stamp live.

    Args:
      out: the sweep's output folder.
      storage: a folder or an object-store URI (s3://BUCKET/PREFIX); None: `out`.

    Returns:
      An absolute folder or a URI, without a trailing slash.
    """
    if storage is None:
        return str(out)
    return storage.rstrip("/") if "://" in storage else str(Path(storage).resolve())


def _filesystem(location: str):
    """(pyarrow file system, path in it) for a folder, a file or a URI."""
    import pyarrow.fs

    if "://" in location:
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), str(Path(location).resolve())


def _read_text(location: str) -> str | None:
    import pyarrow.fs

    fs, path = _filesystem(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def _write_text(location: str, text: str) -> None:
    fs, path = _filesystem(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def _delete(location: str) -> None:
    import pyarrow.fs

    fs, path = _filesystem(location)
    kind = fs.get_file_info(path).type
    if kind == pyarrow.fs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pyarrow.fs.FileType.File:
        fs.delete_file(path)


def _trial_location(trial: Trial) -> str | None:
    """A trial's folder: a local path, or a URI where the storage is remote."""
    path = trial.path
    if path is None:
        return None
    fs = trial.storage.storage_filesystem
    return path if fs.type_name == "local" else f"{fs.type_name}://{path}"


def history(path: str | None, columns: Sequence[str]) -> list[dict[str, float]]:
    """A trial's reports (Tune's progress.csv), the given columns only.

    Args:
      path: the trial's folder (or its URI on object storage); None: no folder.
      columns: the columns to keep.

    Returns:
      One dict per report (empty cells left out); empty without a progress.csv.
    """
    text = _read_text(f"{path}/progress.csv") if path else None
    if text is None:
        return []
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{c: float(r[c]) for c in columns if r.get(c) not in (None, "")} for r in rows]


def spread(values: Sequence[float]) -> float:
    """Best / worst final return over a grid: how much tuning matters. inf when the worst
    run earned nothing (or less); NaN with fewer than two finite values.

    Args:
      values: final returns; non-finite ones are ignored.

    Returns:
      The ratio.
    """
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size < 2:
        return float("nan")
    return float(v.max() / v.min()) if v.min() > 0 else float("inf")
