PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE sources (
	name VARCHAR NOT NULL, 
	url VARCHAR NOT NULL, 
	title VARCHAR, 
	last_polled_at VARCHAR(32), 
	last_ok_at VARCHAR(32), 
	last_error TEXT, 
	etag VARCHAR, 
	last_modified VARCHAR, 
	body_hash VARCHAR, 
	render_key VARCHAR, 
	status VARCHAR, 
	failures INTEGER DEFAULT '0' NOT NULL, 
	next_poll_at VARCHAR(32), 
	interval FLOAT, 
	moved_to TEXT, 
	reason TEXT, 
	config_hash VARCHAR, 
	last_http_status INTEGER, 
	feed_hint FLOAT, 
	lease_until VARCHAR(32), 
	lease_token VARCHAR, 
	wake VARCHAR, 
	settings TEXT, 
	fingerprint VARCHAR, 
	enabled BOOLEAN, 
	category_path TEXT, 
	host VARCHAR, 
	added_at VARCHAR(32), 
	removed_at VARCHAR(32), 
	position INTEGER, 
	label TEXT, 
	url_shown TEXT, 
	search TEXT, 
	PRIMARY KEY (name)
);
CREATE TABLE entries (
	id INTEGER NOT NULL, 
	source VARCHAR NOT NULL, 
	"key" VARCHAR NOT NULL, 
	alt_key VARCHAR NOT NULL, 
	uid VARCHAR NOT NULL, 
	path VARCHAR, 
	title TEXT, 
	link TEXT, 
	author VARCHAR, 
	authors TEXT, 
	enclosures TEXT, 
	categories TEXT, 
	tags TEXT, 
	headimg TEXT, 
	summary TEXT, 
	body_html TEXT, 
	published VARCHAR(32), 
	updated VARCHAR(32), 
	date VARCHAR(32) NOT NULL, 
	first_seen VARCHAR(32) NOT NULL, 
	last_seen VARCHAR(32) NOT NULL, 
	raw_json TEXT, 
	raw_hash VARCHAR, 
	file_hash VARCHAR, 
	render_key VARCHAR, 
	pruned_at VARCHAR(32), 
	dropped_by TEXT, 
	dropped_at VARCHAR(32), 
	category_path TEXT, 
	path_fold TEXT, 
	seq INTEGER DEFAULT '0' NOT NULL, 
	changed_at VARCHAR(32), 
	PRIMARY KEY (id), 
	UNIQUE (source, "key"), 
	UNIQUE (uid), 
	UNIQUE (path)
);
CREATE TABLE departures (
	category_path TEXT NOT NULL, 
	seq INTEGER NOT NULL, 
	changed_at VARCHAR(32), 
	PRIMARY KEY (category_path)
);
CREATE TABLE polls (
	id INTEGER NOT NULL, 
	source VARCHAR NOT NULL, 
	started_at VARCHAR(32) NOT NULL, 
	duration FLOAT NOT NULL, 
	new INTEGER NOT NULL, 
	updated INTEGER NOT NULL, 
	unchanged INTEGER NOT NULL, 
	failed INTEGER NOT NULL, 
	dropped INTEGER NOT NULL, 
	error TEXT, 
	warnings TEXT, 
	url TEXT, 
	http_status INTEGER, 
	bytes INTEGER, 
	not_modified BOOLEAN, 
	moved_to TEXT, 
	PRIMARY KEY (id)
);
CREATE TABLE hook_runs (
	id INTEGER NOT NULL, 
	kind VARCHAR NOT NULL, 
	target TEXT NOT NULL, 
	started_at VARCHAR(32) NOT NULL, 
	duration FLOAT NOT NULL, 
	ok BOOLEAN NOT NULL, 
	exit_code INTEGER, 
	attempts INTEGER DEFAULT '1' NOT NULL, 
	files INTEGER DEFAULT '0' NOT NULL, 
	error TEXT, 
	output TEXT, 
	PRIMARY KEY (id)
);
CREATE TABLE claims (
	id INTEGER NOT NULL, 
	claimed_at VARCHAR(32) NOT NULL, 
	late FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE meta (
	"key" VARCHAR NOT NULL, 
	value VARCHAR, 
	PRIMARY KEY ("key")
);
INSERT INTO meta VALUES('schema_version','4');
INSERT INTO meta VALUES('content_version','0');
INSERT INTO meta VALUES('changed_at','');
CREATE TABLE secrets (
	"key" VARCHAR NOT NULL, 
	value VARCHAR NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE admin_sessions (
	id VARCHAR NOT NULL, 
	secret_mark VARCHAR NOT NULL, 
	created_at VARCHAR(32) NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE pages (
	source VARCHAR NOT NULL, 
	"key" VARCHAR NOT NULL, 
	url TEXT, 
	fetched_at VARCHAR(32) NOT NULL, 
	http_status INTEGER, 
	content_type TEXT, 
	body BLOB, 
	error TEXT, 
	body_from VARCHAR, 
	reason TEXT, 
	applied_hash VARCHAR, 
	PRIMARY KEY (source, "key")
);
CREATE INDEX ix_sources_next_poll_at ON sources (next_poll_at, name);
CREATE INDEX ix_sources_category_path ON sources (category_path);
CREATE INDEX ix_sources_disabled ON sources (position) WHERE enabled = 0;
CREATE INDEX ix_sources_search ON sources (search, title, url, position, name);
CREATE INDEX ix_sources_state ON sources (status, enabled, position);
CREATE INDEX ix_sources_position ON sources (position);
CREATE INDEX ix_sources_leased ON sources (lease_until) WHERE lease_token IS NOT NULL;
CREATE INDEX ix_sources_polled ON sources (last_polled_at, position);
CREATE INDEX ix_sources_failures ON sources (failures DESC, position);
CREATE INDEX ix_sources_name ON sources (name, position);
CREATE INDEX ix_entries_category_date ON entries (category_path, date);
CREATE INDEX ix_entries_category_seq ON entries (category_path, seq);
CREATE INDEX ix_entries_date ON entries (date);
CREATE INDEX ix_entries_path_fold ON entries (path_fold);
CREATE INDEX ix_entries_source_date ON entries (source, date);
CREATE INDEX ix_polls_source ON polls (source);
CREATE INDEX ix_claims_window ON claims (claimed_at, late);
CREATE TRIGGER entries_departures AFTER UPDATE OF category_path ON entries WHEN OLD.category_path IS NOT NEW.category_path AND OLD.category_path IS NOT NULL BEGIN INSERT OR REPLACE INTO departures (category_path, seq, changed_at) VALUES (OLD.category_path, NEW.seq, NEW.changed_at); END;
COMMIT;
