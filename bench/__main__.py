"""`make bench`: every benchmark, each in a fresh interpreter (each brings up its own local stack), then one table of
every figure with its target and its baseline (and a fault matrix, where a benchmark reports one); both are written to bench/results.json.

    python -m bench                 # all of them
    python -m bench ack parsers     # some of them (the module names below)

Exit status 0 when every target is met, 1 when one is missed, 2 when a benchmark could not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results import RESULTS_ENV, Result, gather, table

RESULTS_FILE = Path(__file__).resolve().parent / "results.json"
# In the order the table shows them: the Slack ack, the agent on the box, the job's latencies, the control plane.
BENCHES = ("ack", "parsers", "spot", "slack_api", "listing")


def _fault_table(rows: list[dict[str, object]]) -> str:
    head = ("fault matrix row", "outcome", "status", "seconds")
    body = [(str(r["row"]), str(r["outcome"]), str(r.get("status", "")), f"{r['seconds']:.0f}") for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line, widths, strict=True)).rstrip() for line in (head, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    wanted = argv or list(BENCHES)
    unknown = sorted(set(wanted) - set(BENCHES))
    if unknown:
        print(f"no benchmark named {', '.join(unknown)}; there are: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="spotter-bench-") as tmp:
        gathered = Path(tmp) / "results.jsonl"
        env = {**os.environ, RESULTS_ENV: str(gathered)}
        started = time.time()
        for name in wanted:
            print(f"\n== bench.{name}", flush=True)
            t = time.perf_counter()
            code = subprocess.run([sys.executable, "-m", f"bench.{name}"], env=env, check=False).returncode
            print(f"== bench.{name}: {time.perf_counter() - t:.0f} s, exit {code}", flush=True)
            if code not in (0, 1):
                failed.append(name)
        out = gather(gathered)
    results = [Result(**r) for r in out["results"]]
    doc = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "benchmarks": wanted,
        "did_not_run": failed,
        **out,
    }
    RESULTS_FILE.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print("\n" + table(results))
    if out.get("faults"):
        print("\n" + _fault_table(out["faults"]))
    missed = [r.name for r in results if not r.meets]
    print(f"\n{len(results) - len(missed)} of {len(results)} figures meet their target; written to {RESULTS_FILE}")
    if failed:
        print(f"could not run: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
