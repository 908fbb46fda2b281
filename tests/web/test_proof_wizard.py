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


def test_the_wizard_saves_the_boot_marker_of_an_image_job_on_a_linux_agent(world: World) -> None:
    from tests.server.conftest import enroll

    linux = enroll(world.client, world.enroll_a, "acme-linux", os="linux")
    form = _job_form(world, engine="disk_image", disk_source_volume="/dev/sda", agent_id=str(linux.id),
                     **{"policy.verify_boot": "weekly", "policy.verify_boot_marker": "acme-srv login:"})
    r = form_post(world.user_a, "/jobs/new", form)
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].split("/")[2].split("?")[0])
    policy = world.user_a.get(f"/api/jobs/{job_id}").json()["policy"]
    assert (policy["verify_boot"], policy["verify_boot_marker"]) == ("weekly", "acme-srv login:")
    assert 'value="acme-srv login:"' in page(world.user_a, f"/jobs/{job_id}/edit")
