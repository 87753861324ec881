"""What each paper used, declared beside the claims: the paper's column of every setup table, which of the settings
are *key* (a difference makes a failing claim "not reproduced at this scale"), whose question a claim is, the
diagnoses with their controls, and the paper tier (``--tier paper``).

Every paper value is taken from ``../shared/REFERENCE.md`` or the seed texts in ``../shared/seeds/`` (the MVAE
paper: seed 004; MEME: 001; the M2 segmentation report: 003; the student MVAE report: 002; LCMVAE: 000) and says
where; a setting they do not state is :data:`NOT_STATED`. modkit's column is never written here: it is read from
the arms' recipes (:mod:`reproductions.setups`). Kept apart from the catalogue so that adding a claim's arms and
declaring its paper stay separate edits; :func:`declared` joins them by claim id.
"""
from __future__ import annotations

import dataclasses

from reproductions.claim_spec import NOT_STATED, Claim, Diagnosis, PaperTier, Setting

# -- rows several claims share ---------------------------------------------------------------------------------


def data(paper: str) -> Setting:
    return Setting("data", paper, "@dataset")


def resolution(paper: str) -> Setting:
    return Setting("image resolution", paper, "@resolution")


def pairs(paper: str, what: str = "paired rows at each x") -> Setting:
    return Setting(what, paper, "@pairs")


def epochs(paper: str) -> Setting:
    return Setting("epochs", paper, "@epochs")


def latent(paper: str, value: int | None) -> Setting:
    return Setting("latent size", paper, "@latent", value, key=value is not None)


def beta(paper: str, anneal_epochs: float | None = None) -> Setting:
    return Setting("β schedule", paper, "@beta", anneal_epochs, key=anneal_epochs is not None)


def batch(paper: str, paired_per_batch: int | None = None) -> Setting:
    return Setting("batch composition", paper, "@batch", paired_per_batch, key=paired_per_batch is not None)


def lr(paper: str) -> Setting:
    return Setting("optimiser", paper, "@lr")


def baseline(paper: str) -> Setting:
    return Setting("baseline (and whether the paper used it)", paper, "@baseline")


def label_weight(paper: str = "λ_label 50, λ_image 1 (§5: 'we set λ1 = 1 and λ2 = 50')", value: float | None = 50) -> Setting:
    return Setting("λ (label weight)", paper, "modalities.label.weight", value, key=value is not None)


#: MVAE on MNIST: the paper (seed 004, §5) and the authors' code (REFERENCE.md)
MVAE_MNIST = (
    data("MNIST: 60,000 training, 10,000 test images"),
    resolution("28×28, 1 channel"),
    label_weight(),
    beta("0 → 1 over 200 epochs (authors' code, REFERENCE.md)", 200),
    latent("64 (authors' code)", 64),
    epochs("500 (authors' code)"),
    batch("100 rows at random (authors' code)"),
    lr("Adam 10⁻³ (authors' code)"),
)

#: the MNIST paper tier of the MVAE claims: the dataset swapped for MNIST, the authors' networks and settings
MNIST_TIER = PaperTier(
    sets=("data.dataset={type: mnist}", "modalities.image.shape=[1,28,28]", "modalities.image.hidden=[512,512]",
          "modalities.label.hidden=[512,512]", "modalities.label.weight=50", "model.latent_dim=64",
          "model.beta={start: 0.0, end: 1.0, anneal_epochs: 200}", "train.epochs=500", "data.batch_size=100"),
    data=(("mnist", "MNIST's idx files, docs/datasets.md#mnist"),))

WEAK_BASELINE = baseline("logistic regression on raw pixels: used (one of Fig. 3's six baselines, §5.1)")

WEAK_DIGITS = [
    Diagnosis("Under MVAE's protocol (`data.unpaired: split`) the unpaired images and labels are shown one modality at "
              "a time, so the label's encoder and decoder also train apart from the image's. The same PoE trained on the "
              "pairs alone for as many optimiser steps comes close to the regression and is far above PoE under the "
              "protocol at every fraction below 1 (its column): on these digits the unimodal rows hurt MVAE rather "
              "than help it.", "poe-pairs-steps"),
]

WEAK_SHAPES = [
    Diagnosis("MVAE's objective never decodes one modality from another's posterior: its single-modality ELBOs "
              "reconstruct each modality from its own encoder, and the joint ELBO lets the label's expert carry the "
              "label, so nothing asks q(z | image) alone to hold it. The control sets the label to the first object's "
              "colour, which dominates the pixels: if PoE still stays at chance from the image while MoPoE (whose "
              "subset ELBOs decode the label from the image's posterior) reads it, the cause is the objective, not "
              "the shape being a small detail of the image.", "shapes-colour-label"),
    Diagnosis("The 12-epoch budget holds the mixture back, not the product: retrained on every pair for 4× the epochs, "
              "MoPoE rises above the regression while PoE stays far below it (the diagnostic columns).", "mopoe-long"),
]

LCMVAE_DIAGNOSES = [
    Diagnosis("With the GRU caption encoder the mixer reads the mask from the caption: the caption-only control "
              "matches the subject, whose mIoU from the image alone drops below the image-only arm's (second table).",
              "caption-only"),
]


M2_SEGMENTATION_DIAGNOSES = [
    Diagnosis("At the paper's α = 1000 the unlabelled images do not move M2's classifier: its mIoU and pixel accuracy "
              "are the supervised arm's on every seed, as α·log q(y|x), summed over the mask's pixels, swamps the "
              "unlabelled ELBO's pull on q(y|x). The control weights the labelled term 100× less (α = 10, at 100 "
              "labelled masks): the classifier then moves, but not up (its column sits below M2's at α = 1000, within "
              "the seeds' spread). On these scenes the unlabelled images raise the classifier at neither weight: a "
              "smaller α is not what the paper's gain needs.", "m2-alpha-10"),
]


def _transforms(what: str) -> dict:
    return {"question": "modkit",
            "setup": (data("CelebA (6 views of each face: original, grayscale, edges, landmark mask, half, watermark)"),
                      resolution(NOT_STATED),
                      latent("250 (§6)", 250), beta("0 → 1 over 20 of 100 epochs (§6)", 20), epochs("100 (§6)"),
                      batch("50 rows at random (§6)"), lr("Adam 10⁻⁴ (§6)"),
                      baseline(f"none: the paper shows {what} qualitatively (Fig. 4) and trains no per-task network"))}


#: claim id → the fields :func:`declared` sets on it
PAPERS: dict[str, dict] = {
    "mvae-weak-supervision": {
        "setup": (*MVAE_MNIST, pairs("the x axis of Fig. 3 is the number of paired examples (values not stated in the "
                                     "text)"), WEAK_BASELINE),
        "diagnoses": WEAK_DIGITS, "paper_tier": MNIST_TIER},
    "mvae-weak-supervision-shapes": {
        "setup": (*MVAE_MNIST, pairs("the x axis of Fig. 3 is the number of paired examples (values not stated in the "
                                     "text)"), WEAK_BASELINE),
        "diagnoses": WEAK_SHAPES},
    # the colour-label control of the shapes diagnosis (declared where the MultiVae peer arms are): modkit's own
    "shapes-colour-label": {
        "question": "modkit",
        "setup": (data("none: the paper has no shapes and no such control"),
                  baseline("logistic regression on the pairs: modkit's own reference"))},
    "meme-partial-observation": {
        "setup": (data("MNIST-SVHN (Appendix H)"), latent("64 (authors' settings, REFERENCE.md)", 64),
                  batch("128 rows at random (authors' settings)"), lr("Adam 5·10⁻⁴ (authors' settings)"),
                  epochs(NOT_STATED), pairs("paired fractions of Appendix H (values not in REFERENCE.md)"),
                  baseline("MVAE: used (Appendix H compares MEME with MVAE and MMVAE)"))},
    "meme-partial-observation-label-only": {
        "setup": (data("MNIST-SVHN (Appendix H)"), latent("64 (authors' settings, REFERENCE.md)", 64),
                  batch("128 rows at random (authors' settings)"), lr("Adam 5·10⁻⁴ (authors' settings)"),
                  epochs(NOT_STATED), pairs("paired fractions of Appendix H (values not in REFERENCE.md)"),
                  baseline("MVAE: used (Appendix H compares MEME with MVAE and MMVAE)"))},
    "m2-semi-supervised": {
        "setup": (data("MNIST: 60,000 training images, the 10,000 validation images untouched (seed 003)"),
                  resolution("28×28, binarised (seed 003)"),
                  pairs("100 labelled images, ten per class; 59,000 unlabelled (seed 003)", "labelled rows at each x"),
                  Setting("α (weight of log q(y|x))", "10 (seed 003)", "model.fusion.alpha", 10, key=True),
                  latent("300 (z, seed 003)", 300),
                  batch("100 unlabelled + 100 labelled in each batch (seed 003)", 100),
                  epochs("10 (seed 003)"), lr("Adam, rate not stated (seed 003)"),
                  baseline("an MLP (two hidden layers of 1000) on the 100 labels: used (75 %, seed 003)")),
        "paper_tier": dataclasses.replace(MNIST_TIER, sets=(
            "data.dataset={type: mnist}", "modalities.image.shape=[1,28,28]", "modalities.image.hidden=[1000,1000]",
            "modalities.label.hidden=[1000,1000]", "model.latent_dim=310", "model.fusion.alpha=10",
            "data.batch_size=200", "data.paired_per_batch=100", "train.epochs=10"), xs=(100 / 60000,))},
    "mvae-likelihood": {
        "setup": (*MVAE_MNIST, baseline("a VAE with the same networks, image only: used (Table 2)")),
        "paper_tier": MNIST_TIER},
    "stability": {
        "plateau": None,
        "setup": (data("MNIST (the student's report, seed 002)"),
                  Setting("learning rate", "Adam 10⁻³ (seed 002)", "train.lr", 0.001, key=True),
                  epochs("NaN near epoch 250 (seed 002)"), baseline("none: the row reports what happened")),
        "paper_tier": dataclasses.replace(MNIST_TIER, sets=tuple(s for s in MNIST_TIER.sets if not s.startswith("train.epochs")))},
    "shapes-flagship": {
        "question": "modkit",
        "setup": (data("none: no paper reports shapes"), epochs(NOT_STATED),
                  baseline("the same model untrained: modkit's own floor"))},
    "lcmvae-captions-segmentation": {
        "setup": (data("COCO, 9 categories (seed 000)"),
                  Setting("image masking while pre-training", "75 % of the ViT tokens (seed 000)", "modalities.image.mask_ratio",
                          0.75, key=True, arm="pre-caption"),
                  Setting("caption-latent loss weight δ", "5·10⁴ (REFERENCE.md)", "model.fusion.aux_weight", 50000.0,
                          key=True, arm="pre-caption"),
                  Setting("β", "50 (REFERENCE.md)", "model.beta.end", 50.0, key=True, arm="pre-caption"),
                  Setting("encoders", "pretrained BERT and ViT-MAE, frozen (seed 000)", "modalities.caption.pretrained",
                          arm="captions"),
                  epochs("25 pre-training + 15 segmentation (REFERENCE.md)"), batch("256 (REFERENCE.md)"),
                  lr("Adam 3·10⁻⁴ (REFERENCE.md)"),
                  baseline("the same model pre-trained without captions: used (Table 6)")),
        "diagnoses": LCMVAE_DIAGNOSES},
    "m2-segmentation": {
        "setup": (data("Pascal VOC: 14,000 unlabelled images, 1,400 with masks; the validation set untouched (seed 003)"),
                  resolution("128×128 (seed 003)"),
                  pairs("1,400 labelled of 14,000 (seed 003)", "labelled masks at each x"),
                  Setting("α (weight of log q(y|x))", "1000 (seed 003)", "model.fusion.alpha", 1000, key=True),
                  batch("8 unlabelled + 8 labelled in each batch (seed 003)", 8),
                  epochs("10 (seed 003)"), lr("Adam, rate not stated (seed 003)"),
                  baseline("Deeplabv3+ (MobileNet) on the 1,400 labelled images: used (IoU 54 %, seed 003); how its "
                           "settings were chosen is not stated")),
        "diagnoses": M2_SEGMENTATION_DIAGNOSES},
    "mvae-vision-transforms-edges": _transforms("edges → image"),
    "mvae-vision-transforms-colourisation": _transforms("colourisation"),
    "mvae-vision-transforms-completion": _transforms("completion"),
    "mvae-vision-transforms-watermark": _transforms("watermark removal"),
    "translation-weak-supervision": {
        "setup": (data("IWSLT'15 English–Vietnamese, 133,000 aligned pairs at 100 % (Table 4)"),
                  pairs("133 (0.1 %), 665 (0.5 %), 1,330 (1 %), 6,650 (5 %), 13,300 (10 %), 133,000 (Table 4)",
                        "aligned pairs at each x"),
                  latent("100 (§7)", 100),
                  Setting("word dropout", "used, rate not stated (§7: 'word dropout and KL annealing are crucial')",
                          "@word_dropout", True, key=True),
                  beta("KL annealing, schedule not stated (§7)"),
                  Setting("maximum sentence length", "70 tokens (§7)", "modalities.caption.max_length"),
                  epochs("100 (§7)"),
                  baseline("the same MVAE with every pair aligned: used (Table 4's 100 % column)"))},
    "polymnist-coherence-by-inputs": {
        "setup": (data("PolyMNIST: 60,000 training and 10,000 test tuples of five views (REFERENCE.md)"),
                  resolution("28×28, 3 channels (REFERENCE.md)"),
                  latent("512 (REFERENCE.md)", 512),
                  Setting("β", "2.5 (REFERENCE.md)", "model.beta.end", 2.5, key=True),
                  Setting("epochs", "300 (REFERENCE.md)", "train.epochs", 300, key=True),
                  Setting("batch size", "256 (REFERENCE.md)", "data.batch_size", 256, key=True),
                  lr("Adam 5·10⁻⁴ (REFERENCE.md)"),
                  baseline("MVAE and MMVAE: used (MoPoE's table compares all three)"))},
    "nineteen-modalities": {
        "question": "modkit",
        "setup": (data("CelebA (§5.2)"), latent("100 (CelebA, authors' code)", 100),
                  beta("0 → 1 over 20 epochs (CelebA, authors' code)", 20), epochs("100 (authors' code)"),
                  baseline("none: the paper reports no attribute accuracy for MVAE19"))},
    "nineteen-modalities-likelihood": {
        "setup": (data("CelebA (Table 2)"), latent("100 (CelebA, authors' code)", 100),
                  beta("0 → 1 over 20 epochs (CelebA, authors' code)", 20), epochs("100 (authors' code)"),
                  lr("Adam 10⁻⁴ (authors' code)"),
                  baseline("MVAE with the 18 attributes as one modality: used (Table 2)"))},
}


def declared(claims: tuple[Claim, ...]) -> tuple[Claim, ...]:
    """The claims with their paper's declarations (those without an entry unchanged)."""
    out = []
    for claim in claims:
        fields = dict(PAPERS.get(claim.id, {}))
        if "diagnoses" in fields:
            fields["diagnoses"] = tuple(fields["diagnoses"])
        out.append(dataclasses.replace(claim, **fields) if fields else claim)
    return tuple(out)
