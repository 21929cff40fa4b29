"""What a media worker hands back from reading a message survives the trip between processes."""

from __future__ import annotations

import pickle

from server.pharmacy_systems.received import Issue, MessageRejected


def test_a_refusal_keeps_its_issues_and_status_across_processes() -> None:
    refused = MessageRejected([Issue("conflict", "Sent before.", "MedicationRequest.identifier")], status=409)
    again = pickle.loads(pickle.dumps(refused))
    assert isinstance(again, MessageRejected)
    assert (again.issues, again.status, str(again)) == (refused.issues, 409, str(refused))
