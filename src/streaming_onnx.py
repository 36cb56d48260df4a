"""The streaming chunk step in onnxruntime: the deployment path of src/streaming.py's engine,
onnxruntime + numpy only (this module never imports MindSpore), and what export.py does to a
streaming ONNX file (its metadata, its int8 version).

    engine = StreamingTranscriber.from_onnx("ds2.onnx", cfg)   # src/streaming.py
    step = OnnxStep("ds2.onnx")                                # the step alone (a ChunkStep)

A streaming export (export.py --export.streaming=true --file_format=ONNX) holds one chunk step
with inputs STEP_INPUTS and outputs STEP_OUTPUTS (src/streaming.py) and, as metadata_props, the
entries of step_info (format, chunk_ms, geometry, features, labels, model, inputs, outputs;
quantization in an int8 file), each value JSON text: everything a runtime needs to drive it.
"""
import json
import logging
import os
import tempfile

import numpy as np

from src.errors import UserError
from src.streaming import STEP_INPUTS, ChunkStep, check_info

INT8 = ("int8: Conv static (QLinearConv, uint8 activations calibrated on {utterances} "
        "utterances, int8 weights per channel); LSTM and MatMul dynamic (int8 weights)")


def onnx_session(path, threads=0):
    """An onnxruntime session of `path` on the CPU (`threads` intra-op threads, 0: onnxruntime's
    default); UserError when onnxruntime is missing or refuses the file."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("running an ONNX file needs onnxruntime: pip install onnxruntime") from None
    if not os.path.isfile(path):
        raise UserError(f"ONNX file not found: {path}")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for invalid models
        raise UserError(f"onnxruntime cannot load {path}: {' '.join(str(err).split())[:300]}") \
            from None


def read_info(metadata, source):
    """step_info's dict of a file's metadata {key: JSON text}, checked (src.streaming.check_info)."""
    try:
        info = {key: json.loads(value) for key, value in metadata.items()}
    except ValueError:
        info = {}
    return check_info(info, source)


class OnnxStep(ChunkStep):
    """The step of a streaming ONNX export, run by onnxruntime on numpy arrays."""

    def __init__(self, path, threads=0):
        self.session = onnx_session(path, threads)
        super().__init__(read_info(self.session.get_modelmeta().custom_metadata_map, path))
        names = [i.name for i in self.session.get_inputs()]
        if names != list(STEP_INPUTS):
            raise UserError(f"{path} has inputs {names}, not the chunk step's {list(STEP_INPUTS)}")

    def __call__(self, *inputs):
        return self.session.run(None, dict(zip(STEP_INPUTS, inputs)))


class RecordedStep(ChunkStep):
    """A step that keeps the inputs of every `every`-th call ({name: array}): the calibration
    data of the int8 convolutions."""

    def __init__(self, step, every=1):
        super().__init__(step.info)
        self.step, self.every, self.calls, self.feeds = step, every, 0, []

    def zeros(self, shape):
        return self.step.zeros(shape)

    def __call__(self, *inputs):
        if self.calls % self.every == 0:
            self.feeds.append({name: np.array(x) for name, x in zip(STEP_INPUTS, inputs)})
        self.calls += 1
        return self.step(*inputs)


class AlreadyQuantized(logging.Filter):
    """Drops onnxruntime's warning that a model given to quantize_dynamic holds quantized ops."""

    def filter(self, record):
        return "already quantized" not in record.getMessage()


def _onnx():
    try:
        import onnx
    except ImportError:
        raise UserError("writing a streaming ONNX export needs the onnx package: "
                        "pip install onnx") from None
    return onnx


def write_metadata(path, info):
    """Store `info` (step_info's dict) in the ONNX file `path` as metadata_props, JSON values."""
    onnx = _onnx()
    model = onnx.load(path)
    del model.metadata_props[:]
    for key, value in info.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, path)


def quantize_int8(source, target, feeds, utterances):
    """Write the int8 version of the streaming ONNX file `source` to `target`, for onnxruntime
    on CPU: the graph constant-folded first (quant_pre_process: the LSTM weights the exporter
    assembles at run time become initializers); the two convolutions static (QLinearConv, int8
    weights per channel, uint8 activations whose ranges come from `feeds`, the step inputs of
    `utterances` utterances of real audio; ConvInteger, the dynamic form, ran several times
    slower than float32 here); the LSTMs (DynamicQuantizeLSTM) and the classifier
    (MatMulInteger) dynamic, int8 weights. The metadata is the source's, with `quantization`
    added."""
    onnx = _onnx()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_dynamic,
        quantize_static,
    )

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self.left = iter(feeds)

        def get_next(self):
            return next(self.left, None)

    info = {p.key: json.loads(p.value) for p in onnx.load(source, load_external_data=False)
            .metadata_props}
    with tempfile.TemporaryDirectory(prefix="ds2_int8_") as tmp:
        folded, convs = os.path.join(tmp, "folded.onnx"), os.path.join(tmp, "convs.onnx")
        quant_pre_process(source, folded, skip_symbolic_shape=True)  # symbolic: needs sympy
        quantize_static(folded, convs, Feeds(), quant_format=QuantFormat.QOperator,
                        op_types_to_quantize=["Conv"], per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        quiet = AlreadyQuantized()  # the convs are, on purpose: not worth a warning
        logging.getLogger().addFilter(quiet)
        try:
            quantize_dynamic(convs, target, op_types_to_quantize=["LSTM", "MatMul"],
                             weight_type=QuantType.QInt8)
        finally:
            logging.getLogger().removeFilter(quiet)
    info["quantization"] = INT8.format(utterances=utterances)
    write_metadata(target, info)
