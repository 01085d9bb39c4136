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
	status VARCHAR, 
	failures INTEGER DEFAULT '0' NOT NULL, 
	next_poll_at VARCHAR(32), 
	interval FLOAT, 
	moved_to TEXT, 
	reason TEXT, 
	config_hash VARCHAR, 
	last_http_status INTEGER, 
	feed_hint FLOAT, 
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
	PRIMARY KEY (id), 
	UNIQUE (source, "key"), 
	UNIQUE (uid), 
	UNIQUE (path)
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
CREATE TABLE meta (
	"key" VARCHAR NOT NULL, 
	value VARCHAR, 
	PRIMARY KEY ("key")
);
INSERT INTO meta VALUES('schema_version','4');
INSERT INTO meta VALUES('content_version','0');
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
CREATE INDEX ix_entries_date ON entries (date);
CREATE INDEX ix_entries_category_date ON entries (category_path, date);
CREATE INDEX ix_entries_source_date ON entries (source, date);
CREATE INDEX ix_polls_source ON polls (source);
COMMIT;
