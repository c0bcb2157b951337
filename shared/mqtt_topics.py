"""MQTT topics: which levels of a telemetry topic name the factory and the machine; how MQTT
topics and AMQP routing keys map onto each other on the MQTT edge."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import MillraceError

# Factory ids become a routing-key word and an InfluxDB tag: keep them plain.
_FACTORY_ID = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")


class BadTopic(MillraceError, ValueError):
    """The topic does not have the shape of a telemetry topic."""


@dataclass(frozen=True, slots=True)
class TopicIds:
    factory_id: str
    machine_id: str


class TopicTemplate:
    """``factory/{factory_id}/machine/{machine_id}/telemetry``: literal levels and two ids."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.levels = template.split("/")
        try:
            self._factory = self.levels.index("{factory_id}")
            self._machine = self.levels.index("{machine_id}")
        except ValueError:
            raise ValueError(
                f"topic template {template!r} needs {{factory_id}} and {{machine_id}} levels"
            ) from None
        self.id_levels = (self._factory, self._machine)
        self._literal = [
            (i, level)
            for i, level in enumerate(self.levels)
            if i not in (self._factory, self._machine)
        ]

    def parse(self, topic: str) -> TopicIds:
        levels = topic.split("/")
        if len(levels) != len(self.levels):
            raise BadTopic(f"Topic {topic!r} does not match {self.template!r}")
        for i, literal in self._literal:
            if levels[i] != literal:
                raise BadTopic(f"Topic {topic!r} does not match {self.template!r}")
        factory_id = levels[self._factory]
        if not _FACTORY_ID.match(factory_id):
            raise BadTopic(f"Factory id {factory_id!r} must match {_FACTORY_ID.pattern}")
        machine_id = levels[self._machine]
        if not machine_id:
            raise BadTopic(f"Topic {topic!r} has an empty machine id")
        return TopicIds(factory_id, machine_id)

    def topic(self, factory_id: str, machine_id: str) -> str:
        return self.template.format(factory_id=factory_id, machine_id=machine_id)


def status_topic(client_id: str) -> str:
    return f"factory/bridge/{client_id}/status"


def is_status_topic(topic: str) -> bool:
    """The bridges' own status topics: never telemetry, even under a ``factory/#`` filter."""
    levels = topic.split("/")
    return (
        len(levels) == 4
        and levels[0] == "factory"
        and levels[1] == "bridge"
        and levels[3] == "status"
    )


# RabbitMQ's MQTT plugin publishes to a topic exchange with the topic's "/" as ".". A "." inside
# a level stays a "." (an extra word): such a topic matches no telemetry binding, and the edge
# refuses it to gateways (auth cannot read it as a telemetry topic).


def routing_key_of(topic: str) -> str:
    """``factory/F/machine/M/telemetry`` → ``factory.F.machine.M.telemetry``."""
    return topic.replace("/", ".")


def topic_of(routing_key: str) -> str:
    """The MQTT topic a routing key of the edge came from."""
    return routing_key.replace(".", "/")


def binding_key(template: TopicTemplate) -> str:
    """The routing-key pattern of every telemetry topic: ids replaced by ``*``."""
    levels = ["+" if i in template.id_levels else level for i, level in enumerate(template.levels)]
    return binding_of("/".join(levels))


def binding_of(topic_filter: str) -> str:
    """An MQTT topic filter as an AMQP topic-exchange binding key (``+`` → ``*``)."""
    return ".".join("*" if level == "+" else level for level in topic_filter.split("/"))
