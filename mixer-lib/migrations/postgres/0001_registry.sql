-- The mixer's state: racks, machine-id leases, scenarios, the active scenario, convergence
-- and the mixer's own settings. Times are milliseconds since the Unix epoch. Names sort
-- bytewise (COLLATE "C"), as the other stores sort them, whatever the cluster's locale.

CREATE TABLE racks (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL UNIQUE,
    machine_id   INTEGER CHECK (machine_id BETWEEN 0 AND 65535),
    labels       JSONB  NOT NULL DEFAULT '{}',
    secret_hash  TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    ip           TEXT   NOT NULL DEFAULT '',
    version      TEXT   NOT NULL DEFAULT '',
    applied_hash TEXT   NOT NULL DEFAULT '',
    health       JSONB  NOT NULL DEFAULT '{}',
    stats        JSONB  NOT NULL DEFAULT 'null'
);

-- One row per machine id: the primary key is what keeps an id to one holder, also across
-- mixers that share this database.
CREATE TABLE leases (
    machine_id INTEGER PRIMARY KEY CHECK (machine_id BETWEEN 0 AND 65535),
    holder     TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX leases_holder ON leases (holder);

-- Versions are immutable; seq keeps the import order.
CREATE TABLE scenarios (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    version     TEXT COLLATE "C" NOT NULL,
    hash        TEXT   NOT NULL,
    yaml        TEXT   NOT NULL,
    imported_at BIGINT NOT NULL,
    UNIQUE (name, version)
);

CREATE TABLE active (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    name    TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    FOREIGN KEY (name, version) REFERENCES scenarios (name, version)
);

CREATE TABLE convergence (
    rack          TEXT COLLATE "C" PRIMARY KEY,
    asked_version TEXT   NOT NULL,
    asked_hash    TEXT   NOT NULL,
    applied_hash  TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    error         TEXT   NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE settings (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
