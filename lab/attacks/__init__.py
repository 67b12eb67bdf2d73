"""Attacks on a lab server, bounded in count and time, and the bystander beside them.

Used by the attack tests (tests/attacks/) and ``lab bench attacks``; see
:mod:`lab.attacks.catalogue` for the list, :mod:`lab.attacks.process` for the server
process they run against.
"""

from lab.attacks.catalogue import ATTACK_LIMITS, ATTACKS, Attack

__all__ = ["ATTACKS", "ATTACK_LIMITS", "Attack"]
