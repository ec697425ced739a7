"""A database URL is never shown with its password (issue 20, item 9).

A malformed URL used to be echoed whole in the error, password included.
"""

import pytest
from metarec.errors import RegistryError
from metarec.registry import db
from metarec.registry.db import create_registry_engine, upgrade_database

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://owner:{SECRET}@db:notaport/metarec",  # bad port
        f"postgresql+psycopg//owner:{SECRET}@db/metarec",  # no "://"
        f"not a url owner:{SECRET}@db",
        f"nosuchdialect://owner:{SECRET}@db/metarec",  # no such driver
    ],
)
def test_a_bad_database_url_is_named_without_its_password(url):
    with pytest.raises(RegistryError) as raised:
        create_registry_engine(url)
    message = str(raised.value)
    assert SECRET not in message
    assert "Fix:" in message


def test_an_unreachable_database_is_named_without_its_password():
    url = f"postgresql+psycopg://owner:{SECRET}@127.0.0.1:1/metarec?connect_timeout=2"
    engine = create_registry_engine(url)
    with pytest.raises(RegistryError, match="Cannot open the registry database") as raised:
        upgrade_database(engine)
    assert SECRET not in str(raised.value)
    assert "owner:***@127.0.0.1:1/metarec" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://u:{SECRET}@h/db", "postgresql://u:***@h/db"),
        (f"postgresql://u:{SECRET}@h:x/db", "postgresql://u:***@h:x/db"),
        (f"postgresql://u:p@ss{SECRET}@h/db", "postgresql://u:***@h/db"),
        (f"postgresql://u@h/db?password={SECRET}&sslmode=require", "password=***&sslmode"),
        ("sqlite:////tmp/registry.db", "sqlite:////tmp/registry.db"),
    ],
)
def test_redacted_url(url, shown):
    assert SECRET not in db.redacted_url(url)
    assert shown in db.redacted_url(url)


def test_redact_removes_the_password_from_any_message():
    url = f"postgresql://u:{SECRET}@h:x/db"
    assert db.redact(f"driver said: bad password {SECRET}", url) == "driver said: bad password ***"
