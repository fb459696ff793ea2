"""Train a p4m G-CNN (rotations by 90 degrees, mirrors, translations) on synthesised shape images.

Run: ``python examples/p4m_images.py``. Four shapes (plus, L, T, diagonal) at random positions and random
p4m orientations; the network is invariant to all of them by construction.
"""

import torch

from euclidnet.groups import p4m_transform_features, p4m_transform_image
from euclidnet.groups.demos import P4MCNN, make_p4m_dataset, train_classifier


def main(steps: int = 200, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = make_p4m_dataset(512, size=13, generator=g, dtype=torch.float32)
    xt, yt = make_p4m_dataset(512, size=13, generator=g, dtype=torch.float32)
    model = P4MCNN(channels=6).float()
    losses = train_classifier(model, x, y, steps=steps, lr=0.02, batch=32, generator=g)
    with torch.no_grad():
        test_acc = float((model(xt).argmax(1) == yt).float().mean())
        m64, x64 = model.double(), xt[:32].double()
        out, F = m64(x64), m64.group_features(x64)
        inv = max(float((m64(p4m_transform_image(x64, s)) - out).abs().max()) for s in range(8))
        eq = max(
            float((m64.group_features(p4m_transform_image(x64, s)) - p4m_transform_features(F, s)).abs().max())
            for s in range(8)
        )
        shift = float((m64(torch.roll(x64, (3, -2), dims=(-2, -1))) - out).abs().max())
    result = {
        "final_loss": losses[-1],
        "test_accuracy": test_acc,
        "d4_invariance_error_f64": inv,
        "group_feature_equivariance_error_f64": eq,
        "translation_invariance_error_f64": shift,
    }
    for k, v in result.items():
        print(f"{k:>38}: {v:.3g}")
    return result


if __name__ == "__main__":
    main()
