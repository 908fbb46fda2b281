"""Storage destinations in real Chromium (#25): one defined once on its page against a real S3
server (SeaweedFS), "Test connection" giving the probe's and the repository's verdict, and two
jobs made in the wizard that both use it; the secret never comes back to the page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.seaweedfs import SeaweedServer
from tests.web.browser import LiveServer, shot, sign_in, unlabelled_controls

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

USER = "bob@globex.example"
REPO_PASSWORD = "globex offsite repository password"


def test_a_destination_defined_once_tested_and_used_by_two_jobs(
    browser: Any, live_server: LiveServer, s3_server: SeaweedServer
) -> None:
    bucket = s3_server.make_bucket()
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(20_000)
    try:
        page = ctx.new_page()
        sign_in(page, live_server.url, USER, "/destinations")
        assert unlabelled_controls(page) == []
        page.get_by_label("Name", exact=True).fill("Offsite S3")
        page.get_by_label("Endpoint URL (S3)", exact=True).fill(s3_server.endpoint)
        page.get_by_label("Bucket (S3)", exact=True).fill(bucket)
        page.get_by_label("Prefix (S3, optional)", exact=True).fill("globex")
        page.get_by_label("Access key ID (S3)", exact=True).fill(s3_server.access_key)
        page.get_by_label("Secret access key (S3)", exact=True).fill("wrong-secret")
        page.get_by_label("Repository password", exact=True).fill("short")  # refused: under 8 characters
        page.get_by_label("Quota in GiB (optional)", exact=True).fill("2")
        page.get_by_role("button", name="Add destination").click()
        expect(page.locator("#form-errors")).to_contain_text("destination.repository_password")
        assert "wrong-secret" not in page.content()  # secrets are never sent back
        page.get_by_label("Secret access key (S3)", exact=True).fill("wrong-secret")
        page.get_by_label("Repository password", exact=True).fill(REPO_PASSWORD)
        page.get_by_role("button", name="Add destination").click()
        expect(page.get_by_role("status")).to_contain_text("Destination added")
        row = page.locator("#destinations tr", has_text="Offsite S3")
        expect(row).to_contain_text(f"s3 {s3_server.endpoint}/{bucket}/globex")
        expect(row).to_contain_text("of 2.0 GiB")

        # wrong credentials: the endpoint answers, the bucket refuses the key
        page.get_by_role("button", name="Test connection to Offsite S3").click()
        expect(page.locator("#verdict")).to_contain_text("Connection fails (STORAGE_ACCESS)")
        expect(page.locator("#verdict")).to_contain_text("STORAGE_OK")
        # the right secret, set once through the API: every job using it follows
        dest_id = int(row.get_attribute("data-destination-id") or 0)
        page.request.patch(f"{live_server.url}/api/destinations/{dest_id}", headers=_csrf(page), data={
            "destination": {"type": "s3", "endpoint": s3_server.endpoint, "bucket": bucket, "prefix": "globex",
                            "access_key_id": s3_server.access_key, "secret_access_key": s3_server.secret_key}})
        page.goto(f"{live_server.url}/destinations")
        page.get_by_role("button", name="Test connection to Offsite S3").click()
        expect(page.locator("#verdict")).to_contain_text("Connection works (REPOSITORY_NOT_YET)")
        shot(page, "30-destinations")
        assert s3_server.secret_key not in page.content() and REPO_PASSWORD not in page.content()

        for name in ("Globex docs", "Globex mail"):
            page.goto(f"{live_server.url}/jobs/new")
            page.get_by_label("Agent (machine)", exact=True).select_option(label="gx-srv (linux)")
            page.get_by_label("Job name", exact=True).fill(name)
            page.get_by_label("Folders or files", exact=True).fill(f"/srv/{name.split()[1]}")
            page.get_by_label("A saved destination", exact=True).check()
            expect(page.get_by_label("Repository password", exact=True)).to_be_hidden()
            saved = f"Offsite S3 (s3 {s3_server.endpoint}/{bucket}/globex)"
            page.get_by_label("Saved destination", exact=True).select_option(label=saved)
            page.get_by_role("button", name="Create job").click()
            expect(page.get_by_role("status")).to_contain_text("Job created")
        page.goto(f"{live_server.url}/destinations")
        expect(page.locator("#destinations tr", has_text="Offsite S3")).to_contain_text("Globex docs, Globex mail")
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "30-destinations-phone")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        ctx.close()


def _csrf(page: Any) -> dict[str, str]:
    return {"X-CSRF-Token": page.locator('meta[name="csrf-token"]').get_attribute("content")}
