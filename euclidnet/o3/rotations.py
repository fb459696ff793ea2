"""Parametrisations of 3D rotations (batched, float32 or float64).

Conventions (shared with e3nn so weights and results port across):

* Vectors are stored ``(x, y, z)``; a rotation matrix ``R`` acts on column vectors, ``x' = R x``.
* Euler angles are **YXY**: ``angles_to_matrix(alpha, beta, gamma) = Y(alpha) @ X(beta) @ Y(gamma)``,
  where ``X(t)``/``Y(t)`` rotate counter-clockwise by ``t`` about the x/y axis. ``beta`` is the angle
  from the y axis (the polar axis of our spherical harmonics), ``alpha`` the azimuth measured from z
  towards x.
* Quaternions are ``(w, x, y, z)`` with the scalar first, Hamilton product, unit norm.
* Axis-angle: a unit axis ``[..., 3]`` and an angle ``[...]`` (right-hand rule).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "rand_matrix",
    "rand_quaternion",
    "rand_angles",
    "rand_axis_angle",
    "identity_angles",
    "matrix_x",
    "matrix_y",
    "matrix_z",
    "angles_to_matrix",
    "matrix_to_angles",
    "angles_to_xyz",
    "xyz_to_angles",
    "quaternion_to_matrix",
    "matrix_to_quaternion",
    "quaternion_to_angles",
    "angles_to_quaternion",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "compose_quaternion",
    "inverse_quaternion",
    "compose_angles",
    "inverse_angles",
    "compose_matrix",
]


def _default_dtype(dtype: torch.dtype | None) -> torch.dtype:
    return torch.get_default_dtype() if dtype is None else dtype


def _check_matrix(R: torch.Tensor) -> torch.Tensor:
    if not isinstance(R, torch.Tensor):
        R = torch.as_tensor(R, dtype=torch.get_default_dtype())
    if R.dim() < 2 or R.shape[-2:] != (3, 3):
        raise ValueError(f"expected rotation matrices of shape [..., 3, 3], got {tuple(R.shape)}")
    if not R.is_floating_point():
        raise TypeError(f"rotation matrices must be floating point, got {R.dtype}")
    return R


# -- random rotations ---------------------------------------------------------------------------------


def rand_quaternion(
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Haar-uniform random unit quaternions ``[*shape, 4]`` (a normalised 4D Gaussian, w >= 0)."""
    q = torch.randn(*shape, 4, generator=generator, dtype=_default_dtype(dtype), device=device)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def rand_matrix(
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Haar-uniform random rotation matrices ``[*shape, 3, 3]`` (det +1)."""
    return quaternion_to_matrix(rand_quaternion(*shape, generator=generator, dtype=dtype, device=device))


def rand_angles(
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """YXY angles of Haar-uniform random rotations, each ``[*shape]``."""
    return matrix_to_angles(rand_matrix(*shape, generator=generator, dtype=dtype, device=device))


def rand_axis_angle(
    *shape: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis ``[*shape, 3]`` and angle ``[*shape]`` of Haar-uniform random rotations."""
    return quaternion_to_axis_angle(rand_quaternion(*shape, generator=generator, dtype=dtype, device=device))


def identity_angles(
    *shape: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    z = torch.zeros(*shape, dtype=_default_dtype(dtype), device=device)
    return z, z.clone(), z.clone()


# -- elementary rotations -------------------------------------------------------------------------------


def _rot(angle: torch.Tensor, axis: int) -> torch.Tensor:
    angle = torch.as_tensor(angle)
    if not angle.is_floating_point():
        angle = angle.to(torch.get_default_dtype())
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == 1:
        rows = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        rows = [[c, -s, z], [s, c, z], [z, z, o]]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def matrix_x(angle: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation by ``angle`` about the x axis, ``[..., 3, 3]``."""
    return _rot(angle, 0)


def matrix_y(angle: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation by ``angle`` about the y axis, ``[..., 3, 3]``."""
    return _rot(angle, 1)


def matrix_z(angle: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation by ``angle`` about the z axis, ``[..., 3, 3]``."""
    return _rot(angle, 2)


# -- Euler angles (YXY) ---------------------------------------------------------------------------------


def angles_to_matrix(alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``Y(alpha) @ X(beta) @ Y(gamma)`` ``[..., 3, 3]``; the angles broadcast."""
    alpha, beta, gamma = torch.broadcast_tensors(*map(torch.as_tensor, (alpha, beta, gamma)))
    return matrix_y(alpha) @ matrix_x(beta) @ matrix_y(gamma)


def angles_to_xyz(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Unit vector at azimuth ``alpha`` (from z towards x) and polar angle ``beta`` (from y)."""
    alpha, beta = torch.broadcast_tensors(alpha, beta)
    return torch.stack(
        [torch.sin(beta) * torch.sin(alpha), torch.cos(beta), torch.sin(beta) * torch.cos(alpha)], dim=-1
    )


def xyz_to_angles(xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Azimuth ``alpha`` and polar angle ``beta`` of vectors ``[..., 3]`` (any non-zero length).

    Uses ``atan2`` for both angles, which stays accurate near the poles (``acos`` loses half the digits).
    """
    x, y, z = xyz.unbind(-1)
    alpha = torch.atan2(x, z)
    beta = torch.atan2(torch.sqrt(x * x + z * z), y)
    return alpha, beta


def matrix_to_angles(R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """YXY angles of rotation matrices ``[..., 3, 3]`` (must be proper, det +1).

    At the gimbal poles (``beta`` = 0 or pi) ``alpha`` and ``gamma`` are not unique; the returned triple
    still reproduces ``R``.
    """
    R = _check_matrix(R)
    alpha, beta = xyz_to_angles(R[..., :, 1])  # R e_y = Y(alpha) X(beta) e_y
    R0 = angles_to_matrix(alpha, beta, torch.zeros_like(alpha))
    Rg = R0.transpose(-1, -2) @ R  # = Y(gamma)
    gamma = torch.atan2(Rg[..., 0, 2], Rg[..., 0, 0])
    return alpha, beta, gamma


def compose_angles(a1, b1, c1, a2, b2, c2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Angles of ``R(a1, b1, c1) @ R(a2, b2, c2)``."""
    return matrix_to_angles(angles_to_matrix(a1, b1, c1) @ angles_to_matrix(a2, b2, c2))


def inverse_angles(a, b, c) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Angles of the inverse rotation: ``(-c, -b, -a)``."""
    return -c, -b, -a


def compose_matrix(*Rs: torch.Tensor) -> torch.Tensor:
    """Product ``R1 @ R2 @ ...`` (batched)."""
    out = Rs[0]
    for R in Rs[1:]:
        out = out @ R
    return out


# -- quaternions -----------------------------------------------------------------------------------------


def _check_quaternion(q: torch.Tensor) -> torch.Tensor:
    if q.shape[-1:] != (4,):
        raise ValueError(f"expected quaternions of shape [..., 4] (w, x, y, z), got {tuple(q.shape)}")
    return q


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``[..., 4]`` (normalised internally)."""
    q = _check_quaternion(q)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``[..., 4]`` with ``w >= 0`` of proper rotation matrices ``[..., 3, 3]``.

    Each row is computed from the largest of ``w, x, y, z`` (Shepperd's method), which is accurate for
    every rotation, including half-turns.
    """
    R = _check_matrix(R)
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    # 4 * (w^2, x^2, y^2, z^2)
    sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    # Candidate quaternions, each scaled by 4 * (its pivot component).
    cand = torch.stack(
        [
            torch.stack([sq[..., 0], R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                         R[..., 1, 0] - R[..., 0, 1]], dim=-1),
            torch.stack([R[..., 2, 1] - R[..., 1, 2], sq[..., 1], R[..., 1, 0] + R[..., 0, 1],
                         R[..., 0, 2] + R[..., 2, 0]], dim=-1),
            torch.stack([R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] + R[..., 0, 1], sq[..., 2],
                         R[..., 2, 1] + R[..., 1, 2]], dim=-1),
            torch.stack([R[..., 1, 0] - R[..., 0, 1], R[..., 0, 2] + R[..., 2, 0],
                         R[..., 2, 1] + R[..., 1, 2], sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    best = sq.argmax(dim=-1)
    q = torch.gather(cand, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def compose_quaternion(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``q1 * q2`` (the rotation ``q2`` followed by ``q1``)."""
    q1, q2 = torch.broadcast_tensors(_check_quaternion(q1), _check_quaternion(q2))
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        dim=-1,
    )


def inverse_quaternion(q: torch.Tensor) -> torch.Tensor:
    """Conjugate of a unit quaternion."""
    q = _check_quaternion(q)
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quaternion_to_angles(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return matrix_to_angles(quaternion_to_matrix(q))


def angles_to_quaternion(alpha, beta, gamma) -> torch.Tensor:
    return matrix_to_quaternion(angles_to_matrix(alpha, beta, gamma))


# -- axis-angle ------------------------------------------------------------------------------------------


def axis_angle_to_quaternion(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Quaternion of the rotation by ``angle`` about ``axis`` (normalised internally)."""
    if axis.shape[-1:] != (3,):
        raise ValueError(f"expected axes of shape [..., 3], got {tuple(axis.shape)}")
    axis = axis / axis.norm(dim=-1, keepdim=True)
    half = torch.as_tensor(angle, dtype=axis.dtype, device=axis.device)[..., None] / 2
    return torch.cat([torch.cos(half), axis * torch.sin(half)], dim=-1)


def quaternion_to_axis_angle(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis ``[..., 3]`` and angle in ``[0, pi]`` of unit quaternions (axis is arbitrary for angle 0)."""
    q = _check_quaternion(q)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s = v.norm(dim=-1)
    angle = 2 * torch.atan2(s, q[..., 0])
    fallback = torch.zeros_like(v)
    fallback[..., 1] = 1.0
    axis = torch.where(s[..., None] > 0, v / s.clamp_min(torch.finfo(q.dtype).tiny)[..., None], fallback)
    return axis, angle


def axis_angle_to_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    return quaternion_to_matrix(axis_angle_to_quaternion(axis, angle))


def matrix_to_axis_angle(R: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


# Half-turn constant used by wigner.py to build X(beta) from Y(beta).
HALF_PI = math.pi / 2
