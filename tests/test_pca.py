"""PCA loaders (YT8M npy, MediaPipe MatrixData, VGGish npz, tgz), apply, fit and save.

Every file is made here in the official layout; MatrixData protos are encoded with protobuf's own
runtime (a MatrixData class built from a descriptor) or by hand with struct, never with yt8m's
encoder, and expected outputs come from the published formulas computed with numpy.
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from yt8m.core import Yt8mError
from yt8m.pca import (
    PCA_EPSILON,
    Pca,
    dequantize,
    load_matrix_data_pair,
    load_pca,
    load_vggish_npz,
    load_yt8m_npy,
    quantize,
    read_matrix_data,
    save_matrix_data,
)
from yt8m.pca.fit import fit_pca, save_yt8m_npy

EPS = 1e-4  # REFERENCE.md §3, written out independently of PCA_EPSILON


# ---------------------------------------------------------------- helpers: official-format files


def _orthonormal(rng: np.random.Generator, dim: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q


def _write_yt8m_npy(directory: Path, rng: np.random.Generator, dim: int, flat_eigenvals: bool = False,
                    dtype=np.float64) -> dict[str, np.ndarray]:
    """mean.npy (D x 1), eigenvals.npy (D x 1 or D), eigenvecs.npy (D x D, eigenvectors as rows)."""
    directory.mkdir(parents=True, exist_ok=True)
    mean = rng.normal(size=(dim, 1)).astype(dtype)
    eigenvals = np.sort(rng.uniform(0.01, 5.0, size=dim))[::-1].astype(dtype)
    eigenvals = eigenvals if flat_eigenvals else eigenvals.reshape(dim, 1)
    eigenvecs = _orthonormal(rng, dim).astype(dtype)
    np.save(directory / "mean.npy", mean)
    np.save(directory / "eigenvals.npy", eigenvals)
    np.save(directory / "eigenvecs.npy", eigenvecs)
    return {"mean": mean, "eigenvals": eigenvals, "eigenvecs": eigenvecs}


def _yt8m_formula(x: np.ndarray, arrays: dict[str, np.ndarray], k: int) -> np.ndarray:
    """REFERENCE.md §3: ((x - mean) @ eigenvecs.T[:, :k]) / sqrt(eigenvals[:k] + 1e-4)."""
    mean = arrays["mean"].astype(np.float64).reshape(1, -1)
    vals = arrays["eigenvals"].astype(np.float64).reshape(-1)
    vecs = arrays["eigenvecs"].astype(np.float64)
    return ((x.astype(np.float64) - mean) @ vecs.T[:, :k]) / np.sqrt(vals[:k] + EPS)


def _matrix_data_class(packed: bool):
    """A MatrixData message class made by protobuf itself from a descriptor (no generated _pb2)."""
    fdp = descriptor_pb2.FileDescriptorProto()
    fdp.name = f"yt8m_test_matrix_data_{'packed' if packed else 'unpacked'}.proto"
    fdp.package = "yt8mtest" + ("packed" if packed else "unpacked")
    fdp.syntax = "proto2"
    msg = fdp.message_type.add()
    msg.name = "MatrixData"
    label_opt = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    label_rep = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    types = descriptor_pb2.FieldDescriptorProto
    for name, number, label, ftype in [
        ("rows", 1, label_opt, types.TYPE_INT32),
        ("cols", 2, label_opt, types.TYPE_INT32),
        ("packed_data", 3, label_rep, types.TYPE_FLOAT),
    ]:
        field = msg.field.add(name=name, number=number, label=label, type=ftype)
        if name == "packed_data":
            field.options.packed = packed
    enum = msg.enum_type.add(name="Layout")
    enum.value.add(name="COLUMN_MAJOR", number=0)
    enum.value.add(name="ROW_MAJOR", number=1)
    msg.field.add(name="layout", number=4, label=label_opt, type=types.TYPE_ENUM,
                  type_name=f".{fdp.package}.MatrixData.Layout", default_value="COLUMN_MAJOR")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fdp.package}.MatrixData"))


def _encode_with_protobuf(matrix: np.ndarray, layout: str, packed: bool) -> bytes:
    cls = _matrix_data_class(packed)
    message = cls()
    message.rows, message.cols = matrix.shape
    order = "F" if layout == "column" else "C"
    message.packed_data.extend(matrix.ravel(order=order).astype(np.float32).tolist())
    if layout == "row":
        message.layout = 1
    return message.SerializeToString()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# ---------------------------------------------------------------- Pca itself


def test_pca_apply_shapes_and_validation() -> None:
    rng = np.random.default_rng(0)
    mean = rng.normal(size=6)
    proj = rng.normal(size=(6, 3))
    pca = Pca(mean=mean, projection=proj, source="test")
    assert (pca.input_dim, pca.output_dim) == (6, 3)
    assert pca.compatible_with_yt8m is False
    x = rng.normal(size=(4, 6))
    out = pca.apply(x)
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_allclose(out, (x - mean) @ proj, rtol=1e-5, atol=1e-5)
    single = pca.apply(x[0])
    assert single.shape == (1, 3)
    np.testing.assert_allclose(single[0], out[0], rtol=1e-6)
    q = pca.apply_and_quantize(x)
    assert q.dtype == np.uint8 and q.shape == (4, 3)
    np.testing.assert_array_equal(q, quantize(out))
    with pytest.raises(Yt8mError, match="test: PCA expects features of size 6"):
        pca.apply(np.zeros((2, 5)))
    with pytest.raises(Yt8mError, match="bad"):
        Pca(mean=np.zeros(5), projection=np.zeros((6, 3)), source="bad")
    with pytest.raises(ValueError):
        pca.mean[0] = 1.0  # parameters are read-only


# ---------------------------------------------------------------- YT8M npy


@pytest.mark.parametrize("flat_eigenvals", [False, True])
def test_load_yt8m_npy_matches_reference_formula(tmp_path: Path, flat_eigenvals: bool) -> None:
    rng = np.random.default_rng(1)
    arrays = _write_yt8m_npy(tmp_path / "pca", rng, dim=48, flat_eigenvals=flat_eigenvals)
    pca = load_yt8m_npy(tmp_path / "pca", n_components=20)
    assert (pca.input_dim, pca.output_dim) == (48, 20)
    assert pca.compatible_with_yt8m is False  # not the official 2048 -> 1024 shape
    x = rng.normal(size=(7, 48)) * 2.0
    expected = _yt8m_formula(x, arrays, 20)
    np.testing.assert_allclose(pca.apply(x), expected, rtol=1e-4, atol=1e-4)
    # quantized bytes agree with quantizing the float64 formula, up to one step at truncation edges
    diff = pca.apply_and_quantize(x).astype(int) - quantize(expected).astype(int)
    assert np.abs(diff).max() <= 1 and (diff == 0).mean() > 0.95


def test_official_shape_defaults_to_1024_and_compatible(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    arrays = _write_yt8m_npy(tmp_path, rng, dim=2048, dtype=np.float32)
    pca = load_yt8m_npy(tmp_path)
    assert (pca.input_dim, pca.output_dim) == (2048, 1024)
    assert pca.compatible_with_yt8m is True
    assert str(tmp_path) in pca.source
    x = rng.normal(size=(3, 2048)).astype(np.float32)
    np.testing.assert_allclose(pca.apply(x), _yt8m_formula(x, arrays, 1024), rtol=1e-3, atol=1e-3)
    assert load_yt8m_npy(tmp_path, compatible_with_yt8m=False).compatible_with_yt8m is False
    assert load_yt8m_npy(tmp_path, n_components=512).compatible_with_yt8m is False


def test_load_yt8m_npy_errors_name_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    _write_yt8m_npy(tmp_path, rng, dim=8)
    with pytest.raises(Yt8mError, match="cannot take 9 components"):
        load_yt8m_npy(tmp_path, n_components=9)
    np.save(tmp_path / "eigenvecs.npy", np.zeros((8, 7)))
    with pytest.raises(Yt8mError, match=r"eigenvecs\.npy.*\[8, 7\]"):
        load_yt8m_npy(tmp_path, n_components=4)
    np.save(tmp_path / "eigenvecs.npy", np.eye(8))
    np.save(tmp_path / "eigenvals.npy", np.ones(6))
    with pytest.raises(Yt8mError, match=r"eigenvals\.npy: has 6 eigenvalues"):
        load_yt8m_npy(tmp_path, n_components=4)
    np.save(tmp_path / "eigenvals.npy", np.ones((8, 1)))
    np.save(tmp_path / "mean.npy", np.zeros((8, 2)))
    with pytest.raises(Yt8mError, match=r"mean\.npy: expected the mean as a vector"):
        load_yt8m_npy(tmp_path, n_components=4)
    (tmp_path / "mean.npy").write_bytes(b"not numpy")
    with pytest.raises(Yt8mError, match=r"mean\.npy: not a readable \.npy"):
        load_yt8m_npy(tmp_path, n_components=4)
    (tmp_path / "mean.npy").unlink()
    with pytest.raises(Yt8mError, match=r"mean\.npy: file not found"):
        load_yt8m_npy(tmp_path, n_components=4)
    with pytest.raises(Yt8mError, match="not a folder"):
        load_yt8m_npy(tmp_path / "missing")


# ---------------------------------------------------------------- MediaPipe MatrixData


@pytest.mark.parametrize("layout", ["column", "row"])
@pytest.mark.parametrize("packed", [True, False])
def test_matrix_data_pair_matches_p_times_x_minus_mean(tmp_path: Path, layout: str, packed: bool) -> None:
    rng = np.random.default_rng(4)
    dim, out = 12, 5
    mean = rng.normal(size=(dim, 1)).astype(np.float32)
    matrix = rng.normal(size=(out, dim)).astype(np.float32)
    mean_pb, proj_pb = tmp_path / "mean.pb", tmp_path / "proj.pb"
    mean_pb.write_bytes(_encode_with_protobuf(mean, layout, packed))
    proj_pb.write_bytes(_encode_with_protobuf(matrix, layout, packed))
    np.testing.assert_array_equal(read_matrix_data(proj_pb), matrix)
    pca = load_matrix_data_pair(mean_pb, proj_pb)
    assert (pca.input_dim, pca.output_dim) == (dim, out)
    x = rng.normal(size=(6, dim))
    expected = (matrix.astype(np.float64) @ (x.T - mean.astype(np.float64))).T
    np.testing.assert_allclose(pca.apply(x), expected, rtol=1e-5, atol=1e-5)
    same = load_pca(f"{mean_pb},{proj_pb}")
    np.testing.assert_array_equal(same.projection, pca.projection)


def test_matrix_data_hand_encoded_with_unknown_fields_and_split_payload(tmp_path: Path) -> None:
    """Layout first, an unknown field, two packed chunks and one unpacked float: all valid protobuf."""
    values = np.arange(6, dtype=np.float32) + 0.5  # 2 x 3 row-major
    data = b"".join(
        [
            _varint(4 << 3 | 0), _varint(1),  # layout = ROW_MAJOR
            _varint(9 << 3 | 2), _varint(3), b"abc",  # unknown length-delimited field
            _varint(1 << 3 | 0), _varint(2),  # rows
            _varint(3 << 3 | 2), _varint(12), struct.pack("<3f", *values[:3]),
            _varint(2 << 3 | 0), _varint(3),  # cols
            _varint(3 << 3 | 2), _varint(8), struct.pack("<2f", *values[3:5]),
            _varint(3 << 3 | 5), struct.pack("<f", values[5]),  # unpacked element
        ]
    )
    path = tmp_path / "m.pb"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_matrix_data(path), values.reshape(2, 3))


def test_save_matrix_data_is_readable_by_protobuf(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    matrix = rng.normal(size=(4, 7)).astype(np.float32)
    for layout in ("column", "row"):
        path = save_matrix_data(tmp_path / f"{layout}.pb", matrix, layout=layout)
        message = _matrix_data_class(packed=True).FromString(path.read_bytes())
        assert (message.rows, message.cols) == (4, 7)
        assert message.layout == (0 if layout == "column" else 1)
        order = "F" if layout == "column" else "C"
        np.testing.assert_array_equal(np.array(message.packed_data, dtype=np.float32),
                                      matrix.ravel(order=order))
        np.testing.assert_array_equal(read_matrix_data(path), matrix)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["column.pb", "row.pb"]  # no temp leftovers


def test_matrix_data_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    mean_pb, proj_pb = tmp_path / "mean.pb", tmp_path / "proj.pb"
    mean_pb.write_bytes(_encode_with_protobuf(rng.normal(size=(8, 1)), "column", True))
    proj_pb.write_bytes(_encode_with_protobuf(rng.normal(size=(3, 8)), "column", True))
    with pytest.raises(Yt8mError, match="give the mean file first"):
        load_matrix_data_pair(proj_pb, mean_pb)
    wrong = tmp_path / "wrong.pb"
    wrong.write_bytes(_encode_with_protobuf(rng.normal(size=(3, 9)), "column", True))
    with pytest.raises(Yt8mError, match=r"wrong\.pb: projection has shape \[3, 9\]"):
        load_matrix_data_pair(mean_pb, wrong)
    truncated = tmp_path / "truncated.pb"
    truncated.write_bytes(proj_pb.read_bytes()[:-5])
    with pytest.raises(Yt8mError, match=r"truncated\.pb: not a valid MatrixData"):
        read_matrix_data(truncated)
    bad_count = tmp_path / "count.pb"
    bad_count.write_bytes(_varint(1 << 3) + _varint(2) + _varint(2 << 3) + _varint(2)
                          + _varint(3 << 3 | 2) + _varint(4) + struct.pack("<f", 1.0))
    with pytest.raises(Yt8mError, match=r"count\.pb: .*needs 4 floats, found 1"):
        read_matrix_data(bad_count)
    with pytest.raises(Yt8mError, match=r"nope\.pb: cannot read"):
        read_matrix_data(tmp_path / "nope.pb")


# ---------------------------------------------------------------- VGGish npz


def test_vggish_npz_matches_e_times_x_minus_mean(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(128, 128))
    means = rng.normal(size=128)
    path = tmp_path / "vggish_pca_params.npz"
    np.savez(path, pca_eigen_vectors=vectors, pca_means=means)
    pca = load_vggish_npz(path)
    assert (pca.input_dim, pca.output_dim) == (128, 128)
    assert pca.compatible_with_yt8m is False
    x = rng.normal(size=(5, 128))
    expected = (vectors @ (x.T - means.reshape(-1, 1))).T
    np.testing.assert_allclose(pca.apply(x), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(load_pca(path).projection, pca.projection)
    bad = tmp_path / "bad.npz"
    np.savez(bad, pca_eigen_vectors=vectors)
    with pytest.raises(Yt8mError, match=r"bad\.npz: missing key\(s\) \['pca_means'\]"):
        load_vggish_npz(bad)


# ---------------------------------------------------------------- load_pca dispatch and tgz safety


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_load_pca_from_tgz_equals_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    arrays = _write_yt8m_npy(tmp_path / "yt8m_pca", rng, dim=16)
    archive = tmp_path / "yt8m_pca.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "yt8m_pca", arcname="yt8m_pca")
    from_tgz = load_pca(archive, n_components=10)
    from_dir = load_pca(tmp_path / "yt8m_pca", n_components=10)
    np.testing.assert_array_equal(from_tgz.projection, from_dir.projection)
    np.testing.assert_array_equal(from_tgz.mean, from_dir.mean)
    assert str(archive) in from_tgz.source
    x = rng.normal(size=(3, 16))
    np.testing.assert_allclose(from_tgz.apply(x), _yt8m_formula(x, arrays, 10), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("evil_name", ["../evil.npy", "yt8m_pca/../../evil.npy", "/tmp/yt8m_evil_abs.npy"])
def test_tgz_with_unsafe_member_is_rejected(tmp_path: Path, evil_name: str) -> None:
    rng = np.random.default_rng(9)
    archive = tmp_path / "work" / "evil.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for name, array in [("mean.npy", rng.normal(size=(4, 1))), ("eigenvals.npy", np.ones((4, 1))),
                            ("eigenvecs.npy", np.eye(4))]:
            _add_bytes(tar, f"yt8m_pca/{name}", _npy_bytes(array))
        _add_bytes(tar, evil_name, b"gotcha")
    with pytest.raises(Yt8mError, match=r"evil\.tgz: refusing archive member"):
        load_pca(archive, n_components=2)
    assert not (tmp_path / "evil.npy").exists()
    assert not (tmp_path / "work" / "evil.npy").exists()


def test_tgz_with_link_is_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "links.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("yt8m_pca/mean.npy")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(Yt8mError, match=r"links\.tgz: .*link"):
        load_pca(archive)


def test_load_pca_errors(tmp_path: Path) -> None:
    with pytest.raises(Yt8mError, match="not found"):
        load_pca(tmp_path / "missing.npz")
    single = tmp_path / "mean.pb"
    single.write_bytes(b"")
    with pytest.raises(Yt8mError, match=r"mean\.pb: a MatrixData PCA needs two files"):
        load_pca(single)
    other = tmp_path / "pca.txt"
    other.write_text("x")
    with pytest.raises(Yt8mError, match=r"pca\.txt: unrecognized PCA file"):
        load_pca(other)
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"not a tar")
    with pytest.raises(Yt8mError, match=r"garbage\.tgz: not a readable tar"):
        load_pca(garbage)
    with pytest.raises(Yt8mError, match=r"a\.pb: cannot read"):
        load_pca(f"{tmp_path / 'a.pb'},{tmp_path / 'b.pb'}")


# ---------------------------------------------------------------- fitting


def _correlated_features(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Samples of one fixed correlated distribution (mixing and offset depend only on `dim`)."""
    fixed = np.random.default_rng(1000 + dim)
    mixing = fixed.normal(size=(dim, dim))
    offset = fixed.normal(size=dim) * 5.0
    latent = rng.normal(size=(n, dim)) * np.linspace(3.0, 0.2, dim)
    return latent @ mixing + offset


def test_fit_whitened_output_is_decorrelated_with_unit_variance() -> None:
    rng = np.random.default_rng(10)
    train = _correlated_features(rng, 4000, 16)
    assert np.abs(np.corrcoef(train.T)[np.triu_indices(16, 1)]).max() > 0.3  # really correlated
    fitted = fit_pca(train, n_components=8, whiten=True)
    # eigenvalues equal the top eigenvalues of the sample covariance, computed independently
    reference = np.linalg.eigvalsh(np.cov(train.T))[::-1][:8]
    np.testing.assert_allclose(fitted.eigenvalues, reference, rtol=1e-8)
    pca = fitted.to_pca()
    assert pca.compatible_with_yt8m is False and (pca.input_dim, pca.output_dim) == (16, 8)
    out = pca.apply(train).astype(np.float64)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-3)
    expected_var = reference / (reference + EPS)
    np.testing.assert_allclose(np.cov(out.T), np.diag(expected_var), atol=2e-3)
    held_out = pca.apply(_correlated_features(np.random.default_rng(99), 4000, 16))
    np.testing.assert_allclose(np.cov(held_out.T), np.eye(8), atol=0.15)
    assert PCA_EPSILON == EPS


def test_fit_without_whitening_keeps_variances() -> None:
    rng = np.random.default_rng(11)
    train = _correlated_features(rng, 3000, 10)
    fitted = fit_pca(train, n_components=4, whiten=False)
    out = fitted.to_pca().apply(train).astype(np.float64)
    np.testing.assert_allclose(out.var(axis=0, ddof=1), fitted.eigenvalues, rtol=1e-4)
    np.testing.assert_allclose(np.cov(out.T) - np.diag(np.diag(np.cov(out.T))), 0.0,
                               atol=1e-4 * fitted.eigenvalues.max())


@pytest.mark.parametrize("whiten", [True, False])
def test_fit_save_load_round_trip(tmp_path: Path, whiten: bool) -> None:
    rng = np.random.default_rng(12)
    train = _correlated_features(rng, 500, 12)
    fitted = fit_pca(train, n_components=5, whiten=whiten)
    folder = save_yt8m_npy(tmp_path / "fitted", fitted)
    assert np.load(folder / "mean.npy").shape == (12, 1)
    assert np.load(folder / "eigenvals.npy").shape == (5, 1)
    assert np.load(folder / "eigenvecs.npy").shape == (5, 12)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    direct = fitted.to_pca()
    x = rng.normal(size=(9, 12)) * 3
    for loaded in (load_yt8m_npy(folder), load_pca(folder)):
        assert loaded.compatible_with_yt8m is False
        assert loaded.output_dim == 5
        np.testing.assert_allclose(loaded.apply(x), direct.apply(x), rtol=1e-6, atol=1e-6)
    # the saved npy files follow the official formula when whitened (checked with numpy here)
    arrays = {n: np.load(folder / f"{n}.npy") for n in ("mean", "eigenvals", "eigenvecs")}
    if whiten:
        np.testing.assert_allclose(direct.apply(x), _yt8m_formula(x, arrays, 5), rtol=1e-4, atol=1e-4)
    # the same PCA exported as a MediaPipe MatrixData pair
    save_matrix_data(tmp_path / "m.pb", direct.mean.reshape(-1, 1))
    save_matrix_data(tmp_path / "p.pb", direct.projection.T)
    exported = load_pca(f"{tmp_path / 'm.pb'},{tmp_path / 'p.pb'}")
    np.testing.assert_allclose(exported.apply(x), direct.apply(x), rtol=1e-6, atol=1e-6)


def test_fit_errors() -> None:
    rng = np.random.default_rng(13)
    with pytest.raises(Yt8mError, match="at most 5"):
        fit_pca(rng.normal(size=(5, 16)), n_components=6)
    with pytest.raises(Yt8mError, match="at most 4"):
        fit_pca(rng.normal(size=(50, 4)), n_components=5)
    with pytest.raises(Yt8mError, match="2-D"):
        fit_pca(rng.normal(size=16), n_components=1)
    bad = rng.normal(size=(20, 4))
    bad[3, 1] = np.nan
    with pytest.raises(Yt8mError, match="NaN"):
        fit_pca(bad, n_components=2)


def test_quantized_pca_output_round_trips(tmp_path: Path) -> None:
    """The path the extractor takes: whiten, quantize, and dequantize within one step of the float."""
    rng = np.random.default_rng(14)
    fitted = fit_pca(_correlated_features(rng, 1000, 8), n_components=8)
    pca = fitted.to_pca()
    x = _correlated_features(rng, 50, 8)
    floats = np.clip(pca.apply(x), -2, 2)
    restored = dequantize(pca.apply_and_quantize(x))
    assert np.abs(restored - floats).max() <= 4 / 255


def test_fitting_is_loaded_only_when_asked_for() -> None:
    """`import yt8m.pca` leaves scikit-learn out; `yt8m.pca.fit_pca` brings it in."""
    code = (
        "import sys, yt8m.pca as p; assert 'sklearn' not in sys.modules, 'loaded early'; "
        "from yt8m.pca import fit_pca; assert fit_pca is p.fit.fit_pca; "
        "assert 'sklearn' in sys.modules; print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        getattr(importlib.import_module("yt8m.pca"), "nothing")
