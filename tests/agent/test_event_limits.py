"""Events whose details exceed the server's bounds (an engine's long list of paths) are sent
with a small stand-in for the details, not refused with their whole batch."""

from __future__ import annotations

from pathlib import Path

from tests.agent.conftest import Harness


def test_oversized_event_details_are_cut_not_lost(harness: Harness, tmp_path: Path) -> None:
    agent, _ = harness.make_agent()
    (tmp_path / "src").mkdir()
    job = harness.files_job(agent, tmp_path / "src")
    run_id = harness.run_job(job["id"])
    huge = {"would_delete": [f"/data/file-{i:06d}.bin" for i in range(20_000)]}
    agent.outbox.add_event(run_id, "REPOSITORY_OPENED", "first", details={"n": 1})
    agent.outbox.add_event(run_id, "SYNC_FILE_FAILED", "a long list", details=huge)
    agent.outbox.add_event(run_id, "REPOSITORY_OPENED", "last", details={"n": 3})
    assert agent.outbox.flush(agent.client) == 3
    events = {e["message"]: e for e in harness.events(run_id)}
    assert set(events) == {"first", "a long list", "last"}  # the batch went through
    cut = events["a long list"]["details"]
    assert cut["truncated"] is True and cut["keys"] == ["would_delete"] and cut["encoded_bytes"] > 400_000
    assert events["last"]["details"] == {"n": 3}
