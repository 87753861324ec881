"""``--tier paper``: each claim at its paper's data and settings (:class:`reproductions.claim_spec.PaperTier`).

The tier adds the paper's ``--set`` values after every arm's own (the dataset, its resolution, λ, β's schedule,
the latent size, the batch, the epochs) and checks, before anything trains, that the data is on this machine: a
claim whose data is missing is refused in one line naming it. Meant for a machine with a GPU, or a user with the
data; the report goes to OUT/reproductions.md, never over docs/.
"""
from __future__ import annotations

import dataclasses

from modkit.errors import ModkitError
from reproductions.claim_spec import Claim, find_recipe


def at_paper_tier(claim: Claim) -> Claim:
    """The claim with its paper tier's settings on every arm (and its x values where the tier gives them)."""
    tier = claim.paper_tier
    if tier is None:
        raise ModkitError(f"claim '{claim.id}' declares no paper tier (its data or settings are not available to modkit)")
    arms = tuple(dataclasses.replace(a, sets=(*a.sets, *applicable(a, tier.sets))) if a.recipe else a for a in claim.arms)
    xs = tier.xs or claim.xs
    region = tuple(x for x in claim.region if x in xs) if tier.xs else claim.region
    return dataclasses.replace(claim, arms=arms, xs=xs, region=region, quick_xs=())


def applicable(arm, sets: tuple[str, ...]) -> tuple[str, ...]:
    """The tier's settings that apply to the arm: one of a modality the arm's recipe does not have is left out (the
    image-only VAE has no label to weight)."""
    from reproductions.setups import resolved

    have = set((resolved(arm).get("modalities") or {}))
    out = []
    for item in sets:
        parts = item.partition("=")[0].split(".")
        if parts[0] == "modalities" and len(parts) > 2 and parts[1] not in have:
            continue
        out.append(item)
    return tuple(out)


def check_data(claim: Claim) -> None:
    """One line naming the missing data when the subject's tier recipe cannot load its dataset here."""
    from modkit.config.recipe import load_recipe
    from modkit.plugins.loader import load_plugins
    from modkit.training.builder import load_records

    subject = next(a for a in claim.arms if a.name == claim.subject)
    recipe = load_recipe(find_recipe(subject.recipe), list(subject.sets))[0]
    try:
        load_records(recipe, load_plugins(), None)
    except ModkitError as exc:
        what = "; ".join(f"{name} ({about})" for name, about in claim.paper_tier.data) or recipe.data.dataset.type
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModkitError(f"--tier paper: claim '{claim.id}' needs {what} under data.root "
                          f"('{recipe.data.root or 'data'}'), not found here: {detail}") from None


def paper_claims(claims: list[Claim], check: bool = True) -> list[Claim]:
    """The claims at their paper tier, their data checked; named claims without one are refused, and with no claim
    named, those that declare one are taken."""
    from reproductions.claims import CLAIMS

    named = len(claims) != len(CLAIMS)
    if not named:
        claims = [c for c in claims if c.paper_tier is not None]
    tiered = [at_paper_tier(c) for c in claims]
    if check:
        for claim in tiered:
            check_data(claim)
    return tiered
