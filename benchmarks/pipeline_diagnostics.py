"""Does pipeline training's meta-gradient point the right way? Two checks on Breakout.

terms: the meta-gradient split by the meta-loss's terms (PPO policy surrogate, value loss
  x vf_coef, entropy x -ent_coef) for one agent at several stages of training under the
  initial optimizer: each term's norm and the cosines between them. At ratio 1 with
  normalised advantages the surrogate's *value* is 0, so the meta-loss's value is the value
  loss and entropy; its gradient still carries the policy term.
fixed_stage: meta-gradient descent (the pipeline's meta-optimizer) on one agent frozen at a
  stage (no resets, one rollout key), recording the meta-loss, the optimizer's step size on a
  fixed gradient sample, and the return after `--horizon` more PPO updates from that stage
  (same keys each time): does following the meta-gradient make the optimizer better there?

    python benchmarks/pipeline_diagnostics.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def _engine(inner_updates: int, meta_lr: float):
    from metaopt.config import CONFIG_DIR, load_meta_config
    from metaopt.meta.pipeline import pipeline_engine

    cfg = load_meta_config(CONFIG_DIR / "meta" / "optim4rl_breakout.yaml", {
        "pipeline.width": 2, "pipeline.agents_per_group": 2, "pipeline.inner_updates": inner_updates,
        "pipeline.meta_learning_rate": meta_lr})
    return cfg, pipeline_engine(cfg)


def terms(stages: int, every: int, inner_updates: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np


    cfg, engine = _engine(inner_updates, 1e-3)
    state = engine.init(jax.random.key(0))
    agent = jax.tree.map(lambda x: x[0], state.agents[0])
    ppo = engine.agent(0, state.meta_params)
    advance = jax.jit(lambda a: jax.lax.scan(lambda s, _: ppo.update(s), a, None, length=every)[0])

    def parts(meta, agent):
        _, (_, m) = engine.agent_meta_loss(0, meta, agent)
        return jnp.stack([m["policy_loss"], m["value_loss"], m["entropy"]]), m

    jac = jax.jit(jax.jacrev(parts, has_aux=True))
    p = cfg.tasks[0].ppo
    weights = np.array([1.0, p.vf_coef, -p.ent_coef])
    rows = []
    for _ in range(stages):
        J, m = jac(state.meta_params, agent)
        flat = np.stack([np.asarray(jax.flatten_util.ravel_pytree(jax.tree.map(lambda x, i=i: x[i], J))[0]) for i in range(3)])
        t = flat * weights[:, None]
        total = t.sum(0)

        def cos(a, b):
            return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

        norms = np.linalg.norm(t, axis=1)
        rows.append({"updates_done": int(agent.update_idx), "return": float(m["last_episode_return"]),
                     "policy_loss_value": float(m["policy_loss"]), "value_loss": float(m["value_loss"]),
                     "norm_policy": float(norms[0]), "norm_value": float(norms[1]), "norm_entropy": float(norms[2]),
                     "cos_policy_value": cos(t[0], t[1]), "cos_total_policy": cos(total, t[0]),
                     "cos_total_value": cos(total, t[1])})
        print(json.dumps(rows[-1]), flush=True)
        agent = advance(agent)
    return rows


def fixed_stage(stage: int, meta_steps: int, every: int, horizon: int, inner_updates: int, meta_lr: float) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import optax

    from metaopt.meta.pipeline import meta_optimizer
    from metaopt.optimizers import optim4rl

    cfg, engine = _engine(inner_updates, meta_lr)
    state = engine.init(jax.random.key(0))
    meta = state.meta_params
    ppo = engine.agent(0, meta)
    agent = jax.tree.map(lambda x: x[0], state.agents[0])
    agent = jax.jit(lambda a: jax.lax.scan(lambda s, _: ppo.update(s), a, None, length=stage)[0])(agent)
    grad = jax.jit(jax.value_and_grad(lambda mp: engine.agent_meta_loss(0, mp, agent)[0]))
    sample = jnp.clip(0.01 * jax.random.normal(jax.random.key(1), (4096,)), -1, 1)
    hidden = cfg.optimizer.hidden

    @jax.jit
    def step_rms(mp):
        _, d = optim4rl.direction(mp, jnp.zeros((2, hidden, sample.shape[0])), sample)
        return jnp.sqrt(jnp.mean(d ** 2))

    @jax.jit
    def later_return(mp):
        p = engine.agent(0, mp)
        _, m = jax.lax.scan(lambda s, _: p.update(s), agent, None, length=horizon)
        return jnp.nanmean(m["last_episode_return"][-5:])

    opt = meta_optimizer(cfg.pipeline)
    opt_state = opt.init(meta)
    rms0 = float(step_rms(meta))
    rows = []
    for it in range(meta_steps + 1):
        loss, g = grad(meta)
        if it % every == 0:
            rows.append({"meta_step": it, "meta_loss": float(loss), "step_rms_vs_initial": float(step_rms(meta)) / rms0,
                         f"return_after_{horizon}_more_updates": float(later_return(meta))})
            print(json.dumps(rows[-1]), flush=True)
        updates, opt_state = opt.update(g, opt_state, meta)
        meta = optax.apply_updates(meta, updates)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inner-updates", type=int, default=4)
    parser.add_argument("--stage", type=int, default=10, help="PPO updates the frozen agent has had")
    parser.add_argument("--meta-steps", type=int, default=40)
    parser.add_argument("--meta-lr", type=float, default=1e-3)
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    t0 = time.perf_counter()
    record = {"terms": terms(4, 10, args.inner_updates),
              "fixed_stage": fixed_stage(args.stage, args.meta_steps, 5, args.horizon, args.inner_updates, args.meta_lr),
              "settings": vars(args)}
    record["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_diagnostics.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'pipeline_diagnostics.json'}")


if __name__ == "__main__":
    main()
