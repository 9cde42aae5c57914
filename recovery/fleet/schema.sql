-- The fleet store on PostgreSQL: every host's events, and copies of each host's read models.
--
-- CONTRACT between shipping (recovery/fleet/ship.py writes) and the fleet views
-- (recovery/fleet/views.py reads). `host` is the fleet's name of the host ([fleet] host, default the
-- hostname), the key of everything here; an event's own `host` column is kept as `event_host`.
--
-- fleet_events: the raw events, byte for byte as in the host's SQLite store (ts and data as the
-- same text, so `recovery fleet verify` recomputes recovery.store.chain_hash centrally). Idempotent
-- on the event id (a second ship adds no rows). Archived events (recovery archive) may be absent
-- before a host's first shipped seq; verify starts from the lowest seq shipped.
--
-- fleet_app_state, fleet_incidents, fleet_restarts, fleet_rollup_hour, fleet_rollup_day: the host's
-- projections, upserted by each ship (the rows that changed since the last ship, by their keys), so
-- fleet status and fleet report read these, never fleet_events. Each ship is one transaction:
-- events, read models and fleet_hosts move together.
--
-- Created by recovery.fleet.ship.ensure_schema (CREATE ... IF NOT EXISTS; fleet_meta.version says
-- which schema it is; a newer schema than the code knows is an error, an older one is migrated).

CREATE TABLE IF NOT EXISTS fleet_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE IF NOT EXISTS fleet_hosts (
    host text PRIMARY KEY,
    first_shipped_at timestamptz NOT NULL DEFAULT now(),
    last_shipped_at timestamptz NOT NULL DEFAULT now(),  -- the ship's own time (PostgreSQL's clock)
    first_seq bigint,          -- the lowest seq shipped (events before it were archived before shipping began)
    last_seq bigint NOT NULL DEFAULT 0,  -- the highest seq shipped
    last_event_at text,        -- ts of the event last_seq
    last_check_at text,        -- the newest app_state.last_check_at at the ship (a host stale past it is flagged)
    events bigint NOT NULL DEFAULT 0,    -- events shipped in all
    version text               -- recovery's version on the host
);

CREATE TABLE IF NOT EXISTS fleet_events (
    host text NOT NULL,
    seq bigint NOT NULL,
    id text NOT NULL,
    ts text NOT NULL,
    event_host text NOT NULL,
    app text,
    type text NOT NULL,
    run_id text,
    data text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    PRIMARY KEY (host, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS fleet_events_id ON fleet_events (id);
CREATE INDEX IF NOT EXISTS fleet_events_host_app_ts ON fleet_events (host, app, ts);

CREATE TABLE IF NOT EXISTS fleet_app_state (
    host text NOT NULL,
    app text NOT NULL,
    state text NOT NULL,
    since text NOT NULL,
    reason text,
    last_check_at text,
    last_latency_ms double precision,
    pm2_status text,
    memory bigint,
    cpu double precision,
    uptime_s double precision,
    restart_time integer,
    paused_until text,
    suspended_at text,
    open_incident integer,
    last_restart_at text,
    last_ok_at text,
    first_fail_at text,
    PRIMARY KEY (host, app)
);

CREATE TABLE IF NOT EXISTS fleet_incidents (
    host text NOT NULL,
    id integer NOT NULL,
    app text NOT NULL,
    started_at text NOT NULL,
    detected_at text,
    unobserved_s double precision,
    ended_at text,
    duration_s double precision,
    restarts integer NOT NULL DEFAULT 0,
    outcome text NOT NULL,
    first_reason text,
    PRIMARY KEY (host, id)
);
CREATE INDEX IF NOT EXISTS fleet_incidents_started ON fleet_incidents (started_at);
-- fleet report: the incidents that overlap a period are those open or ended after its start (added by the views).
CREATE INDEX IF NOT EXISTS fleet_incidents_ended ON fleet_incidents (ended_at);

CREATE TABLE IF NOT EXISTS fleet_restarts (
    host text NOT NULL,
    seq bigint NOT NULL,
    app text NOT NULL,
    at text NOT NULL,
    by text NOT NULL,
    source text NOT NULL,
    count integer NOT NULL DEFAULT 1,
    reason text,
    outcome text,
    incident_id integer,
    code text,
    PRIMARY KEY (host, seq)
);
CREATE INDEX IF NOT EXISTS fleet_restarts_at ON fleet_restarts (at);

-- Same columns as the SQLite rollups (latency: the sketch's JSON, recovery/sketch.py, mergeable).
CREATE TABLE IF NOT EXISTS fleet_rollup_hour (
    host text NOT NULL,
    app text NOT NULL,
    start text NOT NULL,
    probes integer NOT NULL,
    failures integer NOT NULL,
    up_s double precision NOT NULL,
    down_s double precision NOT NULL,
    unobserved_s double precision NOT NULL,
    latency text NOT NULL,
    PRIMARY KEY (host, app, start)
);
CREATE INDEX IF NOT EXISTS fleet_rollup_hour_start ON fleet_rollup_hour (start);

CREATE TABLE IF NOT EXISTS fleet_rollup_day (
    host text NOT NULL,
    app text NOT NULL,
    start text NOT NULL,
    probes integer NOT NULL,
    failures integer NOT NULL,
    up_s double precision NOT NULL,
    down_s double precision NOT NULL,
    unobserved_s double precision NOT NULL,
    latency text NOT NULL,
    PRIMARY KEY (host, app, start)
);
CREATE INDEX IF NOT EXISTS fleet_rollup_day_start ON fleet_rollup_day (start);
