"""LiteRT (ai-edge-litert) runner: XNNPACK delegate (applied by the default op resolver), N threads."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgecv.bench.base import Runner, random_input
from edgecv.errors import UserError


class LiteRTRunner(Runner):
    name = "litert"
    formats = ("tflite",)

    def import_runtime(self) -> None:
        if self.device != "cpu":
            raise UserError("the LiteRT runner runs on the CPU (XNNPACK); use --device cpu or a phone/board profile")
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise UserError("ai-edge-litert is not installed: pip install 'edgecv[tflite]'") from None
        self._Interpreter, self._resolver = Interpreter, OpResolverType
        if not Path(self.source).is_file():
            raise UserError(f"TFLite file {self.source} not found")

    def load(self) -> None:
        # AUTO = builtin kernels with the XNNPACK delegate applied by default (as benchmark_model --use_xnnpack)
        self.interp = self._Interpreter(model_path=self.source, num_threads=self.threads,
                                        experimental_op_resolver_type=self._resolver.AUTO)
        self.interp.allocate_tensors()

    def prepare_inputs(self) -> None:
        self.inputs = []
        for i, d in enumerate(self.interp.get_input_details()):
            shape = tuple(int(s) if s > 0 else 1 for s in d["shape"])
            x = random_input(shape, d["dtype"], self.seed + i)
            self.interp.set_tensor(d["index"], x)  # set once, like benchmark_model
            self.inputs.append((list(shape), str(x.dtype)))

    def infer(self) -> Any:
        self.interp.invoke()

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return {"ai_edge_litert": version("ai-edge-litert")}
        except PackageNotFoundError:
            return {}

    def info(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "delegate": "xnnpack (default)", **delegation(self.interp)}


def delegation(interp: Any) -> dict[str, Any]:
    """How the delegate split the graph: ``delegate_partitions`` and ``undelegated_ops`` (op -> count).

    One partition and no undelegated ops is the fast case; every op the delegate declines (e.g.
    int8 HARD_SWISH in XNNPACK, see edgecv/export/rewrite.py) runs on the built-in kernels and
    cuts the graph. LiteRT does not expose its execution plan, so this is read off the node list:
    an original op still runs on its own when none of its outputs is a delegate node's output and
    each is consumed by a delegate node, by another op that runs on its own, or is a graph output
    (tensors inside a partition are consumed only by ops of that partition).
    """
    ops = interp._get_ops_details()
    delegates = [o for o in ops if o["op_name"] == "DELEGATE"]
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    delegate_out = {int(t) for d in delegates for t in d["outputs"]}
    consumed_by_delegate = {int(t) for d in delegates for t in d["inputs"]}
    graph_out = {int(d["index"]) for d in interp.get_output_details()}
    consumers: dict[int, list[int]] = {}
    for o in originals:
        for t in o["inputs"]:
            consumers.setdefault(int(t), []).append(o["index"])
    alone: set[int] = set()
    counts: dict[str, int] = {}
    for o in reversed(originals):  # consumers come after producers in a TFLite node list
        outs = [int(t) for t in o["outputs"]]
        if not delegates or (outs and all(t not in delegate_out and (
                t in consumed_by_delegate or t in graph_out or any(c in alone for c in consumers.get(t, ())))
                for t in outs)):
            alone.add(o["index"])
            counts[o["op_name"]] = counts.get(o["op_name"], 0) + 1
    return {"delegate_partitions": len(delegates), "undelegated_ops": dict(sorted(counts.items()))}


def delegation_note(d: dict[str, Any] | None) -> str | None:
    """One line for people when a file is not a single XNNPACK partition (None when it is)."""
    if not d or (d.get("delegate_partitions", 1) == 1 and not d.get("undelegated_ops")):
        return None
    ops = ", ".join(f"{k} x{v}" for k, v in d.get("undelegated_ops", {}).items()) or "none"
    return f"XNNPACK runs it in {d['delegate_partitions']} partitions; ops on the slower built-in kernels: {ops}"
