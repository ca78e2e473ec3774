"""Which side of the bioethics axis each health motion's supporters stand on.

IBM Debater arguments carry a stance on a motion (+1 supports it, -1 opposes it). For a *permissive*
motion (it grants a freedom: legalize, subsidize, keep allowed) supporting arguments are permissive and
opposing ones protective; for a *protective* motion (it bans, criminalizes, mandates or warns of harm) it
is the other way round. Motions not listed here are not health motions and are left out.
"""

from __future__ import annotations

PERMISSIVE = "bioethics_permissive"
PROTECTIVE = "bioethics_protective"

# motion -> the community of arguments that SUPPORT it (stance +1)
MOTION_SUPPORTERS: dict[str, str] = {
    "We should legalize cannabis": PERMISSIVE,
    "We should legalize organ trade": PERMISSIVE,
    "We should legalize sex selection": PERMISSIVE,
    "We should subsidize embryonic stem cell research": PERMISSIVE,
    "Assisted suicide should be a criminal offence": PROTECTIVE,
    "Homeopathy brings more harm than good": PROTECTIVE,
    "We should ban naturopathy": PROTECTIVE,
    "We should ban cosmetic surgery": PROTECTIVE,
    "We should ban cosmetic surgery for minors": PROTECTIVE,
    "We should ban human cloning": PROTECTIVE,
    "Surrogacy should be banned": PROTECTIVE,
    "We should ban fast food": PROTECTIVE,
    "Routine child vaccinations should be mandatory": PROTECTIVE,
}


def side(motion: str, stance: int) -> str | None:
    """The community of an argument with ``stance`` (+1/-1) on ``motion``, or None for non-health motions."""
    supporters = MOTION_SUPPORTERS.get(motion.strip())
    if supporters is None or stance not in (1, -1):
        return None
    if stance == 1:
        return supporters
    return PROTECTIVE if supporters == PERMISSIVE else PERMISSIVE
