"""The campaign report's agreement section, for a classification campaign with several annotators
per task: per round the mean agreement and the split decisions (``campaign.agreement``, the same
figures ``activelabel status`` shows), per annotator how often their answer matched the resolved
label, and the split samples themselves. Tables only: a handful of rounds and annotators read
better as numbers than as a plot.
"""

from __future__ import annotations

from sqlalchemy import Engine

from activelabel.campaign.agreement import AGREEMENT_HEADER, SPLIT_HEADER, CampaignAgreement, campaign_agreement
from activelabel.report import html

#: Split samples listed on the page (the rest are counted; ``status --round N`` lists them all).
LISTED_SPLITS = 50

EXPLANATION = (
    "Agreement: the share of a sample's answers (one per annotator, their latest) that match its resolved "
    "label, the majority; its mean over the round's resolved samples. A split decision: no label has more "
    "than half of the sample's answers (a tie, such as 7 / 1 / 4, goes to the first answer), so the label "
    "rests on who answered first. Have another annotator review those in Label Studio; the next sync "
    "follows the edit.")


def agreement_section(engine: Engine, campaign_name: str) -> str | None:
    """The section's HTML, or None when agreement does not apply (one annotator per task, or segmentation)."""
    figures = campaign_agreement(engine, campaign_name)
    if figures is None:
        return None
    return html.section(f"Annotators' agreement ({figures.needed} per task)", *agreement_parts(figures),
                        anchor="agreement")


def agreement_parts(figures: CampaignAgreement) -> list[str]:
    rounds = [r for r in figures.rounds if r.resolved]
    if not rounds:
        return [html.note("No sample of a round is resolved yet, so there is no agreement to show.")]
    parts = [
        html.table("agreement-rounds", AGREEMENT_HEADER, [r.cells() for r in rounds],
                   caption="Per round: resolved samples, their mean agreement, split decisions (in the "
                           "evaluation split)"),
        html.table("agreement-annotators", ["annotator", "answers", "agree with the resolved label", "share"],
                   [[a.annotator, str(a.answers), str(a.agreeing), f"{a.share:.3f}"] for a in figures.annotators],
                   caption="Per annotator: their answers on resolved samples and how many matched the resolved label"),
        html.note(EXPLANATION),
    ]
    splits = figures.splits
    if splits:
        listed = splits[:LISTED_SPLITS]
        more = f" (the first {LISTED_SPLITS} of {len(splits)})" if len(splits) > LISTED_SPLITS else ""
        parts.append(html.table(
            "split-decisions", ["round", *SPLIT_HEADER], [[str(s.round_index), *s.cells()] for s in listed],
            caption=f"Split decisions{more}: samples resolved without a majority, with their answers in answer order"))
    else:
        parts.append(html.note("No split decision: every resolved sample has a label with more than half of its "
                               "answers."))
    return parts
