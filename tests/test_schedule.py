from __future__ import annotations

import pytest

from sparsecli.schedule import ScheduleSpec, stepped, target_at


def test_constant_is_one_shot_at_start():
    spec = ScheduleSpec(curve="constant", start_epoch=1)
    assert target_at(0.5, 0.8, spec, 4) == 0.0
    assert target_at(1.0, 0.8, spec, 4) == 0.8


def test_cubic_rises_fast_then_slow_and_ends_at_target():
    spec = ScheduleSpec(curve="cubic", start_epoch=0, end_epoch=4)
    values = [target_at(e, 0.8, spec, 6) for e in (0, 1, 2, 3, 4, 5)]
    assert values[0] == 0.0 and values[4] == pytest.approx(0.8) and values[5] == pytest.approx(0.8)
    steps = [b - a for a, b in zip(values, values[1:4], strict=False)]
    assert steps[0] > steps[1] > steps[2] > 0  # gradual magnitude pruning: big steps first


def test_linear_midpoint_and_default_end():
    spec = ScheduleSpec(curve="linear")
    assert target_at(2.0, 0.8, spec, 4) == pytest.approx(0.4)


def test_end_before_start_rejected():
    with pytest.raises(ValueError, match="end_epoch"):
        ScheduleSpec(start_epoch=3, end_epoch=1)


def test_stepped_reaches_the_target_in_equal_steps_with_training_after_the_last():
    assert [stepped(e, 0.6, 3, 6) for e in (0, 1.9, 2, 3.5, 4, 6)] == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.6])
    assert stepped(0, 0.6, 1, 6) == 0.6
    assert stepped(0, 0.6, 3, 0) == 0.6  # no fine-tuning: everything at once
