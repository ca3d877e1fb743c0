"""Example figures for docs/methods/{gbp,deconvnet,rectgrad,lrp,dtd}.md.

Two panels per method, written to docs/figures/attribution_<method>.png:
* top row: a small digits CNN (toolkit_core.models.DigitsCNN) trained for a few epochs on the
  scikit-learn digits (16x16), four test digits, attribution of the predicted class;
* bottom row: a randomly initialized VGG-16 (weights=None) on the scikit-image photos at 64x64,
  overlaid on the photo (input alignment: GBP / z+ maps look like the image even without training).

Run: ``python benchmarks/attribution_figures.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import toolkit_core as tt
from toolkit_core.attribution.render import heatmap_array
from toolkit_core.data import digits_loaders, load_photos
from toolkit_core.models import DigitsCNN

OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
PANELS = {
    "gradient": {},
    "gbp": {},
    "deconvnet": {},
    "rectgrad": {},
    "lrp": {"composite": "epsilon_plus_flat"},
    "dtd": {},
}


def train_digits(epochs: int = 4, seed: int = 0) -> DigitsCNN:
    torch.manual_seed(seed)
    model = DigitsCNN(size=16, width=8, hidden=32)
    train, _ = digits_loaders(16, batch_size=64, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for x, y in train:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def figure(method: str, params: dict, digits_model, digits_x, vgg, photos) -> Path:
    import matplotlib.pyplot as plt

    d = tt.attribute(digits_model, digits_x, None, method=method, **params)
    v = tt.attribute(vgg, photos, None, method=method, **params)
    row1 = [heatmap_array(d[i]) for i in range(len(d))]
    row2 = [heatmap_array(v[i], image=photos[i]) for i in range(len(v))]
    top = np.concatenate([r.repeat(4, 0).repeat(4, 1) for r in row1], axis=1)
    bottom = np.concatenate(row2, axis=1)
    width = max(top.shape[1], bottom.shape[1])
    pad = lambda a: np.pad(a, ((0, 4), (0, width - a.shape[1]), (0, 0)), constant_values=255)  # noqa: E731
    img = np.concatenate([pad(top), pad(bottom)], axis=0)
    path = OUT / f"attribution_{method}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, img)
    return path


def main() -> None:
    import torchvision

    digits_model = train_digits()
    _, test = digits_loaders(16, seed=0)
    x, _ = next(iter(test))
    digits_x = x[:4]
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    photos = load_photos(64)
    for method, params in PANELS.items():
        print(figure(method, params, digits_model, digits_x, vgg, photos))


if __name__ == "__main__":
    main()
