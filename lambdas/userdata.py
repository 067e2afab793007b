"""Renders the per-attempt EC2 user data from `bootstrap.sh`: every value validated, then shell-quoted.

Only where to find things goes in (job id, spec and agent locations, the agent's sha256, region, time
limit); the instance gets its AWS access from its role and never sees a secret.
"""

from __future__ import annotations

import re
from importlib import resources

from spotter.spec import JOB_ID_RE

TEMPLATE = resources.files("lambdas") / "bootstrap.sh"
# S3 URIs as the launcher writes them: a DNS-style bucket and a key of safe characters only.
S3_URI_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9._/-]{1,900}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
MAX_MINUTES = 72 * 60
# EC2 rejects user data over 16 KiB (before base64).
MAX_USER_DATA_BYTES = 16 * 1024
_PLACEHOLDER_RE = re.compile(r"\{\{[A-Z0-9_]+\}\}")


class UserDataError(ValueError):
    """A value that must not reach the instance's shell."""


def _check(name: str, value: str, pattern: re.Pattern[str]) -> str:
    if not pattern.fullmatch(value):
        raise UserDataError(f"{name} {value!r} does not match {pattern.pattern}")
    return value


def _quote(value: str) -> str:
    """Single quotes always (shlex.quote leaves "safe" words bare): the value can only ever be one word."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def render_user_data(
    *, job_id: str, spec_uri: str, agent_uri: str, agent_sha256: str, max_minutes: int, region: str
) -> str:
    """The bootstrap script for one attempt; raises UserDataError on any value outside its pattern."""
    if isinstance(max_minutes, bool) or not isinstance(max_minutes, int) or not 1 <= max_minutes <= MAX_MINUTES:
        raise UserDataError(f"max_minutes must be a whole number from 1 to {MAX_MINUTES}, not {max_minutes!r}")
    values = {
        "JOB_ID": _check("job id", job_id, JOB_ID_RE),
        "SPEC_URI": _check("spec uri", spec_uri, S3_URI_RE),
        "AGENT_URI": _check("agent uri", agent_uri, S3_URI_RE),
        "AGENT_SHA256": _check("agent sha256", agent_sha256, SHA256_RE),
        "REGION": _check("region", region, REGION_RE),
    }
    script = TEMPLATE.read_text()
    # The patterns already exclude shell metacharacters; quoting is the second fence.
    for name, value in values.items():
        script = script.replace("{{" + name + "}}", _quote(value))
    script = script.replace("{{MAX_MINUTES}}", str(max_minutes))
    if leftover := _PLACEHOLDER_RE.search(script):
        raise UserDataError(f"{TEMPLATE.name} has a placeholder render_user_data does not fill: {leftover.group()}")
    if len(script.encode()) > MAX_USER_DATA_BYTES:
        raise UserDataError(f"user data is {len(script.encode())} bytes; EC2 accepts at most {MAX_USER_DATA_BYTES}")
    return script
