"""Example figures for docs/methods/{gradcam,gradcam_pp,eigencam,integrated_gradients,smoothgrad}.md.

The same two panels as ``benchmarks/attribution_figures.py`` (top: trained digits CNN, four test
digits, predicted class; bottom: randomly initialized VGG-16 on the scikit-image photos at 64x64,
overlaid on the photo), written to docs/figures/attribution_<method>.png.

Run: ``python benchmarks/cams_figures.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import torch
from attribution_figures import figure, train_digits

from toolkit_core.data import digits_loaders, load_photos

PANELS = {
    "gradcam": {},
    "gradcam_pp": {},
    "eigencam": {},
    "integrated_gradients": {"steps": 32},
    "smoothgrad": {"samples": 16},
}


def main() -> None:
    import torchvision

    torch.set_num_threads(1)
    digits_model = train_digits()
    _, test = digits_loaders(16, seed=0)
    x, _ = next(iter(test))
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    photos = load_photos(64)
    for method, params in PANELS.items():
        print(figure(method, params, digits_model, x[:4], vgg, photos))
    # SmoothGrad as a wrapper: SmoothGrad of guided backprop
    import attribution_figures as af

    path = figure("smoothgrad", {"base": "gbp", "samples": 16}, digits_model, x[:4], vgg, photos)
    path.rename(af.OUT / "attribution_smoothgrad_gbp.png")
    print(af.OUT / "attribution_smoothgrad_gbp.png")


if __name__ == "__main__":
    main()
