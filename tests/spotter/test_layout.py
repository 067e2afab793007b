"""The keys an attempt's instance writes, and which of them the control plane takes as that attempt's."""

from __future__ import annotations

import pytest

from spotter import layout

ARN = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
OTHER = "arn:aws:ec2:us-east-1:123456789012:instance/i-0fedcba9876543210"


def test_every_output_of_an_attempt_is_below_its_instance_arn() -> None:
    out = layout.Outputs("persons-1", ARN)
    prefix = f"jobs/persons-1/by/{ARN}/"
    keys = [
        out.log(2, "train"),
        out.attempt_end(2),
        out.checkpoint(".pt"),
        out.artifact("best", ".weights"),
        out.build("darknet", "a" * 64),
    ]
    assert all(key.startswith(prefix) for key in keys)
    assert out.log(2, "train") == f"{prefix}logs/attempt-2/train.log"
    assert all(layout.written_by(key, "persons-1", "i-0123456789abcdef0") for key in keys)


@pytest.mark.parametrize(
    "key",
    [
        f"jobs/persons-1/by/{OTHER}/artifacts/best.pt",  # another instance's (another attempt's) output
        f"jobs/persons-2/by/{ARN}/artifacts/best.pt",  # the same instance, another job's prefix
        "jobs/persons-1/artifacts/best.pt",  # not below any instance
        "models/persons/yolov5n/best.pt",  # promoted weights
        f"jobs/persons-1/by/{ARN}/",  # the prefix itself, no object
        "jobs/persons-1/by/arn:aws:ec2:us-east-1:123:instance/i-0123456789abcdef0/artifacts/best.pt",  # no account
    ],
)
def test_a_key_elsewhere_is_not_the_attempts_output(key: str) -> None:
    assert not layout.written_by(key, "persons-1", "i-0123456789abcdef0")


def test_an_attempt_not_launched_owns_no_key() -> None:
    assert not layout.written_by(layout.Outputs("persons-1", ARN).checkpoint(".pt"), "persons-1", None)


@pytest.mark.parametrize(
    "arn",
    ["i-0123456789abcdef0", "arn:aws:ec2:us-east-1:123456789012:volume/vol-0123", "arn:aws:s3:::bucket/key"],
)
def test_outputs_need_an_instance_arn(arn: str) -> None:
    with pytest.raises(ValueError, match="not an EC2 instance ARN"):
        layout.Outputs("persons-1", arn)


def test_instance_arn_is_spelled_as_iam_spells_source_instance_arn() -> None:
    assert layout.instance_arn("aws-cn", "cn-north-1", "123456789012", "i-0abc12345") == (
        "arn:aws-cn:ec2:cn-north-1:123456789012:instance/i-0abc12345"
    )
