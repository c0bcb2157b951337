-- Machine registry (CONTRACT §2).
CREATE TABLE machine_metadata (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        varchar(255) NOT NULL,
    location    varchar(500) NOT NULL,
    sensor_type varchar(100) NOT NULL,
    status      varchar(20)  NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'inactive', 'maintenance', 'error')),
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX idx_machine_name ON machine_metadata (name);
CREATE INDEX idx_machine_location ON machine_metadata (location);
CREATE INDEX idx_machine_sensor_type ON machine_metadata (sensor_type);
CREATE INDEX idx_machine_status ON machine_metadata (status);
CREATE INDEX idx_machine_location_status ON machine_metadata (location, status);
