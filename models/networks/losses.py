"""Adversarial losses by name (``--gan_mode``) and the WGAN-GP gradient penalty."""

from __future__ import annotations

import torch
from torch import nn

from models.networks._lookup import lookup

#: ``--gan_mode`` name -> criterion comparing logits with 1/0 targets (None: Wasserstein, which
#: uses the critic's mean output instead). vanilla: Goodfellow et al. (2014) with logits;
#: lsgan: Mao et al. (2017); wgangp: Gulrajani et al. (2017), with :func:`gradient_penalty`.
GAN_MODES: dict[str, type[nn.Module] | None] = {
    "vanilla": nn.BCEWithLogitsLoss,
    "lsgan": nn.MSELoss,
    "wgangp": None,
}


class GANLoss(nn.Module):
    """Adversarial loss of a discriminator's raw output (no sigmoid in the network).

    ``loss(prediction, target_is_real)``: prediction (N, 1, h, w) or any shape, float logits;
    returns a scalar. The targets are buffers (they follow ``.to(device)``) expanded to the
    prediction's shape.
    """

    real_label: torch.Tensor
    fake_label: torch.Tensor

    def __init__(self, gan_mode: str, real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        criterion = lookup(GAN_MODES, gan_mode, "--gan_mode")
        self.gan_mode = gan_mode
        self.criterion = None if criterion is None else criterion()
        self.register_buffer("real_label", torch.tensor(real_label))
        self.register_buffer("fake_label", torch.tensor(fake_label))

    def target_like(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """The real or fake label expanded to ``prediction``'s shape (a view, no copy)."""
        label = self.real_label if target_is_real else self.fake_label
        return label.to(prediction.dtype).expand_as(prediction)

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """Scalar loss pushing ``prediction`` towards real (True) or fake (False)."""
        if self.criterion is None:
            mean = prediction.mean()
            return -mean if target_is_real else mean
        return self.criterion(prediction, self.target_like(prediction, target_is_real))

    def extra_repr(self) -> str:
        return f"gan_mode={self.gan_mode!r}"


def gradient_penalty(netD: nn.Module, real: torch.Tensor, fake: torch.Tensor, *,
                     lambda_gp: float = 10.0) -> torch.Tensor:
    """WGAN-GP term ``lambda_gp * E[(||grad_x D(x)||_2 - 1)**2]`` (Gulrajani et al. 2017).

    x are random points on the segments between ``real`` and ``fake`` samples, with one uniform
    weight per sample. real, fake: (N, C, H, W) float, same shape; the returned scalar keeps the
    graph to ``netD``'s parameters (so it can be added to the discriminator's loss), but none
    flows back into ``fake``.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(alpha_shape, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    out = netD(mixed)
    (grad,) = torch.autograd.grad(outputs=out, inputs=mixed, grad_outputs=torch.ones_like(out),
                                  create_graph=True)
    # The small constant keeps the square root differentiable where a gradient is exactly 0.
    norm = (grad.flatten(1).pow(2).sum(dim=1) + 1e-12).sqrt()
    return lambda_gp * (norm - 1.0).pow(2).mean()
