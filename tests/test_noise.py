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
