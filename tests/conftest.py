import os

from hypothesis import HealthCheck, settings

# "ci" keeps the suite to a few minutes on 2 cores; "long" is the deeper campaign:
#   HYPOTHESIS_PROFILE=long python -m pytest
settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
