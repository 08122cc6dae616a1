"""Grad-CAM: where in the image is the evidence for the model's answer?

Writes the overlay (the X-ray with the heatmap blended in) and, with
``--feature-maps`` and the ``plot`` extra, a grid of the first convolutions'
activations (what each convolution selects)::

    python examples/gradcam.py xray.jpeg --out xray-gradcam.png
    python examples/gradcam.py xray.jpeg --model bundles/cnn --out cam.png --feature-maps fm.png
"""

from __future__ import annotations

import argparse

import numpy as np

from cxr_pneumonia import Predictor, feature_maps
from cxr_pneumonia.gradcam import conv_layer_names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="an image file (JPEG, PNG, DICOM, ...)")
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--out", required=True, help="PNG file of the overlay")
    parser.add_argument("--layer", help="convolutional layer (default: the last one)")
    parser.add_argument("--feature-maps", help="PNG file of the feature maps (needs matplotlib)")
    parser.add_argument(
        "--layers", type=int, default=3, help="convolutions drawn in --feature-maps"
    )
    args = parser.parse_args(argv)

    predictor = Predictor.load(args.model) if args.model else Predictor.default()
    explanation = predictor.explain(args.image, layer=args.layer)
    explanation.overlay.save(args.out)
    p = explanation.prediction
    heat = explanation.heatmap
    peak_row, peak_col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    print(
        f"{args.image}: {p.label} (probability {p.probability:.4f}, threshold {p.threshold:.4f}); "
        f"Grad-CAM of layer {explanation.layer!r}, heatmap {heat.shape[1]}x{heat.shape[0]}, "
        f"peak at row {peak_row}, column {peak_col}; overlay written to {args.out}"
    )

    if args.feature_maps:
        from cxr_pneumonia.plots import plot_feature_maps

        layers = conv_layer_names(predictor.model)[: args.layers]
        maps = feature_maps(predictor, args.image, layers=layers)
        plot_feature_maps(maps, args.feature_maps, max_channels=8)
        print(f"feature maps of {', '.join(maps)} written to {args.feature_maps}")


if __name__ == "__main__":
    main()
