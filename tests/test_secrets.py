"""Secret references in integration config and what counts as a secret."""

from __future__ import annotations

import pytest

from engine import http, secrets
from engine.errors import ConfigError


def test_env_and_file_references_resolve(tmp_path):
    """${env:NAME} and ${file:PATH} (relative to the integration) resolve, embedded ones too."""
    (tmp_path / "token.txt").write_text("file-secret-value\n")
    config = {"url": "${env:SHOP_URL}", "token": "${file:token.txt}", "header": "Bearer ${env:TOKEN}", "n": 7}
    resolved, found = secrets.resolve(config, tmp_path, ["token", "header"],
                                      environ={"SHOP_URL": "http://shop.test", "TOKEN": "env-secret-value"})
    assert resolved == {"url": "http://shop.test", "token": "file-secret-value",
                        "header": "Bearer env-secret-value", "n": 7}
    assert found == {"file-secret-value", "Bearer env-secret-value"}


def test_only_secret_fields_are_secrets(tmp_path):
    """A URL from ${env:..} is not a secret: masking it would hide where a request went."""
    _, found = secrets.resolve({"url": "${env:U}", "key": "${env:K}"}, tmp_path, ["key"],
                               environ={"U": "http://shop.test", "K": "ck_12345"})
    assert found == {"ck_12345"}


@pytest.mark.parametrize(("config", "message"), [
    ({"k": "${env:NOPE_NOT_SET}"}, "environment variable NOPE_NOT_SET is not set"),
    ({"k": "${file:missing.txt}"}, "cannot read secret file"),
])
def test_unresolvable_reference_is_a_config_error(tmp_path, config, message):
    """A reference that cannot be resolved is a ConfigError naming it, never a traceback."""
    with pytest.raises(ConfigError, match=message):
        secrets.resolve(config, tmp_path, ["k"], environ={})


def test_redactor_masks_secrets_but_not_tiny_values():
    """Known secrets are masked everywhere; values under 4 characters would shred text and are left."""
    redact = http.Redactor(["ck_12345", "s"])
    assert redact("key ck_12345 sent to shop") == "key *** sent to shop"
    assert redact.secrets == frozenset({"ck_12345"})

