"""Quickstart: load the data, train a small CNN, pick a threshold, save, predict.

Run it on a copy of the data you already have (any accepted layout, e.g. the
Kaggle ``chest_xray/`` folder), or let it download ``kermany2018`` (1.2 GB)::

    python examples/quickstart.py --data-dir ~/data/chest_xray
    python examples/quickstart.py                      # downloads kermany2018

The defaults are small (128 px, 3 epochs) so that it finishes quickly on a CPU.
"""

from __future__ import annotations

import argparse

from cxr_pneumonia import (
    Predictor,
    build_model,
    choose_threshold,
    evaluate,
    fit,
    load_dataset,
    save_model,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="a data folder (default: download kermany2018)")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="bundles/quickstart", help="bundle folder to write")
    args = parser.parse_args(argv)

    # 1. Data: decoded once into the cache, split by patient, class weights computed.
    data = load_dataset(
        data_dir=args.data_dir,
        image_size=(args.image_size, args.image_size),
        batch_size=args.batch_size,
        progress=False,
    )
    print(data.summary())

    # 2. Model: raw 0..255 pixels in, probability of PNEUMONIA out.
    model = build_model("cnn-small", input_shape=(args.image_size, args.image_size, 1))

    # 3. Training: balanced class weights and the default callbacks. fit prints one
    # line per epoch, then which epoch's weights it kept and why (result.summary()).
    result = fit(model, data, epochs=args.epochs, verbose=2)
    print(f"kept epoch {result.kept_epoch}: {result.kept_metrics}")

    # 4. Threshold: the highest one that keeps validation sensitivity >= 97 %.
    report = evaluate(model, data, split="validation")
    threshold = choose_threshold(report.labels, report.scores, target_sensitivity=0.97)
    print(report.at_threshold(threshold).to_text())

    # 5. Save a self-describing bundle, load it back, predict an image file.
    save_model(model, args.out, threshold=threshold, overwrite=True)
    predictor = Predictor.load(args.out)
    image = data.files["validation"][0]
    print(predictor.predict(image))


if __name__ == "__main__":
    main()
