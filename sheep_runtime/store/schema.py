"""SQLite schema of the state store. An attachment row is the address lease: it is
written in the same transaction as the attachment, so neither exists without the other."""

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    bridge TEXT NOT NULL UNIQUE,
    bridge_mac TEXT NOT NULL,
    subnet TEXT NOT NULL,
    gateway TEXT NOT NULL,
    mtu INTEGER NOT NULL,
    internal INTEGER NOT NULL,
    icc INTEGER NOT NULL,
    created_at REAL NOT NULL,
    ipam_cursor TEXT,
    dns INTEGER NOT NULL DEFAULT 1,
    subnet6 TEXT,
    gateway6 TEXT,
    ipam_cursor6 TEXT
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    env TEXT NOT NULL,
    hostname TEXT NOT NULL,
    network_mode TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    netns_path TEXT NOT NULL,
    pid INTEGER NOT NULL DEFAULT 0,
    pid_start_time INTEGER NOT NULL DEFAULT 0,
    shim_pid INTEGER NOT NULL DEFAULT 0,
    shim_start_time INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    started_at REAL,
    finished_at REAL,
    -- set when a removal starts: a daemon killed half-way finishes it at start
    removing INTEGER NOT NULL DEFAULT 0,
    state_reason TEXT NOT NULL DEFAULT '',
    privileged INTEGER NOT NULL DEFAULT 0,
    capabilities TEXT NOT NULL DEFAULT '[]',
    owner TEXT NOT NULL DEFAULT 'sheep',
    cni_container_id TEXT NOT NULL DEFAULT '',
    cni_ifname TEXT NOT NULL DEFAULT '',
    image TEXT NOT NULL DEFAULT '',
    rootfs TEXT NOT NULL DEFAULT '',
    working_dir TEXT NOT NULL DEFAULT '/',
    -- the networks asked for at create (JSON), attached again at each start
    requests TEXT NOT NULL DEFAULT '[]',
    -- restart policy, stop signal and timeout, resources, log, auto_remove (JSON)
    run_config TEXT NOT NULL DEFAULT '{}',
    restart_count INTEGER NOT NULL DEFAULT 0,
    restart_backoff REAL NOT NULL DEFAULT 0,
    stopped_by_user INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS attachments (
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks(id),
    interface_name TEXT NOT NULL,
    address TEXT NOT NULL,
    prefix INTEGER NOT NULL,
    gateway TEXT NOT NULL,
    mac TEXT NOT NULL,
    host_interface TEXT NOT NULL UNIQUE,
    ports TEXT NOT NULL DEFAULT '[]',
    seq INTEGER NOT NULL,
    aliases TEXT NOT NULL DEFAULT '[]',
    address6 TEXT,
    prefix6 INTEGER,
    gateway6 TEXT,
    PRIMARY KEY (container_id, network_id),
    UNIQUE (network_id, address),
    UNIQUE (container_id, interface_name)
);
"""

# After SCHEMA and MIGRATIONS (an index cannot name a column a migration adds later).
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS attachments_address6
    ON attachments(network_id, address6) WHERE address6 IS NOT NULL;
-- The state gauges count by state on every start, exit and removal: from this index,
-- not the rows (0.15 instead of 0.9 ms at 1,000 containers).
CREATE INDEX IF NOT EXISTS containers_by_state ON containers(owner, state);
"""

# Columns added after version 1, as (table, column, definition): added to older files.
MIGRATIONS: tuple[tuple[str, str, str], ...] = (
    ("containers", "state_reason", "TEXT NOT NULL DEFAULT ''"),
    ("containers", "privileged", "INTEGER NOT NULL DEFAULT 0"),
    ("containers", "capabilities", "TEXT NOT NULL DEFAULT '[]'"),
    ("containers", "owner", "TEXT NOT NULL DEFAULT 'sheep'"),
    ("containers", "cni_container_id", "TEXT NOT NULL DEFAULT ''"),
    ("containers", "cni_ifname", "TEXT NOT NULL DEFAULT ''"),
    ("networks", "dns", "INTEGER NOT NULL DEFAULT 1"),
    ("attachments", "aliases", "TEXT NOT NULL DEFAULT '[]'"),
    ("containers", "image", "TEXT NOT NULL DEFAULT ''"),
    ("containers", "rootfs", "TEXT NOT NULL DEFAULT ''"),
    ("containers", "working_dir", "TEXT NOT NULL DEFAULT '/'"),
    ("containers", "requests", "TEXT NOT NULL DEFAULT '[]'"),
    ("containers", "run_config", "TEXT NOT NULL DEFAULT '{}'"),
    ("containers", "restart_count", "INTEGER NOT NULL DEFAULT 0"),
    ("containers", "restart_backoff", "REAL NOT NULL DEFAULT 0"),
    ("containers", "stopped_by_user", "INTEGER NOT NULL DEFAULT 0"),
    ("networks", "subnet6", "TEXT"),
    ("networks", "gateway6", "TEXT"),
    ("networks", "ipam_cursor6", "TEXT"),
    ("attachments", "address6", "TEXT"),
    ("attachments", "prefix6", "INTEGER"),
    ("attachments", "gateway6", "TEXT"),
)
