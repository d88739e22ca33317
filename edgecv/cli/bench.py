"""`edgecv bench` and `edgecv devices`: latency on desktop CPU/GPU, Android over adb, boards over ssh."""
from __future__ import annotations

import click
from rich.table import Table

from edgecv.cli import _types as T
from edgecv.cli._app import cli, console, emit_json, err_console, make_progress


def _ms(v: object) -> str:
    return "-" if v is None else f"{v:.2f}"


@cli.command("bench")
@click.argument("sources", nargs=-1, required=True, metavar="MODEL|FILE...")
@click.option("--format", "formats", multiple=True, type=click.Choice(["torch", "onnx", "tflite", "executorch"]),
              help="Runtime format; repeat to compare (default: from the file suffix, torch for names).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "dynamic"]), default=None,
              help="Export precision when MODEL is a name (onnx/tflite/executorch).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or a profile from `edgecv devices`.")
@click.option("--threads", type=T.count(), default=None, help="Inference threads (default 1, or the profile's).")
@click.option("--core", "cores", type=T.count(0), multiple=True, help="Pin to this CPU (repeat per thread; default: last cores).")
@click.option("--warmup", type=T.count(0), default=10, show_default=True)
@click.option("--runs", type=T.count(), default=50, show_default=True)
@click.option("--input-size", type=T.SIZE, nargs=2, default=None, metavar="H W")
@click.option("--weights", default=None, help="Weights: a file (.safetensors + JSON sidecar, or weights-only .pth), or 'imagenet' (alias 'pretrained', or 'imagenet-tf') from edgecv's pretrained table (see `edgecv models --pretrained`).")
@click.option("--calib", default=None, help="Calibration images for int8 export.")
@click.option("--benchmark-binary", default=None, help="Local benchmark_model (.tflite) or executor_runner (.pte) binary to push (Android).")
@click.option("--serial", default=None, help="adb serial (Android).")
@click.option("--adb-port", type=T.PORT, default=None, help="adb server port (default: ANDROID_ADB_SERVER_PORT or 5037).")
@click.option("--devices-dir", default=None, help="Folder of device profiles (default: devices/).")
@click.option("--in-process", is_flag=True, help="Measure in this process instead of a fresh one per model.")
@click.option("--timeout", type=T.positive(), default=900, show_default=True, help="Seconds per measurement.")
@click.option("--json", "json_out", default=None, metavar="FILE", help="Write results as JSON ('-' = stdout).")
@click.option("--csv", "csv_out", default=None, metavar="FILE", help="Write results as CSV.")
@click.option("--plot", "plot_out", default=None, metavar="FILE.png", help="Bar chart of the results.")
def bench_cmd(sources, formats, precision, device, threads, cores, warmup, runs, input_size, weights, calib,
              benchmark_binary, serial, adb_port, devices_dir, in_process, timeout, json_out, csv_out, plot_out) -> None:
    """Latency of MODEL(s) or FILE(s): init, first inference, mean, p50/p90/p99, std, peak memory.

    One thread pinned to one core by default. Several models or --format values are measured one
    after the other, each in a fresh process, and compared in one table (and --plot chart).
    """
    from edgecv.bench import bench
    from edgecv.bench.harness import environment, write_csv

    results = []
    progress = make_progress()
    for src in sources:
        for fmt in formats or (None,):
            err_console.print(f"[dim]bench {src} {fmt or ''} on {device}...[/dim]")
            results.append(bench(src, fmt, precision=precision, device=device, threads=threads,
                                 cores=list(cores) or None, warmup=warmup, runs=runs, input_size=input_size,
                                 weights=weights, calib=calib, isolate=not in_process,
                                 benchmark_binary=benchmark_binary, serial=serial, adb_port=adb_port,
                                 devices_dir=devices_dir, timeout=timeout, progress=progress))
    t = Table(title=f"edgecv bench on {device} ({results[0].get('threads')} thread(s), {runs} runs after {warmup} warm-up)")
    for col in ("model", "format", "runtime", "init ms", "first ms", "mean ms", "p50 ms", "p90 ms", "p99 ms",
                "std ms", "peak MB"):
        t.add_column(col, justify="left" if col in ("model", "format", "runtime") else "right", no_wrap=True)
    for r in results:
        fmt = r["format"] + (f" {r['precision']}" if r.get("precision") else "")
        t.add_row(str(r["model"]), fmt, str(r.get("runtime")), _ms(r["init_ms"]), _ms(r["first_ms"]), _ms(r["mean_ms"]),
                  _ms(r["p50_ms"]), _ms(r["p90_ms"]), _ms(r["p99_ms"]), _ms(r["std_ms"]), _ms(r["peak_mem_mb"]))
    console.print(t)
    from edgecv.bench.litert_runner import delegation_note

    for r in results:
        note = delegation_note(r.get("info"))
        if note:
            console.print(f"[yellow]{r['model']}:[/yellow] {note}")
    if csv_out:
        write_csv(csv_out, results)
        err_console.print(f"[dim]wrote {csv_out}[/dim]")
    if plot_out:
        from edgecv.bench.plot import plot_results

        plot_results(results, plot_out)
        err_console.print(f"[dim]wrote {plot_out}[/dim]")
    emit_json({"results": results, "environment": environment()}, json_out)


@cli.command("devices")
@click.option("--devices-dir", default=None, help="Folder of device profiles (default: devices/).")
@click.option("--adb-port", type=T.PORT, default=None, help="adb server port to ask.")
@click.option("--no-check", is_flag=True, help="List only; do not contact the devices.")
@click.option("--json", "json_out", default=None, metavar="FILE", help="Write the list as JSON ('-' = stdout).")
def devices_cmd(devices_dir, adb_port, no_check, json_out) -> None:
    """List device profiles (devices/*.yaml) and whether each is reachable now."""
    from edgecv.bench.devices import load_profiles, reachable

    rows = []
    for name, p in load_profiles(devices_dir).items():
        ok, why = (None, "not checked") if no_check else reachable(p, adb_port=adb_port)
        target = p.get("serial") or p.get("host") or p.get("device") or "(only device)"
        rows.append({"name": name, "transport": p["transport"], "target": target, "abi": p.get("abi"),
                     "mask": p.get("big_core_mask"), "threads": p["threads"], "reachable": ok, "detail": why,
                     "description": p.get("description")})
    if json_out:
        emit_json(rows, json_out)
        if json_out == "-":
            return
    t = Table(title=f"device profiles ({len(rows)})")
    for col in ("name", "transport", "target", "ABI", "mask", "threads", "reachable", "detail"):
        t.add_column(col)
    for r in rows:
        mark = "-" if r["reachable"] is None else ("[green]yes[/green]" if r["reachable"] else "[red]no[/red]")
        t.add_row(r["name"], r["transport"], str(r["target"]), str(r["abi"] or ""), str(r["mask"] or ""),
                  str(r["threads"]), mark, r["detail"])
    console.print(t)
