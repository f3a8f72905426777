"""Take a trained run out of PyTorch: `cifarlab export RUN_DIR --format onnx` and `predict --onnx MODEL.onnx`.

The ONNX graph is the model alone: input `images`, float32 (batch, 3, 32, 32), already normalized; output
`logits` (batch, classes). The batch axis is dynamic. What a consumer needs besides the graph travels in
the model's metadata_props (JSON strings): `cifarlab.classes`, `cifarlab.mean`, `cifarlab.std` (per
channel, in [0, 1] units: x = (pixel / 255 - mean) / std), `cifarlab.input_size`, `cifarlab.model`, and
`cifarlab.tta`: the run's own test-time augmentation, which `predict --onnx` applies by default as `predict`
does with the run (each view one run of the graph; `--tta none` runs the bare graph once).

Export uses torch.onnx's dynamo exporter (torch.export + onnxscript), which exports every model in the
zoo, torchvision's and timm's included; the exported graph is then run with ONNX Runtime on a batch of
random images and compared with the run's own logits (Run.logits, tta none; the max absolute logit difference
is reported).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._io import atomic_path, check_destination
from ._threads import configured_threads
from .errors import CifarlabError

if TYPE_CHECKING:
    from .rundir.run import Predictions

FORMATS = ("onnx",)
INPUT_NAME, OUTPUT_NAME = "images", "logits"
META_PREFIX = "cifarlab."
VERIFY_IMAGES = 16
ORT_BATCH_SIZE = 256
# Verification tolerance on the logits, relative to their scale: fp32 kernels of PyTorch and ONNX Runtime
# sum in different orders, so exact equality is not expected.
RELATIVE_TOLERANCE = 1e-3


@dataclass
class ExportResult:
    path: Path
    format: str
    opset: int
    max_abs_diff: float  # ONNX Runtime vs PyTorch logits on VERIFY_IMAGES random images
    max_abs_logit: float
    top1_agreement: float  # share of those images where both pick the same class
    size_bytes: int
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


def require_onnx() -> None:
    """A one-line error naming the extra to install when onnx, onnxruntime or onnxscript is missing."""
    missing = []
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise CifarlabError(f"ONNX export and inference need {', '.join(missing)}: pip install -e '.[onnx]'")


def export(run_dir: str | Path, *, format: str = "onnx", out: str | Path | None = None, opset: int | None = None,
           verify: bool = True) -> ExportResult:
    """Export a run's trained model (default: RUN_DIR/model.onnx) and check it against PyTorch."""
    if format not in FORMATS:
        raise CifarlabError(f"unknown --format {format!r}; choose one of: {', '.join(FORMATS)}")
    from .rundir.layout import ONNX
    from .rundir.run import load_run

    out = Path(out) if out is not None else Path(run_dir) / ONNX
    if out.is_dir():
        raise CifarlabError(f"--out must be a file path, not a directory: {out}")
    check_destination(out)  # a device or a FIFO (--out /dev/null) is refused before any work
    run = load_run(run_dir, "cpu")  # one-line errors for a missing or foreign run directory
    require_onnx()
    metadata = _metadata(run)
    with atomic_path(out) as tmp:
        export_onnx_model(run.model, tmp, metadata, opset)
        result = _verify(run, tmp, metadata) if verify else {"max_abs_diff": math.nan, "max_abs_logit": math.nan,
                                                               "top1_agreement": math.nan}
    import onnx

    opset_used = next(o.version for o in onnx.load(str(out), load_external_data=False).opset_import if o.domain == "")
    if verify and result["max_abs_diff"] > RELATIVE_TOLERANCE * max(1.0, result["max_abs_logit"]):
        warnings.warn(f"{out}: ONNX Runtime's logits differ from PyTorch's by up to {result['max_abs_diff']:.3g} "
                      f"(logits up to {result['max_abs_logit']:.3g})", stacklevel=2)
    return ExportResult(out, format, opset_used, size_bytes=out.stat().st_size, metadata=metadata, **result)


def _metadata(run) -> dict[str, Any]:
    info = run.info
    cfg = info["config"]
    return {"classes": list(info["classes"]), "mean": list(run.mean), "std": list(run.std), "input_size": [3, 32, 32],
            "model": cfg["model"], "model_kwargs": cfg.get("model_kwargs", {}), "tta": run.resolve_tta(),
            "cifarlab_version": info.get("versions", {}).get("cifarlab")}


def export_onnx_model(model, path: Path, metadata: dict[str, Any], opset: int | None) -> None:
    import torch

    example = torch.zeros(2, *metadata["input_size"])
    batch = torch.export.Dim("batch", min=1, max=65536)
    chatter = io.StringIO()  # the exporter narrates its steps on stdout; keep the CLI's output to our summary
    try:
        with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME],
                                        output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                                        opset_version=opset, external_data=False)
    except Exception as e:  # torch.export / onnxscript errors are long; the first line names the problem
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CifarlabError(f"cannot export {metadata['model']} to ONNX: {first}") from None
    program.model.metadata_props.update({META_PREFIX + k: json.dumps(v) for k, v in metadata.items()})
    program.save(str(path), external_data=False)


def _verify(run, path: Path, metadata: dict[str, Any]) -> dict[str, float]:
    """The graph's logits against the run's own (Run.logits: fp32, tta none) on random images."""
    images = np.random.default_rng(0).integers(0, 256, (VERIFY_IMAGES, 32, 32, 3), dtype=np.uint8)
    onnx_logits = run_session(_session(path), normalize(images, metadata["mean"], metadata["std"]))
    torch_logits = run.logits(images, tta="none", precision="fp32").numpy()
    return {"max_abs_diff": float(np.abs(onnx_logits - torch_logits).max()),
            "max_abs_logit": float(np.abs(torch_logits).max()),
            "top1_agreement": float((onnx_logits.argmax(1) == torch_logits.argmax(1)).mean())}


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, the same arithmetic as the training loader."""
    mean = np.asarray(mean, np.float32).reshape(1, 3, 1, 1) * 255
    std = np.asarray(std, np.float32).reshape(1, 3, 1, 1) * 255
    x = images.transpose(0, 3, 1, 2).astype(np.float32)
    return np.ascontiguousarray((x - mean) / std)


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: no optimizer notices on stderr
    threads = threads or configured_threads()  # --threads (else ONNX Runtime counts the host's cores)
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind error types for a bad file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CifarlabError(f"cannot load ONNX model {path}: {first}") from None


def run_session(session, x: np.ndarray, batch_size: int = ORT_BATCH_SIZE) -> np.ndarray:
    """Logits for normalized float32 NCHW images, in batches."""
    outputs = [session.run([OUTPUT_NAME], {INPUT_NAME: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def load_onnx(path: str | Path, threads: int | None = None) -> tuple[Any, dict[str, Any]]:
    """An ONNX Runtime session (CPU) for a model written by `export`, and its cifarlab metadata."""
    require_onnx()
    path = Path(path)
    if not path.is_file():
        raise CifarlabError(f"ONNX model not found: {path}")
    session = _session(path, threads)
    props = session.get_modelmeta().custom_metadata_map
    try:
        metadata = {k.removeprefix(META_PREFIX): json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)}
    except json.JSONDecodeError:
        raise CifarlabError(f"{path}: its cifarlab metadata is not valid JSON") from None
    missing = [k for k in ("classes", "mean", "std") if k not in metadata]
    if missing:
        raise CifarlabError(f"{path} has no cifarlab metadata ({', '.join(missing)}): "
                            "write it with cifarlab export RUN_DIR --format onnx")
    return session, metadata


def predict_onnx(model_path: str | Path, images: Any, *, top_k: int = 3, tta: str | None = None) -> Predictions:
    """`cifarlab.predict` with ONNX Runtime: the same intake (any image form Run.predict takes), the same
    test-time augmentation (`tta`; None: the run's own, recorded at export, or none for a file without it)
    and the same result, Predictions."""
    from .choices import TTA
    from .rundir.run import Predictions, image_batch

    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise CifarlabError(f"--top-k must be >= 1, got {top_k}")
    if tta is not None:
        TTA.entry(tta)  # a bad name fails before the model is loaded
    for path in [images] if isinstance(images, str | Path) else images if isinstance(images, list) else []:
        if isinstance(path, str | Path) and not Path(path).exists():
            raise CifarlabError(f"image not found: {path}")
    session, metadata = load_onnx(model_path)
    tta = TTA.entry(tta if tta is not None else metadata.get("tta") or "none").name
    pixels, names = image_batch(images)
    logits = onnx_logits(session, metadata, pixels, tta)
    return Predictions.from_probabilities(_softmax(logits), metadata["classes"], names, top_k, pixels, tta=tta)


def onnx_logits(session, metadata: dict[str, Any], pixels: Any, tta: str = "none",
                batch_size: int = ORT_BATCH_SIZE) -> np.ndarray:
    """Logits (N, C) for image_batch's pixels, as Run.logits computes them: batch by batch, normalized with the
    training loader's arithmetic, averaged over the views of `tta` by rundir.inference's own TTA functions,
    each view one run of the graph."""
    import torch

    from .choices import TTA

    views = TTA.get(tta)
    mean = torch.tensor(metadata["mean"], dtype=torch.float32).view(1, -1, 1, 1) * 255
    std = torch.tensor(metadata["std"], dtype=torch.float32).view(1, -1, 1, 1) * 255

    def graph(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x.numpy())})[0])

    outputs = []
    with torch.no_grad():
        for i in range(0, len(pixels), batch_size):
            x = ((pixels[i:i + batch_size].float() - mean) / std).contiguous()
            outputs.append(views(graph, x).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, len(metadata["classes"])), np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
