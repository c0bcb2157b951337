-- Alert rules, alerts with their lifecycle (active -> acknowledged -> cleared, who and when),
-- and the log of every notification delivery. See README "Console, live view and alerts".

CREATE TABLE alert_rules (
    id              uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    name            varchar(100) NOT NULL,
    -- threshold: field <comparison> threshold held for duration_s; offline: no reading for
    -- offline_after_s.
    kind            varchar(16)  NOT NULL DEFAULT 'threshold'
                    CHECK (kind IN ('threshold', 'offline')),
    field           varchar(64),
    comparison      varchar(2)   CHECK (comparison IN ('>', '>=', '<', '<=')),
    threshold       double precision,
    -- hysteresis: an alert raised above `threshold` clears only once back below this value
    -- (above it for '<' rules); NULL = the threshold itself.
    clear_threshold double precision,
    duration_s      integer      NOT NULL DEFAULT 0 CHECK (duration_s >= 0),
    offline_after_s integer      CHECK (offline_after_s > 0),
    severity        varchar(16)  NOT NULL
                    CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    scope_type      varchar(16)  NOT NULL DEFAULT 'all'
                    CHECK (scope_type IN ('all', 'machine', 'sensor_type', 'location', 'factory')),
    scope_value     varchar(200),
    enabled         boolean      NOT NULL DEFAULT true,
    -- set for a rule kept by the alerter from a config setting (max_temperature_threshold)
    managed_by      varchar(100) UNIQUE,
    created_by      varchar(100) NOT NULL,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    updated_at      timestamptz  NOT NULL DEFAULT now(),
    CHECK (kind <> 'threshold' OR (field IS NOT NULL AND comparison IS NOT NULL
                                   AND threshold IS NOT NULL)),
    CHECK (kind <> 'offline' OR offline_after_s IS NOT NULL),
    CHECK ((scope_type = 'all') = (scope_value IS NULL))
);

CREATE TABLE alerts (
    id                bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id           uuid         REFERENCES alert_rules (id) ON DELETE SET NULL,
    rule_name         varchar(100) NOT NULL,
    kind              varchar(16)  NOT NULL,
    severity          varchar(16)  NOT NULL,
    machine_id        uuid         NOT NULL,
    factory_id        varchar(200),
    location          varchar(200),
    field             varchar(64),
    comparison        varchar(2),
    threshold         double precision,
    value             double precision,
    state             varchar(16)  NOT NULL DEFAULT 'active'
                      CHECK (state IN ('active', 'acknowledged', 'cleared')),
    -- reading time: when the condition began to hold (the episode starts), when it was raised
    started_at        timestamptz  NOT NULL,
    raised_at         timestamptz  NOT NULL,
    created_at        timestamptz  NOT NULL DEFAULT now(),
    acknowledged_at   timestamptz,
    acknowledged_by   varchar(100),
    ack_note          varchar(500),
    cleared_at        timestamptz,
    cleared_by        varchar(100),
    cleared_value     double precision,
    -- reading time that ended the episode (NULL when cleared by hand or by deleting the rule)
    ended_at          timestamptz,
    updated_at        timestamptz  NOT NULL DEFAULT now()
);
-- One open alert per rule and machine, whoever (whichever replica) tries to open a second.
CREATE UNIQUE INDEX alerts_one_open_idx ON alerts (rule_id, machine_id) WHERE state <> 'cleared';
CREATE INDEX alerts_machine_time_idx ON alerts (machine_id, raised_at DESC);
CREATE INDEX alerts_state_time_idx ON alerts (state, raised_at DESC);
CREATE INDEX alerts_episode_idx ON alerts (rule_id, machine_id, started_at);

CREATE TABLE alert_deliveries (
    id          bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id    bigint       NOT NULL,
    event       varchar(16)  NOT NULL,
    channel     varchar(16)  NOT NULL,  -- webhook, mqtt
    target      varchar(500) NOT NULL,
    attempt     integer      NOT NULL,
    ok          boolean      NOT NULL,
    status_code integer,
    error       varchar(500),
    at          timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX alert_deliveries_alert_idx ON alert_deliveries (alert_id, at);
