"""The checks before the app (api/guard.py): trusted hosts, the rate limit, the opt-in bearer token,
one log line per refusal, and the token never shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import HIDDEN, create_app
from forecaster.cli import main
from forecaster.settings import Settings

TOKEN = "s3cret-token-value"


@pytest.fixture
def guarded(offline_settings: Settings) -> Iterator[TestClient]:
    """An app that asks for TOKEN and allows two requests per client before a near-zero rate."""
    settings = offline_settings.replace(api_token=TOKEN, api_rate_per_s=0.001, api_rate_burst=2)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        yield client


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "api.refused"]


def test_hosts_outside_the_trusted_ones_are_refused(offline_settings: Settings,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    settings = offline_settings.replace(api_host="10.1.2.3")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "10.1.2.3:8000"):
            assert client.get("/", headers={"Host": host}).status_code == 200
        answer = client.get("/", headers={"Host": "attacker.example\x1b[2J"})
        assert answer.status_code == 400
        assert answer.json()["detail"]["message"] == "Host 'attacker.example\\x1b[2j' is not trusted"
        # An orchestrator's probe asks with the address it found.
        assert client.get("/health", headers={"Host": "10.9.8.7:8000"}).status_code == 200
    (line,) = _refusals(caplog)
    assert line.startswith("refused 400 GET /: Host ") and "\x1b" not in line


def test_the_token_guards_all_but_health_and_the_page(offline_settings: Settings,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    settings = offline_settings.replace(api_token=TOKEN)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        for path in ("/health", "/", "/static/app.js"):
            assert client.get(path).status_code == 200, path
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            answer = client.post("/forecast", headers=headers)
            assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
            assert TOKEN not in answer.text
        assert client.get("/predictions").status_code == 401
        assert len(_refusals(caplog)) == 4
        assert client.get("/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        answer = client.post("/forecast", headers={"Authorization": f"bearer {TOKEN}"}, content=b"x")
        assert answer.status_code == 415  # past the guard, refused by the app for its Content-Type
    assert not any(TOKEN in record.getMessage() for record in caplog.records)


def test_health_answers_a_head_probe_from_any_host_without_the_token(offline_settings: Settings) -> None:
    # Uptime monitors and load balancers probe with HEAD; it was a 405, a service down to them.
    settings = offline_settings.replace(api_token=TOKEN)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        answer = client.head("/health", headers={"Host": "10.9.8.7:8000"})
        assert (answer.status_code, answer.headers["content-type"]) == (200, "application/json")


def test_health_tells_its_texts_only_to_whom_the_rest_of_the_api_answers(offline_settings: Settings) -> None:
    # The broker's state names its address and the client's error; the champion's error, the
    # registry's path. A probe without the token, or a page of another site, learns up or down.
    settings = offline_settings.replace(api_token=TOKEN)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        full = client.get("/health", headers=bearer).json()
        assert settings.bootstrap in full["broker"]["detail"]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {**bearer, "Host": "attacker.example"}):
            answer = client.get("/health", headers=headers)
            assert answer.status_code == 200, headers
            short = answer.json()
            assert short["broker"]["detail"] == HIDDEN and settings.bootstrap not in answer.text, headers
            for part, field in (("broker", "reachable"), ("model", "serving"), ("model", "loaded")):
                assert short[part][field] == full[part][field], (headers, part, field)
            assert short["status"] == full["status"]


def test_a_client_past_its_burst_gets_a_429_with_retry_after_but_health_answers(
        guarded: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    assert [guarded.get("/").status_code for _ in range(2)] == [200, 200]
    answer = guarded.get("/")
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) >= 1
    assert all(guarded.get("/health").status_code == 200 for _ in range(5))
    assert _refusals(caplog) == ["refused 429 GET /: too many requests (client testclient)"]


def test_settings_never_print_the_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        ) -> None:
    monkeypatch.setenv("FORECASTER_API_TOKEN", TOKEN)
    assert main(["settings"]) == 0
    printed = capsys.readouterr().out
    assert "FORECASTER_API_TOKEN=***" in printed and TOKEN not in printed
