-- Factories as a scope for alerts and dead letters (README "Factories: what a token sees").
-- An alert rule may belong to one factory: it then applies only to machines registered in that
-- factory, and only users of that factory see or change it (NULL = every factory). A rule of
-- scope "factory" belongs to the factory it names.
ALTER TABLE alert_rules ADD COLUMN factory_id varchar(100);
UPDATE alert_rules SET factory_id = scope_value WHERE scope_type = 'factory';
CREATE INDEX alert_rules_factory_idx ON alert_rules (factory_id);

-- An alert records the factory its machine is registered in (not the factory a reading's
-- sender claimed); alerts raised before are given their machine's factory.
UPDATE alerts SET factory_id = m.factory_id
    FROM machine_metadata m WHERE alerts.machine_id = m.id;
CREATE INDEX alerts_factory_idx ON alerts (factory_id, raised_at DESC);

-- A dead letter's factory: the one its topic or its readings name (NULL when none can be told:
-- an undecodable body; only users of every factory see those).
ALTER TABLE dead_letters ADD COLUMN factory_id varchar(100);
UPDATE dead_letters SET factory_id = COALESCE(details->>'factory_id', readings->0->>'factory_id');
CREATE INDEX dead_letters_factory_idx ON dead_letters (factory_id, first_seen);
