"""A notifier killed in the middle of a batch of 1,000 loses nothing and sends nothing twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from pymongo import AsyncMongoClient

from sotto_kit.mongo import Document
from sotto_notifier.config import NotifierSettings
from tests.integration.notifier.support import command, forget_mail, notifier_process
from tests.support.amqp import publish_many
from tests.support.infra import REPO, Infrastructure
from tests.support.mail import MailCatcher
from tests.support.waiting import eventually

BATCH = 1000
LOGS = REPO / "test-output" / "notifier"


@pytest.mark.timeout(300)
async def test_killed_notifier_loses_nothing_and_sends_nothing_twice(
    notifier_settings: Callable[..., NotifierSettings],
    infra: Infrastructure,
    mongo: AsyncMongoClient[Document],
    mail: MailCatcher,
) -> None:
    settings = notifier_settings(
        prefetch=64,
        pool_size=4,
        outbox_interval_seconds=2.0,
        sweep_interval_seconds=10.0,
        # The killed instance's open windows are settled once this old, not on redelivery.
        stale_sending_seconds=20.0,
        log_level="WARNING",
    )
    batch = BATCH
    marker = settings.namespace
    commands = [command(f"crash{index}-{marker}@example.org") for index in range(batch)]
    deliveries = mongo[settings.database]["deliveries"]
    log = LOGS / f"crash-{marker}.log"

    first = notifier_process(settings, log)
    first.start()
    try:
        await first.wait_healthy()
        await publish_many(settings.rabbitmq_url, settings.topology, commands)
        await eventually(
            lambda: deliveries.count_documents({"state": "delivered"}),
            until=lambda delivered: delivered >= batch // 5,
            timeout=120,
            interval=1.0,
            what="a fifth of the batch delivered",
        )
    finally:
        first.kill()
    assert await deliveries.count_documents({"state": "delivered"}) < batch, "kill came too late"

    async with notifier_process(settings, log):
        await eventually(
            lambda: deliveries.count_documents(
                {"state": {"$in": ["delivered", "failed", "ambiguous"]}}
            ),
            until=lambda settled: settled == batch,
            timeout=240,
            interval=2.0,
            what="every notification settled",
        )

    states = Counter([document["state"] async for document in deliveries.find({}, {"state": 1})])
    summaries = await mail.summaries()
    await forget_mail(infra.smtp_api_url, summaries, marker)
    emails = Counter(
        recipient["Address"]
        for summary in summaries
        for recipient in summary["To"]
        if marker in recipient["Address"]
    )
    assert sum(states.values()) == batch
    assert states["ambiguous"] <= settings.pool_size
    assert max(emails.values()) == 1, "an email went out twice"
    delivered_ids = {
        document["_id"] async for document in deliveries.find({"state": "delivered"}, {"_id": 1})
    }
    for item in commands:
        if item.notification_id in delivered_ids:
            assert emails[item.to_address] == 1
