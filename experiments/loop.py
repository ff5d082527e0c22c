"""The resumable training loop every study trains with.

``train`` advances a state pytree in chunks of ``chunk`` steps (one jitted ``chunk_fn`` call
per chunk, typically a ``lax.scan``), records metrics after each chunk, and checkpoints every
``checkpoint_every`` chunks. Because chunk boundaries, and hence the sequence of compiled
calls, are the same whether or not a run was interrupted, and checkpoints restore arrays bit
for bit, a resumed run ends with exactly the results of an uninterrupted one.
"""
from __future__ import annotations

from typing import Any, Callable

from tqdm.auto import tqdm


class RunInterrupted(RuntimeError):
    """Raised by the test hook ``RunContext.interrupt_after_steps`` to simulate a kill."""


def train(ctx, task: str, *, init_state: Callable[[], Any], chunk_fn: Callable[[Any], Any],
          n_steps: int, chunk: int, record: Callable[[Any, int], dict],
          stop: Callable[[dict], bool] | None = None, checkpoint_every: int = 1):
    """Run ``n_steps`` steps (a multiple of ``chunk``) of ``chunk_fn``, resumably.

    Parameters
    ----------
    ctx: the :class:`experiments.runner.RunContext` (checkpoints, progress, interrupt hook).
    task: a name unique within the run (one checkpoint per task).
    init_state: builds the initial state pytree (called only when there is no checkpoint).
    chunk_fn: ``state -> state`` advancing ``chunk`` steps.
    record: ``(state, step) -> {name: float}``, appended to the history after every chunk
        (and once at step 0).
    stop: optional deterministic early stop on the history so far.

    Returns ``(state, history, step)`` with ``history = {"step": [...], name: [...]}``.
    """
    if n_steps % chunk:
        raise ValueError(f"n_steps={n_steps} must be a multiple of the chunk length {chunk}")
    ckpt = ctx.checkpoint(task)
    saved = ckpt.load()
    if saved is not None:
        ctx.resumed.append(task)
        state, history, step = saved["state"], saved["history"], saved["step"]
        if saved["done"]:
            return state, history, step
    else:
        state, step = init_state(), 0
        history = {"step": [0], **{k: [float(v)] for k, v in record(state, 0).items()}}
    bar = tqdm(total=n_steps, initial=step, desc=task, disable=not ctx.progress, leave=False,
               mininterval=0.5)
    n_chunks_done = 0
    try:
        while step < n_steps and not (stop is not None and stop(history)):
            state = chunk_fn(state)
            step += chunk
            history["step"].append(step)
            for k, v in record(state, step).items():
                history[k].append(float(v))
            bar.update(chunk)
            n_chunks_done += 1
            ctx.tick(chunk)
            if n_chunks_done % checkpoint_every == 0:
                ckpt.save(step=step, state=state, history=history)
    finally:
        bar.close()
    ckpt.save(step=step, state=state, history=history, done=True)
    return state, history, step
