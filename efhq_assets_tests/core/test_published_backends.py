"""Published networks without their weights, not circularly.

The fixtures in ``efhq_assets_tests/fixtures/published/`` list each published checkpoint's tensor
names and shapes (read from the upstream code, see their headers) and each insightface ONNX
model's signature.  Random-weight files are built from those lists (not from our modules), saved
and loaded with ``strict=True``: a wrong module name or shape fails.  Then output shapes, the
angle conversion on known rotation matrices, and the errors for missing / corrupt files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from efhq_assets.core.models import published_angles as pa
from efhq_assets.core.models import registry
from efhq_assets.core.pose.rotations import euler_to_matrix

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "published"


def read_fixture(name: str) -> list[tuple[str, tuple[int, ...] | None]]:
    rows = []
    for line in (FIX / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split()[:2]
        rows.append((key, None if shape == "?" else (() if shape == "-" else tuple(int(s) for s in shape.split(",")))))
    return rows


def state_from_fixture(name: str, seed: int = 0, unknown_shape=(1,), skip_large: set[str] = frozenset()) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in read_fixture(name):
        if shape is None or key.split(".")[-1] in skip_large or key.removeprefix("module.") in skip_large:
            sd[key] = torch.zeros(unknown_shape)
        elif shape == ():
            sd[key] = torch.tensor(0, dtype=torch.long)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.05
    return sd


def _crops(n: int, size: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Angle conversion on known rotation matrices
# --------------------------------------------------------------------------------------------
def test_sixdrepnet_frame_single_axes():
    # 300W-LP yaw > 0 = nose toward the image's left -> project yaw < 0; pitch, roll keep sign.
    assert np.allclose(pa.w300lp_angles_to_project(0.0, 30.0, 0.0).numpy(), [-30, 0, 0], atol=1e-9)
    assert np.allclose(pa.w300lp_angles_to_project(20.0, 0.0, 0.0).numpy(), [0, 20, 0], atol=1e-9)
    assert np.allclose(pa.w300lp_angles_to_project(0.0, 0.0, 15.0).numpy(), [0, 0, 15], atol=1e-9)


def test_sixdrepnet_matrix_is_transpose_of_project():
    g = torch.Generator().manual_seed(1)
    ang = (torch.rand(200, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([160.0, 120.0, 120.0], dtype=torch.float64)
    R = euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
    # A 6DRepNet output equal to R^T (its get_R frame) reads back as the project angles.
    out = pa.project_angles(pa.sixdrepnet_to_project(R.transpose(-1, -2)))
    assert torch.allclose(out, ang, atol=1e-8)
    # and the 6D -> Gram-Schmidt path reproduces a rotation from its first two columns
    six = torch.cat([R[:, :, 0], R[:, :, 1]], 1)
    assert torch.allclose(pa.rot6d_to_matrix(six), R, atol=1e-12)


def test_nose_direction_agrees_with_project_convention():
    # project yaw = +30: the nose (head +z) must point toward camera +x (image right)
    R = pa.sixdrepnet_to_project(pa.w300lp_angles_to_matrix(0.0, -30.0, 0.0))
    nose = R @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    assert nose[0] > 0.4


def test_synergynet_published_angles_round_trip():
    g = torch.Generator().manual_seed(2)
    ang = (torch.rand(300, 3, generator=g, dtype=torch.float64) - 0.5) * torch.tensor([120.0, 80.0, 80.0], dtype=torch.float64)
    R = euler_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2])
    syn = pa.synergynet_matrix_to_angles(R)  # what SynergyNet / EFHQ would write
    # single-axis facts: synergy yaw is the opposite sign, pitch/roll the same
    assert np.allclose(pa.synergynet_matrix_to_angles(euler_to_matrix(30.0, 0.0, 0.0)).numpy(), [-30, 0, 0], atol=1e-9)
    assert np.allclose(pa.synergynet_matrix_to_angles(euler_to_matrix(0.0, 20.0, 0.0)).numpy(), [0, 20, 0], atol=1e-9)
    assert np.allclose(pa.synergynet_matrix_to_angles(euler_to_matrix(0.0, 0.0, 15.0)).numpy(), [0, 0, 15], atol=1e-9)
    back = pa.synergynet_angles_to_project(syn[:, 0], syn[:, 1], syn[:, 2])
    assert not torch.isnan(back).any()
    assert torch.allclose(back, ang, atol=1e-6)
    # a plain sign flip of yaw is NOT the conversion for combined rotations
    naive = torch.stack([-syn[:, 0], syn[:, 1], syn[:, 2]], 1)
    assert (naive - ang).abs().max() > 1.0


def test_insightface_pose_frame_on_synthetic_landmarks():
    """Project-convention pose -> image landmarks of insightface's mean shape -> our fit -> same pose."""
    pytest.importorskip("insightface")
    from insightface.data import get_object

    from efhq_assets.core.models.insightface_backends import Insightface3D68

    mean = np.asarray(get_object("meanshape_68.pkl"), np.float64)  # x right, y down, z toward viewer
    head = mean * np.array([1.0, -1.0, 1.0])  # project head frame: y up
    est = Insightface3D68.__new__(Insightface3D68)
    est.model = type("M", (), {"mean_lmk": mean})()
    for yaw, pitch, roll in [(35.0, 0.0, 0.0), (0.0, 25.0, 0.0), (0.0, 0.0, 20.0), (40.0, -20.0, 15.0), (-60.0, 10.0, -25.0)]:
        R = euler_to_matrix(yaw, pitch, roll).numpy()
        cam = head @ R.T * 80.0
        img = np.stack([cam[:, 0] + 200, -cam[:, 1] + 150, cam[:, 2]], 1)  # u right, v down
        got = est.pose_from_landmarks(img)
        assert np.allclose(got, [yaw, pitch, roll], atol=1e-3), (yaw, pitch, roll, got)


# --------------------------------------------------------------------------------------------
# Strict loading of fixture-built checkpoints
# --------------------------------------------------------------------------------------------
def test_sixdrepnet_deploy_checkpoint_strict(tmp_path):
    from efhq_assets.core.models.sixdrepnet import SixDRepNetEstimator

    f = tmp_path / "6DRepNet_300W_LP_AFLW2000.pth"
    torch.save(state_from_fixture("sixdrepnet_b1g2_deploy.txt"), f)
    est = SixDRepNetEstimator("6drepnet", weights=f, device="cpu")
    out = est.estimate_crops(_crops(3))
    assert out.shape == (3, 3) and out.dtype == np.float32 and np.isfinite(out).all()
    R = est.rotations(_crops(2))
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(2, 3, 3), atol=1e-5)
    # estimate() from an image + boxes
    img = np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert est.estimate(img, [np.array([40, 30, 140, 150.0]), np.array([200, 100, 300, 230.0])]).shape == (2, 3)


def test_sixdrepnet_wrong_key_or_shape_fails(tmp_path):
    from efhq_assets.core.models.sixdrepnet import build_sixdrepnet

    sd = state_from_fixture("sixdrepnet_b1g2_deploy.txt")
    bad = dict(sd)
    bad["layer3.0.rbr_reparam.weight"] = bad["layer3.0.rbr_reparam.weight"][:, :1]  # groups mismatch
    with pytest.raises(RuntimeError, match="size mismatch"):
        build_sixdrepnet(bad)
    renamed = {k.replace("layer0.", "stage0."): v for k, v in sd.items()}
    with pytest.raises(RuntimeError, match="Missing key"):
        build_sixdrepnet(renamed)


def test_sixdrepnet_train_checkpoint_fuses_exactly():
    from efhq_assets.core.models.sixdrepnet import SixDRepNet, build_sixdrepnet

    sd = {"module." + k: v for k, v in state_from_fixture("sixdrepnet_b1g2_train.txt", seed=4).items()}
    ref = SixDRepNet(deploy=False)
    ref.load_state_dict({k[7:]: v for k, v in sd.items()}, strict=True)
    ref.eval()
    fused = build_sixdrepnet({"model_state_dict": sd})
    assert not any(".rbr_dense." in k for k in fused.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = ref.features6d(x), fused.features6d(x)
    assert torch.allclose(a, b, rtol=1e-3, atol=1e-4 * float(a.abs().max()))


def test_sixdrepnet360_checkpoint_strict(tmp_path):
    from efhq_assets.core.models.sixdrepnet import SixDRepNetEstimator

    f = tmp_path / "6DRepNet360_Full-Rotation_300W_LP+Panoptic.pth"
    torch.save({"model_state_dict": state_from_fixture("sixdrepnet360_resnet50.txt")}, f)
    est = SixDRepNetEstimator("6drepnet360", weights=f, device="cpu")
    out = est.estimate_crops(list(_crops(2, size=120)))
    assert out.shape == (2, 3) and np.isfinite(out).all()


def test_synergynet_checkpoint_strict_and_outputs(tmp_path):
    from efhq_assets.core.models.synergynet import SynergyNetEstimator, build_synergynet

    sd = state_from_fixture("synergynet_best.txt", skip_large={"u", "w_shp", "w_exp"})
    sd["module.param_std"] = torch.rand(62) * 0.1 + 0.01
    f = tmp_path / "best.pth.tar"
    torch.save({"epoch": 80, "state_dict": sd}, f)
    est = SynergyNetEstimator(weights=f, device="cpu")
    img = np.random.default_rng(5).integers(0, 256, (200, 260, 3), dtype=np.uint8)
    boxes = [np.array([60, 40, 160, 150.0]), np.array([-20, 100, 70, 230.0])]
    pose = est.estimate(img, boxes)
    assert pose.shape == (2, 3) and pose.dtype == np.float32 and np.isfinite(pose).all()
    assert est.landmarks68(img, boxes).shape == (2, 68, 3)
    # the camera part of the output -> project angles is the identity frame mapping
    bad = dict(sd)
    bad["module.I2P.backbone.classifier_ori.1.weight"] = torch.zeros(12, 1000)
    with pytest.raises(RuntimeError, match="size mismatch"):
        build_synergynet({"state_dict": bad})
    extra = dict(sd)
    extra["module.something_else"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match="unexpected keys"):
        build_synergynet({"state_dict": extra})


def test_hyperiqa_checkpoint_strict_and_deterministic(tmp_path):
    from efhq_assets.core.models.hyperiqa import HyperIQAScorer, crop_offsets

    sd = {k: v for k, v in state_from_fixture("hyperiqa_koniq.txt").items() if not k.endswith("num_batches_tracked")}
    f = tmp_path / "koniq_pretrained.pkl"
    torch.save(sd, f)  # a pre-0.4.1-style file without num_batches_tracked still loads strictly
    s = HyperIQAScorer(weights=f, device="cpu", crops="center")
    img = np.random.default_rng(6).integers(0, 256, (150, 100, 3), dtype=np.uint8)
    a, b = s.score(img), s.score(img)
    assert a.shape == (1,) and np.isfinite(a).all() and a[0] == b[0]
    assert len(crop_offsets("grid")) == 10 and len(set(crop_offsets("grid"))) == 10
    assert crop_offsets("grid")[-1] == (512 - 224, 384 - 224)
    sd["fc1w_conv.weight"] = sd["fc1w_conv.weight"][:256]
    torch.save(sd, f)
    with pytest.raises(RuntimeError, match="size mismatch"):
        HyperIQAScorer(weights=f, device="cpu", verify=False)


# --------------------------------------------------------------------------------------------
# insightface: random-weight ONNX files with the published signatures
# --------------------------------------------------------------------------------------------
def _onnx_signatures():
    sig: dict[str, dict] = {}
    for line in (FIX / "insightface_onnx.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        fname, io, idx, shape = line.split()[:4]
        sig.setdefault(fname, {"input": [], "output": []})[io].append(tuple(None if s == "?" else int(s) for s in shape.split(",")))
    return sig


class _Scrfd(torch.nn.Module):
    def __init__(self, outs):
        super().__init__()
        self.outs = outs
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(3, 2 * o[1], 1) for o in outs)
        for c, o in zip(self.convs, outs):
            torch.nn.init.zeros_(c.weight)
            torch.nn.init.constant_(c.bias, 2.0 if o[1] == 1 else 1.0)

    def forward(self, x):
        res = []
        for i, (conv, o) in enumerate(zip(self.convs, self.outs)):
            s = (8, 16, 32)[i % 3]
            y = conv(torch.nn.functional.avg_pool2d(x, s))
            y = y.permute(0, 2, 3, 1).reshape(-1, o[1])
            res.append(torch.sigmoid(y) if o[1] == 1 else y)
        return tuple(res)


class _Head(torch.nn.Module):
    def __init__(self, n_out):
        super().__init__()
        self.fc = torch.nn.Linear(3, n_out)

    def forward(self, x):
        return torch.tanh(self.fc(x.mean((2, 3))))


def _export(model, shape, path, dynamic_hw=False, n_out=1):
    names = [f"out{i}" for i in range(n_out)]
    dyn = {"input.1": {2: "h", 3: "w"}} if dynamic_hw else {"input.1": {0: "n"}, names[0]: {0: "n"}}
    torch.onnx.export(model.eval(), torch.zeros(shape), str(path), input_names=["input.1"], output_names=names,
                      dynamic_axes=dyn, dynamo=False, opset_version=13)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    pytest.importorskip("insightface")
    pytest.importorskip("onnxruntime")
    d = tmp_path_factory.mktemp("ifmodels")
    sig = _onnx_signatures()
    s = sig["scrfd_10g_bnkps.onnx"]
    assert len(s["output"]) == 9 and s["input"][0][:2] == (1, 3)
    _export(_Scrfd(s["output"]), (1, 3, 64, 64), d / "scrfd_10g_bnkps.onnx", dynamic_hw=True, n_out=9)
    lm = sig["1k3d68.onnx"]
    _export(_Head(lm["output"][0][1]), lm["input"][0], d / "1k3d68.onnx")
    af = sig["w600k_r50.onnx"]
    _export(_Head(af["output"][0][1]), af["input"][0], d / "w600k_r50.onnx")
    return d


def test_insightface_backends_route_and_run(onnx_dir, monkeypatch):
    from efhq_assets.core.models.insightface_backends import ArcFaceEmbedder, Insightface3D68, ScrfdDetector

    monkeypatch.setenv("EFHQ_MODEL_DIR", str(onnx_dir))
    registry.register_builtin_backends()
    img = np.random.default_rng(7).integers(0, 256, (128, 160, 3), dtype=np.uint8)
    det = registry.create("detector", "scrfd_10g_bnkps", det_size=(128, 128))
    assert isinstance(det, ScrfdDetector)
    faces = det.detect([img])[0]
    assert faces and faces[0].box.shape == (4,) and faces[0].lmk5.shape == (5, 2)
    lm = registry.create("landmarker", "insightface_1k3d68")
    assert isinstance(lm, Insightface3D68)
    pts = lm.landmarks(img, [np.array([30, 20, 110, 120.0])])
    assert pts[0].shape == (68, 3)
    pose = lm.estimate(img, [np.array([30, 20, 110, 120.0])])
    assert pose.shape == (1, 3) and np.isfinite(pose).all()
    emb = registry.create("embedder", "arcface_w600k_r50")
    assert isinstance(emb, ArcFaceEmbedder)
    lmk5 = np.array([[50, 50], [90, 50], [70, 70], [55, 95], [85, 95]], np.float32)
    e = emb.embed(img, [np.array([30, 20, 110, 120.0])], [lmk5])
    assert e.shape == (1, 512) and math.isclose(float(np.linalg.norm(e[0])), 1.0, rel_tol=1e-5)
    assert {"6drepnet", "6drepnet360", "synergynet", "insightface_1k3d68"} <= set(registry.available("pose"))
    assert "hyperiqa_koniq" in registry.available("quality")


def test_wrong_signature_is_refused(onnx_dir, tmp_path):
    from efhq_assets.core.models.insightface_backends import ScrfdDetector

    with pytest.raises(ValueError, match="not an SCRFD"):
        ScrfdDetector(path=onnx_dir / "w600k_r50.onnx", verify=False)


# --------------------------------------------------------------------------------------------
# Missing files and checksum errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,name", [
    ("pose", "6drepnet"), ("pose", "6drepnet360"), ("pose", "synergynet"), ("quality", "hyperiqa_koniq"),
    ("detector", "scrfd_10g_bnkps"), ("landmarker", "insightface_1k3d68"), ("embedder", "arcface_w600k_r50"),
])
def test_missing_weights_clear_error(kind, name, tmp_path, monkeypatch):
    if kind in ("detector", "landmarker", "embedder"):
        pytest.importorskip("insightface")
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path))
    registry.register_builtin_backends()
    with pytest.raises(registry.MissingWeightsError) as exc:
        registry.create(kind, name)
    msg = str(exc.value)
    assert registry.get_spec(name).file in msg and str(tmp_path) in msg


def test_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    from dataclasses import replace

    from efhq_assets.core.models.sixdrepnet import SixDRepNetEstimator

    f = tmp_path / "6DRepNet_300W_LP_AFLW2000.pth"
    torch.save(state_from_fixture("sixdrepnet_b1g2_deploy.txt"), f)
    spec = registry.get_spec("6drepnet")
    pinned = replace(spec, files=(registry.WeightFile(spec.file, "0" * 64),))
    monkeypatch.setitem(registry.MANIFEST, "6drepnet", pinned)
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path))
    with pytest.raises(registry.ChecksumError, match="checksum mismatch"):
        SixDRepNetEstimator("6drepnet")
    with pytest.raises(registry.ChecksumError):
        SixDRepNetEstimator("6drepnet", weights=f)
    SixDRepNetEstimator("6drepnet", weights=f, verify=False, device="cpu")  # explicit opt-out still loads
