import math

import pytest
import torch

from euclidnet.o3 import (
    angles_to_matrix,
    angles_to_xyz,
    axis_angle_to_matrix,
    compose_quaternion,
    inverse_quaternion,
    matrix_to_angles,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_x,
    matrix_y,
    matrix_z,
    quaternion_to_matrix,
    rand_matrix,
    rand_quaternion,
    xyz_to_angles,
)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_rand_matrix_is_rotation(dtype, tol):
    R = rand_matrix(100, dtype=dtype)
    assert R.dtype == dtype
    I = torch.eye(3, dtype=dtype).expand(100, 3, 3)
    torch.testing.assert_close(R @ R.transpose(-1, -2), I, atol=tol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(100, dtype=dtype), atol=tol, rtol=0)


def test_rand_matrix_is_haar():
    # For Haar measure the rotated e_z is uniform on the sphere: E[v] = 0, E[v v^T] = I/3; and
    # the rotation angle has density (1 - cos t)/pi, whose mean of cos t is -1/2.
    g = torch.Generator().manual_seed(1)
    R = rand_matrix(200000, generator=g)
    v = R[:, :, 2]
    assert v.mean(0).abs().max() < 0.01
    torch.testing.assert_close(v.T @ v / len(v), torch.eye(3) / 3, atol=0.01, rtol=0)
    cos_t = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    assert abs(cos_t.mean().item() + 0.5) < 0.01


def test_elementary_rotations_are_counter_clockwise():
    t = torch.tensor(math.pi / 2)
    torch.testing.assert_close(matrix_z(t) @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]))
    torch.testing.assert_close(matrix_x(t) @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]))
    torch.testing.assert_close(matrix_y(t) @ torch.tensor([0.0, 0, 1]), torch.tensor([1.0, 0, 0]))


def test_angles_round_trip_including_gimbal_poles():
    R = rand_matrix(500)
    torch.testing.assert_close(angles_to_matrix(*matrix_to_angles(R)), R, atol=1e-12, rtol=0)
    # beta = 0 and beta = pi: alpha and gamma are not unique but R must come back.
    for beta in (0.0, math.pi, 1e-9, math.pi - 1e-9):
        R = angles_to_matrix(torch.tensor(0.3), torch.tensor(beta), torch.tensor(1.1))
        torch.testing.assert_close(angles_to_matrix(*matrix_to_angles(R)), R, atol=1e-12, rtol=0)


def test_xyz_angles():
    v = torch.randn(100, 3)
    a, b = xyz_to_angles(v)
    torch.testing.assert_close(angles_to_xyz(a, b), v / v.norm(dim=-1, keepdim=True))
    # angles_to_matrix(a, b, 0) sends e_y to that direction.
    torch.testing.assert_close(angles_to_matrix(a, b, torch.zeros_like(a))[..., :, 1], angles_to_xyz(a, b))


def test_quaternions():
    q1, q2 = rand_quaternion(2, 50)
    torch.testing.assert_close(
        quaternion_to_matrix(compose_quaternion(q1, q2)), quaternion_to_matrix(q1) @ quaternion_to_matrix(q2)
    )
    torch.testing.assert_close(quaternion_to_matrix(inverse_quaternion(q1)), quaternion_to_matrix(q1).transpose(-1, -2))
    # matrix_to_quaternion is accurate also for half turns (trace = -1), where naive formulas fail.
    half_turns = axis_angle_to_matrix(torch.randn(50, 3), torch.full((50,), math.pi))
    for R in (rand_matrix(200), half_turns, torch.eye(3)[None]):
        torch.testing.assert_close(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-12, rtol=0)


def test_axis_angle():
    axis = torch.tensor([0.0, 0.0, 2.0])
    R = axis_angle_to_matrix(axis, torch.tensor(math.pi / 2))
    torch.testing.assert_close(R, matrix_z(torch.tensor(math.pi / 2)))
    R = rand_matrix(100)
    torch.testing.assert_close(axis_angle_to_matrix(*matrix_to_axis_angle(R)), R, atol=1e-12, rtol=0)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, 3\]"):
        matrix_to_angles(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        quaternion_to_matrix(torch.zeros(3))
