"""Motion generator: phase 0 as the AVG CT warped by a predicted dense displacement field, plus
an optional small intensity correction, and the field's regulariser and folding measures.

Conventions. Volumes and fields are in the slice-stack frame (N, C, D, H, W): D axial slices
inferior -> superior, H rows anterior -> posterior, W columns right -> left. A displacement field
``u`` is (N, 3, D, H, W) float32 in voxels, channel 0 along D, 1 along H, 2 along W, and is a
*pull* (resampling) field: the output at voxel p is the input read at p + u(p),
``y(p) = x(p + u(p))``, trilinear, coordinates beyond the volume clamped to its border. A field
of +2 along D therefore moves the anatomy 2 slices inferior. Displacements in mm are ``u`` times
the voxel spacing of each axis.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from util.errors import ConfigError

logger = logging.getLogger(__name__)

#: Output channels of the network inside a MotionGenerator: the field, then the correction.
FIELD_CHANNELS = 3


def _output_layer(net: nn.Module) -> nn.Module:
    """The layer that produces ``net``'s output: its ``output_layer`` attribute (as
    :class:`~models.networks.unet3d.UnetGenerator3d` has), else its last registered 3-D
    convolution."""
    layer = getattr(net, "output_layer", None)
    if isinstance(layer, nn.Module):
        return layer
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)]
    if not convs:
        raise ConfigError(f"{type(net).__name__} has no 3-D convolution to start from zero")
    return convs[-1]


class MotionGenerator(nn.Module):
    """``y = clamp(warp(x, u) + c, -1, 1)`` with ``(u, c) = net(x)``.

    ``net`` maps (N, 1, D, H, W) to (N, 3 (+1), D, H, W) with a linear (unbounded) output: the
    pull field ``u`` in voxels (see the module docstring) and, with ``intensity_correction``, a
    correction ``c`` in the [-1, 1] window units, for what warping cannot do (the AVG's blur).
    The output layer of ``net`` is zeroed here, so the generator starts as the identity
    (u = 0, c = 0); :func:`~models.networks.weight_init.init_weights` keeps it so.
    """

    def __init__(self, net: nn.Module, intensity_correction: bool = True) -> None:
        super().__init__()
        self.field_net = net
        self.intensity_correction = intensity_correction
        self.zero_head()
        from monai.networks.blocks import Warp  # lazily: MONAI takes seconds to import

        with warnings.catch_warnings():  # MONAI says which resampler it uses on every build
            warnings.filterwarnings("ignore", message=".*Warp: Using PyTorch native")
            self.warp = Warp(mode="bilinear", padding_mode="border")

    @property
    def out_channels(self) -> int:
        """Channels ``field_net`` must output: 3, or 4 with the intensity correction."""
        return FIELD_CHANNELS + int(self.intensity_correction)

    @torch.no_grad()
    def zero_head(self) -> None:
        """Zero the weight and bias of ``field_net``'s output layer: u = 0 and c = 0 (the
        identity) whatever the other layers hold."""
        layer = _output_layer(self.field_net)
        for name in ("weight", "bias"):
            param = getattr(layer, name, None)
            if isinstance(param, torch.Tensor):
                param.zero_()

    def forward(self, x: torch.Tensor,
                return_field: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: (N, C, D, H, W) float32 in [-1, 1], channel 0 the volume to warp, the others
        conditioning ``net`` (a phase's planes) -> y (N, 1, D, H, W) float32 in [-1, 1], or
        (y, u) with ``return_field``, u: (N, 3, D, H, W) float32 pull displacement in voxels.

        The warp runs in float32 even under autocast (bf16 grid coordinates would be off by up
        to a voxel beyond 256).
        """
        if x.ndim != 5:
            raise ConfigError(f"the motion generator warps one volume (N, C, D, H, W), got shape "
                              f"{tuple(x.shape)}")
        out = self.field_net(x)
        if out.shape[1] != self.out_channels or out.shape[2:] != x.shape[2:]:
            raise ConfigError(f"the motion generator's network must output "
                              f"{(x.shape[0], self.out_channels, *x.shape[2:])}, got "
                              f"{tuple(out.shape)}")
        u = out[:, :FIELD_CHANNELS].float()
        y = self._warp(x[:, :1].float(), u)
        if self.intensity_correction:
            y = y + out[:, FIELD_CHANNELS:].float()
        y = y.clamp(-1.0, 1.0)
        return (y, u) if return_field else y

    def _warp(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, D, H, W), u: (N, 3, D, H, W) float32 -> y(p) = x(p + u(p)), float32."""
        grid = self.warp.ref_grid  # MONAI caches its grid by shape only: drop a stale one
        if grid is not None and (grid.device != u.device or grid.dtype != u.dtype):
            self.warp.ref_grid = None
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.warp(x, u)


def _check_field(u: torch.Tensor) -> None:
    """Raise ValueError unless u is (N, 3, D, H, W) with every side at least 2."""
    if u.ndim != 5 or u.shape[1] != FIELD_CHANNELS or min(u.shape[2:]) < 2:
        raise ValueError(f"expected a displacement field (N, 3, D, H, W) with sides >= 2, got "
                         f"shape {tuple(u.shape)}")


def smoothness_loss(u: torch.Tensor) -> torch.Tensor:
    """Diffusion regulariser: mean squared forward difference of ``u``, averaged over D, H, W.

    u: (N, 3, D, H, W) float displacement in voxels -> scalar tensor (voxels**2 per voxel**2).
    Forward differences see a voxel-to-voxel (checkerboard) oscillation that central ones (as in
    ``monai.losses.DiffusionLoss``) miss. u = a * d along D gives a**2 / 9.
    """
    _check_field(u)
    terms = [torch.diff(u, dim=axis).pow(2).mean() for axis in (2, 3, 4)]
    return torch.stack(terms).mean()


def jacobian_determinant(u: torch.Tensor) -> torch.Tensor:
    """det(I + grad u) of the map p -> p + u(p) at every voxel.

    u: (N, 3, D, H, W) float displacement in voxels (channel i along axis i of D, H, W) ->
    (N, D, H, W) float: 1 where the field is locally a shift, < 1 where it compresses, > 1 where
    it expands, <= 0 where it folds. Derivatives: central differences inside, one-sided at the
    edges.
    """
    _check_field(u)
    rows = [torch.stack(torch.gradient(u[:, i], dim=(1, 2, 3)), dim=-1) for i in range(3)]
    grad = torch.stack(rows, dim=-2)  # (N, D, H, W, 3, 3): grad[..., i, j] = d u_i / d p_j
    eye = torch.eye(FIELD_CHANNELS, dtype=grad.dtype, device=grad.device)
    return torch.linalg.det(eye + grad)


def folding_fraction(u: torch.Tensor) -> float:
    """Share (0 .. 1) of voxels of ``u`` (N, 3, D, H, W), voxels, where the map folds:
    det(I + grad u) <= 0."""
    with torch.no_grad():
        return float((jacobian_determinant(u.float()) <= 0).float().mean())
