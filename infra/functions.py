"""Builds the Lambda functions' code: the control-plane packages and their locked dependencies, for python3.11 on x86_64.

    python -m infra.functions lock                    pin pyproject's dependencies + `control` extra (network)
    python -m infra.functions check-lock              the lock still matches pyproject.toml (exit 1 if not)
    python -m infra.functions build ARTIFACTS_DIR     what `sam build` runs for each function (Makefile build-<Id>)
    python -m infra.functions verify BUILD_DIR        import every handler from its built artifact alone

Every function gets the same tree (`spotter`, `bot`, `lambdas` and the locked wheels): it is built once into
build/functions/<key>/ (the key hashes its inputs) and hard-linked into each function's artifact directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from samtranslator.yaml_helper import yaml_parse

from infra.package import package_files
from infra.sam import placeholder

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "infra" / "functions-requirements.txt"
STAGE_ROOT = ROOT / "build" / "functions"
PACKAGES = ("spotter", "bot", "lambdas")
EXTRA = "control"
# Lambda's python3.11 runtime runs on Amazon Linux 2 (glibc 2.26): wheels up to manylinux_2_26 load there, newer
# ones (numpy 2.3's manylinux_2_28, say) do not. pip does not widen manylinux_2_X by itself, so every tag is named.
LAMBDA_PYTHON_VERSION = "3.11"
LAMBDA_PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(26, 16, -1)), "manylinux2014_x86_64")
PLATFORM_ARGS = (
    "--only-binary=:all:",
    *(arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)),
    "--implementation",
    "cp",
    "--python-version",
    LAMBDA_PYTHON_VERSION,
    "--abi",
    "cp311",
)
# A function's code, unzipped, may not exceed this (Lambda quotas: 250 MB, layers included).
LAMBDA_UNZIPPED_LIMIT = 262_144_000
MIB = 1024 * 1024
REQUIRES_PREFIX = "# requires: "
LOCK_HEADER = """\
# The Lambda functions' dependencies: pyproject.toml's dependencies and its `control` extra, with everything they
# pull in, pinned for the python3.11 runtime on x86_64 (Amazon Linux 2, manylinux wheels up to 2_26).
# Written by `make lock` (python -m infra.functions lock); `make check` fails when it no longer matches pyproject.
"""
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")
# Runs in the artifact's own interpreter with nothing but the artifact and the standard library on sys.path.
_IMPORT_CHECK = """\
import importlib, json, sys, time
root, module_name, function = sys.argv[1:]
sys.path.insert(0, root)
started = time.perf_counter()
module = importlib.import_module(module_name)
seconds = time.perf_counter() - started
stdlib = sys.base_prefix
outside = sorted(
    name for name, m in list(sys.modules.items())
    if (getattr(m, "__file__", None) or "").startswith("/")
    and not m.__file__.startswith((root, stdlib))
)
print(json.dumps({"callable": callable(getattr(module, function, None)), "seconds": seconds, "outside": outside}))
"""


class BuildError(RuntimeError):
    pass


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The project's own dependencies and its control extra, as written in pyproject.toml."""
    project = tomllib.loads(pyproject.read_text())["project"]
    name = canonicalize_name(project["name"])
    listed = [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get(EXTRA, [])]
    return [r for r in listed if canonicalize_name(Requirement(r).name) != name]


def read_lock(lock: Path = LOCK) -> tuple[list[str], dict[str, str]]:
    """The requirements the lock was made from (its header) and its pins (canonical name → version)."""
    requires: list[str] = []
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if line.startswith(REQUIRES_PREFIX):
            requires.append(line.removeprefix(REQUIRES_PREFIX).strip())
        elif line.strip() and not line.startswith("#"):
            match = _PIN.match(line.strip())
            if not match:
                raise BuildError(f"{lock}: {line!r} is not name==version")
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return requires, pins


def check_lock(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> list[str]:
    """What no longer matches between pyproject.toml and the lock (empty when in sync)."""
    wanted = requirements(pyproject)
    requires, pins = read_lock(lock)
    problems = []
    if sorted(wanted) != sorted(requires):
        added = sorted(set(wanted) - set(requires))
        removed = sorted(set(requires) - set(wanted))
        problems.append(f"pyproject.toml's requirements changed since the lock (new {added}, gone {removed})")
    for text in wanted:
        requirement = Requirement(text)
        version = pins.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name} is not in the lock")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} in the lock does not satisfy {text}")
    return [f"{lock.name}: {p}; run `make lock`" for p in problems]


def resolve(wanted: Iterable[str]) -> dict[str, str]:
    """What pip would install for the Lambda runtime (name → version), without installing anything."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
        argv += ["--report", str(report), *PLATFORM_ARGS, *wanted]
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
        installs = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}


def render_lock(wanted: list[str], resolved: dict[str, str]) -> str:
    lines = [LOCK_HEADER.rstrip("\n"), *(f"{REQUIRES_PREFIX}{r}" for r in sorted(wanted))]
    pins = {canonicalize_name(name): version for name, version in resolved.items()}
    lines += [f"{name}=={version}" for name, version in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def write_lock(pyproject: Path = PYPROJECT, lock: Path = LOCK) -> None:
    wanted = requirements(pyproject)
    lock.write_text(render_lock(wanted, resolve(wanted)))


def _sources(root: Path) -> Iterator[tuple[str, Path]]:
    """(path in the artifact, file) for every shipped file of the control-plane packages."""
    for package in PACKAGES:
        for name, path in package_files(package):
            if not path.is_relative_to(root):
                raise BuildError(f"{package} imports from {path.parent}, not from the checkout at {root}")
            yield name, path


def stage_key(root: Path, lock: Path) -> str:
    """A hash of everything a built tree is made from: sources, lock, platform, and this builder."""
    digest = hashlib.sha256()
    parts: list[tuple[str, bytes]] = [(name, path.read_bytes()) for name, path in _sources(root)]
    parts += [("lock", lock.read_bytes()), ("platform", " ".join(PLATFORM_ARGS).encode())]
    parts.append(("builder", Path(__file__).read_bytes()))
    for name, data in sorted(parts):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


def lambda_python(python: str | None) -> str:
    """An interpreter of the runtime's version: it byte-compiles the tree so cold starts skip compiling."""
    candidate = python or shutil.which(f"python{LAMBDA_PYTHON_VERSION}")
    if candidate:
        found = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode == 0 and found.stdout.strip() == LAMBDA_PYTHON_VERSION:
            return candidate
    raise BuildError(
        f"no Python {LAMBDA_PYTHON_VERSION} interpreter (tried {candidate or f'python{LAMBDA_PYTHON_VERSION} on PATH'}):"
        " the functions run python3.11; see `make lambda-python` for how to get one"
    )


def stage(root: Path = ROOT, lock: Path = LOCK, python: str | None = None, out: Any = sys.stdout) -> Path:
    """The built tree for these inputs, built now unless an earlier build left it."""
    stage_root = root / "build" / "functions"
    target = stage_root / stage_key(root, lock)
    if target.is_dir():
        print(f"functions: reusing {target.relative_to(root)}", file=out)
        return target
    compiler = lambda_python(python)
    stage_root.mkdir(parents=True, exist_ok=True)
    for stale in stage_root.iterdir():
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=stage_root, prefix=".building-") as tmp:
        tree = Path(tmp) / "tree"
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
        pip += ["--no-compile", "--target", str(tree), *PLATFORM_ARGS, "-r", str(lock)]
        subprocess.run(pip, check=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(tree / "bin", ignore_errors=True)  # console scripts with this machine's shebang
        # The wheels' own test suites (numpy's and matplotlib's: about 40 MB compiled) are never imported.
        for tests in sorted(tree.glob("*/**/tests"), reverse=True):
            if tests.is_dir():
                shutil.rmtree(tests)
        for name, path in _sources(root):
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tree / name)
        # Lambda's /var/task is read-only: without these, every cold start compiles each module it imports.
        # unchecked-hash: the zip's timestamps do not survive exactly, and the tree never changes once built.
        compile_all = [compiler, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
        subprocess.run([*compile_all, str(tree)], check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        size = sum(f.stat().st_size for f in tree.rglob("*") if f.is_file())
        if size > LAMBDA_UNZIPPED_LIMIT:
            raise BuildError(
                f"the functions' tree is {size / MIB:.0f} MiB, over Lambda's {LAMBDA_UNZIPPED_LIMIT / MIB:.0f} MiB"
            )
        tree.rename(target)
    took = time.monotonic() - started
    print(
        f"functions: built {target.relative_to(root)} in {took:.0f} s: {size / MIB:.0f} MiB "
        f"of Lambda's {LAMBDA_UNZIPPED_LIMIT / MIB:.0f} MiB unzipped",
        file=out,
    )
    return target


def link_tree(source: Path, destination: Path) -> None:
    """Fill `destination` (absent or empty) with hard links to `source`'s files, copies across file systems."""
    if destination.exists() and any(destination.iterdir()):
        raise BuildError(f"{destination} is not empty")

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link, dirs_exist_ok=True)


def build(artifacts_dir: Path, root: Path = ROOT, lock: Path = LOCK, python: str | None = None) -> None:
    problems = check_lock(root / "pyproject.toml", lock)
    if problems:
        raise BuildError("; ".join(problems))
    link_tree(stage(root, lock, python), artifacts_dir)


def _functions(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") == "AWS::Serverless::Function":
            yield name, resource.get("Properties") or {}


def verify(build_dir: Path, python: str | None = None, out: Any = sys.stdout) -> list[str]:
    """Import each function's handler from its artifact in a clean interpreter; the problems found."""
    template = yaml_parse((build_dir / "template.yaml").read_text())
    interpreter = lambda_python(python)
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    problems = []
    for name, props in _functions(template):
        handler = props.get("Handler") or globals_.get("Handler")
        code = build_dir / str(props.get("CodeUri") or globals_.get("CodeUri"))
        module_name, _, function = str(handler).rpartition(".")
        variables = {
            **((globals_.get("Environment") or {}).get("Variables") or {}),
            **((props.get("Environment") or {}).get("Variables") or {}),
        }
        env = {k: placeholder(v, k) for k, v in variables.items()}
        env |= {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "PATH": os.environ.get("PATH", "")}
        with tempfile.TemporaryDirectory() as cwd:
            done = subprocess.run(
                [interpreter, "-I", "-S", "-c", _IMPORT_CHECK, str(code.resolve()), module_name, function],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            problems.append(f"{name}: {handler} does not import from {code.name}/ alone: {last}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if not result["callable"]:
            problems.append(f"{name}: {module_name} has no function {function}")
        elif result["outside"]:
            problems.append(f"{name}: {handler} imported modules from outside its artifact: {result['outside']}")
        else:
            print(f"{name}: {handler} imports from {code.name}/ alone ({result['seconds']:.2f} s)", file=out)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.functions", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("lock", help="resolve and pin the functions' dependencies (needs the package index)")
    commands.add_parser("check-lock", help="check the lock against pyproject.toml")
    build_cmd = commands.add_parser("build", help="fill a function's artifact directory (sam build runs this)")
    build_cmd.add_argument("artifacts_dir", type=Path)
    build_cmd.add_argument("--python", help=f"a Python {LAMBDA_PYTHON_VERSION} interpreter (default: on PATH)")
    verify_cmd = commands.add_parser("verify", help="import each handler from its artifact alone")
    verify_cmd.add_argument("build_dir", type=Path)
    verify_cmd.add_argument("--python", help=f"a Python {LAMBDA_PYTHON_VERSION} interpreter (default: on PATH)")
    args = parser.parse_args(argv)
    try:
        if args.command == "lock":
            write_lock()
            print(f"{LOCK.relative_to(ROOT)}: {len(read_lock()[1])} pins")
            return 0
        if args.command == "build":
            build(args.artifacts_dir, python=args.python)
            return 0
        problems = check_lock() if args.command == "check-lock" else verify(args.build_dir, args.python)
    except (BuildError, subprocess.CalledProcessError) as e:
        print(f"functions: {e}", file=sys.stderr)
        return 1
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
