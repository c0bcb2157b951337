-- Auth (CONTRACT §7): people, their sessions (refresh-token families), gateway credentials.

CREATE TABLE users (
    id             uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored lower-case so that "John.Doe" and "john.doe" are one account.
    username       varchar(64)  NOT NULL UNIQUE CHECK (username = lower(username)),
    email          varchar(254),
    password_hash  text         NOT NULL,
    role           varchar(20)  NOT NULL
                   CHECK (role IN ('Operator', 'Supervisor', 'Management')),
    active         boolean      NOT NULL DEFAULT true,
    created_at     timestamptz  NOT NULL DEFAULT now(),
    updated_at     timestamptz  NOT NULL DEFAULT now(),
    last_login     timestamptz,
    deactivated_at timestamptz
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email)) WHERE email IS NOT NULL;

-- One family per login. Every refresh rotates to a new token of the same family; presenting a
-- token that was already rotated revokes the whole family (reuse detection).
CREATE TABLE refresh_token_families (
    id             uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     timestamptz  NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason varchar(32),
    client_address varchar(64),
    user_agent     varchar(512)
);
CREATE INDEX refresh_families_live_idx ON refresh_token_families (user_id)
    WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    id                uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    family_id         uuid         NOT NULL
                      REFERENCES refresh_token_families (id) ON DELETE CASCADE,
    -- SHA-256 of the opaque token; the token itself is never stored.
    token_hash        bytea        NOT NULL UNIQUE,
    created_at        timestamptz  NOT NULL DEFAULT now(),
    expires_at        timestamptz  NOT NULL,
    used_at           timestamptz,
    -- The access token issued together with it, so that revoking a family can denylist it.
    access_jti        varchar(64)  NOT NULL,
    access_expires_at timestamptz  NOT NULL
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_access_jti_idx ON refresh_tokens (access_jti);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

-- Gateways exchange a client id + secret (client-credentials grant) for a short-lived token.
CREATE TABLE gateway_clients (
    id            uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    gateway_id    varchar(100) NOT NULL,
    client_id     varchar(64)  NOT NULL UNIQUE,
    secret_hash   text         NOT NULL,
    active        boolean      NOT NULL DEFAULT true,
    created_at    timestamptz  NOT NULL DEFAULT now(),
    created_by    varchar(64)  NOT NULL,
    disabled_at   timestamptz,
    last_token_at timestamptz
);
-- A disabled gateway can be registered again (new credentials) under the same id.
CREATE UNIQUE INDEX gateway_clients_active_key ON gateway_clients (gateway_id) WHERE active;
