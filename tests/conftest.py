"""Settings shared by both tiers: the budgets of the property-based (fuzz) tests.

The `ci` profile (the default) keeps the fuzz suites to a few seconds each. A longer campaign:
    pytest tests/unit/test_fuzz.py tests/e2e/test_gateway_fuzz.py --hypothesis-profile=long
or set CQRS_FLOW_FUZZ_EXAMPLES to any number of examples per test.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# No per-example deadline: the machine is shared and a slow example is not a failure; a hung
# one is caught by the tests' own timeouts (HTTP timeouts, pytest-timeout).
_COMMON = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.register_profile(
    "ci", max_examples=int(os.environ.get("CQRS_FLOW_FUZZ_EXAMPLES", 150)), **_COMMON
)
settings.register_profile(
    "long", max_examples=int(os.environ.get("CQRS_FLOW_FUZZ_EXAMPLES", 5000)), **_COMMON
)
settings.load_profile("ci")
