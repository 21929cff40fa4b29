"""`tp-site hand-out` and `tp-site decline` at a North Dakota counter: refused while counselling is due
(and a decline refused, since North Dakota's rule does not let the patient decline), then handed out once
the pharmacist counselled the patient by video."""

from __future__ import annotations

from pathlib import Path

from tests.site_client.test_end_to_end import FILL_ID, enter_rx, photos
from tests.site_client.world import Pharmacist, ServerProcess, make_site, site_api


async def test_a_fill_is_handed_out_from_the_command_line_only_after_counselling(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "100777")
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("submit", "--rx", "100777", *photos(photo_dir), "--count", "60")
    assert code == 0, out + err
    fill_id = FILL_ID.search(out).group(1)  # type: ignore[union-attr]
    async with Pharmacist(server.url) as rph:
        await rph.decide(fill_id, "approve")

        code, out, err = await site.run("status", fill_id[:8])
        assert code == 0 and "counselling due" in out, out + err
        code, out, err = await site.run("hand-out", fill_id[:8])
        assert code == 4 and "counselled first" in err, out + err
        code, out, err = await site.run("decline", fill_id[:8], "--by", "patient")
        assert code == 4 and "North Dakota" in err and "Declined counselling cannot be recorded" in err

        # The pharmacist counsels the patient in a call from the fill; the site's kiosk answers.
        c = await rph.call(
            "POST", "/api/v1/consultations/invite", {"fill_id": fill_id, "kind": "counsel"}, 201
        )
        for step in ("answer", "connected"):
            status, _ = await site_api(server.url, token, "POST", f"/api/v1/consultations/{c['id']}/{step}")
            assert status == 200
        await rph.call("POST", f"/api/v1/consultations/{c['id']}/end", {"reason": "hangup"})

    code, out, err = await site.run("status", fill_id[:8])
    assert code == 0 and "counselling done (video call)" in out and "tp-site hand-out" in out, out + err
    code, out, err = await site.run("hand-out", fill_id[:8])
    assert code == 0 and f"Fill {fill_id[:8]} handed out (counselling done (video call))" in out, out + err
    code, out, err = await site.run("status", fill_id[:8])
    assert "HANDED OUT" in out
