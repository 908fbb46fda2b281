"""Sign-in rate limits: checked and counted in one step, attempts in flight included, and a
lock-out that stays with the (address, account) that earned it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from e3backup.server import create_app
from e3backup.server.security.passwords import PasswordHasher
from tests.server.conftest import ADMIN_EMAIL, PASSWORD, FakeClock, make_admin, make_settings
from tests.server.live import serve_in_thread

GUESSES = 100


class CountingHasher(PasswordHasher):
    """The real argon2id hasher, counting the password checks it really makes."""

    def __init__(self, time_cost: int, memory_kib: int) -> None:
        super().__init__(time_cost, memory_kib)
        self.checks = 0
        self._lock = threading.Lock()

    def verify(self, hashed: str | None, password: str) -> bool:
        with self._lock:
            self.checks += 1
        return super().verify(hashed, password)


def test_parallel_guesses_get_no_more_password_checks_than_the_limit(tmp_path: Path) -> None:
    """100 guesses at once against a real uvicorn server: at most 5 reach argon2 (before the fix,
    43 did: each request checked the counter before any failure was recorded). The counters
    live in memory, so one database (SQLite) is enough."""
    # a real cost (32 MiB, t=2): each check takes long enough for the guesses to overlap
    database_url = f"sqlite:///{tmp_path / 'server.db'}"
    settings = make_settings(tmp_path / "data", database_url, argon2_time_cost=2, argon2_memory_kib=32768)
    app = create_app(settings, clock=FakeClock())
    hasher = CountingHasher(2, 32768)
    app.state.e3.passwords = hasher
    with serve_in_thread(app) as url:
        make_admin(app)
        hasher.checks = 0
        start = threading.Barrier(GUESSES)

        def guess(i: int) -> int:
            with httpx.Client(base_url=url, timeout=60) as c:
                start.wait()
                body = {"email": ADMIN_EMAIL, "password": f"guess-{i}"}
                return c.post("/api/auth/login", json=body).status_code

        with ThreadPoolExecutor(GUESSES) as pool:
            codes = list(pool.map(guess, range(GUESSES)))
    limit = settings.login_attempts
    assert 1 <= hasher.checks <= limit, hasher.checks
    assert codes.count(401) == hasher.checks
    assert codes.count(429) == GUESSES - hasher.checks
    assert 200 not in codes


def _client(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000))


def test_someone_elses_failures_do_not_lock_the_admin_out(app: FastAPI, client: TestClient) -> None:
    """An attacker at one address spends the budget of (that address, admin) only; the admin at
    another address still signs in, and the attacker still waits."""
    make_admin(app)
    attacker, admin = _client(app, "198.51.100.66"), _client(app, "203.0.113.10")
    for _ in range(5):
        assert attacker.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": "guess"}).status_code == 401
    assert attacker.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}).status_code == 429
    r = admin.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("settings_overrides", [{"login_source_attempts": 8}], indirect=True)
def test_one_address_guessing_across_accounts_is_limited(app: FastAPI, client: TestClient) -> None:
    make_admin(app)
    sprayer = _client(app, "198.51.100.7")
    codes = [
        sprayer.post("/api/auth/login", json={"email": f"user{i}@x.example", "password": "guess"}).status_code
        for i in range(10)
    ]
    assert codes == [401] * 8 + [429] * 2
    # the account itself is not locked: its owner elsewhere signs in
    assert _client(app, "203.0.113.10").post(
        "/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}
    ).status_code == 200


def test_a_right_password_clears_its_own_failures(app: FastAPI, client: TestClient) -> None:
    make_admin(app)
    for _ in range(4):
        assert client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": "typo"}).status_code == 401
    assert client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": PASSWORD}).status_code == 200
    for _ in range(4):  # a fresh budget, not one failure left
        assert client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": "typo"}).status_code == 401
