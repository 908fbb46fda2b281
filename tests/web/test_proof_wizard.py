"""``verify_boot`` through the wizard's form: saved, shown on the edit form and the job page, and
refused next to its select where the proof cannot run (a disk image on a Windows agent)."""

from __future__ import annotations

from tests.server.conftest import World
from tests.web.conftest import form_post, page, text_of
from tests.web.test_controls import _job_form


def test_the_wizard_saves_verify_boot_and_refuses_it_where_it_cannot_run(world: World) -> None:
    r = form_post(world.user_a, "/jobs/new", _job_form(world, **{"policy.verify_boot": "weekly"}))
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].split("/")[2].split("?")[0])
    assert world.user_a.get(f"/api/jobs/{job_id}").json()["policy"]["verify_boot"] == "weekly"
    assert '<option value="weekly" selected>' in page(world.user_a, f"/jobs/{job_id}/edit")
    assert "Proof of restore weekly · last: not checked" in text_of(page(world.user_a, f"/jobs/{job_id}"))
    # world's agents run Windows: no image proof there, the error sits next to the select
    image = _job_form(world, engine="disk_image", disk_source_volume="C:", **{"policy.verify_boot": "daily"})
    bad = form_post(world.user_a, "/jobs/new", image)
    assert bad.status_code == 422
    assert 'id="policy-verify_boot-error">agent acme-pc runs Windows' in bad.text
