"""gancli.gan.metrics.references: the images of the ceiling are seeded and leave the caller's RNG alone."""
from __future__ import annotations

import numpy as np
import torch

from gancli.gan.metrics.references import untrained_generator_images


def test_untrained_generator_images_are_seeded_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = untrained_generator_images("dcgan", 16, 1, 28, 12, width=8, seed=0, batch_size=5)
    assert torch.equal(torch.rand(1), before)
    again = untrained_generator_images("dcgan", 16, 1, 28, 12, width=8, seed=0)
    assert first.dtype == np.uint8 and first.shape == (12, 28, 28, 1)
    np.testing.assert_array_equal(first, again)
