"""Untrusted models: a SavedModel is a program, so look at what it can do before running it.

TensorFlow's security guidance says it plainly: running a model is running code, and a model
from an untrusted source must be treated like untrusted code. A SavedModel's graph can read and
write files (`tf.io.write_file`), list folders, talk to servers (tf.data service, RPC ops) or
call back into Python (`tf.py_function`). yt8m reads `saved_model.pb` (every graph node and every
function of its library) before loading a model and refuses, in one line, one that holds such
operations, unless the caller says `trust_model=True`.

Trusted without inspection: models whose `saved_model.pb` hash is in the user's trust registry
(`$YT8M_HOME/trusted_models.json`): the ones yt8m wrote itself (export) and the ones unpacked from
a verified catalogue download. The registry lives in the user's cache, not in the model folder,
so a downloaded model cannot vouch for itself.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from yt8m._tf import import_tensorflow_quietly
from yt8m.core import Yt8mError
from yt8m.data.files import write_text
from yt8m.downloads import cache_dir, sha256_of

SAVED_MODEL_FILE = "saved_model.pb"
REGISTRY_FILE = "trusted_models.json"
TRUST_PARAMETER = "`trust_model=True`"

# Operations that reach outside the tensors a model computes on (TensorFlow 2.x raw ops).
FILE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "MatchingFilesDataset", "ImmutableConst",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "LMDBReader", "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2",
    "ExperimentalCSVDataset", "LMDBDataset", "ExperimentalLMDBDataset", "SqlDataset",
    "ExperimentalSqlDataset", "SaveDataset", "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord",
    "ExperimentalDatasetToTFRecord", "SnapshotDataset", "SnapshotDatasetV2", "CacheDataset",
    "CacheDatasetV2", "InitializeTableFromTextFile", "InitializeTableFromTextFileV2",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteRawProtoSummary",
    "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
    "WriteGraphSummary", "ImportEvent", "FlushSummaryWriter", "LoadAndRemapMatrix",
    "GenerateVocabRemapping", "DecodeProtoV2", "EncodeProto", "DebugIdentity", "DebugIdentityV2",
    "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2",
})
# Checkpoint ops: part of the standard save / restore path, refused anywhere else.
CHECKPOINT_OPS = frozenset({
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
})
NETWORK_OPS = frozenset({
    "DataServiceDataset", "DataServiceDatasetV2", "DataServiceDatasetV3", "DataServiceDatasetV4",
    "RegisterDataset", "RegisterDatasetV2", "DistributedSave", "RpcClient", "RpcServer",
    "RpcServerStart", "RpcServerRegister", "RpcCall", "RpcCheckStatus", "RpcGetValue", "Rpc",
    "TryRpc", "BigQueryReader", "GenerateBigQueryReaderPartitions",
})
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
UNSAFE_OPS = FILE_OPS | NETWORK_OPS | PYTHON_OPS
_PRINT_TO_FILE = re.compile(r"^file://")


@dataclass(frozen=True)
class Finding:
    """One operation that reaches outside the model: where it is and what it is."""

    op: str
    where: str  # "graph node NAME" or "function NAME"

    def __str__(self) -> str:
        return f"{self.op} ({self.where})"


def _saved_model_proto(path: Path):
    import_tensorflow_quietly()  # the proto module below needs TensorFlow loaded
    saved_model_pb2 = importlib.import_module("tensorflow.core.protobuf.saved_model_pb2")
    try:
        return saved_model_pb2.SavedModel.FromString(path.read_bytes())
    except Exception as error:  # protobuf's DecodeError
        raise Yt8mError(f"{path}: not a SavedModel ({error})") from None


def _called_functions(node) -> set[str]:
    names = set()
    for value in node.attr.values():
        if value.HasField("func"):
            names.add(value.func.name)
        names.update(func.name for func in value.list.func)
    return names


def _closure(roots: set[str], functions: dict) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in functions[name].node_def:
            todo.extend(_called_functions(node))
    return seen


def _is_unsafe(node, standard_checkpoint: bool) -> bool:
    if node.op in UNSAFE_OPS:
        return True
    if node.op in CHECKPOINT_OPS:
        return not standard_checkpoint
    if node.op == "PrintV2":
        stream = node.attr["output_stream"].s.decode("utf-8", errors="replace")
        return bool(_PRINT_TO_FILE.match(stream))
    return False


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _served_nodes(graph, meta_graph) -> set[str]:
    """Names of the graph nodes a signature's outputs depend on (data and control inputs)."""
    nodes = {node.name: node for node in graph.node}
    todo = [_node_name(info.name) for signature in meta_graph.signature_def.values() for info in signature.outputs.values()]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        todo.extend(_node_name(tensor) for tensor in nodes[name].input)
    return seen


def inspect_saved_model(path: str | os.PathLike) -> list[Finding]:
    """Every operation in a SavedModel that touches files, the network or Python.

    `path` is the SavedModel folder (or its `saved_model.pb`). Checkpoint ops count only on the
    standard save / restore path (the TF1 saver's scope, or the functions the TF2 saver nodes
    call) and only where no signature reaches them.
    """
    path = Path(path)
    proto_file = path / SAVED_MODEL_FILE if path.is_dir() else path
    if not proto_file.is_file():
        raise Yt8mError(f"{path}: not a SavedModel folder (no {SAVED_MODEL_FILE})")
    findings: list[Finding] = []
    for meta_graph in _saved_model_proto(proto_file).meta_graphs:
        graph = meta_graph.graph_def
        functions = {function.signature.name: function for function in graph.library.function}
        saver = meta_graph.saver_def
        saver_nodes = {name.split(":")[0] for name in (saver.save_tensor_name, saver.restore_op_name) if name}
        scope = saver.restore_op_name.rsplit("/", 1)[0] + "/" if "/" in saver.restore_op_name else None
        served = _served_nodes(graph, meta_graph)
        served_functions = _closure(
            {f for node in graph.node if node.name in served for f in _called_functions(node)}, functions
        )
        standard_functions = _closure(
            {f for node in graph.node if node.name in saver_nodes for f in _called_functions(node)}, functions
        ) - served_functions
        for node in graph.node:
            standard = bool(scope and node.name.startswith(scope)) and node.name not in served
            if _is_unsafe(node, standard):
                findings.append(Finding(node.op, f"graph node {node.name}"))
        for name, function in functions.items():
            for node in function.node_def:
                if _is_unsafe(node, name in standard_functions):
                    findings.append(Finding(node.op, f"function {name}"))
    return findings


# ----------------------------------------------------------------------------- the trust registry


def _registry_path() -> Path:
    return cache_dir() / REGISTRY_FILE


def _registry() -> dict[str, str]:
    path = _registry_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(key): str(value) for key, value in data.items()}
    except (ValueError, AttributeError, OSError):
        return {}


def _model_hash(path: Path) -> str | None:
    proto_file = path / SAVED_MODEL_FILE if path.is_dir() else path
    return sha256_of(proto_file) if proto_file.is_file() else None


def mark_trusted(path: str | os.PathLike, source: str) -> None:
    """Record that the SavedModel at `path` is trusted (yt8m wrote it, or a verified download holds it)."""
    digest = _model_hash(Path(path))
    if digest is None:
        return
    registry = _registry()
    registry[digest] = source
    write_text(_registry_path(), json.dumps(registry, indent=1, sort_keys=True) + "\n")


def is_trusted(path: str | os.PathLike) -> bool:
    """Whether the SavedModel's `saved_model.pb` (as it is now) is in the trust registry."""
    digest = _model_hash(Path(path))
    return digest is not None and digest in _registry()


def check_saved_model(path: str | os.PathLike, trust_model: bool = False) -> None:
    """Refuse, in one line, to load a SavedModel that can touch files, the network or Python.

    Call it before `tf.saved_model.load` / `keras.layers.TFSMLayer`. Skipped when `trust_model`
    is True or the model is in the trust registry (`mark_trusted`).
    """
    if trust_model or is_trusted(path):
        return
    findings = inspect_saved_model(path)
    if not findings:
        return
    ops = sorted({finding.op for finding in findings})
    first = findings[0]
    raise Yt8mError(
        f"{path}: refusing to run this SavedModel: it contains operations that reach files, the "
        f"network or Python ({', '.join(ops)}; first in {first.where}); a model is a program: pass "
        f"{TRUST_PARAMETER} only if you trust its source"
    )
