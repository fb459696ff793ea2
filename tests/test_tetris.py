"""3D Tetris: equivariant models reach 100 % on rotated and reflected shapes after training on one
orientation; an invariant model cannot tell the chiral pair apart."""

import pytest
import torch

from euclidnet.demos import tetris


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tfn", "nequip", "se3_transformer"])
def test_tetris_trains_and_generalises_to_all_orientations(name):
    model = tetris.build(name).double()
    tr = tetris.train(model, steps=400)
    assert tr["train_acc"] == 1.0
    ev = tetris.evaluate(model, num_rotations=60)
    assert ev["rotated"] == 1.0
    assert ev["reflected"] == 1.0  # includes the mirrored chiral pieces, whose labels swap
    assert ev["reflected_chiral"] == 1.0


def test_chiral_pair_logits_swap_under_reflection():
    model = tetris.build("nequip").double()
    pos, _ = tetris.shapes()
    left = tetris._graph([pos[tetris.CHIRAL[0]]])
    mirrored = tetris._graph([-pos[tetris.CHIRAL[0]]])
    with torch.no_grad():
        a, b = tetris.predict(model, left)[0], tetris.predict(model, mirrored)[0]
    torch.testing.assert_close(a[:6], b[:6])
    torch.testing.assert_close(a[6:], b[6:].flip(0))


def test_tensor_frames_learns_tetris_including_the_chiral_pair():
    model = tetris.build("tensor_frames").double()
    tr = tetris.train(model, steps=400)
    assert tr["train_acc"] == 1.0
    ev = tetris.evaluate(model, num_rotations=60)
    assert ev["rotated"] == 1.0 and ev["reflected"] == 1.0


def test_schnet_cannot_separate_the_chiral_pair():
    # SchNet sees only interatomic distances, identical for a shape and its mirror image: whatever its
    # weights, the two chiral pieces get identical logits, so at most one of them can be classified right.
    model = tetris.build("schnet").double()
    tetris.train(model, steps=150)
    pos, _ = tetris.shapes()
    left = tetris._graph([pos[tetris.CHIRAL[0]]])
    right = tetris._graph([pos[tetris.CHIRAL[1]]])
    with torch.no_grad():
        torch.testing.assert_close(tetris.predict(model, left), tetris.predict(model, right), atol=1e-12, rtol=0)
    ev = tetris.evaluate(model, num_rotations=20)
    assert ev["rotated_chiral"] <= 0.5
    assert ev["rotated"] <= 7 / 8  # at least one of the 8 shapes is always wrong
