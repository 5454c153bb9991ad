-- Herald datastore, schema version 2: several servers on one database.
--
-- 1. A change feed. Every change another server must hear about appends a
--    row to `events` from a trigger, so in the very transaction that makes
--    the change (no write path can forget it, and an aborted change leaves
--    no event), and rings the `herald_events` doorbell (NOTIFY, delivered
--    at commit). Event ids come from a sequence and commit out of order;
--    readers track the ids they have not seen yet (see
--    src/store/postgres/feed.rs).
-- 2. Presence: the servers alive (a heartbeat on the database's clock) and
--    which agents each one serves with the bundle sequence each agent
--    acknowledged, so that a server's rotation waits for agents connected
--    to any server.

CREATE TABLE events (
    id         bigserial PRIMARY KEY,
    -- entries | agent_revoked | bundle | federation | authority
    kind       text NOT NULL,
    -- What changed: a SPIFFE ID, a trust domain, an authority id, or ''.
    subject    text COLLATE "C" NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX events_by_age ON events (created_at);

CREATE FUNCTION herald_event(event_kind text, event_subject text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- The transaction gets its id before it draws the event's id, so a
    -- reader that misses this id knows it belongs to a transaction older
    -- than any snapshot that shows a later id (see feed.rs).
    PERFORM pg_current_xact_id();
    INSERT INTO events (kind, subject) VALUES (event_kind, coalesce(event_subject, ''));
    -- Identical notifications of one transaction are delivered once.
    PERFORM pg_notify('herald_events', '');
END
$$;

-- Entries change in batches: one event per statement that changed rows.
CREATE FUNCTION herald_entries_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed_rows) THEN
        PERFORM herald_event('entries', '');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER entries_inserted AFTER INSERT ON entries
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION herald_entries_changed();
CREATE TRIGGER entries_updated AFTER UPDATE ON entries
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION herald_entries_changed();
CREATE TRIGGER entries_deleted AFTER DELETE ON entries
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION herald_entries_changed();

-- One event per changed row: kind TG_ARGV[0], subject the row's column
-- named TG_ARGV[1].
CREATE FUNCTION herald_row_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSE
        changed := to_jsonb(NEW);
    END IF;
    PERFORM herald_event(TG_ARGV[0], changed ->> TG_ARGV[1]);
    RETURN NULL;
END
$$;
-- An agent is revoked when banned or deleted (evicted).
CREATE TRIGGER agents_banned AFTER UPDATE ON agents
    FOR EACH ROW WHEN (NEW.banned AND NOT OLD.banned)
    EXECUTE FUNCTION herald_row_changed('agent_revoked', 'spiffe_id');
CREATE TRIGGER agents_deleted AFTER DELETE ON agents
    FOR EACH ROW EXECUTE FUNCTION herald_row_changed('agent_revoked', 'spiffe_id');
CREATE TRIGGER bundles_changed AFTER INSERT OR UPDATE OR DELETE ON bundles
    FOR EACH ROW EXECUTE FUNCTION herald_row_changed('bundle', 'trust_domain');
CREATE TRIGGER federation_changed AFTER INSERT OR UPDATE OR DELETE ON federation_relationships
    FOR EACH ROW EXECUTE FUNCTION herald_row_changed('federation', 'trust_domain');
CREATE TRIGGER authorities_changed AFTER INSERT OR UPDATE OR DELETE ON authorities
    FOR EACH ROW EXECUTE FUNCTION herald_row_changed('authority', 'id');

CREATE TABLE servers (
    server_id  text COLLATE "C" PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_presence (
    server_id      text COLLATE "C" NOT NULL REFERENCES servers ON DELETE CASCADE,
    agent_id       text COLLATE "C" NOT NULL,
    acked_sequence bigint NOT NULL,
    PRIMARY KEY (server_id, agent_id)
);
