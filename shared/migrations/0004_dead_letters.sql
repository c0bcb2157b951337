-- Dead letters archived from the ``telemetry.dead`` queue, so that operators can list, inspect,
-- replay and purge them (issue 6). One row per dead-letter message; ``message_id`` makes a
-- redelivered message a no-op.

CREATE TABLE dead_letters (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id        text        NOT NULL UNIQUE,
    -- e.g. unknown_machine, schema, invalid_json, influx_rejected, delivery_limit, undecodable
    reason            text        NOT NULL,
    error             text        NOT NULL DEFAULT '',
    -- who dead-lettered it: http, mqtt, writer, replay (or unknown for an undecodable body)
    source            text        NOT NULL,
    -- for the writer's dead letters: the door the readings originally came through
    origin_source     text,
    gateway_id        text        NOT NULL DEFAULT '',
    request_id        text        NOT NULL DEFAULT '',
    topic             text,
    readings          jsonb       NOT NULL DEFAULT '[]',
    -- the original payload when it could not be turned into readings (MQTT, undecodable bodies)
    raw               text,
    -- the rest of the dead letter: per-field errors, factory/machine from the topic, x-death, ...
    details           jsonb       NOT NULL DEFAULT '{}',
    first_seen        timestamptz NOT NULL,
    archived_at       timestamptz NOT NULL DEFAULT now(),
    attempts          integer     NOT NULL DEFAULT 1,
    replayed_at       timestamptz,
    replay_count      integer     NOT NULL DEFAULT 0,
    -- the outcome of the last replay that found the letter still invalid (cleared on success)
    last_replay_at    timestamptz,
    last_replay_error text
);
-- (reason, first_seen) serves the reason filter and "replay the oldest N of a reason".
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, first_seen);
CREATE INDEX dead_letters_first_seen_idx ON dead_letters (first_seen);
