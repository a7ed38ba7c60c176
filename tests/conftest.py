import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "latentmodels", deadline=None, max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("latentmodels")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def random_spd(rng, k, scale=1.0):
    A = rng.standard_normal((k, k))
    return scale * (A @ A.T / k + 0.5 * np.eye(k))
