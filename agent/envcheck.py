"""Make sure pinned packages are installed: check each distribution's version, pip-install only what is off.

GPU images usually carry the framework already, so the install phase costs seconds, not minutes.
Run: python -m agent.envcheck NAME==VERSION [...]
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")

Installer = Callable[[list[str]], None]
VersionOf = Callable[[str], str | None]


class EnvError(RuntimeError):
    pass


def parse_pin(text: str) -> tuple[str, str]:
    """`name==version` → (name, version); anything looser is refused: a job must be reproducible."""
    m = _PIN.match(text.strip())
    if not m:
        raise EnvError(f"{text!r} is not an exact pin like ultralytics==8.4.190")
    return m.group(1), m.group(2)


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pip_install(requirements: list[str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", *requirements],
        stdin=subprocess.DEVNULL,
        check=True,
    )


def ensure(
    pins: Sequence[str], *, installer: Installer = pip_install, version_of: VersionOf = installed_version
) -> list[str]:
    """Install the pins whose distribution is missing or at another version; returns what was installed."""
    wanted = [parse_pin(p) for p in pins]
    missing: list[str] = []
    for name, version in wanted:
        found = version_of(name)
        if found == version:
            print(f"envcheck: {name} {version} is installed", flush=True)
        else:
            print(f"envcheck: {name} {found or 'is missing'} → installing {version}", flush=True)
            missing.append(f"{name}=={version}")
    if not missing:
        return []
    try:
        installer(missing)
    except (subprocess.CalledProcessError, OSError) as e:
        raise EnvError(f"installing {' '.join(missing)} failed: {e}") from None
    still = [f"{n}=={v} (found {version_of(n)})" for n, v in wanted if version_of(n) != v]
    if still:
        raise EnvError(f"still not installed after pip: {', '.join(still)}")
    return missing


def main(
    argv: list[str] | None = None, *, installer: Installer = pip_install, version_of: VersionOf = installed_version
) -> int:
    pins = sys.argv[1:] if argv is None else argv
    if not pins:
        print("usage: python -m agent.envcheck NAME==VERSION [...]", file=sys.stderr)
        return 2
    try:
        ensure(pins, installer=installer, version_of=version_of)
    except EnvError as e:
        print(f"envcheck: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
