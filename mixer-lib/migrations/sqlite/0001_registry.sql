-- The mixer's state: racks, machine-id leases, scenarios, the active scenario, convergence
-- and the mixer's own settings. Times are milliseconds since the Unix epoch; JSON columns
-- hold text that the store writes and reads with serde_json.

CREATE TABLE racks (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    machine_id   INTEGER CHECK (machine_id BETWEEN 0 AND 65535),
    labels       TEXT    NOT NULL DEFAULT '{}',   -- JSON object
    secret_hash  TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    ip           TEXT    NOT NULL DEFAULT '',
    version      TEXT    NOT NULL DEFAULT '',
    applied_hash TEXT    NOT NULL DEFAULT '',
    health       TEXT    NOT NULL DEFAULT '{}',   -- JSON object
    stats        TEXT    NOT NULL DEFAULT 'null'  -- JSON
) STRICT;

-- One row per machine id: the primary key is what keeps an id to one holder.
CREATE TABLE leases (
    machine_id INTEGER NOT NULL PRIMARY KEY CHECK (machine_id BETWEEN 0 AND 65535),
    holder     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX leases_holder ON leases (holder);

-- Versions are immutable; seq keeps the import order.
CREATE TABLE scenarios (
    seq         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    hash        TEXT    NOT NULL,
    yaml        TEXT    NOT NULL,
    imported_at INTEGER NOT NULL,
    UNIQUE (name, version)
) STRICT;

CREATE TABLE active (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    name    TEXT    NOT NULL,
    version TEXT    NOT NULL,
    FOREIGN KEY (name, version) REFERENCES scenarios (name, version)
) STRICT;

CREATE TABLE convergence (
    rack          TEXT    NOT NULL PRIMARY KEY,
    asked_version TEXT    NOT NULL,
    asked_hash    TEXT    NOT NULL,
    applied_hash  TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    error         TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE settings (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
