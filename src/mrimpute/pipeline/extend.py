"""Extending a trained model (paper VI-E): a decoder for a new output or an encoder for a new input, trained with
every other part frozen, into a new checkpoint; the parent checkpoint is only read."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

from ..config import ModelConfig
from ..data.normaliser import normaliser_for
from ..data.subjects import discover_subjects
from ..errors import CheckpointError, InputError
from ..io.atomic import check_writable, refuse_overwrite
from ..io.checkpoint import card_path, load_checkpoint
from ..io.checksum import sha256_file
from ..modalities import canonical_modality
from ..model.error_head import ERROR_LOSSES, ErrorHeadLoss
from ..model.losses import LossTerms
from ..model.network import SynthesisNet
from ..runtime.reporting import Reporter
from .train import TrainSettings, WarmStart, last_checkpoint_path, train

# what is trained, and against what (the paper's cost terms)
DECODER_TERMS = LossTerms(c1=True, c2=False, c3=True)  # each single latent and the fused one decoded to the output
ENCODER_TERMS = LossTerms(c1=True, c2=True, c3=False)  # its latent decoded, and close to the frozen encoders' latents


def _check_paths(parent: Path, settings: TrainSettings, force: bool) -> None:
    """The new checkpoint, its rolling copy and card must not be the parent's files, nor exist without force."""
    outputs = [Path(settings.out), last_checkpoint_path(settings.out), card_path(settings.out)]
    refuse_overwrite(outputs, [parent, card_path(parent), last_checkpoint_path(parent)], force or settings.resume)
    check_writable(Path(settings.out), force or settings.resume)


def _warm_start(parent: Path, payload: dict, part: str, name: str) -> WarmStart:
    """Parent weights loaded into the enlarged network, everything frozen except `part.name` (e.g. decoders.t1c)."""
    trained = f"{part}.{name}." if name else f"{part}."
    parent_sha = sha256_file(parent)

    def prepare(model: SynthesisNet) -> None:
        missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
        if unexpected or any(not key.startswith(trained) for key in missing):
            raise CheckpointError(f"{parent}: its weights do not match its stored model settings")
        for key, parameter in model.named_parameters():
            parameter.requires_grad_(key.startswith(trained))

    frozen = sorted({".".join(key.split(".")[:2]) for key in payload["state_dict"]})
    kind = {"decoders": "decoder for the new output", "encoders": "encoder for the new input"}.get(part, part)
    extension = {"added": trained.rstrip("."), "kind": kind, "frozen": frozen, "parent_file": str(parent),
                 "parent_sha256": parent_sha, "parent_training_subjects":
                     payload["metadata"].get("training_subjects", [])}
    section = "\n".join([
        f"## Extended model: {kind} `{name}`", "",
        f"Trained with every other part frozen (Chartsias et al. 2018, VI-E) from the parent `{Path(parent).name}` "
        f"(sha256 `{parent_sha}`), which was trained on {', '.join(extension['parent_training_subjects']) or '?'}.",
        "", f"- trained: `{part}.{name}`", f"- frozen (bit for bit the parent's): {', '.join(frozen)}"])
    return WarmStart(prepare=prepare, metadata={"extension": extension, "card_sections": [section]}, requires=(name,))


def _parent(parent: Path) -> tuple[dict, ModelConfig]:
    payload = load_checkpoint(parent)
    try:
        return payload, ModelConfig.from_dict(payload["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{parent}: unreadable model settings ({type(exc).__name__})") from None


def hold_out_like_parent(parent: Path, payload: dict, settings: TrainSettings,
                         reporter: Reporter | None = None) -> tuple[TrainSettings, list[str]]:
    """The settings with every subject of --data that the parent neither trained nor validated on (its held-out
    test subjects, or subjects it never saw) excluded, unless listed in --subjects or --val-subjects; and those
    subjects. A parent that records no subjects holds nothing out."""
    metadata = payload.get("metadata", {})
    seen = set(metadata.get("training_subjects") or []) | set(metadata.get("validation_subjects") or [])
    if not seen:
        return settings, []
    explicit = set(settings.subjects) | set(settings.val_subjects) | set(settings.exclude)
    names = [s.name for s in discover_subjects(settings.data)]
    held = [name for name in names if name not in seen and name not in explicit]
    if not held:
        return settings, []
    if not [name for name in names if name not in settings.exclude and name not in held]:
        raise InputError(f"{settings.data}: the parent model {Path(parent).name} trained and validated on none of "
                         f"these subjects ({', '.join(names)}), so all are held out by default; name the ones to "
                         "train on with --subjects (and --val-subjects)")
    (reporter or Reporter()).message(
        f"held out as by the parent {Path(parent).name} (it neither trained nor validated on them): "
        f"{', '.join(held)}; name them in --subjects or --val-subjects to use them")
    return replace(settings, exclude=[*settings.exclude, *held]), held


def _record_held_out(start: WarmStart, held: list[str]) -> WarmStart:
    start.metadata["extension"]["held_out_like_parent"] = held
    return start


def _settings(settings: TrainSettings, enlarged: ModelConfig, terms: LossTerms, payload: dict,
              force: bool = False, **changes: object) -> TrainSettings:
    """The training settings for the enlarged network (every output trained unless `train_outputs` says), with the
    parent's normaliser."""
    fixed = {"model": enlarged, "terms": terms, "input_dropout": False, "force": force or settings.force,
             "normaliser": normaliser_for(payload["metadata"]).name}
    return replace(settings, **{**fixed, **changes})


def add_decoder(parent: Path, output: str, settings: TrainSettings, force: bool = False,
                reporter: Reporter | None = None) -> Path:
    """A new checkpoint: the parent plus a decoder for `output`, trained (c1 + c3 for that output) on the frozen
    encoders' single and fused latents. settings gives the data, the split, the schedule and `out`."""
    parent = Path(parent)
    output = canonical_modality(output)
    payload, config = _parent(parent)
    if output in config.outputs:
        raise InputError(f"{parent}: the model already has a decoder for {output} (its outputs: "
                         f"{', '.join(config.outputs)})")
    _check_paths(parent, settings, force)
    settings, held = hold_out_like_parent(parent, payload, settings, reporter)
    enlarged = replace(config, outputs=[*config.outputs, output])
    start = _record_held_out(_warm_start(parent, payload, "decoders", output), held)
    return train(_settings(settings, enlarged, DECODER_TERMS, payload, force, train_outputs=[output]), reporter, start)


def add_encoder(parent: Path, modality: str, settings: TrainSettings, force: bool = False,
                reporter: Reporter | None = None) -> Path:
    """A new checkpoint: the parent plus an encoder for the input `modality`, trained (c1 + c2) so that its latent
    decodes to the parent's outputs through the frozen decoders and lies close to the frozen encoders' latents."""
    parent = Path(parent)
    modality = canonical_modality(modality)
    payload, config = _parent(parent)
    if modality in config.inputs:
        raise InputError(f"{parent}: the model already has an encoder for {modality} (its inputs: "
                         f"{', '.join(config.inputs)})")
    if config.lesion_channel:
        raise CheckpointError(f"{parent}: adding an encoder to a model with a lesion channel is not supported")
    _check_paths(parent, settings, force)
    settings, held = hold_out_like_parent(parent, payload, settings, reporter)
    enlarged = replace(config, inputs=[*config.inputs, modality])
    start = _record_held_out(_warm_start(parent, payload, "encoders", modality), held)
    return train(_settings(settings, enlarged, ENCODER_TERMS, payload, force), reporter, start)


def add_lesion_channel(parent: Path, settings: TrainSettings, force: bool = False,
                       reporter: Reporter | None = None) -> Path:
    """A new checkpoint: the parent with a lesion-mask channel on every encoder, fine-tuned on subjects' lesion
    masks (settings.lesion_source). The new channel's first-layer weights start at zero, so training starts from
    exactly the parent's function; nothing is frozen."""
    parent = Path(parent)
    payload, config = _parent(parent)
    if config.lesion_channel:
        raise InputError(f"{parent}: the model already has a lesion channel")
    _check_paths(parent, settings, force)
    enlarged = replace(config, lesion_channel=True)
    parent_sha = sha256_file(parent)

    def prepare(model: SynthesisNet) -> None:
        state = model.state_dict()
        for key, weight in payload["state_dict"].items():
            if key not in state:
                raise CheckpointError(f"{parent}: its weights do not match its stored model settings")
            if weight.shape != state[key].shape:  # an encoder's first convolution: one more input channel
                if weight.shape[1] + 1 != state[key].shape[1] or weight.shape[0] != state[key].shape[0]:
                    raise CheckpointError(f"{parent}: its weights do not match its stored model settings")
                grown = state[key].new_zeros(state[key].shape)
                grown[:, : weight.shape[1]] = weight
                weight = grown
            state[key] = weight
        model.load_state_dict(state)

    extension = {"added": "lesion channel", "kind": "lesion-mask input channel on every encoder (zero-initialised)",
                 "frozen": [], "parent_file": str(parent), "parent_sha256": parent_sha,
                 "parent_training_subjects": payload["metadata"].get("training_subjects", [])}
    section = "\n".join([
        "## Lesion-aware fine-tuning", "",
        f"Started from `{parent.name}` (sha256 `{parent_sha}`) with a lesion-mask channel added to every encoder "
        "(first-layer weights for it zero, so the start is exactly the parent), then trained with every part free "
        f"on the subjects' lesion masks (source: {settings.lesion_source}; a subject without a mask has none)."])
    start = WarmStart(prepare=prepare, metadata={"extension": extension, "card_sections": [section]})
    return train(_settings(settings, enlarged, settings.terms, payload, force), reporter, start)


def fine_tune(parent: Path, settings: TrainSettings, force: bool = False, reporter: Reporter | None = None) -> Path:
    """A new checkpoint: the parent's network (its settings and normaliser, every weight) trained further with
    every part free, under `settings`' data, split, schedule, cost terms and augmentation (e.g. a new cost term)."""
    parent = Path(parent)
    payload, config = _parent(parent)
    _check_paths(parent, settings, force)
    settings, held = hold_out_like_parent(parent, payload, settings, reporter)
    parent_sha = sha256_file(parent)

    def prepare(model: SynthesisNet) -> None:
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError:
            raise CheckpointError(f"{parent}: its weights do not match its stored model settings") from None

    extension = {"added": "fine-tuning", "kind": "every part trained further", "frozen": [],
                 "parent_file": str(parent), "parent_sha256": parent_sha, "held_out_like_parent": held,
                 "parent_training_subjects": payload["metadata"].get("training_subjects", [])}
    section = "\n".join([
        "## Fine-tuned model", "",
        f"Started from `{parent.name}` (sha256 `{parent_sha}`), its network and weights, then trained further with "
        "every part free under the settings above."])
    start = WarmStart(prepare=prepare, metadata={"extension": extension, "card_sections": [section]})
    tuned = replace(settings, model=config, force=force or settings.force,
                    normaliser=normaliser_for(payload["metadata"]).name)
    return train(tuned, reporter, start)


def add_error_heads(parent: Path, settings: TrainSettings, force: bool = False,
                    reporter: Reporter | None = None, error_loss: str = "l1") -> Path:
    """A new checkpoint: the parent plus, for each output, a head that reads the fused latent and predicts the
    synthesis's absolute error (what `synth --uncertainty` then maps), trained on random input subsets with every
    other part frozen; error_loss: "l1" (the conditional median) or "laplace" (the mean; model/error_head.py)."""
    if error_loss not in ERROR_LOSSES:
        raise InputError(f"--error-loss {error_loss}: expected {' or '.join(ERROR_LOSSES)}")
    parent = Path(parent)
    payload, config = _parent(parent)
    if config.error_heads:
        raise InputError(f"{parent}: the model already has error heads ({', '.join(config.error_heads)})")
    _check_paths(parent, settings, force)
    settings, held = hold_out_like_parent(parent, payload, settings, reporter)
    enlarged = replace(config, error_heads=list(config.outputs), error_head_form="log")
    start = _warm_start(parent, payload, "error_heads", "")
    start = replace(start, loss=partial(ErrorHeadLoss, error_loss=error_loss), requires=())
    start.metadata["error_loss"] = error_loss
    fit = "its median, by L1" if error_loss == "l1" else "its mean, by a Laplace likelihood"
    start.metadata["card_sections"] = [
        "## Learnt uncertainty\n\nEach output has an error head: a decoder of the fused latent trained, with every "
        "other part frozen bit for bit, to predict the absolute error of that output synthesised from a random "
        f"subset of the other inputs ({fit}: model/error_head.py). `synth --uncertainty` maps it."]
    return train(_settings(settings, enlarged, settings.terms, payload, force, input_dropout=True),
                 reporter, _record_held_out(start, held))
