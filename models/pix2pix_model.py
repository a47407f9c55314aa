"""pix2pix (Isola et al., CVPR 2017): a conditional GAN with an L1 term.

G maps the input slice A to B; D judges (A, B) pairs patch by patch. Loss of G:
lambda_GAN * GAN(D(A, G(A)), real) + lambda_L1 * L1_w(G(A), B); loss of D: the mean of its real
and fake terms (plus the gradient penalty with ``--gan_mode wgangp``). ``L1_w`` is the plain
mean absolute error, or with ``--motion_weight W`` a weighted mean whose pixels that move
(|B - A| above ``--motion_threshold_hu``) count 1 + W times.
"""

from __future__ import annotations

import argparse
import copy
import random
from typing import Any

import torch

from models.base_model import BaseModel
from models.image_pool import ImagePool
from models.networks import (
    GANLoss,
    define_D,
    folding_fraction,
    gradient_penalty,
    is_motion_generator,
    smoothness_loss,
)
from models.settings import RunSettings
from models.trained_run import build_generator
from models.volume_inference import with_phase_planes
from util.distributed import no_grad_sync, unwrap
from util.errors import ConfigError
from util.phases import PHASE_CHANNELS, STANDARD_PHASES
from util.speed import make_adam, step_in_backward

#: G's Adam runs inside G's backward only from this many parameters on (32 MB of float32
#: gradients). Below it the memory saved is small and the per-parameter ``optimizer.step()``
#: calls cost more than they save: +13 % per step for the recipe's ``unet_64``/ngf 32 (3 M
#: parameters), against +3 % for ``unet_256`` (54 M, 218 MB of gradients never held at once).
STEP_IN_BACKWARD_MIN_PARAMS = 8_000_000


class Pix2PixModel(BaseModel):
    """Conditional GAN + L1 for paired slices."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser,
                                   is_train: bool) -> argparse.ArgumentParser:
        """pix2pix defaults: U-Net 256, batch norm; vanilla GAN, no pool, lambda_L1 100."""
        parser.set_defaults(norm="batch", netG="unet_256")
        if is_train:
            parser.set_defaults(pool_size=0, gan_mode="vanilla")
            g = parser.add_argument_group("pix2pix losses and generator average (training)")
            g.add_argument("--lambda_L1", type=float, default=100.0,
                           help="weight of the L1 loss (its unit: the [-1, 1] of the HU window)")
            g.add_argument("--lambda_GAN", type=float, default=1.0,
                           help="weight of the generator's GAN loss (0: L1 only)")
            g.add_argument("--motion_weight", type=float, default=0.0,
                           help="extra L1 weight of pixels that move between input and target "
                                "(|B - A| > --motion_threshold_hu HU): they count 1 + W times")
            g.add_argument("--lambda_consistency", type=float, default=0.0,
                           help="phase-conditioned runs (--phases all): weight of the L1 "
                                "between the mean of the ten phases the generator makes from a "
                                "batch and its input AVG (the AVG is the mean of the phases); "
                                "costs ten more generator passes per step")
            g.add_argument("--ema_decay", type=float, default=0.0,
                           help="keep an exponential moving average of G's weights with this "
                                "decay per optimiser step (e.g. 0.99; 0: off) and validate, "
                                "select and save it as G (the trained weights are saved as "
                                "G_train, for resuming)")
            g.add_argument("--lambda_smooth", type=float, default=1.0,
                           help="motion generators (--netG motion3d_*): weight of the "
                                "smoothness penalty on the displacement field (mean squared "
                                "gradient, voxels per voxel)")
        return parser

    def __init__(self, settings: RunSettings) -> None:
        super().__init__(settings)
        g = settings.generator
        self.loss_names = ["G_GAN", "G_L1", "D_real", "D_fake"]
        self.visual_names = ["real_A", "fake_B", "real_B"]
        self.model_names = ["G", "D"] if self.is_train else ["G"]
        #: Input channels after the image channels: the target phase's planes (--phases).
        self.conditioning_nc = PHASE_CHANNELS if g.phase_input else 0
        self.netG = build_generator(g, settings.init).to(self.device)
        self.real_A: torch.Tensor | None = None
        self.real_B: torch.Tensor | None = None
        self.fake_B: torch.Tensor | None = None
        #: (N, 3, D, H, W) displacement in voxels of a motion generator's last forward pass.
        self.displacement: torch.Tensor | None = None
        self.is_motion = is_motion_generator(self.netG)
        #: The moving average of G's weights (training with --ema_decay), never trained itself.
        self.netG_ema: torch.nn.Module | None = None
        if self.is_motion and self.is_train:
            self.loss_names += ["G_smooth", "fold_pct"]
        if self.is_train:
            self._set_up_training(settings)

    def _set_up_training(self, settings: RunSettings) -> None:
        """D, the losses, the pool of past fakes, the optimisers and G's average of a training
        model."""
        g, d, init = settings.generator, settings.discriminator, settings.init
        losses, schedule = settings.losses, settings.schedule
        self.netD = define_D(g.input_nc + g.output_nc, d.ndf, d.netD, n_layers_D=d.n_layers_D,
                             norm=g.norm, init_type=init.init_type, init_gain=init.init_gain,
                             dims=3 if g.volumetric else 2).to(self.device)
        self.lambda_smooth = losses.lambda_smooth
        self.lambda_consistency = losses.lambda_consistency
        if self.lambda_consistency > 0:
            if not self.conditioning_nc:
                raise ConfigError("--lambda_consistency compares the mean of the synthetic "
                                  "phases with the AVG: it needs a phase-conditioned run "
                                  "(--phases all)")
            self.loss_names.append("G_consistency")
        self.gan_mode = losses.gan_mode
        self.criterionGAN = GANLoss(losses.gan_mode).to(self.device)
        self.lambda_L1, self.lambda_GAN = losses.lambda_L1, losses.lambda_GAN
        self.motion_weight = losses.motion_weight
        self.motion_threshold = (settings.regions.motion_threshold_hu * 2.0
                                 / (g.hu_max - g.hu_min))
        self.centre_channel = (g.input_nc - self.conditioning_nc) // 2  # the AVG slice
        self.fake_AB_pool = ImagePool(schedule.pool_size, random.Random(settings.run.seed))
        betas = (schedule.beta1, 0.999)
        self.optimizer_G = make_adam(self.netG.parameters(), lr=schedule.lr, betas=betas,
                                     device=self.device)
        self.optimizer_D = make_adam(self.netD.parameters(), lr=schedule.lr, betas=betas,
                                     device=self.device)
        self.optimizers = [self.optimizer_G, self.optimizer_D]
        if not 0.0 <= schedule.ema_decay < 1.0:
            raise ConfigError(f"--ema_decay {schedule.ema_decay}: give a decay in [0, 1) "
                              f"(0 switches the average off)")
        self.ema_decay: float = schedule.ema_decay
        if self.ema_decay > 0:
            self.netG_ema = copy.deepcopy(self.netG).requires_grad_(False)
        #: True during G's backward when G's Adam runs inside it (see :meth:`setup`).
        self.g_updates_in_backward = False
        self.g_step_in_backward = False

    def image_pools(self) -> dict[str, ImagePool]:
        """{"fake_AB": the pool of past (A, fake B) pairs shown to D} when training."""
        return {"fake_AB": self.fake_AB_pool} if self.is_train else {}

    def saved_networks(self) -> dict[str, torch.nn.Module]:
        """With ``--ema_decay`` (training): the average as ``G`` (validated, selected, tested),
        the trained weights as ``G_train`` and D; else :meth:`networks`."""
        nets = self.networks()
        if self.netG_ema is None:
            return nets
        return {"G": self.netG_ema, "D": nets["D"], "G_train": nets["G"]}

    def update_ema(self) -> None:
        """Move the average towards G's weights after a G step: ema = d ema + (1 - d) w with
        d = min(ema_decay, (1 + n) / (10 + n)) at G's n-th step (n from G's Adam, so a resumed
        run continues the same sequence); buffers (batch-norm statistics) are copied."""
        if self.netG_ema is None:
            return
        trained = unwrap(self.netG)
        first: dict[str, Any] = next(iter(self.optimizer_G.state.values()), {})
        n = float(first["step"]) if "step" in first else 1.0
        decay = min(self.ema_decay, (1.0 + n) / (10.0 + n))
        with torch.no_grad():
            for avg, w in zip(self.netG_ema.parameters(), trained.parameters(), strict=True):
                avg.lerp_(w, 1.0 - decay)
            for avg_b, b in zip(self.netG_ema.buffers(), trained.buffers(), strict=True):
                avg_b.copy_(b)

    def setup(self) -> None:
        """As :meth:`BaseModel.setup`; then, when G is large (``STEP_IN_BACKWARD_MIN_PARAMS``)
        and trained as a plain module (one process, not compiled) without a gradient scaler,
        G's Adam update runs inside G's backward (:func:`util.speed.step_in_backward`): the
        same weights, without holding all of G's gradients at once."""
        super().setup()
        n_params = sum(p.numel() for p in self.netG.parameters())
        if (self.is_train and unwrap(self.netG) is self.netG
                and not self.grad_scaler.is_enabled()
                and n_params >= STEP_IN_BACKWARD_MIN_PARAMS):
            step_in_backward(self.optimizer_G, lambda: self.g_updates_in_backward)
            self.g_step_in_backward = True

    def set_input(self, batch: dict[str, Any]) -> None:
        """batch: ``A`` (N, input_nc, H, W) slices or (N, input_nc, D, H, W) patches, optional
        ``B`` (N, output_nc, ...) of the same size, in [-1, 1]."""
        self.real_A = self.to_device(batch["A"])
        self.real_B = self.to_device(batch["B"]) if "B" in batch else None

    def forward(self) -> None:
        """fake_B = G(real_A) (and, for a motion generator, its displacement field)."""
        if self.is_motion:
            self.fake_B, self.displacement = self.netG(self.real_A, return_field=True)
        else:
            self.fake_B = self.netG(self.real_A)

    def _step_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(real_A, real_B, fake_B) of the current training step; RuntimeError when the batch
        given to :meth:`set_input` had no ``B`` or :meth:`forward` has not run."""
        if self.real_A is None or self.fake_B is None:
            raise RuntimeError("a training step needs set_input(batch) and forward() first")
        if self.real_B is None:
            raise RuntimeError("a training step needs a target: the batch given to set_input "
                               "has no 'B'")
        return self.real_A, self.real_B, self.fake_B

    def backward_D(self) -> None:
        """D learns to call (A, B) real and (A, G(A)) fake."""
        real_A, real_B, fake_B = self._step_tensors()
        with self.autocast():
            fake_AB = self.fake_AB_pool.query(torch.cat((real_A, fake_B), 1).detach())
            real_AB = torch.cat((real_A, real_B), 1)
            self.loss_D_fake = self.criterionGAN(self.netD(fake_AB), False)
            self.loss_D_real = self.criterionGAN(self.netD(real_AB), True)
            self.loss_D = 0.5 * (self.loss_D_fake + self.loss_D_real)
            if self.gan_mode == "wgangp":
                self.loss_D = self.loss_D + gradient_penalty(self.netD, real_AB, fake_AB)
        self.grad_scaler.scale(self.loss_D).backward()

    def backward_G(self) -> None:
        """G tries to fool D and to match B in L1 (D's weights get no gradient here)."""
        real_A, real_B, fake_B = self._step_tensors()
        with self.autocast(), no_grad_sync(self.netD):
            fake_AB = torch.cat((real_A, fake_B), 1)
            self.loss_G_GAN = self.criterionGAN(self.netD(fake_AB), True) * self.lambda_GAN
            self.loss_G_L1 = weighted_l1(fake_B, real_B, self.l1_weights()) * self.lambda_L1
            self.loss_G = self.loss_G_GAN + self.loss_G_L1
            if self.lambda_consistency > 0:
                self.loss_G_consistency = self.consistency_loss() * self.lambda_consistency
                self.loss_G = self.loss_G + self.loss_G_consistency
            if self.is_motion and self.displacement is not None:
                self.loss_G_smooth = smoothness_loss(self.displacement) * self.lambda_smooth
                self.loss_G = self.loss_G + self.loss_G_smooth
                with torch.no_grad():
                    self.loss_fold_pct = torch.tensor(
                        100.0 * folding_fraction(self.displacement.detach()))
        self.grad_scaler.scale(self.loss_G).backward()

    def consistency_loss(self) -> torch.Tensor:
        """L1 (window units) between the mean over the ten standard phases of G's output for the
        current batch's AVG and that AVG (its centre image channel): the AVG is the mean of the
        phases. One generator pass over the batch repeated with each phase's planes."""
        if self.real_A is None:
            raise RuntimeError("the consistency loss needs set_input(batch) first")
        image = self.real_A[:, :self.real_A.shape[1] - self.conditioning_nc]
        inputs = torch.cat([with_phase_planes(image, p) for p in STANDARD_PHASES])
        outputs = self.netG(inputs, return_field=True)[0] if self.is_motion else self.netG(inputs)
        mean = outputs.float().view(len(STANDARD_PHASES), *image.shape[:1],
                                    *outputs.shape[1:]).mean(dim=0)
        centre = image[:, self.centre_channel:self.centre_channel + 1].float()
        return (mean - centre).abs().mean()

    def l1_weights(self) -> torch.Tensor | None:
        """(N, 1, H, W) per-pixel L1 weights: 1 + motion_weight where |B - A| (centre input
        channel) exceeds the motion threshold; None with ``--motion_weight 0``."""
        if self.motion_weight == 0:
            return None
        if self.real_A is None or self.real_B is None:
            raise RuntimeError("L1 weights need set_input(batch) with a 'B' first")
        centre = self.real_A[:, self.centre_channel:self.centre_channel + 1]
        moving = (self.real_B - centre).abs() > self.motion_threshold
        return 1.0 + self.motion_weight * moving.float()

    def optimize_parameters(self) -> None:
        """One D step then one G step on the current batch (losses scaled with fp16)."""
        with self.autocast():
            self.forward()
        self.set_requires_grad([self.netD], True)
        self.optimizer_D.zero_grad(set_to_none=True)
        self.backward_D()
        self.grad_scaler.step(self.optimizer_D)
        # Gradients are dropped as soon as they are used, not at the next step's zero_grad:
        # G's (4 bytes per parameter, 218 MB for unet_256) would otherwise stay through the
        # next forward and D step, where the step's memory peaks.
        self.optimizer_D.zero_grad(set_to_none=True)
        self.set_requires_grad([self.netD], False)
        self.optimizer_G.zero_grad(set_to_none=True)
        self.g_updates_in_backward = self.g_step_in_backward
        try:
            self.backward_G()
        finally:
            self.g_updates_in_backward = False
        self.grad_scaler.step(self.optimizer_G)  # a no-op when G was updated in backward
        self.optimizer_G.zero_grad(set_to_none=True)
        self.grad_scaler.update()
        self.update_ema()


def weighted_l1(pred: torch.Tensor, target: torch.Tensor,
                weights: torch.Tensor | None) -> torch.Tensor:
    """Mean absolute error, or with ``weights`` (broadcastable to ``pred``, >= 0) the weighted
    mean sum(w |pred - target|) / sum(w): equal to the plain mean when all weights are equal.
    Computed in float32 (also under autocast)."""
    error = (pred.float() - target.float()).abs()
    if weights is None:
        return error.mean()
    weights = weights.expand_as(error)
    return (weights * error).sum() / weights.sum().clamp_min(torch.finfo(error.dtype).tiny)
