"""Classification architectures by name, and the layouts of Gal et al. 2017's CNN: no torch.

The names are what a campaign's settings are checked against (``campaign.config``,
``campaign.model_settings``) before any model is built, so an argument error answers without
importing torch; :mod:`activelabel.pipeline.model` builds the networks these names name.
"""

from __future__ import annotations

from dataclasses import dataclass

SMALL_CNN = "small_cnn"
GAL_CNN = "gal_cnn"
GAL_CNN_KERAS = "gal_cnn_keras"


@dataclass(frozen=True)
class GalLayout:
    """One layout of Gal et al. 2017's CNN: conv(32, k x k) - ReLU - conv(32, k x k) - ReLU -
    max-pool(p x p) - dropout - dense(hidden) - ReLU - dropout - dense(C)."""

    kernel: int
    pool: int
    hidden: int

    def pooled_side(self, side: int) -> int:
        """Side of the pooled feature map for an input side (two valid convolutions, then the pool)."""
        return (side - 2 * (self.kernel - 1)) // self.pool

    @property
    def min_side(self) -> int:
        """The smallest image side that leaves one pooled pixel."""
        return 2 * (self.kernel - 1) + self.pool


#: ``gal_cnn``: the paper's text (Sec. 5.1: 4x4 kernels, 2x2 pool, dense 128). ``gal_cnn_keras``: the
#: authors' code (``Riashat/Deep-Bayesian-Active-Learning``, ``MC_Dropout_Keras/
#: Dropout_Bald_Q10_N1000_Paper.py``: ``nb_conv = 3``, ``nb_pool = 5``, ``Dense(256)``).
GAL_LAYOUTS = {GAL_CNN: GalLayout(kernel=4, pool=2, hidden=128), GAL_CNN_KERAS: GalLayout(kernel=3, pool=5, hidden=256)}
TORCHVISION_ARCHITECTURES = ("resnet18", "mobilenet_v3_small", "efficientnet_b0")
ARCHITECTURES = (SMALL_CNN, GAL_CNN, GAL_CNN_KERAS, *TORCHVISION_ARCHITECTURES)
#: Classifiers with batch-norm layers: their training skips a last batch of one sample, so the
#: step plan (``training_plan.planned_epochs``) must know before a network is built (progress
#: totals, the raised-epochs note). Gal et al.'s CNNs have none. Kept true to the networks by a
#: test against ``pipeline.training.uses_batch_norm``; the training loop itself asks the network.
BATCH_NORM_ARCHITECTURES = (SMALL_CNN, *TORCHVISION_ARCHITECTURES)
#: gal_cnn: two valid 4x4 convolutions and a 2x2 max-pool need images of at least this side.
GAL_CNN_MIN_SIDE = GAL_LAYOUTS[GAL_CNN].min_side
