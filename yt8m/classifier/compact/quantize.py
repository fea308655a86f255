"""Weight quantization of a trained classifier: codes + codebook per variable, expanded inside the graph.

The methods of the 2018 first place's `quantize.py` (under its names without the `quant_`
prefix), applied to every float32 variable with MORE than `min_elements` elements (the seed's
`--min_elements 17000`; smaller ones stay float32):

- `uniform8`: 256 evenly spaced levels between the variable's min and max (`np.linspace`), each
  weight replaced by the nearest level: uint8 codes + a float32 [256] codebook;
- `kmeans`: the codebook is the sorted centres of a 256-cluster k-means of the weights
  (scikit-learn, in float64 as the seed; fitted on at most 65,536 of them, evenly strided, where
  the seed fitted all: minutes instead of hours on large variables; every weight is then coded);
- `quantile`: the codebook is the 256 quantiles at evenly spaced probabilities 0..1;
- `float16`: the weights cast to float16 (no codebook);
- `float32`: nothing changed (a frozen copy of the weights; what `merge` stores for a trained member).

A quantized bundle is a directory with `config.json` (the source's config, kind `quantized`),
`weights.npz` (uncompressed: the bytes on disk are the bytes of the codes) and
`quantization.json` (method, threshold, source, step, one entry per variable). Loading it builds
the model from the config and returns a `QuantizedModel`: a `tf.Module` holding the codes
(uint8 variables) and codebooks that calls the Keras model with `stateless_call`, the weights
computed in place (`gather(codebook, codes)`) on each call. So a SavedModel exported from it
holds the uint8 codes, not float32 weights, as the seed's quantized graph did.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from yt8m._tf import import_tensorflow_quietly
from yt8m.classifier.bundle import LoadedModel, ModelBundle, register_kind, weights_filled_by_a_checkpoint
from yt8m.classifier.compact.kinds import KIND_QUANTIZED
from yt8m.classifier.config import CONFIG_FILENAME, KIND_TRAINED, ModelConfig
from yt8m.core import Yt8mError
from yt8m.data.files import atomic_path, write_text
from yt8m.data.vocabulary import LABEL_MAP_FILENAME

METHOD_FLOAT32 = "float32"
METHOD_FLOAT16 = "float16"
METHOD_UNIFORM8 = "uniform8"
METHOD_KMEANS = "kmeans"
METHOD_QUANTILE = "quantile"
METHODS = (METHOD_UNIFORM8, METHOD_FLOAT16, METHOD_KMEANS, METHOD_QUANTILE, METHOD_FLOAT32)
CODEBOOK_METHODS = (METHOD_UNIFORM8, METHOD_KMEANS, METHOD_QUANTILE)
SEED_METHOD_NAMES = {"quant_uniform": METHOD_UNIFORM8, "quant_kmeans": METHOD_KMEANS, "quant_quantile": METHOD_QUANTILE}
DEFAULT_MIN_ELEMENTS = 17_000  # the seed's --min_elements: variables with more elements are transformed
CODEBOOK_SIZE = 256  # uint8 codes
KMEANS_SEED = 0
KMEANS_FIT_VALUES = 65_536  # k-means is fitted on at most this many weights (an evenly strided subsample)
WEIGHTS_FILENAME = "weights.npz"
MANIFEST_FILENAME = "quantization.json"
# How one variable is stored in weights.npz (the key suffix after "NNNN.").
STORED_PLAIN = "values"  # float32 (or the variable's own dtype)
STORED_HALF = "half"  # float16
STORED_CODES = "codes"  # uint8 codes, with "NNNN.codebook" float32 [256]
CODEBOOK_SUFFIX = "codebook"


# ----------------------------------------------------------------------------- codebooks


def uniform_codebook(values: np.ndarray) -> np.ndarray:
    """256 evenly spaced levels from the minimum to the maximum of `values` (float32)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return np.linspace(flat.min(), flat.max(), num=CODEBOOK_SIZE).astype(np.float32)


def kmeans_codebook(values: np.ndarray, seed: int = KMEANS_SEED, fit_values: int | None = KMEANS_FIT_VALUES) -> np.ndarray:
    """The sorted centres of a 1-D k-means of `values` into 256 clusters (fewer distinct values: those, padded).

    Fitted on an evenly strided subsample of at most `fit_values` weights (None: all of them, as
    the seed did; hours for the largest real variables, for centres that barely move).
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    distinct = np.unique(flat)
    if distinct.size <= CODEBOOK_SIZE:
        return _padded(distinct)
    sample = flat if fit_values is None or flat.size <= fit_values else flat[:: -(-flat.size // fit_values)]
    from sklearn.cluster import KMeans  # here: scikit-learn is start-up time that loading never needs

    model = KMeans(n_clusters=CODEBOOK_SIZE, n_init=1, random_state=seed)
    model.fit(sample[:, None])
    return np.sort(model.cluster_centers_.ravel()).astype(np.float32)


def quantile_codebook(values: np.ndarray) -> np.ndarray:
    """The quantiles of `values` at 256 evenly spaced probabilities from 0 to 1 (pandas' linear rule)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return np.quantile(flat, np.linspace(0.0, 1.0, CODEBOOK_SIZE)).astype(np.float32)


def _padded(levels: np.ndarray) -> np.ndarray:
    """A sorted float32 [256] codebook from fewer levels (the last one repeated)."""
    levels = np.sort(np.asarray(levels, dtype=np.float32))
    return np.concatenate([levels, np.full(CODEBOOK_SIZE - levels.size, levels[-1], np.float32)])


CODEBOOKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    METHOD_UNIFORM8: uniform_codebook,
    METHOD_KMEANS: kmeans_codebook,
    METHOD_QUANTILE: quantile_codebook,
}


def nearest_codes(values: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """uint8 index of the nearest codebook level for every value (ties: the lower level), as scipy's `vq`."""
    codebook = np.asarray(codebook, dtype=np.float64)
    if np.any(np.diff(codebook) < 0):
        raise Yt8mError("a codebook must be sorted ascending")
    flat = np.asarray(values, dtype=np.float64).ravel()
    upper = np.clip(np.searchsorted(codebook, flat), 1, codebook.size - 1)
    lower = upper - 1
    take_lower = (flat - codebook[lower]) <= (codebook[upper] - flat)
    return np.where(take_lower, lower, upper).astype(np.uint8).reshape(np.shape(values))


@dataclass
class EncodedVariable:
    """One variable as stored: plain values, float16 values, or uint8 codes with a float32 codebook."""

    shape: tuple[int, ...]
    dtype: str  # the variable's own dtype
    stored: str  # STORED_PLAIN, STORED_HALF or STORED_CODES
    values: np.ndarray | None = None
    codes: np.ndarray | None = None
    codebook: np.ndarray | None = None

    def decode(self) -> np.ndarray:
        """The weights as the model uses them (float32 for float variables)."""
        if self.stored == STORED_CODES:
            return self.codebook[self.codes.astype(np.int64)].astype(self.dtype)
        return np.asarray(self.values).astype(self.dtype).reshape(self.shape)

    @property
    def nbytes(self) -> int:
        parts = (self.values, self.codes, self.codebook)
        return int(sum(part.nbytes for part in parts if part is not None))


def encode(values: np.ndarray, method: str, min_elements: int = DEFAULT_MIN_ELEMENTS) -> EncodedVariable:
    """Store one variable with `method` if it is float32 with more than `min_elements` elements, else as it is."""
    if method not in METHODS:
        raise Yt8mError(f"unknown quantization method {method!r}; choose one of {', '.join(METHODS)}")
    values = np.asarray(values)
    shape, dtype = tuple(values.shape), str(values.dtype)
    if method == METHOD_FLOAT32 or values.dtype != np.float32 or values.size <= min_elements:
        return EncodedVariable(shape, dtype, STORED_PLAIN, values=values)
    if method == METHOD_FLOAT16:
        return EncodedVariable(shape, dtype, STORED_HALF, values=values.astype(np.float16))
    codebook = CODEBOOKS[method](values)
    return EncodedVariable(shape, dtype, STORED_CODES, codes=nearest_codes(values, codebook), codebook=codebook)


# ----------------------------------------------------------------------------- the stored form


def float_variables(model) -> list:
    """The weights a bundle stores: every variable of the model with a floating dtype (no RNG states)."""
    return [v for v in model.variables if np.issubdtype(np.dtype(_numpy_dtype(v)), np.floating)]


def _numpy_dtype(variable) -> Any:
    dtype = variable.dtype
    return getattr(dtype, "as_numpy_dtype", dtype)


def _variable_path(variable) -> str:
    return str(getattr(variable, "path", None) or variable.name)


def save_encoded(directory: Path, encoded: Sequence[EncodedVariable], paths: Sequence[str], manifest: dict) -> None:
    """Write weights.npz (uncompressed) and quantization.json into `directory`."""
    arrays: dict[str, np.ndarray] = {}
    entries = []
    for index, (item, path) in enumerate(zip(encoded, paths)):
        key = f"{index:04d}"
        if item.stored == STORED_CODES:
            arrays[f"{key}.{STORED_CODES}"] = item.codes
            arrays[f"{key}.{CODEBOOK_SUFFIX}"] = item.codebook
        else:
            arrays[f"{key}.{item.stored}"] = np.asarray(item.values)
        entries.append({"index": index, "path": path, "shape": list(item.shape), "dtype": item.dtype, "stored": item.stored})
    with open(directory / WEIGHTS_FILENAME, "wb") as handle:
        np.savez(handle, **arrays)
    write_text(directory / MANIFEST_FILENAME, json.dumps({**manifest, "variables": entries}, indent=2) + "\n")


def read_manifest(directory: str | os.PathLike) -> dict:
    path = Path(directory) / MANIFEST_FILENAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Yt8mError(f"{path}: missing (not a quantized bundle)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise Yt8mError(f"{path}: unreadable ({error})") from None


def load_encoded(directory: str | os.PathLike) -> list[EncodedVariable]:
    """The stored variables of a quantized bundle, in the model's variable order."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    path = directory / WEIGHTS_FILENAME
    try:
        with np.load(path, allow_pickle=False) as arrays:
            out = []
            for entry in manifest["variables"]:
                key, stored = f"{int(entry['index']):04d}", entry["stored"]
                item = EncodedVariable(tuple(entry["shape"]), entry["dtype"], stored)
                if stored == STORED_CODES:
                    item.codes, item.codebook = arrays[f"{key}.{STORED_CODES}"], arrays[f"{key}.{CODEBOOK_SUFFIX}"]
                else:
                    item.values = arrays[f"{key}.{stored}"]
                out.append(item)
            return out
    except FileNotFoundError:
        raise Yt8mError(f"{path}: missing (the quantized weights)") from None
    except (KeyError, OSError, ValueError) as error:
        raise Yt8mError(f"{path}: does not match {MANIFEST_FILENAME} ({type(error).__name__}: {error})") from None


# ----------------------------------------------------------------------------- quantizing a bundle


@dataclass
class QuantizeResult:
    out_dir: Path
    method: str
    step: int
    num_variables: int
    num_transformed: int
    parameters: int
    bytes_on_disk: int


def quantize_bundle(
    train_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    method: str = METHOD_UNIFORM8,
    *,
    min_elements: int = DEFAULT_MIN_ELEMENTS,
    checkpoint: str | None = None,
    overwrite: bool = False,
) -> QuantizeResult:
    """Write a quantized bundle of `train_dir`'s model (EMA weights when kept) at `out_dir`.

    `train_dir` may be any loadable bundle whose model is a Keras model (trained or EMA-stage);
    quantizing a quantized bundle again would compound the error and is refused.
    """
    method = SEED_METHOD_NAMES.get(method, method)
    if method not in METHODS:
        raise Yt8mError(f"unknown quantization `method` {method!r}; choose one of {', '.join(METHODS)}")
    if min_elements < 0:
        raise Yt8mError(f"`min_elements` must be >= 0, got {min_elements}")
    bundle = ModelBundle.open(train_dir)
    if bundle.kind == KIND_QUANTIZED:
        raise Yt8mError(f"{train_dir}: already a quantized bundle ({read_manifest(train_dir).get('method')}); quantize its source")
    out = _check_out_dir(out_dir, train_dir, overwrite)
    loaded = bundle.load(checkpoint)
    if not hasattr(loaded.model, "stateless_call"):
        raise Yt8mError(f"{train_dir}: a {bundle.kind} bundle's model cannot be quantized (quantize its members)")
    variables = float_variables(loaded.model)
    encoded = [encode(np.asarray(v.numpy()), method, min_elements) for v in variables]
    write_quantized(out, bundle, loaded, encoded, [_variable_path(v) for v in variables], method, min_elements)
    return QuantizeResult(
        out_dir=out,
        method=method,
        step=loaded.step,
        num_variables=len(encoded),
        num_transformed=sum(item.stored != STORED_PLAIN for item in encoded),
        parameters=int(sum(int(np.prod(item.shape)) for item in encoded)),
        bytes_on_disk=int((out / WEIGHTS_FILENAME).stat().st_size),
    )


def _check_out_dir(out_dir: str | os.PathLike, source: str | os.PathLike, overwrite: bool) -> Path:
    out = Path(out_dir)
    if out.resolve() == Path(source).resolve():
        raise Yt8mError(f"{out}: the output must not replace its source")
    if out.exists():
        empty = out.is_dir() and not any(out.iterdir())
        ours = (out / CONFIG_FILENAME).is_file() and ModelConfig.load(out).kind != KIND_TRAINED
        if not empty and not (overwrite and ours):
            reason = "pass `overwrite=True` to replace it" if ours else "not an earlier quantized or merged bundle"
            raise Yt8mError(f"{out}: already exists ({reason})")
    return out


def write_quantized(
    out: Path,
    bundle: ModelBundle,
    loaded: LoadedModel,
    encoded: Sequence[EncodedVariable],
    paths: Sequence[str],
    method: str,
    min_elements: int,
) -> Path:
    """Write a quantized bundle (atomically: a temporary directory renamed when complete)."""
    config = replace(loaded.config, kind=KIND_QUANTIZED)
    manifest = {
        "method": method,
        "min_elements": int(min_elements),
        "source": str(bundle.path),
        "source_kind": bundle.kind,
        "step": int(loaded.step),
        "checkpoint": loaded.checkpoint,
    }
    with atomic_path(out) as staging:
        staging.mkdir(parents=True, exist_ok=True)
        config.save(staging)
        save_encoded(staging, encoded, paths, manifest)
        if bundle.label_map_path is not None:
            shutil.copyfile(bundle.label_map_path, staging / LABEL_MAP_FILENAME)
    return out


# ----------------------------------------------------------------------------- loading


_CLASSES: dict[str, type] = {}  # classes that subclass tf.Module, defined on first use


def _quantized_model_class() -> type:
    """The `QuantizedModel` class: a `tf.Module` computing a Keras model's weights from stored codes."""
    if "quantized" in _CLASSES:
        return _CLASSES["quantized"]
    tf = import_tensorflow_quietly()

    class _Hidden:
        """Keeps the Keras model out of `tf.Module` tracking: its float variables are not saved."""

        def __init__(self, model) -> None:
            self.model = model

    class QuantizedModel(tf.Module):
        """A Keras model whose float weights are computed from stored codes (or float16) on every call."""

        def __init__(self, model, encoded: Sequence[EncodedVariable]) -> None:
            super().__init__(name="quantized_model")
            floats = float_variables(model)
            if len(floats) != len(encoded):
                raise Yt8mError(f"the stored weights hold {len(encoded)} variables, the model {len(floats)}")
            self._keras = _Hidden(model)
            stored = {}
            self.codes, self.codebooks, self.values = [], [], []
            self._recipes: list[tuple[str, int, Any]] = []
            for variable, item in zip(floats, encoded):
                if tuple(variable.shape) != tuple(item.shape):
                    raise Yt8mError(f"stored weight {_variable_path(variable)} has shape {item.shape}, the model {tuple(variable.shape)}")
                if item.stored == STORED_CODES:
                    self.codes.append(tf.Variable(item.codes, trainable=False, dtype=tf.uint8))
                    self.codebooks.append(tf.Variable(item.codebook, trainable=False, dtype=tf.float32))
                    self._recipes.append((STORED_CODES, len(self.codes) - 1, variable.dtype))
                else:
                    self.values.append(tf.Variable(np.asarray(item.values), trainable=False))
                    self._recipes.append((item.stored, len(self.values) - 1, variable.dtype))
                stored[id(variable)] = len(self._recipes) - 1
            # Variables that are not weights (random-generator states) keep their built values.
            self.states = [tf.Variable(v.numpy(), trainable=False) for v in model.variables if id(v) not in stored]
            state_index = {id(v): i for i, v in enumerate(v for v in model.variables if id(v) not in stored)}
            self._order = {
                "trainable": [(stored.get(id(v)), state_index.get(id(v))) for v in model.trainable_variables],
                "non_trainable": [(stored.get(id(v)), state_index.get(id(v))) for v in model.non_trainable_variables],
            }

        @property
        def keras_model(self):
            return self._keras.model

        def _weight(self, recipe_index: int):
            kind, index, dtype = self._recipes[recipe_index]
            if kind == STORED_CODES:
                return tf.gather(self.codebooks[index], tf.cast(self.codes[index], tf.int32))
            return tf.cast(self.values[index], dtype)

        def _values(self, order) -> list:
            return [self._weight(w) if w is not None else tf.convert_to_tensor(self.states[s]) for w, s in order]

        # Plain Python over Python lists: AutoGraph has nothing to convert here, and its cache of
        # converted methods was seen to hand back another method for this one (TypeError, order-dependent).
        @tf.autograph.experimental.do_not_convert
        def __call__(self, inputs, training=False):
            outputs, _ = self._keras.model.stateless_call(
                self._values(self._order["trainable"]), self._values(self._order["non_trainable"]), inputs, training=False
            )
            return outputs

        def expanded(self):
            """The Keras model with the decoded weights assigned (for fine-tuning or inspection)."""
            model = self._keras.model
            for key in ("trainable", "non_trainable"):
                variables = model.trainable_variables if key == "trainable" else model.non_trainable_variables
                for variable, value in zip(variables, self._values(self._order[key])):
                    variable.assign(value)
            return model

    _CLASSES["quantized"] = QuantizedModel
    return QuantizedModel


def load_quantized_model(directory: str | os.PathLike, config: ModelConfig):
    """The `QuantizedModel` of a quantized bundle directory (its model built from `config`).

    The Keras model's float weights are never used (every one is computed from the stored codes,
    which must cover them all), so they are built zero-filled rather than drawn at random.
    """
    encoded = load_encoded(directory)
    with weights_filled_by_a_checkpoint():
        model = ModelBundle(Path(directory), config).build_model()
    try:
        return _quantized_model_class()(model, encoded)
    except Yt8mError as error:
        raise Yt8mError(f"{Path(directory) / WEIGHTS_FILENAME}: {error}") from None


def _load_quantized(bundle: ModelBundle, checkpoint: str | None, use_ema: bool) -> LoadedModel:
    """The loader of `quantized` bundles (there is one set of weights: `checkpoint` and `use_ema` do not apply)."""
    if checkpoint is not None:
        raise Yt8mError(f"{bundle.path}: a quantized bundle has no checkpoints to choose from")
    manifest = read_manifest(bundle.path)
    model = load_quantized_model(bundle.path, bundle.config)
    return LoadedModel(model=model, config=bundle.config, step=int(manifest.get("step", 0)), checkpoint=None)


register_kind(KIND_QUANTIZED, _load_quantized)
