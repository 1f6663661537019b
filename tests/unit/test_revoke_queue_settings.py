"""Where a delete's delayed revoke is queued: the settings the queue trigger reads too."""

from __future__ import annotations

import pytest

from shared.config import DEFAULT_REVOKE_QUEUE, load_settings
from shared.errors import ConfigurationError
from tests.unit.test_service import BASE_ENV

AZURITE_TABLE_ONLY = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                      "TableEndpoint=http://127.0.0.1:1/devstoreaccount1;")
AZURITE_FULL = AZURITE_TABLE_ONLY + "QueueEndpoint=http://127.0.0.1:2/devstoreaccount1;"
AZURE_ACCOUNT = ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
                 "EndpointSuffix=core.windows.net")


@pytest.mark.parametrize(("storage", "expected"), [
    ("UseDevelopmentStorage=true", "UseDevelopmentStorage=true"),
    (AZURITE_FULL, AZURITE_FULL),
    (AZURE_ACCOUNT, AZURE_ACCOUNT),
    (AZURITE_TABLE_ONLY, None),  # no queue service: the in-process fallback
])
def test_queue_connection_comes_from_azure_webjobs_storage(storage, expected):
    settings = load_settings({**BASE_ENV, "AzureWebJobsStorage": storage})
    assert settings.queue_connection == expected
    assert settings.revoke_queue_name == DEFAULT_REVOKE_QUEUE


def test_identity_based_queue_service_uri_as_the_trigger_reads_it():
    uri = "https://acct.queue.core.windows.net"
    settings = load_settings({**BASE_ENV, "AzureWebJobsStorage__queueServiceUri": uri,
                              "REVOKE_QUEUE_NAME": "revokes-1"})
    assert (settings.queue_connection, settings.queue_service_uri) == (None, uri)
    assert settings.revoke_queue_name == "revokes-1"


@pytest.mark.parametrize("name", ["ab", "Upper", "two--dashes", "-lead", "trail-", "a_b",
                                  "x" * 57])
def test_bad_queue_names_fail_naming_the_setting(name):
    # Queue names: 3-63 lowercase letters, digits, single dashes; "-poison" must fit.
    with pytest.raises(ConfigurationError, match="REVOKE_QUEUE_NAME"):
        load_settings({**BASE_ENV, "REVOKE_QUEUE_NAME": name})
