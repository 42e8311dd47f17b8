"""Inference runtimes for the encoders: the torch module is the reference, OpenVINO and ONNX Runtime
run a compiled copy of it.

On a CPU the same float32 numbers come several times faster from a runtime built for inference
(``benchmarks/extraction_throughput.py`` measures each side by side). A copy is converted once
from the module's weights and cached under ``<cache>/runtimes/<key>/``, keyed by the weights'
content, the runtime, its version, the precision and the input shapes, so a rerun pays nothing.
``auto`` is torch on CUDA and, on a CPU, the first runtime installed in ``CPU_PREFERENCE`` for the encoder's kind.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import warnings
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from cmr_utils.features.names import BACKENDS, PRECISIONS
from cmr_utils.io import atomic_dir, built, key

# fastest first on this project's CPU, float32, through the whole extraction path
# (benchmarks/extraction_throughput.py): ONNX Runtime runs Lite2 on real photos at 3.2x torch's
# speed and OpenVINO at 2.5x (Lite0 on the demo: 4.9x and 3.6x); texts gain 1.1x at best and
# mpnet's variable-length batches once ran at 0.74x, so ``auto`` leaves texts to torch
CPU_PREFERENCE = {"image": ("onnxruntime", "openvino", "torch"), "text": ("torch",)}
PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}  # backend -> the module it imports


def device_of(device: str | None = None) -> torch.device:
    """The requested device, or CUDA when present, else CPU."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def resolve(backend: str, device: torch.device, kind: str = "image") -> str:
    """The backend that will run: ``auto`` chosen for this machine; a runtime that is not installed
    (or not for this device) falls back to torch with one line saying so."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device.type != "cpu":
        if backend not in ("auto", "torch"):
            print(f"backend={backend} runs on the CPU only: using torch on {device.type}", file=sys.stderr)
        return "torch"
    if backend == "auto":
        return next(b for b in CPU_PREFERENCE[kind] if b == "torch" or _installed(b))
    if backend != "torch" and not _installed(backend):
        print(f"backend={backend}: the package {PACKAGES[backend]!r} is not installed (pip install "
              f"{PACKAGES[backend]}); using torch", file=sys.stderr)
        return "torch"
    return backend


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(PACKAGES[backend]) is not None


def weights_key(module: torch.nn.Module) -> str:
    """A digest of the module's parameters and buffers: what the converted copy was made from."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def build(module: torch.nn.Module, graph: dict, example: tuple[torch.Tensor, ...], dynamic: list[dict[int, str]],
          backend: str, precision: str, device: torch.device, cache_dir: str | Path | None):
    """A callable ``run(*arrays) -> float32 array`` computing ``module(*arrays)`` on ``backend``.

    ``graph`` is what shapes the computation besides the weights (a text model's layer and
    pooling). ``example`` gives the inputs' dtypes and shapes; ``dynamic`` names, per input, the
    axes whose size changes between calls (the batch, a text's length). ``backend`` is a resolved one.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    module = module.eval()
    if backend == "torch":
        return TorchRun(module, precision, device)
    if backend == "onnxruntime" and precision != "float32":
        raise ValueError(f"backend=onnxruntime runs float32 only on a CPU; for precision={precision} "
                         "use backend=openvino or torch")
    shapes = [[None if a in d else s for a, s in enumerate(x.shape)] for x, d in zip(example, dynamic)]
    folder = Path(cache_dir or Path.home() / ".cache" / "cmr") / "runtimes" / key(
        weights_key(module), type(module).__name__, graph, backend, importlib.metadata.version(backend), shapes,
        [str(x.dtype) for x in example])
    converted = folder / ("model.xml" if backend == "openvino" else "model.onnx")

    def convert(dest: Path) -> None:
        with atomic_dir(dest) as tmp:
            _convert(module, example, dynamic, backend, tmp / converted.name)

    built(folder, convert, done=converted)
    return (OpenVinoRun if backend == "openvino" else OrtRun)(converted, precision)


def _convert(module, example, dynamic, backend, dest: Path) -> None:
    # Tracing warns about its own deprecation and about branches fixed by the example's shapes (the
    # dynamic axes are declared above), and it reads every attribute of a transformers model, whose
    # unused ``loss_function`` logs a notice; those lines would land in every first run's report.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), _transformers_quiet():
        warnings.simplefilter("ignore")
        if backend == "openvino":
            import openvino as ov
            inputs = [(ov.PartialShape([-1 if a in d else s for a, s in enumerate(x.shape)]),
                       ov.Type.f32 if x.dtype == torch.float32 else ov.Type.i64) for x, d in zip(example, dynamic)]
            ov.save_model(ov.convert_model(module, example_input=example, input=inputs), dest,
                          compress_to_fp16=False)  # its default halves the weights
        else:
            names = [f"input{i}" for i in range(len(example))]
            torch.onnx.export(module, example, dest, dynamo=False, input_names=names, output_names=["output"],
                              dynamic_axes={n: d for n, d in zip(names, dynamic)}, opset_version=17)


@contextlib.contextmanager
def _transformers_quiet():
    """transformers' logging at errors only, for the block (its level as it was after)."""
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def threads() -> int:
    """The threads a runtime may use: torch's setting, which follows OMP_NUM_THREADS (a Dask worker's share)."""
    return torch.get_num_threads()


class TorchRun:
    """The reference: the module itself; bfloat16 by autocast, float16 (CUDA) as half weights; channels-last images."""

    def __init__(self, module: torch.nn.Module, precision: str, device: torch.device):
        if precision == "float16" and device.type == "cpu":
            raise ValueError("precision=float16 needs a GPU with torch (or backend=openvino on a CPU that has it)")
        self.module, self.precision, self.device = module.to(device), precision, device
        if precision == "float16":
            self.module.half()

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        xs = [torch.from_numpy(np.asarray(a)).to(self.device, non_blocking=True) for a in arrays]
        xs = [x.to(torch.float16, memory_format=torch.channels_last) if x.ndim == 4 and self.precision == "float16"
              else x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in xs]
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16,
                                                     enabled=self.precision == "bfloat16"):
            return self.module(*xs).float().cpu().numpy()


class OpenVinoRun:
    """The converted model compiled for this CPU (its kernels cached beside it), at ``precision``."""

    HINTS = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}

    def __init__(self, path: Path, precision: str):
        self.compiled = _ov_core().compile_model(str(path), "CPU", {
            "INFERENCE_PRECISION_HINT": self.HINTS[precision], "INFERENCE_NUM_THREADS": threads(),
            "PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": str(path.parent / "compiled")})
        self.request = self.compiled.create_infer_request()

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        result = self.request.infer([np.ascontiguousarray(a) for a in arrays])
        return np.array(result[self.compiled.output(0)], dtype=np.float32)


@functools.cache
def _ov_core():
    """One OpenVINO core for the process, alive as long as it: compiled models and their requests use it."""
    import openvino as ov
    return ov.Core()


class OrtRun:
    """The exported ONNX graph in an ONNX Runtime CPU session."""

    def __init__(self, path: Path, precision: str):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads()
        options.log_severity_level = 3  # its warnings about unused initialisers would fill the report
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        return self.session.run(None, dict(zip(self.names, [np.ascontiguousarray(a) for a in arrays])))[0]
