import numpy as np
import pytest

from avssl.io.sampling import eval_clip_starts, train_clip_start


def test_train_start_uniform_in_range_and_reproducible():
    a = [train_clip_start(10.0, 0.5, np.random.default_rng(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]  # same seed, same start
    rng = np.random.default_rng(0)
    s = np.array([train_clip_start(10.0, 2.0, rng) for _ in range(4000)])
    assert s.min() >= 0.0 and s.max() <= 8.0
    # uniform: each eighth of [0, 8] gets ~1/8 of the draws
    counts = np.histogram(s, bins=8, range=(0, 8))[0]
    assert np.all(np.abs(counts / len(s) - 1 / 8) < 0.03)
    assert train_clip_start(10.0, 2.0, np.random.default_rng(1)) != train_clip_start(10.0, 2.0, np.random.default_rng(2))


def test_train_start_short_video_is_zero():
    assert train_clip_start(0.3, 0.5, np.random.default_rng(0)) == 0.0


def test_eval_starts_cover_the_video():
    s = eval_clip_starts(10.0, 2.0, 5)
    np.testing.assert_allclose(s, [0, 2, 4, 6, 8])
    assert s[-1] + 2.0 == pytest.approx(10.0)
    np.testing.assert_allclose(eval_clip_starts(10.0, 2.0, 1), [4.0])
    np.testing.assert_array_equal(eval_clip_starts(1.0, 2.0, 3), [0, 0, 0])


@pytest.mark.parametrize("args", [(-1.0, 1.0), (5.0, 0.0), (float("nan"), 1.0)])
def test_bad_arguments_raise(args):
    with pytest.raises(ValueError):
        train_clip_start(*args, np.random.default_rng(0))
    with pytest.raises(ValueError):
        eval_clip_starts(*args, 3)
    with pytest.raises(ValueError):
        eval_clip_starts(5.0, 1.0, 0)
    with pytest.raises(TypeError):
        train_clip_start(5.0, 1.0, 3)
