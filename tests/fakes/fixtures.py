"""Fixtures that start the fake providers and point the settings at them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.roblox_server import FakeRoblox
from tests.fakes.sendgrid_server import FakeSendGrid
from tests.fakes.smtp_server import FakeSMTP

OPENAI_TEST_KEY = "sk-test-openai-0f9c2b7e5d4a"
SENDGRID_TEST_KEY = "SG.test-sendgrid.8e1d6c3b2a"
ROBLOX_TEST_KEY = "rbx-test-opencloud-4c7a9e1f"


@pytest.fixture
def openai_server(settings: Any) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=OPENAI_TEST_KEY).start()
    settings.OPENAI_API_KEY = OPENAI_TEST_KEY
    settings.OPENAI_BASE_URL = f"{server.url}/v1"
    settings.OPENAI_MODEL = "fake-gpt"
    yield server
    server.stop()


@pytest.fixture
def sendgrid_server(settings: Any) -> Iterator[FakeSendGrid]:
    server = FakeSendGrid(api_key=SENDGRID_TEST_KEY).start()
    settings.SENDGRID_API_KEY = SENDGRID_TEST_KEY
    settings.SENDGRID_HOST = server.url
    yield server
    server.stop()


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[FakeSMTP]:
    server = FakeSMTP().start()
    settings.SENDGRID_API_KEY = ""
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": server.port, "timeout": 10},
        }
    }
    yield server
    server.stop()


@pytest.fixture
def roblox_server(settings: Any) -> Iterator[FakeRoblox]:
    server = FakeRoblox(api_key=ROBLOX_TEST_KEY).start()
    settings.ROBLOX_API_KEY = ROBLOX_TEST_KEY
    settings.ROBLOX_BASE_URL = server.url
    yield server
    server.stop()
