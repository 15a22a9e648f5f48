-- A coordinator database as PostgreSQL schema version 4 wrote it (pg_dump
-- style, reduced). Never edit: it checks that later code still loads
-- version 4. Build 1's job is in a job set (a cached job).
BEGIN;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (4);
CREATE TABLE builds (
id BIGSERIAL PRIMARY KEY,
priority TEXT NOT NULL,
labels TEXT NOT NULL,
state TEXT NOT NULL,
error TEXT NOT NULL DEFAULT '',
created BIGINT NOT NULL,
finished BIGINT NOT NULL DEFAULT 0,
owner TEXT NOT NULL DEFAULT '',
owner_url TEXT NOT NULL DEFAULT '',
lease_expires BIGINT NOT NULL DEFAULT 0,
offered_by TEXT NOT NULL DEFAULT '',
holds INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX builds_state ON builds(state, id);
CREATE INDEX builds_owner ON builds(owner) WHERE state = 'running';
CREATE TABLE build_labels (
build_id BIGINT NOT NULL REFERENCES builds(id),
key TEXT NOT NULL,
value TEXT NOT NULL,
PRIMARY KEY (key, value, build_id)
);
CREATE TABLE jobs (
build_id BIGINT NOT NULL REFERENCES builds(id),
job_id TEXT NOT NULL,
name TEXT NOT NULL,
seq INTEGER NOT NULL,
state TEXT NOT NULL,
worker TEXT NOT NULL DEFAULT '',
output_digest TEXT NOT NULL DEFAULT '',
exit_code INTEGER,
error TEXT NOT NULL DEFAULT '',
started BIGINT NOT NULL DEFAULT 0,
finished BIGINT NOT NULL DEFAULT 0,
PRIMARY KEY (build_id, job_id)
);
CREATE TABLE attempts (
id TEXT PRIMARY KEY,
build_id BIGINT NOT NULL,
job_id TEXT NOT NULL,
worker TEXT NOT NULL,
state TEXT NOT NULL,
started BIGINT NOT NULL,
finished BIGINT NOT NULL DEFAULT 0,
exit_code INTEGER,
error TEXT NOT NULL DEFAULT '',
output_digest TEXT NOT NULL DEFAULT '',
log_bytes BIGINT NOT NULL DEFAULT 0,
log_truncated BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX attempts_build ON attempts(build_id, started);
CREATE INDEX attempts_job ON attempts(job_id, started);
CREATE TABLE results (
job_id TEXT PRIMARY KEY,
output_digest TEXT NOT NULL,
attempt_id TEXT NOT NULL,
build_id BIGINT NOT NULL,
finished BIGINT NOT NULL
);
CREATE TABLE job_sets (
build_id BIGINT NOT NULL REFERENCES builds(id),
state TEXT NOT NULL,
n INTEGER NOT NULL,
jobs BYTEA NOT NULL,
PRIMARY KEY (build_id, state)
);
CREATE TABLE build_graphs (
build_id BIGINT PRIMARY KEY REFERENCES builds(id),
graph BYTEA NOT NULL
);
CREATE FUNCTION tryd_count_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.holds := OLD.holds + 1;
	RETURN NEW;
END $$;
CREATE TRIGGER builds_count_hold BEFORE UPDATE OF owner ON builds
	FOR EACH ROW WHEN (NEW.owner <> '') EXECUTE FUNCTION tryd_count_hold();
CREATE TABLE workers (
name TEXT PRIMARY KEY,
token_hash TEXT NOT NULL,
labels TEXT NOT NULL,
slots INTEGER NOT NULL,
version TEXT NOT NULL,
last_seen BIGINT NOT NULL
);
INSERT INTO builds (id, priority, labels, state, error, created, finished, owner, owner_url, lease_expires, offered_by, holds) VALUES (1, 'try', '{"repo":"x"}', 'succeeded', '', 1700000000000000000, 1700000001000000000, '0123abcd', 'http://10.0.0.5:8084', 1700000016000000000, '4567cdef', 2);
INSERT INTO build_graphs VALUES (1, convert_to('{"source":{},"jobs":[{"id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"hello","source_mode":"none","commands":[{"argv":["echo","hi"]}],"cacheable":true}]}', 'UTF8'));
SELECT setval('builds_id_seq', 1);
INSERT INTO build_labels VALUES (1, 'repo', 'x');
INSERT INTO job_sets VALUES (1, 'cached', 1, decode('010140616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161610568656c6c6f000040646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464640000008080d0e2c6bfce972f', 'hex'));
INSERT INTO attempts VALUES ('0123456789abcdef', 1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'w1', 'succeeded', 1700000000100000000, 1700000000900000000, 0, '', 'dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', 3, false);
INSERT INTO results VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', '0123456789abcdef', 1, 1700000000900000000);
INSERT INTO workers VALUES ('w1', 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', '{"os":"linux"}', 2, 'dev', 1700000000900000000);
COMMIT;
