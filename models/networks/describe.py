"""What a state dict holds, read from its tensors alone (names and shapes), in the words of the
command line: ``--netG unet_128, --ngf 32, --input_nc 5, --output_nc 1, batch norm``.

Used when weights do not fit the network the options build: the message then says what the file
really holds, whatever a (possibly stale) metadata file claims.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def _indices(keys: list[str], prefix: str) -> list[int]:
    """Sorted distinct integers after ``prefix`` (e.g. ``encoders.``) in ``keys``."""
    found = {int(k[len(prefix):].split(".")[0]) for k in keys if k.startswith(prefix)}
    return sorted(found)


def _norm_words(keys: list[str]) -> str:
    """Batch norm keeps running statistics; instance norm (without affine) and no norm keep no
    tensors, so the two cannot be told apart."""
    if any(k.endswith("running_mean") for k in keys):
        return "batch norm"
    return "instance norm or no norm (no running statistics)"


def _describe_unet(state: Mapping[str, torch.Tensor], keys: list[str]) -> str:
    """2-D and 3-D U-Nets keep their layers in ``encoders.<i>`` and ``decoders.<i>``."""
    levels = len(_indices(keys, "encoders."))
    first = state["encoders.0.0.weight"]  # (ngf, input_nc, 4, 4[, 4])
    last = state.get(f"decoders.{levels - 1}.1.weight")  # (2 ngf, output_nc, 4, 4[, 4])
    out = (f", --output_nc {last.shape[1]}" if last is not None and last.ndim == first.ndim
           else "")
    name = f"a 3-D U-Net of {levels} levels (--netG unet3d_{levels})" if first.ndim == 5 else (
        f"a U-Net of {levels} levels (--netG unet_{2 ** levels})")
    return (f"{name}, --ngf {first.shape[0]}, --input_nc {first.shape[1]}{out}, "
            f"{_norm_words(keys)}")


def _describe_motion(state: Mapping[str, torch.Tensor], keys: list[str]) -> str:
    """A MotionGenerator keeps its 3-D U-Net in ``field_net.``: 3 output channels (the field),
    or 4 (and the intensity correction)."""
    levels = len(_indices(keys, "field_net.encoders."))
    first = state["field_net.encoders.0.0.weight"]  # (ngf, 1, 4, 4, 4)
    last = state[f"field_net.decoders.{levels - 1}.1.weight"]  # (2 ngf, 3 or 4, 4, 4, 4)
    correction = "with" if last.shape[1] > 3 else "without"
    return (f"a motion generator over a 3-D U-Net of {levels} levels (--netG motion3d_{levels}), "
            f"--ngf {first.shape[0]}, {correction} intensity correction, {_norm_words(keys)}")


def _describe_sequential(state: Mapping[str, torch.Tensor], keys: list[str]) -> str:
    """ResNet generators and the discriminators keep their layers in ``model.<i>``."""
    first = state["model.0.weight"]
    convs = [k for k in keys if k.endswith(".weight") and state[k].ndim == first.ndim]
    kind = "3-D " if first.ndim == 5 else ""
    blocks = {int(k.split(".")[1]) for k in keys if ".body." in k}
    if blocks:
        last = state[convs[-1]]
        return (f"a ResNet generator with {len(blocks)} residual blocks "
                f"(--netG resnet_{len(blocks)}blocks), --ngf {first.shape[0]}, "
                f"--input_nc {first.shape[1]}, --output_nc {last.shape[0]}, {_norm_words(keys)}")
    if first.shape[-1] == 1:
        return (f"a {kind}pixel discriminator (--netD pixel), --ndf {first.shape[0]}, "
                f"{first.shape[1]} input channels, {_norm_words(keys)}")
    return (f"a {kind}PatchGAN discriminator of {len(convs)} convolutions (--n_layers_D "
            f"{len(convs) - 2}), --ndf {first.shape[0]}, {first.shape[1]} input channels, "
            f"{_norm_words(keys)}")


def describe_weights(state: Mapping[str, torch.Tensor]) -> str:
    """One line on the network a state dict belongs to, e.g. ``a U-Net of 6 levels (--netG
    unet_64), --ngf 32, --input_nc 5, --output_nc 1, batch norm, residual output`` (2-D and 3-D
    networks, the motion generator included); a summary of its tensors when it is none of this
    project's networks."""
    residual = bool(state) and all(k.startswith("net.") for k in state)
    inner = {k.removeprefix("net."): v for k, v in state.items()} if residual else dict(state)
    keys = list(inner)
    try:
        if "encoders.0.0.weight" in inner:
            text = _describe_unet(inner, keys)
        elif "field_net.encoders.0.0.weight" in inner:
            text = _describe_motion(inner, keys)
        elif "model.0.weight" in inner:
            text = _describe_sequential(inner, keys)
        else:
            raise KeyError("no known first layer")
    except (KeyError, IndexError, AttributeError):
        shown = ", ".join(f"{k} {tuple(inner[k].shape)}" for k in keys[:2]
                          if isinstance(inner[k], torch.Tensor))
        return f"no network of this project ({len(keys)} tensors{': ' + shown if shown else ''})"
    return f"{text}, residual output (--residual)" if residual else text


def describe_network(net: nn.Module) -> str:
    """:func:`describe_weights` of a built network's own state dict."""
    return describe_weights(net.state_dict())

