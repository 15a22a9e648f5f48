-- A coordinator database as schema version 3 wrote it (sqlite3 .dump
-- style). Never edit: it checks that later code still loads version 3.
-- The build's graph is in build_graphs; its one job was cached at
-- submission, so it is in a job set (cached, one job) rather than in jobs.
BEGIN;
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (3);
CREATE TABLE builds (
id INTEGER PRIMARY KEY AUTOINCREMENT,
priority TEXT NOT NULL,
labels TEXT NOT NULL,
state TEXT NOT NULL,
error TEXT NOT NULL DEFAULT '',
created INTEGER NOT NULL,
finished INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX builds_state ON builds(state, id);
CREATE TABLE build_graphs (
build_id INTEGER PRIMARY KEY REFERENCES builds(id),
graph BLOB NOT NULL
);
CREATE TABLE build_labels (
build_id INTEGER NOT NULL REFERENCES builds(id),
key TEXT NOT NULL,
value TEXT NOT NULL,
PRIMARY KEY (key, value, build_id)
);
CREATE TABLE jobs (
build_id INTEGER NOT NULL REFERENCES builds(id),
job_id TEXT NOT NULL,
name TEXT NOT NULL,
seq INTEGER NOT NULL,
state TEXT NOT NULL,
worker TEXT NOT NULL DEFAULT '',
output_digest TEXT NOT NULL DEFAULT '',
exit_code INTEGER,
error TEXT NOT NULL DEFAULT '',
started INTEGER NOT NULL DEFAULT 0,
finished INTEGER NOT NULL DEFAULT 0,
PRIMARY KEY (build_id, job_id)
);
CREATE TABLE attempts (
id TEXT PRIMARY KEY,
build_id INTEGER NOT NULL,
job_id TEXT NOT NULL,
worker TEXT NOT NULL,
state TEXT NOT NULL,
started INTEGER NOT NULL,
finished INTEGER NOT NULL DEFAULT 0,
exit_code INTEGER,
error TEXT NOT NULL DEFAULT '',
output_digest TEXT NOT NULL DEFAULT '',
log_bytes INTEGER NOT NULL DEFAULT 0,
log_truncated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX attempts_build ON attempts(build_id, started);
CREATE INDEX attempts_job ON attempts(job_id, started);
CREATE TABLE results (
job_id TEXT PRIMARY KEY,
output_digest TEXT NOT NULL,
attempt_id TEXT NOT NULL,
build_id INTEGER NOT NULL,
finished INTEGER NOT NULL
);
CREATE TABLE workers (
name TEXT PRIMARY KEY,
token_hash TEXT NOT NULL,
labels TEXT NOT NULL,
slots INTEGER NOT NULL,
version TEXT NOT NULL,
last_seen INTEGER NOT NULL
);
CREATE TABLE job_sets (
build_id INTEGER NOT NULL REFERENCES builds(id),
state TEXT NOT NULL,
n INTEGER NOT NULL,
jobs BLOB NOT NULL,
PRIMARY KEY (build_id, state)
);
INSERT INTO builds VALUES (1, 'try', '{"repo":"x"}', 'succeeded', '', 1700000000000000000, 1700000001000000000);
INSERT INTO build_graphs VALUES (1, '{"source":{},"jobs":[{"id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","name":"hello","source_mode":"none","commands":[{"argv":["echo","hi"]}],"cacheable":true}]}');
INSERT INTO build_labels VALUES (1, 'repo', 'x');
INSERT INTO results VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd', '0123456789abcdef', 1, 1700000000900000000);
INSERT INTO job_sets VALUES (1, 'cached', 1, X'010140616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161616161610568656c6c6f000040646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464646464640000008080d0e2c6bfce972f');
INSERT INTO workers VALUES ('w1', 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', '{"os":"linux"}', 2, 'dev', 1700000000900000000);
COMMIT;
