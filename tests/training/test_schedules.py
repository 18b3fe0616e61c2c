"""Learning-rate schedules of the step counter."""

import pytest

from ppl_vae.training.schedules import BURDA_PASSES, burda_stage, scheduled_lr


def test_burda_stages_last_3_to_the_i_passes_of_3280():
    """With one step per pass over 3280 passes, stage i covers exactly 3**i passes (Burda et al. 2015)."""
    stages = [burda_stage(step, BURDA_PASSES) for step in range(BURDA_PASSES)]
    assert [stages.count(i) for i in range(8)] == [3**i for i in range(8)]
    assert stages == sorted(stages)


@pytest.mark.parametrize("total_steps", [1, 7, 600, 328_000], ids=["one-step", "short", "600", "paper-x100"])
def test_burda_schedule_is_monotone_from_lr_to_a_tenth(total_steps):
    steps = range(0, total_steps, max(1, total_steps // 5000))
    lrs = [scheduled_lr("burda", 1e-3, step, total_steps) for step in steps]
    assert lrs[0] == 1e-3
    assert all(later <= earlier for earlier, later in zip(lrs, lrs[1:]))
    assert min(lrs) >= 1e-4 * (1 - 1e-12)
    if total_steps >= BURDA_PASSES:
        assert scheduled_lr("burda", 1e-3, total_steps - 1, total_steps) == pytest.approx(1e-4, rel=1e-12)


def test_burda_schedule_scales_with_the_run_length():
    """A run of 3280 passes of 10 steps is in the same stage at the same fraction as one of 3280 steps."""
    for step in range(0, BURDA_PASSES, 7):
        assert burda_stage(10 * step, 10 * BURDA_PASSES) == burda_stage(step, BURDA_PASSES)


def test_constant_and_unknown_schedules():
    assert scheduled_lr("constant", 3e-4, 123, 1000) == 3e-4
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'cosine'; choose from constant, burda"):
        scheduled_lr("cosine", 1e-3, 0, 10)
