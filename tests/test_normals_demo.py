import math

import pytest
import torch

from euclidnet.data.shapes import (
    SHAPE_KINDS,
    normals_dataset,
    random_shape,
    sample_deformed_sphere,
    sample_ellipsoid,
    sample_superquadric,
    sample_torus,
)
from euclidnet.demos import normals as demo
from euclidnet.graph.data import AtomicGraph
from euclidnet.testing import assert_equivariant


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_ellipsoid_points_and_normals():
    a = torch.tensor([1.1, 0.7, 0.4], dtype=torch.float64)
    p, n = sample_ellipsoid(300, a.tolist(), _gen())
    torch.testing.assert_close(((p / a) ** 2).sum(1), torch.ones(300, dtype=torch.float64))
    want = p / a**2
    torch.testing.assert_close(n, want / want.norm(dim=1, keepdim=True))


def test_superquadric_points_and_normals():
    a, e1, e2 = torch.tensor([1.0, 0.8, 0.6], dtype=torch.float64), 0.7, 1.2
    p, n = sample_superquadric(200, a.tolist(), (e1, e2), _gen(1))
    q = (p / a).abs()
    f = (q[:, 0] ** (2 / e2) + q[:, 1] ** (2 / e2)) ** (e2 / e1) + q[:, 2] ** (2 / e1)
    torch.testing.assert_close(f, torch.ones_like(f))
    # analytic gradient of the inside-outside function
    s = torch.sign(p) / a
    g_xy = (q[:, 0] ** (2 / e2) + q[:, 1] ** (2 / e2)) ** (e2 / e1 - 1)
    grad = torch.stack(
        [g_xy * q[:, 0] ** (2 / e2 - 1) * s[:, 0], g_xy * q[:, 1] ** (2 / e2 - 1) * s[:, 1],
         q[:, 2] ** (2 / e1 - 1) * s[:, 2]], dim=1,
    )
    torch.testing.assert_close(n, grad / grad.norm(dim=1, keepdim=True))


def test_torus_points_normals_and_area_uniformity():
    R, r = 0.7, 0.3
    p, n = sample_torus(4000, R, r, _gen(2))
    ring = torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2)
    torch.testing.assert_close((ring - R) ** 2 + p[:, 2] ** 2, torch.full((4000,), r * r, dtype=torch.float64))
    centre = torch.stack([p[:, 0] / ring * R, p[:, 1] / ring * R, torch.zeros_like(ring)], dim=1)
    torch.testing.assert_close(n, (p - centre) / r)
    # the outer half (cos v > 0) carries the area fraction (pi R + 2 r) / (2 pi R)
    outer = float((ring > R).double().mean())
    assert abs(outer - (math.pi * R + 2 * r) / (2 * math.pi * R)) < 0.03


def test_sphere_sampling_is_area_uniform():
    # Archimedes: z is uniform on [-1, 1] for area-uniform points on the unit sphere
    p, _ = sample_deformed_sphere(4000, amplitudes=[0.0], directions=[[0.0, 0.0, 1.0]], kappas=[1.0],
                                  generator=_gen(3))
    torch.testing.assert_close(p.norm(dim=1), torch.ones(4000, dtype=torch.float64))
    hist = torch.histc(p[:, 2], bins=4, min=-1, max=1) / 4000
    assert float((hist - 0.25).abs().max()) < 0.03


def test_deformed_sphere_normals_orthogonal_to_surface():
    amp, dirs, kap = [0.2, -0.15], [[0.0, 0.6, 0.8], [1.0, 0.0, 0.0]], [3.0, 5.0]
    p, n = sample_deformed_sphere(100, amp, dirs, kap, _gen(4))
    d = torch.tensor(dirs, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)

    def surf(u):
        u = u / u.norm(dim=-1, keepdim=True)
        rho = 1 + (torch.tensor(amp, dtype=torch.float64) * torch.exp(torch.tensor(kap, dtype=torch.float64)
                                                                       * (u @ d.T - 1))).sum(-1)
        return rho[..., None] * u

    u = p / p.norm(dim=1, keepdim=True)
    torch.testing.assert_close(surf(u), p)
    h = 1e-6
    for t in (torch.linalg.cross(u, torch.tensor([0.3, 0.4, 0.5], dtype=torch.float64).expand_as(u)),):
        t = t / t.norm(dim=1, keepdim=True)
        t2 = torch.linalg.cross(u, t)
        for tangent_dir in (t, t2):
            tangent = (surf(u + h * tangent_dir) - surf(u - h * tangent_dir)) / (2 * h)
            cos = (tangent * n).sum(1) / tangent.norm(dim=1)
            assert float(cos.abs().max()) < 1e-6


def test_dataset_and_errors():
    gs = normals_dataset(4, 50, seed=5)
    assert len(gs) == 4 and all(g.num_nodes == 50 and g.labels["normals"].shape == (50, 3) for g in gs)
    torch.testing.assert_close(gs[0].node_features.mean(0), torch.zeros(3), atol=1e-12, rtol=0)
    again = normals_dataset(4, 50, seed=5)
    torch.testing.assert_close(gs[2].pos, again[2].pos)
    kinds = {random_shape(10, _gen(k))[2] for k in range(30)}
    assert kinds == set(SHAPE_KINDS)
    with pytest.raises(ValueError, match="minor < major"):
        sample_torus(10, 0.3, 0.5)
    with pytest.raises(ValueError, match="exponents"):
        sample_superquadric(10, eps=(0.1, 1.0))
    with pytest.raises(ValueError, match="amplitudes"):
        sample_deformed_sphere(10, amplitudes=[0.4, 0.3], directions=[[1, 0, 0], [0, 1, 0]], kappas=[1, 1])
    with pytest.raises(ValueError, match="kinds"):
        random_shape(10, _gen(), kinds=["cube"])
    with pytest.raises(ValueError, match="number of points"):
        sample_ellipsoid(0)


def test_tiny_demo_wrapped_is_orientation_independent_plain_is_not():
    models = {}
    res = demo.run(
        num_points=64, num_train=8, num_test=4, epochs=10, batch_size=2, lr=1e-2, backbone="pointnet",
        frames="pca", r_max=0.8, hidden="4x0e + 2x1o + 1x2e", width=16, seed=0, verbose=False,
        kinds=("ellipsoid",), models_out=models,
    )
    (wrapped_name, wrapped), (plain_name, plain) = res.items()
    assert wrapped_name.startswith("TensorFrames") and plain_name.startswith("plain")
    # the wrapped model learned something (random directions give 0.5) ...
    assert wrapped["canonical"] < 0.25
    # ... and its error does not depend on the orientation (float32 round-off only)
    assert abs(wrapped["rotated"] - wrapped["canonical"]) < 1e-4
    assert abs(wrapped["rotoreflected"] - wrapped["canonical"]) < 1e-4
    # the plain backbone, trained in one orientation, degrades clearly when the test set is rotated
    degradation = plain["rotated"] - plain["canonical"]
    assert degradation > 0.05
    assert plain["rotoreflected"] - plain["canonical"] > 0.05
    assert abs(wrapped["rotated"] - wrapped["canonical"]) < 0.01 * degradation

    # direct equivariance check of the trained model's normals, in float64
    model = models[wrapped_name].double()
    cloud = normals_dataset(1, 64, seed=123, kinds=("ellipsoid",), dtype=torch.float64)[0]

    def fn(pos, feat):
        return model(AtomicGraph(pos=pos, node_features=feat))["normal"]

    assert_equivariant(fn, ["cartesian_points", "1o"], ["1o"], args_in=(cloud.pos, cloud.node_features),
                       do_permutation=True, node_dims_in=[0, 0], node_dims_out=[0], ntrials=2)


def test_demo_cli_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--epochs", "0"])
    assert "--epochs must be >= 1" in capsys.readouterr().err
