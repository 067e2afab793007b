"""The launcher's test stack: moto behind the shared AWS fixture, a published agent and spot prices answered."""

from __future__ import annotations

import pytest

from tests.lambdas.stack import Stack, answer_spot_prices, make_stack


@pytest.fixture
def stack(aws: str) -> Stack:
    s = make_stack()
    s.publish_fake_agent()
    answer_spot_prices(s.ec2)
    return s
