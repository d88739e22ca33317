"""TFLite files (NHWC input) through onnx2tf + TensorFlow's TFLiteConverter; run with ai-edge-litert.

Why onnx2tf and not litert-torch (measured in /work/shared/stack.md on MobileNetV2, one pinned
core): onnx2tf's full-integer int8 file ran in 1.71 ms against 2.13 ms for litert-torch's PT2E
graph (which carried extra transposes), and litert-torch pulls ~900 MB (jax, transformers) and
downgrades typing-extensions. onnx2tf turns the NCHW ONNX graph into an NHWC Keras model; the
TFLite conversion below mirrors onnx2tf's own (builtin ops) but converts only
the one precision asked for: onnx2tf's int8 path would run four calibrated conversions
(~3.4 min for EfficientNet-Lite0 on 2 cores, stack.md).

Offline traps handled here (stack.md): onnx2tf reads
``calibration_image_sample_data_20x128x128x3_float32.npy`` from the working directory (else it
downloads it), so it runs in a temporary directory holding that file; it shells out to
``onnxsim``, so the environment's ``bin/`` goes on PATH for the call.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from edgecv.errors import UserError

log = logging.getLogger(__name__)

INSTALL = "pip install 'edgecv[tflite]' onnx2tf (onnx2tf with --no-deps, see docs/export.md)"
SAMPLE_NPY = "calibration_image_sample_data_20x128x128x3_float32.npy"


def _interpreter_class():
    """ai-edge-litert's Interpreter; tflite-runtime's when only that is importable."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # legacy fallback (numpy 1.x only)
        except ImportError:
            raise UserError("no TFLite interpreter installed: pip install 'edgecv[tflite]' (ai-edge-litert)") from None
    return Interpreter


def interpreter(path: str | os.PathLike, num_threads: int = 1):
    """A ready (allocated) TFLite interpreter for ``path`` with ``num_threads`` (XNNPACK by default)."""
    it = _interpreter_class()(model_path=str(path), num_threads=num_threads)
    it.allocate_tensors()
    return it


class Runner:
    """Runs a TFLite file on NCHW float32 batches: transposes to NHWC, (de)quantises int8 I/O."""

    layout = "NHWC"

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        self.it = interpreter(path, num_threads)
        self.inp = self.it.get_input_details()[0]
        self.out = self.it.get_output_details()[0]
        self.input_shape = [int(d) for d in self.inp["shape"]]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x
        ys = []
        for i in range(len(nhwc)):
            xi = nhwc[i:i + 1]
            if self.inp["dtype"] != np.float32:
                scale, zp = self.inp["quantization"]
                info = np.iinfo(self.inp["dtype"])
                xi = np.clip(np.round(xi / scale + zp), info.min, info.max).astype(self.inp["dtype"])
            self.it.set_tensor(self.inp["index"], xi)
            self.it.invoke()
            y = self.it.get_tensor(self.out["index"])
            if self.out["dtype"] != np.float32:
                scale, zp = self.out["quantization"]
                y = (y.astype(np.float32) - zp) * scale
            ys.append(y.reshape(1, -1))
        return np.concatenate(ys)


@contextlib.contextmanager
def _onnx2tf_env(workdir: Path):
    """cwd = workdir (its sample file), venv bin on PATH (onnxsim), stdout captured (onnx2tf prints)."""
    old_cwd, old_path = os.getcwd(), os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{old_path}"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    buf = io.StringIO()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(buf):
            yield buf
    finally:
        os.chdir(old_cwd)
        os.environ["PATH"] = old_path
        log.debug("onnx2tf output:\n%s", buf.getvalue()[-4000:])


def keras_from_onnx(onnx_path: str | os.PathLike, workdir: str | os.PathLike, sample: np.ndarray | None = None):
    """onnx2tf: ONNX (NCHW) -> NHWC Keras model, without network access or saving a SavedModel."""
    try:
        import onnx2tf
    except ImportError:
        raise UserError(f"onnx2tf is not installed: {INSTALL}") from None
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    local = workdir / "model.onnx"  # onnx2tf simplifies its input in place: give it a copy
    shutil.copyfile(onnx_path, local)
    if sample is None:  # only used by onnx2tf's own output check; deterministic
        sample = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(workdir / SAMPLE_NPY, sample.astype(np.float32))
    with _onnx2tf_env(workdir) as buf:
        try:
            model = onnx2tf.convert(input_onnx_file_path=str(local), output_folder_path=str(workdir / "tf"),
                                    disable_model_save=True, non_verbose=True, verbosity="error")
        except SystemExit:  # onnx2tf calls sys.exit(1) on conversion errors
            model = None
    if model is None:
        tail = " | ".join(buf.getvalue().strip().splitlines()[-3:])
        raise UserError(f"onnx2tf could not convert {onnx_path}: {tail[-300:]}")
    return model


METADATA_NAME = "edgecv"
_MAX_METADATA_MODEL = 200 << 20  # re-packing the flatbuffer in Python: keep it to files that take seconds


def add_metadata(blob: bytes, metadata: dict) -> bytes:
    """Add ``metadata`` as JSON in the model's ``metadata`` table (name "edgecv")."""
    import json

    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fu

    if len(blob) > _MAX_METADATA_MODEL:
        log.info("%d-byte model: metadata not embedded", len(blob))
        return blob
    m = fu.read_model_from_bytearray(bytearray(blob))
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)
    m.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(m.buffers) - 1
    m.metadata = (m.metadata or []) + [entry]
    return bytes(fu.convert_object_to_bytearray(m))


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON metadata edgecv embedded in a TFLite file ({} when none)."""
    import json

    from tensorflow.lite.python import schema_py_generated as schema

    data = bytearray(Path(path).read_bytes())
    m = schema.Model.GetRootAsModel(data, 0)
    for i in range(m.MetadataLength()):
        md = m.Metadata(i)
        if md.Name().decode() == METADATA_NAME:
            return json.loads(m.Buffers(md.Buffer()).DataAsNumpy().tobytes())
    return {}


def convert(onnx_path: str | os.PathLike, out: str | os.PathLike, precision: str, *,
            calib: np.ndarray | None = None, per_channel: bool = True, workdir: str | os.PathLike,
            metadata: dict | None = None) -> Path:
    """Write a TFLite file of ``precision`` (fp32 | fp16 | dynamic | int8) for the ONNX file.

    int8 is full-integer (int8 input and output, per-channel int8 weights unless
    ``per_channel=False``), calibrated on ``calib``: (N, C, H, W) float32 real images.
    """
    import tensorflow as tf

    model = keras_from_onnx(onnx_path, workdir)
    # From the traced function, not from_keras_model: onnx2tf's layers hold their constants in
    # their Keras config, and from_keras_model (or passing the model as trackable object) first
    # serialises that config to JSON: 150 s for one 4096x4096 FC layer against 6 s this way
    # (VGG's 124M FC weights ran for over 18 min).
    fn = tf.function(lambda *xs: model(xs), input_signature=[tf.TensorSpec(t.shape, t.dtype) for t in model.inputs])
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops: they need TF at runtime
    if precision != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        if calib is None:
            raise ValueError("int8 needs calibration images")
        nhwc = np.ascontiguousarray(calib.transpose(0, 2, 3, 1)).astype(np.float32)

        def representative():
            for i in range(len(nhwc)):
                yield [nhwc[i:i + 1]]

        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        conv._experimental_disable_per_channel = not per_channel
    try:
        blob = conv.convert()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"TFLite conversion ({precision}) failed: {first[:300]}") from None
    if metadata:
        blob = add_metadata(blob, metadata)
    out = Path(out)
    out.write_bytes(blob)
    return out
