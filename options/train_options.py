"""Options of ``train.py``: display, saving, schedule and optimiser."""

from __future__ import annotations

import argparse

from models import networks
from options.base_options import BaseOptions


class TrainOptions(BaseOptions):
    """Base options plus the training ones."""

    is_train = True

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add the training options."""
        parser = super().initialize(parser)
        # bf16 where the CPU has bf16 matrix units (benchmarks/README.md: the step 1.5x faster,
        # same quality); test.py and predict.py keep float32 outputs unless asked.
        parser.set_defaults(amp="auto")
        g = parser.add_argument_group("display")
        g.add_argument("--display_freq", type=int, default=400,
                       help="save training pictures (HTML, visdom, wandb) every N slices")
        g.add_argument("--display_id", type=int, default=0,
                       help="visdom window id; 0 = no visdom (needs the visdom package)")
        g.add_argument("--display_server", default="http://localhost", help="visdom server")
        g.add_argument("--display_env", default="main", help="visdom environment")
        g.add_argument("--display_port", type=int, default=8097, help="visdom port")
        g.add_argument("--print_freq", type=int, default=100,
                       help="log losses every N iterations")
        g.add_argument("--no_html", action="store_true", help="do not write the HTML page")
        g.add_argument("--val_freq", type=int, default=1,
                       help="every N epochs, MAE in HU on the <dataroot>/valA, valB patients "
                            "(motion region, body, whole volume), logged beside the AVG's, and "
                            "a 'best' checkpoint kept by the mean of the model/AVG ratios in the "
                            "motion region and the whole volume; 0 = off")
        g = parser.add_argument_group("augmentation")
        g.add_argument("--augment_intensity", type=float, nargs=3, default=[0.0, 0.0, 0.0],
                       metavar=("NOISE_HU", "BLUR_PX", "OFFSET_HU"),
                       help="per training slice (slice datasets), drawn uniformly up to these: "
                            "Gaussian noise (sigma, HU) on the input AVG alone, an in-plane "
                            "Gaussian blur (sigma, pixels: another reconstruction kernel) and "
                            "an HU offset (+-, calibration) on input and target alike; 0 0 0: "
                            "none")
        g = parser.add_argument_group("saving")
        g.add_argument("--save_latest_freq", type=int, default=5000,
                       help="save the latest checkpoint every N iterations")
        g.add_argument("--save_epoch_freq", type=int, default=5,
                       help="save a checkpoint every N epochs")
        g.add_argument("--save_by_iter", action="store_true",
                       help="also keep iter_<N> checkpoints at each latest save")
        g.add_argument("--continue_train", action="store_true", help="resume from --epoch")
        g.add_argument("--overwrite", action="store_true",
                       help="start anew in a run folder that holds checkpoints: once every "
                            "check has passed, its checkpoints, options, logs and page are "
                            "deleted (without this, such a run is refused)")
        g.add_argument("--allow_data_change", action="store_true",
                       help="with --continue_train: go on although the training patients or "
                            "their files differ from those the training state was saved with "
                            "(without this such a resume is refused); the metadata then "
                            "records the earlier set in patients.train_history")
        g.add_argument("--epoch_count", type=int, default=1,
                       help="first epoch number (when resuming: the next epoch)")
        g.add_argument("--phase", default="train", help="train, val, test, ...")
        g = parser.add_argument_group("schedule")
        g.add_argument("--n_epochs", type=int, default=100, help="epochs at the initial lr")
        g.add_argument("--n_epochs_decay", type=int, default=100,
                       help="epochs to decay the lr linearly to zero")
        g.add_argument("--beta1", type=float, default=0.5, help="Adam beta1")
        g.add_argument("--lr", type=float, default=0.0002, help="initial Adam learning rate")
        g.add_argument("--gan_mode", default="lsgan", choices=sorted(networks.GAN_MODES))
        g.add_argument("--pool_size", type=int, default=50,
                       help="past fakes shown to D (0 = none)")
        g.add_argument("--lr_policy", default="linear", choices=sorted(networks.LR_POLICIES))
        g.add_argument("--lr_decay_iters", type=int, default=50,
                       help="step policy: multiply the lr by 0.1 every N epochs")
        return parser
