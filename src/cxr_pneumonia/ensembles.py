"""Ensembles: several trained models averaged into one ordinary model.

[`ensemble`][cxr_pneumonia.ensembles.ensemble] takes models or bundles that share an input spec
(image size, color mode, class names, output shape) and returns **one Keras model**: each member is
nested as a sub-model named ``member_<i>`` and called on the same input, and a
[`MemberMean`][cxr_pneumonia.models.layers.MemberMean] layer averages their probabilities. Members
keep what they are, flip test-time augmentation included. The result is a functional model like any
other, so it saves as a bundle ([`save_model`][cxr_pneumonia.bundle.save_model]), loads and verifies
its hash, predicts, explains and exports with no special case: the only thing an ensemble adds is
the members' provenance, carried in the ``MemberMean`` layer's config and copied by ``save_model``
into the bundle's metadata under ``"ensemble"``, where [`explain`][cxr_pneumonia.predictor.explain]
finds the members to average Grad-CAM over.

Examples:
    >>> from cxr_pneumonia import ensemble, save_model
    >>> model = ensemble(["bundles/seed0", "bundles/seed1", "bundles/seed2"])  # doctest: +SKIP
    >>> save_model(model, "bundles/ensemble", threshold=0.41)                 # doctest: +SKIP

Averaging helps when every member is strong on its own: two members whose
errors differ but one of which is weak under shift average to something in
between (see the shift-robustness guide).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_pneumonia.bundle import BundleMetadata, load_bundle, metadata_for_model
from cxr_pneumonia.exceptions import BundleError, EnsembleError

if TYPE_CHECKING:
    import keras

__all__ = ["MEMBER_PREFIX", "EnsembleMember", "ensemble", "weights_sha256"]

MEMBER_PREFIX = "member_"
"""Members are nested as sub-models named ``member_0``, ``member_1``, ..."""

EnsembleMember = Any
"""A member: a ``keras.Model``, a bundle path, or a Predictor (its model and metadata)."""


@dataclass(frozen=True)
class _Member:
    model: Any
    metadata: BundleMetadata | None
    source: str | None
    what: str  # how error messages name it


def ensemble(
    members: Sequence[EnsembleMember],
    *,
    name: str = "ensemble",
    provenance: Sequence[Mapping[str, Any]] | None = None,
    tta: bool = False,
) -> keras.Model:
    """Combine models with the same input spec into one model averaging their probabilities.

    Args:
        members: Two or more ``keras.Model`` objects, bundle folders (loaded
            and hash-checked with [`load_bundle`][cxr_pneumonia.bundle.load_bundle]) or
            [`Predictor`][cxr_pneumonia.predictor.Predictor] objects, in any mix. Each must
            take one ``(N, H, W, C)`` image batch and return ``(N, 1)``
            (sigmoid) or ``(N, 2)`` (softmax) probabilities.
        name: The Keras name of the returned model (and its bundle's default
            ``model_name``).
        provenance: Optional extra JSON-ready fields for each member's record
            (e.g. the seed and training history of a member trained in
            memory), one mapping per member; they add to, and may not
            replace, the fields taken from the member itself.
        tta: Wrap each member that does not already average over flips in
            flip test-time augmentation
            ([`with_flip_tta`][cxr_pneumonia.models.tta.with_flip_tta]), so every member
            scores as `cxr-pneumonia train --tta` saves a model (the member
            bundles in a `train --ensemble` checkpoint folder are saved
            without it); each member's record then says ``"flip_tta"``:
            ``"added"`` or ``"own"``.

    Returns:
        A functional ``keras.Model`` with the members' input; its output is
        the mean of the members' outputs. The members are nested as
        ``member_0``, ``member_1``, ... (their weights are shared with the
        models given, not copied).

    Raises:
        EnsembleError: If fewer than two members are given, the same model is
            given twice, or a member's image size, color mode, class names or
            output shape differs from the first member's (bundles' metadata is
            compared; a bare model is described from its input shape).
        BundleError: If a bundle folder does not load.
        TypeError: If a member is of an unsupported type.
        ValueError: If ``provenance`` does not have one mapping per member.

    Examples:
        >>> model = ensemble([model_a, "bundles/b"], name="cnn-small-x2")  # doctest: +SKIP
    """
    import keras

    from cxr_pneumonia.models.layers import MemberMean
    from cxr_pneumonia.models.tta import has_flip_tta, with_flip_tta

    if isinstance(members, (str, os.PathLike, keras.Model)) or len(members) < 2:
        got = 1 if isinstance(members, (str, os.PathLike, keras.Model)) else len(members)
        msg = f"an ensemble needs at least two members; got {got}. Pass a list of models or bundles"
        raise EnsembleError(msg)
    extras = [dict(extra) for extra in provenance] if provenance is not None else None
    if extras is not None and len(extras) != len(members):
        msg = f"provenance has {len(extras)} entries for {len(members)} members; give one each"
        raise ValueError(msg)
    resolved = [_resolve(member, index) for index, member in enumerate(members)]
    seen: dict[int, str] = {}
    for member in resolved:
        if id(member.model) in seen:
            first = seen[id(member.model)]
            msg = f"{member.what} is the same model object as {first}; pass each model once"
            raise EnsembleError(msg)
        seen[id(member.model)] = member.what
    specs = [_spec(member) for member in resolved]
    reference = specs[0]
    for member, spec in zip(resolved[1:], specs[1:], strict=True):
        for key, label in (
            ("image_size", "image size"),
            ("color_mode", "color mode"),
            ("class_names", "class names"),
            ("outputs", "output width"),
        ):
            if spec[key] != reference[key]:
                msg = (
                    f"{member.what} has {label} {spec[key]!r} but {resolved[0].what} has "
                    f"{reference[key]!r}; every member must take the same images and return "
                    "the same classes (train or load them with the same image size, color mode "
                    "and class names)"
                )
                raise EnsembleError(msg)
    first_input = resolved[0].model.inputs[0]
    inputs = keras.Input(shape=tuple(first_input.shape[1:]), dtype=first_input.dtype, name="image")
    outputs = []
    records: list[dict[str, Any]] = []
    for index, member in enumerate(resolved):
        layer_name = f"{MEMBER_PREFIX}{index}"
        scored = member.model
        flip = None
        if tta:
            flip = "own" if has_flip_tta(scored) else "added"
            scored = scored if flip == "own" else with_flip_tta(scored)
        nested = keras.Model(scored.inputs[0], scored.outputs[0], name=layer_name)
        outputs.append(nested(inputs))
        record = _provenance(member, layer_name)
        if flip is not None:
            record["flip_tta"] = flip
        if extras is not None:
            record = {**extras[index], **record}
        records.append(record)
    output = MemberMean(members=records, name="mean_of_members")(outputs)
    return keras.Model(inputs, output, name=name)


def weights_sha256(model: keras.Model) -> str:
    """A SHA-256 of a model's weights (shapes, dtypes and values, in order).

    Identifies a member independent of how it was saved: two models with
    equal weights give the same digest.

    Args:
        model: A Keras model.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    for weight in model.weights:
        array = np.ascontiguousarray(np.asarray(weight))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


# --- helpers ---------------------------------------------------------------------------


def _resolve(member: EnsembleMember, index: int) -> _Member:
    import keras

    if isinstance(member, keras.Model):
        return _Member(member, None, None, f"member {index} (model {member.name!r})")
    if isinstance(member, (str, os.PathLike)):
        try:
            model, metadata = load_bundle(member)
        except BundleError as exc:
            msg = f"member {index}: {exc}"
            raise BundleError(msg) from exc
        source = str(Path(member))
        return _Member(model, metadata, source, f"member {index} ({source})")
    inner = getattr(member, "model", None)
    described = getattr(member, "metadata", None)
    if isinstance(inner, keras.Model) and isinstance(described, BundleMetadata):
        label = f"member {index} ({described.model_name or inner.name})"
        return _Member(inner, described, None, label)
    msg = (
        f"member {index} must be a keras.Model, a bundle folder or a Predictor; "
        f"got {type(member).__name__}"
    )
    raise TypeError(msg)


def _spec(member: _Member) -> dict[str, Any]:
    model = member.model
    outputs = getattr(model, "outputs", None)
    if not getattr(model, "inputs", None) or len(model.inputs) != 1 or not outputs:
        msg = f"{member.what} must be a built model with one image input and one output"
        raise EnsembleError(msg)
    if len(outputs) != 1 or len(outputs[0].shape) != 2 or outputs[0].shape[-1] not in (1, 2):
        shapes = [tuple(o.shape) for o in outputs]
        msg = (
            f"{member.what} returns {shapes}; ensemble members must return one (N, 1) sigmoid "
            "or (N, 2) softmax output of probabilities"
        )
        raise EnsembleError(msg)
    metadata: BundleMetadata | None = member.metadata
    if metadata is None:
        try:
            metadata = metadata_for_model(model)
        except ValueError as exc:
            msg = f"{member.what}: {exc}"
            raise EnsembleError(msg) from None
    return {
        "image_size": tuple(metadata.image_size),
        "color_mode": metadata.color_mode,
        "class_names": tuple(metadata.class_names),
        "outputs": int(outputs[0].shape[-1]),
    }


def _provenance(member: _Member, layer_name: str) -> dict[str, Any]:
    metadata = member.metadata
    record: dict[str, Any] = {
        "layer": layer_name,
        "name": (metadata.model_name if metadata else None) or member.model.name,
        "source": member.source,
        "sha256": metadata.sha256 if metadata and metadata.sha256 else None,
        "weights_sha256": weights_sha256(member.model),
    }
    if metadata is not None:
        record.update(
            threshold=metadata.threshold,
            created=metadata.created,
            library_version=metadata.library_version,
            metrics=dict(metadata.metrics),
            training=dict(metadata.training),
        )
    return record
