-- A trybot.db of schema version 1 (as the first release writes it), with
-- one finished Gerrit run, one GitHub run left running, its posts and a
-- mark. store_test.go checks that it keeps loading.
CREATE TABLE runs (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	key TEXT NOT NULL UNIQUE,
	review TEXT NOT NULL,
	repo TEXT NOT NULL,
	change INTEGER NOT NULL,
	patch_set INTEGER NOT NULL,
	state TEXT NOT NULL,
	data TEXT NOT NULL
);
CREATE INDEX runs_change ON runs (repo, change);
CREATE INDEX runs_state ON runs (state);
CREATE TABLE posts (
	run_id INTEGER NOT NULL,
	what TEXT NOT NULL,
	ext TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (run_id, what)
);
CREATE TABLE marks (
	key TEXT PRIMARY KEY
);
INSERT INTO runs VALUES (1, 'gerrit/proj/1/1/1763719200000', 'gerrit', 'proj', 1, 1, 'succeeded',
 '{"id":1,"review":"gerrit","server":"sim","repo":"proj","project":"proj","change":1,"patch_set":1,"revision":"c7530e067a9ac37d5cb6ad6959eba7e26173cfc6","branch":"main","change_url":"http://127.0.0.1:1/c/proj/+/1","trigger":"vote","requested_by":"1000001","builders":["check"],"state":"succeeded","summary":"TryBots are happy: 1 of 1 passed.","created":"2026-11-21T10:00:00Z","finished":"2026-11-21T10:00:01Z","duration_ms":1000,"builds":[{"builder":"check","build_id":7,"state":"succeeded","started":"2026-11-21T10:00:00Z","finished":"2026-11-21T10:00:01Z","duration_ms":900,"url":"https://tryd.example/builds/7"}]}');
INSERT INTO runs VALUES (2, 'github/gh/3/712e6b4256f640ecba4893ffa5ca922f91423365/label', 'github', 'gh', 3, 0, 'running',
 '{"id":2,"review":"github","server":"ghsim","repo":"gh","project":"org/repo","change":3,"revision":"712e6b4256f640ecba4893ffa5ca922f91423365","branch":"main","trigger":"label","requested_by":"maintainer","builders":["check","extra"],"unknown":["nosuch"],"state":"running","created":"2026-11-21T10:00:02Z","duration_ms":0,"builds":[{"builder":"check","build_id":8,"state":"running","started":"2026-11-21T10:00:02Z"},{"builder":"extra","state":"pending"}]}');
INSERT INTO posts VALUES (1, 'begin', ''), (1, 'result', ''), (2, 'begin', '');
INSERT INTO marks VALUES ('github/gh/3/comment/1018/refused');
PRAGMA user_version = 1;
