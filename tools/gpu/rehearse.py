"""The lease's dress rehearsal on CPU: every call of tools/gpu/lease.py's sequence, played through the FAKE device
(tools/gpu/fake_device.py, the tool's real limits), with FAKE engine parts of the real parts' sizes and the null
engine standing in for vLLM and SGLang (started together, released in turn, exactly as on the GPU).

    python3 -m tools.gpu.rehearse            # prints the call sequence: bytes sent, seconds, files back

It passes when every call is accepted, the campaign runs from its own copy of the tree, both traffic steps end
`done`, and everything comes back through $OUT within its limits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from tools.gpu import calls, lease
from tools.gpu.fake_device import FakeDevice
from tools.gpu.pack import MiB, read_manifest, sha256_file, split, write_manifest, write_tar_xz

WORK = Path(".gpu/rehearsal")
RUN_AS = "sglang=null,vllm=engines.null:NullEngine"
# the real bundles (tools.gpu.prepare, 2026-11-30): used when .gpu/carry has no manifests to read them from
REAL_BUNDLE_BYTES = {"sglang": int(94.5 * MiB), "vllm": int(111.3 * MiB)}


def real_bundle_bytes(root: Path) -> dict[str, int]:
    sizes = dict(REAL_BUNDLE_BYTES)
    for engine in sizes:
        manifest = root / ".gpu" / "carry" / engine / "manifest.json"
        if manifest.is_file():
            sizes[engine] = read_manifest(manifest)["bundle_bytes"]
    return sizes


def fake_engine_parts(
    work: Path, engine: str, bundle_bytes: int, part_bytes: int, first_bytes: int | None
) -> dict[str, Any]:
    """A FAKE engine: one importable module packed as a real .tar.xz, then random padding to `bundle_bytes` after
    the xz stream (Python's lzma ignores trailing data that is no xz stream, as the device's install reads it), cut
    like prepare cuts the real ones. Seconds instead of the minute that compressing the padding would take."""
    site = work / "site" / engine
    shutil.rmtree(site, ignore_errors=True)
    module = site / f"fake{engine}"
    module.mkdir(parents=True, exist_ok=True)
    (module / "__init__.py").write_text(f"ENGINE = {engine!r}  # a FAKE engine for the rehearsal\n")
    bundle = work / f"{engine}.tar.xz"
    write_tar_xz(site, bundle, preset=0)
    with bundle.open("ab") as handle:  # a zero byte first: the padding can never start like an xz stream
        handle.write(b"\0" + os.urandom(max(bundle_bytes - bundle.stat().st_size - 1, 0)))
    carry = work / "carry" / engine
    manifest = {
        "engine": engine,
        "fake": True,
        "imports": [f"fake{engine}"],
        "env": {},
        "bundle_bytes": bundle.stat().st_size,
        "bundle_sha256": sha256_file(bundle),
        "parts": split(bundle, carry, part_bytes, first_bytes),
    }
    write_manifest(carry / "manifest.json", manifest)
    bundle.unlink()
    return manifest


def rehearse(
    root: Path = calls.ROOT,
    machine_root: Path | None = None,
    gap_s: float = 15.0,
    deadline_s: float = 300.0,
    bundle_bytes: dict[str, int] | None = None,
    sequence_for=None,
) -> dict[str, Any]:
    """Build fake parts, plan the calls, play them; returns the call records and what came back."""
    work = root / WORK
    part_bytes = calls.part_budget(calls.tree_bytes(root)) // MiB * MiB
    staged = 0
    for engine in calls.ENGINES:
        size = (bundle_bytes or real_bundle_bytes(root))[engine]
        fake_engine_parts(work, engine, size, part_bytes, calls.fill_bytes(staged, part_bytes))
        staged += size
    plan = calls.build(root, carry=work / "carry", calls_dir=WORK / "calls")
    sequence = (sequence_for or default_sequence)(plan, deadline_s)
    device = FakeDevice(root, machine_root or Path(tempfile.mkdtemp(prefix="fake-device-")))
    records, back = [], None
    try:
        for index, call in enumerate(sequence):
            reply = device.run(call.command, call.carry, call.timeout_s)
            records.append(
                {"call": call.index, "purpose": call.purpose, **{k: v for k, v in reply.items() if k != "output_tail"}}
            )
            if "error" in reply:
                break
            back = reply
            if index + 1 < len(sequence):
                device.idle(gap_s)
        finished = campaign_state(back) if back else None
        while back and finished is not None and not finished.get("finished") and device.budget_left_s() > 120:
            device.idle(gap_s)  # another final poll, as the README says when the first one came back early
            back = device.run(lease.final_poll(len(records) + 1, device.budget_left_s()).command, (), 600)
            records.append(
                {
                    "call": len(records) + 1,
                    "purpose": "another poll",
                    **{k: v for k, v in back.items() if k != "output_tail"},
                }
            )
            finished = campaign_state(back)
    finally:
        device.give_back()
    return {
        "part_bytes": part_bytes,
        "calls_plan": plan,
        "records": records,
        "state": campaign_state(back) if back else None,
        "lease_used_s": round(device.lease_used_s, 1),
    }


def default_sequence(plan: dict, deadline_s: float) -> list[lease.LeaseCall]:
    staging = lease.staging_calls(plan, deadline_s, start_extra=f" --run-as {RUN_AS}")
    return [*staging, lease.final_poll(len(staging) + 1, 400)]


def campaign_state(reply: dict[str, Any]) -> dict[str, Any] | None:
    """The campaign state packed in what came back (results-campaign.tar.xz or its 16 MiB parts)."""
    files = sorted(Path(f) for f in reply.get("files", []) if "results-campaign" in f)
    if not files:
        return None
    data = b"".join(f.read_bytes() for f in files)
    joined = Path(reply["files_at"]) / "results-campaign.joined.tar.xz"
    joined.write_bytes(data)
    with tarfile.open(joined) as bundle:
        member = next((m for m in bundle.getmembers() if m.name.endswith("campaign-state.json")), None)
        return json.load(bundle.extractfile(member)) if member else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.gpu.rehearse", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gap-s", type=float, default=15.0, help="the operator's seconds between a reply and the next call"
    )
    args = parser.parse_args(argv)
    report = rehearse(gap_s=args.gap_s)
    print(
        f"parts of up to {report['part_bytes'] / MiB:.0f} MiB; tree {report['calls_plan']['tree_bytes'] / MiB:.1f} MiB"
    )
    for record in report["records"]:
        if "error" in record:
            print(f"call {record['call']}: REFUSED: {record['error']}")
            continue
        print(
            f"call {record['call']} ({record['purpose']}): sent {record['sent_bytes'] / MiB:.1f} MiB, rc "
            f"{record['rc']}, "
            f"{record['wall_s']} s, back {len(record['files'])} file(s)"
            + (f", LEFT OUT {record['files_left_out']}" if record["files_left_out"] else "")
        )
    state = report["state"] or {}
    for step in state.get("steps", []):
        print(f"  {step['step']}: {step['outcome']} (rc {step.get('returncode')})")
    print(f"lease used (simulated): {report['lease_used_s']} s")
    ok = bool(state.get("finished")) and all(s["outcome"] == "done" for s in state.get("steps", []))
    print("rehearsal: " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
