"""When to log per-step values: only on the steps Lightning writes to the loggers.

Each `self.log` call costs Lightning bookkeeping (a fraction of a millisecond on a CPU), which is
a large share of a small model's training step; values logged on other steps are never written.
"""


def is_logging_step(trainer) -> bool:
    """True on the steps the Trainer sends per-step metrics to its loggers (every log_every_n_steps;
    never with log_every_n_steps=0, as Lightning reads it: no per-step logging)."""
    every = trainer.log_every_n_steps
    return bool(every) and (trainer.global_step + 1) % every == 0
