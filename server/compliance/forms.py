"""Which photo rules a prescription's dosage form falls under: tablets and capsules, liquids, or other."""

from __future__ import annotations

import re

# Words of a dosage form (as entered, or as the NDC Directory spells it: "TABLET, FILM COATED",
# "SOLUTION", "SUSPENSION, EXTENDED RELEASE", "POWDER, FOR SUSPENSION") that say what is counted or
# measured. A powder for suspension is reconstituted and handed out as a liquid.
_SOLID = re.compile(r"\b(tablets?|capsules?|caplets?|tabs?|caps?|troches?|lozenges?|wafers?)\b")
_LIQUID = re.compile(
    r"\b(solution|suspension|syrup|elixir|liquid|concentrate|emulsion|drops|tincture|oral\s+liquid)\b"
)


def form_group(dosage_form: str) -> str:
    """ "tablet_capsule", "liquid" or "other" for a dosage form's text."""
    text = dosage_form.lower()
    if "inject" in text:  # a vial or pen handed out whole, not a measured volume
        return "other"
    if _SOLID.search(text):
        return "tablet_capsule"
    if _LIQUID.search(text):
        return "liquid"
    return "other"
