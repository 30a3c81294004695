import pytest
import torch
from hybrid_rearec.foundation import noise


def draws(seed, offset, rows, global_size, views=1):
    with noise.global_batch_noise(seed, offset, rows, global_size):
        cpu = torch.device("cpu")
        return (
            noise.random_int16((views * rows, 3, 4), cpu),
            noise.rand((views * rows, 5), cpu),
            noise.randn((views * rows, 2), cpu),
        )


@pytest.mark.parametrize("views", [1, 2])
def test_a_rows_draws_do_not_depend_on_how_the_batch_is_split(views):
    whole = draws(seed=11, offset=0, rows=6, global_size=6, views=views)
    first = draws(seed=11, offset=0, rows=2, global_size=6, views=views)
    rest = draws(seed=11, offset=2, rows=4, global_size=6, views=views)
    for full, a, b in zip(whole, first, rest):
        # Stacked views: [view 1 rows; view 2 rows]; each part keeps its rows of every view.
        full_views = full.view(views, 6, *full.shape[1:])
        joined = torch.cat([a.view(views, 2, *a.shape[1:]), b.view(views, 4, *b.shape[1:])], dim=1)
        assert torch.equal(full_views, joined)


def test_draws_change_with_the_seed_and_fall_back_to_the_global_rng_outside_the_context():
    assert not torch.equal(draws(1, 0, 4, 4)[2], draws(2, 0, 4, 4)[2])
    assert not noise.active()
    torch.manual_seed(0)
    a = noise.randn((3,), torch.device("cpu"))
    torch.manual_seed(0)
    assert torch.equal(a, torch.randn(3))


def test_int16_masks_are_uniform_enough_for_dropout():
    values = draws(5, 0, 2000, 2000)[0].float()
    assert values.min() < -30000 and values.max() > 30000 and abs(values.mean().item()) < 300


def test_bad_slices_are_refused():
    with pytest.raises(ValueError, match="global batch"):
        draws(1, 4, 4, 6)
    with noise.global_batch_noise(1, 0, 4, 8), pytest.raises(ValueError, match="views"):
        noise.randn((6, 2), torch.device("cpu"))


@pytest.mark.parametrize("p", [1e-9, 0.1, 0.2, 0.5, 0.7, 0.9999999])
def test_keyed_keep_is_keyed_rand_compared_with_p(p):
    # 0.7 rounds down in float32 and 0.1 up: the integer threshold must follow the float32 comparison either way.
    keys = torch.arange(3000).view(60, 50) * 7 + 3  # [60, 50]: blocks of rows cross, several calls
    for call in range(2):
        with noise.global_batch_noise(99 + call, 0, 1, 1):
            values = noise.keyed_rand(keys, 96, "stream")
        with noise.global_batch_noise(99 + call, 0, 1, 1):
            keep = noise.keyed_keep(keys, 96, "stream", p)
        assert keep.shape == (60, 50, 96) and keep.dtype == torch.bool
        assert torch.equal(keep, values >= p)
    assert 0.0 < keep.float().mean().item() < 1.0 or p in (1e-9, 0.9999999)


def test_keyed_keep_finds_the_exact_boundary():
    # The threshold is the first 32-bit value whose float32 uniform reaches p: one below it does not.
    for p in (0.1, 0.7, 0.25):
        first = noise._first_reaching(p)
        at, below = (torch.tensor([b], dtype=torch.float64).div(2.0**32).float() for b in (first, first - 1))
        assert bool(at >= p) and not bool(below >= p)


def part_draws(offset, rows, subset, seed=3, views=1, key="width 8"):
    with noise.global_batch_noise(seed, offset, rows, 10), noise.subset_rows(torch.tensor(subset), key):
        first = noise.random_int16((views * len(subset), 4, 5), torch.device("cpu"))
        second = noise.random_int16((views * len(subset), 4, 5), torch.device("cpu"))
    return first, second


@pytest.mark.parametrize("views", [1, 2])
def test_a_parts_int16_draws_are_each_rows_own_however_the_batch_is_split(views):
    # Global rows 2, 5 and 7 of a batch of 10 in one part: drawn by the whole batch's forward, and by two
    # slices (rows 0-5 holding 2 and 5, rows 6-9 holding 7 at index 1).
    whole = part_draws(0, 10, [2, 5, 7], views=views)
    left = part_draws(0, 6, [2, 5], views=views)
    right = part_draws(6, 4, [1], views=views)
    for full, a, b in zip(whole, left, right):
        full = full.view(views, 3, 4, 5)
        assert torch.equal(full[:, :2], a.view(views, 2, 4, 5)) and torch.equal(full[:, 2:], b.view(views, 1, 4, 5))
    assert not torch.equal(whole[0], whole[1])  # each call of the part draws anew
    assert not torch.equal(whole[0], part_draws(0, 10, [2, 5, 7], views=views, key="width 16")[0])  # parts differ
    if views == 2:
        assert not torch.equal(whole[0][:3], whole[0][3:])  # the views differ


def test_a_parts_int16_draws_are_uniform_enough_for_dropout():
    values = torch.cat(part_draws(0, 10, list(range(10)), seed=9)).flatten().float()  # 400 values
    with noise.global_batch_noise(4, 0, 2000, 2000), noise.subset_rows(torch.arange(2000), "w"):
        many = noise.random_int16((2000, 64), torch.device("cpu")).float()
    assert many.min() < -32000 and many.max() > 32000 and abs(many.mean().item()) < 300
    keep = (many >= round(0.3 * 65536) - 32768).float().mean().item()  # dropout's rule for p = 0.3
    assert abs(keep - 0.7) < 0.005 and values.std() > 10000
