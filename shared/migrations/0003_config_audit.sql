-- Runtime configuration changed through the API, and the audit log of every privileged change
-- (CONTRACT §7): configuration updates, user and gateway administration.

CREATE TABLE config_settings (
    name                varchar(100) PRIMARY KEY,
    value               jsonb        NOT NULL,
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    updated_by          varchar(64)  NOT NULL,
    updated_by_username varchar(100) NOT NULL
);

CREATE TABLE audit_log (
    id             bigint       GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at    timestamptz  NOT NULL DEFAULT now(),
    actor_id       varchar(64)  NOT NULL,
    actor_username varchar(100) NOT NULL,
    actor_role     varchar(20)  NOT NULL,
    -- e.g. config.update, user.create, user.update, user.deactivate, gateway.create
    action         varchar(64)  NOT NULL,
    -- what was changed: a setting name, a username, a gateway id
    target         varchar(200) NOT NULL,
    old_value      jsonb,
    new_value      jsonb,
    client_address varchar(64),
    user_agent     varchar(512),
    request_id     varchar(64)
);
CREATE INDEX audit_log_time_idx ON audit_log (occurred_at DESC, id DESC);
CREATE INDEX audit_log_action_time_idx ON audit_log (action, occurred_at DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_username);

-- Append-only: the application never rewrites history. (Retention is a DBA's TRUNCATE/partition
-- job, run as a role that may disable this trigger.)
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
