"""The field's most reported comparison: PolyMNIST coherence by the number of given modalities (MoPoE's table),
MVAE, MMVAE, MoPoE and MMVAE+ on the offline PolyMNIST stand-in.

Kept apart from :mod:`reproductions.claims` (which appends it to ``CLAIMS``). The stand-in is drawn in memory by
the polymnist dataset plugin (``data.dataset.standin``, docs/datasets.md), so the claim needs nothing on disk; the
arms are the repository's paper-configured PolyMNIST recipes (recipes/polymnist-*.yaml, MMVAE+'s included) with the
stand-in's size and budget set on top. Paper numbers
are quoted from ``../shared/REFERENCE.md``.
"""
from __future__ import annotations

from reproductions.claim_spec import Arm, Claim

#: the stand-in's size: training tuples from scikit-learn's 1,348 training digit images, test tuples from the 449
#: others (modkit_polymnist.standin); PolyMNIST has 60,000 and 10,000
STANDIN = "data.dataset.standin={train: 1500, test: 300}"
#: the budget that lets 4 arms × 3 seeds train in about an hour of one core's CPU time (measured per 1,000 tuples and
#: epoch: MoPoE 4 s, MVAE 6 s, MMVAE 10 s, MMVAE+ about as much; each evaluation over all 31 subsets about 20 s);
#: batch 32 rather than the paper's 256 and Adam 1e-3 rather than 5e-4, the same for every arm, so the few epochs
#: are as many optimiser steps, and as large, as the budget allows
EPOCHS = 20
SETS = (STANDIN, f"train.epochs={EPOCHS}", "data.batch_size=32", "train.lr=0.001")
#: MVAE's recipe anneals β over the first 20 of its 300 epochs; over 20 epochs that share is one epoch
MVAE_SETS = (*SETS, "model.beta={start: 0.0, end: 1.0, anneal_epochs: 1}")
QUICK = ("data.dataset.standin={train: 200, test: 60}", "train.epochs=1")  # the judges' PCA needs ≥ 128 rows

#: MoPoE's table: the coherence of a held-out view given every subset of k others, so every subset is evaluated
BY_INPUTS_EVAL = {"metrics": ["coherence"], "subsets": "all", "joint_samples": 100}
BY_INPUTS_QUICK_EVAL = {"metrics": ["coherence"], "subsets": "all", "joint_samples": 10, "max_items": 40, "judge_rows": 200}

PAPER_SETUP = ("MoPoE's PolyMNIST (REFERENCE.md): 60,000 training tuples of five 28×28 RGB views (an MNIST digit over "
               "a crop of each view's background photo), latent 512, β = 2.5, batch 256, Adam 5e-4, 300 epochs, Laplace "
               "likelihood scale 0.75; coherence read from the generated view by a pretrained digit classifier")
STANDIN_SETUP = (f"The stand-in (docs/datasets.md, polymnist): 1,500 training and 300 test tuples of five 28×28 RGB "
                 f"views, each view a different one of scikit-learn's 8×8 digits upsampled to 20×20 over a random crop "
                 f"of one of five procedural textures, the test tuples' digits never seen in training; {EPOCHS} epochs "
                 f"at batch 32 and Adam 1e-3 (about 940 optimiser steps; the paper's 300 epochs at batch 256 are about "
                 f"70,000); the recipes' own latent sizes, β and likelihoods (MVAE's β annealed over its first epoch "
                 f"instead of 20); judges: a logistic regression per view on 128 principal components of its pixels, "
                 f"fitted once on the stand-in's real training tuples (their accuracy on the test tuples is the "
                 f"ceiling, reported below), one latent draw per test item and subset")

POLYMNIST_CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="polymnist-coherence-by-inputs",
        title="PolyMNIST coherence by the number of given modalities: MoPoE against MVAE, MMVAE and MMVAE+",
        source="Sutter, Daunhawer & Vogt 2021 (MoPoE), PolyMNIST coherence by number of inputs; MMVAE+ (Palumbo et "
               "al. 2023) as a fourth arm",
        statement="A mixture of subset products (MoPoE) generates a held-out view that shows the given digit more "
                  "often than the product of experts (MVAE) and the mixture of experts (MMVAE), and more so the "
                  "more views it is given: MoPoE's coherence rises with the number of inputs, while a mixture of "
                  "unimodal posteriors (MMVAE) cannot use a second input to sharpen its sample.",
        paper_number="MoPoE's coherence given 1/2/3/4 modalities: 66/77/81/83 %, MultiVae's rerun 67/79/84/85 "
                     f"(REFERENCE.md; MVAE's and MMVAE's rows of the paper are not quoted there). Paper setup: "
                     f"{PAPER_SETUP}. {STANDIN_SETUP}",
        metric="coherence/given_{x}",
        metric_label="sampled coherence of a held-out view given x others: z ~ q(z | the x views), the held-out view "
                     "decoded and its digit read by the fixed judge, class-balanced accuracy averaged over every "
                     "subset of x views and every view they leave out (chance 0.10)",
        arms=(
            Arm("mvae", "polymnist-mvae.yaml", MVAE_SETS, label="MVAE (PoE)"),
            Arm("mmvae", "polymnist-mmvae.yaml", SETS, label="MMVAE (MoE)"),
            Arm("mopoe", "polymnist-mopoe.yaml", SETS, label="MoPoE"),
            Arm("mmvae_plus", "polymnist-mmvae_plus.yaml", SETS, label="MMVAE+"),
            Arm("mvae-or-mmvae", kind="best", best_of=("mvae", "mmvae"),
                label="the better of MVAE and MMVAE at each x (the paper's comparison)"),
        ),
        subject="mopoe", baseline="mvae-or-mmvae",
        x_key="given modalities", x_in_metric=True, xs=(1, 2, 3, 4), quick_xs=(1, 4), region=(3, 4),
        quick_sets=QUICK,
        evaluate=BY_INPUTS_EVAL, quick_evaluate=BY_INPUTS_QUICK_EVAL,
        rule="Written before the run. At 3 and 4 given modalities (the larger input counts, where the paper's "
             "ordering is widest), gap = mean(MoPoE) − mean(the better of MVAE and MMVAE there), "
             "se = √(sd_MoPoE²/n + sd_other²/n). **Reproduced** if gap > 2·se at 3 or at 4; **contradicted** if "
             "gap < −2·se at both; **reproduced in direction only** if gap > 0 at either without 2·se; otherwise "
             "**not reproduced**. With one seed (--quick): **inconclusive**. Chance is 0.10; the judges' "
             "ceiling (their accuracy on real test views) is reported below. A verdict on the stand-in at this "
             "budget is not one at the paper's scale: the setup above names every deviation.",
        also=(("ceiling/*/label", "the judges' ceiling: each view's judge's balanced accuracy on the real test "
                                  "views, mean of the five (the same at every x)"),
              ("chance/label", "chance: 1/K for K digit classes in the test split")),
        diagnosis="Written before the run: a probe of MoPoE alone (one seed, this stand-in, 15 epochs at batch 64 "
                  "and 20 at batch 32) sat at chance at every number of inputs, its KL falling to about ten nats: "
                  "within this budget the latent encodes each view's texture crop before the digit, so every arm may "
                  "sit at chance and the comparison needs the paper's scale (a GPU) to decide. After the run: that "
                  "expectation held for MoPoE alone; MVAE and MMVAE read the digit above chance at every number of "
                  "inputs. Why MoPoE stays at chance is not known here: no control has been run (MoPoE on views "
                  "without the textures would test the texture explanation; MoPoE at the paper's budget, the scale "
                  "explanation), so this is a note, not a diagnosis.",
    ),
)
