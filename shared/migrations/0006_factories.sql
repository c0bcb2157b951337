-- Factories as a scope: every machine belongs to one factory; a user sees the factories listed
-- (NULL = every factory); a gateway belongs to one factory and may be limited to some of its
-- machines (NULL = every machine of its factory). Existing rows join the default factory
-- (INGEST_DEFAULT_FACTORY_ID, 'default').

ALTER TABLE machine_metadata
    ADD COLUMN factory_id varchar(100) NOT NULL DEFAULT 'default';
CREATE INDEX idx_machine_factory ON machine_metadata (factory_id);

ALTER TABLE users
    ADD COLUMN factories text[];

ALTER TABLE gateway_clients
    ADD COLUMN factory_id varchar(100) NOT NULL DEFAULT 'default',
    ADD COLUMN machine_ids uuid[];
CREATE INDEX gateway_clients_factory_idx ON gateway_clients (factory_id);
