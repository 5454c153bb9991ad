-- Herald datastore, schema version 1: one table per record family.
--
-- Every record is kept whole as JSON in `record` (the same serde shape the
-- sled store writes, so both backends decode one format), beside the typed
-- columns that constraints and queries need. Key columns use the "C"
-- collation so that ordering (and paging by key) is byte order, as in sled,
-- whatever the database's default collation.
--
-- Room for the multi-server phase: change notification will add an events
-- table in a later migration; nothing here depends on a single server.

CREATE TABLE entries (
    id             text COLLATE "C" PRIMARY KEY,
    spiffe_id      text COLLATE "C" NOT NULL,
    parent_id      text COLLATE "C" NOT NULL,
    -- The selector set, deduplicated: "kind:value" strings.
    selectors      text[] COLLATE "C" NOT NULL,
    -- SHA-256 of SPIFFE ID, parent ID and sorted selector set: two
    -- "similar" entries cannot both exist, enforced by the database.
    similar_digest bytea NOT NULL,
    expires_at     bigint,
    revision       bigint NOT NULL,
    record         jsonb NOT NULL,
    CONSTRAINT entries_similar UNIQUE (similar_digest)
);
CREATE INDEX entries_by_parent ON entries (parent_id, id);
CREATE INDEX entries_by_spiffe_id ON entries (spiffe_id, id);
CREATE INDEX entries_by_selector ON entries USING gin (selectors);
CREATE INDEX entries_by_expiry ON entries (expires_at)
    WHERE expires_at IS NOT NULL AND expires_at <> 0;

CREATE TABLE agents (
    spiffe_id text COLLATE "C" PRIMARY KEY,
    banned    boolean NOT NULL,
    record    jsonb NOT NULL
);

-- Join tokens are kept by SHA-256 of the secret, never the secret itself.
CREATE TABLE join_tokens (
    token_hash bytea PRIMARY KEY,
    expires_at bigint NOT NULL,
    agent_id   text COLLATE "C"
);
CREATE INDEX join_tokens_by_expiry ON join_tokens (expires_at);

CREATE TABLE bundles (
    trust_domain text COLLATE "C" PRIMARY KEY,
    sequence     bigint NOT NULL,
    -- SPIFFE bundle JSON plus the JWT key expiries it cannot carry.
    record       jsonb NOT NULL
);

CREATE TABLE federation_relationships (
    trust_domain text COLLATE "C" PRIMARY KEY,
    record       jsonb NOT NULL
);

CREATE TABLE authorities (
    id         text COLLATE "C" PRIMARY KEY,
    created_at bigint NOT NULL,
    record     jsonb NOT NULL
);
CREATE INDEX authorities_by_creation ON authorities (created_at, id);

CREATE TABLE issuances (
    serial    text COLLATE "C" PRIMARY KEY,
    not_after bigint NOT NULL,
    record    jsonb NOT NULL
);
CREATE INDEX issuances_by_expiry ON issuances (not_after);
