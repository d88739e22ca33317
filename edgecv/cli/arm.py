"""`edgecv verify-arm`: exported files run on real ARM64 kernels (aarch64 wheels under qemu-user)."""
from __future__ import annotations

import click

from edgecv.cli import _types as T
from edgecv.cli._app import cli, console, emit_json


@cli.command("verify-arm")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--images", type=click.IntRange(min=1), default=200, show_default=True,
              help="Real images per file (from the file's dataset, disjoint from edgecv's calibration slice).")
@click.option("--data", default=None, help="Images to use (dataset name, folder or archive; default: by the file's classes).")
@click.option("--root", default=None, help="The arm64 root (default: $EDGECV_ARM_ROOT or ~/.cache/edgecv/arm/root; "
                                           "make it with scripts/build_arm_root.sh).")
@click.option("--timeout", type=T.Float(1.0), default=3600, show_default=True, help="Seconds per side.")  # finite
@click.option("--json", "json_out", default=None, metavar="FILE", help="Write the report as JSON ('-' = stdout).")
def verify_arm_cmd(files, images, data, root, timeout, json_out) -> None:
    """Run .tflite / .pte FILEs on x86 and on emulated aarch64 (same runtime versions) and compare.

    fp32: within 1e-4 of the logit range; int8: top-1 agreement >= 99.5%; XNNPACK must take the graph on
    both. Exit 3 when a file fails. Times under emulation are not device latencies.
    """
    from rich.table import Table

    from edgecv.verify_arm import verify

    rep = verify(list(files), root=root, images=images, data=data, timeout=timeout)
    t = Table(title="x86 vs aarch64 (qemu-user, QEMU_CPU=" + rep["qemu_cpu"] + ")")
    for col in ("file", "precision", "images", "fp32 rel / int8 agreement", "XNNPACK on ARM", "result"):
        t.add_column(col, no_wrap=col != "file")
    for r in rep["files"]:
        num = f"{r['rel']:.2e}" if "rel" in r else f"{r['agreement_pct']:.2f}%"
        d = r.get("delegation_arm") or r.get("delegation") or {}
        t.add_row(r["file"], r["precision"], str(r["n_images"]), num,
                  f"{d.get('delegate_partitions', 0)} partition(s)",
                  "[green]ok[/green]" if r["passed"] else "[red]" + "; ".join(r["problems"]) + "[/red]")
    console.print(t)
    console.print(f"emulated wall time {rep['emulated_wall_s']:.1f} s (under emulation: not a device latency)")
    emit_json(rep, json_out)
    if not rep["passed"]:
        raise SystemExit(3)
