"""The ``cxr-pneumonia`` command line: a thin face over the library, on click.

One module per command group: ``predict`` (``predict``,
``explain``), ``train``, ``evaluate``
(``evaluate``, ``export``), ``robust`` (``ensemble``,
``shift-report``), ``ood`` (``ood-fit``), ``data`` (``download``,
``summary``, ``datasets``), ``info`` (``models``,
``info``); ``app`` holds the group and ``main``.
Options are declared once (``options``): an option that
feeds a library function takes its default, help and range from that
function's signature and docstring. This file only re-exports.

Run ``cxr-pneumonia --help`` for the commands::

    cxr-pneumonia predict xray.jpeg scans/ "more/*.png" [--model BUNDLE] [--format json]
    cxr-pneumonia explain xray.jpeg --out heatmap.png
    cxr-pneumonia train --data-dir chest_xray --model cnn-small --epochs 30 --out bundles/cnn
    cxr-pneumonia evaluate bundles/cnn --data-dir chest_xray [--format json]
    cxr-pneumonia train --data-dir chest_xray --ensemble 3 --out bundles/cnn-x3
    cxr-pneumonia ensemble bundles/a bundles/b --out bundles/ab [--data-dir chest_xray]
    cxr-pneumonia shift-report bundles/cnn --data-dir chest_xray [--plot shifts.png]
    cxr-pneumonia export bundles/cnn --format savedmodel|tflite --out PATH
    cxr-pneumonia ood-fit bundles/cnn --data-dir chest_xray
    cxr-pneumonia download kermany2018
    cxr-pneumonia datasets | models | info [--format table|json]
    cxr-pneumonia summary --data-dir chest_xray
"""

from cxr_pneumonia.cli.app import cli, main
from cxr_pneumonia.cli.output import EXIT_FAILED, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "cli", "main"]
