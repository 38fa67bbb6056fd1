"""Hypothesis profiles of the fuzz suite: `default` is quick enough for `make test` (a few seconds);
`KUBETUNE_FUZZ_PROFILE=long` runs many more cases (minutes), e.g. before a release or after a parser change."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# deadline: each case is bounded (a hang or a blow-up fails the case instead of stalling the suite)
settings.register_profile(
    "default",
    max_examples=40,
    deadline=5000,
    derandomize=True,  # the same cases on every run of make test: a failure reproduces
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=10000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("KUBETUNE_FUZZ_PROFILE", "default"))
