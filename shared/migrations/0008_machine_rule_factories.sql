-- A machine's alert rule belongs to its machine's factory (as the alerts API gives it to new
-- ones): rules made before factories existed get it too, so that only that factory's users see
-- and change them.
UPDATE alert_rules SET factory_id = m.factory_id
    FROM machine_metadata m
    WHERE alert_rules.scope_type = 'machine' AND alert_rules.factory_id IS NULL
      AND alert_rules.scope_value = m.id::text;
