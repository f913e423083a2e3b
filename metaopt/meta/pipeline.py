"""Optim4RL meta-training by pipeline training (Lan et al., RLC 2024).

`width` agents per task train side by side with the learned optimizer. Agent i is reset
(fresh parameters, optimizer state and envs) whenever iteration % reset_interval equals its
offset, offsets spread evenly over the interval, so once the first interval has passed the
agents sit at evenly spread stages of training and each meta-gradient mixes early, middle
and late training.

A meta-iteration: apply the due resets; for every agent, `inner_updates` updates (PPO, or
A2C on Optim4RL's small tasks) with the optimizer, then the agent's loss on a fresh rollout
(the meta-loss); its gradient with respect to the optimizer's parameters, by backprop through
the inner updates (first-order in the agent's gradient, which enters the optimizer as data);
each task's mean over its agents (optionally rescaled to a fixed norm), averaged over tasks
(plus an optional L2 term), steps the clipped Adam on the meta-parameters.

Agents are evaluated in groups of fixed size, and group gradients are summed in a fixed
order, so a group computed here or on a Ray worker gives the same meta-gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metaopt.agents import RunnerState, make_agent
from metaopt.config import MetaTrainConfig, Optim4RLConfig, PipelineConfig, TaskConfig
from metaopt.optimizers import build_optimizer, optim4rl

META_LOSS_FLOOR = 1e-3  # keeps a normalised meta-loss finite where the loss is ~0


class MetaTrainingDiverged(RuntimeError):
    """A non-finite meta-gradient: the run stops; the state before it is kept."""


class PipelineState(NamedTuple):
    """Pipeline training's whole state: meta-parameters, meta-optimizer state, every agent, key,
    iteration."""

    meta_params: dict
    meta_opt_state: Any
    agents: tuple  # one RunnerState per task, leading axis = width
    key: jax.Array
    iteration: jax.Array


def reset_offsets(width: int, reset_interval: int) -> np.ndarray:
    """Agent i resets when iteration % reset_interval == offsets[i]: evenly spread over
    [0, reset_interval - 1] (as the published code spaces them).

    Args:
      width: agents per task.
      reset_interval: meta-iterations between an agent's resets.

    Returns:
      (width,) int32 offsets.
    """
    return np.linspace(0, reset_interval - 1, width).astype(np.int32)


def l2_penalty(meta_params: dict, weight: float) -> jax.Array:
    """weight * the sum of squares of every meta-parameter.

    Args:
      meta_params: the meta-parameters.
      weight: the L2 weight (`pipeline.l2`).

    Returns:
      A scalar.
    """
    return weight * sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(meta_params))


def meta_optimizer(cfg: PipelineConfig) -> optax.GradientTransformation:
    """The meta-optimizer: the configured gradient clipping, then Adam at `meta_learning_rate`.

    Args:
      cfg: the pipeline settings.

    Returns:
      The optax transformation.
    """
    clip = {
        "global_norm": lambda: optax.clip_by_global_norm(cfg.meta_grad_clip_value),
        "elementwise": lambda: optax.clip(cfg.meta_grad_clip_value),
        "none": optax.identity,
    }[cfg.meta_grad_clip]()
    return optax.chain(clip, optax.adam(cfg.meta_learning_rate))


@dataclass(frozen=True, eq=False)  # hashed by identity: a static argument of its jitted steps
class PipelineEngine:
    """One pipeline-training run's pure steps; `step` is the single-process meta-iteration."""

    cfg: PipelineConfig
    optimizer: Optim4RLConfig
    tasks: tuple[TaskConfig, ...]
    meta_opt: optax.GradientTransformation
    init_meta_params: Callable[[jax.Array], dict]

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks' env names, in task order."""
        return tuple(t.env.name for t in self.tasks)

    @property
    def num_agents(self) -> int:
        """Agents over all tasks: width * tasks."""
        return self.cfg.width * len(self.tasks)

    @property
    def env_steps_per_iteration(self) -> int:
        """Env steps per meta-iteration over all agents (inner updates plus the fresh meta-loss
        rollout)."""
        per_agent = sum(t.agent.batch_size for t in self.tasks) * (self.cfg.inner_updates + 1)
        return self.cfg.width * per_agent

    @property
    def normalize_meta_loss(self) -> bool:
        """Whether meta-losses are normalised: `cfg.normalize_meta_loss`, else on with several tasks."""
        flag = self.cfg.normalize_meta_loss
        return len(self.tasks) > 1 if flag is None else flag

    def task_optimizer(self, task_index: int) -> Optim4RLConfig:
        """The optimizer settings on this task: its own learning rate where it has one.

        Args:
          task_index: the task's index.

        Returns:
          The Optim4RLConfig for that task.
        """
        lr = self.tasks[task_index].learning_rate
        return self.optimizer if lr is None else self.optimizer.model_copy(update={"learning_rate": lr})

    def agent(self, task_index: int, meta_params: dict):
        """The task's agent (PPO, or A2C on Optim4RL's small tasks) with Optim4RL at these
        meta-parameters (traced ones in meta-training).

        Args:
          task_index: the task's index.
          meta_params: Optim4RL meta-parameters.

        Returns:
          The task's agent functions.
        """
        optimizer = self.task_optimizer(task_index)
        cfg = self.tasks[task_index].train_config(optimizer)
        return make_agent(cfg, build_optimizer(optimizer, cfg.agent, meta_params))

    def groups(self) -> list[tuple[int, slice]]:
        """(task, agents) of every group, in the fixed order gradients are summed in.

        Returns:
          One (task index, slice of that task's agents) per group.
        """
        g = self.cfg.group_size
        return [(t, slice(i, i + g)) for t in range(len(self.tasks)) for i in range(0, self.cfg.width, g)]

    @partial(jax.jit, static_argnums=0)
    def init(self, key: jax.Array) -> PipelineState:
        """Meta-parameters (random, or the warm start's), the meta-optimizer's state and
        `width` fresh agents per task.

        Args:
          key: the run's PRNG key.

        Returns:
          The first PipelineState (iteration 0).
        """
        k_meta, k_agents, k_run = jax.random.split(key, 3)
        meta_params = self.init_meta_params(k_meta)
        agents = tuple(
            jax.vmap(self.agent(t, meta_params).init)(jax.random.split(jax.random.fold_in(k_agents, t), self.cfg.width))
            for t in range(len(self.tasks))
        )
        return PipelineState(meta_params, self.meta_opt.init(meta_params), agents, k_run, jnp.zeros((), jnp.int32))

    @partial(jax.jit, static_argnums=0)
    def begin_iteration(self, state: PipelineState) -> PipelineState:
        """Reset the agents whose offset is due; advance the key.

        Args:
          state: the state before the iteration.

        Returns:
          The state with due agents reset and a new key.
        """
        key, k_reset = jax.random.split(state.key)
        offsets = jnp.asarray(reset_offsets(self.cfg.width, self.cfg.reset_interval))
        due = state.iteration % self.cfg.reset_interval == offsets
        agents = []
        for t, current in enumerate(state.agents):
            keys = jax.random.split(jax.random.fold_in(k_reset, t), self.cfg.width)
            fresh = jax.vmap(self.agent(t, state.meta_params).init)(keys)
            agents.append(jax.tree.map(lambda f, c: jnp.where(due.reshape((-1,) + (1,) * (c.ndim - 1)), f, c),
                                       fresh, current))
        return state._replace(agents=tuple(agents), key=key)

    def agent_meta_loss(self, task_index: int, meta_params: dict, agent: RunnerState):
        """`inner_updates` PPO updates of one agent with the optimizer, then the PPO loss on
        fresh data (divided by its stop-gradient magnitude when normalised).

        Args:
          task_index: the agent's task.
          meta_params: Optim4RL meta-parameters (differentiated).
          agent: one agent's RunnerState.

        Returns:
          (loss, (the updated agent, metrics with the unnormalised `meta_loss`)).
        """
        learner = self.agent(task_index, meta_params)
        update = jax.checkpoint(learner.update) if self.cfg.rematerialize else learner.update
        agent, _ = jax.lax.scan(lambda s, _: update(s), agent, None, length=self.cfg.inner_updates)
        loss, (agent, metrics) = learner.fresh_loss(agent)
        metrics = {**metrics, "meta_loss": loss}  # reported as is; the gradient may be normalised
        if self.normalize_meta_loss:  # the gradient of loss / |loss|: every task weighs alike
            loss = loss / jax.lax.stop_gradient(jnp.abs(loss) + META_LOSS_FLOOR)
        return loss, (agent, metrics)

    @partial(jax.jit, static_argnums=(0, 1))
    def group_gradient(self, task_index: int, meta_params: dict, agents: RunnerState):
        """Sum over the group's agents of (meta-gradient, meta-loss), their new states and
        mean metrics. Pure and jitted per task; what a Ray worker runs.

        Args:
          task_index: the group's task (static).
          meta_params: Optim4RL meta-parameters.
          agents: the group's RunnerStates, leading axis = agents.

        Returns:
          (gradient sum, meta-loss sum, the agents' new states, mean metrics).
        """
        grad_fn = jax.value_and_grad(partial(self.agent_meta_loss, task_index), has_aux=True)
        (_, (agents, metrics)), grads = jax.vmap(grad_fn, (None, 0))(meta_params, agents)
        grad_sum = jax.tree.map(lambda g: g.sum(0), grads)
        loss_sum = metrics["meta_loss"].sum()
        metrics = {k: jnp.nanmean(v) for k, v in metrics.items()}
        return grad_sum, loss_sum, agents, metrics

    def meta_gradient(self, meta_params: dict, grad_sums: tuple) -> dict:
        """Each task's mean meta-gradient over its agents (group sums added in order), rescaled to
        the global norm `task_grad_rescale` where set, averaged over tasks; plus the L2 term's.

        Args:
          meta_params: the current meta-parameters (for the L2 term).
          grad_sums: every group's gradient sum, in `groups()` order.

        Returns:
          The meta-gradient tree.
        """
        per_task = []
        for t in range(len(self.tasks)):
            sums = tuple(g for g, (task, _) in zip(grad_sums, self.groups(), strict=True) if task == t)
            mean = jax.tree.map(lambda g: g / self.cfg.width, _sum_in_order(sums))
            if self.cfg.task_grad_rescale is not None:  # to exactly this norm, as the reference (no epsilon)
                scale = self.cfg.task_grad_rescale / optax.tree.norm(mean)
                mean = jax.tree.map(lambda g: g * scale, mean)
            per_task.append(mean)
        mean = jax.tree.map(lambda g: g / len(self.tasks), _sum_in_order(tuple(per_task)))
        return jax.tree.map(jnp.add, mean, jax.grad(l2_penalty)(meta_params, self.cfg.l2))

    @partial(jax.jit, static_argnums=0)
    def meta_update(self, state: PipelineState, grad_sums: tuple, loss_sums: tuple, agents: tuple):
        """The meta-optimizer's step on the mean meta-gradient.

        Args:
          state: the state after `begin_iteration`.
          grad_sums: every group's gradient sum, in `groups()` order.
          loss_sums: every group's meta-loss sum, in the same order.
          agents: the agents' new states, one RunnerState per task.

        Returns:
          (the next state with these agents, whether the gradient was finite, metrics).
        """
        n = self.num_agents
        grads = self.meta_gradient(state.meta_params, grad_sums)
        penalty = l2_penalty(state.meta_params, self.cfg.l2)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = self.meta_opt.update(grads, state.meta_opt_state, state.meta_params)
        meta_params = optax.apply_updates(state.meta_params, updates)
        ok = jnp.isfinite(grad_norm)
        new_state = PipelineState(meta_params, opt_state, agents, state.key, state.iteration + 1)
        metrics = {
            "meta_loss": _sum_in_order(loss_sums) / n + penalty,
            "meta_grad_norm": grad_norm,
            "meta_params_norm": optax.tree.norm(meta_params),
            "agents_reset": (state.iteration % self.cfg.reset_interval
                             == jnp.asarray(reset_offsets(self.cfg.width, self.cfg.reset_interval))).sum(),
        }
        return new_state, ok, metrics

    def finish_iteration(self, state: PipelineState, outs: list) -> tuple[PipelineState, dict]:
        """From every group's `group_gradient` output (in `groups()` order, computed here or
        elsewhere) to the next state: reassemble the agents, step the meta-optimizer.

        Args:
          state: the state after `begin_iteration`.
          outs: `group_gradient` outputs, one per group in `groups()` order.

        Returns:
          (next state, metrics: meta-loss, meta-gradient and meta-parameter norms, resets, each task's
          return); raises MetaTrainingDiverged on a non-finite meta-gradient.
        """
        parts: list[list] = [[] for _ in self.tasks]
        for (task, _), (_, _, new_agents, _) in zip(self.groups(), outs, strict=True):
            parts[task].append(new_agents)
        agents = tuple(jax.tree.map(lambda *xs: jnp.concatenate(xs), *p) for p in parts)
        grads, losses = tuple(o[0] for o in outs), tuple(o[1] for o in outs)
        new_state, ok, metrics = self.meta_update(state, grads, losses, agents)
        if not bool(ok):
            raise MetaTrainingDiverged(
                f"meta-gradient is NaN or inf at iteration {int(state.iteration)}; "
                "lower pipeline.meta_learning_rate or keep pipeline.meta_grad_clip on"
            )
        return new_state, {**metrics, **_mean_metrics([o[3] for o in outs], self.groups(), self.task_names)}

    def step(self, state: PipelineState) -> tuple[PipelineState, dict]:
        """One meta-iteration in this process: resets, every group's gradient in order, the meta-update.

        Args:
          state: the current PipelineState.

        Returns:
          (next state, metrics) as `finish_iteration`.
        """
        state = self.begin_iteration(state)
        outs = [self.group_gradient(task, state.meta_params, jax.tree.map(lambda x: x[agents], state.agents[task]))
                for task, agents in self.groups()]
        return self.finish_iteration(state, outs)

    def meta_params(self, state: PipelineState) -> dict:
        """The trained optimizer: the current meta-parameters.

        Args:
          state: a PipelineState.

        Returns:
          The meta-parameters.
        """
        return state.meta_params


def _mean_metrics(group_metrics: list[dict], groups, task_names) -> dict:
    out: dict[str, float] = {}
    for name in task_names:
        rows = [m for m, (t, _) in zip(group_metrics, groups) if task_names[t] == name]
        out[f"return_{name}"] = float(np.nanmean([float(m["last_episode_return"]) for m in rows]))
    return out


def _sum_in_order(trees: tuple):
    total = trees[0]
    for t in trees[1:]:
        total = jax.tree.map(jnp.add, total, t)
    return total


def pipeline_engine(cfg: MetaTrainConfig, init_meta_params: dict | None = None) -> PipelineEngine:
    """Optim4RL's pipeline engine. `init_meta_params` (a warm start) replaces the random
    initialisation of the meta-parameters.

    Args:
      cfg: the meta-training config (method optim4rl).
      init_meta_params: warm-start meta-parameters; None: a random initialisation from the run's key.

    Returns:
      The PipelineEngine.
    """
    opt: Optim4RLConfig = cfg.optimizer
    if init_meta_params is None:
        init = partial(optim4rl.init_meta_params, hidden=opt.hidden, inputs=opt.inputs)
    else:
        start = jax.tree.map(lambda x: np.asarray(x, np.float32), init_meta_params)

        def init(key: jax.Array) -> dict:
            del key
            return jax.tree.map(jnp.asarray, start)
    return PipelineEngine(cfg.pipeline, opt, tuple(cfg.tasks), meta_optimizer(cfg.pipeline), init)
