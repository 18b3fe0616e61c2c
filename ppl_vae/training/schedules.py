"""Learning-rate schedules that depend on the optimization step alone.

A schedule here maps ``(lr, step, total_steps)`` to the step's learning rate. Being a
function of the step counter, it survives checkpoints and resumption without a state of
its own. The plateau decay on the validation ELBO (torch's ``ReduceLROnPlateau``) is the
other kind; :class:`ppl_vae.training.trainer.Trainer` handles it.
"""

#: The learning-rate schedules by name.
LR_SCHEDULES = ("constant", "burda")

BURDA_STAGES = 8
BURDA_PASSES = sum(3**i for i in range(BURDA_STAGES))  # 3280


def check_schedule(schedule: str) -> None:
    """Raise ``ValueError`` naming the choices unless ``schedule`` is one of :data:`LR_SCHEDULES`."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose from {', '.join(LR_SCHEDULES)}")


def burda_stage(step: int, total_steps: int) -> int:
    """The stage ``i`` (0 to 7) of Burda et al.'s schedule that ``step`` falls into.

    Stage ``i`` lasts ``3**i / 3280`` of the training, so that with ``total_steps`` worth
    3280 passes over the data it lasts ``3**i`` passes, as in the paper. Integer
    arithmetic: a stage starts exactly where ``sum(3**j for j < i) / 3280`` of the steps
    have been taken.

    :param step: the 0-based optimization step.
    :param total_steps: the steps of the whole run.
    :returns: the stage index.
    """
    # step / total >= (3**i - 1) / 2 / 3280  <=>  3**i * total <= 2 * 3280 * step + total
    reached = 2 * BURDA_PASSES * step + total_steps
    stage = 0
    while stage < BURDA_STAGES - 1 and 3 ** (stage + 1) * total_steps <= reached:
        stage += 1
    return stage


def scheduled_lr(schedule: str, lr: float, step: int, total_steps: int) -> float:
    """The learning rate of ``step`` under ``schedule``.

    - ``"constant"``: ``lr`` throughout.
    - ``"burda"``: the schedule of Burda et al. (2015, arXiv:1509.00519, section 5),
      ``lr * 10**(-i / 7)`` in stage ``i = 0, ..., 7``, the stages lasting 1, 3, 9, ...,
      2187 parts of 3280 of the run (3280 epochs in the paper, scaled here to the run's
      length), so the rate ends ten times lower than it started.

    :param schedule: one of :data:`LR_SCHEDULES`.
    :param lr: the initial learning rate.
    :param step: the 0-based optimization step.
    :param total_steps: the steps of the whole run (epochs times steps per epoch).
    :returns: the learning rate.
    """
    check_schedule(schedule)
    if schedule == "burda":
        return lr * 10 ** (-burda_stage(step, total_steps) / (BURDA_STAGES - 1))
    return lr
