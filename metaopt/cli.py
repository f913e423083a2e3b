"""`metaopt ...` commands. Thin: parse, validate (exit 2 on bad input), call the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from metaopt.config import ENV_NAMES, LEARNED_OPTIMIZERS, OPTIMIZER_NAMES, ConfigError, TrainConfig, load_train_config


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like ConfigError
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE such as ppo.num_envs=32")
        out[key] = yaml.safe_load(value)
    return out


def _common_overrides(args) -> dict[str, Any]:
    ov = _parse_set(args.set)
    if args.total_steps is not None:
        ov["agent.total_timesteps"] = _int_or_float(args.total_steps, "--total-steps")
    if args.seeds is not None:
        ov["num_seeds"] = args.seeds
    if args.seed is not None:
        ov["seed"] = args.seed
    if getattr(args, "lr", None) is not None:
        ov["optimizer.learning_rate"] = args.lr
    return ov


def _int_or_float(text: str, flag: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a number; give e.g. 200000 or 1e6") from None
    if value != int(value):
        raise ConfigError(f"{flag}: {text!r} is not a whole number of steps; give e.g. 200000")
    return int(value)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", help=f"one of {', '.join(ENV_NAMES)} (uses configs/ppo/ENV.yaml; Catch and the gridworlds "
                   "train A2C from configs/a2c/ENV.yaml)")
    p.add_argument("--config", help="a TrainConfig YAML file instead of the published one for --env")
    p.add_argument("--total-steps", help="env steps per seed (e.g. 200000 or 1e6)")
    p.add_argument("--seeds", type=int, help="number of seeds, trained at once (vmapped)")
    p.add_argument("--seed", type=int, help="base seed")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set ppo.num_envs=32 (repeatable)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-track", action="store_true", help="do not record the run(s) in MLflow")


def build_parser() -> argparse.ArgumentParser:
    """The `metaopt` argument parser with all its subcommands; errors exit 2 in one line.

    Returns:
      The parser.
    """
    parser = _Parser(prog="metaopt", description="Learned optimizers for RL: train, compare, meta-train.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train PPO agents with one optimizer")
    _add_run_args(t)
    t.add_argument("--optimizer", help=f"one of {', '.join(OPTIMIZER_NAMES)}, adam:tuned, rmsprop:tuned (learning rate "
                   "from a baseline sweep), or a registered model models:/NAME@ALIAS")
    t.add_argument("--tracking-uri", help="MLflow store for models:/ and for recording the run "
                   "(default: $MLFLOW_TRACKING_URI or ~/.local/share/metaopt/mlruns.db)")
    t.add_argument("--lr", type=float, help="learning rate override")
    t.add_argument("--tuned-file", help="for adam:tuned / rmsprop:tuned (default configs/tuned/baselines.yaml)")
    t.add_argument("--meta-params", metavar="FILE",
                   help="open/optim4rl: trained meta-parameters (.safetensors, a published OPEN .npy, or "
                        "published:ENV for the shipped published OPEN weights)")

    c = sub.add_parser("compare", help="train PPO with several optimizers on the same seeds")
    _add_run_args(c)
    c.add_argument("--optimizers", nargs="+", required=True,
                   help=f"from {', '.join(OPTIMIZER_NAMES)}, adam:tuned, rmsprop:tuned, or registered models models:/NAME@ALIAS")
    c.add_argument("--tracking-uri", help="MLflow store for models:/ and for recording the runs "
                   "(default: $MLFLOW_TRACKING_URI or ~/.local/share/metaopt/mlruns.db)")
    c.add_argument("--tuned-file", help="for adam:tuned / rmsprop:tuned (default configs/tuned/baselines.yaml)")
    c.add_argument("--meta-params", action="append", default=[], metavar="[NAME=]FILE",
                   help="meta-parameters for a learned optimizer in the list (repeatable; NAME= picks which)")
    m = sub.add_parser("meta-train", help="meta-train OPEN (ES) or Optim4RL (pipeline) from a config in configs/meta/")
    m.add_argument("--config", required=True, help="a MetaTrainConfig YAML file, e.g. configs/meta/open_breakout_smoke.yaml")
    m.add_argument("--out", required=True, help="output folder; a folder with checkpoints of the same config is resumed")
    m.add_argument("--iterations", type=int, help="ES generations or pipeline meta-iterations (overrides the config)")
    m.add_argument("--init", metavar="SOURCE",
                   help="warm start from models:/NAME@ALIAS, published:ENV, a .safetensors or an OPEN .npy (init_from)")
    m.add_argument("--fresh", action="store_true", help="ignore checkpoints in --out and start over")
    m.add_argument("--ray", action="store_true",
                   help="run on Ray workers (distributed: in the config) with an MLflow run and model registration")
    m.add_argument("--resume", metavar="RUN_ID", help="with --ray: continue this MLflow run from its last checkpoint")
    m.add_argument("--no-eval", action="store_true", help="with --ray: register without the champion evaluation")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set es.population_size=16 (repeatable)")
    for kind, example in (("baselines", "configs/tune/baselines_minatar.yaml"),
                          ("sensitivity", "configs/tune/sensitivity_optim4rl_ant.yaml")):
        what = ("Adam/RMSProp learning-rate sweep per env; writes the tuned-baselines file" if kind == "baselines"
                else "meta-hyperparameter grid: meta-train, evaluate, heatmaps and the tuning-shift figure")
        tp = sub.add_parser(f"tune-{kind}", help=f"Ray Tune: {what}")
        tp.add_argument("--config", required=True, help=f"a sweep YAML file, e.g. {example}")
        tp.add_argument("--out", required=True, help="output folder; an interrupted sweep there is resumed")
        tp.add_argument("--fresh", action="store_true", help="discard a sweep in --out and start over")
        tp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any field, e.g. --set resources.gpus_per_trial=1 (repeatable)")
    ev = sub.add_parser("evaluate", help="run an evaluation plan (configs/eval/): each optimizer x env a Ray task, "
                        "tracked in MLflow, summarised with IQMs and CIs")
    ev.add_argument("--plan", required=True, help="a plan YAML file, e.g. configs/eval/minatar_1e7.yaml")
    ev.add_argument("--out", required=True, help="results folder (under `ray job submit`: an absolute path on storage "
                    "the nodes share); finished cells there are not run again")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any plan field, e.g. --set seeds=4 (repeatable)")
    ev.add_argument("--only", action="append", default=[], metavar="LABEL/ENV",
                    help="run only the cells matching this shell-style pattern, e.g. 'adam/*' or "
                    "'open-*/freeway' (repeatable); the summary covers every finished cell of the plan")
    ev.add_argument("--report", metavar="DIR", help="then write the report (README.md and figures) to DIR, as "
                    "`metaopt report OUT --out DIR` does")
    ev.add_argument("--baselines", action="extend", nargs="+", default=[], metavar="DIR",
                    help="with --report: `tune-baselines` output folders for the report's learning-rate section")
    rp = sub.add_parser("report", help="a Markdown report with figures from evaluation plans' result folders")
    rp.add_argument("results", nargs="+", help="folders written by `metaopt evaluate`")
    rp.add_argument("--sweep", action="append", default=[], metavar="DIR",
                    help="a `tune-sensitivity` output folder (its sweep folder) for the sensitivity section (repeatable)")
    rp.add_argument("--baselines", action="extend", nargs="+", default=[], metavar="DIR",
                    help="`tune-baselines` output folders (trials.csv, lr_sweep.png): how the baselines' learning "
                    "rates were chosen")
    rp.add_argument("--recipes", action="extend", nargs="+", default=[], metavar="JSON",
                    help="CPU recipes' evaluations (benchmarks/recipes/*.json with `results`): the section on "
                    "meta-training at CPU scale")
    rp.add_argument("--out", required=True, help="report folder (README.md and figures)")
    dr = sub.add_parser("doctor", help="check JAX and its devices, the CPU kernels, Ray and MLflow (exit 1 if "
                        "something needed is unusable)")
    dr.add_argument("--ray-address", help="a Ray cluster to check (default: $RAY_ADDRESS; none: embedded Ray)")
    dr.add_argument("--tracking-uri",
                    help="MLflow store to check (default: $MLFLOW_TRACKING_URI or ~/.local/share/metaopt/mlruns.db)")
    dr.add_argument("--require-gpu", action="store_true", help="fail when JAX sees no GPU (GPU nodes)")
    pl = sub.add_parser("pull", help="save a registered optimizer's meta-parameters to a file")
    pl.add_argument("uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    pl.add_argument("--out", required=True, help="file to write (.safetensors)")
    pl.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or ~/.local/share/metaopt/mlruns.db)")

    im = sub.add_parser("import-open", help="register a published OPEN weight file (.npy) as a model version")
    im.add_argument("file", help="published:ENV (shipped, e.g. published:breakout) or a published .npy file")
    im.add_argument("--name", required=True, help="registered model name, e.g. open-breakout-published")
    im.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI or ~/.local/share/metaopt/mlruns.db)")
    return parser


def _tracking(args):
    from metaopt.config import TrackingConfig

    return TrackingConfig(uri=getattr(args, "tracking_uri", None))


def _registry_command(args) -> int:
    from metaopt import registry

    if args.command == "pull":
        path = registry.pull(args.uri, args.out, _tracking(args))
        print(f"wrote {path}")
    else:
        from metaopt import published

        try:
            args.file = published.resolve(args.file)
        except ValueError as exc:
            raise ConfigError(f"file: {exc}") from None
        version = registry.import_open(args.file, args.name, _tracking(args))
        print(f"registered {args.file} as models:/{args.name}/{version.version} (also models:/{args.name}@latest)")
    return 0


def _refuse_relative_out_in_a_job(out: Path, also: str = "") -> None:
    """Every entry point's --out under `ray job submit`: a relative folder would be the job's temporary
    copy of the repo, unreachable for the user, so it is refused before any compute."""
    from metaopt.evaluation.plan import submitted_by_ray_job

    if submitted_by_ray_job() and not out.is_absolute():
        raise ConfigError(f"--out {out}: under `ray job submit` a relative folder is the job's temporary copy of the "
                          f"repo; give an absolute path on storage the nodes share{f' ({also})' if also else ''}")


def _meta_train(args) -> int:
    from metaopt.config import load_meta_config

    if args.ray:
        from metaopt.distributed.resources import keep_driver_on_cpu

        keep_driver_on_cpu()  # before anything starts JAX: the GPUs are the workers'

    overrides = _parse_set(args.set)
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if args.init is not None:
        overrides["init_from"] = args.init
    cfg = load_meta_config(args.config, overrides)
    from metaopt.meta.warm_start import load_warm_start

    load_warm_start(cfg)  # a bad --init / init_from stops here (exit 2), before any compilation
    from metaopt import console
    from metaopt.evaluation.report import plot_meta_training
    from metaopt.meta.pipeline import MetaTrainingDiverged
    from metaopt.serialization import CheckpointMismatch

    if args.resume and not args.ray:
        raise ConfigError("--resume RUN_ID continues an MLflow run of a Ray job; add --ray (without it, "
                          "rerunning with the same --out resumes from its checkpoints)")
    out = Path(args.out)
    _refuse_relative_out_in_a_job(out, "the optimizer is also registered in MLflow: metaopt pull models:/NAME@champion")
    try:
        with console.meta_progress(cfg) as progress:
            if args.ray:
                from metaopt.distributed.job import run_meta_job

                job = run_meta_job(cfg, out, resume_run_id=args.resume, evaluate=not args.no_eval, progress=progress)
                result = job.run
            else:
                from metaopt.meta.run import meta_train

                result = meta_train(cfg, out, progress=progress, resume=not args.fresh)
    except (MetaTrainingDiverged, CheckpointMismatch) as exc:  # a known run failure: one line; anything else keeps its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.history:
        plot_meta_training(out / "meta_training.png", result.history, cfg.method, cfg.env_names)
    console.show_meta_result(cfg, out, result)
    if args.ray:
        console.show_meta_job(job, evaluate=not args.no_eval)
    return 0


def _evaluate(args) -> int:
    from metaopt.evaluation.plan import load_plan, resolve_cells, select_cells

    plan = load_plan(args.plan, _parse_set(args.set))
    out = Path(args.out)
    if args.baselines and not args.report:
        raise ConfigError("--baselines: only used by the report; add --report DIR")
    _check_baselines(args.baselines)
    _refuse_relative_out_in_a_job(out, "cells are also in MLflow")
    from metaopt.distributed.resources import keep_driver_on_cpu
    from metaopt.tracking.mlflow_run import code_version

    keep_driver_on_cpu()  # the cells train on the workers; the driver only reads files and statistics
    code_version()  # asks git now: a fork after JAX has started threads would warn
    cells = resolve_cells(plan)  # every config, tuned rate, model and file checked before any cell runs
    select_cells(cells, args.only)  # and every --only pattern
    from metaopt import console
    from metaopt.evaluation.plan_run import run_plan

    try:
        summary = run_plan(plan, cells, out, log=console.log_line, only=args.only)
    except KeyboardInterrupt:
        print(f"interrupted: finished cells and the running cells' partial runs are in {out}; "
              "the same command goes on from there", file=sys.stderr)
        return 130
    console.show_plan_summary(summary, out)
    if args.report:
        from metaopt.evaluation.study_report import write_report

        path = write_report([out], Path(args.report), baselines=[Path(b) for b in args.baselines])
        print(f"wrote {path}")
    return 0


def _check_baselines(folders: list[str]) -> None:
    for folder in folders:
        if not (Path(folder) / "trials.csv").is_file():
            raise ConfigError(f"--baselines: {folder} holds no trials.csv; give folders written by `metaopt tune-baselines`")


def _report(args) -> int:
    from metaopt.evaluation.study_report import write_report

    _check_baselines(args.baselines)
    for folder in args.results:
        if not (Path(folder) / "plan.yaml").is_file():
            raise ConfigError(f"results: {folder} holds no plan.yaml; give folders written by `metaopt evaluate`")
    for recipe in args.recipes:
        if not Path(recipe).is_file():
            raise ConfigError(f"--recipes: {recipe} does not exist; give benchmarks/recipes/NAME.json files")
    path = write_report([Path(f) for f in args.results], Path(args.out), sweeps=[Path(s) for s in args.sweep],
                        baselines=[Path(b) for b in args.baselines], recipes=[Path(r) for r in args.recipes])
    print(f"wrote {path}")
    return 0


def _tune(args) -> int:
    from metaopt.config import BaselineSweepConfig, SensitivitySweepConfig, load_sweep_config
    from metaopt.tuning.sweep import SweepInterrupted

    kind = args.command.removeprefix("tune-")
    model = BaselineSweepConfig if kind == "baselines" else SensitivitySweepConfig
    sweep = load_sweep_config(args.config, model, _parse_set(args.set))
    from metaopt.evaluation.plan import submitted_by_ray_job

    _refuse_relative_out_in_a_job(Path(args.out))
    if submitted_by_ray_job():  # the job's working folder is a temporary copy of the repo
        if sweep.storage is not None and "://" not in sweep.storage and not Path(sweep.storage).is_absolute():
            raise ConfigError(f"storage: {sweep.storage} is relative: under `ray job submit` that is the job's temporary "
                              "copy of the repo; give s3://BUCKET/PREFIX or an absolute folder")
        job_copy = Path.cwd().resolve()  # the job's working folder, where the default configs/tuned/ is too
        if kind == "baselines" and (not sweep.tuned_path.is_absolute() or job_copy in sweep.tuned_path.resolve().parents):
            sweep = sweep.model_copy(update={"tuned_file": str(Path(args.out) / "tuned_baselines.yaml")})
            print(f"tuned_file: {sweep.tuned_file} (one in the job's working folder would be lost with it; "
                  "also an artifact of the sweep's MLflow run)", file=sys.stderr)
    from metaopt import console

    try:
        if kind == "baselines":
            from metaopt.tuning.baselines import run_baseline_sweep

            console.show_baseline_sweep(sweep, run_baseline_sweep(sweep, Path(args.out), fresh=args.fresh))
        else:
            from metaopt.tuning.sensitivity import run_sensitivity_sweep

            console.show_sensitivity_sweep(sweep, run_sensitivity_sweep(sweep, Path(args.out), fresh=args.fresh))
    except SweepInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    return 0


def _meta_params_for(args, optimizer: str) -> str | None:
    """`train --meta-params FILE`; `compare --meta-params [NAME=]FILE ...`."""
    items = args.meta_params if isinstance(args.meta_params, list) else [args.meta_params] if args.meta_params else []
    plain = None
    for item in items:
        name, sep, path = item.partition("=")
        if sep and name in LEARNED_OPTIMIZERS:
            if name == optimizer:
                return path
        elif plain is None:
            plain = item
    return plain


def _resolve(args, optimizer: str | None) -> TrainConfig:
    overrides = _common_overrides(args)
    if optimizer is not None and optimizer.startswith("models:/"):
        from metaopt import registry

        path, optimizer, settings = registry.fetch(optimizer, _tracking(args))
        # The registered settings first, then --set optimizer.* on top (a field the method
        # lacks fails validation in one line).
        overrides = {"optimizer": {**settings, "meta_params": str(path)}, **overrides}
        return load_train_config(env=args.env, config_file=args.config, overrides=overrides)
    cfg = load_train_config(env=args.env, config_file=args.config, optimizer=optimizer, overrides=overrides,
                            tuned_file=args.tuned_file)
    if cfg.optimizer.name in LEARNED_OPTIMIZERS:
        path = _meta_params_for(args, cfg.optimizer.name)
        if path is not None:
            overrides["optimizer.meta_params"] = path
            cfg = load_train_config(env=args.env, config_file=args.config, optimizer=optimizer, overrides=overrides)
        _check_meta_params(cfg)
    return cfg


def _check_meta_params(cfg: TrainConfig) -> None:
    """Load the file now, so a wrong or corrupt one fails before any compilation."""
    name, path = cfg.optimizer.name, cfg.optimizer.meta_params
    if path is None:
        raise ConfigError(f"optimizer.meta_params: {name} needs trained meta-parameters; pass --meta-params FILE")
    from metaopt.optimizers.learned import load_meta_params

    try:
        load_meta_params(path, name)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"optimizer.meta_params: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 a run failed (diverged, a checkpoint of another config), 2 bad
    input (before any compute), 3 the MLflow registry cannot be reached, 130 interrupted.

    Args:
      argv: the arguments after the program name; None: sys.argv[1:].

    Returns:
      The exit code.
    """
    from metaopt.registry import RegistryUnavailable

    args = build_parser().parse_args(argv)
    try:
        if args.command == "meta-train":
            return _meta_train(args)
        if args.command in ("pull", "import-open"):
            return _registry_command(args)
        if args.command.startswith("tune-"):
            return _tune(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "report":
            return _report(args)
        names = [args.optimizer] if args.command == "train" else args.optimizers
        configs = [_resolve(args, name) for name in names]
        _refuse_relative_out_in_a_job(Path(args.out), "runs are also recorded in MLflow")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RegistryUnavailable as exc:  # not the input's fault: its own exit code
        print(f"error: {exc}", file=sys.stderr)
        return 3
    # Validated: only now pay for importing and compiling JAX code.
    from metaopt import console
    from metaopt.evaluation.report import write_run
    from metaopt.training.runs import run_training

    labels = [name if name and name.endswith(":tuned") else console.run_label(cfg) for name, cfg in zip(names, configs)]
    results = []
    for cfg, label in zip(configs, labels):
        with console.training_progress(cfg, label) as progress:
            results.append(run_training(cfg, label=label, progress=progress))
    comparison = args.command == "compare"
    write_run(Path(args.out), results, comparison)
    console.show_runs(results, Path(args.out))
    if not args.no_track:
        from metaopt.tracking.mlflow_run import tracking_uri
        from metaopt.tracking.runs import EXPERIMENT, record_training

        ids = record_training(results, Path(args.out), _tracking(args), args.command, comparison)
        console.log_line(f"MLflow: {len(ids)} run(s) in experiment {EXPERIMENT} at {tracking_uri(_tracking(args))}")
    return 0


def _doctor(args) -> int:
    from metaopt import console
    from metaopt.doctor import run_checks

    checks = run_checks(args.ray_address, args.tracking_uri, args.require_gpu, report=console.show_check)
    failed = [c.name for c in checks if c.needed and not c.ok]
    console.show_doctor_verdict(failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
