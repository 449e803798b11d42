"""Extra terms of the critic's loss that regularize what it outputs rather than its
gradient: consistency under augmentation (CR, bCR), the LeCam distance to moving anchors,
and noisy labels (label flipping).

Each reads the critic's shared outputs on the batch (`Batch.real_logits`,
`Batch.fake_logits`) and runs the critic again only on inputs of its own (`Batch.critic`).
All three only train the critic: a run trained with them samples without this plugin.
"""
from __future__ import annotations

import torch

from gantrix.plugin import (AUGMENTATIONS, Clash, Param, ParamError, Regularizer, Requires,
                            augment_images, distributed, hookimpl, parse_policy,
                            require_augmentable)

CR_PAPER = ("Zhang, Zhang, Odena & Lee 2020, Consistency Regularization for Generative "
            "Adversarial Networks, §3, Algorithm 1")
BCR_PAPER = "Zhao et al. 2021, Improved Consistency Regularization for GANs, §3.1 (bCR)"
LECAM_PAPER = ("Tseng, Jiang, Liu, Yang & Yang 2021, Regularizing Generative Adversarial "
               "Networks under Limited Data, §3, eq. 3")
GANHACKS = ("Chintala, Denton, Arjovsky & Mathieu 2016, How to Train a GAN? Tips and tricks "
            "to make GANs work (ganhacks), trick 6: use soft and noisy labels")


class Consistency(Regularizer):
    """Consistency regularization (CR, Zhang et al. 2020) and its balanced form (bCR, Zhao et
    al. 2021): the critic should score an image and a semantics-preserving augmentation T of
    it alike, so it learns what the images show rather than how they happen to be laid out.
    Added to the critic's loss:

        CR  (balanced=false):  λ_real · E_x[(D(x) − D(T(x)))²]
        bCR (balanced=true):   λ_real · E_x[(D(x) − D(T(x)))²]
                             + λ_fake · E_z[(D(G(z)) − D(T(G(z))))²]

    with λ_real = ``weight`` = 10 and λ_fake = ``fake_weight`` = 10, the papers' defaults.
    D is the critic's raw output (its logits, as the loss sees them). Each sample's cost is
    the squared difference of its two outputs (the mean over them for a critic with several
    outputs per sample), averaged over the batch. D(x) and D(G(z)) are the critic's shared
    forward passes on the batch; D(T(·)) is one more pass per side, conditioned like that
    side (class labels under ``cgan``). Each update draws a fresh T per image.

    D(x) is not detached: the cost trains the critic through both of its outputs, as CR's
    Algorithm 1 (and its code) does. bCR regularizes the fakes too because CR on the real
    images alone lets the generator learn the augmentation's artifacts (Zhao et al. 2021).

    T is ``policy``: gantrix's augmentations (those of ``diffaugment``) joined by ``+``. The
    CR paper's T is a random horizontal flip and a shift of a few pixels
    (``policy=flip+translation``); the default is the shift alone (``translation``: up to
    1/8 of the size, zero-filled), which keeps the meaning of every kind of image, where a
    flip does not (digits, text). ``cutout`` and ``color`` may be added.

    Images only: T means nothing for vectors, so it is an error on vector data. Under
    ``diffaugment`` T applies to the images as the critic sees them (already augmented).
    With ``lazy-regularization`` it is computed every k-th critic update, times k.
    """

    name = "consistency"
    needed_to_sample = False  # it changes only the critic's training
    summary = "CR / bCR: lambda * E[(D(x) - D(T(x)))^2] on real (and fake) images, T a shift"
    paper = CR_PAPER + "; " + BCR_PAPER
    params = (
        Param("weight", float, 10.0, "lambda_real: the weight of the cost on real images",
              low=0.0, high=1e4),
        Param("balanced", bool, False, "bCR: also regularize the generated images"),
        Param("fake_weight", float, 10.0,
              "lambda_fake: the weight of the cost on generated images (balanced=true only)",
              low=0.0, high=1e4),
        Param("policy", str, "translation",
              f"T: augmentations joined by '+': {', '.join(AUGMENTATIONS)}"),
    )

    def validate(self) -> None:
        self.policy, self.ops = parse_policy(self)
        self.config["policy"] = self.policy
        default = next(p.default for p in self.params if p.name == "fake_weight")
        if not self.balanced and self.fake_weight != default:
            raise ParamError(f"{self.name}: parameter 'fake_weight' got {self.fake_weight!r}, "
                             "but it weighs the generated images' cost, which only "
                             "balanced=true adds (bCR)")

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """T(``x``): images (N, C, H, W) through every op of the policy, drawn per image."""
        return augment_images(self.name, self.ops, x)

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role == "discriminator":
            require_augmentable(self.name, spec, self.ops, "compares the critic's outputs on "
                                f"an image and on an augmented copy of it ({self.policy})")
        return None

    def _cost(self, batch, side: str, augment) -> torch.Tensor:
        """E[(D(x) − D(T(x)))²] on ``side``: D(x) shared, T(x) drawn by ``augment``."""
        logits = batch.outputs(side)["logits"]
        moved = batch.critic(augment(batch.sample(side).detach()), side)
        return (logits - moved).square().mean()

    def d_term(self, batch, augment=None):
        """The cost on ``batch``; ``augment`` (images → images) fixes T, which is otherwise
        the policy drawn afresh for each side."""
        augment = augment or self.augment
        cost = self.weight * self._cost(batch, "real", augment)
        if self.balanced:
            cost = cost + self.fake_weight * self._cost(batch, "fake", augment)
        return cost


class LeCam(Regularizer):
    """LeCam regularization (Tseng et al. 2021, eq. 3): keep the critic's outputs on real
    data near the moving average of its outputs on fakes, and vice versa,

        R_LC = E_x[(D(x) − α_F)²] + E_z[(D(G(z)) − α_R)²],

    added to the critic's loss as λ·R_LC, where α_R and α_F are exponential moving averages
    of the critic's mean output on the real and on the generated batch. D is the critic's
    raw output (its logits), the anchors are moving averages of those logits; they are
    constants in the term (no gradient through them). The paper ties the regularized
    objective to the LeCam (triangular) divergence, which it finds more robust when data is
    limited; in practice the term keeps a critic that memorises a small training set from
    driving its outputs on real and fake data ever further apart.

    The anchors move at every critic update, before the term is taken on that update's batch
    (as in the paper's code): α ← β·α + (1 − β)·mean D, debiased as the paper's StyleGAN2
    code does (started at 0 and divided by 1 − βᵗ after t updates, so the first anchors are
    the first batch's means and every update counts by its weight; its BigGAN code instead
    follows the batch means for 1000 iterations, then averages without debiasing). They
    move only when a critic update's optimizer step is taken: a look-ahead critic's loss
    (``unrolled``) does not move them, and under ``lazy-regularization`` they move at every
    update while the term is computed every k-th, times k. They are checkpointed, so a
    resumed run has the anchors of the uninterrupted one.

    λ = ``weight`` = 0.3 is the paper's setting for BigGAN on CIFAR; its StyleGAN2 scripts
    use far smaller ones (1e-6 on CIFAR, 3e-7 on FFHQ). β = ``decay`` = 0.99. The paper's
    code squares only the part of each difference that points past the anchor
    (ReLU(D(x) − α_F)², ReLU(α_R − D(G(z)))²); this trick takes eq. 3 as printed, both
    sides squared.
    """

    name = "lecam"
    needed_to_sample = False  # it keeps only training state
    summary = "LeCam: lambda * (E[(D(x) - ema D(fake))^2] + E[(D(G(z)) - ema D(real))^2])"
    paper = LECAM_PAPER
    params = (
        Param("weight", float, 0.3,
              "lambda: the term's weight (the paper: 0.3 for BigGAN on CIFAR)", low=0.0, high=1e4),
        Param("decay", float, 0.99, "beta: the anchors' moving-average decay per critic update",
              low=0.0, high=1.0, high_open=True),
    )

    def __init__(self, **values):
        super().__init__(**values)
        #: the biased moving averages (real, fake), at least float32, started at 0.
        self._ema: torch.Tensor | None = None
        #: the critic updates the anchors hold.
        self.updates = 0
        #: the averages after the current critic batch, committed after its optimizer step.
        self._staged: tuple[torch.Tensor, int] | None = None

    @property
    def anchors(self) -> torch.Tensor | None:
        """(α_R, α_F) after the critic updates so far; None before the first."""
        return None if self._ema is None else self._ema / (1.0 - self.decay ** self.updates)

    def stage(self, batch) -> torch.Tensor:
        """(α_R, α_F) moved by ``batch``'s mean outputs, kept until the update's step commits
        them. Depends only on the committed anchors and the batch, so asking again for the
        same batch gives the same anchors."""
        real = distributed.gather_rows(batch.real_logits.detach())
        fake = distributed.gather_rows(batch.fake_logits.detach())
        dtype = torch.promote_types(real.dtype, torch.float32)  # no half-precision averages
        means = torch.stack([real.to(dtype).mean(), fake.to(dtype).mean()])
        old = torch.zeros_like(means) if self._ema is None else self._ema.to(means)
        ema = self.decay * old + (1.0 - self.decay) * means
        self._staged = (ema, self.updates + 1)
        return ema / (1.0 - self.decay ** (self.updates + 1))

    def d_term(self, batch):
        """λ·R_LC on ``batch``, around the anchors moved by its own means (`stage`)."""
        alpha_real, alpha_fake = self.stage(batch)
        return self.weight * ((batch.real_logits - alpha_fake).square().mean()
                              + (batch.fake_logits - alpha_real).square().mean())

    @hookimpl
    def gantrix_discriminator_terms(self, batch):
        self.stage(batch)  # every critic update moves the anchors, lazy or not
        return self._lazy(batch, self.d_term)

    @hookimpl
    def gantrix_after_discriminator_step(self, models, step):
        if self._staged is not None:
            self._ema, self.updates = self._staged
            self._staged = None

    @hookimpl
    def gantrix_state_dict(self):
        if self._ema is None:
            return None
        return {"lecam/ema": self._ema, "lecam/updates": self.updates}

    @hookimpl
    def gantrix_load_state_dict(self, state):
        if "lecam/ema" in state:
            self._ema = state["lecam/ema"]
            self.updates = int(state["lecam/updates"])
            self._staged = None


class LabelFlip(Regularizer):
    """Noisy labels by flipping (ganhacks, trick 6: "occasionally flip the labels when
    training the discriminator"): in each critic update, a random fraction p = ``p`` = 0.05
    of the batch's positions have their targets swapped: at a flipped position i the real
    sample x_i is scored against the fake target and the generated sample G(z_i) against the
    real one. The same positions flip on both sides, so the update still sees as many real
    as fake targets. Each position flips with probability p, drawn from torch's global
    random generator (seeded and checkpointed by the trainer); generator updates are never
    flipped.

    Only a loss with targets has labels to flip (tag ``target-labels``: minimax and
    nonsaturating, BCE with targets 1 and 0; lsgan, least squares with targets 1 and 0).
    Such a loss is a mean over samples, mean ℓ(r, 1) + mean ℓ(f, 0) on the critic's logits r
    and f, and for both ℓ(x, 0) − ℓ(x, 1) = x + c: softplus(x) − softplus(−x) = x for BCE,
    ½x² − ½(x − 1)² = x − ½ for least squares. So flipping the set F of the B positions
    changes the loss by exactly

        (1/B) · Σ_{i∈F} (r_i − f_i)      (the constants c cancel: as many flips on each side),

    which this trick adds to the critic's loss, logged under its name: the loss's own term
    for each flipped sample is replaced by its term for the other target, and the loss
    trick itself is untouched. With several outputs per sample (a patch critic) each
    output of a flipped sample flips. A packed critic (``pac``) flips whole packs.

    wgan and hinge score the critic's raw output against no target, so there is nothing to
    flip: an error. With ``label-smoothing`` (real target t) the combination runs, but the
    smoothing's term applies to every real sample, so a flipped real's target is t − 1 and a
    flipped fake's is 1, not 0 and t: a warning.
    """

    name = "label-flip"
    summary = "noisy labels: swap the real/fake targets of a fraction p of each critic batch"
    paper = GANHACKS
    params = (Param("p", float, 0.05, "the fraction of each critic batch whose targets are swapped",
                    low=0.0, high=0.5, high_open=True),)
    requires = (Requires("target-labels",
                         "it swaps the real and fake targets of the loss (BCE's or least "
                         "squares' 1 and 0); wgan and hinge score the critic's output against "
                         "no target, so there is no label to flip", GANHACKS),)
    conflicts = (Clash("label-smoothing",
                       "label-smoothing moves the real target of every real sample, flipped "
                       "ones too: a flipped real's target becomes t - 1 instead of 0, and a "
                       "flipped fake's becomes 1 instead of t", GANHACKS, severity="warning"),)

    def d_term(self, batch, flip: torch.Tensor | None = None):
        """The change of the loss on ``batch`` when the positions ``flip`` (a boolean mask
        over the batch) swap targets; without it each position flips with probability p."""
        real, fake = batch.real_logits, batch.fake_logits
        if flip is None:
            flip = distributed.rand(real.shape[0], device=real.device) < self.p
        mask = flip.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
        return (mask * (real - fake)).mean()

    @hookimpl
    def gantrix_discriminator_terms(self, batch):
        return {self.name: self.d_term(batch)}  # part of the loss: never lazy


@hookimpl
def gantrix_register_tricks(register):
    for cls in (Consistency, LeCam, LabelFlip):
        register(cls)
