"""Committed groups are PUBACKed in one write: after a restart the broker redelivers nothing.

The ingest acknowledges a whole group with one write of concatenated PUBACK packets
(edge_agent.mqtt_ingest). If a single packet id were wrong or missing, the broker
would redeliver that message to the next session, and the queue would count it as
a duplicate.
"""

from edgetest import heartbeat_frame, wait_until

from edge_agent.mqtt_ingest import MqttIngest
from edge_agent.queue import EdgeQueue, QueueStats

FRAMES = 300


def test_a_restarted_agent_gets_no_redelivery_of_committed_groups(edge_settings, wearables):
    wearable = next(iter(wearables.values()))
    device = wearable.device_id
    settings = edge_settings.model_copy(update={"commit_max_wait_ms": 50})
    with EdgeQueue(settings.queue_path) as queue:
        ingest = MqttIngest(settings, queue)
        ingest.start()
        try:
            assert ingest.wait_ready(10)
            for seq in range(1, FRAMES + 1):
                wearable.client.publish(
                    f"patrol/v1/dev/{device:08x}/up", heartbeat_frame(device, seq), qos=1
                )
            wearable.wait_ack(FRAMES)
            assert ingest.stats().groups < FRAMES  # acknowledged in groups, not one by one
        finally:
            ingest.stop()

        # same client id, same session: anything not PUBACKed would come first, then the
        # sentinel; a sentinel ack with zero duplicates means nothing came back
        ingest = MqttIngest(settings, queue)
        ingest.start()
        try:
            assert ingest.wait_ready(10)
            wearable.publish(heartbeat_frame(device, FRAMES + 1))
            wearable.wait_ack(FRAMES + 1)
            wait_until(lambda: queue.depth() == FRAMES + 1, what="the sentinel to be committed")
        finally:
            ingest.stop()
        assert queue.stats() == QueueStats(depth=FRAMES + 1, dead_letters=0, duplicates=0)
        assert ingest.stats().received == 1
