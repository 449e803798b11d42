"""Tricks that adapt to how training is going: adaptive discriminator augmentation (ADA),
whose augmentation probability follows a measure of the critic's overfitting, and top-k
training, whose generator learns only from the fakes the critic scores best."""
from __future__ import annotations

import torch

from gantrix.plugin import (Clash, Finding, GantrixError, Param, ParamError, Policy,
                            distributed, hookimpl, parse_policy, require_augmentable)

ADA_PAPER = ("Karras, Aittala, Hellsten, Laine, Lehtinen & Aila 2020, Training Generative "
             "Adversarial Networks with Limited Data, §2.2 (p < 0.8 does not leak), §3 "
             "(adaptive p)")
TOPK_PAPER = ("Sinha, Zhao, Goyal, Raffel & Odena 2020, Top-k Training of GANs: Improving GAN "
              "Performance by Throwing Away Bad Samples, §3")

#: ADA's pipeline order (pixel blitting, then colour transforms, then corruptions), kept
#: whatever order ``policy`` lists the augmentations in.
ADA_ORDER = ("flip", "translation", "color", "cutout")


# --------------------------------------------------------------------------- ada


class AdaptiveAugmentation(Policy):
    """Adaptive discriminator augmentation, ADA (Karras et al. 2020, §2–3): every image the
    critic sees — real and generated, in critic and generator updates — is augmented with
    probability p, through differentiable augmentations, so the fakes' augmentation is
    differentiated through in the generator's update. The critic then cannot memorise a
    small training set; as long as p stays below about 0.8 the augmented distribution still
    determines the clean one, so the augmentations do not leak into the generated images
    (§2.2). p is not tuned by hand but steered by an overfitting heuristic on the critic's
    outputs on the (augmented) real images:

        r_t = E[sign(D(x_real))]            over the last N critic updates
        p  ← clamp(p + sign(r_t − target) · N·B / speed, 0, max_p)    every N updates

    An overfitting critic is confidently positive on every training image (r_t → 1), so p
    rises; when it no longer is, p falls. N = ``interval`` = 4 critic updates, B their
    batch size (N·B is counted in images as the updates saw them, before any packing),
    ``target`` = 0.6 and ``speed`` = 500,000 images, the number of images over which p can
    climb from 0 to 1 (the paper's 500k), all the paper's defaults. p starts at ``p`` = 0.
    r_t is the mean of sign(D) over every real output of those N updates (each output of a
    patch critic, each pack under ``pac``); it is taken from the critic's shared forward
    pass, and p moves only when a critic update's optimizer step is taken (a look-ahead
    critic's loss under ``unrolled`` does not count). p and the running sums behind r_t are
    checkpointed, so a resumed run has the p of the uninterrupted one. The paper clamps p
    only at 0; ``max_p`` (default 1) caps it, e.g. at 0.8 to stay where the paper's
    pipeline does not leak.

    **The augmentations.** The paper's pipeline has 18 transformations in six groups
    (pixel blitting: x-flip, 90° rotations, integer translation; general geometric;
    colour: brightness, contrast, luma flip, hue, saturation; image-space filtering;
    additive noise; cutout); its default, and best on most data, is "bgc": blitting,
    geometric and colour. gantrix has four differentiable ones (those of ``diffaugment``),
    so ``policy`` is a subset of them joined by ``+``, default ``translation+color``:

    - ``flip``: a left-right mirror of half the images it is applied to (ADA's x-flip, which
      also mirrors with probability ½ when executed); off by default, as it is not
      meaning-preserving for digits or text;
    - ``translation``: an integer shift of up to 1/8 of the image size in each direction
      (ADA's integer translation, same range), zero-filled where ADA pads by reflection;
    - ``color``: DiffAugment's brightness (+U[−0.5, 0.5)), saturation (×U[0, 2)) and
      contrast (×U[0.5, 1.5)) together, as one transformation — ADA draws each of its five
      colour transformations separately, each with probability p, from other ranges;
    - ``cutout``: a zeroed rectangle of half the image size (ADA's cutout, a corruption that
      is not in "bgc").

    No rotations, geometric warps, filtering or noise. Each listed augmentation is
    applied in ADA's order (flip, translation, color, cutout) and independently per image: image
    i gets augmentation a with probability p (its own draw for each a), otherwise passes
    through it unchanged — the paper's rule that every transformation is executed with
    probability p. So with policy ``translation+color`` an image is left as it is with
    probability (1 − p)².

    Images only: the augmentations mean nothing for vectors, so it is an error on vector
    data. The current p is the attribute ``p`` of the trick in the composition
    (``trainer.composition.get("ada").p``); ``p`` on the command line is its initial value.

    Relations: ``diffaugment`` is an error (two augmentation pipelines: the critic would see
    DiffAugment's always-on augmentations on top of ADA's, and r_t would steer p against
    them). ``consistency`` composes: its T applies to the images as the critic sees them
    (already augmented by ADA), in extra critic passes that r_t does not read. ``pac``
    packs the images after they are augmented one by one.
    """

    name = "ada"
    needed_to_sample = False  # it changes only what the critic sees
    summary = "adaptive discriminator augmentation: augment with probability p steered by r_t"
    paper = ADA_PAPER
    params = (
        Param("p", float, 0.0, "the augmentation probability at the start of training",
              low=0.0, high=1.0),
        Param("target", float, 0.6, "the target of r_t = E[sign(D(x_real))] (the paper: 0.6)",
              low=0.0, high=1.0, high_open=True),
        Param("interval", int, 4, "N: critic updates between adjustments of p (the paper: 4)",
              low=1, high=1000),
        Param("speed", int, 500_000,
              "images over which p can rise from 0 to 1 (the paper: 500k)", low=1, high=10**8),
        Param("max_p", float, 1.0, "the largest p (0.8 keeps the paper's pipeline non-leaking)",
              low=0.0, high=1.0, low_open=True),
        Param("policy", str, "translation+color",
              f"augmentations joined by '+': {', '.join(ADA_ORDER)}"),
    )
    conflicts = (Clash("diffaugment",
                       "two augmentation pipelines: the critic would see diffaugment's "
                       "augmentations on every image on top of ada's, and ada's r_t would "
                       "steer p against them; use one of them", ADA_PAPER),)

    def validate(self) -> None:
        self.policy, self.ops = parse_policy(self, ADA_ORDER, order=ADA_ORDER)
        self.config["policy"] = self.policy
        if self.p > self.max_p:
            raise ParamError(f"{self.name}: parameter 'p' got {self.p!r}, above max_p="
                             f"{self.max_p!r}; p starts at most at max_p")

    def __init__(self, **values):
        super().__init__(**values)
        #: since the last adjustment: Σ sign(D(x_real)) (a tensor on the critic's device),
        #: how many outputs it sums, the images and the critic updates they came from.
        self._signs: torch.Tensor | None = None
        self._outputs = 0
        self._images = 0
        self._updates = 0
        #: the critic batch prepared last and its image count, before any packing.
        self._prepared: tuple | None = None
        #: (Σ sign, outputs, images) of the current critic update, committed after its step.
        self._staged: tuple[torch.Tensor, int, int] | None = None

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, C, H, W) with each augmentation of the policy applied to each image with
        probability p (one draw per image and augmentation); differentiable."""
        require_augmentable(self.name, x, self.ops)
        if self.p == 0:
            return x
        for op in self.ops:
            chosen = distributed.rand(x.shape[0], 1, 1, 1, device=x.device) < self.p
            x = torch.where(chosen, op(x), x)
        return x

    def adjust(self) -> None:
        """p ← clamp(p + sign(r_t − target)·images/speed, 0, max_p) with r_t the mean sign of
        the real outputs since the last adjustment; then start the next interval."""
        r = float(self._signs) / self._outputs
        direction = (r > self.target) - (r < self.target)
        self.p = min(max(self.p + direction * self._images / self.speed, 0.0), self.max_p)
        self._signs, self._outputs, self._images, self._updates = None, 0, 0, 0

    @hookimpl
    def gantrix_transform_model(self, model, role, spec):
        if role == "discriminator":
            require_augmentable(self.name, spec, self.ops)
        return None

    @hookimpl
    def gantrix_prepare_batch(self, batch):
        if batch.phase == "discriminator":
            self._prepared = (batch, batch.real.shape[0])
        batch.real = self.augment(batch.real)
        batch.fake = self.augment(batch.fake)

    @hookimpl
    def gantrix_discriminator_terms(self, batch):
        seen, images = self._prepared or (None, None)
        self._prepared = None
        if seen is not batch:  # a batch this trick did not prepare: nothing was packed
            images = batch.batch_size
        signs = distributed.gather_rows(batch.real_logits.detach()).sign()  # r_t of all processes
        self._staged = (signs.sum(dtype=torch.float64), signs.numel(),
                        images * distributed.world_size())
        return None  # r_t only reads the critic's outputs: no term

    @hookimpl
    def gantrix_after_discriminator_step(self, models, step):
        if self._staged is None:
            return
        signs, outputs, images = self._staged
        self._staged = None
        self._signs = signs if self._signs is None else self._signs.to(signs) + signs
        self._outputs += outputs
        self._images += images
        self._updates += 1
        if self._updates == self.interval:
            self.adjust()

    @hookimpl
    def gantrix_log_values(self):
        return {"ada/p": self.p}

    @hookimpl
    def gantrix_state_dict(self):
        state = {"ada/p": self.p, "ada/outputs": self._outputs, "ada/images": self._images,
                 "ada/updates": self._updates}
        if self._signs is not None:
            state["ada/signs"] = self._signs
        return state

    @hookimpl
    def gantrix_load_state_dict(self, state):
        if "ada/p" in state:
            self.p = float(state["ada/p"])
            self._signs = state.get("ada/signs")
            self._outputs = int(state["ada/outputs"])
            self._images = int(state["ada/images"])
            self._updates = int(state["ada/updates"])
            self._staged = None


# --------------------------------------------------------------------------- top-k


def _rows(t, keep: torch.Tensor, n: int):
    """Rows ``keep`` of a per-fake tensor ``t`` whose n scored units have t.shape[0] / n rows
    each (one sample, or the m samples of a pack: pack p is rows p·m … p·m + m − 1); anything
    else (not a tensor, a scalar, another length) as it is."""
    if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] % n:
        return t
    return t.unflatten(0, (n, -1))[keep].flatten(0, 1)


class TopK(Policy):
    """Top-k training (Sinha et al. 2020, §3): in each generator update only the k fakes the
    critic scores best contribute to the generator's loss; the others, which the critic
    already rejects, would pull the generator towards the regions they sit in rather than
    towards the data. With f₁ ≥ f₂ ≥ … the critic's scores of the batch's fakes (sorted),
    the generator minimises its loss L_G on f₁ … f_k only:

        k_t = ⌊max(γ^e, ν) · k₀⌋,   e = ⌊t / every⌋   (at least 1)

    k starts at k₀ = the fakes the critic scores (the batch size B; ``k`` sets a smaller
    start) and is multiplied by γ = ``gamma`` = 0.99 every ``every`` generator updates, down
    to the floor ν·k₀, ν = ``nu`` = 0.5 (the paper's defaults; rounded down, as the
    authors' code does). The paper anneals once per epoch; here an "epoch" is ``every``
    generator updates (t counts generator updates, the critic's don't count): set it to
    your data's size / batch size to follow the paper (CIFAR-10 at B = 64: 782). The default
    100 reaches the floor (69 decays at γ = 0.99) at update 6,900, within gantrix's 12,000
    updates on points. k₀ = B with ``gamma=1`` keeps every fake (no top-k).

    "Best" is the highest score: every gantrix loss trains the critic to score real samples
    above fakes, so the top-k are the fakes that look most real to it; a critic with several
    outputs per sample (a patch critic) scores a sample by their mean. Scores come from the
    critic's shared forward pass on the fakes as it sees them (augmented by ``diffaugment``
    or ``ada``, noised by ``instance-noise``). The selection is not differentiated: the
    loss's gradient reaches the kept fakes, the others get none from it.

    Only the loss is narrowed, during its computation, so it works with every loss: the
    generator's extra terms (``infogan``'s codes, ``mode-seeking``, an auxiliary classifier)
    still see every fake. A loss that reads the critic's real outputs in the generator's
    update (the relativistic ones: RSGAN pairs real i with fake i, the averaged ones need as
    many reals as fakes) gets the kept fakes' partners: the generator update's real batch
    is narrowed to the same positions — a uniformly random k of the B reals, since they
    were drawn independently of the fakes. Critic updates are untouched.

    Under ``pac`` a fake is a pack: the critic scores packs of m samples, so top-k keeps
    the k best packs (k₀ = B/m packs, and ``k`` counts packs), never a sample without its
    pack. ``k`` above the batch size is an error before training; under ``pac`` a ``k``
    above B/m stops the first generator update. With N processes (``--nproc``, torchrun)
    each process keeps the best of its own B/N fakes (k counts per process), so the run is
    not the one-process run (the checker warns).
    """

    name = "top-k"
    #: each process keeps the best of its own slice (k/N of its B/N fakes)
    provides = (distributed.PER_RANK_BATCH,)
    needed_to_sample = False  # it changes only the generator's training signal
    summary = "top-k training: the generator's loss uses only the k fakes the critic rates best"
    paper = TOPK_PAPER
    params = (
        Param("gamma", float, 0.99, "the factor k is multiplied by every `every` updates",
              low=0.0, high=1.0, low_open=True),
        Param("nu", float, 0.5, "the floor of k as a fraction of its start (the paper: 0.5)",
              low=0.0, high=1.0, low_open=True),
        Param("every", int, 100, "generator updates per decay of k (the paper: one epoch)",
              low=1, high=10**6),
        Param("k", int, None, "k at the start (default: every fake of the batch)", low=1,
              optional=True, high=10**6),
    )

    #: k of the last generator update (logged; None before the first)
    last_k: int | None = None

    @hookimpl
    def gantrix_log_values(self):
        return None if self.last_k is None else {"top-k/k": self.last_k}

    def k_at(self, step: int, n: int) -> int:
        """k at generator update ``step`` of a batch whose critic scores ``n`` fakes."""
        start = n if self.k is None else self.k
        if start > n:
            raise GantrixError(f"top-k: k={start} is more than the {n} fakes the critic scores "
                               f"in this generator update; use k <= {n} (under pac k counts "
                               "packs), or none to start at all of them")
        return max(int(max(self.gamma ** (step // self.every), self.nu) * start), 1)

    @hookimpl
    def gantrix_check_settings(self, batch_size, processes):
        local = batch_size // processes  # what each process's update scores
        if self.k is None or self.k <= local:
            return None
        each = f" (each of {processes} processes)" if processes > 1 else ""
        return [Finding("error", f"top-k: k={self.k} is more than the batch size {local}{each}: "
                        f"a generator update has only {local} fakes to keep the best of; "
                        f"use k <= {local}, or none to start at the batch size",
                        (self.name,), self.paper)]

    @hookimpl(wrapper=True)
    def gantrix_generator_loss(self, batch):
        """Around the loss trick's answer: its fake outputs (and fake samples) narrowed to the
        top k while it computes, the real batch to their partners."""
        outputs = batch.outputs("fake")  # the shared forward pass the loss makes anyway
        logits = outputs["logits"]
        n = logits.shape[0]
        k = self.last_k = self.k_at(batch.step, n)
        if k == n:
            return (yield)
        keep = torch.topk(logits.detach().reshape(n, -1).float().mean(1), k).indices
        batch.real = _rows(batch.real, keep, n)
        batch.labels = _rows(batch.labels, keep, n)
        real_inputs = batch.critic_inputs["real"]
        real_inputs.update({key: _rows(v, keep, n) for key, v in real_inputs.items()})
        whole, fake = dict(outputs), batch.fake
        outputs.update({key: _rows(v, keep, n) for key, v in whole.items()})
        batch.fake = _rows(fake, keep, n)
        try:
            return (yield)
        finally:
            outputs.update(whole)
            batch.fake = fake


@hookimpl
def gantrix_register_tricks(register):
    register(AdaptiveAugmentation)
    register(TopK)
