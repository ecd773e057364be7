"""Hypothesis settings for the unit suite: no per-example deadline (tests never assert timing)."""

from hypothesis import HealthCheck, settings

settings.register_profile("paychain-unit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("paychain-unit")
